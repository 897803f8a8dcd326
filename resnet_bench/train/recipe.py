"""The training recipe: every knob of the papers' CIFAR recipe as data, plus the lr schedule.

Defaults are He et al. 2015, Sec. 4.2: SGD momentum 0.9, weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k, pad-4 crop + flip, per-pixel mean.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

from resnet_bench.infra.checks import (MAX_IMAGES, NAME_PATTERN, Bool, Choice, ConfigError, Int, Num,
                                 Rule, Text, flag, integer, refuse)
from resnet_bench.infra.checks import seed as check_seed
from resnet_bench.models.spec import ModelSpec, parse_model_name
from resnet_bench.record import RECIPE_SPEED_ONLY, recipe_hash

__all__ = ["KNOBS", "NORMALIZATIONS", "PRECISIONS", "WARMUPS", "Knob", "Recipe", "RecipeError",
           "RunConfig"]

# Far above any of the papers' schedules (64k iterations, batch 128), low enough that a typo
# (an extra 000) is refused instead of queued as a months-long job.
MAX_ITERATIONS = 10_000_000
MAX_BATCH = 1_000_000
WARMUPS = ("none", "v1", "v2")
NORMALIZATIONS = ("pixel", "channel")
PRECISIONS = ("fp32", "bf16")


class RecipeError(ConfigError):
    """A recipe value that cannot be trained with."""


class Milestones(Rule):
    """Strictly increasing iterations: a repeated milestone would decay the lr twice at once."""

    def check(self, key: str, value: Any, where: str = "") -> tuple[int, ...]:
        allowed = f"a strictly increasing list of integers in 1..{MAX_ITERATIONS}"
        if not isinstance(value, (list, tuple)):
            raise refuse(key, value, allowed, where)
        try:
            out = tuple(integer(key, m, 1, MAX_ITERATIONS) for m in value)
        except ConfigError:
            raise refuse(key, list(value), allowed, where) from None
        if any(a >= b for a, b in zip(out, out[1:])):
            raise refuse(key, list(value), allowed, where)
        return out

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "uniqueItems": True,
                "items": {"type": "integer", "minimum": 1, "maximum": MAX_ITERATIONS}}

    def cli(self) -> dict[str, Any]:
        return {"type": int, "nargs": "*"}

    def args(self, key: str, value: Any, where: str = "") -> list[str]:
        return [flag(key), *map(str, value)]


@dataclass(frozen=True)
class Knob:
    """One recipe knob, declared by a `knob(...)` field of `Recipe`: its rule (type and range),
    default and help; the `resnet-bench train` flag, the config schema's entry and the checks
    follow from it. `recorded_when_set`: left out of the recorded recipe (and so out of every
    hash) at its default. Whether it is speed-only (out of the run's identity) is the run
    record's rule, `record.RECIPE_SPEED_ONLY`, which the tables apply without the trainer."""

    name: str
    rule: Rule
    default: Any
    help: str
    recorded_when_set: bool = False

    @property
    def speed_only(self) -> bool:
        return self.name in RECIPE_SPEED_ONLY

    @property
    def flag(self) -> str:
        return flag(self.name)

    def schema(self) -> dict[str, Any]:
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {**self.rule.schema(), "description": f"{self.help} [{default}]"}


def knob(rule: Rule, default: Any, help: str, *, recorded_when_set: bool = False) -> Any:
    """A recipe field: its rule, default and help text (`resnet-bench train --help`)."""
    return field(default=default, metadata={"rule": rule, "help": help,
                                            "recorded_when_set": recorded_when_set})


_ITERS, _BATCH = Int(1, MAX_ITERATIONS), Int(1, MAX_BATCH)


@dataclass(frozen=True)
class Recipe:
    """Every knob of a run's training, each checked by its rule when a recipe is made (`where`
    prefixes the refusal, e.g. the pipeline's `recipes.quick key`)."""

    iterations: int = knob(_ITERS, 64_000, "total SGD iterations (paper: 64000)")
    milestones: tuple[int, ...] = knob(Milestones(), (32_000, 48_000),
                "iterations at which lr is multiplied by --lr-decay (paper: 32000 48000)")
    lr: float = knob(Num(0, lo_open=True), 0.1, "base learning rate (paper: 0.1)")
    lr_decay: float = knob(Num(0, 1, lo_open=True), 0.1,
                "factor applied at each milestone (paper: 0.1)")
    momentum: float = knob(Num(0, 1, hi_open=True), 0.9, "SGD momentum (paper: 0.9)")
    weight_decay: float = knob(Num(0), 1e-4, "L2 weight decay on all parameters (paper: 1e-4)")
    batch_size: int = knob(_BATCH, 128, "mini-batch size (paper: 128; V2 Table 4 dagger row: 64)")
    # v1: lr `warmup_lr` until the training error first drops below `warmup_error_pct`
    #     (He 2015, ResNet-110/1202); v2: `warmup_lr` for the first `warmup_iters` (He 2016).
    warmup: str = knob(Choice(WARMUPS), "none",
                "none | v1: --warmup-lr until training error < --warmup-error-pct "
                "(ResNet-110/1202) | v2: --warmup-lr for --warmup-iters iterations")
    warmup_lr: float = knob(Num(0, lo_open=True), 0.01, "warm-up learning rate (papers: 0.01)")
    warmup_iters: int = knob(Int(0, MAX_ITERATIONS), 400, "length of the v2 warm-up (paper: 400)")
    warmup_error_pct: float = knob(Num(0, 100), 80.0,
                "training error that ends the v1 warm-up (paper: 80)")
    augment: bool = knob(Bool(), True,
                "4-pixel zero pad + random 32x32 crop + horizontal flip (paper: on)")
    normalize: str = knob(Choice(NORMALIZATIONS), "pixel",
                "pixel: subtract the per-pixel mean image (paper) | channel: per-channel mean/std")
    val_split: int = knob(Int(0, MAX_IMAGES), 0,
                "hold out this many training images as a validation set "
                "(paper's schedule study: 5000)")
    precision: str = knob(Choice(PRECISIONS), "fp32", "fp32 | bf16 (autocast)")
    compile: bool = knob(Bool(), False,
                "torch.compile the training step (compile time reported apart)")
    channels_last: bool = knob(Bool(), False,
                "channels_last memory format (faster convolutions on GPU)")
    activation_checkpointing: bool = knob(Bool(), False,
                "recompute unit activations in backward (fits 1001/1202 in less memory)")
    eval_every: int = knob(_ITERS, 1_000,
                "evaluate on the full test set every k iterations (and always at the end)")
    eval_batch_size: int = knob(_BATCH, 1_000, "batch size for evaluation")
    checkpoint_every: int = knob(_ITERS, 1_000,
                "write a resumable checkpoint every k iterations")
    train_window: int = knob(_ITERS, 100,
                "final training error/loss = mean over the last k mini-batches")
    grad_norm_every: int = knob(Int(0, MAX_ITERATIONS), 0,
                "log per-layer gradient norms every k iterations (0: off)")
    # Knobs recorded only when set exist for runs recorded before them: at their default they
    # are left out of to_dict(), and so out of the config hash, the run identity and the
    # pipeline's train params; adding a knob must neither retrain nor orphan a finished or
    # half-finished run. Set, they are recorded and hashed like any other knob.
    data_workers: int = knob(Int(0, 256), 4, "decoding worker processes of the streaming loader "
                             "(streamed dataset kinds only; batches do not depend on it)",
                             recorded_when_set=True)
    # The papers compute BN statistics per GPU: CIFAR 128 over 2 GPUs (64 per GPU), V1 ImageNet
    # 256 over 8 GPUs (32 per GPU). Not called bn_group: NVIDIA's MLPerf code uses that name for
    # a number of GPUs, this knob counts examples. See resnet_bench.train.distributed.
    bn_batch_size: int = knob(Int(0, MAX_BATCH), 0,
                "examples over which BatchNorm computes its training statistics; 0: the whole "
                "mini-batch (SyncBN across processes); less than batch_size: ghost BN in a single "
                "process, per-GPU BN under torchrun (papers: CIFAR 64 = 128 over 2 GPUs, V1 "
                "ImageNet 32 = 256 over 8 GPUs)", recorded_when_set=True)
    name: str = knob(Text(NAME_PATTERN), "paper", "recipe name recorded with the run")
    where: InitVar[str] = "recipe key "

    def __post_init__(self, where: str) -> None:
        """A checked value replaces the given one only where they are equal (20.0 -> 20, a list
        of milestones -> a tuple), so nothing is ever rounded or coerced."""
        try:
            for name, k in KNOBS.items():
                object.__setattr__(self, name, k.rule.check(name, getattr(self, name), where))
            self.bn_mode(1, where)
        except ConfigError as exc:
            raise RecipeError(str(exc)) from None

    def bn_mode(self, world_size: int = 1, where: str = "recipe key ") -> str:
        """The BatchNorm mode of a run with `world_size` processes, each taking
        batch_size/world_size examples of every mini-batch: 'per-process' (statistics over each
        process's slice: plain BN, or per-GPU BN under DDP), 'ghost' (over groups of
        `bn_batch_size` examples within each process) or 'sync' (bn_batch_size 0 with several
        processes: over the whole mini-batch)."""
        if self.batch_size % world_size:
            raise refuse("batch_size", self.batch_size, f"a multiple of the world size "
                         f"{world_size} (every process takes an equal slice of each mini-batch)",
                         where)
        per_process = self.batch_size // world_size
        if self.bn_batch_size == 0:
            return "sync" if world_size > 1 else "per-process"
        if self.bn_batch_size == per_process:
            return "per-process"
        if self.bn_batch_size < per_process and per_process % self.bn_batch_size == 0:
            return "ghost"
        slice_ = (f"batch_size {self.batch_size} / world size {world_size} = {per_process}"
                  if world_size > 1 else f"batch_size {self.batch_size}")
        raise refuse("bn_batch_size", self.bn_batch_size,
                     f"0 (the whole mini-batch) or a divisor of {slice_}", where)

    # The schedule is an explicit function of the iteration (not a stateful scheduler), so
    # warm-up can never be clobbered by a scheduler step and resume needs no scheduler state.
    def lr_at(self, iteration: int, warmup_done: bool = True) -> float:
        """Learning rate for the update that starts at `iteration` (0-based).

        `warmup_done` only matters for the error-triggered V1 warm-up: the trainer passes
        whether the training error has already dropped below `warmup_error_pct`.
        """
        if self.warmup == "v2" and iteration < self.warmup_iters:
            return self.warmup_lr
        if self.warmup == "v1" and not warmup_done:
            return self.warmup_lr
        drops = sum(1 for m in self.milestones if iteration >= m)
        # round away binary noise (0.1 * 0.1 = 0.010000000000000002) so logs read as the recipe
        return float(f"{self.lr * self.lr_decay**drops:.12g}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        for key, k in KNOBS.items():  # see Knob.recorded_when_set
            if k.recorded_when_set and d[key] == k.default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "recipe") -> "Recipe":
        """A recipe from a mapping of knobs (a config's, a recorded one), unknown keys refused."""
        valid = ", ".join(sorted(KNOBS))
        if not isinstance(d, Mapping):
            raise RecipeError(f"{where}: got a {type(d).__name__}; allowed: a mapping of recipe "
                              f"keys ({valid})")
        if unknown := sorted(str(k) for k in d if k not in KNOBS):
            raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {valid}")
        return cls(**d, where=f"{where} key ")

    def scientific_hash(self) -> str:
        """Hash of the knobs that change what is trained (not speed-only knobs or cadences,
        `record.RECIPE_SPEED_ONLY`)."""
        return recipe_hash(self.to_dict())  # knobs recorded only when set: not at their default


KNOBS: dict[str, Knob] = {
    f.name: Knob(f.name, f.metadata["rule"], f.default, f.metadata["help"],
                 f.metadata["recorded_when_set"]) for f in dataclasses.fields(Recipe)}


def schema() -> dict[str, Any]:
    """The config schema of one entry of the pipeline's `recipes`: its knobs, each typed."""
    return {"type": "object", "additionalProperties": False,
            "properties": {name: k.schema() for name, k in KNOBS.items()}}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    model: str
    dataset: str = "synthetic"
    seed: int = 0
    recipe: Recipe = field(default_factory=Recipe)
    data_dir: str | None = None      # root for cifar10/cifar100/folder/imagenet
    data_options: dict[str, Any] = field(default_factory=dict)  # e.g. train_size for synthetic
    prepared: str | None = None      # a file written by `resnet-bench data prepare`
    device: str = "auto"

    def __post_init__(self) -> None:
        # Checked, not rewritten: the values as given make the run's identity.
        if not isinstance(self.model, str):
            raise refuse("model", self.model, "a network name (see `resnet-bench models`)")
        self.spec  # ModelNameError: one line with the valid choices
        check_seed(self.seed)
        if not isinstance(self.recipe, Recipe):
            raise refuse("recipe", self.recipe, "a Recipe")
        self.source  # the data source, checked once (a prepared file when it is read)

    @functools.cached_property
    def spec(self) -> ModelSpec:
        """The network, parsed once: everything below the config takes the spec, not the name."""
        return parse_model_name(self.model)

    @functools.cached_property
    def source(self):
        """The run's data source (resnet_bench.data.registry.DatasetSource)."""
        from resnet_bench.data.registry import parse_source  # imports torch: not for --help
        return parse_source(self.dataset, self.data_dir, self.prepared, self.data_options)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["recipe"] = self.recipe.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        d["recipe"] = Recipe.from_dict(d.get("recipe", {}))
        return cls(**d)

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def identity_hash(self) -> str:
        """What makes two runs the same experiment: a checkpoint or a finished record carries
        over only between configs with equal identity (speed knobs such as compile or
        activation checkpointing may differ, e.g. on a retry after running out of memory)."""
        ident = {"model": self.model, "dataset": self.dataset, "seed": self.seed,
                 "data_options": self.data_options, "recipe": self.recipe.scientific_hash()}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
