"""Residual units, one class per figure: V1 Fig. 2 / V2 Fig. 4(a)-(e), plus the plain unit.

A unit is built from a *plan*, the list of its weight layers as (kernel, in, out, stride):
basic = two 3x3, bottleneck = 1x1-3x3-1x1 (stride in the first 1x1, as in the authors'
resnet-1k-layers code and their released Caffe ImageNet models; `stride_in="3x3"` moves it to the
3x3, as torchvision and fb.resnet.torch do), 1layer = one 3x3. The same forward() therefore draws the basic, the
bottleneck and the one-layer version of a figure.

Every unit has `branches(x) -> (shortcut, residual)`: the two summands exactly as they are added
(after any V2 Table 1 scaling/gating/dropout). `forward(x)` is `after_addition(shortcut + residual)`;
`AFTER_ADDITION` names what that is for each class. What the network around a unit needs to know of
it is a class attribute too (as torchvision's `expansion`): `PRE_ACTIVATION` (the unit activates
its own input, so the net's first unit leaves that to the stem), `HEAD` (what the head applies
before pooling: the last unit's sum is not activated yet) and `PROJECTION_BN` (a projection
shortcut gets the BN of the unit's other weight layers). ReLUs are never in-place, so a forward hook on a
response module (see `response_modules`) keeps the value the figure shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .modulation import Unmodulated

Plan = list[tuple[int, int, int, int]]  # (kernel, in_channels, out_channels, stride) per weight layer


def layer_plan(shape: str, in_channels: int, out_channels: int, stride: int, stride_in: str | None = None) -> Plan:
    if shape == "basic":
        return [(3, in_channels, out_channels, stride), (3, out_channels, out_channels, 1)]
    if shape == "bottleneck":
        mid = out_channels // 4
        if stride_in == "3x3":
            return [(1, in_channels, mid, 1), (3, mid, mid, stride), (1, mid, out_channels, 1)]
        return [(1, in_channels, mid, stride), (3, mid, mid, 1), (1, mid, out_channels, 1)]
    if shape == "1layer":
        return [(3, in_channels, out_channels, stride)]
    raise ValueError(f"unknown unit shape {shape!r}; valid: basic, bottleneck, 1layer")


def _convs(plan: Plan) -> nn.ModuleList:
    return nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=k // 2, bias=False) for k, i, o, s in plan)


class Unit(nn.Module):
    AFTER_ADDITION = "nothing"
    PRE_ACTIVATION = False
    HEAD: tuple[str, ...] = ()  # "bn", "relu": layers of the head before its pool, in order
    PROJECTION_BN = True

    def __init__(self, plan: Plan, shortcut: nn.Module | None, modulation: nn.Module | None = None):
        super().__init__()
        self.convs = _convs(plan)
        self.shortcut = shortcut
        self.modulation = modulation if modulation is not None else Unmodulated()

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def response_modules(self) -> list[tuple[str, nn.Module]]:
        """Per 3x3 weight layer, the module whose output is that layer's response: the layer's
        own group as the figure draws it (weight, and the BN drawn right below it if any), taken
        before any ReLU or addition."""
        return [self._response(i) for i, conv in enumerate(self.convs) if conv.kernel_size == (3, 3)]

    def _response(self, i: int) -> tuple[str, nn.Module]:
        return f"bns.{i}", self.bns[i]  # weight -> BN: post-activation units and ReLU-only pre-activation


class PlainUnit(Unit):
    """Plain (V1 Fig. 6 left): the layers of the original unit with the addition removed.

        x -> [conv -> BN -> ReLU] ... -> conv -> BN -> ReLU

    `branches` returns a zero shortcut: a plain net is V2 Table 1's "constant scaling 0".
    """

    AFTER_ADDITION = "ReLU"

    def __init__(self, plan: Plan):
        super().__init__(plan, shortcut=None)
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, _, o, _ in plan)

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)))
        return x

    def branches(self, x):
        r = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            r = bn(conv(r))
            if i < len(self.convs) - 1:
                r = F.relu(r)
        return torch.zeros_like(r), r


class OriginalUnit(Unit):
    """Original unit (V1 Fig. 2, V2 Fig. 4a), post-activation:

        x -> [conv -> BN -> ReLU] ... -> conv -> BN -> (+ h(x)) -> ReLU
    """

    AFTER_ADDITION = "ReLU"

    def __init__(self, plan, shortcut, modulation=None):
        super().__init__(plan, shortcut, modulation)
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, _, o, _ in plan)

    def branches(self, x):
        r = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            r = bn(conv(r))
            if i < len(self.convs) - 1:  # the last BN waits for the addition
                r = F.relu(r)
        return self.modulation(x, self.shortcut(x), r)

    def forward(self, x):
        shortcut, residual = self.branches(x)
        return F.relu(shortcut + residual)


class BNAfterAdditionUnit(Unit):
    """V2 Fig. 4b, BN after addition: the last BN moves from the branch to the sum.

        x -> [conv -> BN -> ReLU] ... -> conv -> (+ h(x)) -> BN -> ReLU
    """

    AFTER_ADDITION = "BN, ReLU"

    def __init__(self, plan, shortcut, modulation=None):
        super().__init__(plan, shortcut, modulation)
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, _, o, _ in plan[:-1])
        self.bn_after_addition = nn.BatchNorm2d(plan[-1][2])

    def branches(self, x):
        r = x
        for conv, bn in zip(self.convs[:-1], self.bns):
            r = F.relu(bn(conv(r)))
        r = self.convs[-1](r)
        return self.modulation(x, self.shortcut(x), r)

    def forward(self, x):
        shortcut, residual = self.branches(x)
        return F.relu(self.bn_after_addition(shortcut + residual))

    def _response(self, i):
        if i == len(self.convs) - 1:  # its BN comes only after the addition
            return f"convs.{i}", self.convs[i]
        return super()._response(i)


class ReLUBeforeAdditionUnit(Unit):
    """V2 Fig. 4c, ReLU before addition: the branch can only add non-negative values.

        x -> [conv -> BN -> ReLU] ... -> conv -> BN -> ReLU -> (+ h(x))
    """

    AFTER_ADDITION = "nothing"

    def __init__(self, plan, shortcut, modulation=None):
        super().__init__(plan, shortcut, modulation)
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, _, o, _ in plan)

    def branches(self, x):
        r = x
        for conv, bn in zip(self.convs, self.bns):
            r = F.relu(bn(conv(r)))
        return self.modulation(x, self.shortcut(x), r)

    def forward(self, x):
        shortcut, residual = self.branches(x)
        return shortcut + residual


class PreActUnit(Unit):
    """Full pre-activation unit (V2 Fig. 4e):

        x -> BN -> ReLU -> conv -> [BN -> ReLU -> conv] ... -> (+ h(x))

    `first=True` for the net's first unit: the stem has already applied BN-ReLU before the split
    (V2 appendix), so its pre-activation is the identity. A parametric shortcut takes the
    pre-activated input (see shortcuts.py).
    """

    AFTER_ADDITION = "nothing"
    PRE_ACTIVATION = True
    HEAD = ("bn", "relu")
    PROJECTION_BN = False  # a bare 1x1 conv on the pre-activated input (see shortcuts.py)

    def __init__(self, plan, shortcut, modulation=None, first: bool = False):
        super().__init__(plan, shortcut, modulation)
        in_channels = plan[0][1]
        self.preact = nn.Identity() if first else nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU())
        self.bns = nn.ModuleList(nn.BatchNorm2d(i) for _, i, _, _ in plan[1:])

    def branches(self, x):
        a = self.preact(x)
        r = self.convs[0](a)
        for bn, conv in zip(self.bns, self.convs[1:]):
            r = conv(F.relu(bn(r)))
        shortcut = self.shortcut(a if self.shortcut.parametric else x)
        return self.modulation(x, shortcut, r)

    def forward(self, x):
        shortcut, residual = self.branches(x)
        return shortcut + residual

    def _response(self, i):
        # The BN after this conv belongs to the *next* layer's pre-activation, so the layer's own
        # output is the bare conv (for the last conv: the summand itself, before the addition).
        return f"convs.{i}", self.convs[i]


class ReLUOnlyPreActUnit(Unit):
    """V2 Fig. 4d, ReLU-only pre-activation (BN stays after the weight):

        x -> ReLU -> conv -> BN -> [ReLU -> conv -> BN] ... -> (+ h(x))
    """

    AFTER_ADDITION = "nothing"
    PRE_ACTIVATION = True
    HEAD = ("relu",)

    def __init__(self, plan, shortcut, modulation=None, first: bool = False):
        super().__init__(plan, shortcut, modulation)
        self.preact = nn.Identity() if first else nn.ReLU()
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, _, o, _ in plan)

    def branches(self, x):
        a = self.preact(x)
        r = self.bns[0](self.convs[0](a))
        for conv, bn in zip(self.convs[1:], self.bns[1:]):
            r = bn(conv(F.relu(r)))
        shortcut = self.shortcut(a if self.shortcut.parametric else x)
        return self.modulation(x, shortcut, r)

    def forward(self, x):
        shortcut, residual = self.branches(x)
        return shortcut + residual
