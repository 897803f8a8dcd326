"""The depth challenge: training loss after a short fixed budget of k iterations, against depth.

V2 Fig. 1 (right) and Sec. 4.1: with the original unit, ResNet-1001 "reduces the training error
very slowly at the beginning of training", while the pre-activation ResNet-1001 "reduces the
training loss very quickly". Plain nets get worse with depth already at 20-56 layers (V1 Fig. 6).
Run every family at every depth with the same short recipe (config/depth_challenge.yaml) and read
off the training loss at iteration k.

`train_loss` of a run at k = mean training mini-batch loss over the logged iterations in
(k - window, k] of its train log (the papers' dashed curves are these mini-batch values).
A run that diverged before k has no loss at k: `diverged` is True and `train_loss` NaN.
k defaults to the smallest completed iteration count among the runs, so every run is read at the
same iteration.

Drawn from the tables (`runs` and `curves`, written by `resnet-bench aggregate`), not from the
run records; the figure is resnet_bench.plots.inside.plot_depth_challenge.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from resnet_bench.models.spec import parse_model_name
from resnet_bench.record import find_run_dirs, run_ids
from resnet_bench.schema import read_table, sort_table, write_csv

COLUMNS = ["run_id", "model", "label", "family", "block", "depth", "variant", "seed", "dataset",
           "recipe", "k", "window", "train_loss", "train_error_pct", "status", "diverged"]


def select_runs(runs: pd.DataFrame, curves: pd.DataFrame, paths: Iterable[str | os.PathLike]
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the runs and curves tables of the run directories named by `paths` (as
    `resnet-bench aggregate --runs` takes them), with run ids relative to those runs' common
    parent, as aggregating only them would name them."""
    dirs = find_run_dirs(list(paths))
    by_path = dict(zip(runs["path"], runs["run_id"]))
    missing = [d for d in dirs if str(d) not in by_path]
    if missing:
        raise ValueError(f"{missing[0]}: not in the runs table (aggregate it first)")
    ids = {by_path[str(d)]: rid for d, rid in zip(dirs, run_ids(dirs))}
    runs = runs[runs["run_id"].isin(set(ids))].assign(run_id=lambda r: r["run_id"].map(ids))
    curves = curves[curves["run_id"].isin(set(ids))].assign(
        run_id=lambda c: c["run_id"].map(ids))
    return runs.reset_index(drop=True), curves.reset_index(drop=True)


def depth_challenge(tables, *, runs: Iterable[str | os.PathLike] = (), k: int | None = None,
                    window: int = 50, out_dir: str | os.PathLike | None = None,
                    name: str = "depth_challenge") -> pd.DataFrame:
    """Training loss after `k` iterations for every run of `tables`: a directory written by
    `resnet-bench aggregate`, or its tables in memory (anything with `.runs` and `.curves`, e.g.
    the `RunSet` of `load_runs`). `runs` (run directories, summary.json files, globs, or parents)
    restricts it to those runs. Returns the tidy table (columns `COLUMNS`); with `out_dir`,
    writes it as `<name>.csv` there."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if isinstance(tables, (str, os.PathLike)):
        info, curves = read_table(Path(tables), "runs"), read_table(Path(tables), "curves")
    else:
        info, curves = tables.runs, tables.curves
    runs = list(runs)
    if runs:
        info, curves = select_runs(info, curves, runs)
    if k is None:
        done = info.loc[info["status"] == "completed", "iterations"]
        if done.empty:
            raise ValueError("no completed run to take k from: give k explicitly")
        k = int(done.min())
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train = curves[curves["split"] == "train"]
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
        rows.append({"run_id": run["run_id"], "model": run["model"], "label": spec.label,
                     "family": run["family"], "block": run["block"], "depth": int(run["depth"]),
                     "variant": spec.variant, "seed": int(run["seed"]),
                     "dataset": run["dataset"], "recipe": run["recipe"], "k": k,
                     "window": window, "train_loss": loss, "train_error_pct": err,
                     "status": run["status"],
                     "diverged": bool(failed and run["status"] == "diverged")})
    table = sort_table(pd.DataFrame(rows, columns=COLUMNS), within="run_id")
    if out_dir is not None:
        write_csv(table, out_dir, name)
    return table
