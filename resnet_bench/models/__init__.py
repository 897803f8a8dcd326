"""The network zoo of both papers' CIFAR experiments (see docs/architecture.md for the names).

    build_model(spec_or_name, num_classes=10, in_channels=3) -> CifarResNet (.stem, .stages, .head)
    parse_model_name(name) -> ModelSpec;  list_models() -> list[ModelSpec]
    model_cost(spec_or_name, num_classes=10) -> (params, MACs per 32x32 image)
    response_layers(model), conv_layers(model), residual_units(model): analysis hooks
    model.set_activation_checkpointing(True): recompute unit activations in the backward pass

The names (`resnet_bench.models.spec`) import without torch: the rest is imported on first use,
so the pipeline and the tables can parse model names without loading torch.
"""

from importlib import import_module

from .spec import ModelNameError, ModelSpec, parse_model_name

_LAZY = {
    "model_cost": ".cost", "model_costs": ".cost",
    "CifarResNet": ".networks",
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
