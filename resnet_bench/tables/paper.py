"""Published CIFAR numbers (package data `reference/paper_reference.csv`) next to ours.

Which paper rows are used: CIFAR rows whose metric is a final train/test error
(`test_error*_pct`, `train_error_pct`, `test_or_train_error_pct`) and whose `suite_model` column
names the suite's networks (canonical model names, `|`-separated where one published number
stands for several, e.g. V2 Table 1's "b_g = 0 to -5"; empty for external baselines and
ImageNet nets). The comparison is a join of our runs and these rows on the canonical model name.

Statistic of a paper row, from its `metric` and `n_runs` columns:

=============================================  ===========  =========================
paper row says                                  statistic    reproduced with
=============================================  ===========  =========================
metric `*best*` (V1 Table 6 ResNet-110 6.43)    best         min over our seeds
metric or n_runs `*median*` (V2 tables)         median       median over our seeds
metric or n_runs `*mean*` (V1 6.61±0.16)        mean         mean over our seeds
anything else (n not stated: V1 20..56, 1202)   single       mean over our seeds
=============================================  ===========  =========================

"fail" (V2 Table 1: test error > 20%), ">60" and "<0.1" are bounds (`relation` `>`/`<`).
`within_paper_spread`: for a mean±std row, |reproduced mean − paper mean| ≤ paper std; for a
bound, the reproduced statistic satisfies it; otherwise (no published spread) empty.
`comparable` is true only for the same data (CIFAR-10/CIFAR-100 from the original archives) and
the paper's schedule (64k iterations, batch 128; the † rows: batch 64); `note` says why not.
Statistics skip runs with no final error (diverged with NaN), which the note counts.
"""

from __future__ import annotations

import math
import re
from importlib import resources

import pandas as pd

from resnet_bench.schema import COMPARISON_COLUMNS

PAPER_ITERATIONS = 64_000
PAPER_BATCH = 128
FAIL_THRESHOLD_PCT = 20.0   # V2 Table 1: "fail" = test error above 20%

STAT_OF_REPRODUCED = {"best": "min", "median": "median", "mean": "mean", "single": "mean"}

_ERROR_METRIC = re.compile(r"^(test|train|test_or_train)_error(_[a-z0-9_]+)?_pct$")



def load_reference(path=None) -> pd.DataFrame:
    """The packaged paper_reference.csv (or `path`), all columns as strings except std."""
    if path is None:
        source = resources.files("resnet_bench.reference").joinpath("paper_reference.csv")
        with resources.as_file(source) as p:
            df = pd.read_csv(p, dtype=str)
    else:
        df = pd.read_csv(path, dtype=str)
    if "suite_model" not in df.columns:
        raise ValueError(f"paper reference {path}: no suite_model column (the canonical model "
                         "names each published row stands for)")
    df["std"] = pd.to_numeric(df["std"], errors="coerce")
    return df


def paper_statistic(metric: str, n_runs) -> str:
    m = str(metric).lower()
    n = "" if pd.isna(n_runs) else str(n_runs).lower()
    if "best" in m:
        return "best"
    if "median" in m or "median" in n:
        return "median"
    if "mean" in m or "mean" in n:
        return "mean"
    return "single"


def _paper_n(metric: str, n_runs) -> float:
    m = re.search(r"of_(\d+)", str(metric)) or re.match(r"\s*(\d+)", "" if pd.isna(n_runs)
                                                         else str(n_runs))
    return float(m.group(1)) if m else math.nan


def _paper_value(text: str) -> tuple[str, float] | None:
    t = str(text).strip().lower()
    if t == "fail":
        return ">", FAIL_THRESHOLD_PCT
    m = re.fullmatch(r"([<>]?)\s*([\d.]+)", t)
    if not m:
        return None
    return (m.group(1) or "="), float(m.group(2))


def _paper_dataset(text: str) -> str | None:
    t = str(text).strip()
    if t.startswith("CIFAR-100"):
        return "cifar100"
    if t.startswith("CIFAR-10") and not t.startswith("CIFAR-10/"):
        return "cifar10"
    return None


def suite_models(text) -> list[str]:
    """The canonical model names in one `suite_model` cell ([] where empty)."""
    return [] if pd.isna(text) else [n for n in str(text).split("|") if n]


def paper_rows(reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The comparable paper rows with statistic, value, n and dataset: one row per (paper row,
    suite model it names), in the reference's order; `suite_model` is the join key."""
    ref = load_reference() if reference is None else reference
    rows = []
    for _, r in ref.iterrows():
        metric = str(r["metric"])
        if not _ERROR_METRIC.match(metric) or "convergence" in metric:
            continue
        dataset = _paper_dataset(r["dataset"])
        value = _paper_value(r["value"])
        if dataset is None or value is None:
            continue
        short = "V1" if str(r["paper"]).startswith("ResNetV1") else "V2"
        for model in suite_models(r["suite_model"]):
            rows.append({
                "paper": short, "table": r["table_or_figure"], "paper_model": r["model"],
                "paper_variant": r["variant"], "paper_dataset": r["dataset"],
                "ref_dataset": dataset, "suite_model": model,
                "quantity": "train" if metric.startswith("train") else "test",
                "statistic": paper_statistic(metric, r["n_runs"]),
                "relation": value[0], "paper_value": value[1], "paper_std": r["std"],
                "paper_n": _paper_n(metric, r["n_runs"]), "paper_text": r["value"],
                "paper_batch": 64 if "batch 64" in str(r["variant"]).lower() else PAPER_BATCH,
            })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# our side

def data_identity(dataset: str, label: str) -> tuple[str, bool, str]:
    """(paper dataset it stands for, same data?, note) for one of our datasets."""
    name, lab = str(dataset).lower(), str(label).lower()
    hundred = "100" in name or "cifar-100" in lab
    if "jpeg" in name or "jpeg" in lab or "mirror" in lab:
        return ("cifar100" if hundred else "cifar10"), False, \
            "JPEG q75 mirror: not bit-identical to the original CIFAR archive"
    if name in ("cifar10", "cifar100"):
        return name, True, ""
    if name == "synthetic":
        return "cifar10", False, "synthetic data: not comparable"
    return ("cifar100" if hundred else "cifar10"), False, f"{label}: not CIFAR data, not comparable"


def _recipe_notes(group: pd.DataFrame, paper_batch: int) -> list[str]:
    notes = []
    planned = sorted(set(group["planned_iterations"].dropna().astype(int)))
    batch = sorted(set(group["batch_size"].dropna().astype(int)))
    if paper_batch == PAPER_BATCH and planned != [PAPER_ITERATIONS]:
        notes.append(f"schedule {'/'.join(map(str, planned)) or 'unknown'} iterations "
                     f"(paper {PAPER_ITERATIONS})")
    if batch != [paper_batch]:
        notes.append(f"batch {'/'.join(map(str, batch)) or 'unknown'} (paper {paper_batch})")
    return notes


def compare(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper_comparison table: one row per (paper row, matching group of our runs)."""
    prow = paper_rows(reference)
    out = []
    if runs.empty or prow.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    keys = ["family", "block", "depth", "variant", "dataset", "recipe"]
    for key, g in runs.groupby(keys, sort=False, dropna=False):
        first = g.iloc[0]
        ref_ds, same_data, data_note = data_identity(first["dataset"], first["dataset_label"])
        model = _canonical_name(first["model"])
        joined = prow[(prow["suite_model"] == model) & (prow["ref_dataset"] == ref_ds)]
        for _, p in joined.iterrows():
            col = "final_test_error_pct" if p["quantity"] == "test" else "final_train_error_pct"
            values = g[col].dropna()
            how = STAT_OF_REPRODUCED[p["statistic"]]
            repro = float(getattr(values, how)()) if len(values) else math.nan
            rstd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            diff = repro - p["paper_value"]
            within, rule = _within(p, repro, diff)
            notes = [data_note] if data_note else []
            recipe_notes = _recipe_notes(g, p["paper_batch"])
            notes += recipe_notes
            if len(values) < len(g):
                notes.append(f"{len(g) - len(values)} run(s) without a final error excluded")
            if p["statistic"] in ("best", "median") and not math.isnan(p["paper_n"]) \
                    and len(values) != p["paper_n"]:
                notes.append(f"{p['statistic']} of {len(values)} vs paper's of "
                             f"{int(p['paper_n'])}")
            if p["paper"] == "V2" and p["statistic"] == "median" \
                    and p["suite_model"] == "v1-basic-110" and p["paper_value"] == 6.61:
                notes.append("V2's 6.61 may be V1's mean reused rather than a median")
            out.append({
                "paper": p["paper"], "table": p["table"], "paper_model": p["paper_model"],
                "paper_variant": p["paper_variant"], "paper_dataset": p["paper_dataset"],
                "quantity": p["quantity"], "statistic": p["statistic"],
                "relation": p["relation"], "paper_value": p["paper_value"],
                "paper_std": p["paper_std"], "paper_n": p["paper_n"],
                "paper_text": p["paper_text"],
                "model": first["model"], "family": first["family"], "block": first["block"],
                "depth": int(first["depth"]), "variant": first["variant"],
                "dataset": first["dataset"], "dataset_label": first["dataset_label"],
                "recipe": first["recipe"], "n": len(values), "reproduced": repro,
                "reproduced_std": rstd, "diff": diff, "within_paper_spread": within,
                "rule": rule, "comparable": same_data and not recipe_notes,
                "note": "; ".join(notes),
            })
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


def _canonical_name(model: str) -> str:
    """A run's model name as the reference spells it (records written by an older version may
    carry a non-canonical spelling); a name this version cannot parse meets no paper row."""
    from resnet_bench.models.spec import ModelNameError, parse_model_name
    try:
        return parse_model_name(model).name
    except ModelNameError:
        return ""


def _within(p, repro: float, diff: float):
    if math.isnan(repro):
        return pd.NA, "no reproduced value"
    if p["relation"] == ">":
        return bool(repro > p["paper_value"]), f"reproduced > {p['paper_value']:g}"
    if p["relation"] == "<":
        return bool(repro < p["paper_value"]), f"reproduced < {p['paper_value']:g}"
    if not math.isnan(p["paper_std"]):
        return bool(abs(diff) <= p["paper_std"]), f"|diff| <= paper std {p['paper_std']:g}"
    return pd.NA, "no published spread"
