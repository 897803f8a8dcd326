"""Read run records (resnet_bench.record, the format defined once) into pandas, strictly.

`load_runs(paths)` takes run directories, `summary.json` files, globs, or parent directories
(searched recursively for `summary.json`, the file a run writes last) and returns a `RunSet`:
one row per run (`runs`) and the tidy per-iteration curves of all runs (`curves`).

`load_runs(paths, roots=[...])` adds the runs of further results roots (another machine's
study of the same design, a published copy); every row says which root it was read from
(`root`). A run found in two roots is one run: `mark_duplicates` names the copy's original
(same identity and seed, or a byte-identical train log) and only the original counts as a seed.
Two records of the same network, dataset, recipe name and seed with different identities are
two designs under one name, and are refused.

Every problem with a record raises `RecordError` (a `ValueError`) whose one-line message names
the file. What the contract allows is accepted: a `diverged` run is a result and may carry
NaN/null final errors; a resumed run may repeat iterations in its train log (the last wins).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resnet_bench import record
from resnet_bench.record import (RecordError, SPLITS, find_run_dirs, read_record_json,  # noqa: F401
                                 run_ids)
from resnet_bench.schema import CURVE_COLUMNS, ID_COLUMNS, RUN_COLUMNS, sort_runs

TRAIN_COLUMNS = list(record.TRAIN_COLUMNS)
EVAL_COLUMNS = list(record.EVAL_COLUMNS)

# The summary's numbers, as floats (NaN where null) in the runs table.
FLOAT_KEYS = record.RESULT_KEYS + record.COST_KEYS

# `final_test_error_pct` is the test error at the last iteration, so it must equal the last test
# row of eval_log.csv; allow for rounding in either file.
FINAL_MATCH_TOL_PCT = 0.01



@dataclass
class RunSet:
    runs: pd.DataFrame     # one row per run, RUN_COLUMNS
    curves: pd.DataFrame   # tidy curves, CURVE_COLUMNS; split is train, test or val


# ---------------------------------------------------------------------------------------------
# one run

def _read_summary(path: Path) -> dict:
    """summary.json, checked (record.read_summary), as a row of the runs table."""
    row = record.read_summary(path).to_dict()
    for key in FLOAT_KEYS:
        row[key] = math.nan if row[key] is None else float(row[key])
    return row


def _read_csv(path: Path, columns: list[str], numeric: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise RecordError(f"{path}: missing")
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise RecordError(f"{path}: unreadable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RecordError(f"{path}: missing column(s) {', '.join(missing)} "
                          f"(expected {','.join(columns)})")
    df = df[columns]
    for col in numeric:
        converted = pd.to_numeric(df[col], errors="coerce")
        bad = converted.isna() & df[col].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise RecordError(f"{path}: column {col} has a non-numeric value "
                              f"{df[col].iloc[row]!r} on data row {row + 1}")
        df[col] = converted.astype(float)
    if df["iteration"].isna().any():
        raise RecordError(f"{path}: empty iteration value")
    df["iteration"] = df["iteration"].astype("int64")
    return df


def _check_finite(path: Path, df: pd.DataFrame, columns: list[str], summary: dict) -> None:
    """A completed run's logs hold finite numbers only (a diverged run ends on a NaN/inf)."""
    if summary["status"] != "completed":
        return
    for col in columns:
        bad = ~pd.Series(pd.to_numeric(df[col]), index=df.index).map(math.isfinite)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise RecordError(f"{path}: column {col} is {df[col].iloc[row]} on data row {row + 1} "
                              "of a completed run (only a diverged run may log a non-finite value)")


def _check_iterations(path: Path, iters: pd.Series, summary: dict) -> None:
    if (iters < 0).any():
        raise RecordError(f"{path}: negative iteration")
    if iters.max() > summary["iterations"]:
        raise RecordError(f"{path}: iteration {iters.max()} beyond the "
                          f"{summary['iterations']} iterations in summary.json")


def _read_train_log(path: Path, summary: dict) -> pd.DataFrame:
    df = _read_csv(path, TRAIN_COLUMNS, TRAIN_COLUMNS)
    if df.empty:
        if summary["iterations"] == 0:
            return df
        raise RecordError(f"{path}: no rows but summary.json reports "
                          f"{summary['iterations']} iterations")
    _check_iterations(path, df["iteration"], summary)
    _check_finite(path, df, ["epoch", "lr", "loss", "error_pct"], summary)
    if df["iteration"].duplicated().any():
        if not summary["resumed"]:
            dup = int(df.loc[df["iteration"].duplicated(), "iteration"].iloc[0])
            raise RecordError(f"{path}: iteration {dup} appears twice in a run never resumed")
        # a resumed run re-logs the iterations after its checkpoint: keep the rerun
        df = df.drop_duplicates("iteration", keep="last")
    if not df["iteration"].is_monotonic_increasing:
        df = df.sort_values("iteration", kind="stable")
    # iterations may be logged 0- or 1-based; a completed run's log must reach the end
    if summary["status"] == "completed" and df["iteration"].iloc[-1] < summary["iterations"] - 1:
        raise RecordError(f"{path}: log ends at iteration {df['iteration'].iloc[-1]} but the "
                          f"run completed {summary['iterations']} iterations")
    return df.reset_index(drop=True)


def _read_eval_log(path: Path, summary: dict) -> pd.DataFrame:
    df = _read_csv(path, EVAL_COLUMNS, ["iteration", "loss", "error_pct"])
    df["split"] = df["split"].astype(str)
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise RecordError(f"{path}: split must be one of {', '.join(SPLITS)}, got {bad[0]!r}")
    if not df.empty:
        _check_iterations(path, df["iteration"], summary)
    _check_finite(path, df, ["loss", "error_pct"], summary)
    df = df.sort_values(["split", "iteration"], kind="stable").reset_index(drop=True)
    test = df[df["split"] == "test"]
    if summary["status"] == "completed":
        if test.empty:
            raise RecordError(f"{path}: no test rows for a completed run")
        last = float(test["error_pct"].iloc[-1])
        if abs(last - summary["final_test_error_pct"]) > FINAL_MATCH_TOL_PCT:
            raise RecordError(f"{path}: last test error {last} differs from "
                              f"final_test_error_pct {summary['final_test_error_pct']} "
                              f"in summary.json")
    return df


def load_run(run_dir: str | os.PathLike, run_id: str | None = None) -> tuple[dict, pd.DataFrame]:
    """One run directory -> (row of the runs table, its tidy curves)."""
    d = Path(run_dir)
    summary = _read_summary(d / record.SUMMARY)
    config = read_record_json(d / record.CONFIG)
    read_record_json(d / record.PROVENANCE)  # must exist and parse; its content is not tabulated
    if config.get("model") != summary["model"]:
        raise RecordError(f"{d / record.CONFIG}: model {config.get('model')!r} differs from "
                          f"{summary['model']!r} in summary.json")
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    train = _read_train_log(d / record.TRAIN_LOG, summary)
    evals = _read_eval_log(d / record.EVAL_LOG, summary)

    row = dict(summary)
    row["run_id"] = run_id or d.name
    # target_iterations is optional in summary.json (record.Summary): without it, the plan is
    # the recorded recipe's iterations
    planned = summary["target_iterations"]
    row["planned_iterations"] = recipe.get("iterations", math.nan) if planned is None else planned
    row["batch_size"] = recipe.get("batch_size", math.nan)
    row["precision"] = summary.get("precision") or recipe.get("precision", "fp32")
    row["recipe_hash_except_precision"] = record.recipe_hash(recipe, leave_out=("precision",))
    row["recipe_hash_except_precision_length"] = record.recipe_hash(
        recipe, leave_out=("precision", "iterations"))
    val = evals[evals["split"] == "val"]
    row["final_val_error_pct"] = float(val["error_pct"].iloc[-1]) if len(val) else math.nan
    row["path"] = str(d)
    # a log without rows says nothing about which run wrote it: no hash, never a duplicate
    row["train_log_sha256"] = (hashlib.sha256((d / record.TRAIN_LOG).read_bytes()).hexdigest()
                               if len(train) else "")
    row["identity"] = summary.get("identity") or ""
    row["duplicate_of"] = ""
    row["root"] = ""

    ident = {k: row[k] for k in ID_COLUMNS}
    train = train.assign(split="train")
    evals = evals.assign(epoch=math.nan, lr=math.nan)
    curves = pd.concat([train, evals], ignore_index=True)
    for key, value in ident.items():
        curves[key] = value
    return {k: row[k] for k in RUN_COLUMNS}, curves[CURVE_COLUMNS]


def mark_duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """Fill `duplicate_of`: a run of the same network, dataset and recipe as an earlier row of
    the table with the same identity and seed, or with a byte-identical train log, is a copy of
    that row's run (a record copied twice, a study published from two folders), not another
    seed."""
    runs = runs.copy()
    first: dict[tuple, str] = {}
    for i, r in runs.iterrows():
        where = (r["model"], r["dataset"], r["recipe"])
        keys = [("log", *where, r["train_log_sha256"])] if r["train_log_sha256"] else []
        if r["identity"]:
            keys.append(("identity", *where, r["seed"], r["identity"]))
        original = next((first[k] for k in keys if k in first), "")
        runs.at[i, "duplicate_of"] = original
        for k in keys:
            first.setdefault(k, original or r["run_id"])
    return runs


def _load_dirs(dirs: list[Path], ids: list[str], root: str) -> tuple[list[dict], list]:
    rows, curves = [], []
    for d, rid in zip(dirs, ids):
        row, curve = load_run(d, rid)
        row["root"] = root
        rows.append(row)
        curves.append(curve)
    return rows, curves


def _one_design_per_name(rows: list[dict]) -> None:
    """Refuse two identities under one (network, dataset, recipe, seed): two designs."""
    named: dict[tuple, dict] = {}
    for row in rows:
        if not row["identity"]:
            continue
        name = (row["model"], row["dataset"], row["recipe"], row["seed"])
        other = named.setdefault(name, row)
        if other["identity"] != row["identity"]:
            raise RecordError(
                f"{row['path']}: {row['model']} seed {row['seed']} of recipe {row['recipe']} on "
                f"{row['dataset']} is another run (identity {row['identity']}) than "
                f"{other['path']} (identity {other['identity']}): two designs under one name; "
                "aggregate them separately")


def load_runs(paths: list[str | os.PathLike] | str | os.PathLike,
              roots: list[str | os.PathLike] = ()) -> RunSet:
    """Load every run named by `paths`, and those under each of `roots` (see module doc), into a
    `RunSet`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    dirs = find_run_dirs(list(paths))
    if not dirs:
        raise RecordError("no run records given")
    common = dirs[0].parent if len(dirs) == 1 else Path(os.path.commonpath([str(d) for d in dirs]))
    rows, curves = _load_dirs(dirs, run_ids(dirs), str(common))
    for root in roots:
        base = Path(root)
        found = find_run_dirs([root])
        ids = [f"{root}:{d.relative_to(base).as_posix() if d != base else d.name}" for d in found]
        more_rows, more_curves = _load_dirs(found, ids, os.fspath(root))
        rows += more_rows
        curves += more_curves
    if roots:
        _one_design_per_name(rows)
    runs = mark_duplicates(sort_runs(pd.DataFrame(rows, columns=RUN_COLUMNS)))
    order = {rid: i for i, rid in enumerate(runs["run_id"])}
    split_order = {"train": 0, "test": 1, "val": 2}
    all_curves = pd.concat(curves, ignore_index=True)
    all_curves = all_curves.sort_values(
        ["run_id", "split", "iteration"],
        key=lambda c: c.map(order) if c.name == "run_id"
        else c.map(split_order) if c.name == "split" else c,
        kind="stable").reset_index(drop=True)
    return RunSet(runs=runs, curves=all_curves)

