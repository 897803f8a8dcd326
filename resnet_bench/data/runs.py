"""The data of one run: its dataset, checked for training, and what the run trains on.

The trainer and every analysis of a finished run (resnet_bench.inside) take a run's images from
here, so an analysis normalises with exactly the statistics the run trained and tested with.
"""

from __future__ import annotations

from typing import Any

from resnet_bench.infra.checks import refuse

from .dataset import MIN_IMAGE_SIDE, RunData
from .errors import DatasetError
from .registry import parse_source


def load_run_data(dataset: str, data_dir: str | None = None, prepared: str | None = None,
                  data_options: dict | None = None):
    """A run's dataset: its prepared file when it has one, else loaded by kind."""
    return parse_source(dataset, data_dir, prepared, data_options).load()


def check_fits(batch_size: int, val_split: int, n_train: int, dataset: str,
               where: str = "recipe key ") -> None:
    """The training set can hold out `val_split` images and still fill one batch.

    A batch larger than the training set is refused rather than filled by repeating images
    within the batch (the loader's epoch wrap assumes a batch spans at most two epochs)."""
    if val_split and val_split >= n_train:
        raise refuse("val_split", val_split,
                     f"fewer than the {n_train} training images of dataset {dataset}", where)
    left = n_train - val_split
    if batch_size > left:
        held = f" after holding out val_split={val_split}" if val_split else ""
        raise refuse("batch_size", batch_size,
                     f"at most the {left} training images of dataset {dataset}{held}", where)


def check_trainable(ds: Any, batch_size: int, val_split: int, dataset: str) -> None:
    """Sanity of a loaded dataset before anything is trained or written."""
    where = ds.meta.get("prepared_file") or ds.meta.get("source") or dataset
    if len(ds.classes) < 2:
        raise DatasetError(where, f"has {len(ds.classes)} class(es); training needs at least 2")
    present = int(ds.train_y.unique().numel()) if len(ds.train_y) else 0
    if present < 2:
        raise DatasetError(where, f"its training set holds {present} distinct label(s); "
                                  "training needs at least 2")
    if len(ds.test_y) == 0:
        raise DatasetError(where, "has an empty test set")
    train_x = getattr(ds, "train_x", None)  # a streamed set's crops are checked by its options
    if train_x is not None and min(train_x.shape[2:]) < MIN_IMAGE_SIDE:
        h, w = train_x.shape[2:]
        raise DatasetError(where, f"its images are {h}x{w}; training needs at least "
                                  f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (the nets halve the side "
                                  "twice, and a padded crop of a smaller image is mostly padding); "
                                  "prepare it with a larger image_size")
    check_fits(batch_size, val_split, len(ds.train_y), dataset)


def training_data(ds: Any, recipe, *, dataset: str, seed: int, device, rank: int = 0,
                  world_size: int = 1) -> RunData:
    """What a run trains on, after checking that `ds` (called `dataset`) can train with
    `recipe`: the loader its kind supplies (in memory or streamed) and the held-out sets."""
    check_trainable(ds, recipe.batch_size, recipe.val_split, dataset)
    return ds.training_data(recipe, seed=seed, device=device, rank=rank, world_size=world_size)
