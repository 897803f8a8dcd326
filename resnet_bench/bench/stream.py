"""`resnet-bench bench --stream`: images/s of the streaming ImageNet pipeline (StreamLoader)
against torchvision's ImageFolder + DataLoader with the same transforms, in one command.

Both paths produce the same thing from the same files: float32 [B,3,crop,crop] batches after
scale augmentation (shorter side uniform in [resize_min, resize_max]), a random crop, a flip,
AlexNet PCA colour noise and mean subtraction, with the same number of worker processes. They
differ in how: the baseline decodes with PIL (ImageFolder's loader), transforms each image with
torchvision.transforms.v2 on PIL images in a worker and returns float tensors; the streaming path
decodes with torchvision.io (libjpeg-turbo), resizes/crops uint8 tensors, draws every parameter
from (seed, iteration, slot) generators, ships uint8 crops and normalises the whole batch in the
main process. No network runs: this times the input pipeline only.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = (500, 375)  # (width, height) of a typical ImageNet photo
QUALITY = 90


def make_jpeg_tree(root: Path, images: int, classes: int = 4, seed: int = 0) -> Path:
    """train/ and val/ of `classes` folders of 500x375 q90 JPEGs: smooth random scenes (a 20x15
    field upsampled bicubically) plus fine noise, so that file sizes (~60-120 kB) and decoding
    cost are those of photos, not of white noise."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    per_class = max(1, images // classes)
    for split, n in (("train", per_class), ("val", max(1, per_class // 10))):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                field = (rng.random((15, 20, 3)) * 255).astype(np.uint8)
                img = np.asarray(Image.fromarray(field).resize(IMAGE_SIZE, Image.BICUBIC),
                                 dtype=np.float32)
                img += rng.normal(0, 12, img.shape)
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                    folder / f"img_{k:06d}.JPEG", quality=QUALITY)
    return root


class _Pca:
    """AlexNet's PCA colour noise on a float image (the baseline's per-image transform)."""

    def __init__(self, eigvec: torch.Tensor, eigval: torch.Tensor, std: float) -> None:
        self.eig, self.std = (eigvec * eigval).T, std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + ((torch.randn(3) * self.std) @ self.eig)[:, None, None]


def baseline_loader(root: Path, index, batch_size: int, workers: int):
    """torchvision's ImageFolder + DataLoader with the streaming path's transforms."""
    from torchvision import datasets
    from torchvision.transforms import v2
    o, s = index.options, index.stats
    transform = v2.Compose([
        v2.RandomShortestSize(min_size=list(range(o["resize_min"], o["resize_max"] + 1)),
                              antialias=True),
        v2.RandomCrop(o["crop"]), v2.RandomHorizontalFlip(), v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True), _Pca(s["eigvec"], s["eigval"], o["pca_std"]),
        v2.Lambda(lambda x: x - s["mean_image"])])
    ds = datasets.ImageFolder(str(root / "train"), transform=transform)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                       num_workers=workers, drop_last=True,
                                       persistent_workers=False)


def _time(batches, count: int) -> tuple[float, int]:
    """Seconds and images of `count` batches after the first (worker start-up is not timed)."""
    it = iter(batches)
    next(it)
    t0, images = time.perf_counter(), 0
    for _ in range(count):
        images += len(next(it)[1])
    return time.perf_counter() - t0, images


def run_stream_bench(args, device: torch.device) -> int:
    from resnet_bench.data import load_dataset
    from resnet_bench.data.stream import StreamLoader
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        root = Path(args.stream_root) if args.stream_root else None
        if root is None:
            t0 = time.perf_counter()
            root = make_jpeg_tree(Path(tmp), args.stream_images)
            print(f"generated {args.stream_images} JPEGs ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, "
                  f"q{QUALITY}) in {time.perf_counter() - t0:.1f} s under {root}")
        index = load_dataset("imagenet", root, stats_images=64)
        kb = np.mean([index.path(f).stat().st_size for f in index.train_files]) / 1024
        need = (args.stream_batches + 1) * args.batch_size
        if need > len(index.train_files):
            raise ValueError(f"--stream-batches {args.stream_batches} + 1 of --batch-size "
                             f"{args.batch_size} need {need} training images; the tree has "
                             f"{len(index.train_files)}")
        print(f"{len(index.train_files)} training images, mean {kb:.0f} kB; batch "
              f"{args.batch_size}, {args.stream_batches} timed batches per path, "
              f"torch threads {torch.get_num_threads()}, device {device}")
        print(f"{'path':<34}{'workers':>8}{'images/s':>10}{'ratio':>8}")
        for workers in args.stream_workers:
            base_s, base_n = _time(baseline_loader(root, index, args.batch_size, workers),
                                   args.stream_batches)
            loader = StreamLoader(index, batch_size=args.batch_size, seed=args.seed,
                                  device=device, workers=workers)
            stream_s, stream_n = _time((loader.batch(i) for i in range(need)),
                                       args.stream_batches)
            loader.close()
            base, ours = base_n / base_s, stream_n / stream_s
            print(f"{'torchvision ImageFolder+DataLoader':<34}{workers:>8}{base:>10.1f}"
                  f"{1.0:>8.2f}")
            print(f"{'resnet-bench StreamLoader':<34}{workers:>8}{ours:>10.1f}"
                  f"{ours / base:>8.2f}")
    return 0
