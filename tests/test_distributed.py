"""One run over several processes (torch.distributed): real `torchrun` launches on CPU/gloo,
2 processes of 1 thread, v1-basic-8 on a tiny synthetic set, compared with single-process runs.

Equivalence tolerances. A 2-process run and a 1-process run with the same BatchNorm grouping
do the same arithmetic except for float32 summation order (DDP averages two half-batch
gradients where the single process sums the whole batch; the logged loss is the mean of two
half-batch means): ~1e-7 relative per step, which SGD then amplifies. Measured over the 24
iterations below (lr 0.02), per-GPU BN (2 processes) vs ghost BN (1 process): iteration 1
(before any update) 0, losses within 7e-4 relative (1e-7 until iteration 6, then a jump to
2e-5), final weights 1.6e-3 (relative L2 norm of the difference). The same single-process run
with 2 threads instead of 1 differs just as much (iteration 7 jump included: 5e-4, 1.3e-3), so
this is the run's own sensitivity to rounding, not the distribution. SyncBN vs whole-batch BN:
losses 1e-4, weights 5.4e-4 (iteration 1: 5e-8). Tolerances: FIRST_LOSS_RTOL, LOSS_RTOL, WEIGHT_RTOL
below (about 3x the worst measured). A wrong grouping (whole-batch BN vs ghost BN) differs by
9e-3 at iteration 1 and 3e-2 in the weights, which the test checks so that it can fail.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from resnet_bench.cli import main
from resnet_bench.data import DeviceLoader, prepare_dataset
from resnet_bench.train.exits import EXIT_PREEMPTED

FIRST_LOSS_RTOL, LOSS_RTOL, WEIGHT_RTOL = 1e-6, 2e-3, 5e-3
RECIPE = dict(iterations=24, milestones=(16,), lr=0.02, batch_size=32, eval_every=8,
              checkpoint_every=4, eval_batch_size=128, train_window=4)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun() -> list[str]:
    """The real torchrun: its console script where installed, else the module it runs."""
    beside = Path(sys.executable).with_name("torchrun")
    found = str(beside) if beside.exists() else shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def train_args(out: Path, data: str, **recipe) -> list[str]:
    args = ["train", "--model", "v1-basic-8", "--dataset", "synthetic", "--prepared", data,
            "--out", str(out), "--no-progress", "--threads", "1", "--device", "cpu"]
    for k, v in {**RECIPE, **recipe}.items():
        args += [f"--{k.replace('_', '-')}", *([str(x) for x in v] if isinstance(v, tuple) else [str(v)])]
    return args


def launch(out: Path, data: str, nproc: int, launcher: list[str] | None = None, **recipe):
    """The command of one run: `torchrun --nproc-per-node N -m resnet_bench.cli train ...`, or
    the plain single-process command for nproc 0."""
    if nproc == 0:
        return [sys.executable, "-m", "resnet_bench.cli", *train_args(out, data, **recipe)]
    return [*(launcher or torchrun()), "--standalone", "--nproc-per-node", str(nproc),
            "-m", "resnet_bench.cli", *train_args(out, data, **recipe)]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def losses(out: Path) -> list[float]:
    with open(out / "train_log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def weights(out: Path) -> torch.Tensor:
    state = torch.load(out / "model.pt")
    return torch.cat([v.double().flatten() for v in state.values() if v.is_floating_point()])


def assert_equivalent(a: Path, b: Path) -> None:
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb) == RECIPE["iterations"]
    assert la[0] == pytest.approx(lb[0], rel=FIRST_LOSS_RTOL)
    assert la == pytest.approx(lb, rel=LOSS_RTOL)
    wa, wb = weights(a), weights(b)
    assert float((wa - wb).norm() / wa.norm()) < WEIGHT_RTOL


def assert_identical(a: Path, b: Path) -> None:
    assert losses(a) == losses(b)
    assert torch.equal(weights(a), weights(b))
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("final_train_loss", "final_train_error_pct", "final_test_loss",
                "final_test_error_pct"):
        assert sa[key] == sb[key], key


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "synthetic-tiny.pt"
    prepare_dataset("synthetic", None, path, train_size=256, test_size=128)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """Finished runs by (processes, bn_batch_size), trained once for the whole module; 0
    processes: the plain single-process command."""
    root, done = tmp_path_factory.mktemp("runs"), {}

    def get(nproc: int, bn: int) -> Path:
        if (nproc, bn) not in done:
            out = root / f"p{nproc}-bn{bn}"
            r = run(launch(out, data, nproc, bn_batch_size=bn))
            assert r.returncode == 0, r.stderr[-3000:]
            done[nproc, bn] = out
        return done[nproc, bn]
    return get


# --- fast: the pieces ------------------------------------------------------------------------------

def test_rank_slices_of_a_batch_are_the_single_process_batch():
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(50) % 10
    one = DeviceLoader(x, y, batch_size=12, seed=3)
    parts = [DeviceLoader(x, y, batch_size=12, seed=3, rank=r, world_size=3) for r in range(3)]
    for i in (0, 4, 9):  # batch 4 wraps an epoch
        xb, yb = one.batch(i)
        slices = [p.batch(i) for p in parts]
        assert all(len(s[1]) == 4 for s in slices)
        assert torch.equal(torch.cat([s[0] for s in slices]), xb)
        assert torch.equal(torch.cat([s[1] for s in slices]), yb)


def test_ghost_bn_keeps_the_state_dict_and_normalises_each_group_alone():
    from resnet_bench.models import build_model, parse_model_name
    from resnet_bench.models.batchnorm import GhostBatchNorm2d, convert_batchnorm
    torch.manual_seed(0)
    plain = build_model(parse_model_name("v1-basic-8"), num_classes=10, in_channels=3)
    ghost = convert_batchnorm(build_model(parse_model_name("v1-basic-8"), num_classes=10,
                                          in_channels=3), GhostBatchNorm2d, group=4)
    ghost.load_state_dict(plain.state_dict())
    assert list(ghost.state_dict()) == list(plain.state_dict())
    x = torch.randn(8, 3, 16, 16)
    out = ghost(x)
    assert torch.allclose(out[:4], plain(x[:4]), atol=1e-6)
    # running statistics are those of the first group alone (rank 0's under DDP)
    for name, buf in ghost.named_buffers():
        assert torch.equal(buf, plain.state_dict()[name]), name


@pytest.mark.parametrize("world, argv, needle", [
    (2, ["--batch-size", "33"], "batch_size: got 33; allowed: a multiple of the world size 2"),
    (2, ["--batch-size", "32", "--bn-batch-size", "32"],
     "bn_batch_size: got 32; allowed: 0 (the whole mini-batch) or a divisor of batch_size 32 / "
     "world size 2 = 16"),
    (1, ["--batch-size", "32", "--bn-batch-size", "12"], "bn_batch_size: got 12"),
])
def test_batch_and_bn_sizes_that_do_not_fit_the_world_are_one_line(tmp_path, capsys, monkeypatch,
                                                                     world, argv, needle):
    # torchrun's environment for rank 0 of `world` processes: refused before the process
    # group is joined (which would wait for the other ranks) and before anything is written
    if world > 1:
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("LOCAL_RANK", "0")
    code = main(["train", "--model", "v1-basic-8", "--data-option", "train_size=64",
                 "--device", "cpu", "--out", str(tmp_path / "bad"), "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


# --- slow: real torchrun launches ------------------------------------------------------------------

@pytest.mark.slow
def test_per_gpu_bn_over_two_processes_equals_ghost_bn_in_one(runs):
    two, one = runs(2, 16), runs(0, 16)
    assert_equivalent(two, one)
    # the tolerances tell groupings apart: whole-batch BN is far outside them
    whole = runs(0, 0)
    assert abs(losses(whole)[0] - losses(one)[0]) / losses(one)[0] > 100 * FIRST_LOSS_RTOL
    w1, ww = weights(one), weights(whole)
    assert float((w1 - ww).norm() / w1.norm()) > 3 * WEIGHT_RTOL
    # one writer: each iteration logged once; provenance names the layout
    prov = json.loads((two / "provenance.json").read_text())["distributed"]
    assert prov["world_size"] == 2 and prov["backend"] == "gloo"
    assert prov["bn"]["mode"] == "per-process" and prov["bn"]["statistics_over_examples"] == 16
    assert [d["rank"] for d in prov["rank_devices"]] == [0, 1]
    assert all(d["device"] == "cpu" for d in prov["rank_devices"])
    ghost = json.loads((one / "provenance.json").read_text())["distributed"]
    assert ghost["world_size"] == 1 and ghost["bn"]["mode"] == "ghost"
    evals = json.loads((two / "summary.json").read_text())
    assert evals["status"] == "completed" and evals["final_test_error_pct"] is not None


@pytest.mark.slow
def test_syncbn_over_two_processes_equals_whole_batch_bn_in_one(runs):
    two = runs(2, 0)
    assert_equivalent(two, runs(0, 0))
    assert json.loads((two / "provenance.json").read_text())["distributed"]["bn"]["mode"] == "sync"


def _ranks(launcher: psutil.Process, n: int, timeout: float = 120) -> dict[int, psutil.Process]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = {}
        for p in launcher.children(recursive=True):
            try:
                env = p.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if "RANK" in env and "resnet_bench.cli" in " ".join(p.cmdline()):
                found[int(env["RANK"])] = p
        if len(found) == n:
            return found
        time.sleep(0.05)
    raise AssertionError("the ranks never started")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"finished before {path} appeared"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_of_one_rank_then_rerun_ends_as_an_uninterrupted_run(tmp_path, data, runs):
    out = tmp_path / "killed"
    cmd = launch(out, data, 2, bn_batch_size=16)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    ranks = _ranks(psutil.Process(proc.pid), 2)
    _wait_for(out / "checkpoint.pt", proc)
    ranks[1].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-2000:]
    assert not (out / "summary.json").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert 0 < ckpt["iteration"] < RECIPE["iterations"]
    again = run(cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed"] == 1
    assert_identical(out, runs(2, 16))


# A 2-rank run long enough to be stopped in its training loop, started by the wrapper.
LONGER = dict(bn_batch_size=16, iterations=300, milestones=(), checkpoint_every=1000, eval_every=1000)


def _training_under_the_wrapper(out: Path, data: Path) -> subprocess.Popen:
    wrapper = [sys.executable, "-m", "resnet_bench.train.distributed"]
    proc = subprocess.Popen(launch(out, data, 2, launcher=wrapper, **LONGER),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _wait_for(out / "provenance.json", proc)  # the ranks are in the training loop
    time.sleep(1.0)
    return proc


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_and_exits_75_then_the_rerun_completes(tmp_path, data):
    out = tmp_path / "term"
    proc = _training_under_the_wrapper(out, data)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    assert "checkpoint written at iteration" in err
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert 0 < ckpt["iteration"] < LONGER["iterations"]
    with open(out / "train_log.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == ckpt["iteration"]  # rank 0 alone, up to the stop
    again = run(launch(out, data, 2, **LONGER))  # plain torchrun resumes it
    assert again.returncode == 0, again.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["resumed"] == 1
    assert len(losses(out)) == LONGER["iterations"]


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_with_75(tmp_path, data):
    # As Slurm signals the processes of a step: the ranks agree at the next sync, rank 0
    # checkpoints, each exits 75; torchrun reports the failures, the wrapper exits 75.
    out = tmp_path / "rank-term"
    proc = _training_under_the_wrapper(out, data)
    _ranks(psutil.Process(proc.pid), 2)[1].send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    # torchrun logs each failed process's status; every one it saw was the preempted 75
    codes = re.findall(r"\(exitcode: (-?\d+)\)", err)
    assert codes and set(codes) == {"75"}, err[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert 0 < ckpt["iteration"] < LONGER["iterations"]


@pytest.mark.parametrize("codes, status", [
    ((75, 75), EXIT_PREEMPTED),
    ((75, -signal.SIGTERM), EXIT_PREEMPTED),  # torchrun stopped the other rank first
    ((75, -signal.SIGKILL), EXIT_PREEMPTED),  # ... past its shutdown timeout
    ((75, 1), 1),                             # a rank of its own failed
    ((-signal.SIGTERM,), 1),                  # nobody checkpointed on its way out
])
def test_the_wrapper_exits_75_when_the_run_was_preempted(monkeypatch, tmp_path, codes, status):
    from torch.distributed import run as torch_run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from resnet_bench.train.distributed import torchrun

    def ended(argv):
        raise ChildFailedError("train", {rank: ProcessFailure(rank, 1000 + rank, code, str(tmp_path / "e"))
                                         for rank, code in enumerate(codes)})

    monkeypatch.setattr(torch_run, "main", ended)
    assert torchrun([]) == status
