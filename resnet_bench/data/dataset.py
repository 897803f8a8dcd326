"""The in-memory dataset every loader returns, and the one error type for bad data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


class DatasetError(ValueError):
    """A missing, corrupt or wrongly formatted dataset; the message is one line naming the path."""

    def __init__(self, path: Any, problem: str) -> None:
        # Collapse newlines so that the CLI's "error: ..." stays a single line even when the
        # problem text comes from a library exception.
        text = " ".join(f"{path}: {problem}".split())
        super().__init__(text)
        self.path = str(path)


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

    def summary(self) -> str:
        c, (h, w) = self.in_channels, self.image_size
        return (f"{self.label} [{self.name}]: {len(self.train_y)} train / {len(self.test_y)} test, "
                f"{c}x{h}x{w} uint8, {self.num_classes} classes")
