"""The training iteration, defined once: used by `train()` and timed by `resnet-bench bench`,
so that what is timed is what trains.

One iteration: set the lr, forward under autocast (bf16 when asked), fp32 cross-entropy, fresh
gradients, backward, SGD step; its loss and error count stay on the device (`StepValues`) and
are copied to the host every `sync_interval(device)` iterations.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

# Host syncs happen every SYNC_EVERY iterations on accelerators (every iteration on CPU, where
# they are free); the V1 warm-up test and divergence checks run at these fixed iterations so
# that a resumed run takes the same decisions as an uninterrupted one.
SYNC_EVERY = 25


def sync_interval(device: torch.device) -> int:
    return 1 if device.type == "cpu" else SYNC_EVERY


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_backends(device: torch.device, precision: str) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # TF32 only when reduced precision was asked for: fp32 runs stay fp32.
        torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
        torch.backends.cudnn.allow_tf32 = precision != "fp32"


def make_optimizer(model: torch.nn.Module, recipe, fused: bool = False) -> torch.optim.Optimizer:
    # fused=True only for `bench --fused-sgd`, a what-if lever the trainer does not expose.
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, **({"fused": True} if fused else {}))


def prepare_model(model: torch.nn.Module, device: torch.device, recipe) -> torch.nn.Module:
    """The network on the device in the recipe's memory format."""
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def compiled(model: torch.nn.Module, recipe, mode: str | None = None, backend: str = "inductor"):
    """What the step calls: the model, or its torch.compile'd wrapper (same parameters).

    `backend="aot_eager"` (bench only) traces and runs the same graphs without generating
    kernels: it needs no C++ compiler and no GPU, so CPU runs can rehearse the compiled path."""
    if not recipe.compile:
        return model
    return torch.compile(model, backend=backend, **({"mode": mode} if mode else {}))


class ForwardBackwardOOM(torch.OutOfMemoryError):
    """Out of memory in forward or backward: nothing has been updated, the step can be retried."""


def forward_backward(step_model, optimizer, xb, yb, device: torch.device, precision: str):
    """Forward under autocast, fp32 cross-entropy, fresh gradients; returns (logits, loss)."""
    with autocast(device, precision):
        logits = step_model(xb)
    loss = F.cross_entropy(logits.float(), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return logits, loss


def train_step(step_model, optimizer, xb, yb, lr: float, device: torch.device, precision: str,
               before_update: Callable[[], None] | None = None):
    """One SGD iteration at learning rate `lr`; returns (loss, number wrong) as device tensors.

    `before_update` runs between backward and the optimizer step (the trainer logs gradient
    norms there). An out-of-memory error in forward/backward is raised as ForwardBackwardOOM.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    try:
        logits, loss = forward_backward(step_model, optimizer, xb, yb, device, precision)
    except torch.OutOfMemoryError as exc:
        raise ForwardBackwardOOM(str(exc)) from exc
    if before_update is not None:
        before_update()
    optimizer.step()
    return loss.detach(), (logits.argmax(1) != yb).sum()


class StepValues:
    """Per-iteration (iteration, lr, loss, wrong) kept on the device until the next host sync."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []

    def add(self, it: int, lr: float, loss: torch.Tensor, wrong: torch.Tensor) -> None:
        self.pending.append((it, lr, loss, wrong))

    def drain(self) -> list[tuple[int, float, float, float]]:
        """The pending values copied to the host (the sync), oldest first; then none pending."""
        if not self.pending:
            return []
        # One stacked copy, one host sync, instead of two per pending iteration. float32 holds
        # the losses as they are and the error counts (<= batch size) exactly.
        losses = torch.stack([loss.float() for _, _, loss, _ in self.pending])
        wrongs = torch.stack([wrong for _, _, _, wrong in self.pending]).float()
        values = torch.stack((losses, wrongs), 1).tolist()
        host = [(i, lr, v[0], v[1]) for (i, lr, _, _), v in zip(self.pending, values)]
        self.pending.clear()
        return host
