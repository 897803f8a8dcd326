"""Atomic training checkpoints: everything needed to continue a run as if never stopped.

A checkpoint crosses machines (study archives, shared results folders), so it holds only tensors
and plain data (numbers, strings, lists, tuples, dicts) and is read with
`torch.load(weights_only=True)`: a file holding any other object is refused without running
anything it names. The RNG states are stored as tensors and plain tuples for that reason.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet_bench.train.records import atomic_write_bytes

# Bumped when the layout changes; a checkpoint without it predates weights-only checkpoints.
FORMAT = 2
KEYS = frozenset({"format", "iteration", "identity", "model", "optimizer", "rng", "state"})


def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(gauss)),
        "python": random.getstate(),  # (version, tuple of ints, None): plain data
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
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
        "format": FORMAT,
        "iteration": iteration,
        "identity": identity,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_states(),
        "state": state,
    }, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain data only); the caller compares its `identity`."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: not loaded: it holds objects other than tensors and plain data "
                         "(a checkpoint of an older resnet-bench, or not one of this suite's); "
                         "nothing in it was run") from None
    except Exception as exc:  # a truncated file cannot happen (atomic writes) but a foreign one can
        raise ValueError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format", "none") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a checkpoint of this resnet-bench version (format {found}, "
                         f"expected {FORMAT})")
    missing = sorted(KEYS - set(ckpt))
    if missing:
        raise ValueError(f"{path}: not a complete checkpoint (missing {', '.join(missing)})")
    return ckpt
