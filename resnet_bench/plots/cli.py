"""`resnet-bench plot`: tables -> the papers' figures (PNG, PDF and the plotted data as CSV)."""

from __future__ import annotations

import argparse

from resnet_bench.plots.figures import FIGURES, render_all


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", required=True, metavar="DIR",
                        help="directory written by `resnet-bench aggregate`")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write the figures")
    parser.add_argument("--figure", nargs="+", default=None, metavar="NAME",
                        help=f"figures to render (default: all): {', '.join(FIGURES)}")
    parser.add_argument("--dataset", default=None,
                        help="dataset to plot (default: the one with most runs)")
    parser.add_argument("--recipe", default=None,
                        help="recipe to plot (default: the one with most runs on the dataset)")


def run(args: argparse.Namespace) -> int:
    rendered = render_all(args.tables, args.out, args.figure, args.dataset, args.recipe)
    for name, df in rendered.items():
        what = f"{df['run_id'].nunique()} run(s)" if len(df) else "placeholder (no data)"
        print(f"{name}: {what} -> {args.out}/{name}.{{png,pdf,csv}}")
    return 0
