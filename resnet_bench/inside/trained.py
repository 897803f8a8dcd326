"""Open a finished run for inspection: its network with the final weights, and its held-out set.

A run directory (resnet_bench.record) holds `config.json` (model, dataset, recipe)
and `model.pt` (the final state_dict). The held-out images are the run's test set, normalised with
the statistics of the run's own training images (the same `DeviceLoader` normalisation the trainer
evaluates with), in their stored order, so every analysis of a run sees the same images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from resnet_bench.data.runs import load_run_data
from resnet_bench.models.spec import ModelSpec
from resnet_bench.record import (CONFIG, FINAL_WEIGHTS, SUMMARY, find_run_dirs, read_record_json,
                                 run_ids)


@dataclass
class TrainedRun:
    """One finished run, ready to be looked into."""

    path: Path
    run_id: str
    model_name: str
    spec: ModelSpec
    seed: int
    config: dict
    summary: dict
    model: nn.Module               # final weights, in eval mode, on `device`
    loader: Any                    # resnet_bench.data.DeviceLoader holding the training statistics
    test_x: torch.Tensor           # uint8 [N,C,H,W] (CPU)
    test_y: torch.Tensor
    dataset_label: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def ident(self) -> dict[str, Any]:
        """The columns that say which run a table row belongs to."""
        return {"run_id": self.run_id, "model": self.model_name, "family": self.spec.family,
                "block": self.spec.block, "depth": self.spec.depth, "variant": self.spec.variant,
                "seed": self.seed, "label": self.spec.label}

    def heldout_batches(self, batch_size: int = 500, max_images: int | None = None
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first `max_images` test images (all if None), normalised, in batches."""
        n = len(self.test_y) if max_images is None else min(int(max_images), len(self.test_y))
        return self.loader.eval_batches(self.test_x[:n], self.test_y[:n], int(batch_size))


def find_runs(paths: list[str | os.PathLike]) -> list[Path]:
    """Finished run directories named by `paths` (directories, summary.json files, globs, or
    parents searched for summary.json): the rule of `resnet-bench aggregate`."""
    return find_run_dirs(list(paths))


def held_out_pass(model: nn.Module, batches, hooks: list) -> int:
    """Run `model` in eval mode over `batches` (x or (x, y)) while `hooks` (handles of hooks the
    caller registered) collect what they need; remove the hooks and restore the mode after.
    Returns the number of images seen."""
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x)
                n += len(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return n


_DATASETS: dict[tuple, Any] = {}


def _load_dataset(config: dict, prepared: str | None):
    """The run's dataset (cached per process: several runs usually share one)."""
    source = prepared or config.get("prepared")
    options = config.get("data_options") or {}
    key = (("prepared", str(source)) if source else
           ("kind", config.get("dataset"), config.get("data_dir"), json.dumps(options, sort_keys=True)))
    if key not in _DATASETS:
        _DATASETS[key] = load_run_data(config.get("dataset"), config.get("data_dir"), source, options)
    return _DATASETS[key]


def make_loader(dataset, recipe: dict, seed: int, device: torch.device):
    """The run's own loader (`recipe`: the recorded one, the knobs it lacks at their defaults):
    its `eval_batches` normalise with the statistics of exactly the images the run trained on
    (after its hold-out), as the trainer evaluated."""
    from resnet_bench.train.recipe import Recipe
    return dataset.training_data(Recipe.from_dict(recipe), seed=seed, device=device).loader


def load_trained(run_dir: str | os.PathLike, *, run_id: str | None = None,
                 device: str | torch.device = "cpu", prepared: str | None = None,
                 dataset=None) -> TrainedRun:
    """Open a finished run. `prepared` overrides the dataset file named in config.json;
    `dataset` (an ImageDataset) overrides both."""
    from resnet_bench.models import build_model, parse_model_name

    d = Path(run_dir)
    config = read_record_json(d / CONFIG)
    summary = read_record_json(d / SUMMARY) if (d / SUMMARY).exists() else {}
    if "model" not in config:
        raise ValueError(f"{d / CONFIG}: no 'model' key")
    spec = parse_model_name(config["model"])
    weights = d / FINAL_WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing (the final weights of a finished run)")
    device = torch.device(device)
    ds = dataset if dataset is not None else _load_dataset(config, prepared)
    if getattr(ds, "streaming", False):
        raise ValueError(f"{d}: trained on a streamed dataset (kind imagenet); the analyses "
                         "inside the networks read in-memory datasets only")
    model = build_model(spec, num_classes=len(ds.classes),
                        in_channels=int(ds.train_x.shape[1]))
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{weights}: cannot load into {config['model']} ({first})") from None
    model.to(device).eval()
    seed = int(config.get("seed", summary.get("seed", 0)))
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    loader = make_loader(ds, recipe, seed, device)
    return TrainedRun(path=d, run_id=run_id or d.name, model_name=spec.name, spec=spec, seed=seed,
                      config=config, summary=summary, model=model, loader=loader,
                      test_x=ds.test_x, test_y=ds.test_y,
                      dataset_label=getattr(ds, "label", ""), device=device)


def iter_trained(paths: list[str | os.PathLike], **kw) -> Iterator[TrainedRun]:
    """Open the runs named by `paths` one at a time (only one network in memory at once)."""
    dirs = find_runs(paths)
    for d, rid in zip(dirs, run_ids(dirs)):
        yield load_trained(d, run_id=rid, **kw)
