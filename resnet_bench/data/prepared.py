"""The prepared cache: a dataset decoded once into one file that every training job loads.

The file is ``torch.save`` of a plain dict (uint8/int64 tensors, class names, label, meta), so
``torch.load(weights_only=True)`` reads it without unpickling arbitrary objects. It is written
to a temporary sibling and moved into place with ``os.replace``: a killed ``prepare`` never
leaves a half-written file that a later job would trust. A sha256 over the tensors is stored and
checked on load (about 0.3 s for CIFAR), so a damaged cache is an error, not silent garbage.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from .dataset import ImageDataset
from .errors import DatasetError
from .imagenet import FORMAT as INDEX_FORMAT
from .imagenet import ImageIndex

FORMAT = "resnet-bench-dataset"
VERSION = 1
_TENSORS = ("train_x", "train_y", "test_x", "test_y")


def tensor_digest(ds_tensors: dict[str, torch.Tensor], keys: tuple[str, ...] = _TENSORS) -> str:
    h = hashlib.sha256()
    for key in keys:
        t = ds_tensors[key].contiguous().cpu()
        h.update(f"{key}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(t.numpy().data)  # hashes the buffer in place, no copy
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool):
        return value
    # exact builtin types only: subclasses (torch's TorchVersion is a str) are refused by
    # torch.load(weights_only=True)
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def save_prepared(ds: ImageDataset | ImageIndex, out_path: str | Path, *,
                  extra: dict | None = None) -> Path:
    """Write a dataset's tensors, or an `ImageIndex` (kind imagenet: files, labels, statistics)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = _jsonable(dict(ds.meta))
    meta["prepared"] = _jsonable({
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
        "python": platform.python_version(), **(extra or {})})
    if isinstance(ds, ImageIndex):
        blob = {**ds.to_blob(), "meta": meta, "options": _jsonable(ds.options)}
        blob["tensor_sha256"] = tensor_digest({"train_y": ds.train_y, "test_y": ds.test_y,
                                               **ds.stats}, keys=("train_y", "test_y",
                                                                  *sorted(ds.stats)))
    else:
        tensors = {k: getattr(ds, k).contiguous().cpu() for k in _TENSORS}
        blob = {"format": FORMAT, "version": VERSION, **tensors, "classes": list(ds.classes),
                "name": ds.name, "label": ds.label, "meta": meta,
                "tensor_sha256": tensor_digest(tensors)}
    # Leftovers of a prepare killed mid-write (another pid's temp name) are swept first.
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    # Serialised in memory first: a write error (full disk, read-only) is then an OSError naming
    # the path, which torch.save to a path would turn into a RuntimeError.
    buf = io.BytesIO()
    torch.save(blob, buf)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        if exc.filename is None:  # a write error (full disk): name the file
            raise OSError(exc.errno, exc.strerror, str(out)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_prepared(path: str | Path, *, verify: bool = True) -> ImageDataset | ImageIndex:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "prepared dataset file not found "
                                 "(run `resnet-bench data prepare`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle/unsafe-type errors all mean "not our file"
        raise DatasetError(path, f"not a readable prepared dataset ({type(exc).__name__}: "
                                 f"{str(exc)[:200]})") from exc
    if isinstance(blob, dict) and blob.get("format") == INDEX_FORMAT:
        return _load_index(path, blob, verify)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DatasetError(path, f"not a {FORMAT} file")
    if blob.get("version") != VERSION:
        raise DatasetError(path, f"format version {blob.get('version')} (this code reads "
                                 f"{VERSION}); re-run prepare")
    missing = [k for k in (*_TENSORS, "classes", "name", "label", "meta") if k not in blob]
    if missing:
        raise DatasetError(path, f"incomplete prepared dataset (missing {', '.join(missing)})")
    if verify and tensor_digest(blob) != blob.get("tensor_sha256"):
        raise DatasetError(path, "checksum mismatch: the prepared file is damaged; re-run prepare")
    meta = dict(blob["meta"])
    meta["prepared_file"] = str(path)
    return ImageDataset(*(blob[k] for k in _TENSORS), classes=blob["classes"], name=blob["name"],
                        label=blob["label"], meta=meta)


def _load_index(path: Path, blob: dict, verify: bool) -> ImageIndex:
    """An `ImageIndex` file (kind imagenet); its labels and statistics are checksummed."""
    index = ImageIndex.from_blob(blob, path)
    keys = ("train_y", "test_y", *sorted(index.stats))
    if verify and tensor_digest({"train_y": index.train_y, "test_y": index.test_y,
                                 **index.stats}, keys) != blob.get("tensor_sha256"):
        raise DatasetError(path, "checksum mismatch: the prepared file is damaged; re-run prepare")
    index.meta = {**index.meta, "prepared_file": str(path)}
    return index
