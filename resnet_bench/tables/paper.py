"""Published CIFAR and ImageNet numbers (package data `reference/paper_reference.csv`) next to ours.

Which paper rows are used: CIFAR rows whose metric is a final train/test error
(`test_error*_pct`, `train_error_pct`, `test_or_train_error_pct`) and ImageNet validation rows
(`top1_error_pct`, `top5_error_pct`, V2's "top1/top5" text values split in two) whose
`suite_model` column names the suite's networks (canonical model names, `|`-separated where one
published number stands for several, e.g. V2 Table 1's "b_g = 0 to -5"; empty for external
baselines). The comparison is a join of our runs and these rows on the canonical model name.

ImageNet: the papers' validation set is our test split, so top-1 is compared with
`final_test_error_pct` and top-5 with `final_test_top5_error_pct` where the run records one
(the field is optional: without it the row says so and has no reproduced value). The paper's
test protocol (10-crop, single 224/320 crop, multi-scale fully-convolutional) is in `note`;
the runs table does not carry ours, so `comparable` needs the full data set (a dataset labelled
"ImageNet-1k") and the papers' batch of 256, and the protocol is left to the reader. The papers
fix no ImageNet schedule length (V1: "up to 60x10^4 iterations"), so none is checked.

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

from resnet_bench.models.spec import ModelNameError, parse_model_name
from resnet_bench.schema import COMPARISON_COLUMNS, PAPER_ITERATIONS as PAPER_SCHEDULES

PAPER_ITERATIONS = PAPER_SCHEDULES["cifar"]
PAPER_BATCH = 128
FAIL_THRESHOLD_PCT = 20.0   # V2 Table 1: "fail" = test error above 20%

STAT_OF_REPRODUCED = {"best": "min", "median": "median", "mean": "mean", "single": "mean"}

_ERROR_METRIC = re.compile(r"^(test|train|test_or_train)_error(_[a-z0-9_]+)?_pct$")
_IMAGENET_METRICS = {"top1_error_pct": ("test",), "top5_error_pct": ("test_top5",),
                     "top1/top5_error_pct": ("test", "test_top5")}   # V2 text: "23.6/7.1"
# `quantity` of a paper row -> the runs-table column it is compared with
QUANTITY_COLUMNS = {"train": "final_train_error_pct", "test": "final_test_error_pct",
                    "test_top5": "final_test_top5_error_pct"}
IMAGENET_BATCH = 256          # V1 Sec. 3.4, V2 appendix
IMAGENET_FULL_LABELS = ("imagenet-1k",)   # a dataset label that says: all 1000 classes



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
    if t.startswith("ImageNet-1k val"):
        return "imagenet"
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
        dataset = _paper_dataset(r["dataset"])
        if dataset == "imagenet" and metric in _IMAGENET_METRICS:
            quantities = _IMAGENET_METRICS[metric]
            texts = str(r["value"]).split("/")
            batch = IMAGENET_BATCH
        elif dataset is not None and _ERROR_METRIC.match(metric) and "convergence" not in metric:
            quantities, texts = ("train" if metric.startswith("train") else "test",), [r["value"]]
            batch = 64 if "batch 64" in str(r["variant"]).lower() else PAPER_BATCH
        else:
            continue
        if len(texts) != len(quantities):
            continue
        short = "V1" if str(r["paper"]).startswith("ResNetV1") else "V2"
        for quantity, text in zip(quantities, texts):
            value = _paper_value(text)
            if value is None:
                continue
            for model in suite_models(r["suite_model"]):
                rows.append({
                    "paper": short, "table": r["table_or_figure"], "paper_model": r["model"],
                    "paper_variant": r["variant"], "paper_dataset": r["dataset"],
                    "ref_dataset": dataset, "suite_model": model, "quantity": quantity,
                    "statistic": paper_statistic(metric, r["n_runs"]),
                    "relation": value[0], "paper_value": value[1], "paper_std": r["std"],
                    "paper_n": _paper_n(metric, r["n_runs"]), "paper_text": text,
                    "paper_batch": batch,
                })
    return pd.DataFrame(rows)


def paper_protocol(paper_dataset: str, paper_variant: str) -> str:
    """How the paper tested an ImageNet row: '10-crop', 'single crop 320', 'multi-scale
    fully-convolutional' (V1 Table 4), from the reference's dataset and variant text."""
    ds, variant = str(paper_dataset), str(paper_variant)
    if "10-crop" in ds:
        return "10-crop"
    if "multi-scale" in ds:
        return "multi-scale fully-convolutional"
    crop = re.search(r"test crop (\d+)", variant) or re.search(r"(\d+) crop", ds)
    return "single crop" + (f" {crop.group(1)}" if crop else "")


# ---------------------------------------------------------------------------------------------
# our side

def data_identity(dataset: str, label: str) -> tuple[str, bool, str]:
    """(paper dataset it stands for, same data?, note) for one of our datasets."""
    name, lab = str(dataset).lower(), str(label).lower()
    if "imagenet" in name or "imagenet" in lab:
        if lab.strip() in IMAGENET_FULL_LABELS:
            return "imagenet", True, ""
        return "imagenet", False, (f"{label}: not labelled ImageNet-1k (all 1000 classes), "
                                   "not comparable")
    hundred = "100" in name or "cifar-100" in lab
    if "jpeg" in name or "jpeg" in lab or "mirror" in lab:
        return ("cifar100" if hundred else "cifar10"), False, \
            "JPEG q75 mirror: not bit-identical to the original CIFAR archive"
    if name in ("cifar10", "cifar100"):
        return name, True, ""
    if name == "synthetic":
        return "cifar10", False, "synthetic data: not comparable"
    return ("cifar100" if hundred else "cifar10"), False, f"{label}: not CIFAR data, not comparable"


def _recipe_notes(group: pd.DataFrame, paper_batch: int, ref_dataset: str = "cifar10") -> list[str]:
    notes = []
    planned = sorted(set(group["planned_iterations"].dropna().astype(int)))
    batch = sorted(set(group["batch_size"].dropna().astype(int)))
    cifar = ref_dataset != "imagenet"     # ImageNet: no fixed schedule length in the papers
    if cifar and paper_batch == PAPER_BATCH and planned != [PAPER_ITERATIONS]:
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
            col = QUANTITY_COLUMNS[p["quantity"]]
            # a top-5 error is optional in a run record: absent or empty, nothing is compared
            values = g[col].dropna() if col in g.columns else pd.Series(dtype=float)
            how = STAT_OF_REPRODUCED[p["statistic"]]
            repro = float(getattr(values, how)()) if len(values) else math.nan
            rstd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            diff = repro - p["paper_value"]
            within, rule = _within(p, repro, diff)
            notes = [data_note] if data_note else []
            recipe_notes = _recipe_notes(g, p["paper_batch"], p["ref_dataset"])
            notes += recipe_notes
            if p["ref_dataset"] == "imagenet":
                notes.append(f"paper: {paper_protocol(p['paper_dataset'], p['paper_variant'])} "
                             "testing")
            if p["quantity"] == "test_top5" and not len(values):
                notes.append("the runs record no top-5 error")
            elif len(values) < len(g):
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
