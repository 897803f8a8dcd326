"""What a reader sees of each table besides its CSV: its title, and for the curves table a digest
(every iteration stays in curves.csv). The Markdown (`tables.build`) and the LaTeX
(`tables.latex`) writers share these.
"""

from __future__ import annotations

import pandas as pd

TITLES = {
    "curves": "Training curves (digest; every iteration is in curves.csv)",
    "runs": "Runs (final-iteration values)",
    "summary": "Summary over seeds",
    "paper_comparison": "Reproduced vs published",
    "claims": "Claims of the papers, tested on this grid",
    "fidelity": "Reduced precision against fp32",
}


def curves_digest(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run and split: number of points, iteration range, last loss and error."""
    cols = ["run_id", "model", "dataset", "seed", "split", "points", "first_iteration",
            "last_iteration", "last_loss", "last_error_pct"]
    if curves.empty:
        return pd.DataFrame(columns=cols)
    g = curves.groupby(["run_id", "split"], sort=False, observed=True)
    out = g.agg(model=("model", "first"), dataset=("dataset", "first"), seed=("seed", "first"),
                points=("iteration", "size"), first_iteration=("iteration", "min"),
                last_iteration=("iteration", "max"), last_loss=("loss", "last"),
                last_error_pct=("error_pct", "last")).reset_index()
    return out[cols]
