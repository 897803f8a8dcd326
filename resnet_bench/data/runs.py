"""The data of one run: its dataset and the part of the training set it trains on.

The trainer and every analysis of a finished run (resnet_bench.inside) take a run's images from
here, so an analysis normalises with exactly the statistics the run trained and tested with.
"""

from __future__ import annotations

from resnet_bench.data.prepared import load_prepared
from resnet_bench.data.registry import load_dataset
from resnet_bench.data.split import validation_split


def load_run_data(dataset: str, data_dir: str | None = None, prepared: str | None = None,
                  data_options: dict | None = None):
    """A run's dataset: its prepared file when it has one, else loaded by kind."""
    if prepared:
        return load_prepared(prepared)
    return load_dataset(dataset, data_dir, **(data_options or {}))


def split_training_set(train_x, train_y, val_split: int):
    """(train_x, train_y, val or None): what a run trains and normalises on, and its hold-out.
    One fixed hold-out (seed 0) for every run and seed, as the paper's single 45k/5k split."""
    if not val_split:
        return train_x, train_y, None
    train_x, train_y, val_x, val_y = validation_split(train_x, train_y, val_split, seed=0)
    return train_x, train_y, (val_x, val_y)
