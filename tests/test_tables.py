"""Aggregate tables against values computed by hand from the run records."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from records import write_grid, write_run  # noqa: E402

from resnet_bench.tables.aggregate import RecordError, load_runs  # noqa: E402
from resnet_bench.tables.paper import paper_rows  # noqa: E402
from resnet_bench.schema import TABLES, read_table  # noqa: E402
from resnet_bench.tables.build import build_tables, paper_style, write_tables  # noqa: E402
from resnet_bench.cli import main  # noqa: E402

PAPER = dict(dataset="cifar10", recipe="paper", iterations=64000, planned_iterations=64000,
             eval_every=8000, log_every=4000, iters_per_epoch=391)
R110 = (6.5, 6.6, 6.9)   # forced final test errors of v1-basic-110 on CIFAR-10


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_grid(root)                                              # plain/v1 x 8,14,20 x 3 seeds
    write_run(root, depth=20, seed=3, status="diverged", diverge_at=50)
    for seed, err in enumerate(R110):
        write_run(root, depth=110, seed=seed, final_test_error=err, **PAPER)
    for seed, err in enumerate((8.0, 8.4)):
        write_run(root, depth=110, variant="bnafter", seed=seed, final_test_error=err, **PAPER)
    for seed, err in enumerate((85.0, 90.0)):
        write_run(root, depth=110, variant="exgate-b-3", seed=seed, final_test_error=err,
                  **PAPER)
    write_run(root, depth=56, seed=0, dataset="cifar10-jpeg", recipe="paper",
              final_test_error=7.2, with_val=True)
    return root


@pytest.fixture(scope="module")
def tables(runs_dir):
    return build_tables(load_runs([runs_dir]))


def _summaries(runs_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in runs_dir.glob("*/summary.json")}


def test_runs_table_matches_summary_files(runs_dir, tables):
    runs = tables["runs"].set_index("run_id")
    summaries = _summaries(runs_dir)
    assert set(runs.index) == set(summaries)
    for rid, s in summaries.items():
        row = runs.loc[rid]
        for key in ("model", "family", "block", "depth", "dataset", "dataset_label", "seed",
                    "recipe", "status", "iterations", "params", "macs", "wall_time_s",
                    "images_per_s"):
            assert row[key] == s[key], (rid, key)
        for key in ("final_test_error_pct", "final_train_error_pct", "final_train_loss"):
            if s[key] is None:
                assert math.isnan(row[key])
            else:
                assert row[key] == pytest.approx(s[key])
    diverged = runs[runs["status"] == "diverged"]
    assert list(diverged["model"]) == ["v1-basic-20"]
    assert diverged["final_test_error_pct"].isna().all()
    jpeg = runs[runs["dataset"] == "cifar10-jpeg"].iloc[0]
    assert jpeg["final_val_error_pct"] == pytest.approx(7.7)
    assert runs.loc[runs["model"] == "v1-basic-110", "planned_iterations"].eq(64000).all()


def test_summary_statistics_by_hand(runs_dir, tables):
    summary = tables["summary"]
    groups: dict[tuple, list[dict]] = {}
    for s in _summaries(runs_dir).values():
        groups.setdefault((s["model"], s["dataset"], s["recipe"]), []).append(s)
    assert len(summary) == len(groups)
    for (model, dataset, recipe), members in groups.items():
        row = summary[(summary["model"] == model) & (summary["dataset"] == dataset)
                      & (summary["recipe"] == recipe)]
        assert len(row) == 1
        row = row.iloc[0]
        assert row["n"] == len(members)
        assert row["n_diverged"] == sum(m["status"] == "diverged" for m in members)
        assert row["n_completed"] == sum(m["status"] == "completed" for m in members)
        for quantity, key in (("test_error", "final_test_error_pct"),
                              ("train_error", "final_train_error_pct")):
            vals = [m[key] for m in members if m[key] is not None]
            assert row[f"{quantity}_mean"] == pytest.approx(statistics.fmean(vals))
            assert row[f"{quantity}_median"] == pytest.approx(statistics.median(vals))
            assert row[f"{quantity}_min"] == pytest.approx(min(vals))
            assert row[f"{quantity}_max"] == pytest.approx(max(vals))
            if len(vals) > 1:  # sample std, ddof=1
                assert row[f"{quantity}_std"] == pytest.approx(statistics.stdev(vals))
            else:
                assert math.isnan(row[f"{quantity}_std"])
    r110 = summary[summary["model"] == "v1-basic-110"].iloc[0]
    mean, std = statistics.fmean(R110), statistics.stdev(R110)
    assert r110["test_error_best_mean_std"] == f"6.50 ({mean:.2f}±{std:.2f})"
    assert r110["test_error_median_mean_std"] == f"6.60 ({mean:.2f}±{std:.2f})"
    # the diverged seed counts in n but not in the statistics
    d20 = summary[(summary["model"] == "v1-basic-20")].iloc[0]
    assert (d20["n"], d20["n_completed"], d20["n_diverged"]) == (4, 3, 1)


def test_paper_style_format():
    assert paper_style(6.43, 6.61, 0.16) == "6.43 (6.61±0.16)"
    assert paper_style(7.0, 7.0, math.nan) == "7.00"
    assert paper_style(math.nan, math.nan, math.nan) == "n/a"


def test_curves_row_counts(runs_dir, tables):
    curves = tables["curves"]
    for d in runs_dir.iterdir():
        mine = curves[curves["run_id"] == d.name]
        train = pd.read_csv(d / "train_log.csv")
        evals = pd.read_csv(d / "eval_log.csv")
        assert (mine["split"] == "train").sum() == len(train)
        for split in ("test", "val"):
            assert (mine["split"] == split).sum() == (evals["split"] == split).sum()
        assert (mine["model"] == json.loads((d / "summary.json").read_text())["model"]).all()
    assert curves[curves["split"] == "test"]["epoch"].isna().all()


def _rows(comp, model, table, statistic=None):
    sel = comp[(comp["model"] == model) & (comp["table"] == table)]
    return sel if statistic is None else sel[sel["statistic"] == statistic]


def test_paper_comparison_v1_resnet110(tables):
    comp = tables["paper_comparison"]
    best = _rows(comp, "v1-basic-110", "Table 6", "best")
    mean = _rows(comp, "v1-basic-110", "Table 6", "mean")
    assert len(best) == len(mean) == 1
    best, mean = best.iloc[0], mean.iloc[0]
    assert (best["paper_value"], best["reproduced"], best["n"]) == (6.43, 6.5, 3)
    assert best["diff"] == pytest.approx(6.5 - 6.43)
    assert pd.isna(best["within_paper_spread"])
    assert mean["paper_value"] == 6.61 and mean["paper_std"] == 0.16
    assert mean["reproduced"] == pytest.approx(statistics.fmean(R110))
    assert mean["reproduced_std"] == pytest.approx(statistics.stdev(R110))
    assert bool(mean["within_paper_spread"]) is True       # |6.667 - 6.61| <= 0.16
    assert bool(best["comparable"]) and bool(mean["comparable"])
    assert "best of 3 vs paper's of 5" in best["note"]
    # V2 quotes medians: Tables 1-3 compare our median, with the 6.61 ambiguity noted
    v2 = comp[(comp["model"] == "v1-basic-110") & (comp["paper"] == "V2")]
    med = v2[v2["statistic"] == "median"]
    assert set(med["table"]) == {"Table 1", "Table 2", "Table 3"}
    assert (med["reproduced"] == statistics.median(R110)).all()
    assert med["note"].str.contains("6.61 may be V1's mean").all()
    # V2 Table 4 lists 6.61 as "(mean in V1)": our mean
    t4 = v2[v2["table"] == "Table 4"].iloc[0]
    assert t4["statistic"] == "mean" and t4["reproduced"] == pytest.approx(mean["reproduced"])


def test_paper_comparison_variants_and_bounds(tables):
    comp = tables["paper_comparison"]
    bn = _rows(comp, "v1-basic-110-bnafter", "Table 2")
    assert len(bn) == 1
    assert (bn.iloc[0]["paper_value"], bn.iloc[0]["statistic"]) == (8.17, "median")
    assert bn.iloc[0]["reproduced"] == pytest.approx(8.2)
    fail = _rows(comp, "v1-basic-110-exgate-b-3", "Table 1").iloc[0]
    assert (fail["relation"], fail["paper_value"], fail["paper_text"]) == (">", 20.0, "fail")
    assert bool(fail["within_paper_spread"]) is True and fail["reproduced"] == 87.5
    # nothing else matched those variants
    assert len(comp[comp["model"].str.contains("bnafter|exgate")]) == 2


def test_paper_comparison_marks_non_cifar_data(tables):
    comp = tables["paper_comparison"]
    synth = _rows(comp, "v1-basic-20", "Table 6").iloc[0]
    assert synth["statistic"] == "single" and synth["paper_value"] == 8.75
    assert not synth["comparable"]
    assert "synthetic data: not comparable" in synth["note"]
    assert "1 run(s) without a final error excluded" in synth["note"]
    assert synth["n"] == 3
    jpeg = _rows(comp, "v1-basic-56", "Table 6").iloc[0]
    assert not jpeg["comparable"] and "JPEG q75 mirror" in jpeg["note"]
    assert "schedule 120 iterations" in jpeg["note"]
    assert jpeg["dataset_label"] == "CIFAR-10 (JPEG q75 mirror)"
    # plain nets have no numeric paper row at these depths; depth 8/14 nets none at all
    assert not comp["model"].str.startswith("plain").any()
    assert not comp["depth"].isin([8, 14]).any()


def test_paper_row_statistics():
    rows = paper_rows()
    t6 = rows[rows["table"] == "Table 6"]
    stats = dict(zip(t6["paper_value"], t6["statistic"]))
    assert stats[6.43] == "best" and stats[6.61] == "mean" and stats[8.75] == "single"
    v2_cifar = rows[(rows["paper"] == "V2") & (rows["ref_dataset"] != "imagenet")]
    assert (v2_cifar[v2_cifar["table"].isin(["Table 1", "Table 2", "Table 3"])]["statistic"]
            == "median").all()
    # ImageNet numbers are single models (n not stated)
    assert (rows.loc[rows["ref_dataset"] == "imagenet", "statistic"] == "single").all()
    dagger = rows[rows["paper_model"].str.contains("dagger") & (rows["ref_dataset"] != "imagenet")]
    assert set(dagger["paper_batch"]) == {64}
    assert not rows["paper_model"].isin(["Highway", "NIN", "FitNet"]).any()


@pytest.mark.parametrize("model,paper_variant", [
    ("v1-basic-110", "original; shortcut x 1; F x 1"),
    ("v1-basic-110-exgate-b-6", "exclusive gating; shortcut x 1-g(x); F x g(x); init b_g=-6"),
    ("v1-basic-110-bnafter", "BN after addition (Fig 4(b))"),
    ("v2-basic-110-reluonly", "ReLU-only pre-activation (Fig 4(d))"),
    ("v1-basic-110-scale-s0.5-f0.5", "constant scaling; shortcut x 0.5; F x 0.5"),
    ("v1-basic-110-optC", "1x1 conv shortcut"),
    ("v1-basic-110-dropsc", "dropout shortcut"),
])
def test_paper_rows_join_on_the_canonical_name(model, paper_variant):
    rows = paper_rows()
    mine = rows[rows["suite_model"] == model]
    assert mine["paper_variant"].str.startswith(paper_variant).any(), mine["paper_variant"]


def test_write_and_read_back(tables, tmp_path):
    written = write_tables(tables, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{n}.{ext}" for n in TABLES for ext in ("csv", "md", "tex"))
    runs = read_table(tmp_path, "runs")
    pd.testing.assert_series_equal(runs["final_test_error_pct"],
                                   tables["runs"]["final_test_error_pct"])
    assert (runs["variant"] != "").all()
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# Summary over seeds") and "ddof=1" in md
    assert "| v1-basic-110 " in md
    assert "curves.csv" in (tmp_path / "curves.md").read_text()


# --- strictness --------------------------------------------------------------------------------

def _one_run(tmp_path, **kw) -> Path:
    return write_run(tmp_path / "runs", **kw)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: (d / "train_log.csv").unlink(), "train_log.csv: missing"),
    (lambda d: (d / "config.json").write_text("{oops"), "config.json: not valid JSON"),
    (lambda d: _edit(d, status="running"), "status must be one of completed, diverged"),
    (lambda d: _edit(d, final_test_error_pct=None), "final_test_error_pct is null"),
    (lambda d: _edit(d, final_test_error_pct=3.0), "differs from final_test_error_pct"),
    (lambda d: _edit(d, depth=32), "does not match family/block/depth"),
    (lambda d: _drop(d, "params"), "missing key(s) params"),
    (lambda d: (d / "eval_log.csv").write_text("iteration,split,loss\n1,test,0.1\n"),
     "missing column(s) error_pct"),
    (lambda d: (d / "eval_log.csv").write_text(
        "iteration,split,loss,error_pct\n120,train,1,2\n"), "split must be one of"),
    (lambda d: (d / "train_log.csv").write_text(
        "iteration,epoch,lr,loss,error_pct\n1,0,0.1,x,5\n"), "column loss has a non-numeric"),
])
def test_bad_records_name_the_file(tmp_path, mutate, message):
    d = _one_run(tmp_path)
    mutate(d)
    with pytest.raises(RecordError) as err:
        load_runs([d])
    assert message in str(err.value)
    assert str(d) in str(err.value) and "\n" not in str(err.value)


def _edit(d: Path, **changes):
    s = json.loads((d / "summary.json").read_text())
    s.update(changes)
    (d / "summary.json").write_text(json.dumps(s))


def _drop(d: Path, key: str):
    s = json.loads((d / "summary.json").read_text())
    del s[key]
    (d / "summary.json").write_text(json.dumps(s))


def test_unfinished_and_missing_inputs(tmp_path):
    d = _one_run(tmp_path, skip=("summary.json",))
    with pytest.raises(RecordError, match="summary.json: missing .run not finished."):
        load_runs([d])
    with pytest.raises(RecordError, match="no run records match"):
        load_runs([str(tmp_path / "nope-*")])
    with pytest.raises(RecordError, match="no run records .summary.json. found"):
        load_runs([tmp_path / "runs"])


def test_accepted_inputs(tmp_path):
    a = _one_run(tmp_path, seed=0)
    b = _one_run(tmp_path, seed=1)
    by_dir = load_runs([tmp_path / "runs"]).runs
    by_glob = load_runs([str(tmp_path / "runs" / "*")]).runs
    by_file = load_runs([a / "summary.json", b / "summary.json", a]).runs
    for runs in (by_glob, by_file):
        assert list(runs["run_id"]) == list(by_dir["run_id"])
    assert len(by_dir) == 2


def test_diverged_run_with_null_finals_loads(tmp_path):
    d = _one_run(tmp_path, status="diverged", diverge_at=30)
    runset = load_runs([d])
    assert runset.runs.loc[0, "status"] == "diverged"
    assert runset.runs.loc[0, "iterations"] == 30
    assert (runset.curves.loc[runset.curves["split"] == "train", "iteration"].max()) == 30


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_aggregate(runs_dir, tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["aggregate", "--runs", str(runs_dir / "*"), "--out", str(out)]) == 0
    for name in TABLES:
        assert (out / f"{name}.csv").exists() and (out / f"{name}.md").exists()
    assert "1 diverged" in capsys.readouterr().out


def test_cli_aggregate_bad_input(tmp_path, capsys):
    d = _one_run(tmp_path)
    _edit(d, status="weird")
    assert main(["aggregate", "--runs", str(d), "--out", str(tmp_path / "t")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json" in err[0] and "status" in err[0]
    assert main(["aggregate", "--runs", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "t")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or directory" in err[0]


def test_seed_stats_is_the_one_definition_of_the_statistics_over_seeds():
    from resnet_bench.tables import build, claims
    from resnet_bench.tables.stats import seed_stats
    s = seed_stats(pd.Series([6.5, float("nan"), 6.9, 6.6]))   # a diverged run has no value
    assert s["n"] == 3 and s["mean"] == pytest.approx(statistics.mean([6.5, 6.9, 6.6]))
    assert s["std"] == pytest.approx(statistics.stdev([6.5, 6.9, 6.6]))
    assert (s["median"], s["min"], s["max"]) == (6.6, 6.5, 6.9)
    assert math.isnan(seed_stats(pd.Series([7.0]))["std"])
    # the summary and the claims tables both take theirs from it
    assert build.seed_stats is seed_stats and claims.seed_stats is seed_stats
