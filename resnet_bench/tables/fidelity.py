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
"""

from __future__ import annotations

import math

import pandas as pd

from resnet_bench.schema import FIDELITY_COLUMNS
from resnet_bench.tables.claims import METRICS
from resnet_bench.tables.stats import completed_values, seed_stats

REFERENCE = "fp32"
K_STD = 2
MIN_N = 2
FIDELITY_METRICS = ("train_error", "test_error")
CONSISTENT, NOT_CONSISTENT, NOT_TESTABLE = "consistent", "not consistent", "not testable"

RULE = (
    f"Rule: each reduced-precision recipe is paired with the {REFERENCE} runs of the same model "
    f"and dataset whose recipe differs only in precision and speed-only knobs. With n >= {MIN_N} "
    f"completed seeds of the reduced-precision recipe, **consistent** when every {REFERENCE} "
    f"run's final value lies within their mean ± {K_STD} std (ddof=1), otherwise **not "
    f"consistent**; a diverged run on either side is not consistent; n < {MIN_N} or no "
    f"{REFERENCE} run to compare with is **not testable**."
)


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


def fidelity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, reduced-precision recipe, fp32 recipe, metric)."""
    out = []
    low_runs = runs[runs["precision"] != REFERENCE]
    for (dataset, model, recipe), low in low_runs.groupby(["dataset", "model", "recipe"],
                                                           sort=False):
        same = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                    & (runs["precision"] == REFERENCE) & (runs["recipe_hash_except_precision"]
                                                          == low["recipe_hash_except_precision"]
                                                          .iloc[0])]
        ident = {"dataset": dataset, "dataset_label": low["dataset_label"].iloc[0],
                 "model": model, "recipe": recipe, "precision": low["precision"].iloc[0]}
        refs = list(same.groupby("recipe", sort=True)) or [("", same)]
        for ref_recipe, ref in refs:
            for metric in FIDELITY_METRICS:
                out.append({**ident, "metric": metric, "reference_recipe": ref_recipe,
                            **_decide(ref, low, METRICS[metric][0])})
    return pd.DataFrame(out, columns=FIDELITY_COLUMNS)


def _num(x) -> str:
    return "" if x != x else f"{x:.2f}"


def _seeds(mean, std, n) -> str:
    if not n:
        return "no completed run"
    return f"{mean:.2f} (n=1)" if std != std else f"{mean:.2f} ± {std:.2f} (n={int(n)})"


def to_markdown(df: pd.DataFrame) -> str:
    parts = ["# Reduced precision against fp32", "",
             "Final-iteration values of a reduced-precision recipe's seeds (mean ± std, n) "
             f"against {REFERENCE} repeats of the same network and recipe.", "", RULE, ""]
    if df.empty:
        return "\n".join(parts + ["_(no reduced-precision runs in this grid)_", ""])
    rows = [{"dataset": r["dataset_label"], "model": r["model"],
             "metric": METRICS[r["metric"]][1], "recipe": f"{r['recipe']} ({r['precision']})",
             "seeds (mean ± std, n)": _seeds(r["mean"], r["std"], r["n"]),
             f"{REFERENCE} runs": f"{r['reference_values']} (`{r['reference_recipe']}`)"
             if r["reference_recipe"] else "–",
             "band": f"[{_num(r['band_low'])}, {_num(r['band_high'])}]"
             if r["band_low"] == r["band_low"] else "",
             "verdict": f"**{r['verdict']}**", "reason": r["reason"]} for _, r in df.iterrows()]
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return "\n".join(parts + [table, ""])
