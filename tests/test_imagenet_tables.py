"""The ImageNet experiments in the tables and figures: the papers' ImageNet rows joined to runs
(top-1, and top-5 where a record has one), the ImageNet claims, V1 Fig. 4 and which figures a
grid draws."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from records import write_run  # noqa: E402

from resnet_bench.models.spec import parse_model_name  # noqa: E402
from resnet_bench.pipeline.grid import Run  # noqa: E402
from resnet_bench.pipeline.outputs import figure_names  # noqa: E402
from resnet_bench.schema import FIGURES, read_table  # noqa: E402
from resnet_bench.tables.claims import claims_table  # noqa: E402
from resnet_bench.tables.paper import compare  # noqa: E402

P18, P34 = "imagenet-plain-basic-18", "imagenet-plain-basic-34"
R18, R34 = "imagenet-v1-basic-18", "imagenet-v1-basic-34"


def runs_table(errors: dict[str, list[float]], label="ImageNet-1k", dataset="imagenet",
               batch=256, top5: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """model -> final test errors per seed (training error = test error - 5); `top5` adds
    the optional final_test_top5_error_pct column."""
    rows = []
    for model, values in errors.items():
        spec = parse_model_name(model)
        for seed, v in enumerate(values):
            row = {"model": spec.name, "family": spec.family, "block": spec.block,
                   "depth": spec.depth, "variant": spec.variant, "dataset": dataset,
                   "dataset_label": label, "recipe": "paper", "seed": seed,
                   "status": "completed", "planned_iterations": 600000, "batch_size": batch,
                   "final_test_error_pct": v, "final_train_error_pct": v - 5.0,
                   "final_train_loss": (v - 5.0) / 20}
            if top5 is not None:
                row["final_test_top5_error_pct"] = top5[model][seed]
            rows.append(row)
    return pd.DataFrame(rows)


def rows_of(df: pd.DataFrame, **match) -> pd.DataFrame:
    for key, value in match.items():
        df = df[df[key] == value]
    return df


# --- paper comparison ----------------------------------------------------------------------------

def test_table_2_and_3_rows_meet_the_runs_with_their_test_protocol():
    runs = runs_table({P34: [29.0, 30.0], R34: [26.0, 27.0]},
                      top5={P34: [10.5, 11.5], R34: [8.0, 9.0]})
    comp = compare(runs)
    t2 = rows_of(comp, table="Table 2", model=P34).iloc[0]
    assert (t2["quantity"], t2["paper_value"], t2["reproduced"]) == ("test", 28.54, 29.5)
    assert t2["diff"] == pytest.approx(29.5 - 28.54)
    assert t2["comparable"] and "paper: 10-crop testing" in t2["note"]
    top5 = rows_of(comp, table="Table 3", model=R34, quantity="test_top5").iloc[0]
    assert (top5["paper_value"], top5["reproduced"]) == (7.76, 8.5)
    # options B and C of Table 3 and the bottleneck nets meet no run of this grid
    assert set(comp["model"]) == {P34, R34}


def test_top5_rows_say_so_when_the_records_carry_no_top5_error():
    comp = compare(runs_table({R34: [26.0, 27.0]}))       # no final_test_top5_error_pct column
    top5 = rows_of(comp, table="Table 3", quantity="test_top5").iloc[0]
    assert math.isnan(top5["reproduced"]) and top5["n"] == 0
    assert "the runs record no top-5 error" in top5["note"]
    top1 = rows_of(comp, table="Table 3", quantity="test").iloc[0]
    assert top1["reproduced"] == 26.5 and "no top-5" not in top1["note"]
    # a column that is present but empty (records without the field among ones with it)
    empty = runs_table({R34: [26.0, 27.0]}, top5={R34: [math.nan, math.nan]})
    assert "the runs record no top-5 error" in rows_of(
        compare(empty), table="Table 3", quantity="test_top5").iloc[0]["note"]


def test_v2_table_5_rows_name_their_crop_and_a_subset_is_not_comparable():
    runs = runs_table({"imagenet-v2-bottleneck-200": [22.0]}, label="ImageNet-100 (every 10th class)",
                      dataset="imagenet100", batch=128)
    comp = compare(runs)
    t5 = rows_of(comp, table="Table 5", quantity="test").iloc[0]
    assert t5["paper_value"] == 20.7 and "paper: single crop 320 testing" in t5["note"]
    assert not t5["comparable"]
    assert "not labelled ImageNet-1k" in t5["note"] and "batch 128 (paper 256)" in t5["note"]
    # the fb.resnet.torch model (dagger row) is the stride-in-3x3 net, not this one
    assert not comp["paper_model"].str.contains("dagger").any()


def test_imagenet_rows_never_meet_cifar_runs():
    cifar = runs_table({"v1-basic-110": [6.5, 6.7]}, label="CIFAR-10", dataset="cifar10", batch=128)
    comp = compare(cifar)
    assert not comp.empty and not comp["paper_dataset"].str.startswith("ImageNet").any()


# --- claims --------------------------------------------------------------------------------------

def test_imagenet_claims_follow_the_decision_rule():
    runs = runs_table({P18: [28.0, 28.4], P34: [30.0, 30.4], R18: [28.1, 28.3], R34: [25.0, 25.4]})
    table = claims_table(runs)
    verdict = {(r.claim, r.metric, r.lower_model, r.higher_model): r.verdict
               for r in table.itertuples()}
    for metric in ("train_error", "test_error"):
        assert verdict["v1-imagenet-degradation", metric, P18, P34] == "shown"
        assert verdict["v1-imagenet-deeper-resnet", metric, R34, R18] == "shown"
        assert verdict["v1-imagenet-resnet-vs-plain", metric, R34, P34] == "shown"
        assert verdict["v1-imagenet-resnet-vs-plain", metric, R18, P18] == "not testable"
    deg = rows_of(table, claim="v1-imagenet-degradation", metric="test_error").iloc[0]
    assert (deg["paper_lower"], deg["paper_higher"]) == ("27.94", "28.54")   # V1 Table 2
    assert rows_of(table, claim="v1-imagenet-degradation", metric="train_error").iloc[0][
        "paper_lower"] == ""                       # the paper gives curves only
    # the CIFAR claims do not pair ImageNet nets
    cifar = table[~table["claim"].str.startswith("v1-imagenet")]
    assert (cifar["verdict"] == "not testable").all() and not cifar["lower_model"].any()


def test_imagenet_claims_not_testable_with_one_seed_or_a_missing_side():
    table = claims_table(runs_table({P18: [28.0], P34: [29.0], R34: [25.0, 25.4]}))
    deg = rows_of(table, claim="v1-imagenet-degradation", metric="test_error").iloc[0]
    assert deg["verdict"] == "not testable" and "n<2" in deg["reason"]
    deeper = rows_of(table, claim="v1-imagenet-deeper-resnet", metric="test_error").iloc[0]
    assert deeper["verdict"] == "not testable"
    assert deeper["reason"] == f"model not in grid: {R18}"


def test_cifar_shortcut_claims_ignore_imagenet_variants():
    runs = pd.concat([runs_table({"v1-basic-110": [6.5, 6.6], "v1-basic-110-optC": [6.9, 7.0]},
                                 label="CIFAR-10", dataset="cifar10", batch=128),
                      runs_table({"imagenet-v1-basic-34-optC": [24.0, 24.2]},
                                 label="CIFAR-10", dataset="cifar10", batch=128)])
    table = claims_table(runs)
    t1 = rows_of(table, claim="v2-table1-shortcuts")
    assert list(t1["higher_model"]) == ["v1-basic-110-optC"]


# --- figures -------------------------------------------------------------------------------------

def test_a_grid_draws_fig4_for_its_imagenet_nets_and_the_cifar_figures_for_cifar_nets():
    def names(models):
        return figure_names([Run("d", "r", m, 0) for m in models])
    assert names([P18, R34]) == ["v1_fig4"]
    assert names(["imagenet-v1-bottleneck-50"]) == []
    cifar = names(["plain-basic-20", "v1-basic-20"])
    assert "v1_fig4" not in cifar and "v1_fig6" in cifar
    assert names(["plain-basic-20", P34]) == [f for f in FIGURES if f in cifar or f == "v1_fig4"]


@pytest.fixture(scope="module")
def fig4_tables(tmp_path_factory) -> Path:
    from resnet_bench.cli import main
    root = tmp_path_factory.mktemp("fig4")
    for family in ("plain", "v1"):
        for depth in (18, 34):
            for seed in (0, 1):
                write_run(root / "runs", family=family, depth=depth, seed=seed, stem="imagenet",
                          dataset="imagenet", dataset_label="ImageNet-1k", recipe="paper",
                          iterations=200, eval_every=20, iters_per_epoch=20, batch_size=256)
    write_run(root / "runs", family="v1", depth=20, dataset="imagenet",
              dataset_label="ImageNet-1k", recipe="paper", iterations=200, eval_every=20)
    assert main(["aggregate", "--runs", str(root / "runs"), "--out", str(root / "tables")]) == 0
    return root / "tables"


def test_fig4_draws_the_four_nets_in_their_panels_with_both_series(fig4_tables, tmp_path):
    from resnet_bench.plots.figures import render_all
    out = render_all(fig4_tables, tmp_path, figures=["v1_fig4"])["v1_fig4"]
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"v1_fig4.{ext}").stat().st_size > 0
    models = out.groupby("panel")["model"].unique().map(set).to_dict()
    assert models == {"left": {P18, P34}, "right": {R18, R34}}     # not the CIFAR v1-basic-20
    assert set(out["series"]) == {"train_error", "test_error"}
    assert set(out["label"]) == {"plain-18", "plain-34", "ResNet-18", "ResNet-34"}
    # the bold curve is the runs' test split (the papers' validation set), point for point
    curves = read_table(fig4_tables, "curves")
    run = out[(out["series"] == "test_error") & (out["model"] == R34) & (out["seed"] == 1)]
    logged = curves[(curves["split"] == "test") & (curves["model"] == R34) & (curves["seed"] == 1)]
    assert list(run["value"]) == pytest.approx(list(logged["error_pct"]))


def test_fig4_with_one_panel_and_without_its_nets(fig4_tables, tmp_path):
    from resnet_bench.plots import figures
    data = figures.load_plot_data(fig4_tables)
    data.runs = data.runs[data.runs["family"] == "v1"]
    out = figures.v1_fig4(data, tmp_path)
    assert set(out["panel"]) == {"right"}
    data.runs = data.runs[data.runs["depth"] == 20]
    empty = figures.v1_fig4(data, tmp_path / "none")
    assert empty.empty and (tmp_path / "none" / "v1_fig4.png").exists()
