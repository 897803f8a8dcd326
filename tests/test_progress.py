"""Progress of a training: tqdm's bar on a terminal, one self-contained line per period in logs,
and why the logs do not use tqdm (resnet_bench/train/progress.py)."""

from __future__ import annotations

import io

from tqdm import tqdm

from resnet_bench.train.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(p: Progress) -> None:
    for it in (10, 20, 30, 40):
        p.update(it, loss=1.5, error=42.0, lr=0.1, images_per_s=500.0)
    p.note("V1 warm-up over")
    p.close("completed")


def test_logs_get_one_newline_terminated_line_per_update():
    log = io.StringIO()
    _drive(Progress(total=40, label="v1-basic-20 seed 0", every_s=0.0, stream=log))
    lines = log.getvalue().splitlines(keepends=True)
    assert "\r" not in log.getvalue() and all(line.endswith("\n") for line in lines)
    assert [line.split(" | ")[1].split(" (")[0] for line in lines[:4]] == [
        f"it {i}/40" for i in (10, 20, 30, 40)]
    assert lines[4] == "v1-basic-20 seed 0: V1 warm-up over\n"
    assert lines[5].startswith("v1-basic-20 seed 0: completed (")


def test_tqdm_would_leave_a_log_read_mid_run_as_one_line():
    """The measured reason for the plain lines: tqdm on a non-terminal stream separates its
    updates with carriage returns and writes no newline until the bar closes."""
    log = io.StringIO()
    bar = tqdm(total=40, file=log, mininterval=0, miniters=1, desc="v1-basic-20 seed 0")
    for _ in range(4):
        bar.update(10)
    mid_run = log.getvalue()
    assert mid_run.count("\n") == 0 and mid_run.count("\r") >= 4
    bar.close()


def test_a_terminal_gets_tqdms_bar_with_the_notes_on_their_own_lines():
    term = Terminal()
    p = Progress(total=40, start=10, label="v2-basic-20 seed 1", stream=term)
    _drive(p)
    out = term.getvalue()
    assert "v2-basic-20 seed 1: resuming at iteration 10/40" in out
    assert "40/40" in out and ("it/s" in out or "s/it" in out)   # tqdm's own format
    assert "\nv2-basic-20 seed 1: V1 warm-up over\n" in out.replace("\r", "\n")
    assert out.rstrip().splitlines()[-1].startswith("v2-basic-20 seed 1: completed (")
