"""The named networks of both papers' CIFAR and ImageNet experiments, and `build_model`.

`REGISTRY` is the catalogue of the networks the papers name (where each appears); `build_model`
builds any valid name, dispatching on the stem (CIFAR or ImageNet layout); the network imports the
unit class the family declares for the variant (`networks.unit_class`, from `families.FAMILIES`).
Torch is imported only by `build_model`, so the catalogue can be listed without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .spec import ModelSpec, parse_model_name

if TYPE_CHECKING:
    from .networks import ResNet

V1_DEPTHS = (20, 32, 44, 56, 110, 1202)


def _registry() -> dict[str, str]:
    """name -> where in the papers the network appears."""
    reg: dict[str, str] = {}
    for d in (20, 32, 44, 56):
        reg[f"plain-basic-{d}"] = "V1 Fig. 1, 6 left"
    reg["plain-basic-110"] = "V1 Fig. 6 caption (>60% error); V2 Table 1 scaling 0"
    for d in V1_DEPTHS:
        reg[f"v1-basic-{d}"] = "V1 Table 6" + ("; V2 Tables 1-3 original" if d == 110 else "")
    for d in V1_DEPTHS:
        reg[f"v1-basic-{d}-optB"] = "V1 Sec. 3.3 option B (V1 Table 3 on ImageNet)"
    table1 = {
        "scale-s0.5": "V2 Table 1 constant scaling 0.5 / 1",
        "scale-s0.5-f0.5": "V2 Table 1 constant scaling 0.5 / 0.5",
        "exgate-b0": "V2 Table 1 exclusive gating, b_g = 0 (0..-5 fail)",
        "exgate-b-5": "V2 Table 1 exclusive gating, b_g = -5",
        "exgate-b-6": "V2 Table 1 exclusive gating, b_g = -6",
        "exgate-b-7": "V2 Table 1 exclusive gating, b_g = -7",
        "scgate-b0": "V2 Table 1 shortcut-only gating, b_g = 0",
        "scgate-b-6": "V2 Table 1 shortcut-only gating, b_g = -6",
        "optC": "V2 Table 1 1x1 conv shortcut (V1 option C)",
        "dropsc": "V2 Table 1 dropout 0.5 on the shortcut",
    }
    for variant, note in table1.items():
        reg[f"v1-basic-110-{variant}"] = note
    reg["v1-basic-110-bnafter"] = "V2 Table 2 (b) BN after addition"
    reg["v1-basic-110-relubefore"] = "V2 Table 2 (c) ReLU before addition"
    reg["v2-basic-110-reluonly"] = "V2 Table 2 (d) ReLU-only pre-activation"
    reg["v2-basic-110"] = "V2 Tables 2-3 full pre-activation"
    reg["v1-basic-110-1layer"] = "V2 Table 3 ResNet-110(1layer), original"
    reg["v2-basic-110-1layer"] = "V2 Table 3 ResNet-110(1layer), pre-activation"
    reg["v1-bottleneck-164"] = "V2 Tables 2-4 original"
    reg["v1-bottleneck-164-bnafter"] = "V2 Table 2 (b) BN after addition"
    reg["v1-bottleneck-164-relubefore"] = "V2 Table 2 (c) ReLU before addition"
    reg["v2-bottleneck-164-reluonly"] = "V2 Table 2 (d) ReLU-only pre-activation"
    reg["v2-bottleneck-164"] = "V2 Tables 2-4 full pre-activation"
    reg["v1-bottleneck-1001"] = "V2 Tables 3-4 original, Fig. 1"
    reg["v2-bottleneck-1001"] = "V2 Tables 3-4 full pre-activation, Fig. 1"
    reg.update(_imagenet_registry())
    return reg


def _imagenet_registry() -> dict[str, str]:
    """The ImageNet nets (V1 Table 1 layouts), after the CIFAR ones."""
    reg: dict[str, str] = {}
    for d in (18, 34):
        reg[f"imagenet-plain-basic-{d}"] = "V1 Table 2, Fig. 4 left" + ("; Table 3" if d == 34 else "")
    for d in (18, 34):
        reg[f"imagenet-v1-basic-{d}"] = "V1 Table 2, Fig. 4 right (option A)" + ("; Table 3 A" if d == 34 else "")
    reg["imagenet-v1-basic-34-optB"] = "V1 Tables 3-4 ResNet-34 B"
    reg["imagenet-v1-basic-34-optC"] = "V1 Tables 3-4 ResNet-34 C"
    reg["imagenet-v1-bottleneck-50"] = "V1 Tables 3-4"
    reg["imagenet-v1-bottleneck-101"] = "V1 Tables 3-4; V2 Sec. 5 original (vs BN after addition)"
    reg["imagenet-v1-bottleneck-101-bnafter"] = "V2 Sec. 5 text, BN after addition"
    reg["imagenet-v1-bottleneck-152"] = "V1 Tables 3-4; V2 Table 5 original"
    reg["imagenet-v1-bottleneck-200"] = "V2 Table 5 original"
    for d in (18, 34, 50, 101):
        block = "basic" if d < 50 else "bottleneck"
        reg[f"imagenet-v2-{block}-{d}"] = "pre-activation at a V1 Table 1 depth (not in V2's tables)"
    reg["imagenet-v2-bottleneck-152"] = "V2 Table 5 pre-activation"
    reg["imagenet-v2-bottleneck-200"] = "V2 Table 5 pre-activation"
    reg["imagenet-v1-basic-18-optB"] = "torchvision resnet18 (not in the papers' tables)"
    for d in (50, 101, 152):
        reg[f"imagenet-v1-bottleneck-{d}-stride3x3"] = f"torchvision resnet{d}: stride in the 3x3 (not the papers')"
    return reg


REGISTRY: dict[str, str] = _registry()


def list_models() -> list[ModelSpec]:
    """Every named network of both papers (CIFAR, then ImageNet), in a stable order."""
    return [parse_model_name(name) for name in REGISTRY]


def model_source(spec_or_name: ModelSpec | str) -> str:
    """Where the papers use this network ('' for a valid but unnamed one)."""
    return REGISTRY.get(parse_model_name(spec_or_name).name, "")


def build_model(spec: ModelSpec | str, num_classes: int | None = None, in_channels: int = 3) -> ResNet:
    """A freshly initialised network; any valid name works, not only the registered ones.
    `num_classes` defaults to 10 for a CIFAR net and 1000 for an ImageNet net."""
    from .networks import CifarResNet, ImageNetResNet
    spec = parse_model_name(spec)
    cls = CifarResNet if spec.stem == "cifar" else ImageNetResNet
    return cls(spec, num_classes=spec.default_num_classes if num_classes is None else num_classes,
               in_channels=in_channels)
