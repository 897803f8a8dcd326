"""Local multi-GPU through Snakemake: `--workflow-profile profiles/local --cores 4 --resources
gpu=2` with two fake GPUs (RESNET_BENCH_GPU_IDS=0,1).  Snakemake only counts the gpu resource;
each trainer claims a device itself (resnet_bench/infra/gpu.py, one flock per GPU).  While the pipeline
runs, a sampler reads /proc/locks (who holds which GPU's lock file, every 20 ms) and one
training (the first to checkpoint) is SIGKILLed mid-run.  Shown end to end: two trainings run at
once on different GPUs, never two on one GPU, the killed one's GPU is free again at once (no job
ever waited for a slot, both GPUs busy again afterwards), and its retry resumes from the
checkpoint.  tests/test_gpu.py covers the lock layer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_helpers import run_dir, snakemake_env, tiny_default_config, workflow_copy  # noqa: E402

pytestmark = pytest.mark.slow

MODELS = ["plain-basic-8", "v1-basic-8"]
SEEDS = [0, 1]
# Each training must outlast a trainer's start-up (3-5 s on 2 busy cores, mostly importing
# torch): at 80 iterations (~4 s on a fast core) the trainings after the crash ran one after
# another, each ending before the next one had claimed its GPU, and no overlap was ever seen.
ITERATIONS = 240
CHECKPOINT_EVERY = 20


def _lock_holders(lock_dir: Path) -> dict[str, int]:
    """GPU id -> pid holding its slot-0 lock file, read from /proc/locks (no locking of our own)."""
    inodes = {}
    for path in lock_dir.glob("gpu*.slot0.lock"):
        try:
            inodes[path.stat().st_ino] = path.name[len("gpu"):-len(".slot0.lock")]
        except OSError:
            pass
    held = {}
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        inode = int(parts[5].rsplit(":", 1)[1])
        if inode in inodes:
            held[inodes[inode]] = int(parts[4])
    return held


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    if not Path("/proc/locks").exists():
        pytest.skip("needs /proc/locks (Linux) to watch the GPU locks")
    base = tmp_path_factory.mktemp("gpus")
    wd = workflow_copy(base / "wf")
    cfg = tiny_default_config(MODELS, SEEDS, ITERATIONS, CHECKPOINT_EVERY, device="auto")
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    lock_dir = base / "locks"
    env = snakemake_env(RESNET_BENCH_GPU_IDS="0,1", RESNET_BENCH_GPU_LOCK_DIR=str(lock_dir),
                        RESNET_BENCH_GPU_WAIT_S="60")
    samples: list[tuple[float, dict[str, int]]] = []
    killed: dict = {}
    stop = threading.Event()

    runs = [(m, s) for m in MODELS for s in SEEDS]

    def watch():
        # SIGKILL the first training that writes a checkpoint: a crash mid-run while other jobs
        # still wait for a GPU.
        while not stop.is_set():
            if lock_dir.is_dir():
                samples.append((time.time(), _lock_holders(lock_dir)))
            for key in runs if not killed else []:
                victim = run_dir(wd, cfg, *key)
                if not (victim / "checkpoint.pt").exists():
                    continue
                try:
                    claim = json.loads((victim / "provenance.json").read_text())["gpu_claim"]
                    cmdline = Path(f"/proc/{claim['pid']}/cmdline").read_bytes()
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                # that trainer, still alive (its --out is the run directory, relative to wd)
                if b"train" in cmdline and str(victim.relative_to(wd)).encode() in cmdline:
                    os.kill(claim["pid"], signal.SIGKILL)
                    killed.update(key=key, pid=claim["pid"], gpu=claim["gpu"], at=time.time())
                    break
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        res = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/local",
                              "--cores", "4", "--resources", "gpu=2"],
                             cwd=wd, env=env, capture_output=True, text=True, timeout=900)
    finally:
        stop.set()
        watcher.join(timeout=10)
    return {"wd": wd, "cfg": cfg, "res": res, "samples": samples, "killed": killed,
            "seconds": time.monotonic() - t0}


def _provenance(run, model, seed):
    return json.loads((run_dir(run["wd"], run["cfg"], model, seed) / "provenance.json").read_text())


def test_pipeline_completes_after_the_crash(local_run):
    res = local_run["res"]
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    killed = local_run["killed"]
    print(f"local pipeline with 2 fake GPUs: {local_run['seconds']:.0f} s, "
          f"{len(local_run['samples'])} lock samples, SIGKILLed {killed.get('key')} on GPU "
          f"{killed.get('gpu')}")
    assert local_run["killed"], "the training to crash was never seen running"
    for model in MODELS:
        for seed in SEEDS:
            summary = json.loads((run_dir(local_run["wd"], local_run["cfg"], model, seed)
                                  / "summary.json").read_text())
            assert summary["status"] == "completed"
    key = local_run["killed"]["key"]
    crashed = json.loads((run_dir(local_run["wd"], local_run["cfg"], *key) / "summary.json").read_text())
    assert crashed["resumed"] >= 1, "the retry did not resume from the checkpoint"


def test_every_training_claimed_a_gpu_without_waiting(local_run):
    for model in MODELS:
        for seed in SEEDS:
            claim = _provenance(local_run, model, seed)["gpu_claim"]
            assert claim["source"] == "lock" and claim["pool"] == ["0", "1"], claim
            assert claim["gpu"] in ("0", "1")
            # `--resources gpu=2` matches the pool: a slot is always free when a job starts,
            # also right after a crash (the kernel dropped the dead trainer's lock).
            assert claim["waited_s"] < 1.0, claim


def test_no_two_concurrent_trainings_shared_a_gpu(local_run):
    samples = local_run["samples"]
    assert samples
    spans: dict[int, list] = {}  # pid -> [gpu, first seen, last seen]
    for t, held in samples:
        assert len(set(held.values())) == len(held), f"one process held two GPUs: {held}"
        for gpu, pid in held.items():
            span = spans.setdefault(pid, [gpu, t, t])
            assert span[0] == gpu, f"pid {pid} seen on GPU {span[0]} and {gpu}"
            span[2] = t
    # What the trainers recorded agrees with the locks they were seen holding.
    recorded = {}
    for model in MODELS:
        for seed in SEEDS:
            claim = _provenance(local_run, model, seed)["gpu_claim"]
            recorded[claim["pid"]] = claim["gpu"]
    recorded[local_run["killed"]["pid"]] = local_run["killed"]["gpu"]
    for pid, (gpu, _, _) in spans.items():
        assert recorded.get(pid, gpu) == gpu, (pid, gpu, recorded)
    assert set(recorded) <= set(spans), "a trainer's lock was never seen"
    items = list(spans.items())
    both_busy = 0
    for i, (pa, (ga, sa, ea)) in enumerate(items):
        for pb, (gb, sb, eb) in items[i + 1:]:
            if sa <= eb and sb <= ea:
                both_busy += 1
                assert ga != gb, f"trainers {pa} and {pb} ran at the same time on GPU {ga}"
    assert both_busy, f"no two trainings ever ran at the same time: {spans}"
    assert max(len(held) for _, held in samples) == 2


def test_a_crashed_training_frees_its_gpu(local_run):
    killed = local_run["killed"]
    after = [(t, held) for t, held in local_run["samples"] if t > killed["at"] + 0.5]
    assert all(killed["pid"] not in held.values() for _, held in after), "the dead trainer kept its lock"
    # Two trainings at once after the crash: one of them on the dead trainer's GPU.
    both = [held for _, held in after if len(held) == 2]
    assert both, "two GPUs were never in use at once after the crash"
    assert all(held[killed["gpu"]] != killed["pid"] for held in both)


def test_runs_per_gpu_shares_one_gpu_between_trainings(tmp_path):
    """`runs_per_gpu: 2` with one fake GPU and --resources gpu=2: both trainings claim GPU 0,
    on its two slots, at the same time, and neither waited for a slot."""
    wd = workflow_copy(tmp_path / "wf")
    cfg = tiny_default_config(["v1-basic-8"], [0, 1], 60, 30, device="auto")
    cfg["runs_per_gpu"] = 2
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = snakemake_env(RESNET_BENCH_GPU_IDS="0", RESNET_BENCH_GPU_LOCK_DIR=str(tmp_path / "locks"),
                        RESNET_BENCH_GPU_WAIT_S="5")
    res = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/local",
                          "--cores", "2", "--resources", "gpu=2", "--until", "train"],
                         cwd=wd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    provs = [json.loads((run_dir(wd, cfg, "v1-basic-8", s) / "provenance.json").read_text())
             for s in (0, 1)]
    claims = [p["gpu_claim"] for p in provs]
    assert [c["gpu"] for c in claims] == ["0", "0"] and sorted(c["slot"] for c in claims) == [0, 1]
    assert all(c["source"] == "lock" and c["waited_s"] < 1.0 for c in claims), claims
    # Both held their slot at once: each started before the other finished.
    from datetime import datetime
    t = [(datetime.fromisoformat(p["started"]), datetime.fromisoformat(p["finished"])) for p in provs]
    assert t[0][0] < t[1][1] and t[1][0] < t[0][1], t
