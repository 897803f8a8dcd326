"""What both timed paths share: the iteration timer, the timed loop, backend flags, model and
dataset."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from resnet_bench.schema import PAPER_ITERATIONS as PAPER_SCHEDULES

PAPER_ITERATIONS = PAPER_SCHEDULES["cifar"]
# Training FLOPs per image = MACs x 2 FLOP/MAC x 3 (forward, grad wrt activations, grad wrt weights).
FLOP_PER_MAC_TRAIN = 2 * 3


class IterationTimer:
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


@contextlib.contextmanager
def backend_flags(device, precision: str | None):
    """The trainer's cuDNN/TF32 settings (precision given) or torch's defaults (None), restored after."""
    import torch
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    try:
        if precision is not None:  # exactly what the trainer sets
            from resnet_bench.train.step import configure_backends
            configure_backends(device, precision)
        else:  # a typical script: cudnn.benchmark = True, everything else torch's defaults
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def timed(step: Callable[[int], int], *, warmup: int, iters: int, device,
           note: Callable[[str], None]) -> tuple[float, list[float], int]:
    """Run `step(i) -> images` warmup + iters times; (first-iteration s, timed ms list, images)."""
    clock = IterationTimer(device)
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


def build_model_on(name: str, num_classes: int, in_channels: int, seed: int, device):
    import torch
    from resnet_bench.models import build_model
    torch.manual_seed(seed)
    return build_model(name, num_classes=num_classes, in_channels=in_channels).to(device)


def bench_dataset(args):
    """The dataset the networks are timed on, held in memory; a streamed one is refused (a
    kind before it is indexed): `--stream` times the streaming loader."""
    from resnet_bench import data
    from resnet_bench.data.registry import lookup
    streamed = ("is streamed from disk per batch; the networks are timed on a dataset held in "
                "memory (--stream times the streaming loader)")
    if args.prepared:
        ds = data.load_prepared(args.prepared)
        if getattr(ds, "streaming", False):
            raise ValueError(f"--prepared {args.prepared}: {streamed}")
        return ds
    if lookup(args.dataset).streamed:
        raise ValueError(f"--dataset {args.dataset}: {streamed}")
    if args.dataset == "synthetic":
        options = {} if args.train_size is None else {"train_size": args.train_size, "test_size": 10}
        return data.load_dataset("synthetic", args.data_dir, **options)
    return data.load_dataset(args.dataset, args.data_dir)
