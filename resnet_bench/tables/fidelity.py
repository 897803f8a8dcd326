"""Reduced precision against fp32: the `fidelity` table.

A study trained in bf16 (autocast) stands in for the papers' fp32 only if an fp32 repeat of some
of its networks ends where its seeds do. This table makes that check from the run records of
whatever grid ran, so no verdict is typed by hand.

Pairs: for each dataset, model and recipe whose precision is not fp32, the fp32 runs of the same
model and dataset whose recipe is the same apart from its precision and speed-only knobs (equal
`recipe_hash_except_precision`, `record.recipe_hash` without precision). Without such runs the row
is "not testable". Rule (`RULE`, also in fidelity.md): with n >= 2 completed seeds of the
reduced-precision recipe, every fp32 run's final value lies within their mean ± 2 std (ddof=1):
**consistent**, otherwise **not consistent**. A diverged run on either side is not consistent
(its outcome differs), and n < 2 has no spread to compare against (**not testable**).

Prefix pairs: an fp32 recipe equal to the reduced one but for precision and a shorter schedule
(`recipe_hash_except_precision_length`) trains on exactly its twin's first iterations: the lr is
a pure function of the iteration and the batches of a seed too. It is compared over the second
half of its own iterations (`prefix_window`: 51-100 of 100), past the first steps, by mean
training loss and mean mini-batch error from the train logs. Rule (`PREFIX_RULE`): with n >= 2
reduced-precision seeds, **consistent** when every fp32 run differs from its twin (same seed) by no
more than the two furthest-apart reduced-precision seeds differ over the same window ("precision
moves the curve less than a change of seed does"); a run that diverges by the window's end in one
precision and not the other is **not consistent**.
"""

from __future__ import annotations

import math

import pandas as pd

from resnet_bench.schema import FIDELITY_COLUMNS, METRICS
from resnet_bench.tables.display import TITLES
from resnet_bench.tables.stats import completed_values, counted, seed_stats

REFERENCE = "fp32"
K_STD = 2
MIN_N = 2
FIDELITY_METRICS = ("train_error", "test_error")
PREFIX_METRICS = ("train_loss", "train_error")   # means over a window of the train log
CONSISTENT, NOT_CONSISTENT, NOT_TESTABLE = "consistent", "not consistent", "not testable"

RULE = (
    f"Rule: each reduced-precision recipe is paired with the {REFERENCE} runs of the same model "
    f"and dataset whose recipe differs only in precision and speed-only knobs. With n >= {MIN_N} "
    f"completed seeds of the reduced-precision recipe, **consistent** when every {REFERENCE} "
    f"run's final value lies within their mean ± {K_STD} std (ddof=1), otherwise **not "
    f"consistent**; a diverged run on either side is not consistent; n < {MIN_N} or no "
    f"{REFERENCE} run to compare with is **not testable**."
)
PREFIX_RULE = (
    f"Prefix rule: a shorter {REFERENCE} run of the same recipe (otherwise equal) is compared "
    "with its twin (the reduced-precision run of the same seed) over the second half of its own "
    "iterations, by the mean training loss and mean mini-batch error there. With n >= "
    f"{MIN_N} reduced-precision seeds, **consistent** when |{REFERENCE} - twin| is at most the "
    "difference between the two furthest-apart reduced-precision seeds over the same window; a "
    "run that diverges by the window's end in one precision and not the other is **not "
    "consistent**."
)


def prefix_window(iterations: int) -> tuple[int, int]:
    """Iterations (1-based, inclusive) a prefix pair is compared over: the second half of the
    shorter run, after the first steps in which every run sits near its initial loss."""
    return iterations // 2 + 1, iterations


def _window_means(runs: pd.DataFrame, train: pd.DataFrame, column: str, start: int,
                  end: int) -> dict[int, float]:
    """seed -> mean of `column` over the window (`train`: the train-log rows within it), NaN for
    a run that diverged (or stopped) before the window's end."""
    means = {}
    for _, run in counted(runs).iterrows():
        values = train.loc[train["run_id"] == run["run_id"], column].astype(float)
        full = len(values) == end - start + 1 and bool(values.map(math.isfinite).all())
        means[int(run["seed"])] = float(values.mean()) if full else math.nan
    return means


def _decide_prefix(ref: pd.DataFrame, low: pd.DataFrame, train: pd.DataFrame, column: str,
                   start: int, end: int) -> dict:
    ref_means = _window_means(ref, train, column, start, end)
    low_means = _window_means(low, train, column, start, end)
    values = pd.Series([v for v in low_means.values() if v == v], dtype=float)
    stats = seed_stats(values)
    spread = float(values.max() - values.min()) if len(values) >= MIN_N else math.nan
    diffs = {seed: v - low_means[seed] for seed, v in ref_means.items() if seed in low_means}
    row = {"reference_values": "; ".join(f"{v:.2f}" for v in ref_means.values()),
           "reference_n": len(ref_means), "mean": float(stats["mean"]),
           "std": float(stats["std"]), "n": int(stats["n"]), "band_low": math.nan,
           "band_high": math.nan,
           "max_abs_diff": max((abs(d) for d in diffs.values() if d == d), default=math.nan)}
    if len(diffs) == 1 and spread == spread:     # one fp32 run: its twin ± the seeds' spread
        twin = low_means[next(iter(diffs))]
        row.update(band_low=twin - spread, band_high=twin + spread)
    window = f"iterations {start}-{end}"
    lone = [f"seed {seed} diverged by iteration {end} in "
            + (REFERENCE if ref_means[seed] != ref_means[seed] else "reduced precision")
            + " only" for seed in diffs
            if (ref_means[seed] != ref_means[seed]) != (low_means[seed] != low_means[seed])]
    if lone:
        return {**row, "verdict": NOT_CONSISTENT, "reason": "; ".join(lone)}
    if missing := sorted(set(ref_means) - set(low_means)):
        return {**row, "verdict": NOT_TESTABLE, "reason": "no reduced-precision twin of "
                + ", ".join(f"seed {s}" for s in missing)}
    if spread != spread:
        return {**row, "verdict": NOT_TESTABLE, "reason": f"n={len(values)} reduced-precision "
                f"seeds through {window}: no spread to compare with"}
    if any(d != d for d in diffs.values()):
        return {**row, "verdict": NOT_TESTABLE, "reason": f"diverged by iteration {end} in both "
                "precisions: no values to compare"}
    worst = max(diffs, key=lambda s: abs(diffs[s]))
    relation = "<=" if abs(diffs[worst]) <= spread else ">"
    reason = (f"|{REFERENCE} - twin| {abs(diffs[worst]):.3f} (seed {worst}) {relation} seed "
              f"spread {spread:.3f} over {window}")
    return {**row, "verdict": CONSISTENT if relation == "<=" else NOT_CONSISTENT,
            "reason": reason}


def _decide(ref: pd.DataFrame, low: pd.DataFrame, column: str) -> dict:
    ref_values, low_values = completed_values(ref, column), completed_values(low, column)
    stats = seed_stats(low_values)
    mean, std, n = float(stats["mean"]), float(stats["std"]), int(stats["n"])
    band = (mean - K_STD * std, mean + K_STD * std) if n >= MIN_N else (math.nan, math.nan)
    row = {"reference_values": "; ".join(f"{v:.2f}" for v in ref_values),
           "reference_n": len(ref_values), "mean": mean, "std": std, "n": n,
           "band_low": band[0], "band_high": band[1],
           "max_abs_diff": float((ref_values - mean).abs().max()) if len(ref_values) and n
           else math.nan}
    diverged = [f"{len(side) - len(values)} of {len(side)} {what} runs without a completed "
                f"final value" for side, values, what in ((ref, ref_values, REFERENCE),
                                                          (low, low_values, "reduced"))
                if (side["status"] != "completed").any()]
    if diverged:
        return {**row, "verdict": NOT_CONSISTENT, "reason": "; ".join(diverged)}
    if ref.empty:
        return {**row, "verdict": NOT_TESTABLE,
                "reason": f"no {REFERENCE} run of this model with the recipe otherwise equal"}
    if n < MIN_N:
        return {**row, "verdict": NOT_TESTABLE,
                "reason": f"n={n} reduced-precision seeds: no spread to compare with"}
    outside = [v for v in ref_values if not band[0] <= v <= band[1]]
    if outside:
        return {**row, "verdict": NOT_CONSISTENT, "reason": f"{REFERENCE} "
                + ", ".join(f"{v:.2f}" for v in outside)
                + f" outside mean ± {K_STD} std [{band[0]:.2f}, {band[1]:.2f}]"}
    return {**row, "verdict": CONSISTENT,
            "reason": f"within mean ± {K_STD} std [{band[0]:.2f}, {band[1]:.2f}]"}


def fidelity_table(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, model, reduced-precision recipe, fp32 recipe, metric); prefix pairs
    need the train logs (`curves`)."""
    out = []
    low_runs = runs[runs["precision"] != REFERENCE]
    for (dataset, model, recipe), low in low_runs.groupby(["dataset", "model", "recipe"],
                                                           sort=False):
        mine = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                    & (runs["precision"] == REFERENCE)]
        same = mine[mine["recipe_hash_except_precision"]
                    == low["recipe_hash_except_precision"].iloc[0]]
        ident = {"dataset": dataset, "dataset_label": low["dataset_label"].iloc[0],
                 "model": model, "recipe": recipe, "precision": low["precision"].iloc[0]}
        shorter = mine.iloc[:0]
        if curves is not None:
            shorter = mine[(mine["recipe_hash_except_precision_length"]
                            == low["recipe_hash_except_precision_length"].iloc[0])
                           & (mine["planned_iterations"] < low["planned_iterations"].min())]
        refs = list(same.groupby("recipe", sort=True))
        prefixes = list(shorter.groupby("recipe", sort=True))
        for ref_recipe, ref in refs or ([] if prefixes else [("", same)]):
            for metric in FIDELITY_METRICS:
                out.append({**ident, "metric": metric, "window": "",
                            "reference_recipe": ref_recipe,
                            **_decide(ref, low, METRICS[metric].final)})
        for ref_recipe, ref in prefixes:
            start, end = prefix_window(int(ref["planned_iterations"].max()))
            train = curves[(curves["split"] == "train")
                           & curves["iteration"].between(start, end)]
            for metric in PREFIX_METRICS:
                out.append({**ident, "metric": metric, "window": f"{start}-{end}",
                            "reference_recipe": ref_recipe,
                            **_decide_prefix(ref, low, train, METRICS[metric].column, start,
                                             end)})
    return pd.DataFrame(out, columns=FIDELITY_COLUMNS)


def _num(x) -> str:
    return "" if x != x else f"{x:.2f}"


def _seeds(mean, std, n) -> str:
    if not n:
        return "no completed run"
    return f"{mean:.2f} (n=1)" if std != std else f"{mean:.2f} ± {std:.2f} (n={int(n)})"


def to_markdown(df: pd.DataFrame) -> str:
    parts = [f"# {TITLES['fidelity']}", "",
             "Final-iteration values of a reduced-precision recipe's seeds (mean ± std, n) "
             f"against {REFERENCE} repeats of the same network and recipe; a shorter "
             f"{REFERENCE} run against its twin over a window of its iterations.", "", RULE, "",
             PREFIX_RULE, ""]
    if df.empty:
        return "\n".join(parts + ["_(no reduced-precision runs in this grid)_", ""])
    rows = [{"dataset": r["dataset_label"], "model": r["model"],
             "metric": METRICS[r["metric"]].heading + (f", mean over iterations {r['window']}"
                                                  if r["window"] else ""),
             "recipe": f"{r['recipe']} ({r['precision']})",
             "seeds (mean ± std, n)": _seeds(r["mean"], r["std"], r["n"]),
             f"{REFERENCE} runs": f"{r['reference_values']} (`{r['reference_recipe']}`)"
             if r["reference_recipe"] else "–",
             "band": f"[{_num(r['band_low'])}, {_num(r['band_high'])}]"
             if r["band_low"] == r["band_low"] else "",
             "verdict": f"**{r['verdict']}**", "reason": r["reason"]} for _, r in df.iterrows()]
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return "\n".join(parts + [table, ""])
