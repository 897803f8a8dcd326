"""Cluster resources of a training job, growing with the network's cost at the data's image size.

Estimates, not measurements: the scheduler needs an upper bound before the job runs. Runtime
is the schedule's training FLOPs over an assumed sustained throughput, with a safety factor;
memory is the activations a training step keeps for backward at the recipe's batch size.

Both come from the network itself (`models.cost`: MACs and conv output elements measured on the
'meta' device at the net's own input, 32x32 CIFAR or 224x224 ImageNet, where the ImageNet stem's
first maps are 112x112) and are scaled by the area of the dataset's training images
(`DatasetKind.known_image_size`; a folder without `image_size` is taken at the net's own size).
Convolutions, global pooling and a stride-32 stem keep both linear in the area for sides that
are multiples of 32.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from resnet_bench.models import conv_output_elements, model_cost
from resnet_bench.models.spec import ModelSpec, parse_model_name
from resnet_bench.pipeline.launch import RunLayout
from resnet_bench.train.recipe import Recipe

# Tensors kept for backward per conv output: the conv's output (BN's input), BN's output
# (ReLU's input) and ReLU's output, plus one for sums, shortcuts and the autograd workspace.
SAVED_PER_CONV_OUTPUT = 4


def training_flops(spec: ModelSpec, recipe: Recipe,
                   image_size: tuple[int, int] | int | None = None) -> float:
    """Forward + backward (~3x the forward) of every image of the schedule, 2 FLOPs per MAC."""
    _, macs = model_cost(spec)
    return recipe.iterations * recipe.batch_size * macs * spec.area_scale(image_size) * 2 * 3


def runtime_min(model: ModelSpec | str, recipe: Recipe, device: str,
                settings: Mapping[str, Any], attempt: int = 1,
                image_size: tuple[int, int] | int | None = None, devices: int = 1) -> int:
    """Minutes; `devices` ranks of a distributed run share the schedule's FLOPs (perfect
    scaling assumed: the safety factor covers the all-reduce). `settings`: the config's
    `resources`, its defaults filled in by the config schema."""
    tflops = settings["assumed_tflops"]["gpu" if device == "gpu" else "cpu"] * devices
    flops = training_flops(parse_model_name(model), recipe, image_size)
    seconds = flops / (tflops * 1e12) * settings["safety"]
    if recipe.activation_checkpointing or attempt > 1:
        seconds *= 1.4  # recomputing activations costs about one more forward
    return max(int(settings["min_runtime_min"]), math.ceil(seconds / 60))


def activation_bytes(model: ModelSpec | str, recipe: Recipe,
                     image_size: tuple[int, int] | int | None = None) -> float:
    """What one training step keeps for backward: the measured conv outputs of the net at the
    dataset's image size, times the tensors saved per output, per image of the batch."""
    spec = parse_model_name(model)
    elements = conv_output_elements(spec) * spec.area_scale(image_size)
    per_element = 2 if recipe.precision == "bf16" else 4
    act = elements * SAVED_PER_CONV_OUTPUT * per_element * recipe.batch_size
    return act / 8 if recipe.activation_checkpointing else act


def mem_mb(model: ModelSpec | str, recipe: Recipe, settings: Mapping[str, Any],
           attempt: int = 1, image_size: tuple[int, int] | int | None = None,
           ranks: int = 1) -> int:
    """Host memory: the dataset and framework, plus the activations when training on CPU.

    A retry asks for more, never less: a job killed for host memory must not be resubmitted
    with a smaller request (GPU memory is handled in-process by activation checkpointing).
    `ranks`: processes of a distributed run on one node (sbatch --mem is per node); each loads
    the data set and the framework, and their batches together are at most the recipe's.
    """
    act = activation_bytes(model, recipe, image_size)
    return int((settings["base_mem_mb"] * ranks + act / 2**20) * (1 + 0.5 * (attempt - 1)))


# --------------------------------------------------------------------------- a job's devices
#
# The train rule's `gpu`, `gres`, `nodes` and `threads` from the run layout (launch.layout).
# `gpu` counts GPU slots of the local pool (profiles/local, --resources gpu=N): every
# single-process training claims one when the host has GPUs (resnet_bench/infra/gpu.py), a run of N
# GPUs claims N, a CPU run (device: cpu, or several CPU ranks) none. The Slurm profiles zero
# it (an integer `gpu` becomes sbatch --gpus, summed over a pack) and Slurm gets `gres` (per
# node) and `nodes`.


def local_gpus(layout: RunLayout) -> int:
    return layout.world_size * layout.gpus_per_rank


def gres(layout: RunLayout) -> str | None:
    """sbatch --gres, per node: one GPU per single-process training, the node's share of a
    multi-GPU run, none for a CPU run (device: cpu, or CPU ranks)."""
    return f"gpu:{layout.gpus_per_node}" if layout.gpus_per_rank else None


def nodes(layout: RunLayout) -> int | None:
    """sbatch --nodes for a run across nodes; unset otherwise (an integer is summed over a
    runs_per_gpu pack, so a 1 would become the pack's size)."""
    return layout.nodes if layout.nodes > 1 else None


# A cluster job gets at most --cores CPUs (the profile's `cores`): a job that needs more would
# get fewer, and Snakemake stacks a pack's trainings in series to fit.


def cluster_cores_problem(layout: RunLayout, runs_per_gpu: int, threads_per_run: int,
                          cores: int) -> str | None:
    """Why a training job would not fit a cluster job of `cores` CPUs; None when it does."""
    if layout.distributed and layout.threads_per_node > cores:
        return (f"a run's {layout.ranks_per_node} ranks per node x threads_per_run: "
                f"{layout.threads_per_rank} exceed --cores {cores} (the profile's `cores`): "
                "Slurm would give the job fewer CPUs; raise `cores`")
    if runs_per_gpu > 1 and runs_per_gpu * threads_per_run > cores:
        return (f"runs_per_gpu: {runs_per_gpu} x threads_per_run: {threads_per_run} exceeds "
                f"--cores {cores} (the profile's `cores`): a pack would train one run at a time")
    return None


def pack_components(given: Mapping[str, int], runs_per_gpu: int) -> dict[str, int]:
    """Snakemake's group components with the `gpupack` group at runs_per_gpu trainings a job.

    Set by the workflow while the DAG is built, not on the command line: the Slurm plugin passes
    no --group-components to the snakemake inside each job (docs/cluster.md)."""
    if given.get("gpupack", runs_per_gpu) != runs_per_gpu:
        raise ValueError(f"--group-components gpupack={given['gpupack']} contradicts runs_per_gpu: "
                         f"{runs_per_gpu}; set only runs_per_gpu")
    return {**given, "gpupack": runs_per_gpu}
