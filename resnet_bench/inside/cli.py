"""`resnet-bench analyze`: look inside trained (or freshly initialised) networks.

    analyze responses --runs DIR... --out DIR    V1 Fig. 7: std of every 3x3 layer's response
    analyze gradients [--models NAME... --seeds S...] [--runs DIR...] --out DIR
                                                 gradient norms through depth, at init / in training
    analyze identity  --runs DIR... --out DIR    ||F(x)|| / ||h(x)|| per unit, one unit's feature maps
    analyze depth     [--tables DIR] --runs DIR... --out DIR
                                                 training loss after k iterations against depth

Each writes `<out>/<name>.csv` (the tidy table, from resnet_bench.inside or, for `depth`, from the
tables), then draws `<out>/<name>.png` and `<out>/<name>.pdf` from it (resnet_bench.plots.inside;
`identity` also `<name>_maps.{csv,png,pdf}`). Runs are given as run directories, their
summary.json files, globs, or parent directories searched for summary.json.
"""

from __future__ import annotations

import argparse

from resnet_bench.schema import ANALYSES
from resnet_bench.train.recipe import NORMALIZATIONS


def _common(p: argparse.ArgumentParser, what: str, runs_required: bool = True) -> None:
    p.add_argument("--runs", nargs="+" if runs_required else "*", required=runs_required,
                   default=[], metavar="DIR_OR_GLOB",
                   help="finished run directories (with model.pt/config.json/summary.json), "
                        "summary.json files, globs, or parents searched for summary.json")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--name", default=ANALYSES[what],
                   help="file name stem of the outputs [%(default)s]")


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-images", type=int, default=None, metavar="N",
                   help="use the first N test images (default: the whole test set)")
    p.add_argument("--batch-size", type=int, default=500, help="evaluation batch size [%(default)s]")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto [%(default)s]")
    p.add_argument("--prepared", default=None, metavar="FILE",
                   help="dataset file from `resnet-bench data prepare` (default: the one named "
                        "in each run's config.json)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    p = sub.add_parser("responses", help="V1 Fig. 7: std of 3x3 layer responses on the test set")
    _common(p, "responses")
    _data_flags(p)

    p = sub.add_parser("gradients", help="per-layer gradient norms at initialisation and in training")
    _common(p, "gradients", runs_required=False)
    p.add_argument("--models", nargs="*", default=[], metavar="NAME",
                   help="networks to measure at initialisation (e.g. plain-basic-20 v1-basic-20 "
                        "v2-basic-20)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="initialisation seeds [0]")
    p.add_argument("--batch-size", type=int, default=128,
                   help="size of the fixed batch (first training images) [%(default)s]")
    p.add_argument("--dataset", default="synthetic",
                   help="dataset kind for the fixed batch when --prepared is not given [%(default)s]")
    p.add_argument("--data-dir", default=None, help="root for --dataset cifar10/cifar100/folder")
    p.add_argument("--prepared", default=None, metavar="FILE",
                   help="dataset file from `resnet-bench data prepare` for the fixed batch")
    p.add_argument("--normalize", default="pixel", choices=NORMALIZATIONS,
                   help="input normalisation of the fixed batch [%(default)s]")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto [%(default)s]")

    p = sub.add_parser("identity", help="||F(x)||/||h(x)|| per residual unit, and one unit's maps")
    _common(p, "identity")
    _data_flags(p)
    p.add_argument("--unit", type=int, default=None,
                   help="unit (1-based, network order) for the feature-map picture "
                        "(default: the last unit of stage 1)")
    p.add_argument("--image", type=int, default=0, help="test image index for the picture [0]")
    p.add_argument("--channels", type=int, default=4, help="channels shown in the picture [4]")

    p = sub.add_parser("depth", help="training loss after k iterations against depth")
    _common(p, "depth", runs_required=False)
    p.add_argument("--tables", default=None, metavar="DIR",
                   help="tables written by `resnet-bench aggregate` to read the runs from "
                        "(--runs then selects among them); without it, --runs are aggregated "
                        "on the fly")
    p.add_argument("--k", type=int, default=None,
                   help="iteration to read the loss at (default: the shortest completed run)")
    p.add_argument("--window", type=int, default=50,
                   help="mean over the logged iterations in (k - window, k] [%(default)s]")


def _device(name: str) -> str:
    from resnet_bench.train.loop import pick_device
    return str(pick_device(name))


def _positive(args: argparse.Namespace, *keys: str) -> None:
    for key in keys:
        value = getattr(args, key, None)
        if value is not None and value < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {value}")


def run(args: argparse.Namespace) -> int:
    what = args.analysis
    _positive(args, "max_images", "batch_size", "channels", "k", "window", "unit")
    if what == "responses":
        from resnet_bench.inside.responses import layer_responses
        table = layer_responses(args.runs, max_images=args.max_images, batch_size=args.batch_size,
                                device=_device(args.device), prepared=args.prepared,
                                out_dir=args.out, name=args.name)
        summary = f"{table['run_id'].nunique()} run(s), {len(table)} layer row(s)"
    elif what == "gradients":
        from resnet_bench.inside.gradients import gradient_flow
        dataset = None
        if args.models:
            from resnet_bench import data
            from resnet_bench.models import parse_model_name
            for name in args.models:  # a bad name fails before any data is loaded
                parse_model_name(name)
            dataset = (data.load_prepared(args.prepared) if args.prepared
                       else data.load_dataset(args.dataset, args.data_dir))
        table = gradient_flow(args.models, args.seeds, runs=args.runs, dataset=dataset,
                              batch_size=args.batch_size, normalize=args.normalize,
                              device=_device(args.device), out_dir=args.out, name=args.name)
        summary = (f"{len(args.models)} model(s) x {len(args.seeds)} seed(s) at init, "
                   f"{table.loc[table['source'] == 'run', 'run_id'].nunique()} run(s), "
                   f"{len(table)} row(s)")
    elif what == "identity":
        from resnet_bench.inside.identity import identity_path
        table = identity_path(args.runs, max_images=args.max_images, batch_size=args.batch_size,
                              device=_device(args.device), prepared=args.prepared,
                              maps_unit=args.unit, maps_image=args.image,
                              maps_channels=args.channels, out_dir=args.out, name=args.name)
        summary = f"{table['run_id'].nunique()} run(s), {len(table)} unit row(s)"
    else:
        from resnet_bench.tables.depth import depth_challenge
        if args.tables:
            tables, runs = args.tables, args.runs
        elif args.runs:
            from resnet_bench.tables.aggregate import load_runs
            tables, runs = load_runs(args.runs), ()
        else:
            raise ValueError("give --tables and/or --runs")
        table = depth_challenge(tables, runs=runs, k=args.k, window=args.window,
                                out_dir=args.out, name=args.name)
        summary = (f"{len(table)} run(s) at k={int(table['k'].iloc[0])}, "
                   f"{int(table['diverged'].sum())} diverged before k")
    from resnet_bench.plots.inside import render
    render(what, args.out, args.name)
    print(f"analyze {what}: {summary} -> {args.out}/{args.name}.{{csv,png,pdf}}")
    return 0
