"""Shared by the pipeline tests that run Snakemake for real (locally with fake GPUs, or on the
CI Slurm cluster of .ci/slurm): a scratch copy of the workflow, a shrunken default config, and
the "is the cluster up?" check that skips -- or fails, under RESNET_BENCH_REQUIRE_SLURM=1."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REQUIRE_SLURM_ENV = "RESNET_BENCH_REQUIRE_SLURM"


# --------------------------------------------------------------------------- the cluster


@functools.lru_cache(maxsize=1)
def slurm_problem() -> str | None:
    """Why the Slurm cluster cannot be used, or None when it is up."""
    if shutil.which("sinfo") is None:
        return "sinfo not on PATH (start a local cluster with .ci/slurm/start.sh)"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T %G"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "Slurm cluster not up: sinfo timed out"
    states = r.stdout.split()
    if r.returncode != 0 or not any(s.rstrip("*~#").startswith(("idle", "mixed", "allocated"))
                                    for s in states[0::2]):
        first = (r.stderr.strip() or r.stdout.strip() or "no nodes").splitlines()[0]
        return f"Slurm cluster not up ({first}); start it with .ci/slurm/start.sh"
    return None


def require_slurm() -> None:
    """Skip the calling test when no cluster is up -- unless CI demands one: with
    RESNET_BENCH_REQUIRE_SLURM=1 a missing cluster is a failure, not a silent skip."""
    why = slurm_problem()
    if why is None:
        return
    if os.environ.get(REQUIRE_SLURM_ENV) == "1":
        pytest.fail(f"{REQUIRE_SLURM_ENV}=1 but {why}", pytrace=False)
    pytest.skip(why)


def slurm_gpu_count() -> int:
    r = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=15)
    counts = [int(g.split(":")[-1].split("(")[0]) for g in r.stdout.split() if g.startswith("gpu")]
    return max(counts, default=0)


# --------------------------------------------------------------------------- the workflow


def workflow_copy(dest: Path) -> Path:
    """The workflow, its config and profiles in a scratch directory (never the repo's results/)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "environment.yml"):
        shutil.copy(REPO / name, dest / name)
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / name, dest / name)
    return dest


def tiny_default_config(models: list[str], seeds: list[int], iterations: int,
                        checkpoint_every: int, device: str = "cpu") -> dict:
    """config/config.yaml (the default experiment) cut down: a few runs of tiny networks on 256
    synthetic images, and no analysis rules. The tests of GPU assignment use device "auto":
    a `device: cpu` training asks for no GPU, and "auto" trains on the CPU of a host whose
    GPUs are fakes."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["device"] = device
    cfg["threads_per_run"] = 1
    cfg["datasets"] = {"synthetic": {"kind": "synthetic",
                                     "options": {"train_size": 256, "test_size": 128, "seed": 0}}}
    recipe = cfg["recipes"]["quick"]
    # fp32 as the tests' timings were made: the default's bf16 would make these runs so short
    # that the lock-overlap checks of the GPU-pool tests lose their window.
    recipe.update(iterations=iterations, milestones=[iterations // 2, iterations * 3 // 4],
                  batch_size=32, warmup="none", eval_every=checkpoint_every, eval_batch_size=128,
                  checkpoint_every=checkpoint_every, train_window=10, grad_norm_every=0,
                  precision="fp32", channels_last=False)
    cfg["grid"] = [{"models": list(models), "datasets": ["synthetic"], "seeds": list(seeds),
                    "recipe": "quick"}]
    cfg.pop("analysis", None)
    return cfg


def snakemake_env(**extra: str) -> dict[str, str]:
    """The caller's environment without GPU/Slurm leftovers, with this venv's bin first on PATH
    (the rules call `resnet-bench`; Slurm jobs inherit it through sbatch --export=ALL)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "RESNET_BENCH_GPU_", "SNAKEMAKE_"))
           and k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_dir(wd: Path, cfg: dict, model: str, seed: int) -> Path:
    return wd / cfg["results"] / cfg["experiment"] / "runs" / "synthetic" / "quick" / model / f"seed{seed}"


def run_in(wd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """A command in the workflow copy, in the pipeline tests' environment, output captured."""
    return subprocess.run(list(args), cwd=wd, env=snakemake_env(), capture_output=True, text=True,
                          timeout=timeout)


def pipeline_until_checkpoint(wd: Path, cmd: list[str], run: Path) -> subprocess.Popen:
    """Start the pipeline in a session of its own; return once `run` holds a checkpoint."""
    proc = subprocess.Popen(cmd, cwd=wd, env=snakemake_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (run / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the kill"
        time.sleep(0.1)
    return proc


def kill_pipeline(proc: subprocess.Popen, wd: Path) -> None:
    """SIGKILL snakemake and its trainers at once, like a power loss; none of them survives."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert not processes_mentioning(str(wd)), "a process of the killed pipeline survived"


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line or cwd contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = next(line for line in (entry / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "Z (zombie)" in state:
            continue
        if text in cmd or cwd.startswith(text):
            found.append((int(entry.name), cmd.strip()))
    return found


# --------------------------------------------------------------------------- presets


def resource_defaults() -> dict:
    """The config's `resources` as the schema fills it in when the config sets none."""
    props = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())[
        "properties"]["resources"]["properties"]
    return {key: {k: v["default"] for k, v in entry["properties"].items()}
            if "properties" in entry else entry["default"] for key, entry in props.items()}
