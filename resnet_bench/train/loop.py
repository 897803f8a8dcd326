"""One training run: a network, a dataset, a seed, a recipe -> a directory of records.

Read top to bottom: set up (or resume), iterate (lr, batch, step, log), evaluate, checkpoint,
finish. Every random choice is a pure function of (seed, iteration) or is checkpointed, so a
run killed at any moment and started again ends where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resnet_bench.data.runs import load_run_data, split_training_set
from resnet_bench.train import checkpoint, provenance
from resnet_bench.train.progress import Progress
from resnet_bench.train.recipe import RunConfig
from resnet_bench.train.records import (CHECKPOINT, CONFIG, EVAL_COLUMNS, EVAL_LOG,
                                        FINAL_WEIGHTS, FINISHED_STATUSES, GRAD_COLUMNS, GRAD_LOG,
                                        PROVENANCE, SUMMARY, TRAIN_COLUMNS, TRAIN_LOG, CsvLog,
                                        atomic_write_bytes, read_json, sweep_temp_files,
                                        write_json)
from resnet_bench.validation import check_dataset, check_device

# Exit status of a run stopped by SIGTERM after writing its checkpoint (EX_TEMPFAIL):
# the scheduler should run the same command again, which resumes.
EXIT_PREEMPTED = 75
# Host syncs happen every SYNC_EVERY iterations on accelerators (every iteration on CPU, where
# they are free); the V1 warm-up test and divergence checks run at these fixed iterations so
# that a resumed run takes the same decisions as an uninterrupted one.
SYNC_EVERY = 25


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint has been written."""


@dataclass
class Outcome:
    summary: dict[str, Any]
    exit_status: int


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(check_device(name))  # unknown or absent devices: one line, not torch's


class _SigtermFlag:
    """Turns SIGTERM (Slurm preemption/time limit) into a flag checked between iterations."""

    def __init__(self) -> None:
        self.raised = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. called from a notebook worker)
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# The pieces of one training iteration, shared with `resnet-bench bench` so that what is timed
# is exactly what trains.
def configure_backends(device: torch.device, precision: str) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # TF32 only when reduced precision was asked for: fp32 runs stay fp32.
        torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
        torch.backends.cudnn.allow_tf32 = precision != "fp32"


def make_optimizer(model: torch.nn.Module, recipe) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


def forward_backward(step_model, optimizer, xb, yb, device: torch.device, precision: str):
    """Forward under autocast, fp32 cross-entropy, fresh gradients; returns (logits, loss).
    The optimizer step is left to the caller (the trainer logs gradient norms before it)."""
    with _autocast(device, precision):
        logits = step_model(xb)
    loss = F.cross_entropy(logits.float(), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return logits, loss


@torch.no_grad()
def evaluate(model, loader, x, y, device, precision: str, batch_size: int) -> tuple[float, float]:
    """Mean loss and error (%) over a whole held-out set, in order, without augmentation."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    wrong = torch.zeros((), device=device, dtype=torch.int64)
    for xb, yb in loader.eval_batches(x, y, batch_size):
        with _autocast(device, precision):
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


def train(config: RunConfig, out_dir: str | Path, *, progress: bool | None = None,
          stop_after: int | None = None, replace_stale: bool = False, gpu_claim=None,
          discard_checkpoint: bool = False) -> Outcome:
    """Train (or resume, or return the finished record of) one run in `out_dir`.

    `discard_checkpoint` deletes the run's checkpoint (e.g. an unreadable one) and starts over.

    `stop_after` ends the process's work after that many total iterations as if preempted
    (used by tests to interrupt a run at a known point).
    """
    from resnet_bench.data import DeviceLoader
    from resnet_bench.models import build_model, model_cost

    out = Path(out_dir)
    check_out_dir(out)  # a file, a file above it, read-only: refused before anything is read
    recipe = config.recipe
    identity = config.identity_hash()
    device = pick_device(config.device)
    if out.is_dir():
        sweep_temp_files(out)  # left by a run killed inside an atomic write

    # A finished run is a result: never redo it, but never silently reuse a different one.
    ckpt = _read_checkpoint(out / CHECKPOINT, discard_checkpoint)
    stale = _stale_identity(out, identity, ckpt)
    if stale is not None and not replace_stale:
        raise ValueError(f"{out}: holds records of a different run config (identity {stale} != "
                         f"{identity}); use another --out or --replace-stale")
    if stale is None and (out / SUMMARY).exists():
        summary = read_json(out / SUMMARY)
        if summary.get("status") in FINISHED_STATUSES:
            return Outcome(summary, 0)

    torch.manual_seed(config.seed)
    configure_backends(device, recipe.precision)

    # --- data: checked before any record is written or replaced -------------------------------
    dataset = load_run_data(config.dataset, config.data_dir, config.prepared, config.data_options)
    check_dataset(dataset, recipe, config.dataset)
    if stale is not None:
        for name in (SUMMARY, CHECKPOINT, CONFIG, PROVENANCE, TRAIN_LOG, EVAL_LOG, GRAD_LOG,
                     FINAL_WEIGHTS):
            (out / name).unlink(missing_ok=True)
        ckpt = None
    out.mkdir(parents=True, exist_ok=True)
    train_x, train_y, val = split_training_set(dataset.train_x, dataset.train_y, recipe.val_split)
    loader = DeviceLoader(train_x, train_y, batch_size=recipe.batch_size, device=device,
                          seed=config.seed, augment=recipe.augment, normalize=recipe.normalize,
                          channels_last=recipe.channels_last)
    test_x, test_y = dataset.test_x.to(device), dataset.test_y.to(device)
    if val is not None:
        val = (val[0].to(device), val[1].to(device))

    # --- model and optimizer ----------------------------------------------------------------
    num_classes = len(dataset.classes)
    in_channels = int(train_x.shape[1])
    model = build_model(config.model, num_classes=num_classes, in_channels=in_channels)
    params, macs = model_cost(config.model, num_classes=num_classes, in_channels=in_channels)
    # Costs are counted at 32x32; convolution MACs scale with the image area.
    macs = int(macs * train_x.shape[2] * train_x.shape[3] / (32 * 32))
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    if recipe.activation_checkpointing:
        model.set_activation_checkpointing(True)
    optimizer = make_optimizer(model, recipe)
    step_model = torch.compile(model) if recipe.compile else model

    # --- records: start fresh or resume ---------------------------------------------------------
    train_log = CsvLog(out / TRAIN_LOG, TRAIN_COLUMNS)
    eval_log = CsvLog(out / EVAL_LOG, EVAL_COLUMNS)
    grad_log = CsvLog(out / GRAD_LOG, GRAD_COLUMNS) if recipe.grad_norm_every else None
    config_record = {**config.to_dict(), "identity": identity, "config_hash": config.config_hash()}
    write_json(out / CONFIG, config_record)

    start = 0
    state: dict[str, Any] = {"warmup_done": recipe.warmup != "v1", "train_time_s": 0.0,
                             "compile_time_s": 0.0, "wall_time_s": 0.0, "resumed": 0,
                             "timed_images": 0, "oom_fallback_at": None}
    prov = provenance.collect(config.config_hash(), config.seed, device)
    if gpu_claim is not None:
        from resnet_bench.gpu import provenance as gpu_provenance
        prov["gpu_claim"] = gpu_provenance(gpu_claim)
    prov["dataset"] = {"name": dataset.name, "label": dataset.label, "meta": dataset.meta}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        checkpoint.set_rng_states(ckpt["rng"])
        start = int(ckpt["iteration"])
        state.update(ckpt["state"])
        state["resumed"] += 1
        if state.get("activation_checkpointing"):
            model.set_activation_checkpointing(True)
        old = read_json(out / PROVENANCE) if (out / PROVENANCE).exists() else {}
        prov["first_started"] = old.get("first_started", old.get("started"))
        prov["resumes"] = old.get("resumes", []) + [{"at_iteration": start, "time": prov["started"],
                                                      "host": prov["host"],
                                                      "slurm_job_id": prov["slurm_job_id"]}]
        prov["first_slurm_job_id"] = old.get("first_slurm_job_id", old.get("slurm_job_id"))
    else:
        prov["first_started"] = prov["started"]
    write_json(out / PROVENANCE, prov)
    # Rows written after the checkpoint we resume from (or by a run that died before its first
    # checkpoint) would be duplicated: cut them. Grad rows are logged before update `it`.
    train_rows = train_log.truncate_after(start)
    eval_log.truncate_after(start)
    if grad_log is not None:
        grad_log.truncate_after(start - 1)
    recent_errors = [float(r["error_pct"]) for r in train_rows[-recipe.train_window:]]
    recent_losses = [float(r["loss"]) for r in train_rows[-recipe.train_window:]]

    # --- bookkeeping helpers -------------------------------------------------------------------
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
    clock = {"window_start": time.perf_counter(), "images": 0, "session": time.perf_counter()}

    def drain() -> bool:
        """Move per-step values to the host logs; False if any loss is not finite."""
        finite = True
        for i, lr_i, loss_i, wrong_i in pending:
            loss_v = float(loss_i)
            err_v = 100.0 * float(wrong_i) / recipe.batch_size
            train_log.append((i + 1, loader.epoch_at(i + 1), lr_i, loss_v, err_v))
            recent_losses.append(loss_v)
            recent_errors.append(err_v)
            finite = finite and math.isfinite(loss_v)
        del recent_losses[:-recipe.train_window], recent_errors[:-recipe.train_window]
        pending.clear()
        return finite

    def account_time() -> None:
        now = time.perf_counter()
        state["train_time_s"] += now - clock["window_start"]
        state["timed_images"] += clock["images"]
        state["wall_time_s"] = state.get("wall_time_s", 0.0) + now - clock["session"]
        clock.update(window_start=now, images=0, session=now)

    def paused(fn, *args):
        """Run bookkeeping (eval, checkpoint) outside the timed training window."""
        t = time.perf_counter()
        result = fn(*args)
        clock["window_start"] += time.perf_counter() - t
        return result

    def save_checkpoint(iteration: int) -> None:
        drain()
        account_time()
        train_log.flush(); eval_log.flush()
        if grad_log is not None:
            grad_log.flush()
        checkpoint.save(out / CHECKPOINT, model=model, optimizer=optimizer, iteration=iteration,
                        state=state, identity=identity)

    def run_eval(iteration: int) -> tuple[float, float]:
        loss, err = evaluate(model, loader, test_x, test_y, device, recipe.precision,
                             recipe.eval_batch_size)
        eval_log.append((iteration, "test", loss, err))
        if val is not None:
            vloss, verr = evaluate(model, loader, val[0], val[1], device, recipe.precision,
                                   recipe.eval_batch_size)
            eval_log.append((iteration, "val", vloss, verr))
        return loss, err

    # --- the loop ---------------------------------------------------------------------------------
    bar = Progress(total=recipe.iterations, start=start, enabled=progress,
                   label=f"{config.model} seed {config.seed}")
    status, diverged_at = "completed", None
    end = recipe.iterations if stop_after is None else min(recipe.iterations, stop_after)
    model.train()
    it = start
    with _SigtermFlag() as sigterm:
        while it < end:
            lr = recipe.lr_at(it, warmup_done=state["warmup_done"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            xb, yb = loader.batch(it)
            t0 = time.perf_counter()
            try:
                logits, loss = forward_backward(step_model, optimizer, xb, yb, device,
                                                recipe.precision)
            except torch.OutOfMemoryError:
                # Nothing was updated yet: retry this very iteration with activation
                # checkpointing (slower, far less memory), and record that it happened.
                if recipe.activation_checkpointing or state.get("activation_checkpointing"):
                    raise
                logits = loss = None
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                model.set_activation_checkpointing(True)
                state["activation_checkpointing"] = True
                state["oom_fallback_at"] = it
                bar.note(f"out of GPU memory at iteration {it}: retrying with activation checkpointing")
                continue
            if grad_log is not None and (it % recipe.grad_norm_every == 0 or it == recipe.iterations - 1):
                for row in _grad_norm_rows(model, it):
                    grad_log.append(row)
            optimizer.step()
            pending.append((it, lr, loss.detach(), (logits.argmax(1) != yb).sum()))
            it += 1
            clock["images"] += len(yb)

            if it == start + 1 and recipe.compile:
                # The first compiled step pays for compilation: time it apart.
                if device.type == "cuda":
                    torch.cuda.synchronize()
                state["compile_time_s"] += time.perf_counter() - t0
                clock.update(window_start=time.perf_counter(), images=0)

            if it % sync_every == 0 or it == end or sigterm.raised:
                if not drain():
                    status, diverged_at = "diverged", it
                    break
                if not state["warmup_done"] and it % SYNC_EVERY == 0:
                    window = sum(recent_errors[-SYNC_EVERY:]) / len(recent_errors[-SYNC_EVERY:])
                    if window < recipe.warmup_error_pct:
                        state["warmup_done"] = True
                        bar.note(f"V1 warm-up over at iteration {it}: training error "
                                 f"{window:.1f}% < {recipe.warmup_error_pct}%")
                account_time()
                bar.update(it, loss=recent_losses[-1], error=recent_errors[-1], lr=lr,
                           images_per_s=state["timed_images"] / max(state["train_time_s"], 1e-9))

            if it % recipe.eval_every == 0 and it != recipe.iterations:
                paused(run_eval, it)
            if sigterm.raised:
                save_checkpoint(it)
                bar.close(f"SIGTERM: checkpoint written at iteration {it}; run the same command to resume")
                return Outcome({"status": "preempted", "iterations": it}, EXIT_PREEMPTED)
            if it % recipe.checkpoint_every == 0 and it != recipe.iterations:
                paused(save_checkpoint, it)

        if status == "completed" and it < recipe.iterations:
            # Stopped early on purpose (stop_after): behave exactly like a preemption.
            save_checkpoint(it)
            bar.close(f"stopped at iteration {it}")
            return Outcome({"status": "preempted", "iterations": it}, EXIT_PREEMPTED)

    # --- finish: final-iteration numbers only, never a best epoch --------------------------------
    if status == "completed":
        test_loss, test_err = run_eval(recipe.iterations)
    else:
        test_loss, test_err = float("nan"), float("nan")
    account_time()
    train_log.flush(); eval_log.flush()
    if grad_log is not None:
        grad_log.flush()
    bar.close(f"{status}: test error {test_err:.2f}%" if status == "completed"
              else f"diverged at iteration {diverged_at}")

    spec = _spec_fields(config.model)
    images_per_s = state["timed_images"] / max(state["train_time_s"], 1e-9)
    summary = {
        "status": status,
        "identity": identity,
        "model": config.model, **spec,
        "dataset": config.dataset, "dataset_label": dataset.label,
        "seed": config.seed, "recipe": recipe.name,
        "iterations": it if status == "completed" else diverged_at,
        "target_iterations": recipe.iterations,
        "diverged_at": diverged_at,
        "final_train_loss": sum(recent_losses) / len(recent_losses) if status == "completed" else float("nan"),
        "final_train_error_pct": sum(recent_errors) / len(recent_errors) if status == "completed" else float("nan"),
        "train_window": recipe.train_window,
        "final_test_loss": test_loss,
        "final_test_error_pct": test_err,
        "wall_time_s": state["wall_time_s"],
        "train_time_s": state["train_time_s"],
        "compile_time_s": state["compile_time_s"],
        "images_per_s": images_per_s,
        # Training costs ~3 forward passes (forward, grad wrt activations, grad wrt weights).
        "tflops_per_s": images_per_s * macs * 2 * 3 / 1e12,
        "params": params, "macs": macs,
        "precision": recipe.precision,
        "activation_checkpointing": bool(recipe.activation_checkpointing or state.get("activation_checkpointing")),
        "oom_fallback_at": state.get("oom_fallback_at"),
        "resumed": state["resumed"],
        "device": prov["hardware"]["device_name"],
    }
    # Serialised in memory, then written atomically: a full disk raises OSError (torch.save to a
    # path would raise a RuntimeError) and leaves no half-written model.pt.
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(out / FINAL_WEIGHTS, buf.getvalue())
    prov["finished"] = provenance.now()
    write_json(out / PROVENANCE, prov)
    write_json(out / SUMMARY, summary)  # last: its presence means the run is finished
    (out / CHECKPOINT).unlink(missing_ok=True)
    return Outcome(summary, 0)


def check_out_dir(out: Path) -> None:
    """Refuse a run directory that cannot be one, naming the path and the cause."""
    if out.exists():
        if not out.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(out))
        ancestor = out
    else:
        ancestor = next(p for p in out.parents if p.exists() or p == p.parent)
        if not ancestor.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{ancestor} is not a directory", str(out))
    if os.statvfs(ancestor).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(ancestor))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(ancestor))


def _read_checkpoint(path: Path, discard: bool) -> dict | None:
    if discard:
        path.unlink(missing_ok=True)
        return None
    if not path.exists():
        return None
    try:
        return checkpoint.load(path)
    except ValueError as exc:
        raise ValueError(f"{exc}; to discard it and start this run over, run the same command "
                         f"with --discard-checkpoint (or delete {path})") from None


def _stale_identity(out: Path, identity: str, ckpt: dict | None) -> str | None:
    """The identity of records in `out` (or of its checkpoint) that belong to another config."""
    found = [read_json(out / name).get("identity") for name in (SUMMARY, CONFIG)
             if (out / name).exists()]
    if ckpt is not None:
        found.append(ckpt.get("identity"))
    return next((str(f) for f in found if f != identity), None)


def _spec_fields(name: str) -> dict[str, Any]:
    from resnet_bench.models import parse_model_name
    spec = parse_model_name(name)
    return {"family": spec.family, "block": spec.block, "depth": spec.depth, "variant": spec.variant}
