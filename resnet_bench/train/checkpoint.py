"""Atomic training checkpoints: everything needed to continue a run as if never stopped."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet_bench.train.records import atomic_write_bytes


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         iteration: int, state: dict[str, Any], identity: str) -> None:
    """Write a checkpoint taken after `iteration` completed updates.

    The data order is a pure function of (seed, iteration), so `iteration` is the whole data
    position; `state` holds the trainer's own small state (warm-up flag, timers, counters).
    """
    buf = io.BytesIO()
    torch.save({
        "iteration": iteration,
        "identity": identity,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_states(),
        "state": state,
    }, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint; the caller compares its `identity` with the run's."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated file cannot happen (atomic writes) but a foreign one can
        raise ValueError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
