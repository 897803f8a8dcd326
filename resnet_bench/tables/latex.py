"""Every table also as LaTeX, for a paper to `\\input` (pandas' `Styler.to_latex`, booktabs rules:
`\\usepackage{booktabs}` in the preamble).

A LaTeX table has to fit a page, so each one shows the columns a paper reports (`COLUMNS`), with
our values as "mean ± std (n)" where the CSV has them apart; the CSV stays the complete record.
The curves table is its digest, as in Markdown. Text is escaped, numbers are rounded for reading
(errors to 2 decimals, p-values to 2 significant digits); missing values print as "--".
"""

from __future__ import annotations

import math

import pandas as pd

from resnet_bench.tables.display import TITLES, curves_digest

COLUMNS = {
    "runs": ["model", "dataset", "recipe", "seed", "status", "iterations",
             "final_train_error_pct", "final_test_error_pct", "root"],
    "summary": ["model", "dataset", "recipe", "n", "n_diverged", "train", "test",
                "test_error_median_mean_std"],
    "paper_comparison": ["paper", "table", "paper_model", "paper_dataset", "quantity",
                         "statistic", "paper_value", "model", "recipe", "n", "reproduced",
                         "diff", "comparable"],
    "claims": ["claim", "where", "dataset", "recipe", "metric", "lower_model", "lower",
               "higher_model", "higher", "paper_lower", "paper_higher", "p_value", "verdict"],
    "fidelity": ["dataset", "model", "metric", "window", "reference_recipe", "recipe",
                 "reference_values", "ours", "verdict"],
}
HEADERS = {
    "final_train_error_pct": "train err. (%)", "final_test_error_pct": "test err. (%)",
    "train": "train err. (%)", "test": "test err. (%)",
    "test_error_median_mean_std": "test err. median (mean±std)", "n_diverged": "diverged",
    "lower_model": "claimed lower", "higher_model": "claimed higher", "lower": "ours (lower)",
    "higher": "ours (higher)", "paper_lower": "paper (lower)", "paper_higher": "paper (higher)",
    "p_value": "p", "paper_model": "paper model", "paper_dataset": "paper data",
    "paper_value": "paper", "reproduced": "ours", "reference_recipe": "fp32 recipe",
    "reference_values": "fp32 values", "ours": "ours (mean±std, n)", "window": "iterations",
}


def _ours(mean, std, n) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    spread = "" if std is None or (isinstance(std, float) and math.isnan(std)) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread} (n={int(n)})"


def display(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The columns the LaTeX table shows, as values (not yet formatted)."""
    if name == "curves":
        return curves_digest(df)
    df = df.copy()
    if name == "summary":
        df["train"] = [_ours(m, s, n) for m, s, n in zip(df["train_error_mean"],
                                                          df["train_error_std"], df["n"])]
        df["test"] = [_ours(m, s, n) for m, s, n in zip(df["test_error_mean"],
                                                         df["test_error_std"], df["n"])]
    elif name == "claims":
        for side in ("lower", "higher"):
            df[side] = [_ours(m, s, n) for m, s, n in zip(df[f"{side}_mean"], df[f"{side}_std"],
                                                          df[f"{side}_n"])]
    elif name == "fidelity":
        df["ours"] = [_ours(m, s, n) for m, s, n in zip(df["mean"], df["std"], df["n"])]
        if not (df["window"].fillna("") != "").any():   # only prefix pairs have a window
            return df[[c for c in COLUMNS[name] if c != "window"]]
    return df[COLUMNS[name]] if name in COLUMNS else df


def _number(x, p_value: bool = False) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "--"
    if isinstance(x, float):
        return f"{x:.2g}" if p_value else f"{x:.2f}"
    return str(x)


def to_latex(name: str, df: pd.DataFrame) -> str:
    """One table as a LaTeX `table` environment with booktabs rules and a caption."""
    body = display(name, df).rename(columns=lambda c: HEADERS.get(c, c.replace("_", " ")))
    if body.empty:  # the columns still say what the table would hold
        body = pd.DataFrame([["(no rows)"] + [""] * (body.shape[1] - 1)], columns=body.columns)
    formatters = {c: (lambda x, p=(c == "p"): _number(x, p)) for c in body.columns}
    styler = (body.style.hide(axis="index")
              .format(formatters, escape="latex")
              .format_index(escape="latex", axis=1))
    return styler.to_latex(hrules=True, environment="table", position="htbp",
                           caption=TITLES.get(name, name), label=f"tab:{name}",
                           column_format="l" * len(body.columns))
