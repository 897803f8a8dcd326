"""What `train()` works on, as typed records: the objects of a run (`Training`), the state it
checkpoints (`State`), the session's clock (`Clock`), the final training window (`TrainWindow`)
and the run's CSV logs (`Logs`); and the evaluation of the held-out sets."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from resnet_bench.models.spec import ModelSpec
from resnet_bench.record import (CHECKPOINT, EVAL_COLUMNS, EVAL_LOG, GRAD_COLUMNS, GRAD_LOG,
                                 TRAIN_COLUMNS, TRAIN_LOG)
from resnet_bench.train import checkpoint, distributed
from resnet_bench.train.recipe import Recipe, RunConfig
from resnet_bench.train.records import CsvLog
from resnet_bench.train.step import SYNC_EVERY, StepValues, autocast


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


@torch.no_grad()
def evaluate_views(model, groups, device, precision: str) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 error (%) over (views, labels) groups (StreamLoader.eval_views):
    the softmax probabilities of an image's views are averaged (log-mean-exp of the
    log-probabilities) and scored once; with fewer than 5 classes top-5 is over all of them."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    wrong1 = torch.zeros((), device=device, dtype=torch.int64)
    wrong5 = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    for inputs, yb in groups:
        logp = []
        for x in inputs:
            with autocast(device, precision):
                out = model(x)
            logp.append(out.float().log_softmax(1).view(-1, len(yb), out.shape[1]))
        logp = torch.cat(logp)
        mean = logp.logsumexp(0) - math.log(logp.shape[0])               # [b, classes]
        loss_sum += F.nll_loss(mean, yb, reduction="sum").double()
        top = mean.topk(min(5, mean.shape[1]), dim=1).indices
        wrong1 += (top[:, 0] != yb).sum()
        wrong5 += (top != yb[:, None]).all(1).sum()
        n += len(yb)
    model.train(was_training)
    return float(loss_sum) / n, 100.0 * float(wrong1) / n, 100.0 * float(wrong5) / n


def _grad_norm_rows(model, iteration: int) -> list[tuple]:
    from resnet_bench.models import conv_layers
    rows = []
    for idx, (name, conv) in enumerate(conv_layers(model)):
        g = conv.weight.grad
        rows.append((iteration, idx, name, float(g.norm()) if g is not None else float("nan"),
                     float(conv.weight.detach().norm())))
    return rows


@dataclass
class State:
    """What the trainer checkpoints beside the weights, the optimizer and the RNG states
    (`checkpoint["state"]`): with the iteration, all a resumed run needs to take the same
    decisions and report the same totals as an uninterrupted one."""
    warmup_done: bool                      # V1 warm-up over (the lr schedule reads it)
    train_time_s: float = 0.0              # timed training steps, every session
    compile_time_s: float = 0.0            # first compiled step of each session
    wall_time_s: float = 0.0               # every session, from its first iteration
    resumed: int = 0                       # sessions after the first
    timed_images: int = 0                  # images of the timed steps, all processes
    oom_fallback_at: int | None = None     # iteration whose step ran out of GPU memory
    activation_checkpointing: bool = False  # turned on by that fallback

    @classmethod
    def fresh(cls, recipe: Recipe) -> State:
        return cls(warmup_done=recipe.warmup != "v1")

    @classmethod
    def resumed_from(cls, saved: dict[str, Any], recipe: Recipe) -> State:
        """The state of a checkpoint (keys it lacks keep a fresh run's values), one more resume."""
        state = cls(**{**asdict(cls.fresh(recipe)), **saved})
        state.resumed += 1
        return state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def images_per_s(self) -> float:
        return self.timed_images / max(self.train_time_s, 1e-9)


@dataclass
class Clock:
    """This session's timing: the timed window (evaluations and checkpoints are moved out of it)
    and the images trained since it began, and the session's start (for the wall time)."""
    window_start: float
    session_start: float
    images: int = 0

    @classmethod
    def started(cls) -> Clock:
        now = time.perf_counter()
        return cls(window_start=now, session_start=now)

    def restart_window(self) -> None:
        self.window_start, self.images = time.perf_counter(), 0

    def account(self, state: State) -> None:
        """Move the time and images since the last account into `state`."""
        now = time.perf_counter()
        state.train_time_s += now - self.window_start
        state.timed_images += self.images
        state.wall_time_s += now - self.session_start
        self.window_start, self.images, self.session_start = now, 0, now

    def paused(self, fn: Callable, *args):
        """Run bookkeeping (evaluation, checkpoint) outside the timed window."""
        t = time.perf_counter()
        result = fn(*args)
        self.window_start += time.perf_counter() - t
        return result


@dataclass
class TrainWindow:
    """Loss and error (%) of the latest iterations: the final training numbers average the last
    `size`, the V1 warm-up test the last SYNC_EVERY, so the longer of the two is kept. Restored
    from the training log on resume."""
    size: int
    losses: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return max(self.size, SYNC_EVERY)

    @classmethod
    def from_rows(cls, size: int, rows: list[dict[str, str]]) -> TrainWindow:
        window = cls(size)
        for r in rows[-window.kept:]:
            window.add(float(r["loss"]), float(r["error_pct"]))
        return window

    def add(self, loss: float, error: float) -> None:
        self.losses.append(loss)
        self.errors.append(error)

    def trim(self) -> None:
        del self.losses[:-self.kept], self.errors[:-self.kept]

    def mean_loss(self) -> float:
        """Over the last `size` iterations."""
        losses = self.losses[-self.size:]
        return sum(losses) / len(losses)

    def mean_error(self, last: int = 0) -> float:
        """Over the last `last` iterations (default: `size`)."""
        errors = self.errors[-(last or self.size):]
        return sum(errors) / len(errors)


@dataclass
class Logs:
    """The run's CSV logs (resnet_bench.record); other ranks than 0 read but never write them."""
    train: CsvLog
    eval: CsvLog
    grad: CsvLog | None                    # only when the recipe logs gradient norms

    @classmethod
    def open(cls, out: Path, recipe: Recipe, writer: bool) -> Logs:
        return cls(train=CsvLog(out / TRAIN_LOG, TRAIN_COLUMNS, writer=writer),
                   eval=CsvLog(out / EVAL_LOG, EVAL_COLUMNS, writer=writer),
                   grad=(CsvLog(out / GRAD_LOG, GRAD_COLUMNS, writer=writer)
                         if recipe.grad_norm_every else None))

    def flush(self) -> None:
        for log in (self.train, self.eval, self.grad):
            if log is not None:
                log.flush()

    def cut_after(self, iteration: int) -> list[dict[str, str]]:
        """Drop rows written after the checkpoint a run resumes from (or by a run that died
        before its first one); the training rows kept. Gradient rows are logged before update
        `it`, so theirs end one earlier."""
        kept = self.train.truncate_after(iteration)
        self.eval.truncate_after(iteration)
        if self.grad is not None:
            self.grad.truncate_after(iteration - 1)
        return kept


@dataclass
class Training:
    """The objects of one run, built once by `train()`'s setup."""
    config: RunConfig
    out: Path
    device: torch.device
    world: distributed.World               # this process's place in a torchrun run
    identity: str
    dataset: Any                           # the loaded dataset (label and meta are recorded)
    loader: Any                            # DeviceLoader or StreamLoader (kind imagenet)
    test: tuple[Any, torch.Tensor]         # images (or StreamLoader's files) and labels
    val: tuple[Any, torch.Tensor] | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step_model: Any                        # the model, or its torch.compile'd/DDP wrapper
    params: int
    macs: int
    logs: Logs

    @property
    def recipe(self) -> Recipe:
        return self.config.recipe

    @property
    def spec(self) -> ModelSpec:
        return self.config.spec

    def log_steps(self, steps: StepValues, window: TrainWindow) -> bool:
        """Move the pending step values to the training log and window; False if any loss is
        not finite."""
        finite = True
        distributed.reduce_steps(steps, self.world)  # global-batch values, every rank alike
        for i, lr_i, loss_v, wrong_v in steps.drain():
            err_v = 100.0 * wrong_v / self.recipe.batch_size
            self.logs.train.append((i + 1, self.loader.epoch_at(i + 1), lr_i, loss_v, err_v))
            window.add(loss_v, err_v)
            finite = finite and math.isfinite(loss_v)
        window.trim()
        return finite

    def save_checkpoint(self, iteration: int, state: State) -> None:
        self.logs.flush()
        if self.world.is_writer:
            checkpoint.save(self.out / CHECKPOINT, model=self.model, optimizer=self.optimizer,
                            iteration=iteration, state=state.to_dict(), identity=self.identity)

    def evaluate(self, iteration: int, final: bool = False) -> tuple[float, float, float | None]:
        """Test loss, error and top-5 error (the last only for a StreamLoader), logged with the
        validation set's; under torchrun on rank 0 alone (the others wait, and get NaN): see
        resnet_bench.train.distributed."""
        if not self.world.is_writer:
            distributed.barrier(self.world)
            return float("nan"), float("nan"), None
        if hasattr(self.loader, "eval_views"):
            result = self._evaluate_views(iteration, final)
        else:
            r = self.recipe
            loss, err = evaluate(self.model, self.loader, *self.test, self.device, r.precision,
                                 r.eval_batch_size)
            self.logs.eval.append((iteration, "test", loss, err))
            if self.val is not None:
                vloss, verr = evaluate(self.model, self.loader, *self.val, self.device,
                                       r.precision, r.eval_batch_size)
                self.logs.eval.append((iteration, "val", vloss, verr))
            result = loss, err, None
        distributed.barrier(self.world)
        return result

    def _evaluate_views(self, iteration: int, final: bool) -> tuple[float, float, float]:
        """StreamLoader: centre crops during training, the dataset's final_eval at the end."""
        r = self.recipe
        mode = self.loader.options["final_eval"] if final else "center"
        loss, err, top5 = evaluate_views(
            self.model, self.loader.eval_views(*self.test, r.eval_batch_size, mode),
            self.device, r.precision)
        self.logs.eval.append((iteration, "test", loss, err))
        if self.val is not None:
            vloss, verr, _ = evaluate_views(
                self.model, self.loader.eval_views(*self.val, r.eval_batch_size, "center"),
                self.device, r.precision)
            self.logs.eval.append((iteration, "val", vloss, verr))
        return loss, err, top5

    def grad_norm_logger(self, it: int) -> Callable[[], None] | None:
        """What logs the gradient norms before update `it`, or None where none are logged."""
        r, log = self.recipe, self.logs.grad
        if log is None or not (it % r.grad_norm_every == 0 or it == r.iterations - 1):
            return None

        def write() -> None:
            for row in _grad_norm_rows(self.model, it):
                log.append(row)
        return write
