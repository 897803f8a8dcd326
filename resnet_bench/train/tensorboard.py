"""`resnet-bench tensorboard`: the runs' CSV logs as TensorBoard event files, for a live view.

The trainer's records stay the CSV logs (resnet_bench/record.py); this reads them, finished runs
and runs still training alike (`train_log.csv` is flushed at every checkpoint, `eval_log.csv` at
every evaluation), and writes one TensorBoard run per training under `--logdir`, named by the
run's path below the common parent. `--every S` repeats that every S seconds until interrupted,
so `tensorboard --logdir DIR` follows long runs. Nothing is added to a training, so a study's
runs need no flag and no rerun. TensorBoard is an optional extra (`pip install
'resnet-bench[tensorboard]'`); without it the command stops with a one-line error.

Scalars: `train/loss`, `train/error_pct`, `train/lr` at every logged iteration; `test/loss`,
`test/error_pct` (and `val/...`) at every evaluation. Each pass rewrites a run's events, so a
resumed run's re-logged iterations appear once, with their last values (as the tables read them).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pandas as pd

from resnet_bench import record


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, metavar="DIR",
                        help="run directories, or folders searched for them (a run directory "
                             "holds train_log.csv; it need not be finished)")
    parser.add_argument("--logdir", required=True, metavar="DIR",
                        help="where the event files go (then: tensorboard --logdir DIR)")
    parser.add_argument("--every", type=float, default=None, metavar="SECONDS",
                        help="repeat every SECONDS until interrupted (default: once)")


def run_dirs(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ValueError(f"{p}: no such file or directory")
        found += [p] if (p / record.TRAIN_LOG).exists() else \
            sorted(f.parent for f in p.rglob(record.TRAIN_LOG))
    if not found:
        raise ValueError(f"{' '.join(paths)}: no run directories (with {record.TRAIN_LOG}) found")
    return found


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None   # a run that has not logged yet


def write_events(run_dir: Path, out: Path, writer_class) -> int:
    """One run's logs -> event files in `out` (replaced); the number of scalars written."""
    shutil.rmtree(out, ignore_errors=True)
    train, evals = _read(run_dir / record.TRAIN_LOG), _read(run_dir / record.EVAL_LOG)
    n = 0
    writer = writer_class(log_dir=str(out))
    try:
        if train is not None and len(train):
            train = train.drop_duplicates("iteration", keep="last").sort_values("iteration")
            for row in train.itertuples(index=False):
                for key in ("loss", "error_pct", "lr"):
                    writer.add_scalar(f"train/{key}", float(getattr(row, key)), int(row.iteration))
                    n += 1
        if evals is not None and len(evals):
            for row in evals.itertuples(index=False):
                for key in ("loss", "error_pct"):
                    writer.add_scalar(f"{row.split}/{key}", float(getattr(row, key)),
                                      int(row.iteration))
                    n += 1
    finally:
        writer.close()
    return n


def export(paths: list[str], logdir: str | Path, writer_class=None) -> dict[str, int]:
    """Every run under `paths` -> `logdir/<run>`; {run name: scalars written}."""
    if writer_class is None:
        try:
            from torch.utils.tensorboard import SummaryWriter as writer_class
        except ImportError:
            raise ValueError("TensorBoard is not installed: pip install "
                             "'resnet-bench[tensorboard]' (or tensorboard)") from None
    dirs = run_dirs(paths)
    names = record.run_ids(dirs)
    return {name: write_events(d, Path(logdir) / name, writer_class)
            for d, name in zip(dirs, names)}


def run(args: argparse.Namespace) -> int:
    while True:
        written = export(args.runs, args.logdir)
        print(f"{len(written)} run(s), {sum(written.values())} scalars -> {args.logdir}",
              flush=True)
        if args.every is None:
            return 0
        time.sleep(args.every)
