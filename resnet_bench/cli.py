"""`resnet-bench` command line: one subcommand per stage; each lives beside the code it drives."""

from __future__ import annotations

import argparse
import importlib
import sys

from resnet_bench.infra.gpu import GpuBusyError

# subcommand -> (module with `configure(parser)` and `run(args) -> int`, one-line help)
SUBCOMMANDS = {
    "models": ("resnet_bench.models.cli", "list every registered network with params and MACs"),
    "data": ("resnet_bench.data.cli", "prepare or inspect a dataset"),
    "train": ("resnet_bench.train.cli", "train one network on one dataset with one seed"),
    "bench": ("resnet_bench.bench", "time training iterations against a standard-recipe baseline"),
    "aggregate": ("resnet_bench.tables.cli", "collect run records into pandas tables"),
    "tensorboard": ("resnet_bench.train.tensorboard",
                    "write runs' CSV logs as TensorBoard event files (optional extra), for a live view"),
    "plot": ("resnet_bench.plots.cli", "render the papers' figures from the tables"),
    "analyze": ("resnet_bench.inside.cli", "layer responses, gradient flow, identity path"),
    "gpu-run": ("resnet_bench.infra.gpu", "run a command pinned to a free GPU slot"),
    "launch": ("resnet_bench.pipeline.launch", "start one distributed training (torchrun, DDP)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the culprit and a pointer to --help), status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the cause: 'PATH: Read-only file system'."""
    cause = exc.strerror or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return " ".join(str(exc).split()) or cause
    return f"{' -> '.join(map(str, paths))}: {cause}"


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="resnet-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # Import lazily: `resnet-bench models` should not pay for pandas/seaborn/snakemake.
        if load is None or load == name:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load=command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    status = 2
    try:
        return int(module.run(args) or 0)
    except ValueError as exc:
        # Bad input (config, data, arguments): one line naming the problem, status 2.
        message = " ".join(str(exc).split())
    except OSError as exc:
        # Exists / not a directory / read-only / no space / permission: the path and the cause.
        message = describe_os_error(exc)
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop (which checkpoints and exits 75 on it, as on SIGTERM).
        message, status = "interrupted (SIGINT)", 130
    except GpuBusyError as exc:
        # Not bad input: the pool stayed full; a retry (the train rule's) may find a free slot.
        message, status = str(exc), 1
    print(f"resnet-bench {args.command}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
