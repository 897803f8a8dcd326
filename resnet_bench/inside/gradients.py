"""Gradient flow through depth: plain vs original (V1) vs pre-activation (V2) units.

Two quantities, one row per (network, layer):

* `weight`: ||dL/dW|| (Frobenius norm) of every conv layer's weight, in network order
  (`resnet_bench.models.conv_layers`: stem conv, then each unit's convs). This is what the trainer
  logs in `grad_norms.csv` every `grad_norm_every` iterations, so the same column can be drawn at
  initialisation and at checkpoints during training.
* `activation`: ||dL/dx_l|| of the signal between units: x_0 is the stem's output, x_l the output
  of unit l. V2 (Eq. 5) argues that with identity shortcuts and no activation after the addition,
  dL/dx_l = dL/dx_L (1 + d/dx_l sum F), so the gradient reaches every unit directly; in a plain
  net it must pass through every weight layer.

Norms are over the whole mini-batch tensor (all images, channels, positions) of the gradient of
the mean cross-entropy loss. At initialisation the network runs in training mode (BN with batch
statistics), exactly as for the first SGD step; the batch is fixed (the first `batch_size`
training images, unaugmented, normalised with the training statistics), and each seed gives a
different initialisation.

`position` places layers of networks of different depth on one axis: (index) / (count - 1) for
weight layers (0 = stem conv, 1 = last conv), l / L for the signal (0 = stem output, 1 = last
unit's output).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resnet_bench.inside.trained import find_runs, run_ids
from resnet_bench.models.spec import ModelSpec
from resnet_bench.record import CONFIG, GRAD_COLUMNS, GRAD_LOG, SUMMARY
from resnet_bench.schema import FAMILY_ORDER, write_csv

COLUMNS = ["source", "run_id", "model", "label", "family", "block", "depth", "variant", "seed",
           "iteration", "quantity", "layer", "name", "position", "grad_norm", "weight_norm"]


def signal_points(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are x_0 (the stem) and x_1..x_L (the units), in order."""
    from resnet_bench.models import residual_units
    return [("stem", model.stem), *residual_units(model)]


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, train_mode: bool = True,
                   keep_grads: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """Backpropagate the mean cross-entropy of one batch and return the norms of both quantities
    (columns quantity, layer, name, position, grad_norm, weight_norm).

    With `keep_grads`, also return {signal point name: dL/dx tensor} (for tests and pictures).
    Parameter gradients are left in `.grad` (zeroed first).
    """
    from resnet_bench.models import conv_layers

    points = signal_points(model)
    grads: dict[str, torch.Tensor] = {}

    def capture(name):
        def forward_hook(module, inputs, output):
            if output.requires_grad:
                output.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return forward_hook

    hooks = [module.register_forward_hook(capture(name)) for name, module in points]
    was_training = model.training
    model.train(train_mode)
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y)
            loss.backward()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    convs = conv_layers(model)
    rows = []
    for idx, (name, conv) in enumerate(convs):
        g = conv.weight.grad
        rows.append(("weight", idx, name, idx / max(len(convs) - 1, 1),
                     float(g.norm()) if g is not None else float("nan"),
                     float(conv.weight.detach().norm())))
    last = len(points) - 1
    for idx, (name, _) in enumerate(points):
        g = grads.get(name)
        rows.append(("activation", idx, name, idx / max(last, 1),
                     float(g.norm()) if g is not None else float("nan"), float("nan")))
    df = pd.DataFrame(rows, columns=["quantity", "layer", "name", "position", "grad_norm",
                                     "weight_norm"])
    return (df, grads) if keep_grads else df


def _spec_columns(name: str | ModelSpec) -> dict:
    from resnet_bench.models import parse_model_name
    spec = parse_model_name(name)
    return {"model": spec.name, "label": spec.label, "family": spec.family,
            "block": spec.block, "depth": spec.depth, "variant": spec.variant}


def fixed_batch(dataset, batch_size: int = 128, normalize: str = "pixel",
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The first `batch_size` training images, unaugmented, normalised with training statistics."""
    from resnet_bench.inside.trained import make_loader
    loader = make_loader(dataset, {"normalize": normalize}, 0, torch.device(device))
    n = min(int(batch_size), len(dataset.train_y))
    return next(iter(loader.eval_batches(dataset.train_x[:n], dataset.train_y[:n], n)))


def gradients_at_init(models: Sequence[str], seeds: Sequence[int], x: torch.Tensor,
                      y: torch.Tensor, *, num_classes: int = 10) -> pd.DataFrame:
    """Gradient norms of freshly initialised networks (seeded `torch.manual_seed(seed)` before
    `build_model`, as the trainer does) on one fixed batch (x, y)."""
    from resnet_bench.models import build_model, parse_model_name

    frames = []
    for name in models:
        spec = parse_model_name(name)
        ident = _spec_columns(spec)
        for seed in seeds:
            torch.manual_seed(int(seed))
            model = build_model(spec, num_classes=num_classes, in_channels=int(x.shape[1]))
            model.to(x.device)
            df = gradient_norms(model, x, y)
            del model
            df = df.assign(source="init", run_id="", seed=int(seed), iteration=0, **ident)
            frames.append(df)
    if not frames:
        raise ValueError("no models/seeds given for gradients at initialisation")
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def read_grad_log(run_dir: str | os.PathLike, run_id: str | None = None) -> pd.DataFrame:
    """A run's `grad_norms.csv` (weight gradients logged by the trainer) in the table's columns."""
    import json
    d = Path(run_dir)
    path = d / GRAD_LOG
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (train with grad_norm_every > 0 to log it)")
    config = json.loads((d / CONFIG).read_text()) if (d / CONFIG).exists() else {}
    summary = json.loads((d / SUMMARY).read_text()) if (d / SUMMARY).exists() else {}
    model = config.get("model") or summary.get("model")
    if not model:
        raise ValueError(f"{d}: neither config.json nor summary.json names the model")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in GRAD_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(expected {','.join(GRAD_COLUMNS)})")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    for col in ("iteration", "layer", "grad_norm", "weight_norm"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    if df["iteration"].isna().any() or df["layer"].isna().any():
        raise ValueError(f"{path}: non-numeric iteration or layer values")
    df["iteration"] = df["iteration"].astype("int64")
    df["layer"] = df["layer"].astype("int64")
    # a resumed run may log an iteration twice: the rerun wins
    df = df.drop_duplicates(["iteration", "layer"], keep="last")
    count = df.groupby("iteration")["layer"].transform("max")
    df["position"] = df["layer"] / count.clip(lower=1)
    seed = int(config.get("seed", summary.get("seed", 0)))
    df = df.assign(source="run", run_id=run_id or d.name, seed=seed, quantity="weight",
                   **_spec_columns(model))
    return df[COLUMNS]


def gradients_from_runs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    dirs = find_runs(list(paths))
    return pd.concat([read_grad_log(d, rid) for d, rid in zip(dirs, run_ids(dirs))],
                     ignore_index=True)


def gradient_flow(models: Sequence[str] = (), seeds: Sequence[int] = (0,), *,
                  runs: Iterable[str | os.PathLike] = (), dataset=None, batch_size: int = 128,
                  normalize: str = "pixel", device: str = "cpu",
                  out_dir: str | os.PathLike | None = None,
                  name: str = "gradient_flow") -> pd.DataFrame:
    """Gradient norms at initialisation (`models` x `seeds` on a fixed batch of `dataset`) and
    during training (the `grad_norms.csv` of `runs`), in one tidy table (columns `COLUMNS`).
    With `out_dir`, also writes it as `<name>.csv` there (the figure: resnet_bench.plots.inside)."""
    frames = []
    if models:
        if dataset is None:
            raise ValueError("gradients at initialisation need a dataset for the fixed batch")
        x, y = fixed_batch(dataset, batch_size, normalize, device)
        frames.append(gradients_at_init(models, seeds, x, y, num_classes=len(dataset.classes)))
    runs = list(runs)
    if runs:
        frames.append(gradients_from_runs(runs))
    if not frames:
        raise ValueError("nothing to analyse: give model names (at initialisation) and/or runs")
    table = pd.concat(frames, ignore_index=True)
    # init before runs; within each: quantity, iteration, then the papers' network order
    table["_source"] = table["source"].map({"init": 0, "run": 1})
    table["_family"] = table["family"].map(FAMILY_ORDER)
    keys = ["_source", "quantity", "iteration", "_family", "block", "depth", "variant", "seed",
            "run_id", "layer"]
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)[COLUMNS]
    if out_dir is not None:
        write_csv(table, out_dir, name)
    return table
