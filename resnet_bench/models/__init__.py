"""The network zoo of both papers' CIFAR experiments (see docs/architecture.md for the names).

    build_model(name, num_classes=10, in_channels=3) -> CifarResNet (.stem, .stages, .head)
    parse_model_name(name) -> ModelSpec;  list_models() -> list[ModelSpec]
    model_cost(name, num_classes=10) -> (params, MACs per 32x32 image)
    response_layers(model), conv_layers(model), residual_units(model): analysis hooks
    model.set_activation_checkpointing(True): recompute unit activations in the backward pass
"""

from .cost import model_cost, model_costs
from .networks import CifarResNet
from .probes import conv_layers, residual_units, response_layers
from .registry import REGISTRY, build_model, list_models, model_source
from .spec import ModelNameError, ModelSpec, parse_model_name

__all__ = [
    "CifarResNet",
    "ModelNameError",
    "ModelSpec",
    "REGISTRY",
    "build_model",
    "conv_layers",
    "list_models",
    "model_cost",
    "model_costs",
    "model_source",
    "parse_model_name",
    "residual_units",
    "response_layers",
]
