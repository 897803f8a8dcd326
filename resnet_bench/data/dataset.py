"""The in-memory dataset the in-memory kinds load, and what a run trains on (`RunData`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import DatasetError
from .loader import DeviceLoader
from .split import split_training_set

# The smallest training image: the CIFAR nets halve the side twice (8x8 -> 2x2 in the last
# stage), and with the papers' 4-pixel padding a random crop of a smaller image is mostly padding
# (over 75% of the pixels a 1x1 image's crop can cover are).
MIN_IMAGE_SIDE = 8


@dataclass
class RunData:
    """What a run trains and evaluates on: `loader` gives the training batches (`batch(i)`,
    `epoch_at(i)`, `eval_batches`), `test` and `val` (None without a hold-out) are what its
    `eval_batches` takes; `in_channels` and `image_hw` size the network's input; the network's
    MACs are counted at `cost_side` x `cost_side` (None: at the network's own input size)."""

    loader: Any
    test: tuple[Any, Any]
    val: tuple[Any, Any] | None
    in_channels: int
    image_hw: tuple[int, int]


@dataclass
class ImageDataset:
    """uint8 images [N, C, H, W] with int64 labels, plus how they were obtained.

    `name` is a short identifier (``cifar10``, ``synthetic``, ``cifar10-jpeg``); `label` is the
    human label used on figures; `meta` only holds JSON-able values so it can be recorded anywhere.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    name: str
    label: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        where = self.meta.get("source", self.name)
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DatasetError(where, f"{split} images must be uint8 [N,C,H,W], got {x.dtype} "
                                          f"{list(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DatasetError(where, f"{split} labels must be int64 [{x.shape[0]}], got "
                                          f"{y.dtype} {list(y.shape)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise DatasetError(where, f"{split} labels outside 0..{len(self.classes) - 1}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DatasetError(where, f"train images {list(self.train_x.shape[1:])} and test "
                                      f"images {list(self.test_x.shape[1:])} differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def training_data(self, recipe, *, seed: int, device: torch.device, rank: int = 0,
                      world_size: int = 1) -> RunData:
        """The run's loader over the training images (without the recipe's hold-out), on
        `device`, with the test and validation sets moved there too."""
        train_x, train_y, val = split_training_set(self.train_x, self.train_y, recipe.val_split)
        loader = DeviceLoader(train_x, train_y, batch_size=recipe.batch_size, device=device,
                              seed=seed, augment=recipe.augment, normalize=recipe.normalize,
                              channels_last=recipe.channels_last, rank=rank,
                              world_size=world_size)
        if val is not None:
            val = (val[0].to(device), val[1].to(device))
        return RunData(loader=loader, test=(self.test_x.to(device), self.test_y.to(device)),
                       val=val, in_channels=int(train_x.shape[1]),
                       image_hw=(int(train_x.shape[2]), int(train_x.shape[3])))

    def summary(self) -> str:
        c, (h, w) = self.in_channels, self.image_size
        return (f"{self.label} [{self.name}]: {len(self.train_y)} train / {len(self.test_y)} test, "
                f"{c}x{h}x{w} uint8, {self.num_classes} classes")
