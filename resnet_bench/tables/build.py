"""The aggregate tables (curves, runs, summary, paper_comparison, claims,
fidelity), as CSV, Markdown and LaTeX (`tables.latex`; titles and the curves digest:
`tables.display`).

Their names and columns are `resnet_bench.schema`'s (`TABLES`, `TABLE_COLUMNS`), and so is the
reader, `schema.read_table`: the figures read the tables without importing this stage.

All numbers come from the final-iteration records (`summary.json`), never a best epoch.
Statistics over seeds: n = runs in the group; mean, std (sample std, ddof=1; empty for one
value), median, min (= best of n) and max over the runs that have a final value (a diverged run
may have none; `n_diverged` counts diverged runs).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from resnet_bench.infra import atomic
from resnet_bench.schema import CSV_FLOAT_FORMAT, GROUP_KEYS, STATS, SUMMARY_COLUMNS, sort_runs
from resnet_bench.tables import claims, fidelity
from resnet_bench.tables.aggregate import RunSet
from resnet_bench.tables.display import TITLES, curves_digest
from resnet_bench.tables.latex import to_latex
from resnet_bench.tables.paper import compare
from resnet_bench.tables.stats import counted, seed_stats

NOTES = {
    "summary": "std is the sample std (ddof=1). min = best of n. Statistics skip runs without a "
               "final value (diverged). `best (mean±std)` is V1's format (Table 6), "
               "`median (mean±std)` V2's (Table 4).",
    "paper_comparison": "statistic: best -> our min, median -> our median, mean -> our mean, "
                        "single (n not stated) -> our mean. within_paper_spread: mean±std rows "
                        "|diff| <= paper std; bounds (fail = >20%) the bound holds; else empty. "
                        "comparable: same data (original CIFAR archives) and the paper's schedule "
                        "(64k iterations, batch 128; † rows batch 64); ImageNet: a dataset "
                        "labelled ImageNet-1k and batch 256, the paper's test protocol in note; "
                        "top-5 rows need runs that record a top-5 error.",
}


def paper_style(center: float, mean: float, std: float) -> str:
    """'6.43 (6.61±0.16)'; a single value prints alone, no value as 'n/a'."""
    if center is None or math.isnan(center):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{center:.2f}"
    return f"{center:.2f} ({mean:.2f}±{std:.2f})"


def _stats(values: pd.Series, prefix: str) -> dict:
    stats = seed_stats(values)
    return {f"{prefix}_{s}": stats[s] for s in STATS}


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, block, depth, variant, dataset, recipe)."""
    rows = []
    for key, g in counted(runs).groupby(GROUP_KEYS, sort=False, dropna=False):
        row = dict(zip(GROUP_KEYS, key))
        row["model"] = g["model"].iloc[0]
        row["dataset_label"] = g["dataset_label"].iloc[0]
        row["n"] = len(g)
        row["n_completed"] = int((g["status"] == "completed").sum())
        row["n_diverged"] = int((g["status"] == "diverged").sum())
        row.update(_stats(g["final_test_error_pct"], "test_error"))
        row.update(_stats(g["final_train_error_pct"], "train_error"))
        row["test_loss_mean"] = g["final_test_loss"].mean()
        row["train_loss_mean"] = g["final_train_loss"].mean()
        row["test_error_best_mean_std"] = paper_style(
            row["test_error_min"], row["test_error_mean"], row["test_error_std"])
        row["test_error_median_mean_std"] = paper_style(
            row["test_error_median"], row["test_error_mean"], row["test_error_std"])
        row["train_error_median_mean_std"] = paper_style(
            row["train_error_median"], row["train_error_mean"], row["train_error_std"])
        row["params"] = g["params"].iloc[0]
        row["macs"] = g["macs"].iloc[0]
        row["images_per_s_mean"] = g["images_per_s"].mean()
        rows.append(row)
    return sort_runs(pd.DataFrame(rows, columns=SUMMARY_COLUMNS))


def build_tables(runset: RunSet, reference: pd.DataFrame | None = None,
                 family: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
    """All tables from loaded runs; `reference` defaults to the packaged paper CSV; `family`:
    the claims the study registered (None: all)."""
    return {
        "curves": runset.curves,
        "runs": runset.runs,
        "summary": summarize(runset.runs),
        "paper_comparison": compare(runset.runs, reference),
        "claims": claims.claims_table(runset.runs, reference, family=family),
        "fidelity": fidelity.fidelity_table(runset.runs, runset.curves),
    }


# ---------------------------------------------------------------------------------------------
# writing

def _fmt(x) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return ""
        return f"{x:.3f}".rstrip("0").rstrip(".")
    return "" if x is None or x is pd.NA else str(x)


def to_markdown(name: str, df: pd.DataFrame) -> str:
    if name == "claims":    # sections per dataset/recipe and the decision rule
        return claims.to_markdown(df)
    if name == "fidelity":   # the rule above the rows
        return fidelity.to_markdown(df)
    body = curves_digest(df) if name == "curves" else df
    text = body.map(_fmt).to_markdown(index=False) if len(body) else "_(no rows)_"
    parts = [f"# {TITLES.get(name, name)}", ""]
    if name in NOTES:
        parts += [NOTES[name], ""]
    return "\n".join(parts + [text, ""])


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> list[Path]:
    """Write each table as `<name>.csv`, `<name>.md` and `<name>.tex`; returns the paths
    written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        csv, md, tex = out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"
        with atomic.replacing(csv) as tmp:
            df.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
        atomic.write_text(md, to_markdown(name, df))
        atomic.write_text(tex, to_latex(name, df))
        written += [csv, md, tex]
    return written


__all__ = ["build_tables", "write_tables", "summarize", "paper_style"]
