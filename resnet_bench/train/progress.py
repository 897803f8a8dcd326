"""Progress of a long run: tqdm's bar on a terminal, plain periodic lines in logs.

On a terminal the bar is tqdm's. In a log (a Slurm job, a pipeline job's `log:` file, any
non-terminal stream) tqdm is not used: it writes its updates separated by carriage returns
and ends the line only when the bar closes, so a log read while the run goes on (`tail`,
`grep`, Snakemake's excerpt of a failed job's log) holds a single line of every update so far
(tests/test_progress.py shows it). There, one self-contained line is written every `every_s`
seconds instead.
"""

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
        self.every_s = every_s
        self.t_start = time.perf_counter()
        self.last = 0.0
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, desc=label, file=self.stream,
                            unit="it", dynamic_ncols=True, mininterval=0.2)
        if start:
            self.note(f"resuming at iteration {start}/{total}")

    def update(self, it: int, *, loss: float, error: float, lr: float, images_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(it - self.bar.n)
            self.bar.set_postfix_str(f"loss {loss:.4f} | err {error:5.1f}% | lr {lr:.4g} | "
                                     f"{images_per_s:,.0f} img/s", refresh=False)
            return
        now = time.perf_counter()
        if now - self.last < self.every_s and it < self.total:
            return
        self.last = now
        done = it - self.start
        eta = (now - self.t_start) / done * (self.total - it) if done else 0.0
        pct = 100.0 * it / self.total
        self.stream.write(f"{self.label} | it {it}/{self.total} ({pct:4.1f}%) | loss {loss:.4f} | "
                          f"err {error:5.1f}% | lr {lr:.4g} | {images_per_s:,.0f} img/s | "
                          f"ETA {_hms(eta)}\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(f"{self.label}: {message}", file=self.stream)
            return
        self.stream.write(f"{self.label}: {message}\n")
        self.stream.flush()

    def close(self, message: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.note(f"{message} ({_hms(time.perf_counter() - self.t_start)} elapsed)")
