"""Datasets (synthetic, CIFAR-10/100, ImageFolder trees), the prepared cache and the device loader;
the `imagenet` kind's index and its streaming loader (data.imagenet, data.stream). Each dataset
kind is declared in its module (data.kind) and looked up through data.registry.

See docs/architecture.md (contracts) and docs/datasets.md (what each dataset is and how it is read).
"""

from .registry import load_dataset, prepare_dataset  # first: it registers the built-in kinds
from .dataset import ImageDataset  # noqa: I001
from .errors import DatasetError
from .imagenet import ImageIndex
from .loader import DeviceLoader, Normalizer
from .prepared import load_prepared, save_prepared
from .split import validation_split

__all__ = ["DatasetError", "DeviceLoader", "ImageDataset", "ImageIndex", "Normalizer",
           "load_dataset", "load_prepared", "prepare_dataset", "save_prepared",
           "validation_split"]
