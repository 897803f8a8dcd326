"""The run record: the files one training run leaves in its directory, defined once.

The trainer (resnet_bench.train) writes these files and every reader (the tables, the
inside-the-network analyses) reads them through the names, columns and `read_summary` here.
Standard library and the torch-free model-name grammar only, so that reading a record never
imports torch, numpy or pandas.

A run directory holds:

* `config.json` - the run's configuration (model, dataset, seed, recipe) and its identity hash;
* `provenance.json` - code revision, software, hardware, start/finish/resume times;
* `train_log.csv` - one row per iteration, `TRAIN_COLUMNS`;
* `eval_log.csv` - one row per evaluation and split, `EVAL_COLUMNS`;
* `grad_norms.csv` - per-layer gradient norms, `GRAD_COLUMNS` (when the recipe asks for them);
* `checkpoint.pt` - while the run is unfinished; removed when it finishes;
* `model.pt` - the final weights;
* `summary.json` - written last, so its presence means the run is finished: one `Summary`;
* `resnet-bench.run` - the suite's marker, written first: the trainer writes (and deletes) only in
  a directory that holds it or is empty, and holds an OS lock on it while it trains (the file
  names the holder's pid).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from resnet_bench.infra.strict import DuplicateKeyError, json_loads
from resnet_bench.models.spec import (BLOCK_ORDER, FAMILIES, IMAGENET_PREFIX,  # torch-free
                                      base_name)

TRAIN_LOG = "train_log.csv"
EVAL_LOG = "eval_log.csv"
GRAD_LOG = "grad_norms.csv"
SUMMARY = "summary.json"
CONFIG = "config.json"
PROVENANCE = "provenance.json"
CHECKPOINT = "checkpoint.pt"
FINAL_WEIGHTS = "model.pt"
RUN_MARKER = "resnet-bench.run"
RECORD_FILES = (TRAIN_LOG, EVAL_LOG, GRAD_LOG, SUMMARY, CONFIG, PROVENANCE, CHECKPOINT,
                FINAL_WEIGHTS)

# The recipe in config.json (`Recipe.to_dict()`): knobs that change how fast a run trains or how
# often it is logged, not what it trains, and the hash of the rest. Here, not in the trainer, so
# that the tables can pair records by it without importing the training stage.
RECIPE_SPEED_ONLY = ("compile", "channels_last", "activation_checkpointing", "eval_every",
                     "eval_batch_size", "checkpoint_every", "grad_norm_every", "name",
                     "data_workers")


def recipe_hash(recipe: dict, leave_out: tuple[str, ...] = ()) -> str:
    """Hash of a recorded recipe without its speed-only knobs and those in `leave_out`."""
    d = {k: v for k, v in recipe.items() if k not in RECIPE_SPEED_ONLY + leave_out}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


TRAIN_COLUMNS = ("iteration", "epoch", "lr", "loss", "error_pct")
EVAL_COLUMNS = ("iteration", "split", "loss", "error_pct")
GRAD_COLUMNS = ("iteration", "layer", "name", "grad_norm", "weight_norm")
SPLITS = ("test", "val")  # the `split` values of eval_log.csv

# A finished run is a result: `completed`, or `diverged` (a non-finite loss stopped it).
STATUSES = ("completed", "diverged")
# What `train()` returns (never written to summary.json) for a run stopped with a checkpoint.
PREEMPTED = "preempted"

BLOCKS = tuple(BLOCK_ORDER)


class RecordError(ValueError):
    """A run record that is missing or does not follow the documented format."""


def _key(help_: str, *, kind: str = "", default: Any = MISSING) -> Any:
    """A summary field: `help_` says what it holds; `kind` how it may be null (see `Summary`).
    A field with a default is optional when reading: records written before it existed lack it."""
    return field(default=default, metadata={"help": help_, "kind": kind})


@dataclass(kw_only=True)
class Summary:
    """summary.json. Numbers of kind `result` may be null (NaN) only for a diverged run; numbers
    of kind `cost` may be null for any run. Written with sorted keys; NaN/inf become null."""

    status: str = _key("completed | diverged")
    identity: str | None = _key("hash of the run config that produced this record", default=None)
    model: str = _key("network name (docs/architecture.md name grammar)")
    family: str = _key(" | ".join(FAMILIES))
    block: str = _key(" | ".join(BLOCKS))
    depth: int = _key("number of weighted layers")
    variant: str = _key("unit/shortcut variant; the default variant is spelled out")
    dataset: str = _key("dataset kind, e.g. synthetic, cifar10")
    dataset_label: str = _key("the dataset's display name")
    seed: int = _key("seed of initialisation and batch order")
    recipe: str = _key("the recipe's name")
    iterations: int = _key("iterations trained (for a diverged run: where it diverged)")
    target_iterations: int | None = _key("iterations the recipe planned", default=None)
    diverged_at: int | None = _key("iteration of the first non-finite loss, else null",
                                   default=None)
    final_train_loss: float = _key("mean training loss over the last train_window iterations",
                                   kind="result")
    final_train_error_pct: float = _key("mean training error (%) over the last train_window "
                                        "iterations", kind="result")
    train_window: int | None = _key("iterations averaged for the final training numbers",
                                    default=None)
    final_test_loss: float = _key("test loss at the last iteration (never a best epoch)",
                                  kind="result")
    final_test_error_pct: float = _key("test error (%) at the last iteration", kind="result")
    final_test_top5_error_pct: float | None = _key(
        "top-5 test error (%) at the last iteration (streamed ImageNet-style runs; else null)",
        default=None)
    wall_time_s: float | None = _key("wall time of all sessions", kind="cost")
    train_time_s: float | None = _key("time in training iterations (no eval, checkpoints or "
                                      "compilation)", kind="cost")
    compile_time_s: float | None = _key("time of the first compiled step(s)", kind="cost")
    images_per_s: float | None = _key("training images per second of train_time_s", kind="cost")
    tflops_per_s: float | None = _key("images_per_s x MACs x 2 x 3 / 1e12", kind="cost")
    params: int | None = _key("trainable parameters", kind="cost")
    macs: int | None = _key("multiply-accumulates per image (forward), at the run's image size",
                            kind="cost")
    precision: str | None = _key("fp32 | bf16", default=None)
    activation_checkpointing: bool = _key("whether activations were recomputed in backward")
    oom_fallback_at: int | None = _key("iteration at which an out-of-memory error turned on "
                                       "activation checkpointing, else null", default=None)
    resumed: int = _key("times the run was resumed from a checkpoint")
    device: str = _key("the device's name")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


REQUIRED_KEYS = tuple(f.name for f in fields(Summary) if f.default is MISSING)
RESULT_KEYS = tuple(f.name for f in fields(Summary) if f.metadata["kind"] == "result")
COST_KEYS = tuple(f.name for f in fields(Summary) if f.metadata["kind"] == "cost")


def read_record_json(path: Path) -> dict:
    """A record's JSON object; a missing or unreadable file is a RecordError naming it."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: missing")
    try:
        data = json_loads(path.read_text(), str(path))
    except DuplicateKeyError as exc:
        raise RecordError(str(exc)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _number(path: Path, key: str, value, *, allow_null: bool):
    if value is None:
        if allow_null:
            return None
        raise RecordError(f"{path}: {key} is null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{path}: {key} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value) and not allow_null:
        raise RecordError(f"{path}: {key} is {value} (only a diverged run may have a "
                          "non-finite number)")
    return value


def _integer(path: Path, key: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecordError(f"{path}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _string(path: Path, key: str, value, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise RecordError(f"{path}: {key} must be a non-empty string, got {value!r}")
    return value


def read_summary(path: str | Path) -> Summary:
    """Read and check a summary.json; every problem is a one-line RecordError naming the file.

    What the contract allows is accepted and normalised: the default variant written as null
    (-> ""), a null `resumed` (-> 0) or `device` (-> ""); keys this version does not know are
    ignored. Nullable numbers stay None (JSON null) or NaN as written.
    """
    path = Path(path)
    s = read_record_json(path)
    missing = [k for k in REQUIRED_KEYS if k not in s]
    if missing:
        raise RecordError(f"{path}: missing key(s) {', '.join(missing)}")
    for key, allowed in (("status", STATUSES), ("family", FAMILIES), ("block", BLOCKS)):
        if s[key] not in allowed:
            raise RecordError(f"{path}: {key} must be one of {', '.join(allowed)}, "
                              f"got {s[key]!r}")
    known = {f.name for f in fields(Summary)}
    out = {k: v for k, v in s.items() if k in known}
    out.update(
        model=_string(path, "model", s["model"]),
        depth=_integer(path, "depth", s["depth"], 1),
        variant="" if s["variant"] is None else _string(path, "variant", s["variant"],
                                                         allow_empty=True),
        dataset=_string(path, "dataset", s["dataset"]),
        dataset_label=_string(path, "dataset_label", s["dataset_label"]),
        seed=_integer(path, "seed", s["seed"]),
        recipe=_string(path, "recipe", s["recipe"]),
        iterations=_integer(path, "iterations", s["iterations"]),
        resumed=_integer(path, "resumed", s["resumed"]) if s["resumed"] is not None else 0,
        activation_checkpointing=bool(s["activation_checkpointing"]),
        device="" if s["device"] is None else str(s["device"]),
    )
    if s.get("final_test_top5_error_pct") is not None:
        value = _number(path, "final_test_top5_error_pct", s["final_test_top5_error_pct"],
                        allow_null=True)
        if not (isinstance(value, float) and math.isnan(value)) and not 0 <= value <= 100:
            raise RecordError(f"{path}: final_test_top5_error_pct must be a percentage in "
                              f"[0, 100], got {float(value)}")
    if s.get("target_iterations") is not None:
        out["target_iterations"] = _integer(path, "target_iterations", s["target_iterations"])
    stem = "imagenet" if out["model"].startswith(IMAGENET_PREFIX) else "cifar"
    base = base_name(out["family"], out["block"], out["depth"], stem)
    if out["model"] != base and not out["model"].startswith(base + "-"):
        raise RecordError(f"{path}: model {out['model']!r} does not match "
                          f"family/block/depth {base!r}")
    diverged = out["status"] == "diverged"
    for key in RESULT_KEYS:
        value = out[key] = _number(path, key, s[key], allow_null=diverged)
        if (key.endswith("_pct") and value is not None and not math.isnan(value)
                and not 0 <= value <= 100):
            raise RecordError(f"{path}: {key} must be a percentage in [0, 100], got "
                              f"{float(value)}")
    for key in COST_KEYS:
        out[key] = _number(path, key, s[key], allow_null=True)
    return Summary(**out)



def describe() -> str:
    """summary.json's keys, one a line, with whether each is optional and what it holds."""
    return "\n".join(f"{f.name:<24}{'(optional) ' if f.default is not MISSING else ''}"
                     f"{f.metadata['help']}" for f in fields(Summary))


# ---------------------------------------------------------------------------------------------
# finding run directories (the layout every stage reads)

def find_run_dirs(paths: list[str | os.PathLike]) -> list[Path]:
    """Run directories named by `paths` (dirs, summary.json files, globs, parent dirs)."""
    found: list[Path] = []
    for raw in paths:
        text = os.fspath(raw)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches:
            raise RecordError(f"{text}: no run records match this pattern")
        for m in matches:
            p = Path(m)
            if p.is_file():
                if p.name != SUMMARY:
                    raise RecordError(f"{p}: expected a run directory or its summary.json")
                found.append(p.parent)
            elif p.is_dir():
                if (p / SUMMARY).exists():
                    found.append(p)
                    continue
                if (p / CONFIG).exists() or (p / TRAIN_LOG).exists():
                    raise RecordError(f"{p / SUMMARY}: missing (run not finished)")
                nested = sorted(s.parent for s in p.rglob(SUMMARY))
                if not nested:
                    raise RecordError(f"{p}: no run records (summary.json) found under it")
                found.extend(nested)
            else:
                raise RecordError(f"{p}: no such file or directory")
    unique = list(dict.fromkeys(d.resolve() for d in found))
    return unique


def run_ids(dirs: list[Path]) -> list[str]:
    """Run ids: each directory relative to the deepest common parent (unique by construction)."""
    if len(dirs) == 1:
        return [dirs[0].name]
    common = Path(os.path.commonpath([str(d) for d in dirs]))
    return [d.relative_to(common).as_posix() for d in dirs]


if __name__ == "__main__":  # `python -m resnet_bench.record`: the summary.json keys
    print(describe())
