"""Writing a run's record files: atomic JSON, append-only CSV logs that a resume can cut back."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

# File names and columns: resnet_bench.record (the run record, defined once).
from resnet_bench.infra.atomic import write_bytes as atomic_write_bytes  # noqa: F401 (the records' writer)
from resnet_bench.record import FINAL_WEIGHTS, RECORD_FILES
from resnet_bench.infra.strict import json_loads


def temp_files(run_dir: Path) -> list[Path]:
    """Temp files of atomic writes of a run's records (`.{name}.XXXXXXXX`, and the `model.pt.tmp`
    of older versions): only a process killed inside a write leaves one behind."""
    run_dir = Path(run_dir)
    found = [p for name in RECORD_FILES for p in run_dir.glob(f".{name}.*")]
    legacy = run_dir / f"{FINAL_WEIGHTS}.tmp"
    return sorted(found + ([legacy] if legacy.exists() else []))


def sweep_temp_files(run_dir: Path) -> list[Path]:
    """Remove leftover temp files; one trainer owns a run directory, so none is in use."""
    swept = temp_files(run_dir)
    for p in swept:
        p.unlink(missing_ok=True)
    return swept


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite_or_none(obj: Any) -> Any:
    # JSON has no NaN/inf; a diverged run's losses become null rather than invalid JSON.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_finite_or_none(obj), indent=2, sort_keys=True, default=_json_default)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json_loads(path.read_text(), str(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _fmt(v: Any) -> str:
    # repr round-trips floats exactly, so a resumed run continues from identical numbers.
    return repr(v) if isinstance(v, float) else str(v)


class CsvLog:
    """An append-only CSV log whose rows are buffered and written at flush().

    `writer=False` (the processes other than rank 0 of a distributed run) reads the log but
    never writes it: rows are dropped at flush() and truncate_after() only returns the rows."""

    def __init__(self, path: Path, columns: Sequence[str], writer: bool = True):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.writer = writer
        self.pending: list[Sequence[Any]] = []
        if writer and not self.path.exists():
            atomic_write_bytes(self.path, (",".join(self.columns) + "\n").encode())

    def append(self, row: Sequence[Any]) -> None:
        self.pending.append(row)

    def flush(self) -> None:
        if not self.writer:
            self.pending.clear()
        if not self.pending:
            return
        try:
            with open(self.path, "a", newline="") as f:
                f.write("".join(",".join(_fmt(v) for v in row) + "\n" for row in self.pending))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.filename is None:  # a write error (full disk): name the file
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
            raise
        self.pending.clear()

    def rows(self) -> list[dict[str, str]]:
        if not self.writer and not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, iteration: int) -> list[dict[str, str]]:
        """Drop rows logged after `iteration` (written after the checkpoint a resume starts from)."""
        # A row cut short by a full disk has missing fields (and is after the checkpoint): drop it.
        kept = [r for r in self.rows()
                if all(r.get(c) not in (None, "") for c in self.columns)
                and r["iteration"].isdigit() and int(r["iteration"]) <= iteration]
        if not self.writer:
            return kept
        lines = [",".join(self.columns)] + [",".join(r[c] for c in self.columns) for r in kept]
        atomic_write_bytes(self.path, ("\n".join(lines) + "\n").encode())
        return kept
