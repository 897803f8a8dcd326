"""torchvision's ResNets as networks of this zoo: which name is which, and their weights.

torchvision's `resnet18`/`resnet34` are `imagenet-v1-basic-N-optB` and its `resnet50`/`101`/`152`
`imagenet-v1-bottleneck-N-stride3x3` (`spec.TORCHVISION_EQUIVALENTS`): V1 Table 1's layouts with
a 1x1 projection + BN where the shape changes (its `downsample`, V1 option B) and, in the bottleneck
nets, the stride in the 3x3 ("ResNet v1.5"; the papers put it in the first 1x1). Module for module
the networks are the same, so a torchvision state_dict loads after renaming its keys:

    conv1 / bn1                    -> stem.conv / stem.bn
    layer{s}.{u}.conv{i} / bn{i}   -> stages.{s-1}.{u}.convs.{i-1} / bns.{i-1}
    layer{s}.{u}.downsample.{j}    -> stages.{s-1}.{u}.shortcut.{j}
    fc                             -> head.fc

Torch-free: this only renames keys (torchvision is not imported).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .spec import TORCHVISION_EQUIVALENTS, ModelSpec, parse_model_name

_UNIT = re.compile(r"layer(?P<s>[1-4])\.(?P<u>\d+)\.(?P<rest>.+)")
_LAYER = re.compile(r"(?P<kind>conv|bn)(?P<i>[1-3])\.(?P<param>.+)")


def torchvision_equivalent(name: str) -> ModelSpec:
    """The spec of torchvision's `resnet18` ... `resnet152` (KeyError for any other name)."""
    return parse_model_name(TORCHVISION_EQUIVALENTS[name])


def torchvision_key(key: str) -> str:
    """A torchvision ResNet state_dict key -> the key of the same tensor here."""
    for old, new in (("conv1.", "stem.conv."), ("bn1.", "stem.bn."), ("fc.", "head.fc.")):
        if key.startswith(old):
            return new + key[len(old):]
    m = _UNIT.fullmatch(key)
    if m is None:
        raise KeyError(f"not a torchvision ResNet key: {key!r}")
    prefix = f"stages.{int(m['s']) - 1}.{m['u']}."
    rest = m["rest"]
    if rest.startswith("downsample."):
        return prefix + "shortcut." + rest[len("downsample."):]
    layer = _LAYER.fullmatch(rest)
    if layer is None:
        raise KeyError(f"not a torchvision ResNet key: {key!r}")
    kind = "convs" if layer["kind"] == "conv" else "bns"
    return f"{prefix}{kind}.{int(layer['i']) - 1}.{layer['param']}"


def from_torchvision_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A torchvision ResNet state_dict with its keys renamed for `build_model(equivalent)`."""
    return {torchvision_key(k): v for k, v in state_dict.items()}
