"""Shortcut connections h(x) of a residual unit (V1 Sec. 3.3, options A/B/C).

Every shortcut has `parametric`: pre-activation units feed a parametric shortcut (a weight layer)
their pre-activated input, as the authors' resnet-1k-layers code does, but keep parameter-free
shortcuts on the raw input so the identity path stays clean (V2 Sec. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import SHORTCUT_OPTIONS


class IdentityShortcut(nn.Module):
    parametric = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ZeroPadShortcut(nn.Module):
    """Option A where the shape changes: parameter-free, so the net keeps its plain twin's size.

    Of the three readings of "identity with extra zero entries padded" in public reimplementations this is
    the strided one: keep every second pixel (`x[:, :, ::2, ::2]`, i.e. a 1x1 identity "conv" with
    stride 2, as V1 says shortcuts are "performed with a stride of 2") and append the zero channels
    *after* the existing ones. Appending keeps input channel i at output channel i, so the identity
    path can be traced through the whole net; averaging (2x2 pool) would already be a filter.
    """

    parametric = False

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot shrink channels ({in_channels} -> {out_channels})")
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # zeros at the end of the channel axis

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels={self.extra}"


class ProjectionShortcut(nn.Sequential):
    """1x1 convolution with the unit's stride (options B/C), followed by BN where the unit's weight
    layers are followed by BN (post-activation units, ReLU-only pre-activation); a full
    pre-activation unit's projection is a bare conv on the pre-activated input (V2, resnet-1k-layers)."""

    parametric = True

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn: bool):
        layers = [nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels))
        super().__init__(*layers)


def make_shortcut(option: str, in_channels: int, out_channels: int, stride: int, bn: bool) -> nn.Module:
    """Option A: identity / zero-pad; B: identity / projection where the shape changes; C: projection always."""
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"unknown shortcut option {option!r}; valid: {', '.join(SHORTCUT_OPTIONS)}")
    same_shape = in_channels == out_channels and stride == 1
    if option == "optC" or (option == "optB" and not same_shape):
        return ProjectionShortcut(in_channels, out_channels, stride, bn)
    return IdentityShortcut() if same_shape else ZeroPadShortcut(in_channels, out_channels, stride)
