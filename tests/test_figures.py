"""Figures: the data behind each one (its CSV) against the run records; files; placeholders."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

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


def _render(tables: Path, out: Path, names=None, **kw):
    """render_all, keeping each drawn figure object (name -> Figure) for the checks below."""
    figs = {}
    save = style.save

    def spy(fig, out_dir, name, data):
        figs[name] = fig
        return save(fig, out_dir, name, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(style, "save", spy)
    try:
        rendered = figures.render_all(tables, out, names, **kw)
    finally:
        mp.undo()
    return rendered, figs


def _title_text(fig) -> str:
    parts = [fig._suptitle] + [sf._suptitle for sf in fig.subfigs]
    return " ".join(t.get_text() for t in parts if t is not None) + " " \
        + " ".join(ax.get_title() for ax in fig.axes)


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
    rendered, figs = _render(tables, out)
    titles = {name: _title_text(fig) for name, fig in figs.items()}
    return {"tables": tables, "out": out, "rendered": rendered, "titles": titles, "figs": figs}


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
    # no ResNet deeper than 110 layers: the right panel would repeat the middle one
    assert quick["rendered"]["v1_fig6_right"].empty


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

def test_v1_fig6_is_its_drawn_panels_stacked(quick):
    three = pd.read_csv(quick["out"] / "v1_fig6.csv")
    assert list(three.columns) == figures.CURVE_FIGURE_COLUMNS
    assert list(dict.fromkeys(three["panel"])) == ["left", "middle"]     # nothing deeper than 110
    assert len(quick["figs"]["v1_fig6"].axes) == 2
    for panel in ("left", "middle"):
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
    rendered, figs = _render(tables, root / "fig", ["v2_fig3", "v2_fig6"])
    return {"rendered": rendered, "figs": figs}


def test_v2_fig3_draws_table1_variants_against_the_identity_shortcut(ablations):
    df = ablations["rendered"]["v2_fig3"]
    assert set(df["model"]) == {"v1-basic-110", "v1-basic-110-exgate-b-6", "v1-basic-110-optC"}
    assert set(df["series"]) == {"train_loss", "test_error"}
    assert set(df["panel"]) == {"ResNet-110 basic"}
    assert df.groupby("model")["seed"].nunique().eq(2).all()
    labels = df.drop_duplicates("model").set_index("model")["label"]
    assert labels["v1-basic-110"] == "original"
    assert labels["v1-basic-110-optC"] == "1x1 conv shortcut (optC)"


def test_v2_fig6_draws_table2_units_one_row_per_block_and_depth(ablations):
    df = ablations["rendered"]["v2_fig6"]
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


def test_every_declared_figure_has_its_function_caption_and_claim():
    # the pipeline and `plot --figure` learn the names from resnet_bench.schema, not from here
    from resnet_bench import schema
    from resnet_bench.tables.claims import CLAIM_IDS
    assert list(figures.FIGURES) == list(schema.FIGURES)
    report = Path(__file__).resolve().parents[1] / "workflow" / "report"
    for fig in schema.FIGURES.values():
        assert figures.FIGURES[fig.name].__name__ == fig.name
        caption = (report / f"{fig.name}.rst").read_text()
        if fig.claim:
            assert fig.claim in CLAIM_IDS and f"``{fig.claim}``" in caption
    captions = {p.stem for p in report.glob("*.rst")}
    tables = {"claims", "fidelity", "tables", "workflow"}
    assert captions - tables == set(schema.FIGURES)   # no caption without its figure


# --- what every figure must say: panels, ranges, labels, legends, palette, schedule -----------

def _drawn(figs: dict) -> dict:
    """The figures that drew data (placeholders have no axis turned on)."""
    return {n: f for n, f in figs.items() if any(ax.axison for ax in f.axes)}


def _legends(fig) -> list:
    return ([*fig.legends] + [leg for sf in fig.subfigs for leg in sf.legends]
            + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None])


def _legend_text(fig) -> str:
    return "\n".join(t.get_text() for leg in _legends(fig) for t in leg.get_texts())


def _renderer(fig):
    """Lay the (closed) figure out again on an Agg canvas; its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _is_twin(ax) -> bool:
    return len(ax.get_shared_x_axes().get_siblings(ax)) > 1 and ax.get_xlabel() == ""


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """V1 ResNets of 20, 110 and 218 layers and no plain net (the V2 CPU depth study's shape), on
    CIFAR-10, 2 seeds; plain-20 with a test error far above V1 Fig. 6's 20 %."""
    root = tmp_path_factory.mktemp("deep")
    runs = root / "runs"
    for seed in (0, 1):
        for depth in (20, 110, 218):
            write_run(runs, depth=depth, seed=seed, dataset="cifar10")
    tables = _tables(runs, root / "tables")
    rendered, figs = _render(tables, root / "fig")
    return {"tables": tables, "rendered": rendered, "figs": figs}


def test_fig6_right_panel_only_with_a_resnet_deeper_than_110(deep):
    right = deep["rendered"]["v1_fig6_right"]
    assert set(right["depth"]) == {110, 218}          # the deepest of the middle against 218
    middle = deep["rendered"]["v1_fig6_middle"]
    assert set(middle["depth"]) == {20, 110}
    # no plain runs: no "no plain-net runs" panel, two panels with data of their own
    three = deep["rendered"]["v1_fig6"]
    assert list(dict.fromkeys(three["panel"])) == ["middle", "right"]
    fig = deep["figs"]["v1_fig6"]
    assert len(fig.axes) == 2 and all(ax.axison and ax.lines for ax in fig.axes)
    assert "plain" not in _title_text(fig)


@pytest.mark.parametrize("grid", ["quick", "deep", "ablations"])
def test_every_panel_has_its_labels_ticks_and_data(grid, request):
    figs = _drawn(request.getfixturevalue(grid)["figs"])
    assert figs
    for name, fig in figs.items():
        _renderer(fig)
        for ax in fig.axes:
            assert ax.get_ylabel(), (name, ax.get_title())
            ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_visible()]
            assert len([t for t in ticks if t]) >= 2, (name, ax.get_title(), ticks)
            if not _is_twin(ax):
                assert ax.get_xlabel(), (name, ax.get_title())
                assert [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
                assert ax.lines, (name, ax.get_title())            # data of its own


@pytest.mark.parametrize("grid", ["quick", "deep", "ablations"])
def test_legends_lie_outside_every_panel(grid, request):
    for name, fig in _drawn(request.getfixturevalue(grid)["figs"]).items():
        renderer = _renderer(fig)
        legends = _legends(fig)
        assert legends, name
        for leg in legends:
            box = leg.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), (name, ax.get_title())


def _net_lines(legend) -> dict:
    """A legend's rows that stand for a compared line (the others are styles and notes)."""
    return {h.get_label().split(":")[0]: h for h in legend.legend_handles
            if h.get_linestyle() not in ("None", "none", "") and h.get_color() != "0.3"}


@pytest.mark.parametrize("grid", ["quick", "deep", "ablations", "resnet1001"])
def test_compared_lines_differ_in_greyscale_and_marker(grid, request):
    """Within one legend (the lines one panel, or every panel of the figure, compares): up to
    six lines differ in lightness by MIN_LIGHTNESS_STEP, and two of one colour by marker."""
    fixture = request.getfixturevalue(grid)
    figs = fixture["figs"] if "figs" in fixture else {"v2_fig1": fixture["fig"]}
    for name, fig in _drawn(figs).items():
        for legend in _legends(fig):
            lines = _net_lines(legend)
            grey = {lab: style.lightness(h.get_color()) for lab, h in lines.items()}
            labs = sorted(grey, key=grey.get)
            for a, b in zip(labs, labs[1:]):
                if len(labs) <= 6 and lines[a].get_color() != lines[b].get_color():
                    assert grey[b] - grey[a] >= style.MIN_LIGHTNESS_STEP, (name, a, b, grey)
                else:
                    assert lines[a].get_marker() != lines[b].get_marker(), (name, a, b)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_palettes_are_spaced_in_lightness(n):
    grey = [style.lightness(c) for c in style.lightness_ramp(n)]
    assert grey == sorted(grey, reverse=True)                 # shallow light, deep dark
    assert all(a - b >= style.MIN_LIGHTNESS_STEP for a, b in zip(grey, grey[1:]))
    from resnet_bench.models.families import FAMILIES
    fam = sorted(style.lightness(f.style.color) for f in FAMILIES.values())
    assert all(b - a >= style.MIN_LIGHTNESS_STEP for a, b in zip(fam, fam[1:]))


def test_y_range_is_the_papers_where_it_holds_the_final_values(quick, tmp_path):
    # the quick grid's ResNets end below 18 %: V1 Fig. 6's 0-20 %, said in the legend
    fig = quick["figs"]["v1_fig6_middle"]
    assert fig.axes[0].get_ylim() == (0.0, 20.0)
    assert "y 0-20 %, as in V1 Fig. 6" in _legend_text(fig)
    # a plain net ending at 45 % test error does not fit it: the range grows to show it
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs, family="plain", depth=20, seed=seed, final_test_error=45.0 + seed)
        write_run(runs, family="plain", depth=8, seed=seed)
    _, figs = _render(_tables(runs, tmp_path / "tables"), tmp_path / "fig", ["v1_fig6_left"])
    bottom, top = figs["v1_fig6_left"].axes[0].get_ylim()
    assert bottom == 0 and 46.0 < top <= 100
    assert "do not fit V1 Fig. 6's 0-20 %" in _legend_text(figs["v1_fig6_left"])


def test_titles_state_the_schedule_against_the_papers(quick):
    for name, title in quick["titles"].items():
        assert "120 iterations, 1/533 of the paper's 64k" in title, name


def test_smoothing_window_is_stated_and_in_the_csv(quick):
    df = pd.read_csv(quick["out"] / "v1_fig6_middle.csv")
    # 10 iterations per epoch, 120 iterations: one epoch, not a tenth of the run (12); the seed
    # that diverged at 50 alike (a tenth of its planned 120, not of the 50 it ran)
    assert set(df.loc[df["series"] == "train_error", "window"]) == {10}
    assert (df["status"] == "diverged").any()
    assert set(df.loc[df["series"] == "test_error", "window"]) == {1}
    text = _legend_text(quick["figs"]["v1_fig6_middle"])
    assert "training error, trailing mean over 10 iterations" in text
    assert "test error, evaluated at iterations 40, 80, 120" in text


def test_legend_quotes_the_records_final_values(quick):
    runs = _runs(quick)
    net = runs[(runs["model"] == "v1-basic-20") & (runs["dataset"] == "synthetic")]
    done = net[net["status"] == "completed"]
    text = _legend_text(quick["figs"]["v1_fig6_middle"])
    train, test = done["final_train_error_pct"], done["final_test_error_pct"]
    assert (f"ResNet-20: final train {train.mean():.2f} ± {train.std():.2f}, "
            f"test {test.mean():.2f} ± {test.std():.2f} (n = 3; 1 diverged)") in text


def test_test_error_is_drawn_where_it_was_evaluated(quick):
    ax = quick["figs"]["v1_fig6_middle"].axes[0]
    marked = [line for line in ax.lines if line.get_marker() not in ("None", "", None)
              and line.get_linestyle() == "-"]
    xs = {tuple(np.asarray(line.get_xdata(), float)) for line in marked}
    assert (40.0, 80.0, 120.0) in xs          # the eval_log's iterations, with markers


def test_lr_changes_every_run_shares_are_drawn(quick):
    data = figures.load_plot_data(quick["tables"])
    ids = data.runs.loc[data.runs["family"] == "v1", "run_id"]
    # the helper's lr drops at iteration 90 (the seed that diverged at 50 never got there)
    assert figures.lr_changes(data, ids) == [89]
    ax = quick["figs"]["v1_fig6_middle"].axes[0]
    assert any(list(line.get_xdata()) == [89, 89] for line in ax.lines)
    assert "lr changes after iteration 89" in _legend_text(quick["figs"]["v1_fig6_middle"])


@pytest.fixture(scope="module")
def resnet1001(tmp_path_factory):
    """config/v2_1001_cpu.yaml's shape: v1 and v2 bottleneck-1001, seeds 0-2, 800 iterations,
    test error at 200/400/600/800; one original-unit seed diverges at iteration 500; the fp32
    check's two 100-iteration runs beside them."""
    root = tmp_path_factory.mktemp("r1001")
    runs = root / "runs"
    kw = dict(dataset="cifar10-jpeg", block="bottleneck", depth=1001, iters_per_epoch=390.625,
              train_window=100)
    for fam in ("v1", "v2"):
        for seed in (0, 1, 2):
            diverged = dict(status="diverged", diverge_at=500) if (fam, seed) == ("v1", 2) else {}
            write_run(runs, family=fam, seed=seed, recipe="bf16", iterations=800,
                      eval_every=200, **kw, **diverged)
        write_run(runs, family=fam, seed=0, recipe="fp32", iterations=100, eval_every=100, **kw)
    tables = _tables(runs, root / "tables")
    rendered, figs = _render(tables, root / "fig", ["v2_fig1"])
    return {"tables": tables, "df": rendered["v2_fig1"], "fig": figs["v2_fig1"]}


def test_v2_fig1_draws_the_1001_study_as_v2_fig1(resnet1001):
    df, fig = resnet1001["df"], resnet1001["fig"]
    title = _title_text(fig)
    assert "V2 Fig. 1 (right): ResNet-1001" in title and "Fig. 6" not in title
    assert "800 iterations, 1/80 of the paper's 64k" in title and "'bf16'" in title
    assert set(df["model"]) == {"v1-bottleneck-1001", "v2-bottleneck-1001"}
    assert df.groupby("model")["seed"].nunique().to_dict() == {"v1-bottleneck-1001": 3,
                                                               "v2-bottleneck-1001": 3}
    # test error where it was evaluated: 200, 400, 600, 800 for every completed run
    test = df[(df["series"] == "test_error") & (df["status"] == "completed")]
    assert test.groupby("run_id")["iteration"].apply(list).map(tuple).unique().tolist() == [
        (200, 400, 600, 800)]
    ax, ax2 = fig.axes
    assert "training loss" in ax.get_ylabel() and ax2.get_ylabel() == "test error (%)"
    # loss dashed on the left axis, test error solid with markers on the right, bands over seeds
    assert {line.get_linestyle() for line in ax.lines if len(line.get_xdata()) > 2} == {"--"}
    solid = [line for line in ax2.lines if line.get_linestyle() == "-"]
    assert all(line.get_marker() not in ("None", "") for line in solid)
    xs = sorted(tuple(line.get_xdata()) for line in solid)
    # each unit's mean over its completed seeds; the diverged seed alone, up to iteration 500
    assert xs == [(200, 400, 500), (200, 400, 600, 800), (200, 400, 600, 800)]
    assert len(ax.collections) >= 2                                   # a band per unit
    text = _legend_text(fig)
    assert "trailing mean over 80 iterations" in text      # a tenth of 800: < one epoch (391)
    assert "original unit: final train loss" in text and "(n = 2; 1 diverged)" in text
    assert "pre-activation unit: final train loss" in text and "(n = 3)" in text


def test_v2_fig1_draws_a_diverged_run_to_its_last_finite_iteration(resnet1001):
    df, fig = resnet1001["df"], resnet1001["fig"]
    loss = df[(df["series"] == "train_loss") & (df["status"] == "diverged")]
    assert loss["iteration"].max() == 499            # the loss at 500 is NaN in its log
    assert np.isfinite(loss["value"]).all()
    ends = [line for line in fig.axes[0].lines if line.get_marker() == style.DIVERGED_MARKER]
    assert len(ends) == 1
    last = loss.sort_values("iteration").iloc[-1]
    assert ends[0].get_xdata()[0] == pytest.approx(last["x"]) and ends[0].get_ydata()[0] == pytest.approx(
        last["value"])
    assert "diverged run: drawn alone up to its last finite value" in _legend_text(fig)
