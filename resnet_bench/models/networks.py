"""The networks of both papers: stem, stages, head (`ResNet`), with two stems.

CifarResNet (V1 Sec. 4.2, V2 CIFAR), three stages on 32/16/8 maps:

    stem   3x3 conv, 16 filters -> BN -> ReLU
           (for pre-activation nets this BN-ReLU is the first unit's pre-activation, V2 appendix)
    stages n units each; the first unit of stages 2 and 3 has stride 2
           basic: 16/32/64 channels; bottleneck: 64/128/256 out, 16/32/64 inside

ImageNetResNet (V1 Table 1; V2 Sec. 5), four stages on 56/28/14/7 maps of a 224x224 image:

    stem   7x7/2 conv, 64 filters -> BN -> ReLU -> 3x3/2 max-pool (padding 1, as torchvision;
           the authors' Caffe pool has no padding and rounds up, which gives the same 56x56)
    stages V1 Table 1's units per stage (`spec.stage_units`); the first unit of stages 2-4 has
           stride 2. basic: 64/128/256/512; bottleneck: 256/512/1024/2048 out, 64/.../512 inside

Both share the head, [BN -> ReLU for full pre-activation; ReLU for ReLU-only] -> global average
pool -> FC, and every unit class: only the stem and the widths are the ImageNet nets' own.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .modulation import Gate, make_modulation
from .shortcuts import make_shortcut
from .spec import ModelSpec
from .units import Unit, layer_plan

STEM_WIDTH = 16
STAGE_WIDTHS = (16, 32, 64)  # inner width of each stage; a bottleneck unit outputs 4x this
IMAGENET_STEM_WIDTH = 64
IMAGENET_STAGE_WIDTHS = (64, 128, 256, 512)  # V1 Table 1
BOTTLENECK_EXPANSION = 4


def unit_class(spec: ModelSpec) -> type[Unit]:
    """The class of the unit the spec's family declares for its variant (families.py)."""
    return spec.unit_decl.load()


def _make_unit(cls: type[Unit], spec: ModelSpec, in_channels: int, out_channels: int, stride: int,
               first: bool) -> Unit:
    plan = layer_plan(spec.unit_shape, in_channels, out_channels, stride, spec.stride_in)
    if spec.shortcut is None:  # a plain net: the unit's layers without the addition
        return cls(plan)
    shortcut = make_shortcut(spec.shortcut, in_channels, out_channels, stride, bn=cls.PROJECTION_BN)
    modulation = make_modulation(spec.modulation, in_channels, out_channels, stride)
    if cls.PRE_ACTIVATION:
        return cls(plan, shortcut, modulation, first=first)
    return cls(plan, shortcut, modulation)


@contextlib.contextmanager
def _bn_stats_frozen(module: nn.Module):
    """During checkpoint recomputation, BN must normalise with the batch statistics again but must
    not fold the same batch into its running statistics a second time."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    try:
        for m in bns:
            m.momentum = 0.0  # running = 1 * running + 0 * batch, bit for bit
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class ResNet(nn.Module):
    """Stem, stages of units, head. `stem` is the stem's layers (conv, bn, relu[, pool]), built by
    the subclass before any unit: parameters are drawn in the order stem, units, head, which a
    seed's published weights depend on."""

    def __init__(self, spec: ModelSpec, num_classes: int, stem: OrderedDict, stem_width: int,
                 stage_widths: tuple[int, ...]):
        super().__init__()
        self.spec = spec
        self.activation_checkpointing = False
        self.stem = nn.Sequential(stem)
        unit = unit_class(spec)
        expansion = BOTTLENECK_EXPANSION if spec.block == "bottleneck" else 1
        width_in = stem_width
        self.stages = nn.ModuleList()
        for s, (width, count) in enumerate(zip(stage_widths, spec.stage_units, strict=True)):
            units = []
            for u in range(count):
                stride = 2 if s > 0 and u == 0 else 1
                width_out = width * expansion
                units.append(_make_unit(unit, spec, width_in, width_out, stride, first=(s == 0 and u == 0)))
                width_in = width_out
            self.stages.append(nn.Sequential(*units))
        head: OrderedDict[str, nn.Module] = OrderedDict()
        for layer in unit.HEAD:  # the last unit's sum has not been activated yet
            head[layer] = nn.BatchNorm2d(width_in) if layer == "bn" else nn.ReLU()
        head["pool"] = nn.AdaptiveAvgPool2d(1)
        head["flatten"] = nn.Flatten()
        head["fc"] = nn.Linear(width_in, num_classes)
        self.head = nn.Sequential(head)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He et al. 2015 ("Delving deep", the papers' [13]/[23]) for every conv: N(0, 2/n) with
        n = k*k*out_channels (fan_out). That is the paper's backward-propagation condition, which
        keeps gradient magnitudes depth-independent, and it is what the authors' CIFAR code
        (resnet-1k-layers, on fb.resnet.torch) uses. BN: weight 1, bias 0. The papers do not say
        how the FC is initialised: keep PyTorch's default weights (uniform +-1/sqrt(fan_in), small
        logits) and zero the bias so no class is favoured at the start, as fb.resnet.torch does."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                m.reset_parameters()
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Gate):
                m.reset_bias()

    def set_activation_checkpointing(self, enabled: bool = True) -> "ResNet":
        """Recompute each unit's activations in the backward pass instead of storing them
        (training only); outputs, gradients, BN running statistics and dropout masks are unchanged."""
        self.activation_checkpointing = bool(enabled)
        return self

    def units(self):
        for stage in self.stages:
            yield from stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for unit in self.units():
            if recompute and torch.compiler.is_compiling():
                # Dynamo rejects a custom context_fn. It does not need one: it functionalises the
                # running-stat update and applies it once; only pure ops are recomputed (checked
                # with aot_eager in the tests and with inductor by hand).
                x = checkpoint(unit, x, use_reentrant=False)
            elif recompute:
                x = checkpoint(
                    unit,
                    x,
                    use_reentrant=False,
                    context_fn=lambda unit=unit: (contextlib.nullcontext(), _bn_stats_frozen(unit)),
                )
            else:
                x = unit(x)
        return self.head(x)

    def extra_repr(self) -> str:
        return f"spec={self.spec.name}"


class CifarResNet(ResNet):
    """The CIFAR nets (stem `cifar`): 3x3 conv stem, 16/32/64."""

    def __init__(self, spec: ModelSpec, num_classes: int = 10, in_channels: int = 3):
        if spec.stem != "cifar":
            raise ValueError(f"{spec.name} is not a CIFAR net; build it with build_model")
        stem = OrderedDict(
            conv=nn.Conv2d(in_channels, STEM_WIDTH, 3, padding=1, bias=False),
            bn=nn.BatchNorm2d(STEM_WIDTH),
            relu=nn.ReLU(),
        )
        super().__init__(spec, num_classes, stem, STEM_WIDTH, STAGE_WIDTHS)


class ImageNetResNet(ResNet):
    """The ImageNet nets (stem `imagenet`, V1 Table 1): 7x7/2 conv and 3x3/2 max-pool, 64..512.

    With option B and `stride3x3` (bottleneck) these are torchvision's resnet18...resnet152,
    parameter for parameter (`torchvision_compat.from_torchvision_state_dict` maps the names).

    Pre-activation nets use the CIFAR zoo's PreActUnit unchanged: a projection is a bare 1x1 conv
    on the pre-activated input (the authors' resnet-1k-layers unit). fb.resnet.torch's
    preresnet.lua, which trained V2 Table 5's dagger row, instead puts conv + BN on the raw input;
    that costs 2 x width more BN parameters per projection and the same MACs."""

    def __init__(self, spec: ModelSpec, num_classes: int = 1000, in_channels: int = 3):
        if spec.stem != "imagenet":
            raise ValueError(f"{spec.name} is not an ImageNet net; build it with build_model")
        stem = OrderedDict(
            conv=nn.Conv2d(in_channels, IMAGENET_STEM_WIDTH, 7, stride=2, padding=3, bias=False),
            bn=nn.BatchNorm2d(IMAGENET_STEM_WIDTH),
            relu=nn.ReLU(),
            pool=nn.MaxPool2d(3, stride=2, padding=1),
        )
        super().__init__(spec, num_classes, stem, IMAGENET_STEM_WIDTH, IMAGENET_STAGE_WIDTHS)
