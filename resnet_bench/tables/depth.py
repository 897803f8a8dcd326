"""The depth challenge: training loss after a short fixed budget of k iterations, against depth.

V2 Fig. 1 (right) and Sec. 4.1: with the original unit, ResNet-1001 "reduces the training error
very slowly at the beginning of training", while the pre-activation ResNet-1001 "reduces the
training loss very quickly". Plain nets get worse with depth already at 20-56 layers (V1 Fig. 6).
Run every family at every depth with the same short recipe (config/depth_challenge.yaml) and read
off the training loss at iteration k.

`train_loss` of a run at k = mean training mini-batch loss over the logged iterations in
(k - window, k] of its train_log.csv (the papers' dashed curves are these mini-batch values).
A run that diverged before k has no loss at k: `diverged` is True and `train_loss` NaN.
k defaults to the smallest completed iteration count among the runs, so every run is read at the
same iteration.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import pandas as pd

from resnet_bench.inside.responses import sort_table
from resnet_bench.inside.trained import model_label

COLUMNS = ["run_id", "model", "label", "family", "block", "depth", "variant", "seed", "dataset",
           "recipe", "k", "window", "train_loss", "train_error_pct", "status", "diverged"]


def depth_challenge(runs: Iterable[str | os.PathLike], *, k: int | None = None, window: int = 50,
                    out_dir: str | os.PathLike | None = None,
                    name: str = "depth_challenge") -> pd.DataFrame:
    """Training loss after `k` iterations for every run named by `runs` (run directories,
    summary.json files, globs, or parents; read with the strict `resnet-bench aggregate` loader).
    Returns the tidy table (columns `COLUMNS`); with `out_dir`, writes `<name>.csv/.png/.pdf`."""
    from resnet_bench.tables.aggregate import load_runs
    from resnet_bench.models import parse_model_name

    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    runset = load_runs(list(runs))
    info = runset.runs
    if k is None:
        done = info.loc[info["status"] == "completed", "iterations"]
        if done.empty:
            raise ValueError("no completed run to take k from: give k explicitly")
        k = int(done.min())
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train = runset.curves[runset.curves["split"] == "train"]
    rows = []
    for _, run in info.iterrows():
        curve = train[train["run_id"] == run["run_id"]]
        if run["status"] == "completed" and int(run["iterations"]) < k:
            raise ValueError(f"{run['path']}: completed only {int(run['iterations'])} iterations, "
                             f"fewer than k={k}")
        # a diverged run counts only if it diverged after k (its loss at k is then finite)
        part = curve[(curve["iteration"] > k - window) & (curve["iteration"] <= k)]
        reached = int(run["iterations"]) >= k if run["status"] == "completed" \
            else int(run["iterations"]) > k
        loss = float(part["loss"].mean()) if reached and len(part) else math.nan
        err = float(part["error_pct"].mean()) if reached and len(part) else math.nan
        failed = not math.isfinite(loss)
        spec = parse_model_name(run["model"])
        rows.append({"run_id": run["run_id"], "model": run["model"], "label": model_label(spec),
                     "family": run["family"], "block": run["block"], "depth": int(run["depth"]),
                     "variant": spec.variant, "seed": int(run["seed"]),
                     "dataset": run["dataset"], "recipe": run["recipe"], "k": k,
                     "window": window, "train_loss": loss, "train_error_pct": err,
                     "status": run["status"],
                     "diverged": bool(failed and run["status"] == "diverged")})
    table = sort_table(pd.DataFrame(rows, columns=COLUMNS), within="run_id")
    if out_dir is not None:
        from resnet_bench.plots.inside import plot_depth_challenge
        plot_depth_challenge(table, out_dir, name)
    return table
