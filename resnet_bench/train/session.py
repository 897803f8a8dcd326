"""One training session of `train()`: its objects (data, model, optimizer, logs) and the
bookkeeping between steps (host logs, timers, evaluation, checkpoints, gradient norms)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resnet_bench.record import CHECKPOINT
from resnet_bench.train import checkpoint, distributed
from resnet_bench.train.progress import Progress
from resnet_bench.train.recipe import RunConfig
from resnet_bench.train.records import CsvLog
from resnet_bench.train.step import StepValues, autocast


@torch.no_grad()
def evaluate(model, loader, x, y, device, precision: str, batch_size: int) -> tuple[float, float]:
    """Mean loss and error (%) over a whole held-out set, in order, without augmentation."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    wrong = torch.zeros((), device=device, dtype=torch.int64)
    for xb, yb in loader.eval_batches(x, y, batch_size):
        with autocast(device, precision):
            out = model(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").double()
        wrong += (out.argmax(1) != yb).sum()
    model.train(was_training)
    n = len(y)
    return float(loss_sum) / n, 100.0 * float(wrong) / n


def _grad_norm_rows(model, iteration: int) -> list[tuple]:
    from resnet_bench.models import conv_layers
    rows = []
    for idx, (name, conv) in enumerate(conv_layers(model)):
        g = conv.weight.grad
        rows.append((iteration, idx, name, float(g.norm()) if g is not None else float("nan"),
                     float(conv.weight.detach().norm())))
    return rows


@dataclass
class Session:
    """One training session's objects and bookkeeping (logs, timers, evaluation, checkpoints)."""
    config: RunConfig
    spec: Any                                  # the ModelSpec of config.model, parsed once
    out: Path
    device: torch.device
    identity: str
    dataset: Any                               # the loaded dataset (label and meta are recorded)
    loader: Any                                # DeviceLoader of the training images
    test: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step_model: Any                            # the model, or its torch.compile'd wrapper
    params: int
    macs: int
    train_log: CsvLog
    eval_log: CsvLog
    grad_log: CsvLog | None
    state: dict[str, Any] = field(default_factory=dict)   # checkpointed with the weights
    prov: dict[str, Any] = field(default_factory=dict)
    recent_losses: list[float] = field(default_factory=list)
    recent_errors: list[float] = field(default_factory=list)
    steps: StepValues = field(default_factory=StepValues)
    clock: dict[str, float] = field(default_factory=dict)
    bar: Progress | None = None
    world: distributed.World = distributed.SINGLE  # this process's place in a torchrun run

    @property
    def recipe(self):
        return self.config.recipe

    def drain(self) -> bool:
        """Move per-step values to the host logs; False if any loss is not finite."""
        finite = True
        window = self.recipe.train_window
        distributed.reduce_steps(self.steps, self.world)  # global-batch values, every rank alike
        for i, lr_i, loss_v, wrong_v in self.steps.drain():
            err_v = 100.0 * wrong_v / self.recipe.batch_size
            self.train_log.append((i + 1, self.loader.epoch_at(i + 1), lr_i, loss_v, err_v))
            self.recent_losses.append(loss_v)
            self.recent_errors.append(err_v)
            finite = finite and math.isfinite(loss_v)
        del self.recent_losses[:-window], self.recent_errors[:-window]
        return finite

    def account_time(self) -> None:
        now = time.perf_counter()
        self.state["train_time_s"] += now - self.clock["window_start"]
        self.state["timed_images"] += self.clock["images"]
        self.state["wall_time_s"] = (self.state.get("wall_time_s", 0.0) + now
                                     - self.clock["session"])
        self.clock.update(window_start=now, images=0, session=now)

    def paused(self, fn, *args):
        """Run bookkeeping (eval, checkpoint) outside the timed training window."""
        t = time.perf_counter()
        result = fn(*args)
        self.clock["window_start"] += time.perf_counter() - t
        return result

    def flush_logs(self) -> None:
        for log in (self.train_log, self.eval_log, self.grad_log):
            if log is not None:
                log.flush()

    def save_checkpoint(self, iteration: int) -> None:
        self.drain()
        self.account_time()
        self.flush_logs()
        if self.world.is_writer:
            checkpoint.save(self.out / CHECKPOINT, model=self.model, optimizer=self.optimizer,
                            iteration=iteration, state=self.state, identity=self.identity)

    def run_eval(self, iteration: int) -> tuple[float, float]:
        """Test (and validation) loss and error; under torchrun on rank 0 alone (the others
        wait, and get NaN): see resnet_bench.train.distributed."""
        if not self.world.is_writer:
            distributed.barrier(self.world)
            return float("nan"), float("nan")
        r = self.recipe
        loss, err = evaluate(self.model, self.loader, *self.test, self.device, r.precision,
                             r.eval_batch_size)
        self.eval_log.append((iteration, "test", loss, err))
        if self.val is not None:
            vloss, verr = evaluate(self.model, self.loader, *self.val, self.device, r.precision,
                                   r.eval_batch_size)
            self.eval_log.append((iteration, "val", vloss, verr))
        distributed.barrier(self.world)
        return loss, err

    def grad_norm_logger(self, it: int):
        """What logs the gradient norms before update `it`, or None where none are logged."""
        r = self.recipe
        if self.grad_log is None or not (it % r.grad_norm_every == 0 or it == r.iterations - 1):
            return None

        def log() -> None:
            for row in _grad_norm_rows(self.model, it):
                self.grad_log.append(row)
        return log

    def images_per_s(self) -> float:
        return self.state["timed_images"] / max(self.state["train_time_s"], 1e-9)
