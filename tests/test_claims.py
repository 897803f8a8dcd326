"""The claims table on hand-made run tables (exact verdicts) and on run records (aggregate)."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from records import write_run  # noqa: E402

from resnet_bench.tables.claims import CLAIM_COLUMNS, claims_table  # noqa: E402
from resnet_bench.schema import read_table  # noqa: E402
from resnet_bench.cli import main  # noqa: E402


def runs_table(models: dict[str, list], dataset="cifar10", label="CIFAR-10") -> pd.DataFrame:
    """model -> final errors, one per seed ("div" = a diverged seed); the same value is used for
    training error, test error and (divided by 10) training loss."""
    rows = []
    for model, values in models.items():
        for seed, v in enumerate(values):
            div = v == "div"
            x = math.nan if div else float(v)
            rows.append({"model": model, "seed": seed, "dataset": dataset,
                         "dataset_label": label, "recipe": "r",
                         "status": "diverged" if div else "completed",
                         "final_train_error_pct": x, "final_test_error_pct": x,
                         "final_train_loss": x / 10})
    return pd.DataFrame(rows)


def rows(table: pd.DataFrame, claim: str, metric: str | None = None) -> pd.DataFrame:
    sel = table[table["claim"] == claim]
    return sel if metric is None else sel[sel["metric"] == metric]


def one(table, claim, metric="test_error", **match) -> pd.Series:
    sel = rows(table, claim, metric)
    for key, value in match.items():
        sel = sel[sel[key] == value]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def welch_p_less(a, b) -> float:
    """One-sided Welch p-value of mean(a) < mean(b), from the textbook formulas."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(stats.t.cdf(t, df))


PLAIN20, PLAIN56 = [40.0, 42.0, 41.0], [60.0, 66.0, 63.0]
R20, R56 = [30.0, 31.0, 32.5], [33.0, 35.0, 34.0]


@pytest.fixture(scope="module")
def v1_grid() -> pd.DataFrame:
    return claims_table(runs_table({
        "plain-basic-20": PLAIN20, "plain-basic-56": PLAIN56,
        "v1-basic-20": R20, "v1-basic-56": R56,
    }))


def test_columns_and_one_row_per_pair_and_metric(v1_grid):
    assert list(v1_grid.columns) == CLAIM_COLUMNS
    # degradation, deeper-is-better, and ResNet-vs-plain at 20 and 56: train and test each
    assert len(rows(v1_grid, "v1-degradation")) == 2
    assert len(rows(v1_grid, "v1-resnet-vs-plain")) == 4
    assert set(rows(v1_grid, "v1-resnet-vs-plain")["lower_model"]) == {"v1-basic-20",
                                                                        "v1-basic-56"}


def test_a_claim_that_holds(v1_grid):
    r = one(v1_grid, "v1-degradation")
    assert (r["lower_model"], r["higher_model"]) == ("plain-basic-20", "plain-basic-56")
    assert r["lower_mean"] == pytest.approx(statistics.fmean(PLAIN20))
    assert r["lower_std"] == pytest.approx(statistics.stdev(PLAIN20))     # ddof=1
    assert (r["lower_n"], r["higher_n"]) == (3, 3)
    assert r["diff"] == pytest.approx(statistics.fmean(PLAIN56) - statistics.fmean(PLAIN20))
    assert r["p_value"] == pytest.approx(welch_p_less(PLAIN20, PLAIN56))
    assert r["t_statistic"] < 0 and r["p_value"] < 0.05
    assert r["verdict"] == "shown" and "Holm p" in r["reason"]
    assert r["source"] == "stated" and r["family_size"] == 8
    assert r["diff_ci_low"] > 0 and r["diff_boot_low"] > 0 and r["hedges_g"] > 0


def test_a_claim_that_does_not_hold(v1_grid):
    r = one(v1_grid, "v1-deeper-resnet", "train_error")
    # the claim: ResNet-56 below ResNet-20; here it is above
    assert (r["lower_model"], r["higher_model"]) == ("v1-basic-56", "v1-basic-20")
    assert r["diff"] < 0
    assert r["p_value"] == pytest.approx(welch_p_less(R56, R20)) and r["p_value"] > 0.5
    assert r["verdict"] == "inconclusive" and "opposite direction" in r["reason"]
    assert r["seeds_needed"] == "n/a" and r["source"] == "read off Fig. 6 middle"


def test_claims_the_grid_cannot_test(v1_grid):
    r = one(v1_grid, "v1-1202-vs-110")
    assert r["verdict"] == "not testable"
    assert r["reason"] == "model not in grid: v1-basic-110, v1-basic-1202"
    assert r["lower_model"] == "" and r["lower_n"] == 0
    for claim in ("v2-preact-test", "v2-table1-shortcuts", "v2-table2-units"):
        assert (rows(v1_grid, claim)["verdict"] == "not testable").all(), claim
    single = claims_table(runs_table({"plain-basic-20": PLAIN20, "v1-basic-20": R20}))
    r = one(single, "v1-degradation", "train_error")
    assert r["verdict"] == "not testable" and r["reason"] == "grid has one plain depth (20)"


def test_one_seed_on_a_side_is_not_testable():
    table = claims_table(runs_table({"plain-basic-20": PLAIN20, "plain-basic-56": [63.0]}))
    r = one(table, "v1-degradation")
    assert r["verdict"] == "not testable" and r["reason"].startswith("n<2 on a side")
    assert "plain-basic-56 n=1" in r["reason"] and math.isnan(r["p_value"])
    assert r["higher_mean"] == 63.0 and math.isnan(r["higher_std"])   # still reported


def test_diverged_runs_are_failures_of_their_side():
    base, gate = "v1-basic-110", "v1-basic-110-exgate-b0"
    # the variant the paper says fails diverges in every seed: shown
    table = claims_table(runs_table({base: [7.0, 7.2, 6.9], gate: ["div", "div", "div"]}))
    r = one(table, "v2-table1-shortcuts", higher_model=gate)
    assert r["verdict"] == "shown" and "3/3 runs of " + gate + " diverged" in r["reason"]
    assert (r["higher_n"], r["higher_n_diverged"]) == (0, 3) and math.isnan(r["higher_mean"])
    # the side claimed lower diverges more often: not shown, whatever the means
    table = claims_table(runs_table({base: [7.0, "div", 6.9], gate: [30.0, 35.0, 40.0]}))
    r = one(table, "v2-table1-shortcuts", higher_model=gate)
    assert r["verdict"] == "inconclusive" and "diverged more often" in r["reason"]
    assert (r["lower_n"], r["lower_n_diverged"]) == (2, 1)
    assert r["lower_mean"] == pytest.approx(6.95)                      # completed runs only


def test_depth_threshold_and_training_loss_claim():
    table = claims_table(runs_table({
        "v1-basic-56": [9.0, 9.5], "v2-basic-56": [8.0, 8.2],
        "v1-basic-110": [9.0, 9.4, 9.2], "v2-basic-110": [7.0, 7.1, 7.3],
    }))
    r56 = one(table, "v2-preact-test", lower_model="v2-basic-56")
    assert r56["verdict"] == "not testable" and "no claim at 56 layers" in r56["reason"]
    assert r56["lower_mean"] == pytest.approx(8.1) and math.isnan(r56["p_value"])
    r110 = one(table, "v2-preact-test", lower_model="v2-basic-110")
    assert r110["higher_model"] == "v1-basic-110" and r110["verdict"] == "shown"
    # V2 claims the lower training loss at 1001 layers only
    loss = rows(table, "v2-preact-loss", "train_loss")
    assert len(loss) == 2 and (loss["verdict"] == "not testable").all()
    assert loss["reason"].str.contains("no claim at (?:56|110) layers").all()


def test_v2_tables_pair_each_variant_with_its_baseline_and_the_papers_numbers():
    table = claims_table(runs_table({
        "v1-basic-110": [6.5, 6.7], "v1-basic-110-exgate-b-6": [8.6, 8.9],
        "v1-basic-110-optC": [12.0, 12.5], "v2-basic-110": [6.3, 6.4],
        "v1-basic-110-bnafter": [8.0, 8.3], "v2-basic-110-reluonly": [6.6, 6.9],
    }))
    t1 = rows(table, "v2-table1-shortcuts")
    assert set(t1["higher_model"]) == {"v1-basic-110-exgate-b-6", "v1-basic-110-optC"}
    assert set(t1["lower_model"]) == {"v1-basic-110"}
    gate = one(table, "v2-table1-shortcuts", higher_model="v1-basic-110-exgate-b-6")
    assert (gate["paper_lower"], gate["paper_higher"]) == ("6.61 (median of 5)",
                                                          "8.7 (median of 5)")
    t2 = rows(table, "v2-table2-units")
    assert set(t2["lower_model"]) == {"v2-basic-110"}
    assert set(t2["higher_model"]) == {"v1-basic-110", "v1-basic-110-bnafter",
                                       "v2-basic-110-reluonly"}
    assert one(table, "v2-table2-units", higher_model="v1-basic-110-bnafter")[
        "paper_higher"] == "8.17 (median of 5)"
    # a grid with neither variant does not repeat the original-vs-pre-activation claim
    plain = claims_table(runs_table({"v1-basic-110": [6.5, 6.7], "v2-basic-110": [6.3, 6.4]}))
    assert one(plain, "v2-table2-units")["verdict"] == "not testable"


def test_v1_table6_numbers_and_1202():
    table = claims_table(runs_table({"v1-basic-110": [6.5, 6.6, 6.4],
                                     "v1-basic-1202": [7.9, 8.1]}))
    r = one(table, "v1-1202-vs-110")
    assert (r["paper_lower"], r["paper_higher"]) == ("6.61±0.16 (mean of 5)", "7.93")
    assert r["verdict"] == "shown"


def test_aggregate_writes_claims_csv_and_md(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, (shallow, deep) in enumerate([(20.0, 30.0), (21.0, 32.0), (22.0, 31.0)]):
        write_run(runs, family="plain", depth=8, seed=seed, final_test_error=shallow)
        write_run(runs, family="plain", depth=20, seed=seed, final_test_error=deep)
    write_run(runs, family="v1", depth=20, seed=0)
    out = tmp_path / "tables"
    assert main(["aggregate", "--runs", str(runs), "--out", str(out)]) == 0
    assert "claim row(s) (" in capsys.readouterr().out
    table = read_table(out, "claims")
    assert list(table.columns) == CLAIM_COLUMNS
    r = one(table, "v1-degradation", "test_error")
    assert (r["lower_model"], r["higher_model"]) == ("plain-basic-8", "plain-basic-20")
    assert r["p_value"] == pytest.approx(welch_p_less([20, 21, 22], [30, 32, 31]))
    assert r["verdict"] == "shown"
    vs = one(table, "v1-resnet-vs-plain", "test_error")
    assert vs["verdict"] == "not testable" and "v1-basic-20 n=1" in vs["reason"]
    md = (out / "claims.md").read_text()
    assert md.startswith("# Claims of the papers")
    assert "Welch's t-test" in md and "Synthetic, recipe `quick`" in md
    assert "| v1-degradation " in md and "**shown**" in md


def test_no_spread_on_either_side_is_decided_without_a_t_statistic():
    # two stalled nets at chance level: t is 0/0; equal values cannot show "below"
    stalled = claims_table(runs_table({"plain-basic-20": [90.0, 90.0],
                                       "plain-basic-56": [90.0, 90.0]}))
    r = one(stalled, "v1-degradation")
    assert r["verdict"] == "inconclusive" and "no spread on either side" in r["reason"]
    apart = claims_table(runs_table({"plain-basic-20": [40.0, 40.0],
                                     "plain-basic-56": [90.0, 90.0]}))
    assert one(apart, "v1-degradation")["verdict"] == "shown"


def test_claims_are_pipeline_table_outputs_with_their_own_caption():
    from resnet_bench.pipeline import outputs
    files = outputs.table_files("out")
    assert {"out/tables/claims.csv", "out/tables/claims.md"} <= set(files)
    assert outputs.table_caption("out/tables/claims.csv") == "claims"
    assert outputs.table_caption("out/tables/fidelity.csv") == "fidelity"
    assert outputs.table_caption("out/tables/runs.csv") == "tables"
    report = Path(__file__).resolve().parents[1] / "workflow" / "report"
    assert "{{ snakemake.params.decision_rule }}" in (report / "claims.rst").read_text()


def test_a_registered_family_tests_only_its_claims():
    """The 1001-layer study registers v2-preact-loss and v2-preact-early: v2-preact-test (Table
    3, converged errors) is reported at 1001 layers but not tested by a study of 800 iterations."""
    grid = runs_table({"v2-bottleneck-1001": [40.0, 41.0, 42.0],
                       "v1-bottleneck-1001": [80.0, 81.5, 83.0]})
    everything = claims_table(grid)
    assert one(everything, "v2-preact-test")["verdict"] == "shown"
    table = claims_table(grid, family=("v2-preact-loss", "v2-preact-early"))
    untested = one(table, "v2-preact-test")
    assert untested["verdict"] == "not testable" and "registered family" in untested["reason"]
    assert one(table, "v2-preact-loss", "train_loss")["verdict"] == "shown"
    for metric in ("train_error", "test_error"):
        row = one(table, "v2-preact-early", metric)
        assert row["verdict"] == "shown" and row["lower_model"] == "v2-bottleneck-1001"
    with pytest.raises(ValueError, match="unknown claim id"):
        claims_table(grid, family=("v2-preact-typo",))


def test_the_pipeline_refuses_an_unknown_claim_in_the_family():
    from resnet_bench.pipeline.grid import GridError, validate
    config = {"experiment": "x", "results": "results", "device": "cpu",
              "datasets": {"synthetic": {"kind": "synthetic"}},
              "recipes": {"r": {"iterations": 10, "milestones": []}},
              "grid": [{"family": "v1", "block": "basic", "depth": 8, "datasets": ["synthetic"],
                        "seeds": [0], "recipe": "r"}],
              "claims": ["v2-preact-loss", "v2-preact-loss"]}
    with pytest.raises(GridError, match="listed twice"):
        validate(config)


# --- engine v2: Holm's family, contradicted and inconclusive rows, duplicates -----------------

def holm_by_hand(p: list[float]) -> list[float]:
    """Holm's step-down adjustment written out: sort ascending, multiply the i-th smallest
    (0-based) by m - i, carry the running maximum, cap at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


# Four rows in one family (degradation and ResNet-vs-plain at 20, test error only by picking
# the metric): p-values chosen to straddle alpha before and after the adjustment.
HOLM_GRID = {"plain-basic-20": [40.0, 41.0, 42.0], "plain-basic-56": [43.0, 44.5, 45.0],
             "v1-basic-20": [38.0, 39.5, 41.0], "v1-basic-56": [36.0, 37.0, 40.0]}


def test_holm_adjustment_against_a_hand_computation():
    table = claims_table(runs_table(HOLM_GRID), family=("v1-degradation", "v1-resnet-vs-plain"))
    tested = table[table["p_value"].notna()]
    # degradation x2 metrics, ResNet-vs-plain at 20 and 56 x2 metrics (train = test values here)
    assert len(tested) == 6 and (tested["family_size"] == 6).all()
    raw = [welch_p_less(HOLM_GRID[r.lower_model], HOLM_GRID[r.higher_model])
           for r in tested.itertuples()]
    assert tested["p_value"].tolist() == pytest.approx(raw)
    assert tested["p_holm"].tolist() == pytest.approx(holm_by_hand(raw))
    for r, adj in zip(tested.itertuples(), holm_by_hand(raw)):
        assert r.verdict == ("shown" if adj < 0.05 else "inconclusive"), r
    # the adjustment changes a verdict: a row below alpha raw is not shown after Holm
    deg = one(table, "v1-degradation", "test_error")
    assert deg["p_value"] < 0.05 <= deg["p_holm"] and deg["verdict"] == "inconclusive"
    # a family of one row is its raw p
    alone = claims_table(runs_table(HOLM_GRID), family=("v1-degradation",))
    deg1 = one(alone, "v1-degradation", "test_error")
    assert deg1["family_size"] == 2 and deg1["p_holm"] == pytest.approx(
        holm_by_hand([deg1["p_value"], deg1["p_value"]])[0])


def test_without_a_registration_the_family_is_every_tested_row_of_the_dataset_and_recipe():
    both = pd.concat([runs_table(HOLM_GRID), runs_table(HOLM_GRID).assign(recipe="other")])
    table = claims_table(both)
    tested = table[table["p_value"].notna()]
    assert set(tested["recipe"]) == {"r", "other"}
    # deeper-resnet (2) + degradation (2) + resnet-vs-plain (4) per recipe, never pooled
    assert (tested["family_size"] == 8).all()


def test_a_claim_contradicted_by_the_runs():
    # plain-56 far *below* plain-20: the degradation claim is contradicted, not just not shown
    low, high = [30.0, 31.0, 29.5], [45.0, 46.0, 44.0]
    table = claims_table(runs_table({"plain-basic-20": high, "plain-basic-56": low}))
    r = one(table, "v1-degradation", "test_error")
    assert r["diff"] < 0 and r["hedges_g"] < 0 and r["diff_ci_high"] < 0
    assert r["p_value"] == pytest.approx(welch_p_less(high, low)) and r["p_value"] > 0.99
    opposite = [1 - p for p in table["p_value"].dropna()]
    assert r["p_holm_opposite"] == pytest.approx(holm_by_hand(opposite)[0])
    assert r["verdict"] == "contradicted" and "opposite direction: Holm p" in r["reason"]
    assert r["seeds_needed"] == ""


def test_an_inconclusive_row_says_how_many_seeds_would_show_it():
    from statsmodels.stats.power import TTestIndPower
    lower, higher = [14.6, 15.4, 15.0], [15.3, 15.7, 15.5]   # v1-cpu's test-error gap, roughly
    table = claims_table(runs_table({"v1-basic-20": higher, "v1-basic-56": lower}),
                         family=("v1-deeper-resnet",))
    r = one(table, "v1-deeper-resnet", "test_error")
    assert r["verdict"] == "inconclusive" and r["family_size"] == 2
    # Hedges' g by hand
    n1 = n2 = 3
    pooled = math.sqrt((statistics.variance(lower) + statistics.variance(higher)) / 2)
    g = (1 - 3 / (4 * (n1 + n2) - 9)) * (statistics.fmean(higher) - statistics.fmean(lower)) / pooled
    assert r["hedges_g"] == pytest.approx(g)
    # the Welch interval by hand
    va, vb = statistics.variance(lower) / 3, statistics.variance(higher) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx((r["diff"] - half,
                                                                   r["diff"] + half))
    assert r["diff_boot_low"] <= r["diff"] <= r["diff_boot_high"]
    # seeds per side for 80 % power at the strictest Holm level, by statsmodels independently
    n = TTestIndPower().solve_power(effect_size=g, alpha=0.05 / 2, power=0.8, ratio=1.0,
                                    alternative="larger")
    assert r["seeds_needed"] == str(math.ceil(n))
    # a negligible effect: capped
    tiny = claims_table(runs_table({"v1-basic-20": [15.0, 15.5, 16.0],
                                    "v1-basic-56": [14.99, 15.5, 16.0]}))
    assert one(tiny, "v1-deeper-resnet", "test_error")["seeds_needed"] == "> 100"


def test_the_bootstrap_interval_is_reproducible():
    a = claims_table(runs_table(HOLM_GRID))
    b = claims_table(runs_table(HOLM_GRID))
    cols = ["diff_boot_low", "diff_boot_high"]
    assert a[cols].equals(b[cols]) and a["diff_boot_low"].notna().any()


def test_table3_is_credited_only_at_its_depths():
    table = claims_table(runs_table({"v1-basic-218": [63.0, 63.5], "v2-basic-218": [50.0, 50.5],
                                     "v1-basic-110": [60.0, 70.0], "v2-basic-110": [51.0, 52.0]}))
    r218 = one(table, "v2-preact-test", lower_model="v2-basic-218")
    assert r218["verdict"] == "not testable" and "110, 164 and 1001" in r218["reason"]
    assert math.isnan(r218["p_value"])
    assert one(table, "v2-preact-test", lower_model="v2-basic-110")["p_value"] > 0


def test_a_duplicated_run_counts_once(tmp_path):
    import shutil
    from resnet_bench.tables.aggregate import load_runs
    runs = tmp_path / "runs"
    for seed, (shallow, deep) in enumerate([(20.0, 30.0), (21.0, 32.0)]):
        write_run(runs, family="plain", depth=8, seed=seed, final_test_error=shallow)
        write_run(runs, family="plain", depth=20, seed=seed, final_test_error=deep)
    # the same run copied under another name: byte-identical logs
    shutil.copytree(runs / "plain-basic-20_synthetic_quick_s0", runs / "copy-of-seed0")
    loaded = load_runs(runs).runs
    dup = loaded[loaded["duplicate_of"] != ""]
    assert len(dup) == 1 and dup.iloc[0]["model"] == "plain-basic-20"
    assert dup.iloc[0]["duplicate_of"] in set(loaded["run_id"]) - set(dup["run_id"])
    r = one(claims_table(loaded), "v1-degradation", "test_error")
    assert r["higher_n"] == 2 and r["higher_mean"] == pytest.approx(31.0)   # not n = 3
    # the same identity and seed (a rerun with the same config) is the same run too
    same = loaded.assign(identity="abc", train_log_sha256=[f"h{i}" for i in range(len(loaded))])
    from resnet_bench.tables.aggregate import mark_duplicates
    flagged = mark_duplicates(same.assign(duplicate_of=""))
    assert (flagged["duplicate_of"] != "").sum() == 1    # only the copy shares model and seed
    from resnet_bench.tables.build import summarize
    summary = summarize(loaded)
    assert summary.loc[summary["model"] == "plain-basic-20", "n"].item() == 2


def test_the_report_caption_prints_the_one_decision_rule():
    """The caption renders the rule from the tables rule's params: stated once, in claims.py."""
    import jinja2
    from resnet_bench.tables.claims import DECISION_RULE
    root = Path(__file__).resolve().parents[1]
    caption = (root / "workflow" / "report" / "claims.rst").read_text(encoding="utf-8")
    assert "Welch" not in caption    # no copy of the rule
    assert "decision_rule=DECISION_RULE" in (root / "workflow/rules/tables.smk").read_text()
    params = type("Params", (), {"decision_rule": DECISION_RULE})
    rendered = jinja2.Template(caption).render(snakemake=type("S", (), {"params": params}))
    assert DECISION_RULE in rendered
