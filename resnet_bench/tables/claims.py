"""The papers' qualitative claims, tested on whatever grid ran: the `claims` table.

Every claim is written in one direction: "the side claimed **lower** has a lower final value of
the metric than the side claimed **higher**" (lower error or loss is better). `CLAIMS` below is
the only place the claims are defined: paper, figure/table, metrics, the rule that picks the two
sides from the grid (`PAIRINGS`), and the shallowest depth the paper makes the claim at.

Decision rule (`DECISION_RULE`, also printed in claims.md): only completed runs enter the
statistics (final-iteration values, mean ± std with ddof=1). With n >= 2 completed runs on
each side, a one-sided Welch's t-test (`scipy.stats.ttest_ind(lower, higher, equal_var=False,
alternative="less")`) at alpha = 0.05: p < alpha is "shown", otherwise "not shown". Welch's, not
Student's, because the two sides are separate sets of seeds whose spreads differ (a stalled deep
net varies little, a shallow one more); one-sided because each claim has a direction. With
n < 2 on a side there is no spread to test against: "not testable" (no spread on either side
with n >= 2: shown when every run is below). Diverged runs are failures
of their side: left out of mean ± std, counted in `*_n_diverged`; the side claimed lower
diverging more often than the other is "not shown"; the side claimed higher failing in >= 2
runs with < 2 completed runs, against >= 2 completed runs of the other side, is "shown".

`resnet_bench.models` (the name parser) pulls in torch, so it is imported inside `claims_table`:
the pipeline imports `CLAIMS` and `PAIRINGS` to learn which figures a grid draws and stays
torch-free. The table's columns are `resnet_bench.schema.CLAIM_COLUMNS`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from resnet_bench.schema import CLAIM_COLUMNS
from resnet_bench.tables.stats import completed_values, seed_stats

ALPHA = 0.05
MIN_N = 2

METRICS = {   # metric -> (runs-table column, words)
    "train_error": ("final_train_error_pct", "training error (%)"),
    "test_error": ("final_test_error_pct", "test error (%)"),
    "train_loss": ("final_train_loss", "training loss"),
}
# our metric -> the `quantity` of a paper_comparison row (paper.paper_rows); no paper gives a loss
PAPER_QUANTITY = {"train_error": "train", "test_error": "test"}

# V2 Table 1 / Table 2 variants by their spelling in resnet_bench.models.spec
TABLE1_KINDS = ("scale", "exgate", "scgate", "dropsc", "optC")
TABLE2_UNITS = {"v1": ("bnafter", "relubefore"), "v2": ("reluonly",)}


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str                   # V1 or V2
    where: str                   # figure / table of the paper
    text: str                    # the claim in words
    metrics: tuple[str, ...]     # keys of METRICS
    pairing: str                 # key of PAIRINGS: which (lower, higher) pairs the grid offers
    ref_tables: tuple[str, ...]  # paper_reference.csv tables the paper's numbers come from
    min_depth: int = 0           # pairs shallower than this are reported, not tested
    min_depth_why: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim("v1-degradation", "V1", "Fig. 1, Fig. 6 left",
          "degradation: the deepest plain net has a higher error than the shallowest plain net",
          ("train_error", "test_error"), "plain_depth", ("Table 6", "Fig 6 left caption")),
    Claim("v1-deeper-resnet", "V1", "Fig. 6 middle, Table 6",
          "deeper ResNets are better: the deepest ResNet of <= 110 layers has a lower error "
          "than the shallowest", ("train_error", "test_error"), "resnet_depth", ("Table 6",)),
    Claim("v1-resnet-vs-plain", "V1", "Fig. 6 left vs middle",
          "a ResNet has a lower error than the plain net of the same depth",
          ("train_error", "test_error"), "resnet_vs_plain", ("Table 6", "Fig 6 left caption")),
    Claim("v1-1202-vs-110", "V1", "Table 6, Fig. 6 right",
          "ResNet-1202 has a higher test error than ResNet-110 (overfitting)",
          ("test_error",), "r1202_vs_r110", ("Table 6",)),
    Claim("v2-preact-test", "V2", "Table 3",
          "the pre-activation unit has a lower test error than the original unit at equal "
          "depth and block", ("test_error",), "preact_vs_original", ("Table 3",),
          min_depth=110, min_depth_why="Table 3 starts at 110 layers"),
    Claim("v2-preact-loss", "V2", "Fig. 1",
          "the pre-activation unit reaches a lower training loss than the original unit at "
          "equal depth and block", ("train_loss",), "preact_vs_original", (),
          min_depth=1001, min_depth_why="Fig. 1 is ResNet-1001; at 110 and 164 layers V2 "
          "(Fig. 6 right) reports pre-activation with a slightly higher training loss"),
    # Sec. 4.1 on Fig. 1: the original ResNet-1001 "reduces the training error very slowly at
    # the beginning of training". A run that stops early is the beginning of training, so its
    # final values are what Fig. 1 draws there; on a full schedule Table 3 says the same.
    Claim("v2-preact-early", "V2", "Fig. 1, Sec. 4.1",
          "at the beginning of training the pre-activation ResNet-1001 has a lower training "
          "error and a lower test error than the original-unit ResNet-1001 (\"reduces the "
          "training error very slowly at the beginning of training\")",
          ("train_error", "test_error"), "preact_vs_original", (),
          min_depth=1001, min_depth_why="Sec. 4.1 says it of ResNet-1001"),
    Claim("v2-table1-shortcuts", "V2", "Table 1, Fig. 3",
          "the identity shortcut has a lower test error than every other shortcut (scaling, "
          "gating, 1x1 conv, dropout)", ("test_error",), "identity_vs_shortcuts",
          ("Table 1",), min_depth=110, min_depth_why="Table 1 is on ResNet-110"),
    Claim("v2-table2-units", "V2", "Table 2, Fig. 6",
          "full pre-activation has a lower test error than every other placement of BN and "
          "ReLU (original, BN after addition, ReLU before addition, ReLU-only pre-activation)",
          ("test_error",), "preact_vs_units", ("Table 2",),
          min_depth=110, min_depth_why="Table 2 is on ResNet-110 and ResNet-164"),
    # ImageNet (V1 Sec. 4.1): the papers' validation set is our test split
    Claim("v1-imagenet-degradation", "V1", "Fig. 4 left, Table 2",
          "ImageNet degradation: plain-34 has a higher training and validation error than "
          "plain-18", ("train_error", "test_error"), "imagenet_plain_depth", ("Table 2",)),
    Claim("v1-imagenet-deeper-resnet", "V1", "Fig. 4 right, Table 2",
          "on ImageNet ResNet-34 has a lower training and validation error than ResNet-18",
          ("train_error", "test_error"), "imagenet_resnet_depth", ("Table 2",)),
    Claim("v1-imagenet-resnet-vs-plain", "V1", "Fig. 4, Table 2",
          "on ImageNet ResNet-34 has a lower training and validation error than plain-34",
          ("train_error", "test_error"), "imagenet_resnet_vs_plain", ("Table 2",),
          min_depth=34, min_depth_why="at 18 layers V1 reports the two similarly accurate "
          "(27.88 vs 27.94), ResNet-18 only converging faster"),
)

DECISION_RULE = (
    f"Decision rule: final-iteration values of the completed runs of each side (mean ± std, "
    f"ddof=1). With n >= {MIN_N} completed runs on both sides, a one-sided Welch's t-test "
    f"(scipy.stats.ttest_ind, equal_var=False) in the paper's direction: p < {ALPHA} is "
    f"**shown**, otherwise **not shown**. Welch's test because the sides are separate sets of "
    f"seeds with different spreads; one-sided because each claim has a direction. With "
    f"n < {MIN_N} on a side there is no spread to test against: **not testable**. "
    f"Diverged runs are failures of their side: left out of mean ± std and counted as "
    f"\"k diverged\"; if the side claimed lower diverged more often, the claim is not shown; if "
    f"the side claimed higher failed in >= {MIN_N} runs (and has < {MIN_N} completed runs) "
    f"while the other side has >= {MIN_N} completed runs, it is shown. With few seeds the test "
    f"has little power: \"not shown\" is not evidence against the paper."
)

SHOWN, NOT_SHOWN, NOT_TESTABLE = "shown", "not shown", "not testable"


# ---------------------------------------------------------------------------------------------
# pairing rules: the grid's specs (model name -> ModelSpec) -> [(lower, higher, depth)] or a
# reason the grid cannot test the claim at all

Pairs = list[tuple[str, str, int]]


def _is_default(spec) -> bool:
    from resnet_bench.models.spec import default_variant
    return spec.variant == default_variant(spec.family, spec.block)


def _defaults(specs: dict, family: str, block: str | None = "basic", stem: str = "cifar") -> list:
    """Default-variant specs of one family (and block) with one input stem, shallow to deep:
    the CIFAR claims pair CIFAR nets, the ImageNet claims ImageNet nets."""
    return sorted((s for s in specs.values() if s.family == family and _is_default(s)
                   and s.stem == stem and (block is None or s.block == block)),
                  key=lambda s: (s.block, s.depth))


def _depth_pair(nets: list, what: str, one: str) -> list[tuple] | str:
    """(shallowest, deepest) of `nets`, or why there is no such pair."""
    if not nets:
        return f"model not in grid: no {what}"
    if len({s.depth for s in nets}) < 2:
        return f"grid has one {one} depth ({nets[0].depth})"
    return [(nets[0], nets[-1])]


def plain_depth(specs: dict) -> Pairs | str:
    pair = _depth_pair(_defaults(specs, "plain"), "plain nets", "plain")
    # degradation: the shallowest plain net is the side claimed lower
    return pair if isinstance(pair, str) else [(lo.name, hi.name, lo.depth) for lo, hi in pair]


def resnet_depth(specs: dict) -> Pairs | str:
    nets = [s for s in _defaults(specs, "v1") if s.depth <= 110]
    pair = _depth_pair(nets, "ResNets (v1 basic) of <= 110 layers", "ResNet (<= 110 layers)")
    # deeper is better: the deepest is the side claimed lower
    return pair if isinstance(pair, str) else [(hi.name, lo.name, lo.depth) for lo, hi in pair]


def _same_depth(specs: dict, lower_family: str, higher_family: str, block, what: str,
               stem: str = "cifar"):
    low = {(s.block, s.depth): s for s in _defaults(specs, lower_family, block, stem)}
    high = {(s.block, s.depth): s for s in _defaults(specs, higher_family, block, stem)}
    common = sorted(set(low) & set(high), key=lambda k: (k[0], k[1]))
    if not common:
        return f"no depth with both {what}"
    return [(low[k].name, high[k].name, k[1]) for k in common]


def resnet_vs_plain(specs: dict) -> Pairs | str:
    return _same_depth(specs, "v1", "plain", "basic", "a plain net and a ResNet (v1 basic)")


def preact_vs_original(specs: dict) -> Pairs | str:
    return _same_depth(specs, "v2", "v1", None, "the original (v1) and the pre-activation (v2) "
                                                "unit")


def r1202_vs_r110(specs: dict) -> Pairs | str:
    missing = [m for m in ("v1-basic-110", "v1-basic-1202") if m not in specs]
    if missing:
        return f"model not in grid: {', '.join(missing)}"
    return [("v1-basic-110", "v1-basic-1202", 110)]


def _imagenet_pair(specs: dict, lower: str, higher: str, depth: int) -> Pairs | str:
    missing = [m for m in (lower, higher) if m not in specs]
    if missing:
        return f"model not in grid: {', '.join(missing)}"
    return [(lower, higher, depth)]


# V1 Sec. 4.1 / Table 2 / Fig. 4: the 18- and 34-layer nets, option A (no extra parameters)
def imagenet_plain_depth(specs: dict) -> Pairs | str:
    return _imagenet_pair(specs, "imagenet-plain-basic-18", "imagenet-plain-basic-34", 18)


def imagenet_resnet_depth(specs: dict) -> Pairs | str:
    return _imagenet_pair(specs, "imagenet-v1-basic-34", "imagenet-v1-basic-18", 18)


def imagenet_resnet_vs_plain(specs: dict) -> Pairs | str:
    return _same_depth(specs, "v1", "plain", "basic", "an ImageNet plain net and ResNet "
                       "(v1 basic, option A)", stem="imagenet")


def identity_vs_shortcuts(specs: dict) -> Pairs | str:
    variants = sorted((s for s in specs.values() if s.family == "v1" and s.stem == "cifar"
                       and s.variant.split("-")[0] in TABLE1_KINDS),
                      key=lambda s: (s.block, s.depth, s.name))
    if not variants:
        return "no V2 Table 1 shortcut variant in the grid"
    return [(f"v1-{s.block}-{s.depth}", s.name, s.depth) for s in variants]


def preact_vs_units(specs: dict) -> Pairs | str:
    others = sorted((s for s in specs.values() if s.stem == "cifar"
                     and s.variant in TABLE2_UNITS.get(s.family, ())),
                    key=lambda s: (s.block, s.depth, s.family, s.name))
    if not others:
        # without a Table 2 variant this would repeat v2-preact-test
        return "no V2 Table 2 unit variant in the grid (original vs pre-activation: v2-preact-test)"
    pairs, seen = [], set()
    for s in others:
        if (s.block, s.depth) not in seen:    # the original unit at each depth with a variant
            seen.add((s.block, s.depth))
            pairs.append((f"v2-{s.block}-{s.depth}", f"v1-{s.block}-{s.depth}", s.depth))
        pairs.append((f"v2-{s.block}-{s.depth}", s.name, s.depth))
    return pairs


PAIRINGS: dict[str, Callable[[dict], Pairs | str]] = {
    "plain_depth": plain_depth, "resnet_depth": resnet_depth,
    "resnet_vs_plain": resnet_vs_plain, "preact_vs_original": preact_vs_original,
    "r1202_vs_r110": r1202_vs_r110, "identity_vs_shortcuts": identity_vs_shortcuts,
    "preact_vs_units": preact_vs_units, "imagenet_plain_depth": imagenet_plain_depth,
    "imagenet_resnet_depth": imagenet_resnet_depth,
    "imagenet_resnet_vs_plain": imagenet_resnet_vs_plain,
}


# ---------------------------------------------------------------------------------------------
# the paper's numbers for one side

_STAT_PREFERENCE = ("mean", "median", "single", "best")   # we compare means


def _paper_text(p) -> str:
    text = str(p["paper_text"]).strip()
    if p["relation"] != "=":
        return f"{text} ({p['relation']}{p['paper_value']:g})" if text == "fail" else text
    value = f"{p['paper_value']:g}"
    if not math.isnan(p["paper_std"]):
        value += f"±{p['paper_std']:g}"
    if p["statistic"] == "single":
        return value
    n = "" if math.isnan(p["paper_n"]) else f" of {int(p['paper_n'])}"
    return f"{value} ({p['statistic']}{n})"


def paper_number(prows: pd.DataFrame, claim: Claim, metric: str, spec, ref_dataset: str) -> str:
    """The paper's number for one side of a claim ("" where the paper gives none)."""
    quantity = PAPER_QUANTITY.get(metric)
    if quantity is None or prows.empty:
        return ""
    best = None
    for _, p in prows.iterrows():
        if (p["table"] not in claim.ref_tables or p["quantity"] != quantity
                or p["ref_dataset"] != ref_dataset or p["suite_model"] != spec.name):
            continue
        rank = _STAT_PREFERENCE.index(p["statistic"])
        if best is None or rank < best[0]:
            best = (rank, p)
    return "" if best is None else _paper_text(best[1])


# ---------------------------------------------------------------------------------------------
# one row

def _side(runs: pd.DataFrame, model: str, column: str) -> dict:
    mine = runs[runs["model"] == model]
    values = completed_values(mine, column)
    stats = seed_stats(values)
    return {"values": values.to_numpy(), "n": stats["n"], "n_runs": len(mine),
            "n_diverged": int((mine["status"] == "diverged").sum()),
            "mean": float(stats["mean"]), "std": float(stats["std"])}


def decide(lower: dict, higher: dict, lower_model: str, higher_model: str):
    """(verdict, reason, t, p) for two sides (dicts from `_side`)."""
    from scipy import stats
    nan = math.nan
    f_low = lower["n_diverged"] / lower["n_runs"] if lower["n_runs"] else 0.0
    f_high = higher["n_diverged"] / higher["n_runs"] if higher["n_runs"] else 0.0
    if f_low > f_high:
        return (NOT_SHOWN, f"the side claimed lower diverged more often: {lower_model} "
                f"{lower['n_diverged']}/{lower['n_runs']} runs, {higher_model} "
                f"{higher['n_diverged']}/{higher['n_runs']}", nan, nan)
    if lower["n"] >= MIN_N and higher["n"] >= MIN_N:
        note = (f"; {higher['n_diverged']}/{higher['n_runs']} runs of {higher_model} diverged "
                f"(left out)" if higher["n_diverged"] else "")
        if lower["std"] == 0 and higher["std"] == 0:
            # t is undefined (0/0 or ±inf); e.g. two nets stalled at chance level
            if lower["mean"] < higher["mean"]:
                return SHOWN, "no spread on either side; every run below every run" + note, \
                    nan, nan
            return NOT_SHOWN, "no spread on either side; not below" + note, nan, nan
        with warnings.catch_warnings():   # near-identical values: scipy warns, p stays valid
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_ind(lower["values"], higher["values"], equal_var=False,
                                  alternative="less")
        t, p = float(res.statistic), float(res.pvalue)
        if p < ALPHA:
            return SHOWN, f"Welch p = {p:.3g} < {ALPHA}" + note, t, p
        wrong = "; the difference is in the opposite direction" \
            if higher["mean"] <= lower["mean"] else ""
        return NOT_SHOWN, f"Welch p = {p:.3g} >= {ALPHA}{wrong}" + note, t, p
    if higher["n_diverged"] >= MIN_N and higher["n"] < MIN_N and lower["n"] >= MIN_N:
        return (SHOWN, f"{higher['n_diverged']}/{higher['n_runs']} runs of {higher_model} "
                f"diverged (failed), {lower['n']} of {lower_model} completed", nan, nan)
    short = [f"{m} n={s['n']}" + (f" (+{s['n_diverged']} diverged)" if s["n_diverged"] else "")
             for m, s in ((lower_model, lower), (higher_model, higher)) if s["n"] < MIN_N]
    return NOT_TESTABLE, f"n<{MIN_N} on a side: no spread ({'; '.join(short)})", nan, nan


def _row(claim: Claim, group: dict, metric: str, lower_model="", higher_model="",
         lower=None, higher=None, paper=("", ""), verdict=NOT_TESTABLE, reason="",
         t=math.nan, p=math.nan) -> dict:
    lower, higher = lower or {}, higher or {}
    get = (lambda side, key, default=math.nan: side.get(key, default))
    return {
        "claim": claim.id, "paper": claim.paper, "where": claim.where,
        "claim_text": claim.text, **group, "metric": metric,
        "lower_model": lower_model, "higher_model": higher_model,
        "paper_lower": paper[0], "paper_higher": paper[1],
        "lower_mean": get(lower, "mean"), "lower_std": get(lower, "std"),
        "lower_n": get(lower, "n", 0), "lower_n_diverged": get(lower, "n_diverged", 0),
        "higher_mean": get(higher, "mean"), "higher_std": get(higher, "std"),
        "higher_n": get(higher, "n", 0), "higher_n_diverged": get(higher, "n_diverged", 0),
        "diff": get(higher, "mean") - get(lower, "mean"),
        "t_statistic": t, "p_value": p, "alpha": ALPHA, "verdict": verdict, "reason": reason,
    }


CLAIM_IDS = tuple(c.id for c in CLAIMS)


def check_family(family) -> tuple[str, ...] | None:
    """A study's registered family (config key `claims`): known claim ids, each once."""
    if family is None:
        return None
    unknown = [c for c in family if c not in CLAIM_IDS]
    if unknown:
        raise ValueError(f"claims: unknown claim id(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(CLAIM_IDS)})")
    if len(set(family)) != len(family):
        raise ValueError(f"claims: a claim id is listed twice in {list(family)}")
    return tuple(family)


def claims_table(runs: pd.DataFrame, reference: pd.DataFrame | None = None,
                 claims: tuple[Claim, ...] = CLAIMS,
                 family: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per (dataset, recipe, claim, pair of models, metric): see the module doc.

    `family`: the claim ids the study registered in its design (config key `claims`); the
    others are reported, not tested, so that a study's verdicts are the ones it set out to test
    (None: every claim the grid can test)."""
    family = check_family(family)
    from resnet_bench.tables.paper import data_identity, paper_rows
    from resnet_bench.models.spec import ModelNameError, parse_model_name

    if runs.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    prows = paper_rows(reference)
    out = []
    for (dataset, recipe), g in runs.groupby(["dataset", "recipe"], sort=True):
        label = str(g["dataset_label"].iloc[0])
        group = {"dataset": dataset, "dataset_label": label, "recipe": recipe}
        ref_dataset = data_identity(dataset, label)[0]
        specs = {}
        for model in dict.fromkeys(g["model"]):
            try:
                spec = parse_model_name(model)
            except ModelNameError:
                continue    # a name this version does not know cannot take part in a claim
            specs[spec.name] = spec
        for claim in claims:
            pairs = PAIRINGS[claim.pairing](specs)
            if isinstance(pairs, str):
                out += [_row(claim, group, m, reason=pairs) for m in claim.metrics]
                continue
            for lower_model, higher_model, depth in pairs:
                for metric in claim.metrics:
                    column = METRICS[metric][0]
                    lower, higher = _side(g, lower_model, column), _side(g, higher_model, column)
                    paper = tuple(paper_number(prows, claim, metric, specs[m], ref_dataset)
                                  if m in specs else "" for m in (lower_model, higher_model))
                    kw = dict(lower=lower, higher=higher, paper=paper)
                    absent = [m for m, s in ((lower_model, lower), (higher_model, higher))
                              if s["n_runs"] == 0]
                    if absent:
                        verdict, reason, t, p = (NOT_TESTABLE, f"model not in grid: "
                                                 f"{', '.join(absent)}", math.nan, math.nan)
                    elif family is not None and claim.id not in family:
                        verdict, reason, t, p = (
                            NOT_TESTABLE, "not in the study's registered family of claims "
                            "(config key claims)", math.nan, math.nan)
                    elif depth < claim.min_depth:
                        verdict, reason, t, p = (
                            NOT_TESTABLE, f"the paper makes no claim below {claim.min_depth} "
                            f"layers ({claim.min_depth_why})", math.nan, math.nan)
                    else:
                        verdict, reason, t, p = decide(lower, higher, lower_model, higher_model)
                    out.append(_row(claim, group, metric, lower_model, higher_model,
                                    verdict=verdict, reason=reason, t=t, p=p, **kw))
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)


# ---------------------------------------------------------------------------------------------
# markdown

def _ours(mean, std, n, n_div) -> str:
    if n == 0 or mean != mean:
        text = "no completed run"
    elif std != std:
        text = f"{mean:.2f} (n={int(n)})"
    else:
        text = f"{mean:.2f} ± {std:.2f} (n={int(n)})"
    return text + (f", {int(n_div)} diverged" if n_div else "")


def _num(x, fmt="{:.3g}") -> str:
    return "" if x is None or x != x else fmt.format(x)


def to_markdown(df: pd.DataFrame) -> str:
    parts = ["# Claims of the papers, tested on this grid", "",
             "Each row: the side the paper claims **lower** (lower error or loss is better) and "
             "the side it claims **higher**, our final-iteration values (mean ± std over "
             "seeds, n completed runs), the paper's numbers where it gives them, "
             "diff = higher − lower (positive: the paper's direction), the p-value and the "
             "verdict.", "", DECISION_RULE, ""]
    if df.empty:
        return "\n".join(parts + ["_(no rows)_", ""])
    for (label, recipe), g in df.groupby(["dataset_label", "recipe"], sort=False):
        counts = g["verdict"].value_counts()
        parts += [f"## {label}, recipe `{recipe}`", "",
                  ", ".join(f"{counts.get(v, 0)} {v}" for v in (SHOWN, NOT_SHOWN, NOT_TESTABLE)),
                  ""]
        rows = []
        for _, r in g.iterrows():
            rows.append({
                "claim": r["claim"], "paper": f"{r['paper']} {r['where']}",
                "metric": r["metric"].replace("_", " "),
                "claimed lower": r["lower_model"] or "–",
                "ours (lower)": _ours(r["lower_mean"], r["lower_std"], r["lower_n"],
                                      r["lower_n_diverged"]) if r["lower_model"] else "",
                "claimed higher": r["higher_model"] or "–",
                "ours (higher)": _ours(r["higher_mean"], r["higher_std"], r["higher_n"],
                                       r["higher_n_diverged"]) if r["higher_model"] else "",
                "paper (lower / higher)": " / ".join(x or "–" for x in
                                                     (r["paper_lower"], r["paper_higher"]))
                if (r["paper_lower"] or r["paper_higher"]) else "",
                "diff": _num(r["diff"], "{:+.2f}"), "p": _num(r["p_value"]),
                "verdict": f"**{r['verdict']}**", "reason": r["reason"],
            })
        parts += [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    parts += ["Claims (defined once, in resnet_bench/tables/claims.py):", ""]
    parts += [f"- `{c.id}` ({c.paper} {c.where}): {c.text}"
              + (f"; tested from {c.min_depth} layers ({c.min_depth_why})" if c.min_depth else "")
              for c in CLAIMS]
    return "\n".join(parts + [""])
