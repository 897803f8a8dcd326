"""Atomic file writes for every stage: a reader (or a killed writer) never sees half a file.

Each write goes to a temp file `.{name}.XXXXXXXX` in the target's directory, is fsynced and then
renamed over the target. A failed write removes its temp file and names the target in the
OSError, so the CLI's one-line message says which file could not be written. Standard library
only, so the run record and the tables stage can use it without torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_mode() -> int:
    # mkstemp creates 0600 files; results are meant to be read by others as any file would be.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside `path` for a writer that wants a file name (pandas, matplotlib): on
    success it replaces `path`, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):  # name the target
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(name, _default_mode())
        os.replace(name, path)
    except BaseException as exc:
        Path(name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, name):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
