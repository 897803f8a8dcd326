"""What multiplies each of the two summands before the addition (V2 Table 1, Sec. 3.1).

A modulation maps (unit input x, shortcut h(x), residual F(x)) to the two summands that are added.
It is applied inside `branches()`, so the summands it returns are exactly what the unit adds.
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import Modulation


class Unmodulated(nn.Module):
    """The original unit: shortcut x 1, F x 1."""

    def forward(self, x, shortcut, residual):
        return shortcut, residual


class ConstantScaling(nn.Module):
    """Shortcut x lambda, F x mu, both frozen (V2 Table 1: 0/1 is a plain net, 0.5/1, 0.5/0.5)."""

    def __init__(self, on_shortcut: float, on_residual: float = 1.0):
        super().__init__()
        self.on_shortcut, self.on_residual = float(on_shortcut), float(on_residual)

    def forward(self, x, shortcut, residual):
        return self.on_shortcut * shortcut, self.on_residual * residual

    def extra_repr(self) -> str:
        return f"shortcut={self.on_shortcut:g}, residual={self.on_residual:g}"


class Gate(nn.Module):
    """g(x) = sigmoid(1x1 conv(x) + b_g), one gate value per output channel and position.

    The conv carries the unit's stride and output width so g matches both summands. b_g starts at
    `bias_init` (the paper's searched hyper-parameter, in the variant name); the weights get the
    same He init as every other conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias_init: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=True)
        self.bias_init = float(bias_init)

    def reset_bias(self) -> None:
        nn.init.constant_(self.conv.bias, self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))

    def extra_repr(self) -> str:
        return f"bias_init={self.bias_init:g}"


class ExclusiveGating(nn.Module):
    """Shortcut x (1 - g), F x g (Highway-style, V2 Eq. 6)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias_init: float):
        super().__init__()
        self.gate = Gate(in_channels, out_channels, stride, bias_init)

    def forward(self, x, shortcut, residual):
        g = self.gate(x)
        return (1 - g) * shortcut, g * residual


class ShortcutOnlyGating(nn.Module):
    """Shortcut x (1 - g), F x 1 (V2 Eq. 7)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias_init: float):
        super().__init__()
        self.gate = Gate(in_channels, out_channels, stride, bias_init)

    def forward(self, x, shortcut, residual):
        return (1 - self.gate(x)) * shortcut, residual


class ShortcutDropout(nn.Module):
    """Dropout on the shortcut. nn.Dropout rescales kept entries by 1/(1-p) during training
    (as Caffe's dropout does), so the shortcut is the identity in expectation and at test time."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(p)

    def forward(self, x, shortcut, residual):
        return self.dropout(shortcut), residual


def make_modulation(modulation: Modulation, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The module for a spec's `modulation` (`Unmodulated` for all non-Table-1 variants)."""
    if modulation.kind == "scale":  # scale-s<l>[-f<m>]
        return ConstantScaling(modulation.shortcut, modulation.residual)
    if modulation.kind == "exgate":
        return ExclusiveGating(in_channels, out_channels, stride, modulation.gate_bias)
    if modulation.kind == "scgate":
        return ShortcutOnlyGating(in_channels, out_channels, stride, modulation.gate_bias)
    if modulation.kind == "dropsc":
        return ShortcutDropout(modulation.dropout)
    return Unmodulated()
