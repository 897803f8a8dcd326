"""`resnet-bench bench`: time the trainer's hot path against the standard way such code is written.

For each network the same command times two ways of running the paper's training iteration
(forward + backward + SGD step, momentum 0.9, weight decay 1e-4) on the same images and batch size:

* ``project``  - the trainer's path (resnet_bench/train/loop.py): the whole dataset on the device
  as uint8, batched on-device pad/crop/flip + normalisation (``DeviceLoader.batch``), and the
  options ``--precision bf16`` (autocast), ``--channels-last`` and ``--compile``;
* ``baseline`` - a torchvision-style ``Dataset`` of PIL images with per-image CPU transforms
  (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) through a shuffling
  ``DataLoader`` with worker processes, fp32, default memory format, eager, ``loss.item()`` every
  iteration (as a logging loop does).

The headline is the ratio project/baseline of images/s, measured in one process on one machine.
Warm-up iterations are excluded; the first iteration (which pays for compilation, cuDNN
autotuning and lazy initialisation) is timed and reported apart. ``--fidelity`` instead trains a
small net for a short schedule with fp32 eager vs the fast options over several seeds,
to check that the fast path does not change the numbers beyond the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import gc
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

PATHS = ("project", "baseline")
PAPER_ITERATIONS = 64_000
# Training FLOPs per image = MACs x 2 FLOP/MAC x 3 (forward, grad wrt activations, grad wrt weights).
FLOP_PER_MAC_TRAIN = 2 * 3
DEFAULT_MODEL = "v1-basic-20"
FIDELITY_DEFAULT_MODEL = "v1-basic-8"
# akamaster/pytorch_resnet_cifar10 (the most cited V1 reproduction) uses 4 workers; so do most
# CIFAR training scripts.
BASELINE_WORKERS = 4


# ----------------------------------------------------------------------------------------- CLI

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help=f"network to time; repeat for several (default: {DEFAULT_MODEL}; "
                             f"--fidelity: {FIDELITY_DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size [128, the paper's]")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [auto]")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="project path: fp32 or bf16 autocast [fp32]; the baseline is always fp32")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="project path: torch.compile the model (compile time reported apart)")
    parser.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune",
                                                   "max-autotune-no-cudagraphs"),
                        help="torch.compile mode (needs --compile) [torch's default]")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                        help="project path: channels_last memory format")
    parser.add_argument("--fused-sgd", action="store_true",
                        help="project path: torch.optim.SGD(fused=True) -- a what-if lever the "
                             "trainer does not use yet (recorded in the output)")
    parser.add_argument("--iters", type=int,
                        help="timed iterations per path [cuda: 200, cpu: 20]")
    parser.add_argument("--warmup-iters", type=int,
                        help="untimed iterations before timing, the first timed apart [cuda: 20, cpu: 3]")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each path this many times, alternating project/baseline, and "
                             "pool the timed iterations (steadier ratio on a busy machine) [1]")
    parser.add_argument("--dataset", default="synthetic",
                        help="synthetic | cifar10 | cifar100 | folder [synthetic]; with --prepared, "
                             "the name recorded for that file")
    parser.add_argument("--data-dir", help="dataset root for cifar10/cifar100/folder")
    parser.add_argument("--prepared", metavar="FILE",
                        help="dataset file written by `resnet-bench data prepare`")
    parser.add_argument("--train-size", type=int,
                        help="synthetic only: number of training images [the dataset's default]")
    parser.add_argument("--baseline-workers", type=int, default=BASELINE_WORKERS,
                        help=f"baseline DataLoader num_workers [{BASELINE_WORKERS}, as typical "
                             "CIFAR scripts]")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="time only the project path (no ratio)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch [torch's choice]")
    parser.add_argument("--seed", type=int, default=0, help="model init and batch order seed [0]")
    parser.add_argument("--csv", metavar="OUT", help="write one row per (model, path) here")
    fid = parser.add_argument_group("fidelity check (--fidelity)")
    fid.add_argument("--fidelity", action="store_true",
                     help="instead of timing: train one small net with fp32 eager vs bf16 (and "
                          "bf16 + compile + channels_last on GPU) over several seeds and compare "
                          "final training loss/error with the seed-to-seed spread")
    fid.add_argument("--fidelity-iters", type=int,
                     help="training iterations per fidelity run [cuda: 2000, cpu: 60]")
    fid.add_argument("--seeds", type=int, nargs="+",
                     help="fidelity seeds [cuda: 0 1 2 3 4, cpu: 0 1]")


def run(args: argparse.Namespace) -> int:
    import torch

    if not args.device.startswith("cpu"):
        # Before CUDA is touched: time on a GPU slot of our own when trainings share the machine.
        from resnet_bench.gpu import claim_for_this_process
        claim_for_this_process()
    from resnet_bench.train.loop import pick_device
    device = pick_device(args.device)
    _validate(args, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fidelity:
        return run_fidelity(args, device)
    return run_timing(args, device)


def _validate(args: argparse.Namespace, device) -> None:
    from resnet_bench.models import parse_model_name
    cuda = device.type == "cuda"
    if args.iters is None:
        args.iters = 200 if cuda else 20
    if args.warmup_iters is None:
        args.warmup_iters = 20 if cuda else 3
    if args.fidelity_iters is None:
        args.fidelity_iters = 2000 if cuda else 60
    if args.seeds is None:
        args.seeds = [0, 1, 2, 3, 4] if cuda else [0, 1]
    if not args.models:
        args.models = [FIDELITY_DEFAULT_MODEL if args.fidelity else DEFAULT_MODEL]
    for key, low in (("batch_size", 1), ("iters", 1), ("rounds", 1), ("warmup_iters", 1), ("fidelity_iters", 1),
                     ("baseline_workers", 0)):
        if getattr(args, key) < low:
            raise ValueError(f"--{key.replace('_', '-')} must be >= {low}, got {getattr(args, key)}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.train_size is not None:
        if args.prepared or args.dataset != "synthetic":
            raise ValueError("--train-size applies to the synthetic dataset only")
        if args.train_size < 1:
            raise ValueError(f"--train-size must be >= 1, got {args.train_size}")
    if args.compile_mode and not args.compile:
        raise ValueError("--compile-mode needs --compile")
    if args.fidelity and len(args.models) != 1:
        raise ValueError("--fidelity trains one network: give at most one --model")
    if args.fidelity and len(set(args.seeds)) < 2:
        raise ValueError("--fidelity needs at least two distinct --seeds for a seed-to-seed spread")
    for name in args.models:
        try:
            parse_model_name(name)
        except ValueError as exc:  # ModelNameError: one line listing the valid choices
            raise ValueError(f"--model {name}: {exc}") from None


# ------------------------------------------------------------------------------ measurement

@dataclass
class PathResult:
    model: str
    path: str
    images_per_s: float
    ms_per_iter: float                   # mean over the timed iterations
    ms_per_iter_median: float
    ms_per_iter_min: float
    ms_per_iter_max: float
    tflops_per_s: float
    peak_mem_mib: float
    peak_mem_method: str
    first_iter_s: float                  # includes compilation / autotuning / lazy init
    compile_time_s: float                # first_iter_s when compiled, else 0
    projected_64k_h: float
    params: int
    macs: int
    settings: dict[str, Any] = field(default_factory=dict)
    ratio_vs_baseline: float | None = None


class _Clock:
    """Per-iteration wall times: CUDA events on GPU (no host sync inside the timed loop), else
    perf_counter (CPU work is synchronous)."""

    def __init__(self, device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.marks: list[Any] = []

    def sync(self) -> None:
        if self.cuda:
            import torch
            torch.cuda.synchronize(self.device)

    def mark(self) -> None:
        if self.cuda:
            import torch
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        self.sync()
        if self.cuda:
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_freed_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: hand freed heap back to the OS


class _PeakMemory:
    """Peak memory of one path.

    GPU: torch.cuda.max_memory_allocated after resetting the peak (absolute: model, optimizer
    state, activations, and for the project path the on-device dataset).
    CPU: growth of this process's resident set size over its value when the path began, sampled
    every 5 ms from /proc/self/statm by a background thread (DataLoader worker processes are not
    included); where /proc is missing, growth of getrusage's ru_maxrss high-water mark.
    """

    def __init__(self, device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.cuda:
            self.method = "torch.cuda.max_memory_allocated"
        elif _rss_bytes() is not None:
            self.method = "RSS growth (/proc/self/statm sampled every 5 ms; main process)"
        else:
            self.method = "ru_maxrss growth (getrusage high-water mark; main process)"

    def __enter__(self) -> "_PeakMemory":
        if self.cuda:
            import torch
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_freed_memory()
        self.start = _rss_bytes()
        if self.start is None:
            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return self
        self.peak = self.start

        def sample() -> None:
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, _rss_bytes() or 0)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            import torch
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() or 0) - self.start
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.start

    @property
    def mib(self) -> float:
        return max(self.peak, 0) / 2**20


@contextlib.contextmanager
def _backend_flags(device, precision: str | None):
    """The trainer's cuDNN/TF32 settings (precision given) or torch's defaults (None), restored after."""
    import torch
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    try:
        if precision is not None:  # exactly what the trainer sets
            from resnet_bench.train.loop import configure_backends
            configure_backends(device, precision)
        else:  # a typical script: cudnn.benchmark = True, everything else torch's defaults
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def _timed(step: Callable[[int], int], *, warmup: int, iters: int, device,
           note: Callable[[str], None]) -> tuple[float, list[float], int]:
    """Run `step(i) -> images` warmup + iters times; (first-iteration s, timed ms list, images)."""
    clock = _Clock(device)
    clock.sync()
    t0 = time.perf_counter()
    step(0)
    clock.sync()
    first_s = time.perf_counter() - t0
    note(f"first iteration {first_s:.2f} s; {warmup - 1} more warm-up, then {iters} timed")
    for i in range(1, warmup):
        step(i)
    clock.sync()
    images = 0
    clock.mark()
    for i in range(warmup, warmup + iters):
        images += step(i)
        clock.mark()
    return first_s, clock.intervals_ms(), images


def _build(name: str, num_classes: int, in_channels: int, seed: int, device):
    import torch
    from resnet_bench.models import build_model
    torch.manual_seed(seed)
    return build_model(name, num_classes=num_classes, in_channels=in_channels).to(device)


def _sgd(model, recipe, fused: bool = False):
    import torch
    # The trainer's optimizer; fused=True only with --fused-sgd, a lever the trainer does not
    # expose yet.
    if not fused:
        from resnet_bench.train.loop import make_optimizer
        return make_optimizer(model, recipe)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, fused=True)


def time_project(name: str, dataset, args, device, note) -> tuple[float, list[float], int]:
    """The trainer's iteration: DeviceLoader.batch + the step of resnet_bench/train/loop.py.

    The same calls as `train()`: lr from the recipe's schedule, `forward_backward` (autocast
    forward, fp32 cross-entropy, zero_grad, backward), SGD step, per-step loss/error kept on the
    device and drained every SYNC_EVERY iterations on accelerators, every iteration on CPU.
    """
    import torch
    from resnet_bench.data import DeviceLoader
    from resnet_bench.train.loop import SYNC_EVERY, forward_backward
    from resnet_bench.train.recipe import Recipe

    recipe = Recipe(batch_size=args.batch_size, precision=args.precision, compile=args.compile,
                    channels_last=args.channels_last)
    loader = DeviceLoader(dataset.train_x, dataset.train_y, batch_size=recipe.batch_size,
                          device=device, seed=args.seed, augment=recipe.augment,
                          normalize=recipe.normalize, channels_last=recipe.channels_last)
    model = _build(name, dataset.num_classes, dataset.in_channels, args.seed, device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _sgd(model, recipe, fused=args.fused_sgd)
    if recipe.compile:
        kwargs = {"mode": args.compile_mode} if args.compile_mode else {}
        step_model = torch.compile(model, **kwargs)
    else:
        step_model = model
    model.train()
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def step(it: int) -> int:
        lr = recipe.lr_at(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        xb, yb = loader.batch(it)
        logits, loss = forward_backward(step_model, optimizer, xb, yb, device, recipe.precision)
        optimizer.step()
        pending.append((loss.detach(), (logits.argmax(1) != yb).sum()))
        if (it + 1) % sync_every == 0:
            for loss_i, wrong_i in pending:  # the trainer's drain(): host copies of the logs
                if not math.isfinite(float(loss_i)):
                    raise FloatingPointError(f"{name}: loss is not finite at iteration {it}")
                float(wrong_i)
            pending.clear()
        return len(yb)

    with _backend_flags(device, recipe.precision):
        return _timed(step, warmup=args.warmup_iters, iters=args.iters, device=device, note=note)


class _PilImages:
    """A torchvision-CIFAR-style Dataset: HWC uint8 arrays, a PIL image per item, then transforms."""

    def __init__(self, x, y, transform) -> None:
        self.data = x.permute(0, 2, 3, 1).contiguous().numpy()  # as torchvision's CIFAR10.data
        if self.data.shape[-1] == 1:
            self.data = self.data[..., 0]
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image
        img = Image.fromarray(self.data[index])
        return self.transform(img), self.targets[index]


def baseline_loader(dataset, batch_size: int, workers: int, pin_memory: bool, seed: int):
    """The standard CIFAR input pipeline on the same uint8 images."""
    import torch
    from torchvision import transforms
    x = dataset.train_x
    mean = (x.float().mean(dim=(0, 2, 3)) / 255).tolist()
    std = (x.float().std(dim=(0, 2, 3)) / 255).tolist()
    h, w = dataset.image_size
    transform = transforms.Compose([
        transforms.RandomCrop((h, w), padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    ds = _PilImages(x, dataset.train_y, transform)
    # drop_last so that every timed iteration is a full batch, like the paper's iterations.
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=pin_memory, drop_last=True,
                                       generator=torch.Generator().manual_seed(seed))


def time_baseline(name: str, dataset, args, device, note) -> tuple[float, list[float], int]:
    """fp32, eager, default memory format, DataLoader with per-image CPU transforms."""
    import torch.nn as nn
    from resnet_bench.train.recipe import Recipe

    recipe = Recipe(batch_size=args.batch_size)
    loader = baseline_loader(dataset, args.batch_size, args.baseline_workers,
                             pin_memory=device.type == "cuda", seed=args.seed)
    model = _build(name, dataset.num_classes, dataset.in_channels, args.seed, device)
    optimizer = _sgd(model, recipe)
    criterion = nn.CrossEntropyLoss()
    model.train()
    state: dict[str, Iterator] = {}

    def next_batch():
        # A new epoch restarts the iterator (and, as in most scripts, the worker processes).
        try:
            return next(state["it"])
        except (KeyError, StopIteration):
            state["it"] = iter(loader)
            return next(state["it"])

    def step(it: int) -> int:
        xb, yb = next_batch()
        xb = xb.to(device, non_blocking=True)
        yb = yb.to(device, non_blocking=True)
        out = model(xb)
        loss = criterion(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the running-average logging every such loop does (a host sync)
        return len(yb)

    try:
        with _backend_flags(device, None):
            return _timed(step, warmup=args.warmup_iters, iters=args.iters, device=device, note=note)
    finally:
        state.clear()  # shuts the workers down before the next measurement


@dataclass
class _Raw:
    first_s: float
    ms: list[float]
    images: int
    peak_mib: float
    mem_method: str


def measure_once(name: str, path: str, dataset, args, device, note) -> _Raw:
    """One fresh measurement of one path: new model, optimizer and loader; peak memory around it."""
    fn = time_project if path == "project" else time_baseline
    with _PeakMemory(device) as mem:
        first_s, ms, images = fn(name, dataset, args, device, note)
    _release_freed_memory()
    return _Raw(first_s, ms, images, mem.mib, mem.method)


def _ips(raw: _Raw) -> float:
    return raw.images / (sum(raw.ms) / 1e3)


def summarize(name: str, path: str, raws: list[_Raw], args) -> PathResult:
    """Pool the timed iterations of all rounds of one path."""
    from resnet_bench.models import model_cost
    params, macs = model_cost(name, num_classes=args.num_classes, in_channels=args.in_channels)
    # Costs are counted at 32x32; convolution MACs scale with the image area (as the trainer does).
    h, w = args.image_size
    macs = int(macs * h * w / (32 * 32))
    ms = [t for r in raws for t in r.ms]
    images = sum(r.images for r in raws)
    images_per_s = images / (sum(ms) / 1e3)
    ms_mean = sum(ms) / len(ms)
    project = path == "project"
    first_s = raws[0].first_s
    return PathResult(
        model=name, path=path, images_per_s=images_per_s, ms_per_iter=ms_mean,
        ms_per_iter_median=statistics.median(ms), ms_per_iter_min=min(ms), ms_per_iter_max=max(ms),
        tflops_per_s=images_per_s * macs * FLOP_PER_MAC_TRAIN / 1e12,
        peak_mem_mib=max(r.peak_mib for r in raws), peak_mem_method=raws[0].mem_method,
        first_iter_s=first_s, compile_time_s=first_s if (project and args.compile) else 0.0,
        projected_64k_h=PAPER_ITERATIONS * ms_mean / 1e3 / 3600, params=params, macs=macs,
        settings={
            "precision": args.precision if project else "fp32",
            "compile": bool(args.compile) if project else False,
            "compile_mode": (args.compile_mode or "default") if (project and args.compile) else "",
            "channels_last": bool(args.channels_last) if project else False,
            "sgd": "fused" if (project and args.fused_sgd) else "default",
            "data_path": ("DeviceLoader (dataset on device as uint8, batched pad/crop/flip)"
                          if project else
                          f"DataLoader(num_workers={args.baseline_workers}, shuffle=True) + "
                          "per-image PIL transforms"),
            "num_workers": 0 if project else args.baseline_workers,
            "rounds": len(raws),
            "timed_iters_total": len(ms),
        },
    )


# --------------------------------------------------------------------------------- output

def _load_dataset(args):
    from resnet_bench import data
    if args.prepared:
        return data.load_prepared(args.prepared)
    if args.dataset == "synthetic":
        options = {} if args.train_size is None else {"train_size": args.train_size, "test_size": 10}
        return data.load_dataset("synthetic", args.data_dir, **options)
    return data.load_dataset(args.dataset, args.data_dir)


def _provenance(device) -> dict[str, Any]:
    import socket
    from resnet_bench.train import provenance
    code = provenance.code_revision()
    hw = provenance.device_description(device)
    sw = provenance.software_versions()
    import torch
    return {
        "device": str(device), "device_name": hw["device_name"],
        "cpu_name": provenance.cpu_name(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": sw["torch"], "torchvision": sw["torchvision"], "python": sw["python"],
        "cuda": sw["cuda"], "cudnn": sw["cudnn"],
        "git_commit": code["git_commit"], "git_dirty": code["git_dirty"],
        "package_version": code["package_version"],
        "host": socket.gethostname(), "platform": platform.platform(),
        "load_avg_1m_at_start": _load_avg(), "started": provenance.now(),
    }


def _load_avg() -> float | None:
    """1-minute load average: how busy the machine was (other processes skew CPU timings)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


CSV_COLUMNS = [
    "model", "path", "images_per_s", "ms_per_iter", "ms_per_iter_median", "ms_per_iter_min",
    "ms_per_iter_max", "tflops_per_s", "ratio_vs_baseline", "ratio_vs_baseline_median",
    "ratio_per_round", "ratio_median_of_rounds",
    "peak_mem_mib", "peak_mem_method", "first_iter_s", "compile_time_s", "projected_64k_h",
    "params", "macs", "batch_size", "iters", "warmup_iters", "rounds", "timed_iters_total",
    "precision", "compile", "compile_mode", "channels_last", "sgd", "data_path", "num_workers",
    "dataset", "train_size", "seed",
    "device", "device_name", "cpu_name", "cpu_count", "torch_threads", "torch", "torchvision",
    "python", "cuda", "cudnn", "git_commit", "git_dirty", "package_version", "host", "platform",
    "load_avg_1m_at_start", "load_avg_1m_at_end", "started", "finished",
]


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    tmp.replace(path)


def _fmt_h(hours: float) -> str:
    return f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def _print_model(results: list[PathResult], batch: int) -> None:
    r0 = results[0]
    print(f"\n{r0.model}: {r0.params / 1e6:.3f}M params, {r0.macs / 1e6:.2f}M MACs/image "
          f"(forward), batch {batch}")
    header = (f"  {'path':<9}{'images/s':>10}{'ms/iter':>10}{'median':>9}{'TFLOP/s':>9}"
              f"{'peak MiB':>10}{'1st it s':>9}{'64k iters':>11}  settings")
    print(header)
    for r in results:
        s = r.settings
        opts = [s["precision"], "compile" + (f"({s['compile_mode']})" if s["compile_mode"] else "")
                if s["compile"] else "eager", "channels_last" if s["channels_last"] else "NCHW",
                *(["fused SGD"] if s["sgd"] == "fused" else []),
                "DeviceLoader" if r.path == "project" else f"DataLoader x{s['num_workers']} workers"]
        print(f"  {r.path:<9}{r.images_per_s:>10.1f}{r.ms_per_iter:>10.2f}{r.ms_per_iter_median:>9.2f}"
              f"{r.tflops_per_s:>9.4g}{r.peak_mem_mib:>10.1f}{r.first_iter_s:>9.2f}"
              f"{_fmt_h(r.projected_64k_h):>11}  {', '.join(opts)}")
    for r in results:
        if r.ratio_vs_baseline is not None and r.path == "project":
            print(f"  ratio project/baseline: {r.ratio_vs_baseline:.2f}x images/s "
                  f"({r.settings['ratio_vs_baseline_median']:.2f}x on median ms/iter)")
            rounds = r.settings["ratio_per_round"].split(";")
            if len(rounds) > 1:
                print(f"  per-round ratios (adjacent project/baseline pairs): {', '.join(rounds)}; "
                      f"median {r.settings['ratio_median_of_rounds']:.2f}x")


def run_timing(args: argparse.Namespace, device) -> int:
    import torch

    def note(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    dataset = _load_dataset(args)
    note(f"{dataset.summary()} (loaded in {time.perf_counter() - t:.1f} s)")
    if len(dataset.train_y) < args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {len(dataset.train_y)} "
                         "training images")
    paths = PATHS if args.baseline else ("project",)
    prov = _provenance(device)
    note(f"device {device} ({prov['device_name']}), torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads; {args.warmup_iters} warm-up + {args.iters} timed "
         f"iterations per path")
    if device.type == "cpu" and prov["load_avg_1m_at_start"] is not None:
        note(f"load average {prov['load_avg_1m_at_start']:.2f} on {os.cpu_count()} cores before "
             "timing (other processes skew both paths)")
    args.num_classes, args.in_channels = dataset.num_classes, dataset.in_channels
    args.image_size = dataset.image_size
    all_results: list[PathResult] = []
    for m, name in enumerate(args.models, 1):
        raws: dict[str, list[_Raw]] = {p: [] for p in paths}
        for rnd in range(1, args.rounds + 1):
            # Paths alternate (project, baseline, project, ...) so that a change in the machine's
            # load during the command hits both.
            for path in paths:
                prefix = f"[{m}/{len(args.models)}] {name} {path}" + (
                    f" round {rnd}/{args.rounds}" if args.rounds > 1 else "")
                note(f"{prefix}: timing")
                raw = measure_once(name, path, dataset, args, device,
                                   lambda s, p=prefix: note(f"{p}: {s}"))
                ms = sum(raw.ms) / len(raw.ms)
                note(f"{prefix}: {raw.images / (sum(raw.ms) / 1e3):.1f} images/s, {ms:.2f} ms/iter")
                raws[path].append(raw)
        results = [summarize(name, path, raws[path], args) for path in paths]
        if args.baseline:
            base = results[1]
            # Round k of the project path ran just before round k of the baseline: under a
            # changing load these adjacent pairs are the fairest comparisons available.
            per_round = [_ips(p) / _ips(b) for p, b in zip(raws["project"], raws["baseline"])]
            for r in results:
                own = r.path == "project"
                r.ratio_vs_baseline = r.images_per_s / base.images_per_s
                r.settings["ratio_vs_baseline_median"] = base.ms_per_iter_median / r.ms_per_iter_median
                r.settings["ratio_per_round"] = ";".join(
                    f"{x:.4f}" if own else "1" for x in per_round)
                r.settings["ratio_median_of_rounds"] = statistics.median(per_round) if own else 1.0
        _print_model(results, args.batch_size)
        all_results.extend(results)

    print("\nTFLOP/s = images/s x MACs/image x 2 FLOP/MAC x 3 (forward + backward ~ 3 forward "
          "passes); these 16-64-channel nets are memory-bound, so it is far below peak.")
    print(f"peak memory: {all_results[0].peak_mem_method}.")
    print(f"64k iters = the paper's schedule ({PAPER_ITERATIONS} iterations) x mean ms/iter; "
          "evaluation, checkpointing and compilation excluded.")
    if args.baseline:
        print("baseline = torchvision Dataset of PIL images + RandomCrop(pad 4)/RandomHorizontalFlip/"
              f"ToTensor/Normalize in DataLoader(num_workers={args.baseline_workers}, shuffle=True), "
              "fp32, eager, NCHW; same model, images, batch size, optimizer.")
    from resnet_bench.train.provenance import now
    prov.update(load_avg_1m_at_end=_load_avg(), finished=now())
    if args.csv:
        rows = []
        for r in all_results:
            row = {k: v for k, v in vars(r).items() if k != "settings"}
            row.update(r.settings)
            row.update(batch_size=args.batch_size, iters=args.iters, warmup_iters=args.warmup_iters,
                       dataset=dataset.name, train_size=len(dataset.train_y), seed=args.seed, **prov)
            rows.append(row)
        write_csv(args.csv, rows)
        note(f"wrote {args.csv} ({len(rows)} rows)")
    return 0


# ------------------------------------------------------------------------------ fidelity

FIDELITY_COLUMNS = ["model", "config", "seed", "iterations", "batch_size", "final_train_loss",
                    "final_train_error_pct", "final_test_loss", "final_test_error_pct",
                    "images_per_s", "compile_time_s", "dataset", "device", "torch", "git_commit"]


def fidelity_configs(device) -> list[dict[str, Any]]:
    configs = [{"config": "fp32 eager", "precision": "fp32", "compile": False, "channels_last": False},
               {"config": "bf16 eager", "precision": "bf16", "compile": False, "channels_last": False}]
    if device.type == "cuda":
        configs.append({"config": "bf16 compile channels_last", "precision": "bf16",
                        "compile": True, "channels_last": True})
    return configs


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def run_fidelity(args: argparse.Namespace, device) -> int:
    """Short real trainings (resnet_bench.train.loop.train) of one net: fp32 eager vs fast options.

    The dataset is loaded once and handed to every run as a prepared file, so each run trains on
    exactly the same images; the same seed gives every config the same initialisation and batches.
    """
    import torch
    from resnet_bench.data import save_prepared
    from resnet_bench.train.loop import train
    from resnet_bench.train.recipe import Recipe, RunConfig

    name = args.models[0]
    n = args.fidelity_iters
    milestones = (max(1, n // 2), max(1, 3 * n // 4))  # the paper's 32k/48k of 64k, scaled
    configs = fidelity_configs(device)
    window = max(1, min(50, n // 4))
    dataset = _load_dataset(args)
    print(f"fidelity check: {name}, {n} iterations (lr 0.1, /10 at {milestones[0]} and "
          f"{milestones[1]}), batch {args.batch_size}, seeds {' '.join(map(str, args.seeds))}, "
          f"{dataset.summary()}, device {device}; final train loss/error = mean of the last "
          f"{window} mini-batches; configs: {'; '.join(c['config'] for c in configs)}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="resnet-bench-fidelity-") as tmp:
        prepared = Path(tmp) / "dataset.pt"
        save_prepared(dataset, prepared)
        for seed in args.seeds:
            for c in configs:
                recipe = Recipe(iterations=n, milestones=milestones, batch_size=args.batch_size,
                                precision=c["precision"], compile=c["compile"],
                                channels_last=c["channels_last"], eval_every=n,
                                checkpoint_every=n, train_window=window, name="fidelity")
                config = RunConfig(model=name, dataset=dataset.name, seed=seed, recipe=recipe,
                                   prepared=str(prepared), device=str(device))
                t = time.perf_counter()
                out = Path(tmp) / f"{c['config'].replace(' ', '_')}-{seed}"
                s = train(config, out, progress=False).summary
                if s.get("status") != "completed":
                    raise FloatingPointError(f"fidelity run {c['config']} seed {seed} "
                                             f"{s.get('status')} at iteration {s.get('iterations')}")
                print(f"  seed {seed} {c['config']:<28} train loss {s['final_train_loss']:.4f}  "
                      f"train err {s['final_train_error_pct']:6.2f}%  test err "
                      f"{s['final_test_error_pct']:6.2f}%  ({time.perf_counter() - t:.0f} s)",
                      flush=True)
                rows.append({"model": name, "config": c["config"], "seed": seed, "iterations": n,
                             "batch_size": args.batch_size, "dataset": dataset.name,
                             "device": s.get("device"), "torch": torch.__version__,
                             **{k: s[k] for k in ("final_train_loss", "final_train_error_pct",
                                                  "final_test_loss", "final_test_error_pct",
                                                  "images_per_s", "compile_time_s")}})
    _print_fidelity(rows, configs)
    if args.csv:
        from resnet_bench.train import provenance
        commit = provenance.code_revision()["git_commit"]
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=FIDELITY_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "git_commit": commit})
        print(f"[bench] wrote {path} ({len(rows)} rows)", file=sys.stderr)
    return 0


def _print_fidelity(rows: list[dict[str, Any]], configs: list[dict[str, Any]]) -> None:
    ref = configs[0]["config"]
    ref_mean, ref_sd = _mean_std([r["final_train_error_pct"] for r in rows if r["config"] == ref])
    print(f"\n  {'config':<28}{'train loss':>20}{'train err %':>18}{'test err %':>18}"
          f"{'train err - ' + ref:>30}")
    for c in configs:
        sel = [r for r in rows if r["config"] == c["config"]]
        cells = []
        for key, fmt in (("final_train_loss", "{:.4f} ± {:.4f}"), ("final_train_error_pct", "{:.2f} ± {:.2f}"),
                         ("final_test_error_pct", "{:.2f} ± {:.2f}")):
            cells.append(fmt.format(*_mean_std([r[key] for r in sel])))
        delta = _mean_std([r["final_train_error_pct"] for r in sel])[0] - ref_mean
        in_sd = f" ({abs(delta) / ref_sd:.1f} sd)" if ref_sd > 0 else ""
        print(f"  {c['config']:<28}{cells[0]:>20}{cells[1]:>18}{cells[2]:>18}"
              f"{f'{delta:+.2f}{in_sd}':>30}")
    print(f"\n± = seed-to-seed standard deviation; sd = the difference of mean training error "
          f"in units of the {ref} seed-to-seed sd. A fast option that leaves the science "
          "unchanged stays within about 2 sd; more seeds and iterations give a sharper test.")
