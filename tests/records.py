"""Test helper: write run-record directories in the documented format (docs/architecture.md).

The curves are deterministic functions of (model, seed) so tests can recompute every value
from the files; nothing here trains anything.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from resnet_bench.record import Summary


DEFAULT_VARIANT = {("plain", "basic"): "none", ("v1", "basic"): "optA", ("v2", "basic"): "optA",
                   ("v1", "bottleneck"): "optB", ("v2", "bottleneck"): "optB"}


def _curve(iters: np.ndarray, start: float, floor: float, tau: float, rng, noise: float):
    base = floor + (start - floor) * np.exp(-iters / tau)
    return np.clip(base + rng.normal(0.0, noise, size=len(iters)), 0.0, 100.0)


def write_run(root, *, family: str = "v1", block: str = "basic", depth: int = 20,
              variant: str = "", dataset: str = "synthetic", dataset_label: str | None = None,
              seed: int = 0, recipe: str = "quick", iterations: int = 120, eval_every: int = 40,
              iters_per_epoch: int = 10, batch_size: int = 128,
              planned_iterations: int | None = None, log_every: int = 1,
              train_window: int = 10, status: str = "completed", diverge_at: int | None = None,
              final_test_error: float | None = None, with_val: bool = False,
              run_name: str | None = None, params: int = 1000, macs: int = 5000,
              skip: tuple[str, ...] = (), stem: str = "cifar", precision: str = "fp32",
              recipe_knobs: dict | None = None) -> Path:
    """Write one run directory under `root` and return it.

    `final_test_error` forces the last test error (so tests can pick exact statistics).
    `recipe_knobs` adds to the recorded recipe (beside name, iterations, batch size, cadences).
    A `diverged` run stops at `diverge_at` with null final errors.
    """
    model = ("imagenet-" if stem == "imagenet" else "") + f"{family}-{block}-{depth}" \
        + (f"-{variant}" if variant else "")
    label = dataset_label or {"synthetic": "Synthetic", "cifar10": "CIFAR-10",
                              "cifar100": "CIFAR-100",
                              "cifar10-jpeg": "CIFAR-10 (JPEG q75 mirror)"}.get(dataset, dataset)
    name = run_name or f"{model}_{dataset}_{recipe}_s{seed}"
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(f"{model}|{dataset}|{seed}".encode()))
    penalty = {"plain": 0.4, "v1": 0.0, "v2": -0.1}[family] * depth / 10
    done = diverge_at if status == "diverged" else iterations
    planned = planned_iterations or iterations

    it = np.unique(np.r_[np.arange(1, done + 1, log_every), done])
    train_err = _curve(it, 90.0, 5.0 + penalty, iterations / 4, rng, 2.0)
    train = pd.DataFrame({
        "iteration": it, "epoch": it / iters_per_epoch,   # like the trainer: i*B/N
        "lr": np.where(it < 0.75 * iterations, 0.1, 0.01),
        "loss": train_err / 40.0, "error_pct": train_err,
    })
    ev = np.unique(np.r_[np.arange(eval_every, done + 1, eval_every), done])
    test_err = _curve(ev, 90.0, 12.0 + penalty, iterations / 4, rng, 1.0)
    if final_test_error is not None:
        test_err[-1] = final_test_error
    if status == "diverged":
        train.loc[train.index[-1], ["loss", "error_pct"]] = [math.nan, 90.0]
    evals = [pd.DataFrame({"iteration": ev, "split": "test", "loss": test_err / 30.0,
                           "error_pct": test_err})]
    if with_val:
        evals.append(pd.DataFrame({"iteration": ev, "split": "val", "loss": test_err / 29.0,
                                   "error_pct": test_err + 0.5}))
    ev_df = pd.concat(evals, ignore_index=True)

    window = train[train["iteration"] > done - train_window]
    completed = status == "completed"
    summary = Summary(**{  # the one definition of the record: a key it lacks fails here
        "status": status, "model": model, "family": family, "block": block, "depth": depth,
        # like the trainer: the canonical default variant is spelled out here, not in the name
        "variant": variant or DEFAULT_VARIANT[family, block], "dataset": dataset, "dataset_label": label, "seed": seed,
        "recipe": recipe, "iterations": int(done),
        "final_train_loss": float(window["loss"].mean()) if completed else None,
        "final_train_error_pct": float(window["error_pct"].mean()) if completed else None,
        "final_test_loss": float(test_err[-1] / 30.0) if completed else None,
        "final_test_error_pct": float(test_err[-1]) if completed else None,
        "wall_time_s": 10.0 + seed, "train_time_s": 8.0 + seed, "compile_time_s": 1.0,
        "images_per_s": 1000.0 * (seed + 1), "tflops_per_s": 0.5, "params": params,
        "macs": macs, "activation_checkpointing": False, "resumed": 0, "device": "cpu",
        "precision": precision,
    }).to_dict()
    config = {"model": model, "dataset": dataset, "seed": seed,
              "recipe": {"name": recipe, "iterations": planned, "batch_size": batch_size,
                         "eval_every": eval_every, "train_window": train_window,
                         "precision": precision, **(recipe_knobs or {})}}
    provenance = {"config_hash": "0" * 12, "seed": seed, "git_revision": "deadbeef",
                  "git_dirty": False}
    files = {
        "config.json": json.dumps(config, indent=1),
        "provenance.json": json.dumps(provenance, indent=1),
        "train_log.csv": train.to_csv(index=False),
        "eval_log.csv": ev_df.to_csv(index=False),
        "summary.json": json.dumps(summary, indent=1),
    }
    for fname, text in files.items():
        if fname not in skip:
            (d / fname).write_text(text)
    return d


def write_grid(root, *, families=("plain", "v1"), depths=(8, 14, 20), seeds=(0, 1, 2),
               **kw) -> list[Path]:
    """The default quick config's shape: plain and v1 basic nets at several depths and seeds."""
    return [write_run(root, family=f, depth=d, seed=s, **kw)
            for f in families for d in depths for s in seeds]
