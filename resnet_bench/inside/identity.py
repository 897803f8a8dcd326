"""Identity-path archaeology: how much does each residual unit add to the signal it carries?

Every unit computes two summands, `branches(x) -> (h(x), F(x))` (shortcut and residual, exactly as
they are added, after any V2 Table 1 scaling or gating). Per unit and held-out image i:

    ratio_i          = ||F(x_i)|| / ||h(x_i)||     (the residual summand against the shortcut summand)
    ratio_to_input_i = ||F(x_i)|| / ||x_i||        (against the unit's input)

with ||.|| the L2 norm over the image's whole feature map (channels x height x width). The table
reports the means over images of these per-image ratios (`ratio`, `ratio_to_input`) and the mean
norms themselves. For identity shortcuts h(x) = x and the two ratios agree; they differ at option-A
units that subsample and zero-pad, and at projection shortcuts. A plain unit has no shortcut
(h = 0), so its `ratio` is undefined (NaN) and only `ratio_to_input` is reported.

V1 Sec. 4.2 reads small residual responses as "an individual layer of ResNets tends to modify the
signal less"; V2 Sec. 3 argues the identity path carries the signal directly from any unit to any
deeper one. Ratios well below 1 that shrink with depth are the quantitative form of both.

The network runs in eval mode on the run's test set (as for the layer responses).
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from resnet_bench.inside.trained import TrainedRun, held_out_pass, iter_trained
from resnet_bench.schema import MAP_COLUMNS, MAP_PLANES, MAPS_SUFFIX, sort_table, write_csv

COLUMNS = ["run_id", "model", "label", "family", "block", "depth", "variant", "seed",
           "unit", "name", "stage", "position", "input_norm", "shortcut_norm", "residual_norm",
           "ratio", "ratio_to_input", "n_images"]


def _image_norms(t: torch.Tensor) -> torch.Tensor:
    return t.detach().flatten(1).to(torch.float64).norm(dim=1)


def summand_norms(unit: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image norms of the input, the two summands, and the two ratios for one unit."""
    shortcut, residual = unit.branches(x)
    nx, ns, nr = _image_norms(x), _image_norms(shortcut), _image_norms(residual)
    ratio = torch.where(ns > 0, nr / ns.clamp_min(1e-300), torch.full_like(nr, float("nan")))
    return {"input_norm": nx, "shortcut_norm": ns, "residual_norm": nr, "ratio": ratio,
            "ratio_to_input": nr / nx.clamp_min(1e-300)}


@torch.no_grad()
def unit_ratios(model: nn.Module, batches: Iterable[torch.Tensor | tuple]) -> pd.DataFrame:
    """Per residual unit (network order): unit (1-based), name, stage, position, the mean norms
    and mean ratios over all images in `batches` (see the module doc)."""
    from resnet_bench.models import residual_units

    units = residual_units(model)
    keys = ("input_norm", "shortcut_norm", "residual_norm", "ratio", "ratio_to_input")
    sums = [{k: 0.0 for k in keys} for _ in units]

    def make_hook(acc):
        def pre_hook(module, inputs):
            for k, v in summand_norms(module, inputs[0]).items():
                acc[k] += float(v.sum())  # a NaN ratio (plain unit) stays NaN
        return pre_hook

    hooks = [unit.register_forward_pre_hook(make_hook(acc)) for (_, unit), acc in zip(units, sums)]
    n = held_out_pass(model, batches, hooks)
    if n == 0:
        raise ValueError("no held-out images to compute unit ratios on")
    rows = []
    for i, ((name, _), acc) in enumerate(zip(units, sums)):
        rows.append({"unit": i + 1, "name": name, "stage": int(name.split(".")[1]) + 1,
                     "position": (i + 1) / len(units), **{k: acc[k] / n for k in keys},
                     "n_images": n})
    return pd.DataFrame(rows)


@torch.no_grad()
def unit_feature_maps(model: nn.Module, image: torch.Tensor, unit: int) -> dict[str, torch.Tensor]:
    """For one normalised image [C,H,W] and one unit (1-based, network order): the unit's input x,
    shortcut summand h(x), residual summand F(x) and output, each [C',H',W'] on the CPU."""
    from resnet_bench.models import residual_units

    units = residual_units(model)
    if not 1 <= unit <= len(units):
        raise ValueError(f"unit {unit} out of range: the network has units 1..{len(units)}")
    target = units[unit - 1][1]
    seen: dict[str, torch.Tensor] = {}

    def pre_hook(module, inputs):
        seen["input"] = inputs[0]
        seen["shortcut"], seen["residual"] = module.branches(inputs[0])

    def hook(module, inputs, output):
        seen["output"] = output

    handles = [target.register_forward_pre_hook(pre_hook), target.register_forward_hook(hook)]
    was_training = model.training
    model.eval()
    try:
        model(image.unsqueeze(0))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: seen[k][0].detach().float().cpu() for k in ("input", "shortcut", "residual", "output")}


def default_unit(model: nn.Module) -> int:
    """The last unit of the first stage: identity shortcut, full-resolution maps."""
    return len(model.stages[0])


def feature_map_table(maps: list[dict], channels: int = 4) -> pd.DataFrame:
    """The pixel values of `maps` (one dict per run: its `ident()` columns, unit, unit_name, image
    and the `unit_feature_maps`) for the first `channels` channels, one row per pixel
    (columns `MAP_COLUMNS`): per run, channel and map (input, shortcut, residual, output)."""
    records = []
    for m in maps:
        for c in range(min(channels, m["maps"]["input"].shape[0])):
            for key in MAP_PLANES:
                plane = m["maps"][key][c].numpy()
                rows, cols = np.indices(plane.shape)
                records.append(pd.DataFrame({
                    "run_id": m["run_id"], "label": m["label"], "unit": m["unit"],
                    "unit_name": m["unit_name"], "image": m["image"], "map": key, "channel": c,
                    "row": rows.ravel(), "col": cols.ravel(), "value": plane.ravel()}))
    if not records:
        return pd.DataFrame(columns=MAP_COLUMNS)
    return pd.concat(records, ignore_index=True)[MAP_COLUMNS]


def identity_path(runs: Iterable[TrainedRun | str | os.PathLike], *, max_images: int | None = None,
                  batch_size: int = 500, device: str = "cpu", prepared: str | None = None,
                  maps_unit: int | None = None, maps_image: int = 0, maps_channels: int = 4,
                  out_dir: str | os.PathLike | None = None,
                  name: str = "identity_path") -> pd.DataFrame:
    """Unit ratios for the given runs (TrainedRuns, or run directories / globs / parents).

    Returns the tidy table (columns `COLUMNS`). With `out_dir`, also writes it as `<name>.csv`
    and, as `<name>_maps.csv` (`feature_map_table`), the input, shortcut, residual and output maps
    of test image `maps_image` at unit `maps_unit` (default: the last unit of stage 1) for the
    first `maps_channels` channels of every run; resnet_bench.plots.inside draws both.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("no runs given")
    opened = [r for r in runs if isinstance(r, TrainedRun)]
    paths = [r for r in runs if not isinstance(r, TrainedRun)]
    frames, maps = [], []
    for run in [*opened, *(iter_trained(paths, device=device, prepared=prepared) if paths else [])]:
        df = unit_ratios(run.model, run.heldout_batches(batch_size, max_images))
        for key, value in run.ident().items():
            df[key] = value
        frames.append(df)
        if out_dir is not None:
            if not 0 <= maps_image < len(run.test_y):
                raise ValueError(f"image {maps_image} out of range: the test set has "
                                 f"{len(run.test_y)} images")
            image, _ = next(iter(run.loader.eval_batches(run.test_x[maps_image:maps_image + 1],
                                                         run.test_y[maps_image:maps_image + 1], 1)))
            unit = maps_unit or default_unit(run.model)
            fm = unit_feature_maps(run.model, image[0], unit)
            maps.append({**run.ident(), "unit": unit, "image": maps_image, "maps": fm,
                         "unit_name": frames[-1]["name"].iloc[unit - 1]})
    table = sort_table(pd.concat(frames, ignore_index=True)[COLUMNS], within="unit")
    if out_dir is not None:
        write_csv(table, out_dir, name)
        write_csv(feature_map_table(maps, maps_channels), out_dir, name + MAPS_SUFFIX)
    return table
