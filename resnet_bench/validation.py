"""The one validation layer for a run: recipe values, run options, dataset options, sizes.

The CLI (`resnet-bench train`), the pipeline's validation step (resnet_bench.pipeline.grid, run
before any job) and the trainer all call these functions, so they can never disagree on what is
trainable. Every refusal is a `ConfigError` whose one-line message names the key, the value and
what is allowed. Values are checked, never coerced: 20.7 iterations or `true` iterations are
refused rather than rounded; only an integral float (20.0, what YAML/JSON may give) counts as an
integer, as in JSON Schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Far above any of the papers' schedules (64k iterations, batch 128), low enough that a typo
# (an extra 000) is refused instead of queued as a months-long job.
MAX_ITERATIONS = 10_000_000
MAX_BATCH = 1_000_000
MAX_SEED = 2**32 - 1          # numpy's SeedSequence and the synthetic set take 32-bit seeds
MAX_THREADS = 4096
MAX_IMAGES = 10_000_000       # synthetic set sizes (10M CIFAR-sized images = 30 GB)
# Known split sizes, so the pipeline can check batch/hold-out sizes before anything is loaded.
KNOWN_SIZES = {"cifar10": 50_000, "cifar100": 50_000}
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ConfigError(ValueError):
    """A value that cannot be trained with; its message is one line naming key, value, allowed."""


def refuse(key: str, value: Any, allowed: str, where: str = "") -> ConfigError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigError(" ".join(f"{where}{key}: got {shown}; allowed: {allowed}".split()))


# --- scalar checks: each returns the checked value (an int stays int, a float float) ------------

def integer(key: str, value: Any, lo: int, hi: int, where: str = "") -> int:
    allowed = f"an integer in {lo}..{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(key, value, allowed, where)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise refuse(key, value, allowed, where)
    if not lo <= value <= hi:
        raise refuse(key, value, allowed, where)
    return int(value)


def number(key: str, value: Any, allowed: str, ok, where: str = "") -> int | float:
    """A finite real number for which `ok(value)` holds (NaN and inf are never allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not ok(value):
        raise refuse(key, value, f"a finite number {allowed}", where)
    return value  # as given: an int stays an int, so run identities do not change


def boolean(key: str, value: Any, where: str = "") -> bool:
    if not isinstance(value, bool):
        raise refuse(key, value, "true or false", where)
    return value


def choice(key: str, value: Any, choices: tuple[str, ...], where: str = "") -> str:
    if not isinstance(value, str) or value not in choices:
        raise refuse(key, value, "one of " + ", ".join(choices), where)
    return value


def text(key: str, value: Any, where: str = "", pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 \
            or (pattern is not None and not pattern.fullmatch(value)):
        allowed = "a non-empty string" + (f" matching {pattern.pattern}" if pattern else "")
        raise refuse(key, value, allowed, where)
    return value


# --- the recipe ------------------------------------------------------------------------------

WARMUPS = ("none", "v1", "v2")
NORMALIZATIONS = ("pixel", "channel")
PRECISIONS = ("fp32", "bf16")

_INT_RANGES = {
    "iterations": (1, MAX_ITERATIONS), "batch_size": (1, MAX_BATCH),
    "warmup_iters": (0, MAX_ITERATIONS), "val_split": (0, MAX_IMAGES),
    "eval_every": (1, MAX_ITERATIONS), "eval_batch_size": (1, MAX_BATCH),
    "checkpoint_every": (1, MAX_ITERATIONS), "train_window": (1, MAX_ITERATIONS),
    "grad_norm_every": (0, MAX_ITERATIONS), "data_workers": (0, 256),
    "bn_batch_size": (0, MAX_BATCH),
}
_NUMBERS = {
    "lr": ("> 0", lambda v: v > 0),
    "warmup_lr": ("> 0", lambda v: v > 0),
    "lr_decay": ("in (0, 1]", lambda v: 0 < v <= 1),
    "momentum": ("in [0, 1)", lambda v: 0 <= v < 1),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "warmup_error_pct": ("in [0, 100]", lambda v: 0 <= v <= 100),
}
_BOOLS = ("augment", "compile", "channels_last", "activation_checkpointing")
_CHOICES = {"warmup": WARMUPS, "normalize": NORMALIZATIONS, "precision": PRECISIONS}
RECIPE_KEYS = frozenset({*_INT_RANGES, *_NUMBERS, *_BOOLS, *_CHOICES, "milestones", "name"})


def check_recipe_value(key: str, value: Any, where: str = "recipe key ") -> Any:
    """The checked value of one recipe key (milestones as a tuple)."""
    if key in _INT_RANGES:
        return integer(key, value, *_INT_RANGES[key], where=where)
    if key in _NUMBERS:
        allowed, ok = _NUMBERS[key]
        return number(key, value, allowed, ok, where=where)
    if key in _BOOLS:
        return boolean(key, value, where=where)
    if key in _CHOICES:
        return choice(key, value, _CHOICES[key], where=where)
    if key == "name":
        return text(key, value, where=where, pattern=NAME_PATTERN)
    if key == "milestones":
        # strictly increasing: a repeated milestone would decay the lr twice at once (100x)
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
    raise ConfigError(f"{where}{key!r}: unknown; valid keys: {', '.join(sorted(RECIPE_KEYS))}")


# How BatchNorm computes its training statistics (see check_bn_batch_size).
BN_MODES = ("per-process", "ghost", "sync")


def check_bn_batch_size(bn_batch_size: int, batch_size: int, world_size: int = 1,
                        where: str = "recipe key ") -> str:
    """The BatchNorm mode of a run with `world_size` processes, each taking batch_size/world_size
    examples of every mini-batch: 'per-process' (statistics over each process's slice: plain BN,
    or per-GPU BN under DDP), 'ghost' (over groups of `bn_batch_size` examples within each
    process) or 'sync' (bn_batch_size 0 with several processes: over the whole mini-batch)."""
    if batch_size % world_size:
        raise refuse("batch_size", batch_size, f"a multiple of the world size {world_size} "
                     "(every process takes an equal slice of each mini-batch)", where)
    per_process = batch_size // world_size
    if bn_batch_size == 0:
        return "sync" if world_size > 1 else "per-process"
    if bn_batch_size == per_process:
        return "per-process"
    if bn_batch_size < per_process and per_process % bn_batch_size == 0:
        return "ghost"
    slice_ = (f"batch_size {batch_size} / world size {world_size} = {per_process}"
              if world_size > 1 else f"batch_size {batch_size}")
    raise refuse("bn_batch_size", bn_batch_size, f"0 (the whole mini-batch) or a divisor of {slice_}",
                 where)


def check_recipe_mapping(values: Any, where: str = "recipe") -> dict[str, Any]:
    """A mapping of recipe keys, each checked (unknown keys refused)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: got a {type(values).__name__}; allowed: a mapping of recipe "
                          f"keys ({', '.join(sorted(RECIPE_KEYS))})")
    unknown = sorted(str(k) for k in values if k not in RECIPE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(RECIPE_KEYS))}")
    return {k: check_recipe_value(k, v, where=f"{where} key ") for k, v in values.items()}


# --- the run ---------------------------------------------------------------------------------

def check_seed(value: Any, key: str = "seed", where: str = "") -> int:
    return integer(key, value, 0, MAX_SEED, where=where)


def check_threads(value: Any) -> int:
    return integer("threads", value, 1, MAX_THREADS)


def check_device(value: Any, key: str = "device") -> str:
    """auto, cpu, mps, cuda or cuda:N; a CUDA device must exist on this machine."""
    allowed = "auto, cpu, mps, cuda or cuda:N"
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise refuse(key, value, allowed)
    if value == "mps":
        import torch
        if not torch.backends.mps.is_available():
            raise refuse(key, value, "auto, cpu or cuda (MPS, Apple's GPU backend, is not "
                                     "available on this machine)")
    if value.startswith("cuda"):
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(value.partition(":")[2] or 0)
        if index >= n:
            raise refuse(key, value, f"{allowed}, with N < {n} CUDA devices on this machine"
                         if n else "auto or cpu (CUDA is not available on this machine)")
    return value


def check_model(value: Any, key: str = "model") -> str:
    from resnet_bench.models import parse_model_name
    if not isinstance(value, str):
        raise refuse(key, value, "a network name (see `resnet-bench models`)")
    return parse_model_name(value).name  # ModelNameError: one line with the valid choices


# --- dataset options -----------------------------------------------------------------------------

# The smallest training image: the CIFAR nets halve the side twice (8x8 -> 2x2 in the last
# stage), and with the papers' 4-pixel padding a random crop of a smaller image is mostly padding
# (over 75% of the pixels a 1x1 image's crop can cover are).
MIN_IMAGE_SIDE = 8


def _image_size(key: str, value: Any, where: str) -> Any:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [integer(key, v, MIN_IMAGE_SIDE, 4096, where=where) for v in value]
    return integer(key, value, MIN_IMAGE_SIDE, 4096, where=where)


def _verify(key: str, value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                          for k, v in value.items()):
        return dict(value)
    raise refuse(key, value, "true, false or a mapping of file name to md5", where)


def _sizes(key: str, value: Any, where: str) -> list[int]:
    allowed = "a non-empty list of integers in 1..4096"
    if not isinstance(value, (list, tuple)) or not value:
        raise refuse(key, value, allowed, where)
    try:
        return [integer(key, v, 1, 4096) for v in value]
    except ConfigError:
        raise refuse(key, list(value), allowed, where) from None


def _side(k: str, v: Any, w: str) -> int:
    return integer(k, v, 1, 4096, w)


_OPTION_RULES = {
    "synthetic": {
        "seed": lambda k, v, w: check_seed(v, k, w),
        "train_size": lambda k, v, w: integer(k, v, 1, MAX_IMAGES, w),
        "test_size": lambda k, v, w: integer(k, v, 1, MAX_IMAGES, w),
        "difficulty": lambda k, v, w: choice(k, v, ("standard", "easy"), w),
    },
    "cifar": {
        "download": lambda k, v, w: boolean(k, v, w),
        "verify": _verify,
        "cache_dir": lambda k, v, w: text(k, v, w),
        "label": lambda k, v, w: text(k, v, w),
    },
    "folder": {
        "image_size": _image_size,
        "channels": lambda k, v, w: choice(k, v, ("rgb", "l", "keep"), w),
        "max_per_class": lambda k, v, w: integer(k, v, 1, MAX_IMAGES, w),
        "label": lambda k, v, w: text(k, v, w),
        "name": lambda k, v, w: text(k, v, w, NAME_PATTERN),
    },
    "imagenet": {
        "resize_min": _side, "resize_max": _side, "crop": _side, "test_resize": _side,
        "pca_std": lambda k, v, w: number(k, v, ">= 0", lambda x: x >= 0, w),
        "stats_images": lambda k, v, w: integer(k, v, 1, MAX_IMAGES, w),
        "final_eval": lambda k, v, w: choice(k, v, ("center", "ten_crop", "multiscale"), w),
        "test_scales": _sizes,
        "decode": lambda k, v, w: choice(k, v, ("cpu", "cuda"), w),
        "max_per_class": lambda k, v, w: integer(k, v, 1, MAX_IMAGES, w),
        "label": lambda k, v, w: text(k, v, w),
        "name": lambda k, v, w: text(k, v, w, NAME_PATTERN),
    },
}
DATASET_KINDS = ("synthetic", "cifar10", "cifar100", "folder", "imagenet")


def check_dataset_options(kind: str, options: Any, where: str = "data option ") -> dict[str, Any]:
    from resnet_bench.data.registry import canonical_kind
    kind = canonical_kind(kind)
    if kind not in DATASET_KINDS:
        raise refuse("dataset", kind, "one of " + ", ".join(DATASET_KINDS))
    if not isinstance(options, Mapping):
        raise refuse("options", options, "a mapping of dataset options")
    rules = _OPTION_RULES["cifar" if kind.startswith("cifar") else kind]
    unknown = sorted(str(k) for k in options if k not in rules)
    if unknown:
        raise ConfigError(f"{where}{', '.join(unknown)}: unknown for dataset {kind}; "
                          f"valid: {', '.join(rules)}")
    checked = {k: rules[k](k, v, where) for k, v in options.items()}
    if kind == "imagenet":  # the crop must fit every shorter side it is cut from
        from resnet_bench.data.imagenet import DEFAULTS
        o = {**DEFAULTS, **checked}
        if o["resize_min"] > o["resize_max"]:
            raise refuse("resize_min", o["resize_min"], f"at most resize_max ({o['resize_max']})",
                         where)
        for key in ("resize_min", "test_resize"):
            if o["crop"] > o[key]:
                raise refuse("crop", o["crop"], f"at most {key} ({o[key]}), the shorter side "
                                                "it is cut from", where)
    return checked


def check_data_source(kind: str, data_dir: Any = None, prepared: Any = None,
                      options: Mapping[str, Any] | None = None, root_key: str = "data_dir",
                      where: str = "") -> None:
    """Refuse what the chosen source would silently ignore: a root for the generated synthetic
    set, a root or dataset options beside a prepared file (its images are already decided)."""
    from resnet_bench.data.registry import canonical_kind
    if prepared:
        if data_dir:
            raise refuse(root_key, data_dir, "none with a prepared file (its images are in it)",
                         where)
        if options:
            raise ConfigError(f"{where}data option {', '.join(map(str, options))}: ignored with a "
                              "prepared file (set it when the file is prepared)")
    elif canonical_kind(kind) == "synthetic" and data_dir not in (None, ""):
        raise refuse(root_key, data_dir, "none for dataset synthetic (it is generated and reads "
                                         "no files)", where)


def known_train_size(kind: str, options: Mapping[str, Any]) -> int | None:
    """Training-set size known without loading anything (None for folders and prepared files)."""
    from resnet_bench.data.registry import canonical_kind
    kind = canonical_kind(kind)
    if kind == "synthetic":
        from resnet_bench.data.synthetic import DEFAULT_TRAIN
        return int(options.get("train_size", DEFAULT_TRAIN))
    return KNOWN_SIZES.get(kind)


# Training-image side of the kinds whose size is fixed, and of the streaming `imagenet` kind's
# default crop (V1 Sec. 3.4: 224x224 crops); a folder's is its `image_size` option.
KNOWN_IMAGE_SIDES = {"synthetic": 32, "cifar10": 32, "cifar100": 32, "imagenet": 224}


def known_image_size(kind: str, options: Mapping[str, Any]) -> tuple[int, int] | None:
    """(height, width) of the training images known from the config alone: an `image_size`
    option (int or [h, w]), else the kind's fixed size; None for a folder without one (its
    images' own size, known only once loaded)."""
    from resnet_bench.data.registry import canonical_kind
    if not isinstance(options, Mapping):
        options = {}
    if canonical_kind(kind) == "imagenet":  # the streamed crops, not the files' own size
        side = int(options.get("crop", KNOWN_IMAGE_SIDES["imagenet"]))
        return side, side
    size = options.get("image_size")
    if size is None:
        side = KNOWN_IMAGE_SIDES.get(canonical_kind(kind))
        return None if side is None else (side, side)
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def check_fits(recipe, n_train: int, dataset: str, where: str = "recipe key ") -> None:
    """The training set can hold out `val_split` images and still fill one batch.

    A batch larger than the training set is refused rather than filled by repeating images
    within the batch (the loader's epoch wrap assumes a batch spans at most two epochs)."""
    if recipe.val_split and recipe.val_split >= n_train:
        raise refuse("val_split", recipe.val_split,
                     f"fewer than the {n_train} training images of dataset {dataset}", where)
    left = n_train - recipe.val_split
    if recipe.batch_size > left:
        held = f" after holding out val_split={recipe.val_split}" if recipe.val_split else ""
        raise refuse("batch_size", recipe.batch_size,
                     f"at most the {left} training images of dataset {dataset}{held}", where)


def check_dataset(ds, recipe, dataset: str) -> None:
    """Sanity of a loaded dataset before anything is trained or written."""
    from resnet_bench.data import DatasetError
    where = ds.meta.get("prepared_file") or ds.meta.get("source") or dataset
    if len(ds.classes) < 2:
        raise DatasetError(where, f"has {len(ds.classes)} class(es); training needs at least 2")
    present = int(ds.train_y.unique().numel()) if len(ds.train_y) else 0
    if present < 2:
        raise DatasetError(where, f"its training set holds {present} distinct label(s); "
                                  "training needs at least 2")
    if len(ds.test_y) == 0:
        raise DatasetError(where, "has an empty test set")
    train_x = getattr(ds, "train_x", None)  # a streamed set's crops are checked by its options
    if train_x is not None and min(train_x.shape[2:]) < MIN_IMAGE_SIDE:
        h, w = train_x.shape[2:]
        raise DatasetError(where, f"its images are {h}x{w}; training needs at least "
                                  f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (the nets halve the side "
                                  "twice, and a padded crop of a smaller image is mostly padding); "
                                  "prepare it with a larger image_size")
    check_fits(recipe, len(ds.train_y), dataset)
