"""ImageFolder trees: ``train/<class>/*`` and ``test/<class>/*``, as a directory or a tar archive.

Classes are the sorted sub-folder names of ``train/`` (torchvision's ImageFolder rule; hidden
folders and files are ignored) and ``test/`` must have the same ones. Files count as images by
torchvision's IMG_EXTENSIONS. The tree may sit at the root or one folder down (as in
``cifar10-jpeg.tar.gz`` -> ``cifar10-jpeg/train/...``).

Archives are read member by member straight from the tar stream instead of being extracted:
nothing is written (the shared data folder is read-only; extracting 60k small files costs more
than decoding them), so no member path can escape anywhere. ``prepare`` caches the tensors.

Image handling is explicit and recorded in ``meta``:

* ``channels``: ``"rgb"`` (default; grey is replicated, alpha dropped), ``"l"`` (ITU-R 601-2
  luma, alpha dropped) or ``"keep"`` (every image must already have the same channel count);
* ``image_size``: ``None`` (every image must have the size of the first one, else an error), or an
  int / (h, w) that images of another size are stretched to (bilinear, antialiased);
* ``max_per_class``: keep the first k files (sorted by name) per class and split, for quick slices.

Label: the content fingerprint (sha256 over the sorted relative paths, lengths and bytes of the
files in ``train/`` and ``test/``) and, for an archive, the archive's sha256 are compared with the
public datasets (`resnet_bench.public_data`), so the CIFAR-10 JPEG mirror is labelled
"CIFAR-10 (JPEG q75 mirror)" whether it is given as a tarball, re-packed, extracted or as the
archive GitHub builds of its repository (whose README sits beside train/ and test/). An explicit
``label`` always wins; unknown trees get "<name> (folder)".
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tarfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from .archives import file_digest, is_archive, open_tar
from resnet_bench.infra.checks import (MAX_IMAGES, NAME_PATTERN, Choice, Int, Rule, Text, flag,
                                       integer)

from .dataset import MIN_IMAGE_SIDE, ImageDataset
from .errors import DatasetError
from .kind import DatasetKind, Option, register
from .images import CHANNEL_MODES, convert_channels, decode_all, resize
from resnet_bench.public_data import known_by_archive, known_by_content

SPLITS = ("train", "test")
_DECODE_CHUNK = 4096  # images decoded per step; bounds the transient per-image tensors


def _hidden(rel: str) -> bool:
    return rel.startswith(".") or "/." in rel  # any path component starting with a dot


def _read_archive(path: Path) -> tuple[dict[str, bytes], set[str]]:
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    tar = open_tar(path, stream=True)
    try:
        with tar:
            for m in tar:
                name = m.name.removeprefix("./")
                if _hidden(name):
                    continue
                if m.isdir():
                    dirs.add(name.rstrip("/"))
                elif m.isfile():
                    files[name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # truncated gzip, bad header
        raise DatasetError(path, f"corrupt archive ({type(exc).__name__}: {exc})") from exc
    # tar files do not always list parent folders: derive them (from the few unique parents)
    for parent in {n.rsplit("/", 1)[0] for n in files if "/" in n} | set(dirs):
        parts = parent.split("/")
        dirs.update("/".join(parts[:k]) for k in range(1, len(parts) + 1))
    return files, dirs


def _read_dir(root: Path) -> tuple[dict[str, bytes], set[str]]:
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    seen: set[str] = set()
    # Symbolic links are followed (a class folder linked from elsewhere is a class folder), each
    # real directory once, so a link loop ends.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for d in dirnames:
            dirs.add(d if rel_dir == "." else f"{rel_dir}/{d}")
        for f in filenames:
            if f.startswith("."):
                continue
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            try:
                files[rel] = (Path(dirpath) / f).read_bytes()
            except OSError as exc:
                raise DatasetError(Path(dirpath) / f, f"unreadable ({exc.strerror})") from exc
    return files, dirs


def _tree_prefix(where: Path, dirs: set[str]) -> str:
    """'' when train/ and test/ sit at the root, else 'top/' for a single wrapping folder."""
    if {"train", "test"} <= dirs:
        return ""
    tops = {d.split("/")[0] for d in dirs}
    found = [t for t in sorted(tops) if {f"{t}/train", f"{t}/test"} <= dirs]
    if len(found) == 1:
        return found[0] + "/"
    if not dirs and not found:
        raise DatasetError(where, "empty: expected an ImageFolder tree train/<class>/*, "
                                  "test/<class>/*")
    raise DatasetError(where, "no train/ and test/ folders (expected train/<class>/*, "
                              "test/<class>/* at the top or one folder down)")


def _fingerprint(files: dict[str, bytes], prefix: str) -> str:
    h = hashlib.sha256()
    trees = tuple(f"{prefix}{split}/" for split in SPLITS)
    for rel in sorted(r for r in files if r.startswith(trees)):
        data = files[rel]
        h.update(f"{rel[len(prefix):]}\n{len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def _read(root: Path) -> tuple[str | None, dict[str, bytes], set[str]]:
    """(archive sha256 or None, files, folders) of a directory or tar archive."""
    if is_archive(root):
        return file_digest(root), *_read_archive(root)
    if root.is_dir():
        return None, *_read_dir(root)
    if root.exists():
        raise DatasetError(root, "neither a directory nor a .tar/.tar.gz/.tgz archive")
    raise DatasetError(root, "path not found")


def content_fingerprint(root: str | Path) -> str:
    """The content fingerprint of an ImageFolder tree or archive (module docstring), the one
    `resnet_bench.public_data` records."""
    root = Path(root)
    _, files, dirs = _read(root)
    return _fingerprint(files, _tree_prefix(root, dirs))


def _select(where: Path, files: dict[str, bytes], dirs: set[str], prefix: str,
            max_per_class: int | None) -> tuple[list[str], dict[str, list[list[str]]], int]:
    """classes, {split: [[relpath per image] per class]}, number of non-image files skipped."""
    per_split: dict[str, dict[str, list[str]]] = {}
    skipped = 0
    for split in SPLITS:
        base = f"{prefix}{split}/"
        by_class: dict[str, list[str]] = {
            d[len(base):]: [] for d in dirs if d.startswith(base) and "/" not in d[len(base):]}
        for rel in files:
            if rel.startswith(base) and "/" in rel[len(base):]:
                if rel.lower().endswith(IMG_EXTENSIONS):
                    by_class[rel[len(base):].split("/")[0]].append(rel)
                else:
                    skipped += 1
        if not by_class:
            raise DatasetError(f"{where}/{base}", "no class folders")
        for c, items in sorted(by_class.items()):
            if not items:
                raise DatasetError(f"{where}/{base}{c}", "class folder has no images "
                                   f"({', '.join(e.lstrip('.') for e in IMG_EXTENSIONS)})")
            items.sort()
            if max_per_class is not None:
                del items[max_per_class:]
        per_split[split] = by_class
    train_c, test_c = sorted(per_split["train"]), sorted(per_split["test"])
    if train_c != test_c:
        only_train = sorted(set(train_c) - set(test_c)) or ["-"]
        only_test = sorted(set(test_c) - set(train_c)) or ["-"]
        raise DatasetError(where, f"train and test class folders differ (only in train: "
                                  f"{', '.join(only_train)}; only in test: {', '.join(only_test)})")
    return train_c, {s: [per_split[s][c] for c in train_c] for s in SPLITS}, skipped


def _as_size(image_size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = (int(v) for v in image_size)
    return (h, w)


def load_folder(root: str | Path | None, *, image_size: int | tuple[int, int] | None = None,
                channels: str = "rgb", max_per_class: int | None = None,
                label: str | None = None, name: str | None = None) -> ImageDataset:
    if root is None:
        raise DatasetError("folder", "needs a root (a directory or a .tar/.tar.gz archive)")
    root = Path(root).expanduser()
    channels = channels.lower()
    if channels not in CHANNEL_MODES:
        raise DatasetError(root, f"channels must be one of {', '.join(CHANNEL_MODES)}; "
                                 f"got {channels!r}")
    if max_per_class is not None and int(max_per_class) < 1:
        raise DatasetError(root, f"max_per_class must be >= 1, got {max_per_class}")
    size = _as_size(image_size)

    archive_sha, files, dirs = _read(root)
    prefix = _tree_prefix(root, dirs)
    content_sha = _fingerprint(files, prefix)
    classes, chosen, skipped = _select(root, files, dirs, prefix, max_per_class)

    known = known_by_archive(archive_sha) or known_by_content(content_sha)
    default_name = root.name.split(".")[0] if archive_sha else root.name
    name = name or (known.key if known else default_name)
    label_source = "option" if label else ("known dataset" if known else "default")
    label = label or (known.label if known else f"{name} (folder)")

    xs: dict[str, torch.Tensor] = {}
    ys: dict[str, torch.Tensor] = {}
    modes: Counter = Counter()
    resized = 0
    first: tuple[str, tuple[int, ...]] | None = None  # (where, shape) of the reference image
    for split in SPLITS:
        rels = [r for per_class in chosen[split] for r in per_class]
        labels = [k for k, per_class in enumerate(chosen[split]) for _ in per_class]
        wheres = [f"{root}:{r}" if archive_sha else str(root / r) for r in rels]
        out: torch.Tensor | None = None  # allocated at the first image: no list of 60k tensors
        for s in range(0, len(rels), _DECODE_CHUNK):
            stop = min(s + _DECODE_CHUNK, len(rels))
            chunk = [(wheres[k], files[rels[k]]) for k in range(s, stop)]
            imgs, chunk_modes = decode_all(chunk)
            modes.update(chunk_modes)
            for k, ((where, _), img) in enumerate(zip(chunk, imgs), start=s):
                img = convert_channels(img, channels)
                if first is None:
                    first = (where, tuple(img.shape))
                if channels == "keep" and img.shape[0] != first[1][0]:
                    raise DatasetError(where, f"has {img.shape[0]} channels but {first[0]} has "
                                              f"{first[1][0]}; use channels='rgb' or 'l'")
                hw = tuple(img.shape[1:])
                if size is None and hw != first[1][1:]:
                    raise DatasetError(where, f"is {hw[0]}x{hw[1]} but {first[0]} is "
                                              f"{first[1][1]}x{first[1][2]}; pass image_size to "
                                              "resize")
                if size is not None and hw != size:
                    img = resize(img, size)
                    resized += 1
                if out is None:
                    out = torch.empty((len(rels), *img.shape), dtype=torch.uint8)
                out[k] = img
        xs[split] = out
        ys[split] = torch.tensor(labels, dtype=torch.int64)

    out_c, out_h, out_w = xs["train"].shape[1:]
    meta: dict[str, Any] = {
        "source": str(root),
        "format": "ImageFolder tree (train/<class>/*, test/<class>/*)",
        "content_sha256": content_sha,
        "label_source": label_source,
        "train_size": len(ys["train"]), "test_size": len(ys["test"]),
        "max_per_class": max_per_class,
        "source_modes": dict(sorted(modes.items())),
        "channels": {"rgb": "RGB (grey replicated, alpha dropped)",
                     "l": "L (ITU-R 601-2 luma, alpha dropped)",
                     "keep": "kept as stored (all images agree)"}[channels] + f" -> {out_c}",
        "image_size": [int(out_h), int(out_w)],
        "resize": (f"stretched to {size[0]}x{size[1]} (bilinear, antialiased): {resized} images"
                   if size else "none (all images already share one size)"),
        "skipped_non_images": skipped,
    }
    if archive_sha:
        meta["archive_sha256"] = archive_sha
    return ImageDataset(xs["train"], ys["train"], xs["test"], ys["test"], classes, name=name,
                        label=label, meta=meta)


class ImageSize(Rule):
    """`image_size`: a side N or [height, width], each at least MIN_IMAGE_SIDE."""

    def check(self, key: str, value: Any, where: str = "") -> int | list[int]:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return [integer(key, v, MIN_IMAGE_SIDE, 4096, where=where) for v in value]
        return integer(key, value, MIN_IMAGE_SIDE, 4096, where=where)

    def schema(self) -> dict[str, Any]:
        side = {"type": "integer", "minimum": MIN_IMAGE_SIDE, "maximum": 4096}
        return {"oneOf": [side, {"type": "array", "items": side, "minItems": 2, "maxItems": 2}]}

    def cli(self) -> dict[str, Any]:
        return {"type": _image_size_arg}

    def args(self, key: str, value: Any, where: str = "") -> list[str]:
        return [flag(key), "x".join(map(str, value)) if isinstance(value, (list, tuple))
                else str(value)]


def _image_size_arg(text: str) -> int | list[int]:
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x")
            return [int(h), int(w)]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None


KIND = register(DatasetKind(
    "folder", load_folder,
    options=(Option("image_size", ImageSize(), "stretch images to N or HxW"),
             Option("channels", Choice(CHANNEL_MODES), "rgb (grey replicated), l (luma) or keep"),
             Option("max_per_class", Int(1, MAX_IMAGES), "first K files per class and split"),
             Option("label", Text(), "label used on figures"),
             Option("name", Text(NAME_PATTERN), "short dataset name (default: from the "
                                                "folder/archive)")),
    help="an ImageFolder tree train/<class>/*, test/<class>/* (a directory or .tar archive), "
         "decoded into memory",
    aliases=("imagefolder",),  # torchvision's name
    image_size=lambda o: _as_size(o["image_size"])))
