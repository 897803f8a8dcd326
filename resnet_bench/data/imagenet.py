"""The `imagenet` kind: an ImageFolder directory read from disk per batch, and its augmentation.

Tree: ``train/<class>/**`` and ``val/<class>/**`` (or ``test/<class>/**``; ``val`` wins when both
exist) with the same class folders; classes are the sorted folder names of ``train/`` and files
count as images by torchvision's IMG_EXTENSIONS, hidden files and folders ignored (the `folder`
kind's rules). Directories only: an archive is refused (extract it, or use kind `folder`).
Images may have any size. Nothing is decoded into memory: `load_imagenet` returns an `ImageIndex`
(file list, labels, classes, a content fingerprint and the normalisation statistics) that
`resnet-bench data prepare` writes instead of tensors and the streaming loader
(resnet_bench.data.stream) reads from.

Augmentation (He et al. 2015, Sec. 3.4, following AlexNet and VGG), all sizes options:

* scale augmentation: the shorter side is resized (bilinear, antialiased) to an integer drawn
  uniformly from [resize_min, resize_max] (paper: [256, 480]);
* a random crop x crop window (paper: 224), drawn uniformly among all positions;
* a horizontal flip with probability 1/2;
* per-pixel mean subtraction: x/255 minus the mean image (crop x crop) of the statistics sample;
* AlexNet's PCA colour augmentation: each image gets sum_k alpha_k lambda_k p_k added to every
  pixel, alpha_k ~ N(0, pca_std) (paper: 0.1), p_k, lambda_k the eigenvectors and eigenvalues of
  the 3x3 RGB covariance of the statistics sample (pixel values in [0, 1]); pca_std=0 turns it off.

A scaled preset trains at 128 px with resize_min=146, resize_max=274, crop=128, test_resize=146
(the paper's sizes times 128/224).

Evaluation (`final_eval`, the protocol of the final test; evaluations during training always use
`center`):

* ``center``: shorter side test_resize (256), the centre crop x crop window (224);
* ``ten_crop``: the same resize, the 4 corner and the centre crops and their flips (V1 Table 3);
* ``multiscale``: the fully-convolutional test (V1 Table 4/5): the whole image with its shorter
  side at each of `test_scales` (224, 256, 384, 480, 640), and its flip. The networks end in
  global average pooling, so any size goes through. Flips are averaged too, as in VGG's dense
  evaluation the paper follows.

Scores of the views of one image are averaged as softmax probabilities (log-mean-exp of the
log-probabilities); top-1 and top-5 errors are both reported.

Statistics (mean image, per-channel mean/std, RGB covariance and its eigen-decomposition) come
from a fixed sample of `stats_images` training images drawn by a generator seeded with
(`STATS_SEED`, a fixed tag), independent of the run seed; the sample's indices are recorded in
the index. Each sample image is resized to test_resize and centre-cropped to crop x crop.

How this deviates from the papers' pipelines (Caffe for V1, fb.resnet.torch / Torch for V2):

* Caffe subtracts a 256x256 mean image at the crop's position before cropping; here the mean
  image is crop x crop (from centre crops of the sample) and subtracted from every crop as it
  is, since after scale augmentation to up to 480 px a 256x256 mean has no fixed alignment. The
  flip is applied before the mean subtraction (the mean image is not mirrored).
* For the multi-scale test (whole images of any size) the per-channel mean (the spatial mean of
  the mean image) is subtracted instead of the mean image.
* The statistics come from a sample (default 10,000 images), not the whole training set, and
  from centre crops only; the RGB covariance of AlexNet was over all training pixels.
* Resizing is torchvision's antialiased bilinear on uint8 tensors, not OpenCV's (Caffe) or
  Torch's image.scale; JPEGs are decoded by libjpeg-turbo (torchvision.io), so pixels may differ
  by a few levels from other decoders.
* fb.resnet.torch (V2's code) used per-channel mean/std, Inception-style scale/aspect
  augmentation and colour jitter: `normalize: channel` gives its normalisation, not its crops.

GPU decoding (`decode="cuda"`, torchvision.io.decode_jpeg on the device) is an option for CUDA
machines; it was not run on the CPU-only machine this was written on (see docs/datasets.md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from resnet_bench.infra.checks import (MAX_IMAGES, NAME_PATTERN, Choice, ConfigError, Int, Num, Rule,
                                 Text, flag, integer, refuse)

from .errors import DatasetError
from .kind import DatasetKind, Option, register
from .loader import _generator
from .stream import stream_for_run
from .views import EVAL_MODES, center_view, decode_rgb, read_bytes

FORMAT = "resnet-bench-image-index"
VERSION = 1
TEST_SPLITS = ("val", "test")          # the held-out folder: val/ if present, else test/
PAPER_SCALES = (224, 256, 384, 480, 640)
STATS_SEED = 0
_STATS_STREAM = 0x53544154  # tag of the statistics sample's generator
_CHUNK = 1 << 20


@dataclass
class ImageIndex:
    """Where the images of an ImageFolder tree are, their labels and normalisation statistics.

    `train_y`/`test_y` are int64 labels (so the dataset checks of resnet_bench.data.runs apply
    unchanged); `options` holds the augmentation and evaluation sizes, `stats` float32 tensors
    `mean_image` [3,crop,crop], `mean` [3], `std` [3], `eigval` [3], `eigvec` [3,3] (columns),
    and `sample`, the int64 indices of the training images they were computed from.
    """

    root: str
    classes: list[str]
    train_files: list[str]
    train_y: torch.Tensor
    test_files: list[str]
    test_y: torch.Tensor
    name: str
    label: str
    options: dict[str, Any]
    stats: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    streaming = True  # read per batch by resnet_bench.data.stream, not held in memory

    def training_data(self, recipe, *, seed: int, device, rank: int = 0, world_size: int = 1):
        """The run's streaming loader (resnet_bench.data.stream)."""
        return stream_for_run(self, recipe, seed=seed, device=device, rank=rank,
                              world_size=world_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def path(self, rel: str) -> Path:
        return Path(self.root) / rel

    def summary(self) -> str:
        o = self.options
        return (f"{self.label} [{self.name}]: {len(self.train_files)} train / "
                f"{len(self.test_files)} {self.meta.get('test_split', 'test')} images (streamed "
                f"from {self.root}), crop {o['crop']} from shorter side "
                f"[{o['resize_min']}, {o['resize_max']}], {self.num_classes} classes")

    # ---- the prepared file's content (resnet_bench.data.prepared writes and reads it) -------
    def to_blob(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "root": self.root,
                "classes": list(self.classes), "train_files": list(self.train_files),
                "train_y": self.train_y, "test_files": list(self.test_files),
                "test_y": self.test_y, "name": self.name, "label": self.label,
                "options": dict(self.options), "stats": dict(self.stats), "meta": self.meta}

    @classmethod
    def from_blob(cls, blob: dict[str, Any], where: Any) -> "ImageIndex":
        if blob.get("version") != VERSION:
            raise DatasetError(where, f"index format version {blob.get('version')} (this code "
                                      f"reads {VERSION}); re-run prepare")
        keys = ("root", "classes", "train_files", "train_y", "test_files", "test_y", "name",
                "label", "options", "stats", "meta")
        if missing := [k for k in keys if k not in blob]:
            raise DatasetError(where, f"incomplete image index (missing {', '.join(missing)})")
        index = cls(**{k: blob[k] for k in keys})
        if not Path(index.root).is_dir():
            raise DatasetError(where, f"its image root {index.root} is not a directory (moved? "
                                      "re-run prepare)")
        return index


# ---- reading the tree ---------------------------------------------------------------------------

def _class_dirs(where: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(where) if e.is_dir() and not e.name.startswith("."))


def _images_under(folder: Path) -> list[str]:
    """Relative paths (to `folder`) of the image files below it, sorted, hidden ones skipped."""
    out = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):  # links: as folders
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(folder)
        out += [(rel / f).as_posix() for f in filenames
                if not f.startswith(".") and f.lower().endswith(IMG_EXTENSIONS)]
    return sorted(out)


def scan_tree(root: Path, max_per_class: int | None = None
              ) -> tuple[list[str], str, dict[str, tuple[list[str], list[int]]]]:
    """classes, the held-out split's name, {"train"/"test": (relative paths, labels)}."""
    if not root.exists():
        raise DatasetError(root, "path not found")
    if not root.is_dir():
        raise DatasetError(root, "not a directory (kind imagenet reads an ImageFolder directory "
                                 "train/<class>/*, val/<class>/*; extract archives first)")
    if not (root / "train").is_dir():
        raise DatasetError(root, "no train/ folder (expected train/<class>/*, val/<class>/* or "
                                 "test/<class>/*)")
    held = next((s for s in TEST_SPLITS if (root / s).is_dir()), None)
    if held is None:
        raise DatasetError(root, "no val/ or test/ folder next to train/ (expected "
                                 "val/<class>/* or test/<class>/*)")
    classes = {s: _class_dirs(root / s) for s in ("train", held)}
    for s, found in classes.items():
        if not found:
            raise DatasetError(root / s, "no class folders")
    if classes["train"] != classes[held]:
        only_train = sorted(set(classes["train"]) - set(classes[held])) or ["-"]
        only_held = sorted(set(classes[held]) - set(classes["train"])) or ["-"]
        raise DatasetError(root, f"train and {held} class folders differ (only in train: "
                                 f"{', '.join(only_train)}; only in {held}: "
                                 f"{', '.join(only_held)})")
    splits = {}
    for split, folder in (("train", "train"), ("test", held)):
        files, labels = [], []
        for k, c in enumerate(classes["train"]):
            found = _images_under(root / folder / c)
            if not found:
                raise DatasetError(root / folder / c, "class folder has no images "
                                   f"({', '.join(e.lstrip('.') for e in IMG_EXTENSIONS)})")
            found = found[:max_per_class] if max_per_class else found
            files += [f"{folder}/{c}/{f}" for f in found]
            labels += [k] * len(found)
        splits[split] = (files, labels)
    return classes["train"], held, splits


def fingerprint(root: Path, files: list[str]) -> str:
    """sha256 over the sorted relative paths, sizes and bytes of the images (reads every file)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        path = root / rel
        try:
            h.update(f"{rel}\n{path.stat().st_size}\n".encode())
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except OSError as exc:
            raise DatasetError(path, f"unreadable ({exc.strerror})") from exc
    return h.hexdigest()


# ---- statistics ---------------------------------------------------------------------------------

def sample_indices(n_train: int, k: int) -> list[int]:
    """The fixed statistics sample: k of n_train training images, sorted (independent of runs)."""
    gen = _generator(STATS_SEED, _STATS_STREAM)
    return sorted(torch.randperm(n_train, generator=gen)[:min(k, n_train)].tolist())


def compute_stats(root: Path, files: list[str], sample: list[int], options: dict[str, Any]
                  ) -> dict[str, torch.Tensor]:
    """Mean image, channel mean/std, RGB covariance eigen-decomposition over the sample's centre
    crops (shorter side test_resize, crop x crop), pixel values in [0, 1]."""
    crop = options["crop"]
    total = torch.zeros(3, crop, crop, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    for s in range(0, len(sample), 256):
        chunk = [(str(root / files[k]), read_bytes(root / files[k])) for k in sample[s:s + 256]]
        for img in decode_rgb(chunk):
            x = center_view(img, options["test_resize"], crop).double().div_(255.0)
            total += x
            flat = x.reshape(3, -1)
            outer += flat @ flat.T
    n, pixels = len(sample), len(sample) * crop * crop
    mean_image = total / n
    mean = mean_image.mean((1, 2))
    cov = outer / pixels - torch.outer(mean, mean)
    eigval, eigvec = torch.linalg.eigh(cov)
    return {"mean_image": mean_image.float(), "mean": mean.float(),
            "std": cov.diagonal().clamp_min(1e-12).sqrt().float(),
            "eigval": eigval.clamp_min(0).float(), "eigvec": eigvec.float()}


def load_imagenet(root: str | Path | None, *, resize_min: int = 256, resize_max: int = 480,
                  crop: int = 224, test_resize: int = 256, pca_std: float = 0.1,
                  stats_images: int = 10_000, final_eval: str = "center",
                  test_scales: list[int] | tuple[int, ...] = PAPER_SCALES, decode: str = "cpu",
                  max_per_class: int | None = None, label: str | None = None,
                  name: str | None = None) -> ImageIndex:
    """Index an ImageFolder tree for streaming and compute its statistics (see the module doc).
    The options are checked by the kind's declaration (KIND, below), sizes included."""
    if root is None:
        raise DatasetError("imagenet", "needs a root (an ImageFolder directory)")
    root = Path(root).expanduser().resolve()
    options = {"resize_min": int(resize_min), "resize_max": int(resize_max), "crop": int(crop),
               "test_resize": int(test_resize), "pca_std": float(pca_std),
               "final_eval": final_eval, "test_scales": [int(s) for s in test_scales],
               "decode": decode}
    classes, held, splits = scan_tree(root, max_per_class)
    (train_files, train_y), (test_files, test_y) = splits["train"], splits["test"]
    sample = sample_indices(len(train_files), int(stats_images))
    stats = compute_stats(root, train_files, sample, options)
    stats["sample"] = torch.tensor(sample, dtype=torch.int64)  # recorded: which images
    content = fingerprint(root, train_files + test_files)
    name = name or root.name
    meta = {"source": str(root), "format": "ImageFolder tree (train/<class>/*, "
                                           f"{held}/<class>/*), streamed per batch",
            "test_split": held, "content_sha256": content, "max_per_class": max_per_class,
            "label_source": "option" if label else "default",
            "stats_sample": {"seed": STATS_SEED, "images": len(sample),
                             "views": f"shorter side {test_resize}, centre {crop}x{crop}"},
            "options": options,
            "mean": [round(v, 6) for v in stats["mean"].tolist()],
            "std": [round(v, 6) for v in stats["std"].tolist()],
            "eigval": [float(f"{v:.6g}") for v in stats["eigval"].tolist()]}
    return ImageIndex(root=str(root), classes=classes, train_files=train_files,
                      train_y=torch.tensor(train_y, dtype=torch.int64), test_files=test_files,
                      test_y=torch.tensor(test_y, dtype=torch.int64), name=name,
                      label=label or f"{name} (ImageNet-style folder)", options=options,
                      stats=stats, meta=meta)


class Sizes(Rule):
    """`test_scales`: a non-empty list of shorter sides."""

    def check(self, key: str, value: Any, where: str = "") -> list[int]:
        allowed = "a non-empty list of integers in 1..4096"
        if not isinstance(value, (list, tuple)) or not value:
            raise refuse(key, value, allowed, where)
        try:
            return [integer(key, v, 1, 4096) for v in value]
        except ConfigError:
            raise refuse(key, list(value), allowed, where) from None

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4096},
                "minItems": 1}

    def cli(self) -> dict[str, Any]:
        return {"type": _sizes_arg}

    def args(self, key: str, value: Any, where: str = "") -> list[str]:
        return [flag(key), ",".join(map(str, value))]


def _sizes_arg(text: str) -> list[int]:
    """224,256,384 (or [224, 256, 384])."""
    try:
        values = [int(v) for v in text.strip("[] ").replace(",", " ").split()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected sizes such as 224,256,384; got {text!r}")
    return values


def _crop_fits(o: dict[str, Any], where: str) -> None:
    """The crop must fit every shorter side it is cut from."""
    if o["resize_min"] > o["resize_max"]:
        raise refuse("resize_min", o["resize_min"], f"at most resize_max ({o['resize_max']})",
                     where)
    for key in ("resize_min", "test_resize"):
        if o["crop"] > o[key]:
            raise refuse("crop", o["crop"], f"at most {key} ({o[key]}), the shorter side it is "
                                            "cut from", where)


_SIDE = Int(1, 4096)
KIND = register(DatasetKind(
    "imagenet", load_imagenet,
    options=(Option("resize_min", _SIDE, "scale augmentation: shortest shorter side"),
             Option("resize_max", _SIDE, "scale augmentation: longest shorter side"),
             Option("crop", _SIDE, "training and test crop"),
             Option("test_resize", _SIDE, "test: shorter side before the crop"),
             Option("pca_std", Num(0), "std of AlexNet's PCA colour alphas (0: off)"),
             Option("stats_images", Int(1, MAX_IMAGES),
                    "training images of the fixed statistics sample"),
             Option("final_eval", Choice(EVAL_MODES), "protocol of the final test"),
             Option("test_scales", Sizes(), "multiscale test: shorter sides"),
             Option("decode", Choice(("cpu", "cuda")),
                    "cuda: decode JPEGs on the GPU (nvJPEG; untested here)"),
             Option("max_per_class", Int(1, MAX_IMAGES), "first K files per class and split"),
             Option("label", Text(), "label used on figures"),
             Option("name", Text(NAME_PATTERN), "short dataset name (default: the folder's)")),
    help="an ImageFolder directory train/<class>/*, val/<class>/* streamed from disk per batch "
         "(writes an index of files and statistics)",
    streamed=True, check=_crop_fits,
    image_size=lambda o: (int(o["crop"]), int(o["crop"]))))
