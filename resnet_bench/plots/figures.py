"""The papers' figures, one function each, drawn from the aggregate tables only.

Every figure function takes a `PlotData` (the runs and curves of one dataset and recipe) and an
output directory, writes `<name>.png`, `<name>.pdf` and `<name>.csv` (the tidy data it plotted,
one row per run, series and point; seaborn draws seeds as mean ± std bands from it), and returns
that DataFrame. With nothing to show it writes a placeholder image and an empty CSV instead.

Training curves are the training mini-batch error (or loss) smoothed by a trailing running mean
over one epoch of iterations (iterations per epoch from the log's epoch column; at most a tenth
of the run, for runs of a few epochs), then kept every
`step` iterations: the last logged point in each bin [k*step, (k+1)*step), with
`step` = ceil(longest run / MAX_POINTS), so seeds share x values and each run keeps its last point.
Test curves are the eval_log points, unsmoothed. Only default-variant nets (a model name with no
variant suffix) enter the V1 figures, V2 Fig. 1 and the degradation figure; the CIFAR figures
draw CIFAR-stem nets, V1 Fig. 4 (ImageNet) the four nets of `schema.V1_FIG4_PANELS`. The V2 ablation
figures (Fig. 3: Table 1 shortcuts; Fig. 6: Table 2 units) draw the models that the claims table
pairs for those tables (`FIGURE_CLAIMS`), so which net is a Table 1/2 variant is decided in one
place (resnet_bench.tables.claims), from the tables. Figure names and the tables' columns come from
`resnet_bench.schema`: this stage imports nothing of the stages that write the tables.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from resnet_bench.models.spec import parse_model_name
from resnet_bench.plots import style
from resnet_bench.schema import (
    CLAIM_COLUMNS, FIGURE_CLAIMS, V1_FIG4_PANELS, base_name, is_default_variant, read_table,
    sort_runs,
)

MAX_POINTS = 400
RUN_KEYS = ["run_id", "model", "family", "block", "depth", "variant", "seed"]
CURVE_FIGURE_COLUMNS = ["panel"] + RUN_KEYS + ["label", "series", "iteration", "x", "value"]
DEPTH_FIGURE_COLUMNS = ["panel"] + RUN_KEYS + ["label", "series", "value"]
# series -> (curves split, curves column, smoothed?)
SERIES = {
    "train_error": ("train", "error_pct", True),
    "train_loss": ("train", "loss", True),
    "test_error": ("test", "error_pct", False),
}
SERIES_NAMES = {"train_error": "training error", "train_loss": "training loss",
                "test_error": "test error"}


@dataclass
class PlotData:
    runs: pd.DataFrame       # runs table rows of the selected dataset and recipe
    curves: pd.DataFrame     # their curves
    dataset: str
    dataset_label: str
    recipe: str
    claims: pd.DataFrame | None = None   # claims table rows of this dataset and recipe

    @property
    def caption(self) -> str:
        extra = "" if self.recipe in ("", "paper") else f", recipe '{self.recipe}'"
        return f"{self.dataset_label}{extra}"

    @property
    def max_iteration(self) -> int:
        return int(self.curves["iteration"].max()) if len(self.curves) else 0

    @property
    def step(self) -> int:
        return max(1, math.ceil(self.max_iteration / MAX_POINTS))


def _choose(runs: pd.DataFrame, column: str, wanted: str | None) -> str:
    values = runs[column].value_counts()
    if wanted is not None:
        if wanted not in values.index:
            raise ValueError(f"no runs with {column} {wanted!r} in the tables; "
                             f"available: {', '.join(sorted(values.index)) or 'none'}")
        return wanted
    # the value with most runs; ties broken alphabetically
    best = values[values == values.max()]
    return sorted(best.index)[0]


def select(runs: pd.DataFrame, curves: pd.DataFrame, dataset: str | None = None,
           recipe: str | None = None) -> PlotData:
    """The runs of one dataset and recipe (default: the pair with most runs)."""
    if runs.empty:
        return PlotData(runs, curves.iloc[:0], dataset or "", dataset or "no runs", recipe or "")
    ds = _choose(runs, "dataset", dataset)
    sub = runs[runs["dataset"] == ds]
    rc = _choose(sub, "recipe", recipe)
    sub = sub[sub["recipe"] == rc].reset_index(drop=True)
    cur = curves[curves["run_id"].isin(set(sub["run_id"]))].reset_index(drop=True)
    return PlotData(sub, cur, ds, str(sub["dataset_label"].iloc[0]), rc)


def _check_completed(tables_dir, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
    """A completed run's numbers are finite (NaN belongs to diverged runs): refused with the
    file, the data row and the column named."""
    done = runs["status"] == "completed"
    for col in ("final_train_loss", "final_train_error_pct", "final_test_loss",
                "final_test_error_pct"):
        bad = done & runs[col].isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{Path(tables_dir) / 'runs.csv'}: column {col} is empty on data row "
                             f"{row + 1} (run {runs['run_id'].iloc[row]}), a completed run")
    ids = set(runs.loc[done, "run_id"])
    for col in ("loss", "error_pct"):
        bad = curves["run_id"].isin(ids) & curves[col].isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{Path(tables_dir) / 'curves.csv'}: column {col} is empty on data "
                             f"row {row + 1} (run {curves['run_id'].iloc[row]}), a completed run")


def load_plot_data(tables_dir, dataset: str | None = None, recipe: str | None = None) -> PlotData:
    runs, curves = read_table(tables_dir, "runs"), read_table(tables_dir, "curves")
    _check_completed(tables_dir, runs, curves)
    data = select(runs, curves, dataset, recipe)
    try:
        claims = read_table(tables_dir, "claims")
    except FileNotFoundError:   # tables written before the claims table existed
        claims = pd.DataFrame(columns=CLAIM_COLUMNS)
    data.claims = claims[(claims["dataset"] == data.dataset)
                         & (claims["recipe"] == data.recipe)].reset_index(drop=True)
    return data


# ---------------------------------------------------------------------------------------------
# data behind the figures

def default_runs(runs: pd.DataFrame, families, blocks=("basic", "bottleneck")) -> pd.DataFrame:
    keep = is_default_variant(runs) & runs["family"].isin(families) & runs["block"].isin(blocks)
    return sort_runs(runs[keep])


def _iters_per_epoch(train: pd.DataFrame) -> float:
    """From the epoch column: fractional (the trainer's i*B/N) or whole epoch numbers."""
    it, ep = train["iteration"].to_numpy(), train["epoch"].to_numpy()
    if len(it) < 2 or not np.isfinite(ep).all() or ep[-1] <= ep[0]:
        return float(max(len(it), 1))
    if (ep == np.floor(ep)).all():      # whole epochs: iterations per distinct epoch
        return (it[-1] - it[0] + np.median(np.diff(it))) / len(np.unique(ep))
    return (it[-1] - it[0]) / (ep[-1] - ep[0])


# A run spans at least this many smoothing windows: a CPU-scale run of about one epoch would
# otherwise be drawn as the running mean of nearly all of it (the papers' runs are 164 epochs).
MIN_WINDOWS_PER_RUN = 10


def smooth(train: pd.DataFrame, column: str) -> pd.Series:
    """Trailing running mean over one epoch of iterations, or a tenth of the run if that is
    shorter (rows of one run, in order)."""
    spacing = float(np.median(np.diff(train["iteration"]))) if len(train) > 1 else 1.0
    epoch = _iters_per_epoch(train) / max(spacing, 1.0)
    window = max(1, round(min(epoch, len(train) / MIN_WINDOWS_PER_RUN)))
    return train[column].rolling(window, min_periods=1).mean()


def curve_data(data: PlotData, runs: pd.DataFrame, series, label, panel=None) -> pd.DataFrame:
    """Tidy rows (CURVE_FIGURE_COLUMNS) for `runs` and each of `series`.

    `label(run_row) -> str` names a run's line; `panel(series) -> str` its panel.
    """
    div, _ = style.iteration_axis(data.max_iteration)
    step = data.step
    frames = []
    curves = data.curves[data.curves["run_id"].isin(set(runs["run_id"]))]
    by_run = dict(tuple(curves.groupby("run_id", sort=False, observed=True)))
    for _, run in runs.iterrows():
        c = by_run.get(run["run_id"])
        if c is None:
            continue
        for name in series:
            split, column, smoothed = SERIES[name]
            part = c[c["split"] == split].sort_values("iteration")
            if part.empty:
                continue
            values = smooth(part, column) if smoothed else part[column]
            df = pd.DataFrame({"iteration": part["iteration"].to_numpy(),
                               "value": values.to_numpy()})
            if smoothed:  # the last logged point of each `step`-wide bin of iterations
                df = df.groupby(df["iteration"] // step, sort=False).tail(1)
            df = df[np.isfinite(df["value"])]
            for key in RUN_KEYS:
                df[key] = run[key]
            df["label"] = label(run)
            df["series"] = name
            df["panel"] = panel(name) if panel else ""
            df["x"] = df["iteration"] / div
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=CURVE_FIGURE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CURVE_FIGURE_COLUMNS]


def net_label(run) -> str:
    return parse_model_name(run["model"]).short_label


# ---------------------------------------------------------------------------------------------
# drawing helpers

def _draw_curves(ax, df: pd.DataFrame, palette: dict, order: list[str],
                 train_style: dict = style.TRAIN_STYLE) -> None:
    for name, st in (("train_error", train_style), ("train_loss", train_style),
                     ("test_error", style.TEST_STYLE)):
        sub = df[df["series"] == name]
        if sub.empty:
            continue
        sns.lineplot(data=sub, x="x", y="value", hue="label", hue_order=order, palette=palette,
                     estimator="mean", errorbar="sd", legend=False, ax=ax, **st)


def _legend(ax, palette: dict, order: list[str], series: list[str]) -> None:
    handles = [Line2D([], [], color=palette[lab], linewidth=2, label=lab) for lab in order]
    for name in series:
        st = style.TEST_STYLE if name.startswith("test") else style.TRAIN_STYLE
        handles.append(Line2D([], [], color="0.3", label=SERIES_NAMES[name], **st))
    ax.legend(handles=handles, loc="upper right")


def _labels_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df.sort_values(["depth", "family"])["label"]))


def _depth_colors(df: pd.DataFrame) -> dict:
    depth_of = df.drop_duplicates("label").set_index("label")["depth"]
    colors = style.depth_palette(depth_of)
    return {lab: colors[int(d)] for lab, d in depth_of.items()}


def _finish(ax, data: PlotData, ylabel: str) -> None:
    _, xlabel = style.iteration_axis(data.max_iteration)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)


def _title(text: str, data: PlotData) -> str:
    return f"{text}\n{data.caption}"


# ---------------------------------------------------------------------------------------------
# the figures

def _sweep_runs(data: PlotData, which: str) -> pd.DataFrame:
    """The runs of one V1 Fig. 6 panel: left (plain), middle (ResNets), right (two deepest)."""
    if which == "left":
        return default_runs(data.runs, ["plain"])
    runs = default_runs(data.runs, ["v1"], ["basic"])
    if which == "right":
        runs = runs[runs["depth"].isin(sorted(runs["depth"].unique())[-2:])]
    return runs


# panel -> (single-panel figure name, title, what is missing when empty)
FIG6_PANELS = {
    "left": ("v1_fig6_left", "V1 Fig. 6 (left): plain networks", "no plain-net runs"),
    "middle": ("v1_fig6_middle", "V1 Fig. 6 (middle): ResNets", "no v1 basic (option A) runs"),
    "right": ("v1_fig6_right", "V1 Fig. 6 (right): the deepest ResNets",
              "no v1 basic (option A) runs"),
}


def _draw_sweep(ax, data: PlotData, df: pd.DataFrame) -> None:
    """Training error dashed, test error bold, one colour per depth."""
    order, palette = _labels_in_order(df), _depth_colors(df)
    _draw_curves(ax, df, palette, order)
    _legend(ax, palette, order, ["train_error", "test_error"])
    _finish(ax, data, "error (%)")


def _depth_sweep(data: PlotData, out_dir, which: str) -> pd.DataFrame:
    name, title, empty = FIG6_PANELS[which]
    df = curve_data(data, _sweep_runs(data, which), ["train_error", "test_error"], net_label)
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data), empty, CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure()
    _draw_sweep(axes[0, 0], data, df)
    axes[0, 0].set_title(_title(title, data))
    style.save(fig, out_dir, name, df)
    return df


def v1_fig6_left(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 left: plain nets at every depth in the data."""
    return _depth_sweep(data, out_dir, "left")


def v1_fig6_middle(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 middle: original ResNets (basic, option A) at every depth in the data."""
    return _depth_sweep(data, out_dir, "middle")


def v1_fig6_right(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 right: the two deepest original ResNets (110 vs 1202 in the paper)."""
    return _depth_sweep(data, out_dir, "right")


def v1_fig6(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 as the paper draws it: plain | ResNet | the two deepest ResNets, one figure.

    Its CSV is the three single-panel CSVs stacked, `panel` naming each (left/middle/right).
    """
    name, title = "v1_fig6", "V1 Fig. 6: plain | ResNet | the deepest ResNets"
    frames = {which: curve_data(data, _sweep_runs(data, which), ["train_error", "test_error"],
                                net_label).assign(panel=which) for which in FIG6_PANELS}
    if all(f.empty for f in frames.values()):
        return style.placeholder(out_dir, name, _title(title, data),
                                 "no plain or v1 basic (option A) runs", CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure(ncols=3, sharey=True)
    for ax, (which, df) in zip(axes[0], frames.items()):
        panel_title = FIG6_PANELS[which][1].split(": ", 1)[1]
        if df.empty:
            ax.set_axis_off()
            ax.text(0.5, 0.5, FIG6_PANELS[which][2], ha="center", va="center",
                    transform=ax.transAxes)
        else:
            _draw_sweep(ax, data, df)
        ax.set_title(panel_title)
    return _save_panels(fig, frames, data, title, out_dir, name)


def _save_panels(fig, frames: dict[str, pd.DataFrame], data: PlotData, title: str, out_dir,
                 name: str) -> pd.DataFrame:
    """Title and save a figure of several panels with the curves they drew, as one table."""
    fig.suptitle(_title(title, data), fontsize=9)
    df = pd.concat([f for f in frames.values() if not f.empty],
                   ignore_index=True)[CURVE_FIGURE_COLUMNS]
    style.save(fig, out_dir, name, df)
    return df


def v1_fig1(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 1: shallowest vs deepest plain net; training error left, test error right."""
    name, title = "v1_fig1", "V1 Fig. 1: plain networks, shallow vs deep"
    runs = default_runs(data.runs, ["plain"])
    if not runs.empty:
        runs = runs[runs["depth"].isin({runs["depth"].min(), runs["depth"].max()})]
    panels = {"train_error": "training error", "test_error": "test error"}
    df = curve_data(data, runs, list(panels), net_label, panel=panels.get)
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data), "no plain-net runs",
                                 CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure(ncols=2, sharey=True)
    order, palette = _labels_in_order(df), _depth_colors(df)
    for ax, (series, panel) in zip(axes[0], panels.items()):
        _draw_curves(ax, df[df["series"] == series], palette, order)
        _finish(ax, data, f"{panel} (%)")
        ax.set_title(panel)
    _legend(axes[0, 1], palette, order, [])
    fig.suptitle(_title(title, data), fontsize=9)
    style.save(fig, out_dir, name, df)
    return df


# V1 Fig. 4's own line styles: training error thin, validation error bold, both solid
FIG4_TRAIN_STYLE = {"linestyle": "-", "linewidth": 0.8}
FIG4_TITLES = {"left": "plain-18 / plain-34", "right": "ResNet-18 / ResNet-34"}


def v1_fig4(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 4 (ImageNet): training error (thin) and validation error (bold) against
    iterations, plain-18/34 left, ResNet-18/34 (option A) right, one colour per depth.

    The papers' validation set is the test split of our runs (eval_log `test`); the training
    curve is the mini-batch error on augmented crops, smoothed over one epoch like every
    figure's. Its CSV has both panels, `panel` naming each (left/right).
    """
    name, title = "v1_fig4", "V1 Fig. 4: ImageNet, plain (left) vs ResNet (right)"
    frames = {which: curve_data(data, sort_runs(data.runs[data.runs["model"].isin(nets)]),
                                ["train_error", "test_error"], net_label).assign(panel=which)
              for which, nets in V1_FIG4_PANELS.items()}
    if all(f.empty for f in frames.values()):
        return style.placeholder(out_dir, name, _title(title, data),
                                 "no runs of imagenet-plain/v1-basic-18/34",
                                 CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure(ncols=2, sharey=True)
    labels = {"train_error": "training error", "test_error": "validation error (test split)"}
    for ax, (which, df) in zip(axes[0], frames.items()):
        ax.set_title(FIG4_TITLES[which])
        if df.empty:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"no {FIG4_TITLES[which]} runs", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        order, palette = _labels_in_order(df), _depth_colors(df)
        _draw_curves(ax, df, palette, order, train_style=FIG4_TRAIN_STYLE)
        handles = [Line2D([], [], color=palette[lab], linewidth=2, label=lab) for lab in order]
        handles += [Line2D([], [], color="0.3", label=labels[s],
                           **(FIG4_TRAIN_STYLE if s == "train_error" else style.TEST_STYLE))
                    for s in labels]
        ax.legend(handles=handles, loc="best")
        _finish(ax, data, "error (%)")
    return _save_panels(fig, frames, data, title, out_dir, name)


def v2_fig1(data: PlotData, out_dir) -> pd.DataFrame:
    """V2 Fig. 1 (right) / Fig. 6 (right): original vs pre-activation at one depth.

    The deepest bottleneck depth present for both v1 and v2 (basic if no bottleneck pair).
    Training loss dashed on the left axis, test error solid on the right axis.
    """
    name = "v2_fig1"
    title = "V2 Fig. 1 / Fig. 6 (right): original vs pre-activation"
    runs = default_runs(data.runs, ["v1", "v2"])
    pairs = runs.groupby(["block", "depth"])["family"].nunique()
    pairs = pairs[pairs == 2].reset_index()
    if pairs.empty:
        return style.placeholder(out_dir, name, _title(title, data),
                                 "no v1 and v2 runs of the same block and depth",
                                 CURVE_FIGURE_COLUMNS)
    pairs["bottleneck"] = pairs["block"] == "bottleneck"
    block, depth = pairs.sort_values(["bottleneck", "depth"]).iloc[-1][["block", "depth"]]
    runs = runs[(runs["block"] == block) & (runs["depth"] == depth)]

    def label(run) -> str:
        unit = "original" if run["family"] == "v1" else "pre-activation"
        return f"ResNet-{int(run['depth'])} {block}, {unit}"

    axis = {"train_loss": "left axis: training loss", "test_error": "right axis: test error"}
    df = curve_data(data, runs, list(axis), label, panel=axis.get)
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data), "the runs have no curves",
                                 CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure()
    ax = axes[0, 0]
    ax2 = ax.twinx()
    order = list(dict.fromkeys(df.sort_values("family")["label"]))
    fam = df.drop_duplicates("label").set_index("label")["family"]
    palette = {lab: style.FAMILY_COLORS[fam[lab]] for lab in order}
    _draw_curves(ax, df[df["series"] == "train_loss"], palette, order)
    _draw_curves(ax2, df[df["series"] == "test_error"], palette, order)
    _finish(ax, data, "training loss")
    ax2.set_ylabel("test error (%)")
    ax2.set_ylim(bottom=0)
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    _legend(ax2, palette, order, ["train_loss", "test_error"])
    ax.set_title(_title(title, data))
    style.save(fig, out_dir, name, df)
    return df


def _family_label(runs: pd.DataFrame, family: str, block: str) -> str:
    """One line per family; its bottleneck depths named. Split by block only where one
    family has the same depth in both blocks (they must not be averaged together)."""
    fam = runs[runs["family"] == family]
    if (fam.groupby("depth")["block"].nunique() > 1).any():
        return f"{style.FAMILY_NAMES[family]}, {block}"
    deep = sorted(fam.loc[fam["block"] == "bottleneck", "depth"].unique())
    return style.FAMILY_NAMES[family] + (f" (bottleneck at {', '.join(map(str, deep))})"
                                         if deep else "")


def degradation(data: PlotData, out_dir) -> pd.DataFrame:
    """Final training and test error against depth, one line per family; mean ± std over seeds."""
    name, title = "degradation", "Degradation at a glance: final error vs depth"
    runs = default_runs(data.runs, ["plain", "v1", "v2"])
    panels = {"final_train_error_pct": ("train_error", "training error"),
              "final_test_error_pct": ("test_error", "test error")}
    frames = []
    for column, (series, panel) in panels.items():
        df = runs[RUN_KEYS].copy()
        df["value"] = runs[column]
        df["series"], df["panel"] = series, panel
        df["label"] = [_family_label(runs, f, b) for f, b in zip(runs["family"], runs["block"])]
        frames.append(df[np.isfinite(df["value"].astype(float))])
    df = pd.concat(frames, ignore_index=True)[DEPTH_FIGURE_COLUMNS]
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data),
                                 "no default-variant runs with a final error",
                                 DEPTH_FIGURE_COLUMNS)
    order = list(dict.fromkeys(sort_runs(df)["label"]))
    fam = df.drop_duplicates("label").set_index("label")["family"]
    palette = {lab: style.FAMILY_COLORS[fam[lab]] for lab in order}
    fig, axes = style.figure(ncols=2)
    depths = df["depth"].astype(int)
    for ax, (series, panel) in zip(axes[0], panels.values()):
        sub = df[df["series"] == series]
        for lab in order:
            part = sub[sub["label"] == lab]
            if part.empty:
                continue
            sns.lineplot(data=part, x="depth", y="value", color=palette[lab], label=lab,
                         estimator="mean", errorbar="sd", err_style="bars", marker="o",
                         ax=ax)
        if depths.max() / max(depths.min(), 1) > 10:
            ax.set_xscale("log")
        ax.set_xticks(sorted(depths.unique()))
        ax.set_xticklabels([str(d) for d in sorted(depths.unique())])
        ax.minorticks_off()
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel(f"final {panel} (%)")
        ax.set_ylim(bottom=0)
        ax.set_title(panel)
    if axes[0, 0].get_legend() is not None:
        axes[0, 0].get_legend().remove()
    fig.suptitle(_title(title, data) + " (mean ± std over seeds)", fontsize=9)
    style.save(fig, out_dir, name, df)
    return df


SHORTCUT_NAMES = {"scale": "constant scaling", "exgate": "exclusive gating",
                  "scgate": "shortcut-only gating", "optC": "1x1 conv shortcut",
                  "dropsc": "dropout shortcut"}
UNIT_NAMES = {"bnafter": "BN after addition", "relubefore": "ReLU before addition",
              "reluonly": "ReLU-only pre-activation"}


def _claim_models(data: PlotData, figure: str) -> set[str]:
    claims = data.claims if data.claims is not None else pd.DataFrame(columns=CLAIM_COLUMNS)
    rows = claims[claims["claim"] == FIGURE_CLAIMS[figure]]
    return {m for m in pd.concat([rows["lower_model"], rows["higher_model"]]) if m}


def _ablation_label(run) -> str:
    v = str(run["variant"])
    if run["model"] == base_name(run["family"], run["block"], run["depth"]):
        return "original" if run["family"] == "v1" else "full pre-activation"
    if v in UNIT_NAMES:
        return UNIT_NAMES[v]
    return f"{SHORTCUT_NAMES.get(v.split('-')[0], v)} ({v})"


def _ablation(data: PlotData, out_dir, figure: str, title: str, empty: str) -> pd.DataFrame:
    """Training loss | test error against iterations, one line per unit variant; one row of
    panels per (block, depth) that has variants. The original unit (V2's baseline) in black."""
    runs = sort_runs(data.runs[data.runs["model"].isin(_claim_models(data, figure))])
    frames, rows = [], []
    for (block, depth), g in runs.groupby(["block", "depth"], sort=True):
        row = f"ResNet-{int(depth)} {block}"
        df = curve_data(data, g, ["train_loss", "test_error"], _ablation_label)
        if not df.empty:
            frames.append(df.assign(panel=row))
            rows.append(row)
    if not frames:
        return style.placeholder(out_dir, figure, _title(title, data), empty,
                                 CURVE_FIGURE_COLUMNS)
    df = pd.concat(frames, ignore_index=True)[CURVE_FIGURE_COLUMNS]
    fig, axes = style.figure(ncols=2, nrows=len(rows))
    order = list(dict.fromkeys(df.sort_values(["family", "variant"])["label"]))
    order = [lab for lab in order if lab == "original"] + [lab for lab in order
                                                          if lab != "original"]
    colors = iter(sns.color_palette("tab10", n_colors=max(len(order), 1)))
    palette = {lab: ("0.0" if lab == "original" else next(colors)) for lab in order}
    for axrow, row in zip(axes, rows):
        part = df[df["panel"] == row]
        labels = [lab for lab in order if lab in set(part["label"])]
        for ax, (series, what) in zip(axrow, (("train_loss", "training loss"),
                                              ("test_error", "test error (%)"))):
            _draw_curves(ax, part[part["series"] == series], palette, labels)
            _finish(ax, data, what)
            ax.set_title(f"{row}: {what.split(' (')[0]}")
        _legend(axrow[1], palette, labels, [])
    fig.suptitle(_title(title, data), fontsize=9)
    style.save(fig, out_dir, figure, df)
    return df


def v2_fig3(data: PlotData, out_dir) -> pd.DataFrame:
    """V2 Fig. 3: the Table 1 shortcut variants against the identity shortcut."""
    return _ablation(data, out_dir, "v2_fig3", "V2 Fig. 3: shortcuts (Table 1)",
                     "no V2 Table 1 shortcut variant in the tables")


def v2_fig6(data: PlotData, out_dir) -> pd.DataFrame:
    """V2 Fig. 6: the Table 2 units (BN/ReLU placement) against full pre-activation."""
    return _ablation(data, out_dir, "v2_fig6", "V2 Fig. 6: BN and ReLU placement (Table 2)",
                     "no V2 Table 2 unit variant in the tables")


FIGURES = {
    "v1_fig1": v1_fig1,
    "v1_fig4": v1_fig4,
    "v1_fig6": v1_fig6,
    "v1_fig6_left": v1_fig6_left,
    "v1_fig6_middle": v1_fig6_middle,
    "v1_fig6_right": v1_fig6_right,
    "v2_fig1": v2_fig1,
    "v2_fig3": v2_fig3,
    "v2_fig6": v2_fig6,
    "degradation": degradation,
}


def render_all(tables_dir: str | os.PathLike, out_dir: str | os.PathLike, figures=None,
               dataset: str | None = None, recipe: str | None = None) -> dict[str, pd.DataFrame]:
    """Render `figures` (default: all) from the tables in `tables_dir` into `out_dir`."""
    names = list(FIGURES) if not figures else list(dict.fromkeys(figures))
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(FIGURES)}")
    data = load_plot_data(tables_dir, dataset, recipe)
    # Drawn into a folder of their own beside out_dir and moved in only once every figure is
    # drawn: a failure leaves out_dir as it was, never a partial set of figures.
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".plot.", dir=out_dir))
    try:
        drawn = {name: FIGURES[name](data, staging) for name in names}
        for f in sorted(staging.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return drawn
