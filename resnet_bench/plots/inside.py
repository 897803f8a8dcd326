"""Figures that look inside networks: layer responses (V1 Fig. 7), gradient flow, identity path,
feature maps of one unit, and the depth challenge. Each takes the tidy table its analysis
(`resnet-bench analyze`) wrote as `<name>.csv` and writes `<name>.png` and `<name>.pdf` beside it;
`render` reads the CSVs of one analysis and draws its figures. The CSV is the analysis's, so
these functions never rewrite it.

Colours: one hue per family (the colour its declaration gives it: `families.PlotStyle`, read by
`families.style_of`), lighter for shallower and darker for deeper networks, so a depth sweep reads
as a gradient within a family.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from resnet_bench.models.families import FAMILIES, FAMILY_ORDER, legend_of, style_of
from resnet_bench.plots import style
from resnet_bench.schema import MAP_PLANES, analysis_stems, read_analysis


def _label_order(df: pd.DataFrame) -> list[str]:
    keys = df[["label", "family", "block", "depth", "variant"]].drop_duplicates("label")
    keys = keys.assign(f=keys["family"].map(FAMILY_ORDER))  # NaN (last): a family not registered
    return list(keys.sort_values(["f", "block", "depth", "variant"], kind="stable")["label"])


def _shade(color, t: float) -> tuple:
    """t in [0, 1]: 0 = the colour mixed 55% with white, 0.5 = the colour, 1 = 45% darker."""
    import matplotlib.colors as mcolors
    rgb = np.array(mcolors.to_rgb(color))
    if t <= 0.5:
        w = 0.55 * (1 - 2 * t)
        return tuple(rgb * (1 - w) + w)
    return tuple(rgb * (1 - 0.45 * (2 * t - 1)))


def label_palette(df: pd.DataFrame) -> dict[str, tuple]:
    """label -> colour: the family's colour, light (shallow) to dark (deep)."""
    palette: dict[str, tuple] = {}
    order = _label_order(df)
    fam = df.drop_duplicates("label").set_index("label")["family"]
    for family in FAMILY_ORDER:
        labels = [lab for lab in order if fam[lab] == family]
        if not labels:
            continue
        ts = np.linspace(0.0, 1.0, len(labels)) if len(labels) > 1 else [0.5]
        palette.update({lab: _shade(style_of(family).color, t) for lab, t in zip(labels, ts)})
    return palette


def _dashes(df: pd.DataFrame) -> dict[str, tuple | str]:
    """Nets without a shortcut (plain) dashed, residual nets solid (a plain/residual pair reads at
    a glance)."""
    fam = df.drop_duplicates("label").set_index("label")["family"]
    plain = {name for name, f in FAMILIES.items() if not f.shortcut}
    return {lab: (4, 2) if fam[lab] in plain else "" for lab in fam.index}


def _lines(ax, df: pd.DataFrame, x: str, y: str, palette: dict, **kw) -> None:
    order = [lab for lab in _label_order(df) if lab in palette]
    sns.lineplot(data=df, x=x, y=y, hue="label", hue_order=order, palette=palette,
                 style="label", style_order=order, dashes=_dashes(df), ax=ax,
                 errorbar=("pi", 100) if df.groupby(["label", x]).size().max() > 1 else None,
                 linewidth=1.2, **kw)


def _seeds_note(df: pd.DataFrame) -> str:
    n = df.groupby("label")["seed"].nunique().max()
    return f" (mean of {n} seeds, band: min-max)" if n > 1 else ""


# ---------------------------------------------------------------------------------------------

def plot_layer_responses(table: pd.DataFrame, out_dir: str | os.PathLike,
                         name: str = "layer_responses"):
    """V1 Fig. 7: std of each 3x3 layer's response, in layer order (top) and sorted (bottom)."""
    if table.empty:
        fig = style.placeholder_figure("Layer responses (V1 Fig. 7)", "no runs")
        return style.save_figure(fig, out_dir, name)
    fig, axes = style.figure(ncols=1, nrows=2)
    fig.set_size_inches(style.PANEL_SIZE[0] * 1.6, style.PANEL_SIZE[1] * 2)
    palette = label_palette(table)
    _lines(axes[0, 0], table, "layer", "std", palette, marker="o", markersize=2.5)
    axes[0, 0].set_xlabel("layer index (original order)")
    _lines(axes[1, 0], table, "rank", "std", palette, marker="o", markersize=2.5)
    axes[1, 0].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes[:, 0]:
        ax.set_ylabel("std of response")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1, 0].get_legend().remove()
    axes[0, 0].legend(title=None, ncols=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    n = int(table["n_images"].max())
    axes[0, 0].set_title("Std of 3x3 layer responses (after BN, before ReLU/addition), "
                         f"{n} test images{_seeds_note(table)}")
    return style.save_figure(fig, out_dir, name)


def _run_iterations(df: pd.DataFrame, count: int = 4) -> list[int]:
    """Up to `count` logged iterations spread over training (first and last included), taken
    from those every run logged."""
    per_run = [set(g["iteration"]) for _, g in df.groupby("run_id")]
    common = sorted(set.intersection(*per_run)) if per_run else []
    if not common:
        common = sorted(df["iteration"].unique())
    if len(common) <= count:
        return common
    picks = np.linspace(0, len(common) - 1, count).round().astype(int)
    return [common[i] for i in sorted(set(picks))]


def plot_gradient_flow(table: pd.DataFrame, out_dir: str | os.PathLike,
                       name: str = "gradient_flow"):
    """Gradient norm against position in depth, one line per network, log y. Panels: at
    initialisation (signal gradients between units; conv weight gradients), then weight gradients
    at a few logged training iterations."""
    if table.empty:
        fig = style.placeholder_figure("Gradient flow", "no data")
        return style.save_figure(fig, out_dir, name)
    panels: list[tuple[str, pd.DataFrame, str]] = []
    init = table[table["source"] == "init"]
    if not init.empty:
        panels.append(("at initialisation: dL/dx between units", init[init["quantity"] == "activation"],
                       "position of x_l (0 = stem output, 1 = last unit)"))
        panels.append(("at initialisation: conv weights", init[init["quantity"] == "weight"],
                       "position of the conv layer (0 = first, 1 = last)"))
    runs = table[table["source"] == "run"]
    for it in _run_iterations(runs) if not runs.empty else []:
        panels.append((f"training, iteration {it}: conv weights", runs[runs["iteration"] == it],
                       "position of the conv layer (0 = first, 1 = last)"))
    panels = [p for p in panels if not p[1].empty]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, grid = style.figure(ncols=ncols, nrows=nrows)
    axes = grid.ravel()
    palette = label_palette(table)
    for ax, (title, df, xlabel) in zip(axes, panels):
        df = df[df["grad_norm"] > 0]
        _lines(ax, df, "position", "grad_norm", palette)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("||dL/dx||" if "dL/dx" in title else "||dL/dW||")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    handles, labels = [], []
    for ax in axes[:len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    grid[0, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=None)
    note = f"; at initialisation{_seeds_note(init)}" if not init.empty and _seeds_note(init) else ""
    fig.suptitle(f"Gradient flow{note}", fontsize=9)
    return style.save_figure(fig, out_dir, name)


def plot_identity_ratios(table: pd.DataFrame, out_dir: str | os.PathLike,
                         name: str = "identity_path"):
    """Per unit: ||F(x)|| / ||h(x)|| (left) and the signal norm ||x|| entering it (right)."""
    if table.empty:
        fig = style.placeholder_figure("Identity path", "no runs")
        return style.save_figure(fig, out_dir, name)
    fig, axes = style.figure(ncols=2)
    palette = label_palette(table)
    residual = table[table["ratio"].notna() & (table["ratio"] > 0)]
    if not residual.empty:
        _lines(axes[0, 0], residual, "position", "ratio", palette, marker="o", markersize=2.5)
        axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylabel("||F(x)|| / ||h(x)||")
    axes[0, 0].set_title("residual vs shortcut summand per unit")
    _lines(axes[0, 1], table[table["input_norm"] > 0], "position", "input_norm", palette,
           marker="o", markersize=2.5)
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_ylabel("||x|| entering the unit")
    axes[0, 1].set_title("signal along the identity path")
    for ax in axes[0]:
        ax.set_xlabel("unit position (unit / number of units)")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = axes[0, 1].get_legend_handles_labels()
    axes[0, 1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=None)
    n = int(table["n_images"].max())
    fig.suptitle(f"Identity path: per-image norms averaged over {n} test images"
                 f"{_seeds_note(table)}", fontsize=9)
    return style.save_figure(fig, out_dir, name)


MAP_TITLES = {"input": "input x", "shortcut": "shortcut h(x)", "residual": "residual F(x)",
              "output": "unit output"}


def plot_feature_maps(maps: pd.DataFrame, out_dir: str | os.PathLike,
                      name: str = "identity_path_maps"):
    """Input, shortcut, residual and output maps of one image at one unit, for every run and
    channel in `maps` (the pixel table of `resnet_bench.inside.identity.feature_map_table`);
    one colour scale (centred at 0) per row."""
    if maps.empty:
        fig = style.placeholder_figure("Feature maps", "no runs")
        return style.save_figure(fig, out_dir, name)
    # one row of panels per (run, channel), in the table's order
    keys = list(dict.fromkeys(zip(maps["run_id"], maps["channel"])))
    nrows = len(keys)
    fig, axes = style.figure(ncols=len(MAP_PLANES), nrows=nrows)
    fig.set_size_inches(1.6 * len(MAP_PLANES) + 1.0, 1.5 * nrows + 0.4)
    by_row = dict(tuple(maps.groupby(["run_id", "channel"], sort=False)))
    for r, key in enumerate(keys):
        part = by_row[key]
        first = part.iloc[0]
        planes = {}
        for k in MAP_PLANES:
            px = part[part["map"] == k]
            plane = np.zeros((int(px["row"].max()) + 1, int(px["col"].max()) + 1))
            plane[px["row"].to_numpy(), px["col"].to_numpy()] = px["value"].to_numpy()
            planes[k] = plane
        vmax = max(float(np.abs(p).max()) for p in planes.values()) or 1.0
        for j, k in enumerate(MAP_PLANES):
            ax = axes[r, j]
            im = ax.imshow(planes[k], cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                           interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(MAP_TITLES[k])
        axes[r, 0].set_ylabel(f"{first['label']}\nunit {first['unit']}, ch {key[1]}", fontsize=7)
        fig.colorbar(im, ax=axes[r, -1], fraction=0.046, pad=0.04)
    fig.suptitle(f"One test image (#{maps['image'].iloc[0]}) through one residual unit",
                 fontsize=9)
    return style.save_figure(fig, out_dir, name)


def plot_depth_challenge(table: pd.DataFrame, out_dir: str | os.PathLike,
                         name: str = "depth_challenge"):
    """Training loss after k iterations against depth, one line per family (and block);
    runs that diverged before k are marked x at the top of the axis."""
    if table.empty:
        fig = style.placeholder_figure("Depth challenge", "no runs")
        return style.save_figure(fig, out_dir, name)
    fig, axes = style.figure()
    ax = axes[0, 0]
    fig.set_size_inches(style.PANEL_SIZE[0] * 1.5, style.PANEL_SIZE[1] * 1.2)
    ok = table[np.isfinite(table["train_loss"])].copy()
    ok["line"] = ok["family"].map(legend_of) + " " + ok["block"]
    lines = [f"{legend_of(f)} {b}" for f in FAMILY_ORDER for b in ("basic", "bottleneck")
             if ((ok["family"] == f) & (ok["block"] == b)).any()]
    palette = {f"{legend_of(f)} {b}": style_of(f).color
               for f in FAMILY_ORDER for b in ("basic", "bottleneck")}
    dashes = {line: (4, 2) if line.endswith("bottleneck") else "" for line in lines}
    markers = {f"{legend_of(f)} {b}": style_of(f).marker if b == "basic"
               else style_of(f).bottleneck_marker
               for f in FAMILY_ORDER for b in ("basic", "bottleneck")}
    if not ok.empty:
        sns.lineplot(data=ok, x="depth", y="train_loss", hue="line", hue_order=lines,
                     palette=palette, style="line", style_order=lines, dashes=dashes,
                     markers={line: markers[line] for line in lines}, markersize=6,
                     errorbar=None, estimator="mean", ax=ax, linewidth=1.4)
        ax.scatter(ok["depth"], ok["train_loss"], s=8, c=[palette[x] for x in ok["line"]],
                   alpha=0.5, zorder=3, linewidths=0)
    failed = table[~np.isfinite(table["train_loss"])]
    if not failed.empty:
        top = float(ok["train_loss"].max()) * 1.1 if not ok.empty else 1.0
        ax.scatter(failed["depth"], [top] * len(failed), marker="x", s=30,
                   c=[style_of(f).color for f in failed["family"]], zorder=4,
                   label="diverged / no loss at k")
    ax.set_xscale("log")
    depths = sorted(table["depth"].unique())
    ax.set_xticks(depths)
    ax.set_xticklabels([str(d) for d in depths], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("depth (layers)")
    k, w = int(table["k"].iloc[0]), int(table["window"].iloc[0])
    ax.set_ylabel(f"training loss at iteration {k}")
    nseeds = int(table.groupby("model")["seed"].nunique().max())
    ax.set_title(f"Depth challenge: training loss after {k} iterations\n(mean of the last {w} "
                 f"mini-batch losses; line: mean of {nseeds} seed(s), dots: single runs)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title=None)
    return style.save_figure(fig, out_dir, name)


PLOTTERS = {"responses": plot_layer_responses, "gradients": plot_gradient_flow,
            "identity": plot_identity_ratios, "depth": plot_depth_challenge}


def render(analysis: str, out_dir: str | os.PathLike, name: str | None = None) -> list[str]:
    """Draw the figures of one `resnet-bench analyze` subcommand from the CSVs it wrote in
    `out_dir` (stems: `analysis_stems`); returns the stems drawn."""
    stems = analysis_stems(analysis, name)
    PLOTTERS[analysis](read_analysis(out_dir, stems[0]), out_dir, stems[0])
    if analysis == "identity":
        plot_feature_maps(read_analysis(out_dir, stems[1]), out_dir, stems[1])
    return stems
