"""BatchNorm over fewer, or more, examples than one process's batch: module conversions.

The papers compute BN statistics per GPU (CIFAR: 128 over 2 GPUs, 64 each; V1 ImageNet: 256 over
8 GPUs, 32 each). The unit classes build plain `nn.BatchNorm2d`; a run converts them after the
network is built, as `torch.nn.SyncBatchNorm.convert_sync_batchnorm` does (same parameter and
buffer names, so checkpoints and model.pt do not change):

* `GhostBatchNorm2d` ("ghost BN", Hoffer et al. 2017): statistics over consecutive groups of
  `group` examples of the batch, so one process reproduces a multi-GPU per-GPU-BN run.
  Running statistics are updated from the *first* group only. That is what DDP does with
  per-GPU BN: `broadcast_buffers=True` copies rank 0's buffers to every rank before each
  forward, so the buffers that survive (checkpointed, evaluated, saved) are those rank 0
  computed from its own slice, the first `batch/world` examples of each mini-batch.
* `AllReduceBatchNorm2d`: statistics over the whole mini-batch of all processes (SyncBN) on
  CPU/gloo, where torch's SyncBatchNorm refuses to run (its kernels are CUDA-only). The sums are
  all-reduced with torch's differentiable functional collective (`all_reduce` of
  `torch.distributed._functional_collectives`, which torch names as the successor of
  `torch.distributed.nn.functional.all_reduce`), so autograd
  gives the exact gradient; on CUDA the trainer uses torch's SyncBatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are taken over groups of `group` examples."""

    def __init__(self, num_features: int, group: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] == self.group:
            return super().forward(x)
        if x.shape[0] % self.group:
            raise ValueError(f"ghost BatchNorm: a batch of {x.shape[0]} does not split into "
                             f"groups of {self.group}")
        first, *rest = x.split(self.group)
        # The first group updates the running statistics (as rank 0's buffers under DDP) ...
        out = [super().forward(first)]
        # ... the others are normalised with their own statistics and update nothing.
        out += [F.batch_norm(g, None, None, self.weight, self.bias, True, 0.0, self.eps)
                for g in rest]
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group={self.group}"


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with statistics over the batches of every process of `group` (SyncBN)."""

    def __init__(self, num_features: int, process_group=None, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.process_group = process_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed._functional_collectives import all_reduce
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        xd = x.double()  # the sums of a whole mini-batch in float64
        total = all_reduce(torch.stack([xd.sum(dims), xd.square().sum(dims)]), "sum",
                           self.process_group or torch.distributed.group.WORLD)
        count = x.numel() // x.shape[1] * torch.distributed.get_world_size(self.process_group)
        mean = total[0] / count
        var = (total[1] / count - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():  # unbiased variance in the running estimate, as nn.BatchNorm2d
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1 / int(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_((var * count / max(count - 1, 1)).to(self.running_var.dtype), m)
        scale = (var + self.eps).rsqrt().to(x.dtype)
        out = (x - mean.to(x.dtype).view(shape)) * scale.view(shape)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def convert_batchnorm(module: nn.Module, cls: type[nn.BatchNorm2d], **kwargs) -> nn.Module:
    """`module` with every plain nn.BatchNorm2d replaced by `cls(num_features, **kwargs)`,
    carrying over parameters, buffers and the training flag (convert_sync_batchnorm's recipe)."""
    if type(module) is nn.BatchNorm2d:
        like = next(module.parameters(), None)
        like = like if like is not None else module.running_mean
        new = cls(module.num_features, eps=module.eps, momentum=module.momentum,
                  affine=module.affine, track_running_stats=module.track_running_stats,
                  device=like.device, dtype=like.dtype, **kwargs)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_batchnorm(child, cls, **kwargs)
        if new_child is not child:
            module.add_module(name, new_child)
    return module
