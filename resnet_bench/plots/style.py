"""A shared, paper-like look for every figure, and the PNG+PDF(+CSV) writer.

Conventions of the papers kept here: training curves dashed and thin, test curves solid and bold,
x in units of 1e4 iterations ("iter. (1e4)") for long runs, errors in %. Every compared line must
stay distinguishable in greyscale: colours are spaced in CIE lightness (L*), not only in hue, and
each line also has its own marker. A family's colour and markers are part of its declaration
(`resnet_bench.models.families`, `style_of`).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from resnet_bench.infra import atomic  # noqa: E402
from resnet_bench.schema import CSV_FLOAT_FORMAT  # noqa: E402

FORMATS = ("png", "pdf")
DPI = 200
PANEL_SIZE = (4.2, 3.2)                     # inches per panel
TRAIN_STYLE = {"linestyle": "--", "linewidth": 0.9}
TEST_STYLE = {"linestyle": "-", "linewidth": 2.0}
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")   # "X" is kept for a diverged run's end
DIVERGED_MARKER = "X"
MIN_LIGHTNESS_STEP = 10.0                   # least L* between two compared lines' colours
LONG_RUN = 10_000                           # from here on, x is shown in 1e4 iterations


def apply() -> None:
    sns.set_theme(context="paper", style="ticks", font_scale=1.0, rc={
        "axes.grid": True, "grid.linestyle": ":", "grid.linewidth": 0.5,
        "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "legend.fontsize": 7, "axes.titlesize": 9,
        "figure.dpi": 100, "savefig.bbox": "tight", "pdf.fonttype": 42,
    })


def figure(ncols: int = 1, nrows: int = 1, **kw):
    apply()
    size = (PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows)
    return plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained", **kw)


def lightness(color) -> float:
    """CIE L* (0 black .. 100 white) of a colour: what is left of it in greyscale."""
    rgb = np.array(mcolors.to_rgb(color))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    y = float(lin @ [0.2126, 0.7152, 0.0722])
    return 116 * np.cbrt(y) - 16 if y > 216 / 24389 else y * 24389 / 27


def lightness_ramp(n: int, cmap: str = "rocket", light: float = 68.0,
                   dark: float = 16.0) -> list[tuple]:
    """`n` colours of a colormap whose lightness rises monotonically, at evenly spaced L* from
    `light` down to `dark` (one colour: the middle), so that neighbours differ by
    (light - dark) / (n - 1) in greyscale too."""
    cm = matplotlib.colormaps[cmap]
    pos = np.linspace(0, 1, 512)
    ls = np.array([lightness(cm(p)) for p in pos])
    targets = np.linspace(light, dark, n) if n > 1 else [(light + dark) / 2]
    return [tuple(float(c) for c in cm(float(np.interp(t, ls, pos)))[:3]) for t in targets]


def panels_figure(ncols: int = 1, nrows: int = 1):
    """An empty constrained-layout figure sized for `ncols` x `nrows` panels (to be split into
    subfigures, each with its own legend)."""
    apply()
    return plt.figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows),
                      layout="constrained")


def depth_palette(depths) -> dict[int, tuple]:
    """Shallow -> light, deep -> dark, like the papers' depth sweeps."""
    depths = sorted(set(int(d) for d in depths))
    return dict(zip(depths, lightness_ramp(len(depths))))


def iteration_axis(max_iteration: float) -> tuple[float, str]:
    """(divisor, x label): 1e4 units for long runs, plain iterations for short ones."""
    if max_iteration >= LONG_RUN:
        return 1e4, "iter. (1e4)"
    return 1.0, "iteration"


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in FORMATS:
        path = out / f"{name}.{ext}"
        with atomic.replacing(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=ext)
        paths.append(path)
    plt.close(fig)
    return paths


def save(fig, out_dir: str | os.PathLike, name: str, data: pd.DataFrame) -> list[Path]:
    """Write `<name>.png`, `<name>.pdf` and the plotted data as `<name>.csv`."""
    paths = save_figure(fig, out_dir, name)
    with atomic.replacing(Path(out_dir) / f"{name}.csv") as tmp:
        data.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    return paths + [Path(out_dir) / f"{name}.csv"]


def placeholder_figure(title: str, message: str):
    """An explicit 'nothing to show' figure."""
    fig, axes = figure()
    ax = axes[0, 0]
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"No data for this figure:\n{message}", ha="center", va="center",
            wrap=True, fontsize=9, transform=ax.transAxes)
    return fig


def placeholder(out_dir: str | os.PathLike, name: str, title: str, message: str,
                columns: list[str]) -> pd.DataFrame:
    """An explicit 'nothing to show' figure and an empty CSV with the figure's columns."""
    empty = pd.DataFrame(columns=columns)
    save(placeholder_figure(title, message), out_dir, name, empty)
    return empty
