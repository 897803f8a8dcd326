"""Statistics over seeds, one definition for the summary and the claims tables."""

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
