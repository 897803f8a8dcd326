"""Figures: the data behind each one (its CSV) against the run records; files; placeholders."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from records import write_grid, write_run  # noqa: E402

from resnet_bench.tables.aggregate import load_runs  # noqa: E402
from resnet_bench.tables.build import build_tables, write_tables  # noqa: E402
from resnet_bench.cli import main  # noqa: E402
from resnet_bench.plots import figures, style  # noqa: E402

ALL = list(figures.FIGURES)


def _tables(runs_root: Path, out: Path) -> Path:
    write_tables(build_tables(load_runs([runs_root])), out)
    return out


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The default quick config's shape (synthetic, plain + v1 at 8/14/20, 3 seeds), plus a
    diverged seed, a non-default variant and a few runs on a second dataset."""
    root = tmp_path_factory.mktemp("quick")
    runs = root / "runs"
    write_grid(runs)
    write_run(runs, depth=20, seed=3, status="diverged", diverge_at=50)
    write_run(runs, depth=20, variant="optB", seed=0)
    for seed in (0, 1):
        write_run(runs, family="plain", depth=8, seed=seed, dataset="cifar10-jpeg")
    tables = _tables(runs, root / "tables")
    shutil.rmtree(runs)   # plotting must need nothing but the tables
    out = root / "figures"
    titles = {}
    save = style.save

    def spy(fig, out_dir, name, data):
        titles[name] = " ".join(t.get_text() for t in [fig._suptitle] if t is not None) + " " \
            + " ".join(ax.get_title() for ax in fig.axes)
        return save(fig, out_dir, name, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(style, "save", spy)
    try:
        rendered = figures.render_all(tables, out)
    finally:
        mp.undo()
    return {"tables": tables, "out": out, "rendered": rendered, "titles": titles}


def _runs(q) -> pd.DataFrame:
    return pd.read_csv(q["tables"] / "runs.csv")


def _curves(q) -> pd.DataFrame:
    return pd.read_csv(q["tables"] / "curves.csv")


def _expected_runs(q, family, depths=None, dataset="synthetic"):
    runs = _runs(q)
    sel = runs[(runs["family"] == family) & (runs["block"] == "basic")
               & (runs["dataset"] == dataset) & ~runs["model"].str.contains("opt")]
    if depths is not None:
        sel = sel[sel["depth"].isin(depths)]
    return set(sel["run_id"])


def test_every_figure_written_as_png_pdf_csv(quick):
    for name in ALL:
        for ext in ("png", "pdf", "csv"):
            assert (quick["out"] / f"{name}.{ext}").stat().st_size > 0, (name, ext)
        on_disk = pd.read_csv(quick["out"] / f"{name}.csv")
        assert len(on_disk) == len(quick["rendered"][name])


def test_titles_carry_dataset_label(quick):
    for name, title in quick["titles"].items():
        assert "Synthetic" in title, name


def test_fig6_left_is_every_plain_run_with_both_series(quick):
    df = quick["rendered"]["v1_fig6_left"]
    assert set(df["run_id"]) == _expected_runs(quick, "plain")
    assert set(df["series"]) == {"train_error", "test_error"}
    assert set(df["label"]) == {"plain-8", "plain-14", "plain-20"}
    # test error points are the eval_log test rows, unsmoothed
    curves = _curves(quick)
    for rid, part in df[df["series"] == "test_error"].groupby("run_id"):
        ref = curves[(curves["run_id"] == rid) & (curves["split"] == "test")]
        assert list(part["iteration"]) == list(ref["iteration"])
        np.testing.assert_allclose(part["value"], ref["error_pct"])


def test_training_error_is_running_mean_over_one_epoch(quick):
    df = quick["rendered"]["v1_fig6_left"]
    curves = _curves(quick)
    rid = sorted(df["run_id"].unique())[0]
    train = curves[(curves["run_id"] == rid) & (curves["split"] == "train")]
    mine = df[(df["run_id"] == rid) & (df["series"] == "train_error")].set_index("iteration")
    # the helper logs 10 iterations per epoch: the value at i is the mean of rows i-9..i
    for it in (mine.index[-1], mine.index[len(mine) // 2]):
        window = train[(train["iteration"] > it - 10) & (train["iteration"] <= it)]
        assert mine.loc[it, "value"] == pytest.approx(window["error_pct"].mean())
    assert mine.index[-1] == train["iteration"].max()
    assert (mine["x"] == mine.index).all()          # short run: x in iterations, not 1e4


def test_fig6_middle_and_right(quick):
    middle = quick["rendered"]["v1_fig6_middle"]
    assert set(middle["run_id"]) == _expected_runs(quick, "v1")   # includes the diverged seed
    assert not middle["model"].str.contains("optB").any()
    diverged = middle[middle["seed"] == 3]
    assert diverged["iteration"].max() == 50
    right = quick["rendered"]["v1_fig6_right"]
    assert set(right["depth"]) == {14, 20}
    assert set(right["run_id"]) == _expected_runs(quick, "v1", {14, 20})


def test_fig1_shallowest_vs_deepest_plain(quick):
    df = quick["rendered"]["v1_fig1"]
    assert set(df["depth"]) == {8, 20}
    assert set(df["run_id"]) == _expected_runs(quick, "plain", {8, 20})
    assert set(zip(df["series"], df["panel"])) == {("train_error", "training error"),
                                                   ("test_error", "test error")}


def test_degradation_values_are_final_errors(quick):
    df = quick["rendered"]["degradation"]
    runs = _runs(quick)
    runs = runs[(runs["dataset"] == "synthetic") & ~runs["model"].str.contains("opt")]
    finite = runs.dropna(subset=["final_test_error_pct"])
    assert len(df) == 2 * len(finite)                  # the diverged seed has no final error
    merged = df.merge(runs, on="run_id")
    test = merged[merged["series"] == "test_error"]
    np.testing.assert_allclose(test["value"], test["final_test_error_pct"])
    train = merged[merged["series"] == "train_error"]
    np.testing.assert_allclose(train["value"], train["final_train_error_pct"])
    assert set(df["family"]) == {"plain", "v1"}


def test_v2_placeholder_without_v2_runs(quick):
    df = quick["rendered"]["v2_fig1"]
    assert df.empty
    on_disk = pd.read_csv(quick["out"] / "v2_fig1.csv")
    assert on_disk.empty and list(on_disk.columns) == figures.CURVE_FIGURE_COLUMNS
    assert (quick["out"] / "v2_fig1.png").exists() and (quick["out"] / "v2_fig1.pdf").exists()


def test_v2_fig1_picks_deepest_common_bottleneck_and_long_axis(tmp_path):
    runs = tmp_path / "runs"
    kw = dict(dataset="cifar10-jpeg", recipe="paper", iterations=20000, eval_every=2000,
              log_every=50, iters_per_epoch=391)
    for seed in (0, 1):
        for fam in ("v1", "v2"):
            write_run(runs, family=fam, block="bottleneck", depth=164, seed=seed, **kw)
            write_run(runs, family=fam, depth=56, seed=seed, **kw)
        write_run(runs, family="v2", block="bottleneck", depth=1001, seed=seed, **kw)
    tables = _tables(runs, tmp_path / "tables")
    out = tmp_path / "fig"
    rendered = figures.render_all(tables, out, ["v2_fig1", "v1_fig6_left", "degradation"])
    df = rendered["v2_fig1"]
    assert set(df["model"]) == {"v1-bottleneck-164", "v2-bottleneck-164"}
    assert set(df["series"]) == {"train_loss", "test_error"}
    assert df.groupby("model")["seed"].nunique().to_dict() == {"v1-bottleneck-164": 2,
                                                               "v2-bottleneck-164": 2}
    np.testing.assert_allclose(df["x"], df["iteration"] / 1e4)     # long run: 1e4 units
    # thinned to at most MAX_POINTS per run and series, seeds on the same x values
    train = df[df["series"] == "train_loss"]
    assert train.groupby("run_id").size().max() <= figures.MAX_POINTS + 1
    xs = train.groupby("run_id")["x"].apply(tuple)
    assert xs.nunique() == 1
    assert pd.read_csv(out / "v1_fig6_left.csv").empty                # no plain runs here
    # degradation: one line per family, its bottleneck depths named
    assert set(rendered["degradation"]["label"]) == {
        "ResNet (original) (bottleneck at 164)", "ResNet (pre-act) (bottleneck at 164, 1001)"}


def test_dataset_and_recipe_selection(quick, tmp_path):
    out = tmp_path / "jpeg"
    df = figures.render_all(quick["tables"], out, ["v1_fig6_left"],
                            dataset="cifar10-jpeg")["v1_fig6_left"]
    assert set(df["depth"]) == {8} and df["run_id"].nunique() == 2
    with pytest.raises(ValueError, match="no runs with dataset 'cifar100'"):
        figures.render_all(quick["tables"], out, ["v1_fig6_left"], dataset="cifar100")


def test_cli_plot(quick, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["plot", "--tables", str(quick["tables"]), "--out", str(out),
                 "--figure", "degradation", "v2_fig1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{e}" for n in ("degradation", "v2_fig1") for e in ("png", "pdf", "csv"))
    assert "placeholder" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["--figure", "fig99"], "unknown figure(s) fig99"),
    (["--dataset", "imagenet"], "no runs with dataset 'imagenet'"),
])
def test_cli_plot_bad_input(quick, tmp_path, capsys, argv, needle):
    rc = main(["plot", "--tables", str(quick["tables"]), "--out", str(tmp_path)] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and needle in err[0]


def test_cli_plot_missing_tables(tmp_path, capsys):
    assert main(["plot", "--tables", str(tmp_path / "none"), "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs.csv: missing" in err[0]


@pytest.mark.parametrize("epoch", [lambda it: it / 8, lambda it: (it - 1) // 8])
def test_smoothing_window_is_one_epoch(epoch):
    it = np.arange(1, 81)
    train = pd.DataFrame({"iteration": it, "epoch": epoch(it), "error_pct": it * 1.0})
    smoothed = figures.smooth(train, "error_pct")
    assert smoothed.iloc[-1] == pytest.approx(np.mean(np.arange(73, 81)))   # last 8 rows
    assert smoothed.iloc[0] == 1.0                                          # partial window


def test_a_run_of_about_one_epoch_is_smoothed_over_a_tenth_of_it():
    it = np.arange(1, 401)           # 400 iterations of a 390-iteration epoch (V2 CPU depth grid)
    train = pd.DataFrame({"iteration": it, "epoch": it * 128 / 50_000, "loss": it * 1.0})
    smoothed = figures.smooth(train, "loss")
    assert smoothed.iloc[-1] == pytest.approx(np.mean(np.arange(361, 401)))  # last 40 rows


# --- V1 Fig. 6 in one figure; the V2 ablation figures -------------------------------------------

def test_v1_fig6_is_the_three_panels_stacked(quick):
    three = pd.read_csv(quick["out"] / "v1_fig6.csv")
    assert list(three.columns) == figures.CURVE_FIGURE_COLUMNS
    assert list(dict.fromkeys(three["panel"])) == ["left", "middle", "right"]
    for panel in ("left", "middle", "right"):
        single = pd.read_csv(quick["out"] / f"v1_fig6_{panel}.csv").drop(columns="panel")
        mine = three[three["panel"] == panel].drop(columns="panel").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, single)


def test_v2_ablation_figures_are_placeholders_without_variants(quick):
    for name in ("v2_fig3", "v2_fig6"):
        assert quick["rendered"][name].empty
        assert (quick["out"] / f"{name}.png").stat().st_size > 0


@pytest.fixture(scope="module")
def ablations(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablations")
    runs = root / "runs"
    for seed in (0, 1):
        for variant in ("", "exgate-b-6", "optC", "bnafter"):
            write_run(runs, depth=110, variant=variant, seed=seed)
        write_run(runs, family="v2", depth=110, seed=seed)
        write_run(runs, family="v2", block="bottleneck", depth=164, seed=seed)
        write_run(runs, family="v2", block="bottleneck", depth=164, variant="reluonly", seed=seed)
    write_run(runs, depth=20, seed=0)                 # in no ablation
    tables = _tables(runs, root / "tables")
    return figures.render_all(tables, root / "fig", ["v2_fig3", "v2_fig6"])


def test_v2_fig3_draws_table1_variants_against_the_identity_shortcut(ablations):
    df = ablations["v2_fig3"]
    assert set(df["model"]) == {"v1-basic-110", "v1-basic-110-exgate-b-6", "v1-basic-110-optC"}
    assert set(df["series"]) == {"train_loss", "test_error"}
    assert set(df["panel"]) == {"ResNet-110 basic"}
    assert df.groupby("model")["seed"].nunique().eq(2).all()
    labels = df.drop_duplicates("model").set_index("model")["label"]
    assert labels["v1-basic-110"] == "original"
    assert labels["v1-basic-110-optC"] == "1x1 conv shortcut (optC)"


def test_v2_fig6_draws_table2_units_one_row_per_block_and_depth(ablations):
    df = ablations["v2_fig6"]
    by_panel = df.groupby("panel")["model"].apply(set).to_dict()
    assert by_panel == {
        "ResNet-110 basic": {"v2-basic-110", "v1-basic-110", "v1-basic-110-bnafter"},
        # no original unit at 164 in this grid: pre-activation vs ReLU-only only
        "ResNet-164 bottleneck": {"v2-bottleneck-164", "v2-bottleneck-164-reluonly"},
    }
    labels = df.drop_duplicates("model").set_index("model")["label"]
    assert labels["v2-basic-110"] == "full pre-activation"
    assert labels["v1-basic-110-bnafter"] == "BN after addition"


def test_pipeline_draws_the_ablation_figures_only_for_grids_with_their_variants():
    from resnet_bench.pipeline import outputs
    from resnet_bench.pipeline.grid import Run

    def names(*models):
        return outputs.figure_names([Run("cifar10", "r", m, 0) for m in models])

    base = ["plain-basic-20", "v1-basic-20", "v2-basic-20"]
    assert "v2_fig3" not in names(*base) and "v2_fig6" not in names(*base)
    assert "v1_fig6" in names(*base)
    with_t1 = names(*base, "v1-basic-110", "v1-basic-110-scgate-b0")
    assert "v2_fig3" in with_t1 and "v2_fig6" not in with_t1
    assert "v2_fig6" in names(*base, "v2-basic-110-reluonly")
    files = outputs.figure_files("out", [Run("cifar10", "r", "v1-basic-20", 0)])
    assert "out/figures/cifar10/r/v1_fig6.png" in files
    assert not any("v2_fig3" in f for f in files)


def test_every_figure_name_of_the_schema_has_its_function():
    # the pipeline and `plot --figure` learn the names from resnet_bench.schema, not from here
    from resnet_bench import schema
    assert tuple(figures.FIGURES) == schema.FIGURES
    assert set(schema.FIGURE_CLAIMS) <= set(schema.FIGURES)
