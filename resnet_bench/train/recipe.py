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

WARMUPS = ("none", "v1", "v2")
NORMALIZATIONS = ("pixel", "channel")
PRECISIONS = ("fp32", "bf16")


class RecipeError(ValueError):
    """A recipe value that cannot be trained with."""


@dataclass(frozen=True)
class Recipe:
    iterations: int = 64_000
    milestones: tuple[int, ...] = (32_000, 48_000)
    lr: float = 0.1
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    # v1: lr `warmup_lr` until the training error first drops below `warmup_error_pct`
    #     (He 2015, ResNet-110/1202); v2: `warmup_lr` for the first `warmup_iters` (He 2016).
    warmup: str = "none"
    warmup_lr: float = 0.01
    warmup_iters: int = 400
    warmup_error_pct: float = 80.0
    augment: bool = True
    normalize: str = "pixel"
    val_split: int = 0
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    activation_checkpointing: bool = False
    eval_every: int = 1_000
    eval_batch_size: int = 1_000
    checkpoint_every: int = 1_000
    train_window: int = 100
    grad_norm_every: int = 0         # log per-layer gradient norms every k iterations (0: off)
    name: str = "paper"

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        self.validate()

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise RecipeError(f"invalid recipe: {msg}")

        for key in ("iterations", "batch_size", "eval_every", "eval_batch_size",
                    "checkpoint_every", "train_window"):
            if int(getattr(self, key)) < 1:
                bad(f"{key} must be >= 1, got {getattr(self, key)!r}")
        if self.grad_norm_every < 0:
            bad(f"grad_norm_every must be >= 0, got {self.grad_norm_every}")
        if self.warmup_iters < 0:
            bad(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if list(self.milestones) != sorted(self.milestones):
            bad(f"milestones must be increasing, got {list(self.milestones)}")
        if any(m < 1 for m in self.milestones):
            bad(f"milestones must be >= 1, got {list(self.milestones)}")
        if self.lr <= 0 or self.warmup_lr <= 0:
            bad("lr and warmup_lr must be > 0")
        if not 0 <= self.momentum < 1:
            bad(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            bad(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.val_split < 0:
            bad(f"val_split must be >= 0, got {self.val_split}")
        for key, allowed in (("warmup", WARMUPS), ("normalize", NORMALIZATIONS),
                             ("precision", PRECISIONS)):
            if getattr(self, key) not in allowed:
                bad(f"{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")

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
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RecipeError(f"invalid recipe: unknown key(s) {', '.join(unknown)}; "
                              f"valid keys: {', '.join(sorted(known))}")
        return cls(**d)

    def scientific_hash(self) -> str:
        """Hash of the knobs that change what is trained (not speed-only knobs or cadences)."""
        d = self.to_dict()
        for speed_only in ("compile", "channels_last", "activation_checkpointing",
                           "eval_every", "eval_batch_size", "checkpoint_every", "grad_norm_every",
                           "name"):
            d.pop(speed_only)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


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
