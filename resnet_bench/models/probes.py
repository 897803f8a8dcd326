"""Where to look inside a network: layer responses (V1 Fig. 7), conv layers (gradient flow),
residual units (identity path). Names are `model.named_modules()` names, in network order."""

from __future__ import annotations

from torch import nn

from .units import Unit


def residual_units(model: nn.Module) -> list[tuple[str, Unit]]:
    """Every unit, in order, as ('stages.<s>.<u>', unit); each has `branches(x)`."""
    return [(f"stages.{s}.{u}", unit) for s, stage in enumerate(model.stages) for u, unit in enumerate(stage)]


def response_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """For each 3x3 conv layer in order (stem first), the module whose forward output is that
    layer's response as V1 Fig. 7 defines it: "after BN and before other nonlinearity
    (ReLU/addition)". Register forward hooks on these modules to collect the responses.

    Post-activation units (plain, v1, V2 Fig. 4b/4c) and ReLU-only pre-activation (4d): the BN that
    follows the conv. Where no BN follows before the addition (4b's last conv) and in full
    pre-activation units (4e): the conv itself, because there the next BN is the *next* layer's
    pre-activation (or there is none before the addition), so the layer's own output is the bare
    weight layer's. For the stem it is the stem's BN in every family.
    """
    layers = [("stem.bn", model.stem.bn)]
    for prefix, unit in residual_units(model):
        layers += [(f"{prefix}.{name}", module) for name, module in unit.response_modules()]
    return layers


def conv_layers(model: nn.Module, include_shortcuts: bool = False) -> list[tuple[str, nn.Conv2d]]:
    """The weight layers along the depth, in order: stem conv, then each unit's convs (1x1 and 3x3).
    With `include_shortcuts`, projection-shortcut and gate convs too (right after their unit's)."""
    layers = [("stem.conv", model.stem.conv)]
    for prefix, unit in residual_units(model):
        layers += [(f"{prefix}.convs.{i}", conv) for i, conv in enumerate(unit.convs)]
        if include_shortcuts:
            for part in ("shortcut", "modulation"):
                sub = getattr(unit, part)
                if sub is not None:
                    layers += [
                        (f"{prefix}.{part}.{n}", m) for n, m in sub.named_modules() if isinstance(m, nn.Conv2d)
                    ]
    return layers
