"""Statistics over seeds, one definition for the summary, claims and fidelity tables."""

from __future__ import annotations

import math

import pandas as pd


def seed_stats(values: pd.Series) -> dict:
    """n, mean, std (sample std, ddof=1; NaN for one value), median, min and max of the values
    that exist (a diverged run may have no final value: NaN is skipped)."""
    v = values.dropna()
    n = len(v)
    return {"n": n,
            "mean": v.mean() if n else math.nan,
            "std": v.std(ddof=1) if n > 1 else math.nan,
            "median": v.median() if n else math.nan,
            "min": v.min() if n else math.nan,
            "max": v.max() if n else math.nan}


def counted(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that count as seeds: a duplicate (`duplicate_of` set by the aggregate stage) is
    the same run twice, never n = 2."""
    if "duplicate_of" not in runs.columns:
        return runs
    return runs[runs["duplicate_of"].fillna("") == ""]


def completed_values(runs: pd.DataFrame, column: str) -> pd.Series:
    """The final values of the completed runs that count (a diverged run is a failure, not a
    value; a duplicate is not a second seed)."""
    runs = counted(runs)
    return runs.loc[runs["status"] == "completed", column].dropna().astype(float)
