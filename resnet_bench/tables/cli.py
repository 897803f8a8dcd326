"""`resnet-bench aggregate`: run records -> tables (curves, runs, summary, paper_comparison, claims,
fidelity), each as .csv, .md and .tex."""

from __future__ import annotations

import argparse

from resnet_bench.schema import TABLES
from resnet_bench.tables.aggregate import load_runs
from resnet_bench.tables.build import build_tables, write_tables
from resnet_bench.tables.claims import VERDICTS, check_family
from resnet_bench.tables.paper import load_reference


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, metavar="DIR_OR_GLOB",
                        help="run directories, their summary.json files, globs, or parent "
                             "directories searched for summary.json")
    parser.add_argument("--roots", nargs="+", metavar="DIR", default=[],
                        help="further results roots (another machine's runs of the same design, "
                             "a published study's runs/): paired with --runs by run identity, "
                             "each run counted once, its root named in the runs table")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help=f"where to write {', '.join(TABLES)} as .csv, .md and .tex")
    parser.add_argument("--reference", metavar="CSV", default=None,
                        help="paper reference CSV (default: the packaged paper_reference.csv)")
    parser.add_argument("--claims", nargs="+", metavar="ID", default=None,
                        help="the claims this study tests (its registered family; the others "
                             "are reported as not tested) [every claim the grid can test]")


def run(args: argparse.Namespace) -> int:
    family = check_family(args.claims)  # before any record is read; cli.main prints the error
    runset = load_runs(args.runs, roots=args.roots)
    reference = load_reference(args.reference) if args.reference else None
    tables = build_tables(runset, reference, family)
    write_tables(tables, args.out)
    runs = tables["runs"]
    verdicts = tables["claims"]["verdict"].value_counts()
    print(f"aggregated {len(runs)} run(s) "
          f"({int((runs['status'] == 'diverged').sum())} diverged), "
          f"{len(tables['summary'])} group(s), {len(tables['paper_comparison'])} paper "
          f"comparison row(s), {len(tables['claims'])} claim row(s) ("
          + ", ".join(f"{verdicts.get(v, 0)} {v}" for v in VERDICTS)
          + f"), {len(tables['fidelity'])} fidelity row(s)"
          + (f"; {(runs['duplicate_of'] != '').sum()} run(s) found again in another root, "
             "counted once" if args.roots else "") + f" -> {args.out}")
    return 0
