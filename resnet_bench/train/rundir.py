"""A run directory: recognised by the suite's marker, written by one trainer at a time.

The marker (`record.RUN_MARKER`) is the first file the trainer writes in a directory and the
file it locks (`fcntl.flock`, released by the kernel when the process dies, however it dies). A
directory that holds files but no marker was not made by the suite: it is refused, so the
trainer never overwrites or deletes what it did not write. A second trainer on a locked run is
refused in one line naming the holder, or waits for it (`wait=True`, the pipeline's choice: the
trainer of a killed Snakemake may still be running when the same command is run again).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from resnet_bench.record import RUN_MARKER

MARKER_TEXT = "resnet-bench run directory"

_held: dict[Path, int] = {}  # run directories this process holds (a nested hold is a no-op)


class RunDirError(ValueError):
    """A directory the trainer must not write into, or one another trainer holds."""


def out_path(out: str | os.PathLike) -> Path:
    """`--out` as a Path; an empty string (which Path reads as the current directory) refused."""
    if not str(out).strip():
        raise RunDirError("--out: got ''; allowed: a run directory (an empty string would train "
                          "into the current directory)")
    return Path(out)


def foreign_files(out: Path) -> list[str]:
    """Names in `out` when it is not a run directory of the suite (files but no marker)."""
    if not out.is_dir() or (out / RUN_MARKER).exists():
        return []
    return sorted(p.name for p in out.iterdir())


def check_ours(out: Path) -> None:
    names = foreign_files(out)
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise RunDirError(f"{out}: not a run directory of resnet-bench (it holds {shown} and no "
                          f"{RUN_MARKER} marker); the trainer writes only into an empty or new "
                          "directory or one it made: use another --out")


def _holder(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode(errors="replace")
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if "pid" not in fields:
        return "another trainer"
    return f"trainer pid {fields['pid']}" + (f" on {fields['host']}" if "host" in fields else "")


@contextmanager
def held(out: Path, *, wait: bool = False) -> Iterator[Path]:
    """Hold `out` for this process: create it (and its marker) if new, refuse a foreign
    directory, lock the marker. A directory this call created and left holding only its marker
    is removed again on the way out (a refused run leaves nothing behind)."""
    out = Path(out)
    key = Path(os.path.abspath(out))
    if key in _held:
        yield out
        return
    check_ours(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    marker = out / RUN_MARKER
    while True:
        fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                os.close(fd)
                raise RunDirError(f"{out}: {holder} is writing this run; wait for it to finish, "
                                  "or stop it (SIGTERM: it writes a checkpoint), then run the same "
                                  "command again") from None
            print(f"{out}: waiting for {holder}, which is writing this run", file=sys.stderr,
                  flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            raise OSError(exc.errno, f"cannot lock ({exc.strerror})", str(marker)) from None
        try:  # the holder before us may have removed the directory it had made: start over
            same = os.stat(marker).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
        out.mkdir(parents=True, exist_ok=True)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{MARKER_TEXT}: pid={os.getpid()} host={socket.gethostname()}\n".encode(), 0)
        _held[key] = fd
        yield out
    finally:
        _held.pop(key, None)
        if created and [p.name for p in out.iterdir()] == [RUN_MARKER]:
            marker.unlink(missing_ok=True)
            try:
                out.rmdir()
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT):
                    raise
        os.close(fd)  # releases the lock
