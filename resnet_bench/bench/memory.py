"""Peak memory of one timed path (GPU allocator peak, or CPU resident-set growth)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import threading


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_freed_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: hand freed heap back to the OS


class PeakMemory:
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

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            import torch
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        release_freed_memory()
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
