"""`load_dataset(kind, root, **options)`: one entry point over the dataset kinds."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from .cifar import load_cifar
from .dataset import DatasetError, ImageDataset
from .folder import load_folder
from .imagenet import ImageIndex, load_imagenet
from .synthetic import load_synthetic

LOADERS: dict[str, Callable[..., ImageDataset | ImageIndex]] = {
    "synthetic": load_synthetic,
    "cifar10": lambda root=None, **kw: load_cifar("cifar10", root, **kw),
    "cifar100": lambda root=None, **kw: load_cifar("cifar100", root, **kw),
    "folder": load_folder,
    "imagenet": load_imagenet,  # an index of files, streamed per batch (resnet_bench.data.stream)
}
KINDS = tuple(LOADERS)
# Other names for a kind (torchvision's), resolved here so a run records the kind's own name.
KIND_ALIASES = {"imagefolder": "folder"}
_OPTION_SOURCES = {"synthetic": load_synthetic, "cifar10": load_cifar, "cifar100": load_cifar,
                   "folder": load_folder, "imagenet": load_imagenet}


def canonical_kind(kind: str) -> str:
    """`imagefolder` -> `folder`; any other name as it is."""
    return KIND_ALIASES.get(kind, kind)


def options_for(kind: str) -> list[str]:
    """Keyword options a kind accepts (for error messages and the CLI)."""
    sig = inspect.signature(_OPTION_SOURCES[canonical_kind(kind)])
    return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def load_dataset(kind: str, root: str | Path | None = None, **options
                 ) -> ImageDataset | ImageIndex:
    """Load a dataset of `kind` (synthetic, cifar10, cifar100, folder or imagefolder) from `root`;
    kind imagenet gives an `ImageIndex` (files and statistics), not images in memory."""
    kind = canonical_kind(kind)
    if kind not in LOADERS:
        raise DatasetError(kind, f"unknown dataset kind; valid kinds: {', '.join(KINDS)}")
    valid = options_for(kind)
    if unknown := sorted(set(options) - set(valid)):
        raise DatasetError(kind, f"unknown option(s) {', '.join(unknown)}; "
                                 f"valid: {', '.join(valid)}")
    from resnet_bench.validation import check_dataset_options
    check_dataset_options(kind, options)  # types and ranges, the trainer's and pipeline's rules
    return LOADERS[kind](root, **options)
