"""CIFAR-10 / CIFAR-100 through torchvision.datasets.CIFAR10 / CIFAR100 (the real python pickles).

`root` may be a directory holding ``cifar-10-batches-py/`` (or ``cifar-100-python/``), that folder
itself, a directory holding torchvision's archive ``cifar-10-python.tar.gz``, or such an archive.
``download=True`` uses torchvision's own download, which checks the archive md5.

Checksums: by default (``verify=True``) torchvision's class checks every file against the md5s of
the official release, exactly as for a real download. ``verify`` may instead be a mapping
``{filename: md5}`` (checked by the same torchvision code with those md5s swapped in; this is how
the tests load tiny archives written in the real format) or ``False`` (presence only). Anything but
``True`` is recorded in ``meta["verified"]`` and the label says "unofficial files", so a figure can
never call a look-alike "CIFAR-10".
"""

from __future__ import annotations

import functools
import pickle
import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import calculate_md5

from .archives import file_digest, is_archive, safe_extract
from resnet_bench.infra.checks import Bool, Rule, Text, refuse

from .dataset import ImageDataset
from .errors import DatasetError
from .kind import DatasetKind, Option, register

_KINDS = {"cifar10": (CIFAR10, "CIFAR-10"), "cifar100": (CIFAR100, "CIFAR-100")}
DEFAULT_ROOT = "data"


def _files(cls: type[CIFAR10]) -> list[tuple[str, str]]:
    return [tuple(x) for x in cls.train_list + cls.test_list] + [
        (cls.meta["filename"], cls.meta["md5"])]


def _with_md5s(cls: type[CIFAR10], md5s: Mapping[str, str | None]) -> type[CIFAR10]:
    """torchvision's class with its md5 table replaced (None = presence only); same loading code."""
    def table(entries):
        return [[name, md5s[name]] for name, _ in entries]
    meta = dict(cls.meta, md5=md5s[cls.meta["filename"]])
    return type(f"{cls.__name__}WithMd5s", (cls,), {
        "train_list": table(cls.train_list), "test_list": table(cls.test_list), "meta": meta})


def _diagnose(folder: Path, expected: Mapping[str, str | None]) -> DatasetError:
    """Turn torchvision's generic 'not found or corrupted' into which file and why."""
    if not folder.is_dir():
        return DatasetError(folder, "directory not found")
    for name, md5 in expected.items():
        path = folder / name
        if not path.is_file():
            return DatasetError(path, "missing file")
        if md5 is not None and (got := calculate_md5(path)) != md5:
            return DatasetError(path, f"md5 mismatch (expected {md5}, got {got}); corrupt or not "
                                      "the official release (verify= can name other md5s)")
    return DatasetError(folder, "torchvision could not load it")


def _locate(root: Path, cls: type[CIFAR10], stack: ExitStack,
            cache_dir: str | None) -> tuple[Path, Path | None]:
    """(directory that contains cls.base_folder, archive it came from or None)."""
    archive = None
    if is_archive(root):
        archive = root
    elif (root / cls.base_folder).is_dir():
        return root, None
    elif root.name == cls.base_folder and root.is_dir():
        return root.parent, None
    elif (root / cls.filename).is_file():
        archive = root / cls.filename
    elif root.exists():
        raise DatasetError(root, f"no {cls.base_folder}/ or {cls.filename} here "
                                 "(download=True fetches it)")
    else:
        raise DatasetError(root, "path not found")
    # Extract into a temporary directory (or a persistent cache_dir): the data directory may be
    # read-only, and `prepare` caches the decoded tensors anyway.
    if cache_dir is not None:
        dest = Path(cache_dir) / archive.name.split(".")[0]
    else:
        dest = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="resnet-bench-cifar-")))
    if not (dest / cls.base_folder).is_dir():
        safe_extract(archive, dest)
    if not (dest / cls.base_folder).is_dir():
        raise DatasetError(archive, f"archive has no {cls.base_folder}/ folder")
    return dest, archive


def _to_tensors(ds: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
    return x, torch.as_tensor(ds.targets, dtype=torch.int64)


def load_cifar(kind: str, root: str | Path | None = None, *, download: bool = False,
               verify: bool | Mapping[str, str] = True, cache_dir: str | None = None,
               label: str | None = None) -> ImageDataset:
    cls, official = _KINDS[kind]
    root = Path(root if root is not None else DEFAULT_ROOT).expanduser()
    if verify is True:
        expected: dict[str, str | None] = dict(_files(cls))
        loader_cls, verified = cls, "torchvision md5 (official release)"
    else:
        if download:
            raise DatasetError(root, "download=True always verifies torchvision's md5s; "
                                     "drop verify=")
        names = [name for name, _ in _files(cls)]
        given = dict(verify) if verify else {}
        if unknown := sorted(set(given) - set(names)):
            raise DatasetError(root, f"verify names unknown file(s) {', '.join(unknown)}; "
                                     f"valid: {', '.join(names)}")
        expected = {name: given.get(name) for name in names}
        loader_cls = _with_md5s(cls, expected)
        verified = "custom md5 list" if given else "no (presence only)"

    with ExitStack() as stack:
        train = None
        if download:
            try:  # torchvision's own path: fetch, check the archive md5, extract, check files
                train = cls(str(root), train=True, download=True)
            except Exception as exc:  # network, disk or checksum failure: one line
                raise DatasetError(root, f"download failed ({type(exc).__name__}: {exc})") from exc
            base, archive = root, None
        else:
            base, archive = _locate(root, cls, stack, cache_dir)
        folder = base / cls.base_folder
        try:
            if train is None:
                train = loader_cls(str(base), train=True)
            test = loader_cls(str(base), train=False)
        except RuntimeError as exc:  # torchvision's integrity check failed
            raise _diagnose(folder, expected) from exc
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OSError,
                AttributeError, IndexError) as exc:
            raise DatasetError(folder, f"corrupt CIFAR pickle ({type(exc).__name__}: {exc})") \
                from exc
        train_x, train_y = _to_tensors(train)
        test_x, test_y = _to_tensors(test)
        md5s = {name: md5 if md5 is not None else calculate_md5(folder / name)
                for name, md5 in expected.items()}

    meta: dict[str, Any] = {
        "source": str(archive if archive is not None else folder),
        "format": f"CIFAR python pickles via torchvision.datasets.{cls.__name__}",
        "verified": verified, "md5": md5s,
        "train_size": len(train_y), "test_size": len(test_y),
        "channels": "RGB (native)", "image_size": [32, 32],
    }
    if archive is not None:
        meta["archive_sha256"] = file_digest(archive)
    if label is None:
        label = official if verify is True else f"{official} (unofficial files)"
    return ImageDataset(train_x, train_y, test_x, test_y, list(train.classes), name=kind,
                        label=label, meta=meta)


class Verify(Rule):
    """`verify`: true (the official md5s), false (presence only) or {file name: md5}."""

    def check(self, key: str, value: Any, where: str = "") -> bool | dict[str, str]:
        if isinstance(value, bool):
            return value
        if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
            return dict(value)
        raise refuse(key, value, "true, false or a mapping of file name to md5", where)

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "boolean"},
                          {"type": "object", "additionalProperties": {"type": "string"}}]}

    def cli(self) -> dict[str, Any]:
        return Bool().cli()

    def args(self, key: str, value: Any, where: str = "") -> list[str]:
        if isinstance(value, bool):
            return Bool().args(key, value, where)
        raise refuse(key, value, "true or false where the pipeline prepares the dataset (its "
                                 "options become flags of `resnet-bench data prepare`, and no "
                                 "flag carries a mapping)", where)


OPTIONS = (
    Option("download", Bool(), "download with torchvision (md5-checked) into the root"),
    Option("verify", Verify(), "check the official md5s (--no-verify: skip, recorded; the "
                               "label then says 'unofficial files')"),
    Option("cache_dir", Text(), "keep the extracted archive here instead of a temp dir"),
    Option("label", Text(), "label used on figures"),
)
CIFAR10, CIFAR100 = (
    register(DatasetKind(kind, functools.partial(load_cifar, kind), OPTIONS,
                         help=f"{official} (torchvision's python pickles: a directory or archive)",
                         train_size=lambda o: 50_000, image_size=lambda o: (32, 32)))
    for kind, (_, official) in _KINDS.items())
