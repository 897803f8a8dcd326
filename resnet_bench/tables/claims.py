"""The papers' qualitative claims, tested on whatever grid ran: the `claims` table.

Every claim is written in one direction: "the side claimed **lower** has a lower final value of
the metric than the side claimed **higher**" (lower error or loss is better). `CLAIMS` below is
the only place the claims are defined: paper, figure/table, metrics, where the paper says it
(`source`: **stated** in its text or tables, or **read off** a figure), the rule that picks the
two sides from the grid (`PAIRINGS`), and the depths the paper makes the claim at. The sides are
picked by the role a family plays (`resnet_bench.models.families.Role`: the plain baseline, the
original unit, pre-activation), not by its name.

The decision rule is stated once, in `DECISION_RULE`: claims.md prints it, and so does the
report caption of claims.csv (workflow/report/claims.rst, through the tables rule's params).
The table's columns are `resnet_bench.schema.CLAIM_COLUMNS`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from resnet_bench.models.families import Role, family_for
from resnet_bench.models.spec import ModelNameError, base_name, parse_model_name
from resnet_bench.schema import CLAIM_COLUMNS, METRICS
from resnet_bench.tables.display import TITLES
from resnet_bench.tables.paper import data_identity, paper_rows
from resnet_bench.tables.stats import completed_values, counted, seed_stats

ALPHA = 0.05
MIN_N = 2
POWER = 0.8            # the power an inconclusive row's seeds-needed figure is computed for
MAX_SEEDS = 100        # beyond this the observed effect is negligible: "> 100"
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0     # a fixed generator: the published interval is reproducible

STATED, READ_OFF = "stated", "read off"

# our metric (resnet_bench.schema.METRICS) -> the `quantity` of a paper_comparison row
# (paper.paper_rows); no paper gives a loss
PAPER_QUANTITY = {"train_error": "train", "test_error": "test"}


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str                   # V1 or V2
    where: str                   # figure / table of the paper
    text: str                    # the claim in words
    metrics: tuple[str, ...]     # keys of schema.METRICS
    pairing: str                 # key of PAIRINGS: which (lower, higher) pairs the grid offers
    ref_tables: tuple[str, ...]  # paper_reference.csv tables the paper's numbers come from
    min_depth: int = 0           # pairs shallower than this are reported, not tested
    min_depth_why: str = ""
    # metrics whose ordering the paper only draws (a figure), not states; the rest are stated
    read_off: tuple[str, ...] = ()
    read_off_where: str = ""     # the figure they are read off
    depths: tuple[int, ...] = () # the only depths the paper gives (empty: every depth >= min_depth)

    def source(self, metric: str) -> str:
        return READ_OFF if metric in self.read_off else STATED

    def source_text(self, metric: str) -> str:
        return f"{READ_OFF} {self.read_off_where}" if metric in self.read_off else STATED


CLAIMS: tuple[Claim, ...] = (
    Claim("v1-degradation", "V1", "Fig. 1, Fig. 6 left",
          "degradation: the deepest plain net has a higher error than the shallowest plain net",
          ("train_error", "test_error"), "plain_depth", ("Table 6", "Fig 6 left caption")),
    Claim("v1-deeper-resnet", "V1", "Fig. 6 middle, Table 6",
          "deeper ResNets are better: the deepest ResNet of <= 110 layers has a lower error "
          "than the shallowest", ("train_error", "test_error"), "resnet_depth", ("Table 6",),
          # Table 6 states test errors; the CIFAR training-error ordering is only drawn (V1's
          # explicit training-error statement is for ImageNet, Sec. 4.1)
          read_off=("train_error",), read_off_where="Fig. 6 middle"),
    Claim("v1-resnet-vs-plain", "V1", "Fig. 6 left vs middle",
          "a ResNet has a lower error than the plain net of the same depth",
          ("train_error", "test_error"), "resnet_vs_plain", ("Table 6", "Fig 6 left caption"),
          # Table 6 has no plain nets: the equal-depth comparison is the two panels of Fig. 6
          read_off=("train_error", "test_error"), read_off_where="Fig. 6 left vs middle"),
    Claim("v1-1202-vs-110", "V1", "Table 6, Fig. 6 right",
          "ResNet-1202 has a higher test error than ResNet-110 (overfitting)",
          ("test_error",), "r1202_vs_r110", ("Table 6",)),
    Claim("v2-preact-test", "V2", "Table 3",
          "the pre-activation unit has a lower test error than the original unit at equal "
          "depth and block", ("test_error",), "preact_vs_original", ("Table 3",),
          min_depth=110, min_depth_why="Table 3 reports converged errors at 110, 164 and "
          "1001 layers only", depths=(110, 164, 1001)),
    Claim("v2-preact-loss", "V2", "Fig. 1",
          "the pre-activation unit reaches a lower training loss than the original unit at "
          "equal depth and block", ("train_loss",), "preact_vs_original", (),
          read_off=("train_loss",), read_off_where="Fig. 1",
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
          # Sec. 4.1 states the training error; the early test error is drawn in Fig. 1 only
          read_off=("test_error",), read_off_where="Fig. 1",
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

SHOWN, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE = ("shown", "contradicted", "inconclusive",
                                                  "not testable")
VERDICTS = (SHOWN, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

# Welch's, not Student's: the two sides are separate sets of seeds whose spreads differ (a stalled
# deep net varies little, a shallow one more); one-sided: each claim has a direction; Holm's: a
# study tests several rows and reports the ones that pass.
DECISION_RULE = (
    f"Decision rule: final-iteration values of the completed runs of each side (mean ± std, "
    f"ddof=1); a duplicated run (same run identity and seed, or a byte-identical train log; "
    f"`duplicate_of` in the runs table) counts once. With n >= {MIN_N} completed runs on both "
    f"sides: the difference higher − lower (positive: the paper's direction) with its 95 % "
    f"Welch interval and a 95 % percentile bootstrap interval ({BOOTSTRAP_RESAMPLES} resamples "
    f"of the seeds within each side; with 2-3 seeds a side it can take only a few values), "
    f"Hedges' g (the difference over the pooled std, small-sample corrected; positive: the "
    f"paper's direction), and the one-sided Welch's t-test in the paper's direction "
    f"(scipy.stats.ttest_ind, equal_var=False; raw p). The p-values are Holm-adjusted "
    f"(statsmodels multipletests) over the study's **family**: the rows of the claims it "
    f"registered in its config (key `claims`), or, without a registration, every row of its "
    f"dataset and recipe that has a p-value (family_size). **shown**: adjusted p < {ALPHA}; "
    f"**contradicted**: the same rule in the opposite direction (one-sided p of the opposite "
    f"claim, Holm-adjusted over the same family); **inconclusive**: neither. An inconclusive "
    f"row is not evidence against the paper: seeds_needed is the number of seeds per side at "
    f"which a one-sided two-sample t-test at the strictest Holm level (alpha / family_size) "
    f"would have {POWER:.0%} power if the true effect were the observed Hedges' g (noncentral "
    f"t, equal seeds per side; \"> {MAX_SEEDS}\" when more, \"n/a\" when the observed "
    f"effect is in the opposite direction). **not testable**: a side has n < {MIN_N} (no "
    f"spread), a network is not in the grid, the paper makes no claim at that depth, or the "
    f"claim is not in the study's registered family. Rows decided without a p-value, outside "
    f"the Holm family: no spread on either side (shown when every run is below, contradicted "
    f"when every run is above); diverged runs are failures of their side, left out of "
    f"mean ± std: the side claimed higher failing in >= {MIN_N} runs with < {MIN_N} "
    f"completed, against >= {MIN_N} completed runs of the other side, is shown, the mirror "
    f"case contradicted, and the side claimed lower diverging more often otherwise "
    f"inconclusive. source: **stated** in the paper's text or tables, or **read off** a figure."
)


# ---------------------------------------------------------------------------------------------
# pairing rules: the grid's specs (model name -> ModelSpec) -> [(lower, higher, depth)] or a
# reason the grid cannot test the claim at all

Pairs = list[tuple[str, str, int]]


def _name(role: Role) -> str:
    return family_for(role).name


def _defaults(specs: dict, role: Role, block: str | None = "basic", stem: str = "cifar") -> list:
    """Default-variant specs of the family playing `role` (and block) with one input stem,
    shallow to deep: the CIFAR claims pair CIFAR nets, the ImageNet claims ImageNet nets."""
    family = _name(role)
    return sorted((s for s in specs.values() if s.family == family and s.is_default
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
    plain = family_for(Role.PLAIN).label
    pair = _depth_pair(_defaults(specs, Role.PLAIN), f"{plain} nets", plain)
    # degradation: the shallowest plain net is the side claimed lower
    return pair if isinstance(pair, str) else [(lo.name, hi.name, lo.depth) for lo, hi in pair]


def resnet_depth(specs: dict) -> Pairs | str:
    nets = [s for s in _defaults(specs, Role.ORIGINAL) if s.depth <= 110]
    pair = _depth_pair(nets, f"ResNets ({_name(Role.ORIGINAL)} basic) of <= 110 layers",
                       "ResNet (<= 110 layers)")
    # deeper is better: the deepest is the side claimed lower
    return pair if isinstance(pair, str) else [(hi.name, lo.name, lo.depth) for lo, hi in pair]


def _same_depth(specs: dict, lower: Role, higher: Role, block, what: str, stem: str = "cifar"):
    low = {(s.block, s.depth): s for s in _defaults(specs, lower, block, stem)}
    high = {(s.block, s.depth): s for s in _defaults(specs, higher, block, stem)}
    common = sorted(set(low) & set(high), key=lambda k: (k[0], k[1]))
    if not common:
        return f"no depth with both {what}"
    return [(low[k].name, high[k].name, k[1]) for k in common]


def resnet_vs_plain(specs: dict) -> Pairs | str:
    return _same_depth(specs, Role.ORIGINAL, Role.PLAIN, "basic",
                       f"a plain net and a ResNet ({_name(Role.ORIGINAL)} basic)")


def preact_vs_original(specs: dict) -> Pairs | str:
    return _same_depth(specs, Role.PREACT, Role.ORIGINAL, None,
                       f"the original ({_name(Role.ORIGINAL)}) and the pre-activation "
                       f"({_name(Role.PREACT)}) unit")


def _named_pair(specs: dict, lower: str, higher: str, depth: int) -> Pairs | str:
    missing = [m for m in (lower, higher) if m not in specs]
    if missing:
        return f"model not in grid: {', '.join(missing)}"
    return [(lower, higher, depth)]


def r1202_vs_r110(specs: dict) -> Pairs | str:
    resnet = _name(Role.ORIGINAL)
    return _named_pair(specs, base_name(resnet, "basic", 110), base_name(resnet, "basic", 1202), 110)


# V1 Sec. 4.1 / Table 2 / Fig. 4: the 18- and 34-layer nets, option A (no extra parameters)
def _imagenet_net(role: Role, depth: int) -> str:
    return base_name(_name(role), "basic", depth, "imagenet")


def imagenet_plain_depth(specs: dict) -> Pairs | str:
    return _named_pair(specs, _imagenet_net(Role.PLAIN, 18), _imagenet_net(Role.PLAIN, 34), 18)


def imagenet_resnet_depth(specs: dict) -> Pairs | str:
    return _named_pair(specs, _imagenet_net(Role.ORIGINAL, 34), _imagenet_net(Role.ORIGINAL, 18),
                       18)


def imagenet_resnet_vs_plain(specs: dict) -> Pairs | str:
    return _same_depth(specs, Role.ORIGINAL, Role.PLAIN, "basic", "an ImageNet plain net and "
                       f"ResNet ({_name(Role.ORIGINAL)} basic, option A)", stem="imagenet")


def identity_vs_shortcuts(specs: dict) -> Pairs | str:
    resnet = _name(Role.ORIGINAL)
    variants = sorted((s for s in specs.values() if s.family == resnet and s.stem == "cifar"
                       and s.table1_shortcut is not None),
                      key=lambda s: (s.block, s.depth, s.name))
    if not variants:
        return "no V2 Table 1 shortcut variant in the grid"
    return [(base_name(resnet, s.block, s.depth), s.name, s.depth) for s in variants]


def preact_vs_units(specs: dict) -> Pairs | str:
    original, preact = _name(Role.ORIGINAL), _name(Role.PREACT)
    others = sorted((s for s in specs.values() if s.stem == "cifar"
                     and s.family in (original, preact)
                     and s.variant in s.family_facts.unit_variants),
                    key=lambda s: (s.block, s.depth, s.family, s.name))
    if not others:
        # without a Table 2 variant this would repeat v2-preact-test
        return "no V2 Table 2 unit variant in the grid (original vs pre-activation: v2-preact-test)"
    pairs, seen = [], set()
    for s in others:
        best = base_name(preact, s.block, s.depth)
        if (s.block, s.depth) not in seen:    # the original unit at each depth with a variant
            seen.add((s.block, s.depth))
            pairs.append((best, base_name(original, s.block, s.depth), s.depth))
        pairs.append((best, s.name, s.depth))
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
    mine = counted(runs[runs["model"] == model])
    values = completed_values(mine, column)
    stats = seed_stats(values)
    return {"values": values.to_numpy(), "n": stats["n"], "n_runs": len(mine),
            "n_diverged": int((mine["status"] == "diverged").sum()),
            "mean": float(stats["mean"]), "std": float(stats["std"])}


def hedges_g(lower: np.ndarray, higher: np.ndarray) -> float:
    """(mean(higher) − mean(lower)) / pooled std (ddof=1), times the small-sample correction
    J = 1 − 3 / (4 (n1 + n2) − 9); NaN without spread."""
    n1, n2 = len(lower), len(higher)
    pooled = math.sqrt(((n1 - 1) * np.var(lower, ddof=1) + (n2 - 1) * np.var(higher, ddof=1))
                       / (n1 + n2 - 2))
    if pooled == 0:
        return math.nan
    return (1 - 3 / (4 * (n1 + n2) - 9)) * (float(np.mean(higher)) - float(np.mean(lower))) / pooled


def welch_interval(lower: np.ndarray, higher: np.ndarray, df: float) -> tuple[float, float]:
    """95 % Welch interval of mean(higher) − mean(lower)."""
    from scipy import stats
    se = math.sqrt(np.var(lower, ddof=1) / len(lower) + np.var(higher, ddof=1) / len(higher))
    diff = float(np.mean(higher)) - float(np.mean(lower))
    half = float(stats.t.ppf(0.975, df)) * se
    return diff - half, diff + half


def bootstrap_interval(lower: np.ndarray, higher: np.ndarray) -> tuple[float, float]:
    """95 % percentile bootstrap interval of mean(higher) − mean(lower), seeds resampled within
    each side."""
    from scipy import stats
    with warnings.catch_warnings():   # few distinct resamples: scipy warns, the interval stands
        warnings.simplefilter("ignore")
        res = stats.bootstrap((higher, lower), lambda h, lo, axis: np.mean(h, axis=axis)
                              - np.mean(lo, axis=axis), vectorized=True, paired=False,
                              n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
                              method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seeds_for_power(effect: float, alpha: float, power: float = POWER,
                    cap: int = MAX_SEEDS) -> str:
    """Seeds per side at which a one-sided two-sample t-test (equal n, Student's df = 2n − 2)
    at `alpha` reaches `power` if the true standardised effect is `effect`: the smallest n
    with 1 − F_nct(t_crit; 2n − 2, effect·sqrt(n/2)) >= power. "> cap" beyond the cap, "n/a"
    for an effect that is not in the paper's direction."""
    from scipy import stats
    if not effect > 0:
        return "n/a"
    for n in range(MIN_N, cap + 1):
        df = 2 * n - 2
        crit = stats.t.ppf(1 - alpha, df)
        if stats.nct.sf(crit, df, effect * math.sqrt(n / 2)) >= power:
            return str(n)
    return f"> {cap}"


def decide(lower: dict, higher: dict, lower_model: str, higher_model: str) -> dict:
    """The statistics of one row and, where no p-value decides it, its verdict: a dict with
    verdict (None: decided by the Holm step), reason, t, p and the intervals."""
    from scipy import stats
    nan = math.nan
    out = {"verdict": None, "reason": "", "t": nan, "p": nan, "g": nan,
           "ci": (nan, nan), "boot": (nan, nan)}
    f_low = lower["n_diverged"] / lower["n_runs"] if lower["n_runs"] else 0.0
    f_high = higher["n_diverged"] / higher["n_runs"] if higher["n_runs"] else 0.0
    enough = lower["n"] >= MIN_N and higher["n"] >= MIN_N
    if lower["n_diverged"] >= MIN_N and lower["n"] < MIN_N and higher["n"] >= MIN_N:
        return {**out, "verdict": CONTRADICTED, "reason": (
            f"{lower['n_diverged']}/{lower['n_runs']} runs of {lower_model} (claimed lower) "
            f"diverged (failed), {higher['n']} of {higher_model} completed")}
    if f_low > f_high:
        return {**out, "verdict": INCONCLUSIVE, "reason": (
            f"the side claimed lower diverged more often: {lower_model} "
            f"{lower['n_diverged']}/{lower['n_runs']} runs, {higher_model} "
            f"{higher['n_diverged']}/{higher['n_runs']}")}
    if enough:
        note = (f"; {higher['n_diverged']}/{higher['n_runs']} runs of {higher_model} diverged "
                f"(left out)" if higher["n_diverged"] else "")
        lo, hi = lower["values"], higher["values"]
        if lower["std"] == 0 and higher["std"] == 0:
            # t is undefined (0/0 or ±inf); e.g. two nets stalled at chance level
            if lower["mean"] < higher["mean"]:
                verdict, words = SHOWN, "every run below every run"
            elif lower["mean"] > higher["mean"]:
                verdict, words = CONTRADICTED, "every run above every run"
            else:
                verdict, words = INCONCLUSIVE, "equal values"
            return {**out, "verdict": verdict,
                    "reason": f"no spread on either side; {words} (no p-value){note}",
                    "boot": bootstrap_interval(lo, hi)}
        with warnings.catch_warnings():   # near-identical values: scipy warns, p stays valid
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_ind(lo, hi, equal_var=False, alternative="less")
        return {**out, "reason": note, "t": float(res.statistic), "p": float(res.pvalue),
                "g": hedges_g(lo, hi), "ci": welch_interval(lo, hi, float(res.df)),
                "boot": bootstrap_interval(lo, hi)}
    if higher["n_diverged"] >= MIN_N and higher["n"] < MIN_N and lower["n"] >= MIN_N:
        return {**out, "verdict": SHOWN, "reason": (
            f"{higher['n_diverged']}/{higher['n_runs']} runs of {higher_model} "
            f"diverged (failed), {lower['n']} of {lower_model} completed")}
    short = [f"{m} n={s['n']}" + (f" (+{s['n_diverged']} diverged)" if s["n_diverged"] else "")
             for m, s in ((lower_model, lower), (higher_model, higher)) if s["n"] < MIN_N]
    return {**out, "verdict": NOT_TESTABLE,
            "reason": f"n<{MIN_N} on a side: no spread ({'; '.join(short)})"}


def _row(claim: Claim, group: dict, metric: str, lower_model="", higher_model="",
         lower=None, higher=None, paper=("", ""), verdict=NOT_TESTABLE, reason="",
         stats: dict | None = None) -> dict:
    lower, higher, stats = lower or {}, higher or {}, stats or {}
    get = (lambda side, key, default=math.nan: side.get(key, default))
    nan2 = (math.nan, math.nan)
    return {
        "claim": claim.id, "paper": claim.paper, "where": claim.where,
        "claim_text": claim.text, **group, "metric": metric,
        "lower_model": lower_model, "higher_model": higher_model,
        "paper_lower": paper[0], "paper_higher": paper[1],
        "lower_mean": get(lower, "mean"), "lower_std": get(lower, "std"),
        "lower_n": get(lower, "n", 0), "lower_n_diverged": get(lower, "n_diverged", 0),
        "higher_mean": get(higher, "mean"), "higher_std": get(higher, "std"),
        "higher_n": get(higher, "n", 0), "higher_n_diverged": get(higher, "n_diverged", 0),
        "source": claim.source_text(metric),
        "diff": get(higher, "mean") - get(lower, "mean"),
        "diff_ci_low": stats.get("ci", nan2)[0], "diff_ci_high": stats.get("ci", nan2)[1],
        "diff_boot_low": stats.get("boot", nan2)[0], "diff_boot_high": stats.get("boot", nan2)[1],
        "hedges_g": stats.get("g", math.nan), "t_statistic": stats.get("t", math.nan),
        "p_value": stats.get("p", math.nan), "family_size": math.nan, "p_holm": math.nan,
        "p_holm_opposite": math.nan, "alpha": ALPHA, "verdict": verdict, "seeds_needed": "",
        "reason": reason,
    }


def holm(table: pd.DataFrame, family_key: pd.Series) -> pd.DataFrame:
    """Holm-adjust the rows with a p-value and no verdict yet, within each family, and give
    them their verdict (see DECISION_RULE)."""
    from statsmodels.stats.multitest import multipletests
    table = table.copy()
    open_rows = table["verdict"].isna() & table["p_value"].notna()
    for _, idx in table[open_rows].groupby(family_key[open_rows], sort=False).groups.items():
        p = table.loc[idx, "p_value"].to_numpy(dtype=float)
        m = len(p)
        adjusted = multipletests(p, alpha=ALPHA, method="holm")[1]
        opposite = multipletests(1 - p, alpha=ALPHA, method="holm")[1]
        table.loc[idx, "family_size"] = m
        table.loc[idx, "p_holm"] = adjusted
        table.loc[idx, "p_holm_opposite"] = opposite
        for i, adj, opp in zip(idx, adjusted, opposite):
            raw = table.at[i, "p_value"]
            if adj < ALPHA:
                verdict, words = SHOWN, f"Holm p = {adj:.3g} < {ALPHA} (raw {raw:.3g}, family of {m})"
            elif opp < ALPHA:
                verdict, words = CONTRADICTED, (f"opposite direction: Holm p = {opp:.3g} < "
                                                f"{ALPHA} (family of {m})")
            else:
                verdict, words = INCONCLUSIVE, (f"Holm p = {adj:.3g} >= {ALPHA} (raw {raw:.3g}, "
                                                f"family of {m})")
                if table.at[i, "diff"] <= 0:
                    words += "; the difference is in the opposite direction"
                table.at[i, "seeds_needed"] = seeds_for_power(table.at[i, "hedges_g"], ALPHA / m)
            table.at[i, "verdict"] = verdict
            table.at[i, "reason"] = words + table.at[i, "reason"]
    return table


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
                    column = METRICS[metric].final
                    lower, higher = _side(g, lower_model, column), _side(g, higher_model, column)
                    paper = tuple(paper_number(prows, claim, metric, specs[m], ref_dataset)
                                  if m in specs else "" for m in (lower_model, higher_model))
                    kw = dict(lower=lower, higher=higher, paper=paper)
                    absent = [m for m, s in ((lower_model, lower), (higher_model, higher))
                              if s["n_runs"] == 0]
                    if absent:
                        verdict, reason = NOT_TESTABLE, f"model not in grid: {', '.join(absent)}"
                    elif family is not None and claim.id not in family:
                        verdict, reason = (NOT_TESTABLE, "not in the study's registered family "
                                           "of claims (config key claims)")
                    elif depth < claim.min_depth or (claim.depths and depth not in claim.depths):
                        verdict, reason = (NOT_TESTABLE, f"the paper makes no claim at {depth} "
                                           f"layers ({claim.min_depth_why})")
                    else:
                        stats = decide(lower, higher, lower_model, higher_model)
                        out.append(_row(claim, group, metric, lower_model, higher_model,
                                        verdict=stats["verdict"], reason=stats["reason"],
                                        stats=stats, **kw))
                        continue
                    out.append(_row(claim, group, metric, lower_model, higher_model,
                                    verdict=verdict, reason=reason, **kw))
    table = pd.DataFrame(out, columns=CLAIM_COLUMNS)
    # the family: a registered one is the whole study's; otherwise each dataset and recipe
    key = (pd.Series("registered", index=table.index) if family is not None
           else table["dataset"].astype(str) + "\0" + table["recipe"].astype(str))
    table = holm(table, key)
    return table



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


def _interval(low, high) -> str:
    return "" if low != low else f"[{low:+.2f}, {high:+.2f}]"


def to_markdown(df: pd.DataFrame) -> str:
    parts = [f"# {TITLES['claims']}", "",
             "Each row: the side the paper claims **lower** (lower error or loss is better) and "
             "the side it claims **higher**, our final-iteration values (mean ± std over "
             "seeds, n completed runs), the paper's numbers where it gives them, where the "
             "claim comes from (stated, or read off a figure), diff = higher − lower "
             "(positive: the paper's direction) with its 95 % Welch and bootstrap intervals, "
             "Hedges' g, the raw one-sided p, the Holm-adjusted p over the study's family of "
             "m rows, the verdict and, for an inconclusive row, the seeds per side that 80 % "
             "power would take. An inconclusive row is not evidence against the paper.", "",
             DECISION_RULE, ""]
    if df.empty:
        return "\n".join(parts + ["_(no rows)_", ""])
    for (label, recipe), g in df.groupby(["dataset_label", "recipe"], sort=False):
        counts = g["verdict"].value_counts()
        parts += [f"## {label}, recipe `{recipe}`", "",
                  ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS), ""]
        rows = []
        for _, r in g.iterrows():
            m = r["family_size"]
            rows.append({
                "claim": r["claim"], "paper": f"{r['paper']} {r['where']}",
                "source": r["source"], "metric": r["metric"].replace("_", " "),
                "claimed lower": r["lower_model"] or "–",
                "ours (lower)": _ours(r["lower_mean"], r["lower_std"], r["lower_n"],
                                      r["lower_n_diverged"]) if r["lower_model"] else "",
                "claimed higher": r["higher_model"] or "–",
                "ours (higher)": _ours(r["higher_mean"], r["higher_std"], r["higher_n"],
                                       r["higher_n_diverged"]) if r["higher_model"] else "",
                "paper (lower / higher)": " / ".join(x or "–" for x in
                                                     (r["paper_lower"], r["paper_higher"]))
                if (r["paper_lower"] or r["paper_higher"]) else "",
                "diff": _num(r["diff"], "{:+.2f}"),
                "95 % Welch": _interval(r["diff_ci_low"], r["diff_ci_high"]),
                "95 % bootstrap": _interval(r["diff_boot_low"], r["diff_boot_high"]),
                "g": _num(r["hedges_g"], "{:+.2f}"), "p": _num(r["p_value"]),
                "Holm p (m)": "" if m != m else f"{r['p_holm']:.3g} ({int(m)})",
                "verdict": f"**{r['verdict']}**", "seeds needed": r["seeds_needed"],
                "reason": r["reason"],
            })
        parts += [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    parts += ["Claims (defined once, in resnet_bench/tables/claims.py):", ""]
    parts += [f"- `{c.id}` ({c.paper} {c.where}): {c.text}"
              + (f"; read off {c.read_off_where}: {', '.join(c.read_off)}" if c.read_off else "")
              + (f"; tested at {c.min_depth} layers and deeper" if c.min_depth and not c.depths
                 else f"; tested at {', '.join(map(str, c.depths))} layers" if c.depths else "")
              + (f" ({c.min_depth_why})" if c.min_depth else "")
              for c in CLAIMS]
    return "\n".join(parts + [""])
