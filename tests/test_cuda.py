"""The CUDA path, on a real GPU (`pytest -m cuda`; scripts/gpu-check.sh runs it first).

Skipped with a reason where torch sees no CUDA device, so CI shows these tests exist. Sizes are
small so the whole module fits the check's budget on one GPU. RESNET_BENCH_TEST_TIMEOUT_S limits
each test (the check sets it), and SIGTERM ends the session as Ctrl-C does, so that pytest still
writes its junit XML when the check's time limit stops it. tests/test_cuda_paths_on_cpu.py runs
what of these paths a CPU can reach.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device (torch.cuda.is_available() is False); "
                              "run on a GPU: scripts/gpu-check.sh OUTDIR"),
]

REPO = Path(__file__).resolve().parents[1]
TEST_TIMEOUT_S = float(os.environ.get("RESNET_BENCH_TEST_TIMEOUT_S", "0"))  # 0: no limit


@pytest.fixture(autouse=True, scope="module")
def _sigterm_is_an_interrupt():
    def interrupt(*_):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, old)


@pytest.fixture(autouse=True)
def _time_limit():
    """A test that outlasts the limit fails alone; the others still run. (A call blocked inside
    CUDA is interrupted when it returns; the check's step timeout is the backstop.)"""
    if TEST_TIMEOUT_S <= 0:
        yield
        return

    def expire(*_):
        raise TimeoutError(f"test exceeded its {TEST_TIMEOUT_S:.0f} s (RESNET_BENCH_TEST_TIMEOUT_S)")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
# A CUDA run follows the CPU run's loss within this much (absolute, nats) on the mean over the
# last 20 of 60 iterations; before any update (iteration 1) the losses agree to 1e-3. fp32 with
# TF32 off: the only differences are reduction orders (cuDNN vs oneDNN), which grow chaotically.
LOSS_TOL_FIRST = 1e-3
LOSS_TOL_WINDOW = 0.05


def _synthetic(n=1024):
    from resnet_bench import data
    return data.load_dataset("synthetic", None, train_size=n, test_size=200, difficulty="easy")


def _config(tmp_path, **recipe):
    from resnet_bench.data import save_prepared
    from resnet_bench.train.recipe import Recipe, RunConfig
    prepared = tmp_path / "data.pt"
    if not prepared.exists():
        save_prepared(_synthetic(), prepared)
    model = recipe.pop("model", "v1-basic-8")
    base = dict(iterations=60, milestones=(30, 45), batch_size=64, eval_every=60,
                checkpoint_every=60, train_window=20, name="cuda-test")
    base.update(recipe)
    return RunConfig(model=model, dataset="synthetic", seed=0,
                     recipe=Recipe(**base), prepared=str(prepared), device="cuda")


def _losses(run_dir: Path) -> list[float]:
    import csv
    with open(run_dir / "train_log.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_device_loader_batches_equal_cpu_bit_for_bit():
    from resnet_bench.data import DeviceLoader
    ds = _synthetic(600)
    for normalize in ("pixel", "channel"):
        for channels_last in (False, True):
            kw = dict(batch_size=128, seed=3, normalize=normalize, channels_last=channels_last)
            cpu = DeviceLoader(ds.train_x, ds.train_y, device="cpu", **kw)
            gpu = DeviceLoader(ds.train_x, ds.train_y, device="cuda", **kw)
            # Integer sums: the statistics are the CPU's bits, not merely close to them.
            for key in ("mean_image", "mean", "std", "scale", "shift"):
                a, b = getattr(cpu.norm, key, None), getattr(gpu.norm, key, None)
                assert (a is None) == (b is None) and (a is None or torch.equal(a, b.cpu())), key
            for i in (0, 1, 4, 5, 11):  # 5 crosses an epoch boundary (600 / 128)
                (xc, yc), (xg, yg) = cpu.batch(i), gpu.batch(i)
                assert xg.device.type == "cuda"
                assert torch.equal(yc, yg.cpu())
                assert torch.equal(xc, xg.cpu()), (normalize, channels_last, i,
                                                   (xc - xg.cpu()).abs().max().item())
                assert xg.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_cuda_training_follows_the_cpu_loss_curve(tmp_path):
    from resnet_bench.train.loop import train
    cfg = _config(tmp_path)
    cuda = train(cfg, tmp_path / "cuda", progress=False).summary
    cpu_cfg = dataclasses.replace(cfg, device="cpu")
    cpu = train(cpu_cfg, tmp_path / "cpu", progress=False).summary
    assert cuda["status"] == cpu["status"] == "completed"
    lc, lg = _losses(tmp_path / "cpu"), _losses(tmp_path / "cuda")
    assert len(lc) == len(lg) == 60
    assert abs(lc[0] - lg[0]) < LOSS_TOL_FIRST, (lc[0], lg[0])
    window = abs(sum(lc[-20:]) / 20 - sum(lg[-20:]) / 20)
    print(f"CPU vs CUDA: first loss {lc[0]:.5f} / {lg[0]:.5f}, mean of last 20 "
          f"{sum(lc[-20:]) / 20:.4f} / {sum(lg[-20:]) / 20:.4f} (|diff| {window:.4f})")
    assert window < LOSS_TOL_WINDOW
    assert lg[-1] < lg[0]  # it learned


def test_bf16_channels_last_compile_trains_and_resumes_after_sigterm(tmp_path):
    from resnet_bench.data import save_prepared
    prepared = tmp_path / "data.pt"
    save_prepared(_synthetic(), prepared)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resnet_bench.cli", "train", "--model", "v1-basic-8",
           "--prepared", str(prepared), "--dataset", "synthetic", "--device", "cuda",
           "--precision", "bf16", "--channels-last", "--compile", "--iterations", "400",
           "--milestones", "200", "300", "--batch-size", "64", "--checkpoint-every", "25",
           "--eval-every", "400", "--train-window", "20", "--no-progress", "--out", str(out)]
    env = {**os.environ, "RESNET_BENCH_GPU_SLOTS": "8"}
    p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.pt").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()[0][-3000:]
        p.send_signal(signal.SIGTERM)
        log = p.communicate(timeout=60)[0]
    finally:
        p.kill()
    assert p.returncode == 75, log[-3000:]
    assert not (out / "summary.json").exists()
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["iterations"] == 400 and s["resumed"] == 1
    assert s["precision"] == "bf16" and s["compile_time_s"] > 0
    its = [int(r) for r in (l.split(",")[0] for l in (out / "train_log.csv").read_text().splitlines()[1:])]
    assert its == list(range(1, 401))  # no gap, no duplicate across the resume
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["resumes"][0]["at_iteration"] > 0 and prov["hardware"]["device"].startswith("cuda")


def test_out_of_memory_fallback_really_triggers(tmp_path):
    """Peak memory with and without activation checkpointing is measured first; the limit is
    set a quarter of the way from the checkpointed peak to the plain one, so the plain step must
    run out of memory and the fallback must fit. Both peaks include cuDNN's autotuning
    workspaces, which a capped allocator lets cuDNN shrink: hence not the midpoint. The CPU test
    of the fallback's logic is in test_cuda_paths_on_cpu.py; this one asks whether a real
    torch.OutOfMemoryError happens and is caught where the trainer expects it."""
    from resnet_bench.train.loop import train
    model, batch = "v1-basic-56", 256

    def peak(ckpt: bool, name: str) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        s = train(_config(tmp_path, model=model, batch_size=batch, iterations=2, milestones=(1,),
                          train_window=1, eval_every=2, eval_batch_size=100,
                          activation_checkpointing=ckpt), tmp_path / name, progress=False).summary
        assert s["status"] == "completed"
        return torch.cuda.max_memory_reserved()

    full, ckpt = peak(False, "probe-full"), peak(True, "probe-ckpt")
    assert ckpt < 0.7 * full, (ckpt, full)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    limit = ckpt + (full - ckpt) / 4
    print(f"peak reserved: {full / 2**20:.0f} MiB plain, {ckpt / 2**20:.0f} MiB checkpointed; "
          f"limit {limit / 2**20:.0f} MiB")
    torch.cuda.set_per_process_memory_fraction(limit / total)
    try:
        s = train(_config(tmp_path, model=model, batch_size=batch, iterations=4, milestones=(2,),
                          train_window=2, eval_every=4, eval_batch_size=100),
                  tmp_path / "run", progress=False).summary
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert s["status"] == "completed" and s["iterations"] == 4
    assert s["oom_fallback_at"] == 0, f"the plain step fit under {limit / 2**20:.0f} MiB"
    assert s["activation_checkpointing"] is True


def test_cuda_event_timing_agrees_with_wall_time():
    from resnet_bench.bench import IterationTimer
    from resnet_bench.models import build_model
    dev = torch.device("cuda")
    net = build_model("v1-basic-20", num_classes=10, in_channels=3).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(128, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (128,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(5):
        step()
    clock = IterationTimer(dev)
    clock.sync()
    t0 = time.perf_counter()
    clock.mark()
    n = 0
    while time.perf_counter() - t0 < 3.0 or n < 20:  # a long window: >= 3 s of queued work
        step()
        clock.mark()
        n += 1
    events_ms = sum(clock.intervals_ms())  # synchronises
    wall_ms = (time.perf_counter() - t0) * 1e3
    print(f"{n} iterations: CUDA events {events_ms:.1f} ms, wall {wall_ms:.1f} ms")
    assert abs(events_ms - wall_ms) <= 0.02 * wall_ms + 5.0


def _jpeg_tree(root: Path, subsampling: int) -> Path:
    """test_stream's tree (noise JPEGs, q90) with the given chroma subsampling (0: 4:4:4)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in range(3):
            folder = root / split / f"n{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                h, w = (72, 100) if k % 2 else (90, 76)
                arr = (rng.random((h, w, 3)) * 80 + c * 60).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"img{k}.JPEG", quality=90,
                                          subsampling=subsampling)
    return root


# nvJPEG against libjpeg-turbo, mean |difference| of normalised pixels (units of 1/255). 4:4:4
# has no chroma upsampling, so only the IDCTs' rounding differs (a level or two here and there).
# 4:2:0 adds the upsampling filters, which may differ (libjpeg-turbo's is triangular, "fancy"),
# worst on noise: no exactness can hold, so a bound that still catches a misplaced crop or a
# wrong channel order (those differ by ~27 levels on these images); the test prints the value.
NVJPEG_TOL_444 = 1.0 / 255
NVJPEG_TOL_420 = 10.0 / 255


@pytest.mark.parametrize("subsampling,tol", [(0, NVJPEG_TOL_444), (2, NVJPEG_TOL_420)])
def test_stream_loader_gpu_jpeg_decoding_matches_the_cpu_decoder(tmp_path, subsampling, tol):
    """decode=cuda (nvJPEG) gives the CPU decoder's batches up to the decoders' rounding: same
    labels, same crops (the augmentation is drawn on the CPU either way)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_stream import SMALL

    from resnet_bench import data
    from resnet_bench.data.stream import StreamLoader
    tree = _jpeg_tree(tmp_path / "tree", subsampling)
    cpu = StreamLoader(data.load_dataset("imagenet", tree, **SMALL), batch_size=6, seed=3,
                       device="cuda", workers=0)
    gpu = StreamLoader(data.load_dataset("imagenet", tree, **SMALL, decode="cuda"),
                       batch_size=6, seed=3, device="cuda", workers=0)
    for i in range(3):
        (xc, yc), (xg, yg) = cpu.batch(i), gpu.batch(i)
        assert xg.device.type == "cuda" and xg.shape == xc.shape and torch.equal(yg, yc)
        diff = (xg - xc).abs()
        print(f"subsampling {subsampling}, batch {i}: mean |diff| {diff.mean().item() * 255:.3f}, "
              f"max {diff.max().item() * 255:.1f} levels")
        assert diff.mean().item() < tol, i


def test_a_streamed_imagenet_net_trains_on_the_gpu(tmp_path):
    """The streaming kind end to end on CUDA: a 4-iteration imagenet-v1-basic-18 run through the
    CLI, 2 decoding workers, bf16 + channels_last, top-1 and top-5 recorded."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_stream import make_tree

    tree = make_tree(tmp_path / "tree", classes=6, train=6, held=2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resnet_bench.cli", "train", "--model", "imagenet-v1-basic-18",
           "--dataset", "imagenet", "--data-dir", str(tree), "--device", "cuda", "--no-progress",
           "--out", str(out), "--recipe-json",
           json.dumps({"iterations": 4, "milestones": [], "batch_size": 12, "eval_every": 4,
                       "checkpoint_every": 2, "train_window": 2, "precision": "bf16",
                       "channels_last": True, "data_workers": 2})]
    for option, value in (("crop", 64), ("resize_min", 72), ("resize_max", 100),
                          ("test_resize", 72), ("stats_images", 8)):
        cmd += ["--data-option", f"{option}={value}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["iterations"] == 4
    assert 0 <= summary["final_test_top5_error_pct"] <= summary["final_test_error_pct"] <= 100
