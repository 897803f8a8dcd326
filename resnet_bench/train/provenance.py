"""Provenance of a run: what code, on what software and hardware, produced it."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str, repo: Path = _REPO) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_revision(repo: Path = _REPO) -> dict[str, Any]:
    """Git commit of the package source, and whether the tracked files outside `results/` differ
    from it. `results/` is output, not code: a study in progress rewrites its tracked state
    archive there (scripts/study_state.sh save), which must not mark its own runs dirty."""
    from resnet_bench import __version__
    rev = _git("rev-parse", "HEAD", repo=repo)
    if rev is None:
        # Installed from a wheel/sdist: the package version is all there is.
        return {"git_commit": None, "git_dirty": None, "package_version": __version__}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results",
                  repo=repo)
    return {"git_commit": rev, "git_dirty": None if status is None else bool(status),
            "package_version": __version__}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"device": str(device), "device_name": props.name,
                "device_memory_gib": round(props.total_memory / 2**30, 1),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return {"device": str(device), "device_name": cpu_name(),
            "cpu_threads": torch.get_num_threads()}


def software_versions() -> dict[str, Any]:
    import numpy
    import torchvision
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def collect(config_hash: str, seed: int, device: torch.device) -> dict[str, Any]:
    return {
        "config_hash": config_hash,
        "seed": seed,
        "code": code_revision(),
        "software": software_versions(),
        "hardware": device_description(device),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "command": sys.argv,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": now(),
    }
