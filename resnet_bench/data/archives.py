"""File helpers shared by the loaders: checksums, archive detection and safe extraction."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from .errors import DatasetError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def open_tar(path: Path, stream: bool = False) -> tarfile.TarFile:
    """Open a (compressed) tar archive; a damaged one becomes a DatasetError naming it."""
    try:
        return tarfile.open(path, "r|*" if stream else "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(path, f"not a readable tar archive ({exc})") from exc


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest`, refusing members that would land outside it.

    tarfile's "data" filter (Python >= 3.12, backported to 3.11.4) rejects absolute paths, "..",
    links leaving the tree and device files; we also check names ourselves for older Pythons.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with open_tar(archive) as tar:
        try:
            members = tar.getmembers()
            for m in members:
                target = (root / m.name).resolve()
                if not (target == root or root in target.parents) or m.issym() or m.islnk():
                    raise DatasetError(archive, f"unsafe archive member {m.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - old Python without extraction filters
                tar.extractall(root, members=members)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(archive, f"corrupt archive ({exc})") from exc

