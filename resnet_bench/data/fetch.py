"""`fetch(key, out, url)`: download a public dataset's pinned archive and keep it only if it is
the recorded content (`resnet_bench.public_data`).

The download goes to a hidden temporary sibling of `out`, is fingerprinted there and only then
renamed into place, so a refused, interrupted or truncated download never leaves a file that
the pipeline (or a later `fetch`) would take for the dataset. A copy already at `out` is
checked, not downloaded again, and refused the same way if it is something else.

Any URL urllib opens works (https, http, file://): an offline cluster can point `url` at its own
mirror of the archive; the fingerprint check is the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DatasetError
from .folder import content_fingerprint
from resnet_bench.public_data import PUBLIC, PublicDataset

TIMEOUT_S = 60  # per blocking socket operation, not for the whole download


def verify(source: PublicDataset, path: Path, what: str | None = None) -> None:
    """Refuse `path` (called `what` in the message) in one line unless its content is
    `source`'s."""
    try:
        got = content_fingerprint(path)
    except DatasetError as exc:  # not an archive or tree at all: name what was given
        problem = str(exc).removeprefix(f"{exc.path}: ").replace(str(path), "")
        raise DatasetError(what or path, f"is not {source.key} ({problem}); refused") from None
    if got != source.content_sha256:
        raise DatasetError(what or path, f"is not {source.key} ({source.origin}): content "
                                         f"fingerprint {got[:16]}..., expected "
                                         f"{source.content_sha256[:16]}...; refused")


def fetch(key: str, out: str | os.PathLike | None = None, url: str | None = None,
          log=print) -> Path:
    """The verified dataset at `out` (default: its `default_root`); downloads it when absent."""
    if key not in PUBLIC:
        raise DatasetError(key, f"unknown public dataset; known: {', '.join(sorted(PUBLIC))}")
    source = PUBLIC[key]
    out = Path(out or source.default_root)
    if out.exists():
        verify(source, out)
        log(f"{out}: already present, content verified ({source.key})")
        return out
    url = url or source.url
    out.parent.mkdir(parents=True, exist_ok=True)
    # hidden, and ending in the archive's own name so that the folder reader knows its format
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", suffix=f"-{out.name}", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            log(f"downloading {url}")
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                    shutil.copyfileobj(response, f, 1 << 20)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DatasetError(url, f"download failed ({reason})") from None
        verify(source, tmp, what=url)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide a shared copy from the group
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log(f"{out}: content verified ({source.key}), {out.stat().st_size} bytes")
    return out
