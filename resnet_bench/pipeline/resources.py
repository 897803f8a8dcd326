"""Cluster resources of a training job, growing with the network's cost.

Estimates, not measurements: the scheduler needs an upper bound before the job runs. Runtime
is the schedule's training FLOPs over an assumed sustained throughput, with a safety factor;
memory is the activations a depth-d net keeps for backward at the recipe's batch size.
"""

from __future__ import annotations

import math
from typing import Any

from resnet_bench.models import model_cost
from resnet_bench.models.spec import ModelSpec, parse_model_name
from resnet_bench.pipeline.launch import RunLayout
from resnet_bench.train.recipe import Recipe

DEFAULTS = {
    # Sustained training throughput assumed per device; the 16-64 channel CIFAR nets are
    # memory-bound, so this is far below any GPU's peak. Override per cluster in the config.
    "assumed_tflops": {"gpu": 20.0, "cpu": 0.05},
    "safety": 2.0,
    "min_runtime_min": 10,
    "base_mem_mb": 3000,
}


def training_flops(spec: ModelSpec, recipe: Recipe, image_size: int = 32) -> float:
    _, macs = model_cost(spec)
    scale = (image_size / 32) ** 2
    return recipe.iterations * recipe.batch_size * macs * scale * 2 * 3


def runtime_min(model: ModelSpec | str, recipe: Recipe, device: str,
                settings: dict[str, Any] | None = None, attempt: int = 1, devices: int = 1) -> int:
    """Minutes; `devices` ranks of a distributed run share the schedule's FLOPs (perfect
    scaling assumed: the safety factor covers the all-reduce)."""
    s = {**DEFAULTS, **(settings or {})}
    tflops = s["assumed_tflops"]["gpu" if device == "gpu" else "cpu"] * devices
    seconds = training_flops(parse_model_name(model), recipe) / (tflops * 1e12) * s["safety"]
    if recipe.activation_checkpointing or attempt > 1:
        seconds *= 1.4  # recomputing activations costs about one more forward
    return max(int(s["min_runtime_min"]), math.ceil(seconds / 60))


def mem_mb(model: ModelSpec | str, recipe: Recipe, settings: dict[str, Any] | None = None,
           attempt: int = 1, ranks: int = 1) -> int:
    """Host memory: the dataset and framework, plus the activations when training on CPU.

    A retry asks for more, never less: a job killed for host memory must not be resubmitted
    with a smaller request (GPU memory is handled in-process by activation checkpointing).
    `ranks`: processes of a distributed run on one node (sbatch --mem is per node); each loads
    the data set and the framework, and their batches together are at most the recipe's.
    """
    s = {**DEFAULTS, **(settings or {})}
    spec = parse_model_name(model)
    # ~5 stored activations of a 16x32x32 fp32 map per layer and image.
    per_image_layer = 5 * 16 * 32 * 32 * 4
    act = spec.depth * recipe.batch_size * per_image_layer
    if recipe.precision == "bf16":
        act //= 2
    if recipe.activation_checkpointing:
        act //= 8
    return int((s["base_mem_mb"] * ranks + act / 2**20) * (1 + 0.5 * (attempt - 1)))


# --------------------------------------------------------------------------- a job's devices
#
# The train rule's `gpu`, `gres`, `nodes` and `threads` from the run layout (launch.layout).
# `gpu` counts GPU slots of the local pool (profiles/local, --resources gpu=N): every
# single-process training claims one when the host has GPUs (resnet_bench/gpu.py), a run of N
# GPUs claims N, a CPU run of several ranks none. The Slurm profiles zero it (an integer `gpu`
# becomes sbatch --gpus, summed over a pack) and Slurm gets `gres` (per node) and `nodes`.


def local_gpus(layout: RunLayout) -> int:
    if layout.distributed:
        return layout.world_size * layout.gpus_per_rank
    return 1


def gres(layout: RunLayout) -> str | None:
    """sbatch --gres, per node: one GPU per single-process training (as every training job
    asked before multi-GPU runs), the node's share of a multi-GPU run, none for CPU ranks."""
    if layout.distributed:
        return f"gpu:{layout.gpus_per_node}" if layout.gpus_per_rank else None
    return "gpu:1"


def nodes(layout: RunLayout) -> int | None:
    """sbatch --nodes for a run across nodes; unset otherwise (an integer is summed over a
    runs_per_gpu pack, so a 1 would become the pack's size)."""
    return layout.nodes if layout.nodes > 1 else None
