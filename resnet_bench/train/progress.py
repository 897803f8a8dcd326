"""Progress of a long run: a live bar on a terminal, plain periodic lines in logs."""

from __future__ import annotations

import sys
import time


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """`enabled=None` means: a bar when stderr is a terminal, else a line every `every_s` seconds."""

    def __init__(self, total: int, start: int = 0, enabled: bool | None = None,
                 label: str = "", every_s: float = 30.0, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.start, self.label = total, start, label
        self.tty = self.stream.isatty() if enabled is None else bool(enabled)
        self.every_s = 0.2 if self.tty else every_s
        self.t_start = time.perf_counter()
        self.last = 0.0
        self.line = ""
        if start:
            self.note(f"resuming at iteration {start}/{total}")

    def update(self, it: int, *, loss: float, error: float, lr: float, images_per_s: float) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s and it < self.total:
            return
        self.last = now
        done = it - self.start
        eta = (now - self.t_start) / done * (self.total - it) if done else 0.0
        pct = 100.0 * it / self.total
        self.line = (f"{self.label} | it {it}/{self.total} ({pct:4.1f}%) | loss {loss:.4f} | "
                     f"err {error:5.1f}% | lr {lr:.4g} | {images_per_s:,.0f} img/s | ETA {_hms(eta)}")
        if self.tty:
            self.stream.write("\r\033[K" + self.line)
        else:
            self.stream.write(self.line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        prefix = "\r\033[K" if self.tty else ""
        self.stream.write(f"{prefix}{self.label}: {message}\n")
        if self.tty and self.line:
            self.stream.write(self.line)
        self.stream.flush()

    def close(self, message: str) -> None:
        if self.tty:
            self.stream.write("\n")
        self.note(f"{message} ({_hms(time.perf_counter() - self.t_start)} elapsed)")
