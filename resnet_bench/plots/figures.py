"""The papers' figures, one function each, drawn from the aggregate tables only.

Every figure function takes a `PlotData` (the runs and curves of one dataset and recipe) and an
output directory, writes `<name>.png`, `<name>.pdf` and `<name>.csv` (the tidy data it plotted,
one row per run, series and point), and returns that DataFrame. With nothing to show it writes a
placeholder image and an empty CSV instead; a figure of several panels draws only the panels
that have data of their own.

What every curve figure states, so that it says what it shows:
- the schedule in the title (iterations, as a fraction of the paper's: `schema.PAPER_ITERATIONS`);
- training curves: the training mini-batch error (or loss), smoothed by a trailing running mean
  over one epoch of iterations (iterations per epoch from the log's epoch column; at most a
  tenth of the run, for runs of a few epochs), then kept every `step` iterations: the last logged
  point in each bin [k*step, (k+1)*step), with `step` = ceil(longest run / MAX_POINTS), so seeds
  share x values and each run keeps its last point. The window, in iterations, is in the legend
  and in the CSV's `window` column; a trailing mean lags a change of lr by about half a window,
  so the lr changes every drawn run shares are dotted verticals;
- test curves: the eval_log points, unsmoothed, drawn where they were evaluated (markers when
  there are at most SPARSE_POINTS evaluations, error bars when there is one);
- bands: mean ± std over a line's completed seeds; a diverged run is drawn alone, up to its last
  finite value, and ends in an X;
- the numbers quoted (the legend's final values) are the run records' final values (the runs
  table: mean ± std over completed seeds), never read off a smoothed curve;
- the y range: the paper's (`PAPER_YLIM`) where the paper's figure is the reference and it holds
  the lines' final values (the curves then enter it from above, as in the paper); else from 0
  to above every line's whole course for errors, and for losses to above the final values and
  every point of the line whose highest point is lowest (so that one net's excursion above
  chance at initialisation does not flatten the comparison); what lies off the axis, and why
  the range, is said in the legend;
- legends outside the axes; one colour per compared line, spaced in lightness so that the lines
  stay apart in greyscale, and one marker per line (`style`).

Only default-variant nets (a model name with no variant suffix) enter the V1 figures, V2 Fig. 1
and the degradation figure; the CIFAR figures draw CIFAR-stem nets, V1 Fig. 4 (ImageNet) the four
nets of `schema.V1_FIG4_PANELS`. The V2 ablation figures (Fig. 3: Table 1 shortcuts; Fig. 6:
Table 2 units) draw the models that the claims table pairs for those tables (`schema.Figure.claim`),
so which net is a Table 1/2 variant is decided in one place (resnet_bench.tables.claims), from the
tables. Which family is the plain baseline, the original unit or pre-activation is its declared
role (resnet_bench.models.families). The figures are declared in `resnet_bench.schema.FIGURES`,
each drawn by this module's function of the same name; the tables' columns come from
`resnet_bench.schema` too: this stage imports nothing of the stages that write the tables.
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

from resnet_bench.models.families import FAMILIES, Role, family_for, legend_of, style_of
from resnet_bench.models.spec import IMAGENET_PREFIX, TABLE1_SHORTCUTS, parse_model_name
from resnet_bench.plots import style
from resnet_bench.schema import (
    CLAIM_COLUMNS, FIGURES as DECLARED, METRICS, PAPER_ITERATIONS, V1_FIG4_PANELS,
    is_default_variant, read_table, sort_runs,
)

MAX_POINTS = 400
SPARSE_POINTS = 40        # up to this many evaluations per run, each is drawn as a marker
RUN_KEYS = ["run_id", "model", "family", "block", "depth", "variant", "seed", "status"]
# window: the trailing mean's length in iterations (1: as logged)
CURVE_FIGURE_COLUMNS = ["panel"] + RUN_KEYS + ["label", "series", "iteration", "x", "value",
                                               "window"]
DEPTH_FIGURE_COLUMNS = ["panel"] + RUN_KEYS + ["label", "series", "value"]
# series (a metric) -> (curves split, curves column, smoothed?): the training curves are
# mini-batch values, smoothed; the test curves are evaluations, drawn as they are
SERIES = {name: (m.split, m.column, m.split == "train") for name, m in METRICS.items()}
SERIES_NAMES = {name: m.words for name, m in METRICS.items()}
# series -> its word among a legend's final values (schema.METRICS[series].final)
FINAL_NAMES = {"train_error": "train", "train_loss": "train loss", "test_error": "test"}
# The papers' y ranges (%), where our figure is drawn after theirs
PAPER_YLIM = {"V1 Fig. 1": (0.0, 20.0), "V1 Fig. 6": (0.0, 20.0), "V1 Fig. 4": (20.0, 60.0)}
DIVERGED = "diverged"


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

    @property
    def schedule(self) -> str:
        """'7,000 iterations, 1/9.1 of the paper's 64k': the runs' planned length."""
        if self.runs.empty:
            return ""
        planned = pd.to_numeric(self.runs["planned_iterations"], errors="coerce")
        done = pd.to_numeric(self.runs["iterations"], errors="coerce")
        n = int(planned.fillna(done).max())
        stem = "imagenet" if self.runs["model"].str.startswith(IMAGENET_PREFIX).all() else "cifar"
        paper = PAPER_ITERATIONS[stem]
        if n <= 0:
            return ""
        if n >= paper:
            return f"{n:,} iterations (the paper: {paper // 1000}k)"
        r = paper / n
        frac = f"1/{r:.1f}" if r < 10 else f"1/{round(r)}"
        return f"{n:,} iterations, {frac} of the paper's {paper // 1000}k"


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
    except FileNotFoundError:   # published tables may lack it: no claims, no ablation nets
        claims = pd.DataFrame(columns=CLAIM_COLUMNS)
    data.claims = claims[(claims["dataset"] == data.dataset)
                         & (claims["recipe"] == data.recipe)].reset_index(drop=True)
    return data


# ---------------------------------------------------------------------------------------------
# data behind the figures

def _name(role: Role) -> str:
    return family_for(role).name


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


def _spacing(train: pd.DataFrame) -> float:
    return float(np.median(np.diff(train["iteration"]))) if len(train) > 1 else 1.0


def smoothing_rows(train: pd.DataFrame, planned: float | None = None) -> int:
    """Rows of the trailing mean: one epoch of iterations, or a tenth of the run if shorter
    (of its `planned` iterations where given, so that a run that diverged early is smoothed
    like its completed seeds)."""
    spacing = max(_spacing(train), 1.0)
    rows = planned / spacing if planned and np.isfinite(planned) else len(train)
    return max(1, round(min(_iters_per_epoch(train) / spacing, rows / MIN_WINDOWS_PER_RUN)))


def smooth(train: pd.DataFrame, column: str, planned: float | None = None) -> pd.Series:
    """Trailing running mean over one epoch of iterations, or a tenth of the run if that is
    shorter (rows of one run, in order)."""
    return train[column].rolling(smoothing_rows(train, planned), min_periods=1).mean()


def curve_data(data: PlotData, runs: pd.DataFrame, series, label, panel=None) -> pd.DataFrame:
    """Tidy rows (CURVE_FIGURE_COLUMNS) for `runs` and each of `series`.

    `label(run_row) -> str` names a run's line; `panel(series) -> str` its panel. Non-finite
    values (a diverged run's last losses) are dropped before smoothing, so a run is drawn up to
    its last finite value.
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
            part = part[np.isfinite(part[column].astype(float))]
            if part.empty:
                continue
            planned = pd.to_numeric(run.get("planned_iterations"), errors="coerce")
            values = smooth(part, column, planned) if smoothed else part[column]
            window = round(smoothing_rows(part, planned) * _spacing(part)) if smoothed else 1
            df = pd.DataFrame({"iteration": part["iteration"].to_numpy(),
                               "value": values.to_numpy()})
            if smoothed:  # the last logged point of each `step`-wide bin of iterations
                df = df.groupby(df["iteration"] // step, sort=False).tail(1)
            for key in RUN_KEYS:
                df[key] = run[key]
            df["label"] = label(run)
            df["series"] = name
            df["panel"] = panel(name) if panel else ""
            df["x"] = df["iteration"] / div
            df["window"] = window
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=CURVE_FIGURE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CURVE_FIGURE_COLUMNS]


def net_label(run) -> str:
    return parse_model_name(run["model"]).short_label


def lr_changes(data: PlotData, run_ids) -> list[int]:
    """The iterations after which the lr changed in every one of `run_ids` that ran past them
    (a schedule's decays and a fixed warm-up's end; a warm-up that ends on a training-error
    test differs per run and is left out): the last iteration logged at the old lr."""
    train = data.curves[(data.curves["split"] == "train")
                        & data.curves["run_id"].isin(set(run_ids))]
    runs = []
    for _, g in train.groupby("run_id", sort=False):
        g = g.sort_values("iteration")
        lr = g["lr"].to_numpy(dtype=float)
        its = g["iteration"].to_numpy()
        runs.append((set(its[:-1][np.diff(lr) != 0].tolist()), int(its[-1])))
    candidates = set().union(*(changes for changes, _ in runs)) if runs else set()
    return sorted(int(i) for i in candidates
                  if all(i in changes for changes, last in runs if last > i))


# ---------------------------------------------------------------------------------------------
# drawing helpers

@dataclass
class Look:
    """How each compared line is drawn: its colour, its marker, the legend's order."""
    palette: dict
    markers: dict
    order: list


def _look(order: list[str], colors) -> Look:
    colors = colors if isinstance(colors, dict) else dict(zip(order, colors))
    markers = dict(zip(order, (style.MARKERS * len(order))[:len(order)]))
    return Look(colors, markers, order)


def _labels_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(sort_runs(df)["label"]))


def _depth_look(df: pd.DataFrame) -> Look:
    """One colour per depth (shallow light, deep dark), one marker per line."""
    order = _labels_in_order(df)
    depth_of = df.drop_duplicates("label").set_index("label")["depth"]
    colors = style.depth_palette(depth_of)
    return _look(order, {lab: colors[int(depth_of[lab])] for lab in order})


def _family_look(df: pd.DataFrame) -> Look:
    order = _labels_in_order(df)
    fam = df.drop_duplicates("label").set_index("label")["family"]
    look = _look(order, {lab: style_of(fam[lab]).color for lab in order})
    if fam.nunique() == len(order):
        look.markers = {lab: style_of(fam[lab]).marker for lab in order}
    return look


def _line_style(series: str, train_style: dict) -> dict:
    return dict(train_style if series.startswith("train") else style.TEST_STYLE)


def _sparse(df: pd.DataFrame, name: str) -> bool:
    """Is series `name` of `df` evaluated sparsely enough to mark every point?"""
    sub = df[df["series"] == name]
    return not sub.empty and not SERIES[name][2] and \
        sub.groupby("run_id").size().max() <= SPARSE_POINTS


def _draw_curves(ax, df: pd.DataFrame, look: Look, train_style: dict = style.TRAIN_STYLE) -> None:
    """Each series of `df`: per line, mean ± std band over its completed runs (error bars where
    a run has one point; markers where evaluations are sparse); a diverged run alone, ending in
    an X at its last finite value."""
    for name in SERIES:
        sub = df[df["series"] == name]
        if sub.empty:
            continue
        sparse = _sparse(df, name)
        for lab in look.order:
            part = sub[sub["label"] == lab]
            if part.empty:
                continue
            kw = _line_style(name, train_style)
            color = look.palette[lab]
            if sparse:
                kw.update(marker=look.markers[lab], markersize=4.5)
            done = part[part["status"] != DIVERGED]
            if not done.empty:
                single = done.groupby("run_id").size().max() == 1
                sns.lineplot(data=done, x="x", y="value", color=color, estimator="mean",
                             errorbar="sd", err_style="bars" if single else "band",
                             legend=False, ax=ax, **kw)
            for _, run in part[part["status"] == DIVERGED].groupby("run_id", sort=False):
                run = run.sort_values("x")
                ax.plot(run["x"], run["value"], color=color, alpha=0.8,
                        **{**kw, "linewidth": kw["linewidth"] * 0.7})
                ax.plot(run["x"].iloc[-1:], run["value"].iloc[-1:], linestyle="none",
                        marker=style.DIVERGED_MARKER, markersize=7, color=color,
                        markeredgecolor="black", zorder=5)


def _fmt(values: pd.Series, digits: int) -> str:
    v = values.dropna().astype(float)
    if v.empty:
        return "–"
    return f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")


def _finals(data: PlotData, df: pd.DataFrame, label: str, series: list[str]) -> str:
    """'final train 11.17 ± 0.20, test 14.98 ± 0.43 (n = 3)': the runs table's final values of a
    line's completed runs (the record's numbers, not the smoothed curve's)."""
    runs = data.runs[data.runs["run_id"].isin(set(df.loc[df["label"] == label, "run_id"]))]
    done = runs[runs["status"] != DIVERGED]
    parts = [f"{FINAL_NAMES[s]} {_fmt(done[METRICS[s].final], 3 if 'loss' in s else 2)}"
             for s in series]
    n_div = int((runs["status"] == DIVERGED).sum())
    n = f"n = {len(done)}" + (f"; {n_div} diverged" if n_div else "")
    return f"final {', '.join(parts)} ({n})"


def _net_handles(data: PlotData, df: pd.DataFrame, look: Look, series: list[str],
                 finals: bool = True) -> list:
    marked = any(_sparse(df, name) for name in series)
    return [Line2D([], [], color=look.palette[lab], linewidth=2,
                   marker=look.markers[lab] if marked else None, markersize=4.5,
                   label=f"{lab}: {_finals(data, df, lab, series)}" if finals else lab)
            for lab in look.order if lab in set(df["label"])]


def _note(text: str) -> Line2D:
    return Line2D([], [], linestyle="none", label=text)


def _series_handles(df: pd.DataFrame, series: list[str],
                    train_style: dict = style.TRAIN_STYLE, names: dict | None = None) -> list:
    """One row per drawn series: its line style and what was drawn (the smoothing window, where
    the test error was evaluated)."""
    handles = []
    for name in series:
        sub = df[df["series"] == name]
        if sub.empty:
            continue
        what = (names or SERIES_NAMES)[name]
        if SERIES[name][2]:
            windows = sorted(set(int(w) for w in sub["window"]))
            w = f"{windows[0]:,}" if len(windows) == 1 else f"{windows[0]:,}-{windows[-1]:,}"
            what += (f", trailing mean over {w} iterations (curve only: numbers quoted are "
                     "the records' final values)")
        else:
            what += f", {_evaluated_at(sub)}"
        handles.append(Line2D([], [], color="0.3", label=what,
                              **_line_style(name, train_style)))
    if (df["status"] == DIVERGED).any():
        handles.append(Line2D([], [], linestyle="none", marker=style.DIVERGED_MARKER,
                              color="0.3", markeredgecolor="black",
                              label="diverged run: drawn alone up to its last finite value"))
    return handles


def _evaluated_at(sub: pd.DataFrame) -> str:
    """Where the completed runs were evaluated (a diverged run stops early)."""
    done = sub[sub["status"] != DIVERGED]
    its = sorted(set(int(i) for i in (done if not done.empty else sub)["iteration"]))
    if len(its) <= 5:
        return f"evaluated at iteration{'s' if len(its) > 1 else ''} " + ", ".join(
            f"{i:,}" for i in its)
    gaps = set(np.diff(its).tolist())
    if len(gaps) == 1:
        return f"evaluated every {gaps.pop():,} iterations"
    return f"evaluated at {len(its)} points"


def _band_note(df: pd.DataFrame) -> str:
    n = df[df["status"] != DIVERGED].groupby("label")["seed"].nunique()
    if n.empty or n.max() < 2:
        return "one run per line"
    return "band (bars at a single point): mean ± std over completed seeds"


def _nice_ceil(v: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k at or above v."""
    if v <= 0 or not np.isfinite(v):
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    return next(m * e for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * e >= v - 1e-12)


def _end_band(df: pd.DataFrame) -> tuple[float, float]:
    """Lowest mean - std and highest mean + std of the lines' last drawn values (completed runs;
    all runs where every run of a line diverged)."""
    done = df[df["status"] != DIVERGED]
    done = done if not done.empty else df
    last = done.sort_values("iteration").groupby(["label", "series", "run_id"]).tail(1)
    g = last.groupby(["label", "series"])["value"].agg(["mean", "std"]).fillna(0.0)
    return float((g["mean"] - g["std"]).min()), float((g["mean"] + g["std"]).max())


def _set_ylim(ax, df: pd.DataFrame, *, unit: str = "%", paper: str | None = None,
              loss: bool = False) -> str:
    """Choose the y range (see the module doc) and return the note that explains it."""
    lo, hi = _end_band(df)
    means = df[df["status"] != DIVERGED].groupby(["label", "series", "x"])["value"]
    ref = PAPER_YLIM.get(paper) if paper else None
    unit_ = f" {unit}" if unit else ""
    if ref and ref[0] <= lo and hi <= ref[0] + 0.9 * (ref[1] - ref[0]):
        bottom, top = ref
        note = f"y {bottom:g}-{top:g}{unit_}, as in {paper}"
    else:
        if loss:   # all of the lowest line: an excursion of another is listed, not drawn
            highest = means.mean().groupby(level="label").max()
            hi = max(hi, float(highest.min())) if len(highest) else hi
        elif len(means):   # no paper range to zoom into: every line's whole course
            hi = max(hi, float((means.mean() + means.std().fillna(0)).max()))
        bottom, top = 0.0, _nice_ceil(hi * 1.15)
        if unit == "%":
            top = min(top, 100.0)
        note = f"y {bottom:g}-{top:g}{unit_}" + (
            f" (the final values do not fit {paper}'s {ref[0]:g}-{ref[1]:g}{unit_})"
            if ref else "")
    ax.set_ylim(bottom, top)
    above = df[df["value"] > top]
    if not above.empty:
        off = [f"{lab} up to {g['value'].max():.3g} until iteration {int(g['iteration'].max()):,}"
               for lab, g in above.groupby("label", sort=False)]
        note += f"; above it: {'; '.join(off)}"
    return note


def _lr_lines(ax, data: PlotData, df: pd.DataFrame) -> tuple[int, ...]:
    """Dotted verticals at the lr changes the runs of `df` share; returns them."""
    changes = lr_changes(data, df["run_id"].unique())
    div, _ = style.iteration_axis(data.max_iteration)
    for it in changes:
        ax.axvline(it / div, color="0.55", linestyle=":", linewidth=0.8, zorder=0)
    return tuple(changes)


def _lr_notes(changes: dict[str, tuple[int, ...]]) -> list[str]:
    """One line when every panel shares its lr changes, else one per panel."""
    def text(its):
        return "dotted verticals: lr changes after iteration " + ", ".join(f"{i:,}" for i in its)
    drawn = {k: v for k, v in changes.items() if v}
    if not drawn:
        return []
    if len(set(drawn.values())) == 1 and len(drawn) == len(changes):
        return [text(next(iter(drawn.values())))]
    return [f"{k}: {text(v)}" if k else text(v) for k, v in drawn.items()]


def _finish(ax, data: PlotData, ylabel: str) -> None:
    _, xlabel = style.iteration_axis(data.max_iteration)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # a margin on the right: the last evaluation's marker and error bar stay inside
    ax.set_xlim(0, 1.03 * max(data.max_iteration, 1) / style.iteration_axis(data.max_iteration)[0])
    ax.tick_params(labelleft=True, labelbottom=True)


def _title(text: str, data: PlotData) -> str:
    schedule = f"; {data.schedule}" if data.schedule else ""
    return f"{text}\n{data.caption}{schedule}"


LEGEND_ROW_INCHES = 0.155


def _legend(owner, handles: list, ncols: int = 1) -> int:
    """A legend below the panels (`owner`: the figure or one panel's subfigure); returns its
    rows, for `_fit`."""
    owner.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=6.5)
    return math.ceil(len(handles) / ncols)


def _fit(fig, panel_rows: int, legend_rows: int, title_lines: int = 2) -> None:
    """Make room for the legends below the panels: the panels keep their height."""
    width = fig.get_size_inches()[0]
    fig.set_size_inches(width, style.PANEL_SIZE[1] * panel_rows
                        + LEGEND_ROW_INCHES * (legend_rows + title_lines + 1))


def _prefixed(notes: list[str], prefix: str) -> list[str]:
    return [f"{prefix}: {n}" if prefix else n for n in notes]


# ---------------------------------------------------------------------------------------------
# the figures

# V1 Fig. 6: middle, ResNets of 20-110 layers; right, 110 against 1202, the deepest
FIG6_MIDDLE_MAX_DEPTH = 110


def _sweep_runs(data: PlotData, which: str) -> pd.DataFrame:
    """The runs of one V1 Fig. 6 panel: left (plain), middle (ResNets up to 110 layers), right
    (ResNets deeper than 110, against the deepest of the middle): empty when the grid has no
    ResNet deeper than 110, so that it never repeats the middle panel."""
    if which == "left":
        return default_runs(data.runs, [_name(Role.PLAIN)])
    runs = default_runs(data.runs, [_name(Role.ORIGINAL)], ["basic"])
    if which == "middle":
        return runs[runs["depth"] <= FIG6_MIDDLE_MAX_DEPTH]
    deep = runs[runs["depth"] > FIG6_MIDDLE_MAX_DEPTH]
    if deep.empty:
        return deep
    middle = runs.loc[runs["depth"] <= FIG6_MIDDLE_MAX_DEPTH, "depth"]
    keep = set(deep["depth"]) | ({middle.max()} if len(middle) else set())
    return runs[runs["depth"].isin(keep)]


# panel -> (single-panel figure name, title, what is missing when empty)
_RESNETS = f"{_name(Role.ORIGINAL)} basic (option A)"
FIG6_PANELS = {
    "left": ("v1_fig6_left", "V1 Fig. 6 (left): plain networks", "no plain-net runs"),
    "middle": ("v1_fig6_middle", "V1 Fig. 6 (middle): ResNets up to 110 layers",
               f"no {_RESNETS} runs of at most 110 layers"),
    "right": ("v1_fig6_right", "V1 Fig. 6 (right): the deepest ResNets (the paper: 110 vs 1202)",
              f"no {_RESNETS} ResNet deeper than 110 layers"),
}
SWEEP_SERIES = ["train_error", "test_error"]


@dataclass
class Panel:
    """What one drawn panel leaves for the legends: its lines and notes."""
    nets: list
    ylim: str
    lr: tuple


def _draw_sweep(ax, data: PlotData, df: pd.DataFrame, look: Look, paper: str = "V1 Fig. 6",
                train_style: dict = style.TRAIN_STYLE) -> Panel:
    """Training error dashed, test error bold, one colour and marker per depth."""
    _draw_curves(ax, df, look, train_style)
    lr = _lr_lines(ax, data, df)
    _finish(ax, data, "error (%)")
    return Panel(_net_handles(data, df, look, SWEEP_SERIES), _set_ylim(ax, df, paper=paper), lr)


def _common_handles(df: pd.DataFrame, series: list[str], notes: list[str],
                    train_style: dict = style.TRAIN_STYLE, names: dict | None = None) -> list:
    return (_series_handles(df, series, train_style, names) + [_note(_band_note(df))]
            + [_note(n) for n in notes])


def _depth_sweep(data: PlotData, out_dir, which: str) -> pd.DataFrame:
    name, title, empty = FIG6_PANELS[which]
    df = curve_data(data, _sweep_runs(data, which), SWEEP_SERIES, net_label)
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data), empty, CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure()
    panel = _draw_sweep(axes[0, 0], data, df, _depth_look(df))
    axes[0, 0].set_title(_title(title, data), fontsize=8)
    rows = _legend(fig, panel.nets + _common_handles(df, SWEEP_SERIES,
                                                     [panel.ylim] + _lr_notes({"": panel.lr})))
    _fit(fig, 1, rows)
    style.save(fig, out_dir, name, df)
    return df


def v1_fig6_left(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 left: plain nets at every depth in the data."""
    return _depth_sweep(data, out_dir, "left")


def v1_fig6_middle(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 middle: original ResNets (basic, option A) of up to 110 layers."""
    return _depth_sweep(data, out_dir, "middle")


def v1_fig6_right(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 right: original ResNets deeper than 110 layers against the deepest of at most
    110 (the paper: 110 vs 1202); a placeholder when the grid has none deeper."""
    return _depth_sweep(data, out_dir, "right")


def _multi_panel(data: PlotData, out_dir, name: str, title: str,
                 frames: dict[str, pd.DataFrame], titles: dict[str, str], paper: str,
                 train_style: dict = style.TRAIN_STYLE, names: dict | None = None
                 ) -> pd.DataFrame:
    """One panel per non-empty frame, each with its own nets' legend below it; the series and
    notes below them all."""
    frames = {k: f for k, f in frames.items() if not f.empty}
    both = pd.concat(frames.values(), ignore_index=True)
    look = _depth_look(both)       # a net has the same colour in every panel
    fig = style.panels_figure(len(frames))
    subfigs = fig.subfigures(1, len(frames), squeeze=False)[0]
    ylims, lrs, net_rows = [], {}, 0
    for sub, (which, df) in zip(subfigs, frames.items()):
        ax = sub.subplots()
        panel = _draw_sweep(ax, data, df, look, paper, train_style)
        ax.set_title(titles[which])
        net_rows = max(net_rows, _legend(sub, panel.nets))
        ylims += _prefixed([panel.ylim], titles[which] if len(frames) > 1 else "")
        lrs[titles[which]] = panel.lr
    rows = _legend(fig, _common_handles(both, SWEEP_SERIES, ylims + _lr_notes(lrs),
                                        train_style, names))
    fig.suptitle(_title(title, data), fontsize=9)
    _fit(fig, 1, rows + net_rows + 1)
    df = both[CURVE_FIGURE_COLUMNS]
    style.save(fig, out_dir, name, df)
    return df


def v1_fig6(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 6 as the paper draws it: plain | ResNet | the deepest ResNets, one figure, with
    only the panels that have runs of their own.

    Its CSV is the single-panel CSVs stacked, `panel` naming each (left/middle/right).
    """
    frames = {which: curve_data(data, _sweep_runs(data, which), SWEEP_SERIES,
                                net_label).assign(panel=which) for which in FIG6_PANELS}
    drawn = [w for w, f in frames.items() if not f.empty]
    short = {w: FIG6_PANELS[w][1].split(": ", 1)[1] for w in FIG6_PANELS}
    name = "v1_fig6"
    title = "V1 Fig. 6: " + " | ".join(short[w] for w in drawn) if drawn else "V1 Fig. 6"
    if not drawn:
        return style.placeholder(out_dir, name, _title(title, data),
                                 f"no {_name(Role.PLAIN)} or {_RESNETS} runs",
                                 CURVE_FIGURE_COLUMNS)
    return _multi_panel(data, out_dir, name, title, frames, short, "V1 Fig. 6")


def v1_fig1(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 1: shallowest vs deepest plain net; training error left, test error right."""
    name, title = "v1_fig1", "V1 Fig. 1: plain networks, shallow vs deep"
    runs = default_runs(data.runs, [_name(Role.PLAIN)])
    if not runs.empty:
        runs = runs[runs["depth"].isin({runs["depth"].min(), runs["depth"].max()})]
    panels = {"train_error": "training error", "test_error": "test error"}
    df = curve_data(data, runs, list(panels), net_label, panel=panels.get)
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data), "no plain-net runs",
                                 CURVE_FIGURE_COLUMNS)
    drawn = [s for s in panels if (df["series"] == s).any()]
    fig, axes = style.figure(ncols=len(drawn))
    look = _depth_look(df)
    notes, lrs = [], {}
    for ax, series in zip(axes[0], drawn):
        part = df[df["series"] == series]
        _draw_curves(ax, part, look)
        lrs[panels[series]] = _lr_lines(ax, data, part)
        _finish(ax, data, f"{panels[series]} (%)")
        notes += _prefixed([_set_ylim(ax, part, paper="V1 Fig. 1")], panels[series])
        ax.set_title(panels[series])
    rows = _legend(fig, _net_handles(data, df, look, drawn)
                   + _common_handles(df, drawn, notes + _lr_notes(lrs)))
    fig.suptitle(_title(title, data), fontsize=9)
    _fit(fig, 1, rows)
    style.save(fig, out_dir, name, df)
    return df


# V1 Fig. 4's own line styles: training error thin, validation error bold, both solid
FIG4_TRAIN_STYLE = {"linestyle": "-", "linewidth": 0.8}
FIG4_TITLES = {"left": "plain-18 / plain-34", "right": "ResNet-18 / ResNet-34"}
FIG4_SERIES_NAMES = {"train_error": "training error",
                     "test_error": "validation error (test split)"}


def v1_fig4(data: PlotData, out_dir) -> pd.DataFrame:
    """V1 Fig. 4 (ImageNet): training error (thin) and validation error (bold) against
    iterations, plain-18/34 left, ResNet-18/34 (option A) right, one colour per depth.

    The papers' validation set is the test split of our runs (eval_log `test`); the training
    curve is the mini-batch error on augmented crops, smoothed like every figure's. Its CSV has
    the panels drawn, `panel` naming each (left/right).
    """
    name, title = "v1_fig4", "V1 Fig. 4: ImageNet, plain (left) vs ResNet (right)"
    frames = {which: curve_data(data, sort_runs(data.runs[data.runs["model"].isin(nets)]),
                                SWEEP_SERIES, net_label).assign(panel=which)
              for which, nets in V1_FIG4_PANELS.items()}
    if all(f.empty for f in frames.values()):
        return style.placeholder(out_dir, name, _title(title, data),
                                 f"no runs of {', '.join(DECLARED[name].nets)}",
                                 CURVE_FIGURE_COLUMNS)
    return _multi_panel(data, out_dir, name, title, frames, FIG4_TITLES, "V1 Fig. 4",
                        FIG4_TRAIN_STYLE, FIG4_SERIES_NAMES)


def _v2_fig1_title(block: str, depth: int) -> str:
    """Which of V2's figures this is: Fig. 1 is ResNet-1001, Fig. 6 (right) ResNet-164; any
    other depth is Fig. 1's comparison, not its figure."""
    what = f"ResNet-{depth} ({block}), original vs pre-activation unit"
    if block == "bottleneck" and depth == 1001:
        return f"V2 Fig. 1 (right): {what}"
    if block == "bottleneck" and depth == 164:
        return f"V2 Fig. 6 (right): {what}"
    return f"{what}\n(V2 Fig. 1's comparison; the paper draws it for ResNet-1001 bottleneck)"


V2_FIG1_SERIES = ["train_loss", "test_error"]
V2_FIG1_NAMES = {"train_loss": "training loss (left axis)", "test_error": "test error (right axis)"}


def v2_fig1(data: PlotData, out_dir) -> pd.DataFrame:
    """V2 Fig. 1 (right): original vs pre-activation at one depth, as V2 draws it: training
    loss dashed on the left axis, test error solid with markers on the right axis.

    The deepest bottleneck depth present for both the original and the pre-activation family
    (basic if no bottleneck pair).
    """
    name = "v2_fig1"
    original, preact = _name(Role.ORIGINAL), _name(Role.PREACT)
    runs = default_runs(data.runs, [original, preact])
    pairs = runs.groupby(["block", "depth"])["family"].nunique()
    pairs = pairs[pairs == 2].reset_index()
    if pairs.empty:
        return style.placeholder(out_dir, name,
                                 _title("V2 Fig. 1: original vs pre-activation", data),
                                 f"no {original} and {preact} runs of the same block and "
                                 "depth",
                                 CURVE_FIGURE_COLUMNS)
    pairs["bottleneck"] = pairs["block"] == "bottleneck"
    block, depth = pairs.sort_values(["bottleneck", "depth"]).iloc[-1][["block", "depth"]]
    title = _v2_fig1_title(block, int(depth))
    runs = runs[(runs["block"] == block) & (runs["depth"] == depth)]

    def label(run) -> str:
        return "original unit" if run["family"] == original else "pre-activation unit"

    axis = {"train_loss": "left axis: training loss", "test_error": "right axis: test error"}
    df = curve_data(data, runs, V2_FIG1_SERIES, label, panel=axis.get)
    if df.empty:
        return style.placeholder(out_dir, name, _title(title, data), "the runs have no curves",
                                 CURVE_FIGURE_COLUMNS)
    fig, axes = style.figure()
    ax = axes[0, 0]
    ax2 = ax.twinx()
    look = _family_look(df)
    loss, test = df[df["series"] == "train_loss"], df[df["series"] == "test_error"]
    _draw_curves(ax, loss, look)
    _draw_curves(ax2, test, look)
    lr = _lr_lines(ax, data, df)
    _finish(ax, data, "training loss (cross-entropy)")
    ax2.set_ylabel("test error (%)")
    notes = [f"left axis, training loss: {_set_ylim(ax, loss, unit='', loss=True)}"]
    if not test.empty:
        notes.append(f"right axis, test error: {_set_ylim(ax2, test)}")
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    ax.set_title(_title(title, data), fontsize=8)
    rows = _legend(fig, _net_handles(data, df, look, V2_FIG1_SERIES)
                   + _common_handles(df, V2_FIG1_SERIES, notes + _lr_notes({"": lr}),
                                     names=V2_FIG1_NAMES))
    _fit(fig, 1, rows, title_lines=title.count("\n") + 2)
    style.save(fig, out_dir, name, df)
    return df


def _family_label(runs: pd.DataFrame, family: str, block: str) -> str:
    """One line per family; its bottleneck depths named. Split by block only where one
    family has the same depth in both blocks (they must not be averaged together)."""
    fam = runs[runs["family"] == family]
    if (fam.groupby("depth")["block"].nunique() > 1).any():
        return f"{legend_of(family)}, {block}"
    deep = sorted(fam.loc[fam["block"] == "bottleneck", "depth"].unique())
    return legend_of(family) + (f" (bottleneck at {', '.join(map(str, deep))})"
                                         if deep else "")


def degradation(data: PlotData, out_dir) -> pd.DataFrame:
    """Final training and test error against depth, one line per family; mean ± std over seeds,
    each mean written beside its point."""
    name, title = "degradation", "Degradation at a glance: final error vs depth"
    runs = default_runs(data.runs, list(FAMILIES))
    panels = {METRICS[s].final: (s, METRICS[s].words) for s in ("train_error", "test_error")}
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
    look = _family_look(df)
    fig, axes = style.figure(ncols=2)
    depths = df["depth"].astype(int)
    for ax, (series, panel) in zip(axes[0], panels.values()):
        sub = df[df["series"] == series]
        for i, lab in enumerate(look.order):
            part = sub[sub["label"] == lab]
            if part.empty:
                continue
            sns.lineplot(data=part, x="depth", y="value", color=look.palette[lab],
                         estimator="mean", errorbar="sd", err_style="bars",
                         marker=look.markers[lab], legend=False, ax=ax)
            for depth, mean in part.groupby("depth")["value"].mean().items():
                # above and below in turn: close means of two lines stay readable
                ax.annotate(f"{mean:.2f}", (depth, mean), textcoords="offset points",
                            xytext=(5, 3 if i % 2 == 0 else -10), fontsize=6.5,
                            color=look.palette[lab])
        if depths.max() / max(depths.min(), 1) > 10:
            ax.set_xscale("log")
        ax.set_xticks(sorted(depths.unique()))
        ax.set_xticklabels([str(d) for d in sorted(depths.unique())])
        ax.minorticks_off()
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel(f"final {panel} (%)")
        g = sub.groupby(["label", "depth"])["value"]
        ax.set_ylim(0, min(100.0, _nice_ceil(float((g.mean() + g.std().fillna(0)).max()) * 1.15)))
        ax.set_title(panel)
    n = df.groupby(["label", "depth"])["seed"].nunique()
    seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
    handles = [Line2D([], [], color=look.palette[lab], marker=look.markers[lab], label=lab)
               for lab in look.order]
    handles += [_note(f"points: mean of the run records' final values over {seeds} completed "
                      "seed(s), written beside each; bars: ± std")]
    rows = _legend(fig, handles)
    fig.suptitle(_title(title, data), fontsize=9)
    _fit(fig, 1, rows)
    style.save(fig, out_dir, name, df)
    return df


def _claim_models(data: PlotData, figure: str) -> set[str]:
    claims = data.claims if data.claims is not None else pd.DataFrame(columns=CLAIM_COLUMNS)
    rows = claims[claims["claim"] == DECLARED[figure].claim]
    return {m for m in pd.concat([rows["lower_model"], rows["higher_model"]]) if m}


def _ablation_label(run) -> str:
    """A unit by its family's declaration (`families.Unit.label`), a shortcut by V2 Table 1's
    words and its variant."""
    spec = parse_model_name(run["model"])
    if spec.is_default or spec.variant in spec.family_facts.unit_variants:
        return spec.unit_decl.label
    return f"{TABLE1_SHORTCUTS.get(spec.table1_shortcut, spec.variant)} ({spec.variant})"


ABLATION_SERIES = ["train_loss", "test_error"]


def _ablation(data: PlotData, out_dir, figure: str, title: str, empty: str) -> pd.DataFrame:
    """Training loss | test error against iterations, one line per unit variant; one row of
    panels per (block, depth) that has variants, its legend below it. The original unit (V2's
    baseline) in black."""
    runs = sort_runs(data.runs[data.runs["model"].isin(_claim_models(data, figure))])
    frames, rows = [], []
    for (block, depth), g in runs.groupby(["block", "depth"], sort=True):
        row = f"ResNet-{int(depth)} {block}"
        df = curve_data(data, g, ABLATION_SERIES, _ablation_label)
        if not df.empty:
            frames.append(df.assign(panel=row))
            rows.append(row)
    if not frames:
        return style.placeholder(out_dir, figure, _title(title, data), empty,
                                 CURVE_FIGURE_COLUMNS)
    df = pd.concat(frames, ignore_index=True)[CURVE_FIGURE_COLUMNS]
    original = family_for(Role.ORIGINAL).unit.label
    order = list(dict.fromkeys(df.sort_values(["family", "variant"])["label"]))
    order = [lab for lab in order if lab == original] + [lab for lab in order
                                                        if lab != original]
    others = [lab for lab in order if lab != original]
    look = _look(order, {original: (0.0, 0.0, 0.0),
                         **dict(zip(others, style.lightness_ramp(len(others), "mako",
                                                                 light=74, dark=30)))})
    fig = style.panels_figure(2, len(rows))
    notes, lrs, net_rows = [], {}, 0
    for sub, row in zip(fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows):
        part = df[df["panel"] == row]
        axes = sub.subplots(1, 2)
        for ax, series in zip(axes, ABLATION_SERIES):
            s = part[part["series"] == series]
            _draw_curves(ax, s, look)
            lrs[row] = _lr_lines(ax, data, part)
            is_loss = series == "train_loss"
            _finish(ax, data, "training loss" if is_loss else "test error (%)")
            if not s.empty:
                notes += _prefixed([_set_ylim(ax, s, unit="" if is_loss else "%",
                                              loss=is_loss)],
                                   f"{row}, {SERIES_NAMES[series]}")
            ax.set_title(f"{row}: {SERIES_NAMES[series]}")
        net_rows += _legend(sub, _net_handles(data, part, look, ABLATION_SERIES)) + 1
    common = _legend(fig, _common_handles(df, ABLATION_SERIES, notes + _lr_notes(lrs)))
    fig.suptitle(_title(title, data), fontsize=9)
    _fit(fig, len(rows), common + net_rows)
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


# figure name -> the function that draws it: each declared figure's function of the same name
FIGURES = {name: globals()[name] for name in DECLARED}


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
