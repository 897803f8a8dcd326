"""Layer responses (He et al. 2015, Fig. 7): how strongly each 3x3 layer responds on held-out data.

The response of a 3x3 layer is its output "after BN and before other nonlinearity (ReLU/addition)"
-- the module `resnet_bench.models.response_layers(model)` names for each such layer (for full
pre-activation units that is the bare conv, whose BN belongs to the next layer's pre-activation).

Definition of the number plotted (one per layer), `std`:

    std = mean over channels c of  sqrt( mean over (n, h, w) of (y[n,c,h,w] - mu_c)^2 )

i.e. the population standard deviation of each channel's response over all held-out images and
positions, averaged over the layer's channels. Per channel, because a channel is one filter: its
std measures how much that filter's response varies, independent of the constant offset (the BN
shift) that separates the channel means and says nothing about how strongly the layer modifies
the signal. For a layer that ends in BN this is, in training mode, exactly the mean |gamma|; in
eval mode (used here: the network as it is tested) it is close to it. The table also carries
`std_all`, the std over all N*C*H*W elements of the layer at once (channel offsets included), so
a reader can check that the ordering of networks does not depend on this choice.

The network runs in eval mode (BN running statistics) on the run's test set in batches; the
per-channel sums of y and y^2 are accumulated in float64, so the result does not depend on the
batch size.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from resnet_bench.inside.trained import TrainedRun, held_out_pass, iter_trained
from resnet_bench.schema import sort_table, write_csv

COLUMNS = ["run_id", "model", "label", "family", "block", "depth", "variant", "seed",
           "layer", "name", "channels", "std", "std_all", "rank", "n_images"]


class ChannelMoments:
    """Running per-channel count, sum and sum of squares of [N,C,H,W] tensors, in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None

    def add(self, y: torch.Tensor) -> None:
        y = y.detach().to(torch.float64)
        s, sq = y.sum((0, 2, 3)).cpu(), y.square().sum((0, 2, 3)).cpu()
        if self.sum is None:
            self.sum, self.sumsq = s, sq
        else:
            self.sum += s
            self.sumsq += sq
        self.count += y.shape[0] * y.shape[2] * y.shape[3]

    def channel_std(self) -> torch.Tensor:
        mean = self.sum / self.count
        return (self.sumsq / self.count - mean.square()).clamp_min(0.0).sqrt()

    def std(self) -> float:
        """Per-channel population std, averaged over channels (the `std` of the module doc)."""
        return float(self.channel_std().mean())

    def std_all(self) -> float:
        """Population std over all elements of the layer at once."""
        n = self.count * len(self.sum)
        mean = float(self.sum.sum()) / n
        return math.sqrt(max(float(self.sumsq.sum()) / n - mean * mean, 0.0))


def channel_std(y: torch.Tensor) -> float:
    """`std` computed directly from one tensor [N,C,H,W] (what ChannelMoments accumulates)."""
    return float(y.detach().double().std(dim=(0, 2, 3), unbiased=False).mean())


@torch.no_grad()
def response_stds(model: nn.Module, batches: Iterable[torch.Tensor | tuple]) -> pd.DataFrame:
    """Per 3x3 layer (network order): layer (1-based), name, channels, std, std_all, rank,
    n_images. `batches` yields input tensors or (input, label) pairs; the model is put in
    eval mode for the pass and restored afterwards."""
    from resnet_bench.models import response_layers

    layers = response_layers(model)
    moments = [ChannelMoments() for _ in layers]
    hooks = [module.register_forward_hook(lambda m, i, out, acc=acc: acc.add(out))
             for (_, module), acc in zip(layers, moments)]
    n_images = held_out_pass(model, batches, hooks)
    if n_images == 0:
        raise ValueError("no held-out images to compute layer responses on")
    df = pd.DataFrame({
        "layer": range(1, len(layers) + 1),
        "name": [name for name, _ in layers],
        "channels": [len(m.sum) for m in moments],
        "std": [m.std() for m in moments],
        "std_all": [m.std_all() for m in moments],
    })
    # the paper's bottom panel: responses sorted in descending order
    df["rank"] = df["std"].rank(ascending=False, method="first").astype(int)
    df["n_images"] = n_images
    return df


def layer_responses(runs: Iterable[TrainedRun | str | os.PathLike], *, max_images: int | None = None,
                    batch_size: int = 500, device: str = "cpu", prepared: str | None = None,
                    out_dir: str | os.PathLike | None = None,
                    name: str = "layer_responses") -> pd.DataFrame:
    """V1 Fig. 7 for the given runs (opened TrainedRuns, or run directories / globs / parents).

    Returns the tidy table (one row per run and 3x3 layer, columns `COLUMNS`); with `out_dir`,
    also writes it as `<name>.csv` there (resnet_bench.plots.inside draws the figure from it).
    """
    runs = list(runs)
    opened = [r for r in runs if isinstance(r, TrainedRun)]
    paths = [r for r in runs if not isinstance(r, TrainedRun)]
    if not runs:
        raise ValueError("no runs given")
    frames = []
    for run in [*opened, *(iter_trained(paths, device=device, prepared=prepared) if paths else [])]:
        df = response_stds(run.model, run.heldout_batches(batch_size, max_images))
        for key, value in run.ident().items():
            df[key] = value
        frames.append(df)
    table = sort_table(pd.concat(frames, ignore_index=True)[COLUMNS])
    if out_dir is not None:
        write_csv(table, out_dir, name)
    return table
