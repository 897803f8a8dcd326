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
    assert r["verdict"] == "shown" and "Welch p" in r["reason"]


def test_a_claim_that_does_not_hold(v1_grid):
    r = one(v1_grid, "v1-deeper-resnet", "train_error")
    # the claim: ResNet-56 below ResNet-20; here it is above
    assert (r["lower_model"], r["higher_model"]) == ("v1-basic-56", "v1-basic-20")
    assert r["diff"] < 0
    assert r["p_value"] == pytest.approx(welch_p_less(R56, R20)) and r["p_value"] > 0.5
    assert r["verdict"] == "not shown" and "opposite direction" in r["reason"]


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
    assert r["verdict"] == "not shown" and "diverged more often" in r["reason"]
    assert (r["lower_n"], r["lower_n_diverged"]) == (2, 1)
    assert r["lower_mean"] == pytest.approx(6.95)                      # completed runs only


def test_depth_threshold_and_training_loss_claim():
    table = claims_table(runs_table({
        "v1-basic-56": [9.0, 9.5], "v2-basic-56": [8.0, 8.2],
        "v1-basic-110": [9.0, 9.4, 9.2], "v2-basic-110": [7.0, 7.1, 7.3],
    }))
    r56 = one(table, "v2-preact-test", lower_model="v2-basic-56")
    assert r56["verdict"] == "not testable" and "no claim below 110 layers" in r56["reason"]
    assert r56["lower_mean"] == pytest.approx(8.1) and math.isnan(r56["p_value"])
    r110 = one(table, "v2-preact-test", lower_model="v2-basic-110")
    assert r110["higher_model"] == "v1-basic-110" and r110["verdict"] == "shown"
    # V2 claims the lower training loss at 1001 layers only
    loss = rows(table, "v2-preact-loss", "train_loss")
    assert len(loss) == 2 and (loss["verdict"] == "not testable").all()
    assert loss["reason"].str.contains("below 1001 layers").all()


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
    assert r["verdict"] == "not shown" and "no spread on either side" in r["reason"]
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
    assert "Welch" in (report / "claims.rst").read_text()


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
