"""Datasets (synthetic, CIFAR-10/100, ImageFolder trees), the prepared cache and the device loader;
the `imagenet` kind's index and its streaming loader (data.imagenet, data.stream).

See docs/architecture.md (contracts) and docs/datasets.md (what each dataset is and how it is read).
"""

from .dataset import DatasetError, ImageDataset
from .imagenet import ImageIndex
from .loader import DeviceLoader, Normalizer
from .prepared import load_prepared, prepare_dataset, save_prepared
from .registry import KINDS, load_dataset
from .split import validation_split

__all__ = ["DatasetError", "DeviceLoader", "ImageDataset", "ImageIndex", "KINDS", "Normalizer", "load_dataset",
           "load_prepared", "prepare_dataset", "save_prepared", "validation_split"]
