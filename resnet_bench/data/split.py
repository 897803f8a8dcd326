"""Deterministic stratified hold-out of `n` training images (the papers' 45k/5k split)."""

from __future__ import annotations

import torch

from .errors import DatasetError


def validation_split(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (train_x, train_y, val_x, val_y) with `n` images held out, stratified by class.

    Each class gives up n * (its share of the data) images, rounded by largest remainder so the
    total is exactly n. Which images go is drawn from a generator seeded by `seed` alone (not the
    run seed), so every run of an experiment validates on the same images. Both parts keep the
    original order of the examples.
    """
    y = y.cpu()  # bookkeeping on CPU; only the final indexing touches x's device
    total = len(y)
    if not 0 < n < total:
        raise DatasetError("validation split", f"n must be in 1..{total - 1}, got {n}")
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * n / total
    take = exact.floor().long()
    # largest remainder; ties go to the lower class index, deterministically
    extra = n - int(take.sum())
    order = torch.argsort(-(exact - take.double()), stable=True)
    take[order[:extra]] += 1

    gen = torch.Generator().manual_seed(int(seed))
    is_val = torch.zeros(total, dtype=torch.bool)
    for c, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(y == c).flatten()
        is_val[members[torch.randperm(len(members), generator=gen)[:k]]] = True
    val_idx = torch.nonzero(is_val).flatten()
    train_idx = torch.nonzero(~is_val).flatten()
    dev = x.device
    return (x[train_idx.to(dev)], y[train_idx].to(dev), x[val_idx.to(dev)], y[val_idx].to(dev))


def split_training_set(train_x, train_y, val_split: int):
    """(train_x, train_y, val or None): what a run trains and normalises on, and its hold-out.
    One fixed hold-out (seed 0) for every run and seed, as the paper's single 45k/5k split."""
    if not val_split:
        return train_x, train_y, None
    train_x, train_y, val_x, val_y = validation_split(train_x, train_y, val_split, seed=0)
    return train_x, train_y, (val_x, val_y)
