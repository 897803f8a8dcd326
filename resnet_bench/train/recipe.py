"""The training recipe: every knob of the papers' CIFAR recipe as data, plus the lr schedule.

Defaults are He et al. 2015, Sec. 4.2: SGD momentum 0.9, weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k, pad-4 crop + flip, per-pixel mean.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from resnet_bench.record import recipe_hash
from resnet_bench.validation import (NORMALIZATIONS, PRECISIONS, RECIPE_KEYS, WARMUPS,
                                     ConfigError, check_bn_batch_size, check_data_source,
                                     check_dataset_options, check_model,
                                     check_recipe_mapping, check_recipe_value, check_seed, refuse)

__all__ = ["NORMALIZATIONS", "PRECISIONS", "WARMUPS", "Recipe", "RecipeError", "RunConfig"]


class RecipeError(ConfigError):
    """A recipe value that cannot be trained with."""


def knob(default: Any, help: str) -> Any:
    """A recipe field with its help text (shown by `resnet-bench train --help`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    """Every knob of a run's training; the values are checked by resnet_bench.validation, the one
    rule set the CLI, the pipeline and the trainer share."""

    iterations: int = knob(64_000, "total SGD iterations (paper: 64000)")
    milestones: tuple[int, ...] = knob((32_000, 48_000),
                "iterations at which lr is multiplied by --lr-decay (paper: 32000 48000)")
    lr: float = knob(0.1, "base learning rate (paper: 0.1)")
    lr_decay: float = knob(0.1, "factor applied at each milestone (paper: 0.1)")
    momentum: float = knob(0.9, "SGD momentum (paper: 0.9)")
    weight_decay: float = knob(1e-4, "L2 weight decay on all parameters (paper: 1e-4)")
    batch_size: int = knob(128, "mini-batch size (paper: 128; V2 Table 4 dagger row: 64)")
    # v1: lr `warmup_lr` until the training error first drops below `warmup_error_pct`
    #     (He 2015, ResNet-110/1202); v2: `warmup_lr` for the first `warmup_iters` (He 2016).
    warmup: str = knob("none",
                "none | v1: --warmup-lr until training error < --warmup-error-pct "
                "(ResNet-110/1202) | v2: --warmup-lr for --warmup-iters iterations")
    warmup_lr: float = knob(0.01, "warm-up learning rate (papers: 0.01)")
    warmup_iters: int = knob(400, "length of the v2 warm-up (paper: 400)")
    warmup_error_pct: float = knob(80.0, "training error that ends the v1 warm-up (paper: 80)")
    augment: bool = knob(True, "4-pixel zero pad + random 32x32 crop + horizontal flip (paper: on)")
    normalize: str = knob("pixel",
                "pixel: subtract the per-pixel mean image (paper) | channel: per-channel mean/std")
    val_split: int = knob(0,
                "hold out this many training images as a validation set "
                "(paper's schedule study: 5000)")
    precision: str = knob("fp32", "fp32 | bf16 (autocast)")
    compile: bool = knob(False, "torch.compile the training step (compile time reported apart)")
    channels_last: bool = knob(False, "channels_last memory format (faster convolutions on GPU)")
    activation_checkpointing: bool = knob(False,
                "recompute unit activations in backward (fits 1001/1202 in less memory)")
    eval_every: int = knob(1_000,
                "evaluate on the full test set every k iterations (and always at the end)")
    eval_batch_size: int = knob(1_000, "batch size for evaluation")
    checkpoint_every: int = knob(1_000, "write a resumable checkpoint every k iterations")
    train_window: int = knob(100, "final training error/loss = mean over the last k mini-batches")
    grad_norm_every: int = knob(0, "log per-layer gradient norms every k iterations (0: off)")
    data_workers: int = knob(4, "decoding worker processes of the streaming loader (dataset "
                             "kind imagenet only; batches do not depend on it)")
    # The papers compute BN statistics per GPU: CIFAR 128 over 2 GPUs (64 per GPU), V1 ImageNet
    # 256 over 8 GPUs (32 per GPU). Not called bn_group: NVIDIA's MLPerf code uses that name for
    # a number of GPUs, this knob counts examples. See resnet_bench.train.distributed.
    bn_batch_size: int = knob(0,
                "examples over which BatchNorm computes its training statistics; 0: the whole "
                "mini-batch (SyncBN across processes); less than batch_size: ghost BN in a single "
                "process, per-GPU BN under torchrun (papers: CIFAR 64 = 128 over 2 GPUs, V1 "
                "ImageNet 32 = 256 over 8 GPUs)")
    name: str = knob("paper", "recipe name recorded with the run")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every knob with the shared rules (resnet_bench.validation); a checked value
        replaces the given one only where they are equal (20.0 -> 20, a list of milestones ->
        a tuple), so nothing is ever rounded or coerced."""
        try:
            for f in dataclasses.fields(self):
                object.__setattr__(self, f.name, check_recipe_value(f.name, getattr(self, f.name)))
            check_bn_batch_size(self.bn_batch_size, self.batch_size)  # world size 1
        except ConfigError as exc:
            raise RecipeError(str(exc)) from None

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
        for key in LATER_KNOBS:  # recorded only when set: see LATER_KNOBS
            if d[key] == _DEFAULTS[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "recipe") -> "Recipe":
        try:
            return cls(**check_recipe_mapping(d, where))
        except ConfigError as exc:
            raise RecipeError(str(exc)) from None

    def scientific_hash(self) -> str:
        """Hash of the knobs that change what is trained (not speed-only knobs or cadences,
        `record.RECIPE_SPEED_ONLY`)."""
        return recipe_hash(self.to_dict())  # LATER_KNOBS at their default are not in it


# Knobs added after runs were recorded and published. At their default they are left out of
# to_dict(), and so out of the config hash, the run identity and the pipeline's train params:
# adding a knob must neither retrain nor orphan a finished or half-finished run. Set, they are
# recorded and hashed like any other knob.
LATER_KNOBS: frozenset[str] = frozenset({"data_workers", "bn_batch_size"})
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Recipe)}

# The validation layer's rules and the dataclass must name the same knobs.
if {f.name for f in dataclasses.fields(Recipe)} != RECIPE_KEYS:
    raise ImportError("resnet_bench.validation.RECIPE_KEYS is out of step with Recipe's fields")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    model: str
    dataset: str = "synthetic"
    seed: int = 0
    recipe: Recipe = field(default_factory=Recipe)
    data_dir: str | None = None      # root for cifar10/cifar100/folder
    data_options: dict[str, Any] = field(default_factory=dict)  # e.g. n_train for synthetic
    prepared: str | None = None      # a file written by `resnet-bench data prepare`
    device: str = "auto"

    def __post_init__(self) -> None:
        # Checked, not rewritten: the values as given make the run's identity.
        check_model(self.model)
        check_seed(self.seed)
        if not isinstance(self.recipe, Recipe):
            raise refuse("recipe", self.recipe, "a Recipe")
        check_data_source(self.dataset, self.data_dir, self.prepared, self.data_options)
        if self.prepared is None:  # a prepared file is checked when it is read
            check_dataset_options(self.dataset, self.data_options)

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
