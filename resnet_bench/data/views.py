"""Decoding image files to RGB tensors and the views the `imagenet` kind trains and tests on:
the scale-augmented random crop, the centre crop, ten crops, and the multi-scale whole images
(resnet_bench.data.imagenet describes the protocol)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF

from .errors import DatasetError
from .images import convert_channels, decode_all

# The test protocols `eval_views` implements (evaluations during training use `center`).
EVAL_MODES = ("center", "ten_crop", "multiscale")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, f"unreadable ({exc.strerror})") from exc


def decode_rgb(items: list[tuple[str, bytes]], device: str = "cpu") -> list[torch.Tensor]:
    """uint8 RGB [3,H,W] per (where, bytes); grey replicated, alpha dropped, CMYK converted.

    Any other `device` (`"cuda"`) decodes JPEGs with nvJPEG (torchvision.io.decode_jpeg on that
    device); other formats and JPEGs it refuses go through the CPU and are moved there."""
    if device != "cpu":
        from torchvision.io import ImageReadMode, decode_jpeg
        jpeg = [k for k, (_, b) in enumerate(items) if b[:2] == b"\xff\xd8"]
        out: list[torch.Tensor | None] = [None] * len(items)
        if torch.device(device).type == "cuda":
            # nvJPEG's hardware decoder writes its outputs before the work already queued on the
            # stream has run, so it can overwrite memory that work still reads
            # (pytorch/vision#9606, unfixed in the torchvision releases used here).
            torch.cuda.current_stream(device).synchronize()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                imgs = decode_jpeg([torch.frombuffer(bytearray(items[k][1]), dtype=torch.uint8)
                                    for k in jpeg], mode=ImageReadMode.RGB, device=device)
            for k, img in zip(jpeg, imgs):
                out[k] = img
        except RuntimeError:
            pass  # one bad file spoils the list: the CPU path below names it
        rest = [k for k, img in enumerate(out) if img is None]
        for k, img in zip(rest, decode_rgb([items[k] for k in rest])):
            out[k] = img.to(device)
        return out  # type: ignore[return-value]
    imgs, _ = decode_all(items)
    return [convert_channels(img, "rgb").contiguous() for img in imgs]


def resize_shorter(img: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size`, aspect ratio kept (torchvision's antialiased bilinear)."""
    return TF.resize(img, [int(size)], antialias=True)


def train_view(img: torch.Tensor, size: int, u: tuple[float, float], flip: bool,
               crop: int) -> torch.Tensor:
    """Scale augmentation, random crop (`u` in [0,1)^2 picks the position) and flip."""
    img = resize_shorter(img, size)
    h, w = img.shape[-2:]
    top, left = int(u[0] * (h - crop + 1)), int(u[1] * (w - crop + 1))
    out = TF.crop(img, top, left, crop, crop)
    return TF.horizontal_flip(out) if flip else out


def center_view(img: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    return TF.center_crop(resize_shorter(img, resize), [crop, crop])


def eval_views(img: torch.Tensor, mode: str, options: dict[str, Any]) -> list[torch.Tensor]:
    """The test views of one image: [1,3,c,c] (center), [10,3,c,c] (ten_crop), or one [2,3,H,W]
    per scale (multiscale: the image and its flip)."""
    crop = options["crop"]
    if mode == "center":
        return [center_view(img, options["test_resize"], crop)[None]]
    if mode == "ten_crop":
        return [torch.stack(TF.ten_crop(resize_shorter(img, options["test_resize"]), [crop, crop]))]
    views = []
    for s in options["test_scales"]:
        x = resize_shorter(img, s)
        views.append(torch.stack([x, TF.horizontal_flip(x)]))
    return views
