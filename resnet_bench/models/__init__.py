"""The network zoo of both papers' CIFAR and ImageNet experiments (docs/architecture.md: the names).

    build_model(spec_or_name, num_classes=None, in_channels=3) -> CifarResNet | ImageNetResNet
        (.stem, .stages, .head; num_classes defaults to 10 for CIFAR nets, 1000 for ImageNet nets)
    parse_model_name(name) -> ModelSpec;  list_models() -> list[ModelSpec]
    model_cost(spec_or_name) -> (params, MACs per 32x32 CIFAR / 224x224 ImageNet image)
    conv_output_elements(spec_or_name) -> conv output elements per such image (memory estimates)
    from_torchvision_state_dict(sd): torchvision resnet18...152 weights for TORCHVISION_EQUIVALENTS
    response_layers(model), conv_layers(model), residual_units(model): analysis hooks
    model.set_activation_checkpointing(True): recompute unit activations in the backward pass

The names (`resnet_bench.models.spec`) import without torch: the rest is imported on first use,
so the pipeline and the tables can parse model names without loading torch.
"""

from importlib import import_module

from .spec import ModelNameError, ModelSpec, parse_model_name

_LAZY = {
    "model_cost": ".cost", "model_costs": ".cost", "conv_output_elements": ".cost",
    "CifarResNet": ".networks", "ImageNetResNet": ".networks", "ResNet": ".networks",
    "from_torchvision_state_dict": ".torchvision_compat", "torchvision_equivalent": ".torchvision_compat",
    "conv_layers": ".probes", "residual_units": ".probes", "response_layers": ".probes",
    "REGISTRY": ".registry", "build_model": ".registry", "list_models": ".registry",
    "model_source": ".registry",
}

__all__ = sorted([*_LAZY, "ModelNameError", "ModelSpec", "parse_model_name"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
