"""StreamLoader: training batches decoded from disk per batch, for sets that do not fit in memory.

The `imagenet` kind (resnet_bench.data.imagenet) is an index of files; this loader reads, decodes
and augments them in the worker processes of a torch.utils.data.DataLoader whose sampler yields
the iterations start, start+1, ...: each worker builds whole batches, the main process receives
them in order as uint8 crops and does the float work on the training device (PCA colour shift,
mean subtraction, layout) in one batched pass.

Determinism contract (DeviceLoader's, resnet_bench.data.loader): stream position p = i * B + k
(global batch i, slot k) takes example perm_e[p % N] of epoch e = p // N, perm_e drawn from the
same (seed, epoch) generator as DeviceLoader's; the augmentation of slot k of batch i (scale,
crop position, flip, PCA alphas) comes from a generator seeded by (seed, i, k). All generators
are CPU generators and every per-image operation runs on the CPU in one thread, so a batch is a
pure function of (seed, i): the same for 0, 1 or 2 workers, after a resume, and on any rank
layout. `batch(i)` for the i after the previous one takes the next batch of the worker stream;
any other i (a resume, a jump) restarts the stream at i.

Distributed training: rank r of W gets the contiguous slots [r*B/W, (r+1)*B/W) of global batch i
(B, the batch size given, is the global one and must divide by W). Evaluation reads the whole
held-out set on every rank.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .dataset import RunData
from .errors import DatasetError
from .loader import _PERM_STREAM, _generator
from .split import split_training_set
from .views import EVAL_MODES, decode_rgb, eval_views, read_bytes, train_view

_VIEW_STREAM = 0x56494557  # tag of the per-example augmentation generators


def augmentation(seed: int, i: int, slot: int, options: dict[str, Any]) -> dict[str, Any]:
    """Scale (shorter side), crop position u in [0,1)^2, flip and PCA alphas of one example."""
    gen = _generator(seed, _VIEW_STREAM, i, slot)
    size = int(torch.randint(options["resize_min"], options["resize_max"] + 1, (1,),
                             generator=gen))
    u = torch.rand(2, dtype=torch.float64, generator=gen).tolist()
    flip = bool(torch.randint(0, 2, (1,), generator=gen))
    alpha = torch.randn(3, generator=gen) * options["pca_std"]
    return {"size": size, "u": (u[0], u[1]), "flip": flip, "alpha": alpha}


class _Order:
    """The per-epoch permutations and the wrap of DeviceLoader, on the CPU."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            for old in sorted(self._perms)[:-1]:
                del self._perms[old]
            self._perms[epoch] = torch.randperm(
                self.n, generator=_generator(self.seed, _PERM_STREAM, epoch))
        return self._perms[epoch]

    def indices(self, i: int) -> torch.Tensor:
        start = i * self.batch_size
        parts = []
        while start < (i + 1) * self.batch_size:
            e, off = divmod(start, self.n)
            take = min(self.n - off, (i + 1) * self.batch_size - start)
            parts.append(self._perm(e)[off:off + take])
            start += take
        return torch.cat(parts)


class _Failure:
    """A DatasetError raised in a worker, carried to the main process as its one-line message
    (DataLoader would re-raise it as a multi-line RuntimeError)."""

    def __init__(self, exc: DatasetError) -> None:
        self.path, self.problem = exc.path, str(exc)[len(exc.path) + 2:]


def _identity(item):
    return item


def _packed(files: list[str]) -> np.ndarray:
    """File names as one numpy bytes array: worker processes touching a list of 1.3M Python
    strings would copy the pages their reference counts live on (pytorch/pytorch#13246)."""
    return np.array([f.encode() for f in files], dtype=np.bytes_)


def _read(root: Path, files: np.ndarray, idx: list[int]) -> list[tuple[str, bytes]]:
    paths = [root / files[k].decode() for k in idx]
    return [(str(p), read_bytes(p)) for p in paths]


def _train_crops(imgs: list[torch.Tensor], params: list[dict] | None,
                 options: dict[str, Any]) -> torch.Tensor:
    if params is None:  # augment off: the evaluation's centre view
        return torch.cat([eval_views(img, "center", options)[0] for img in imgs])
    return torch.stack([train_view(img, p["size"], p["u"], p["flip"], options["crop"])
                        for img, p in zip(imgs, params)])


def _eval_groups(imgs: list[torch.Tensor], y: torch.Tensor, mode: str,
                 options: dict[str, Any]) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """(views, labels) groups; each views tensor is [V*b, 3, H, W], view-major (row v*b + j is
    view v of image j), and the scores of all rows of a group's tensors are averaged per image."""
    if mode == "multiscale":  # one image a group: its sizes differ by scale and aspect ratio
        return [(eval_views(img, mode, options), y[j:j + 1]) for j, img in enumerate(imgs)]
    views = torch.stack([eval_views(img, mode, options)[0] for img in imgs])  # [b,V,3,c,c]
    return [([views.transpose(0, 1).flatten(0, 1)], y)]


class _TrainBatches(Dataset):
    """Item i = this rank's part of global batch i: (uint8 crops, labels, PCA alphas), or the
    raw bytes when the main process decodes on the GPU."""

    def __init__(self, loader: "StreamLoader") -> None:
        self.root, self.files, self.y = loader.root, _packed(loader.files), loader.y
        self.order = _Order(loader.n, loader.batch_size, loader.seed)
        self.lo, self.hi = loader.lo, loader.hi
        self.seed, self.options, self.augment = loader.seed, loader.options, loader.augment
        self.decode_here = loader.decode == "cpu"

    def __len__(self) -> int:  # unbounded stream; DataLoader only asks for len() in warnings
        return 1 << 62

    def params(self, i: int) -> list[dict] | None:
        if not self.augment:
            return None
        return [augmentation(self.seed, i, k, self.options) for k in range(self.lo, self.hi)]

    def __getitem__(self, i: int):
        try:
            idx = self.order.indices(i)[self.lo:self.hi].tolist()
            items, params = _read(self.root, self.files, idx), self.params(i)
            if not self.decode_here:
                return items, params, self.y[idx]
            return _train_crops(decode_rgb(items), params, self.options), params, self.y[idx]
        except DatasetError as exc:
            return _Failure(exc)


class _EvalChunks(Dataset):
    def __init__(self, loader: "StreamLoader", files: list[str], y: torch.Tensor, mode: str,
                 per_chunk: int) -> None:
        self.root, self.files, self.y, self.mode = loader.root, _packed(files), y, mode
        self.options, self.per_chunk = loader.options, per_chunk
        self.decode_here = loader.decode == "cpu"

    def __len__(self) -> int:
        return -(-len(self.files) // self.per_chunk)

    def __getitem__(self, j: int):
        try:
            idx = list(range(j * self.per_chunk, min((j + 1) * self.per_chunk, len(self.files))))
            items, y = _read(self.root, self.files, idx), self.y[idx]
            if not self.decode_here:
                return items, y
            return _eval_groups(decode_rgb(items), y, self.mode, self.options)
        except DatasetError as exc:
            return _Failure(exc)


class _From(Sampler):
    """start, start+1, ... (the iterations of the training stream)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def _unwrap(item):
    if isinstance(item, _Failure):
        raise DatasetError(item.path, item.problem)
    return item


class StreamLoader:
    """DeviceLoader's interface (`batch(i)`, `epoch_at(i)`, `batches_per_epoch`,
    `eval_batches`) over an `ImageIndex` (resnet_bench.data.imagenet), plus `eval_views`
    (center, ten_crop, multiscale).

    `subset` (dataset indices into index.train_files) is what trains, e.g. without a hold-out.
    `workers` decoding processes (0: in this process). `batch(i)` returns float32 [B/W,3,c,c]
    (channels_last strides if asked) and int64 [B/W] on `device`."""

    def __init__(self, index: Any, *, batch_size: int, seed: int,
                 device: str | torch.device = "cpu", augment: bool = True,
                 normalize: str = "pixel", channels_last: bool = False, workers: int = 0,
                 rank: int = 0, world_size: int = 1, subset: torch.Tensor | None = None) -> None:
        self.device = torch.device(device)
        self.root, self.options = Path(index.root), dict(index.options)
        sub = torch.arange(len(index.train_files)) if subset is None else subset.cpu()
        self.files = [index.train_files[k] for k in sub.tolist()]
        self.y = index.train_y[sub]
        self.n, self.batch_size, self.seed = len(self.files), int(batch_size), int(seed)
        if not 0 <= rank < world_size:
            raise DatasetError("StreamLoader", f"rank must be in 0..{world_size - 1}, got {rank}")
        if self.batch_size < 1 or self.batch_size % world_size or self.batch_size > self.n:
            raise DatasetError("StreamLoader", f"batch_size must be in 1..{self.n} (the training "
                                               f"images) and divisible by world_size "
                                               f"{world_size}; got {batch_size}")
        self.rank, self.world_size = int(rank), int(world_size)
        per_rank = self.batch_size // world_size
        self.lo, self.hi = rank * per_rank, (rank + 1) * per_rank
        self.augment, self.channels_last = bool(augment), bool(channels_last)
        self.workers, self.normalize = int(workers), normalize
        self.decode = self.options["decode"]
        if self.decode == "cuda" and self.device.type != "cuda":
            raise DatasetError("imagenet", f"decode=cuda needs a CUDA training device, got "
                                           f"{self.device}")
        self.stats = {k: v.to(self.device) for k, v in index.stats.items() if k != "sample"}
        self._eig = (index.stats["eigvec"] * index.stats["eigval"]).T  # rows lambda_k p_k^T, CPU
        self._stream: Iterator | None = None
        self._next = -1
        self._source = _TrainBatches(self)

    # ---- order -------------------------------------------------------------------------------
    def indices(self, i: int) -> torch.Tensor:
        """This rank's training-set indices (into the loader's files) of global batch `i`."""
        if i < 0:
            raise IndexError(f"batch index must be >= 0, got {i}")
        return self._source.order.indices(i)[self.lo:self.hi]

    def augmentation(self, i: int) -> list[dict] | None:
        """The augmentation parameters of this rank's slots of batch `i` (None: augment off)."""
        return self._source.params(i)

    def epoch_at(self, i: int) -> float:
        """Epochs of data consumed before batch `i` (stream position i*B over N)."""
        return i * self.batch_size / self.n

    @property
    def batches_per_epoch(self) -> float:
        return self.n / self.batch_size

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.options["crop"], self.options["crop"]

    # ---- batches -----------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, sampler) -> DataLoader:
        # A generator of its own: DataLoader otherwise draws its workers' base seed from the
        # global RNG at every iterator (each restart and evaluation), which the checkpoint
        # restores; nothing here uses the workers' RNG.
        return DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_identity,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(0))

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i < 0:
            raise IndexError(f"batch index must be >= 0, got {i}")
        if self._stream is None or i != self._next:
            self.close()
            self._stream = iter(self._loader(self._source, _From(i)))
        x, params, y = _unwrap(next(self._stream))
        self._next = i + 1
        if self.decode != "cpu":
            x = _train_crops(decode_rgb(x, self.decode), params, self.options)
        shift = None
        if params is not None and self.options["pca_std"] > 0:
            shift = torch.stack([p["alpha"] for p in params]) @ self._eig  # [b,3], on the CPU
        return self._normalise(x, shift), y.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the worker processes of the training stream (the next batch restarts them)."""
        self._stream = None
        self._next = -1

    def _normalise(self, x: torch.Tensor, shift: torch.Tensor | None = None,
                   whole_image: bool = False) -> torch.Tensor:
        """uint8 -> x/255 (+ PCA shift) - mean image (pixel) or (.. - mean)/std (channel)."""
        s = self.stats
        x = x.to(self.device, non_blocking=True).float().mul_(1.0 / 255.0)
        if shift is not None:  # pinned, so that the copy does not block the host
            if self.device.type == "cuda":
                shift = shift.pin_memory()
            x.add_(shift.to(self.device, non_blocking=True)[:, :, None, None])
        if self.normalize == "pixel":
            x.sub_(s["mean"][:, None, None] if whole_image else s["mean_image"])
        else:
            x.sub_(s["mean"][:, None, None]).div_(s["std"][:, None, None])
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ---- evaluation --------------------------------------------------------------------------
    def eval_views(self, files: list[str], y: torch.Tensor, batch_size: int, mode: str = "center"
                   ) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """A held-out set once, in order: (views, labels) groups on the device, about
        `batch_size` network inputs a group; average the scores of all rows of a group's views
        per image (row v*b + j is view v of image j)."""
        if mode not in EVAL_MODES:
            raise DatasetError("imagenet", f"evaluation mode must be one of "
                                           f"{', '.join(EVAL_MODES)}; got {mode!r}")
        views = {"center": 1, "ten_crop": 10, "multiscale": 2 * len(self.options["test_scales"])}
        per_chunk = max(1, batch_size // views[mode]) if mode != "multiscale" else 16
        chunks = _EvalChunks(self, list(files), y.cpu(), mode, per_chunk)
        for item in self._loader(chunks, None):
            item = _unwrap(item)
            if self.decode != "cpu":
                item = _eval_groups(decode_rgb(item[0], self.decode), item[1], mode, self.options)
            for inputs, yb in item:
                yield ([self._normalise(v, whole_image=mode == "multiscale") for v in inputs],
                       yb.to(self.device))

    def eval_batches(self, files: list[str], y: torch.Tensor, batch_size: int
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """DeviceLoader's evaluation interface: centre views, (x, y) batches."""
        for (x,), yb in self.eval_views(files, y, batch_size, "center"):
            yield x, yb


def stream_for_run(index: Any, recipe, *, seed: int, device: torch.device, rank: int = 0,
                   world_size: int = 1) -> RunData:
    """What a run trains and evaluates on from an `ImageIndex`: the loader of the training part
    (without the recipe's hold-out), the held-out split and the validation part as (files,
    labels)."""
    train_idx, _, val = split_training_set(torch.arange(len(index.train_files)), index.train_y,
                                           recipe.val_split)
    loader = StreamLoader(index, batch_size=recipe.batch_size, seed=seed, device=device,
                          augment=recipe.augment, normalize=recipe.normalize,
                          channels_last=recipe.channels_last, workers=recipe.data_workers,
                          rank=rank, world_size=world_size, subset=train_idx)
    if val is not None:
        val = ([index.train_files[k] for k in val[0].tolist()], val[1])
    return RunData(loader=loader, test=(index.test_files, index.test_y), val=val,
                   in_channels=3, image_hw=loader.image_hw)
