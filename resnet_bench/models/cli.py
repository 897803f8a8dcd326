"""`resnet-bench models`: list the registered networks (or the named ones) with params and MACs
(per 32x32 image for CIFAR nets, per 224x224 image for ImageNet nets);
`--aliases`: the short names accepted for the papers' networks."""

from __future__ import annotations

import argparse
import csv
import sys

from .cost import model_costs
from .registry import list_models, model_source
from .spec import ALIASES, BLOCK_ORDER, FAMILIES, STEMS, ModelSpec, parse_model_name

COLUMNS = ("name", "family", "block", "depth", "variant", "params", "macs", "source")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="networks to show (any valid name, e.g. v1-basic-38); default: all registered")
    parser.add_argument("--csv", action="store_true", help="machine-readable CSV on stdout")
    parser.add_argument("--family", choices=tuple(FAMILIES), help="only this family")
    parser.add_argument("--block", choices=tuple(BLOCK_ORDER), help="only this block")
    parser.add_argument("--depth", type=int, help="only this depth")
    parser.add_argument("--stem", choices=STEMS, help="only the CIFAR or only the ImageNet nets")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="FC width for the counts (default 10 for CIFAR nets, 1000 for ImageNet nets)")
    parser.add_argument("--aliases", action="store_true",
                        help="list the aliases (resnet56, plain20, preact_resnet164, ...) and the names they stand for")


def _rows(args: argparse.Namespace) -> list[tuple[ModelSpec, dict]]:
    """Each shown network's spec and its row (`COLUMNS`)."""
    specs = [parse_model_name(n) for n in args.names] if args.names else list_models()
    specs = [
        s for s in specs
        if (args.family in (None, s.family)) and (args.block in (None, s.block)) and (args.depth in (None, s.depth))
        and (args.stem in (None, s.stem))
    ]
    costs = model_costs(specs, num_classes=args.num_classes)
    return [
        (s, dict(name=s.name, family=s.family, block=s.block, depth=s.depth, variant=s.variant,
                 params=costs[s.name][0], macs=costs[s.name][1], source=model_source(s)))
        for s in specs
    ]


def run(args: argparse.Namespace) -> int:
    if args.aliases:
        width = max(map(len, ALIASES))
        for alias, name in ALIASES.items():
            print(f"{alias:<{width}}  {name}")
        return 0
    rows = _rows(args)
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for _, row in rows)
        return 0
    # one table per stem (CIFAR: MACs per 32x32 image; ImageNet: per 224x224), each aligned alone
    groups = [[row for spec, row in rows if spec.stem == stem] for stem in STEMS]
    for g, group in enumerate([group for group in groups if group]):
        if g:
            print()
        _print_table(group)
    return 0


def _print_table(rows: list[dict]) -> None:
    table = [("name", "params", "MMACs", "source")] + [
        (r["name"], f"{r['params']:,}", f"{r['macs'] / 1e6:,.2f}", r["source"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for i, row in enumerate(table):
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
