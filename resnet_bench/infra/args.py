"""Command-line arguments that several subcommands share, kept free of heavy imports so that
`--help` stays instant."""

from __future__ import annotations

import argparse


def add_source_args(parser: argparse.ArgumentParser, dataset_help: str) -> None:
    """--dataset, --data-dir and --prepared: where the images of `train` and `bench` come from;
    `dataset_help` says which kinds --dataset takes."""
    parser.add_argument("--dataset", default="synthetic",
                        help=f"{dataset_help} (default: synthetic, embedded); with --prepared, "
                             "the name recorded for that dataset")
    parser.add_argument("--data-dir",
                        help="dataset root (CIFAR download/archive dir, or ImageFolder tree/archive)")
    parser.add_argument("--prepared", metavar="FILE",
                        help="dataset file written by `resnet-bench data prepare` (fastest)")
