"""One training run: a network, a dataset, a seed, a recipe -> a directory of records.

Read top to bottom: `train()` sets up (`_setup`), resumes or starts (`_resume`), iterates
(`_loop`: lr, batch, the step of resnet_bench.train.step, log, evaluate, checkpoint) and
finishes (`_finish`). Every random choice is a pure function of (seed, iteration) or is
checkpointed, so a run killed at any moment and started again takes the same batches, crops,
schedule and decisions as an uninterrupted one. On CPU it ends with the same bits. On CUDA it
does not: `cudnn.benchmark` picks each process's fastest convolution algorithms, whose reduction
orders differ, so a resumed run differs from an uninterrupted one in the last bits and drifts as
two uninterrupted CUDA runs do. The record it writes is defined in resnet_bench.record.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_bench.checks import device as check_device
from resnet_bench.data.runs import training_data
from resnet_bench.record import (CHECKPOINT, CONFIG, EVAL_COLUMNS, EVAL_LOG, FINAL_WEIGHTS,
                                 GRAD_COLUMNS, GRAD_LOG, PREEMPTED, PROVENANCE, STATUSES,
                                 SUMMARY, TRAIN_COLUMNS, TRAIN_LOG, Summary)
from resnet_bench.train import checkpoint, distributed, provenance
from resnet_bench.train.progress import Progress
from resnet_bench.train.recipe import RunConfig
from resnet_bench.train.records import (CsvLog, atomic_write_bytes, read_json, sweep_temp_files,
                                        write_json)
from resnet_bench.train.rundir import held, out_path
from resnet_bench.train.session import Session
from resnet_bench.train.step import (SYNC_EVERY, ForwardBackwardOOM, compiled, configure_backends,
                                     make_optimizer, prepare_model, sync_interval, train_step)

# Exit status of a run stopped by SIGTERM after writing its checkpoint (EX_TEMPFAIL):
# the scheduler should run the same command again, which resumes.
EXIT_PREEMPTED = 75

__all__ = ["EXIT_PREEMPTED", "Outcome", "Preempted", "check_out_dir", "pick_device", "train"]


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
    """Turns SIGTERM (Slurm preemption/time limit) and SIGINT (Ctrl-C) into a flag checked
    between iterations: either one checkpoints and exits EXIT_PREEMPTED."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.raised: str | None = None
        self._old: dict = {}

    def __enter__(self):
        try:
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread (e.g. called from a notebook worker)
            self._old = {}
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def train(config: RunConfig, out_dir: str | Path, *, progress: bool | None = None,
          stop_after: int | None = None, replace_stale: bool = False, gpu_claim=None,
          discard_checkpoint: bool = False, wait_for_lock: bool = False,
          world: distributed.World = distributed.SINGLE) -> Outcome:
    """Train (or resume, or return the finished record of) one run in `out_dir`.

    `world`: this process's place in a torchrun run (resnet_bench.train.distributed); rank 0
    writes the records, every rank reads them.

    `discard_checkpoint` deletes the run's checkpoint (e.g. an unreadable one) and starts over.

    `wait_for_lock`: when another trainer holds `out`, wait for it instead of refusing
    (resnet_bench.train.rundir).

    `stop_after` ends the process's work after that many total iterations as if preempted
    (used by tests to interrupt a run at a known point).
    """
    out = out_path(out_dir)
    check_out_dir(out)  # a file, a file above it, read-only: refused before anything is read
    # One trainer per run directory, and only a directory of the suite's (rank 0 writes).
    with held(out, wait=wait_for_lock) if world.is_writer else nullcontext():
        return _train(config, out, progress=progress, stop_after=stop_after,
                      replace_stale=replace_stale, gpu_claim=gpu_claim,
                      discard_checkpoint=discard_checkpoint, world=world)


def _train(config: RunConfig, out: Path, *, progress, stop_after, replace_stale, gpu_claim,
           discard_checkpoint, world) -> Outcome:
    identity = config.identity_hash()
    device = world.device(config.device) if world.distributed else pick_device(config.device)
    if out.is_dir() and world.is_writer:
        sweep_temp_files(out)  # left by a run killed inside an atomic write

    # A finished run is a result: never redo it, but never silently reuse a different one.
    ckpt = _read_checkpoint(out / CHECKPOINT, discard_checkpoint)
    stale = _stale_identity(out, identity, ckpt)
    if stale is not None and not replace_stale:
        raise ValueError(f"{out}: holds records of a different run config (identity {stale} != "
                         f"{identity}); use another --out or --replace-stale")
    if stale is None and (out / SUMMARY).exists():
        summary = read_json(out / SUMMARY)
        if summary.get("status") in STATUSES:
            return Outcome(summary, 0)

    run = _setup(config, out, device, identity, replace=stale is not None, world=world)
    start = _resume(run, None if stale is not None else ckpt, gpu_claim)
    stopped = _loop(run, start, progress, stop_after)
    if isinstance(stopped, Outcome):
        return stopped
    return _finish(run, *stopped)


def _setup(config: RunConfig, out: Path, device: torch.device, identity: str,
           replace: bool, world: distributed.World = distributed.SINGLE) -> Session:
    """Data, model, optimizer and logs; the records of a replaced (stale) run are removed only
    once the data has been checked."""
    from resnet_bench.models import build_model, model_cost, parse_model_name

    recipe = config.recipe
    spec = parse_model_name(config.model)  # once; the spec, not the name, goes on from here
    torch.manual_seed(config.seed)
    configure_backends(device, recipe.precision)

    dataset = config.source.load()
    # checked, then the loader its kind supplies (in memory or streamed), on this device
    data = training_data(dataset, recipe, dataset=config.dataset, seed=config.seed, device=device,
                         rank=world.rank, world_size=world.world_size)
    if replace and world.is_writer:
        for name in (SUMMARY, CHECKPOINT, CONFIG, PROVENANCE, TRAIN_LOG, EVAL_LOG, GRAD_LOG,
                     FINAL_WEIGHTS):
            (out / name).unlink(missing_ok=True)
    if world.is_writer:
        out.mkdir(parents=True, exist_ok=True)
    loader, test, val = data.loader, data.test, data.val
    in_channels, (h, w) = data.in_channels, data.image_hw
    cost_side = data.cost_side or spec.image_size

    num_classes = len(dataset.classes)
    model = build_model(spec, num_classes=num_classes, in_channels=in_channels)
    model = distributed.convert_bn(model, recipe, world, device)  # ghost/sync BN: bn_batch_size
    params, macs = model_cost(spec, num_classes=num_classes, in_channels=in_channels)
    # Costs are counted at 32x32 (CIFAR nets) or 224x224 (ImageNet nets, on the streamed
    # crops); convolution MACs scale with the image area.
    macs = int(macs * h * w / (cost_side * cost_side))
    prepare_model(model, device, recipe)
    if recipe.activation_checkpointing:
        model.set_activation_checkpointing(True)
    optimizer = make_optimizer(model, recipe)

    run = Session(config=config, spec=spec, out=out, device=device, identity=identity,
                  dataset=dataset, loader=loader, test=test, val=val, model=model,
                  optimizer=optimizer,
                  step_model=compiled(distributed.data_parallel(model, world, device), recipe),
                  params=params, macs=macs,
                  train_log=CsvLog(out / TRAIN_LOG, TRAIN_COLUMNS, writer=world.is_writer),
                  eval_log=CsvLog(out / EVAL_LOG, EVAL_COLUMNS, writer=world.is_writer),
                  grad_log=(CsvLog(out / GRAD_LOG, GRAD_COLUMNS, writer=world.is_writer)
                            if recipe.grad_norm_every else None),
                  world=world)
    if world.is_writer:
        write_json(out / CONFIG, {**config.to_dict(), "identity": identity,
                                  "config_hash": config.config_hash()})
    return run


def _resume(run: Session, ckpt: dict | None, gpu_claim) -> int:
    """Start fresh, or restore weights, optimizer, RNG states and counters from `ckpt`; cut the
    logs back to the checkpoint. Returns the first iteration to run."""
    config, recipe = run.config, run.recipe
    start = 0
    run.state = {"warmup_done": recipe.warmup != "v1", "train_time_s": 0.0,
                 "compile_time_s": 0.0, "wall_time_s": 0.0, "resumed": 0,
                 "timed_images": 0, "oom_fallback_at": None}
    prov = run.prov = provenance.collect(config.config_hash(), config.seed, run.device)
    if gpu_claim is not None:
        from resnet_bench.gpu import provenance as gpu_provenance
        prov["gpu_claim"] = gpu_provenance(gpu_claim)
    prov["dataset"] = {"name": run.dataset.name, "label": run.dataset.label,
                       "meta": run.dataset.meta}
    layout = distributed.describe(run.world, recipe, run.device, provenance.device_description)
    if layout is not None:
        prov["distributed"] = layout
    if ckpt is not None:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        checkpoint.set_rng_states(ckpt["rng"])
        start = int(ckpt["iteration"])
        run.state.update(ckpt["state"])
        run.state["resumed"] += 1
        if run.state.get("activation_checkpointing"):
            run.model.set_activation_checkpointing(True)
        old = read_json(run.out / PROVENANCE) if (run.out / PROVENANCE).exists() else {}
        prov["first_started"] = old.get("first_started", old.get("started"))
        # A long run may resume under a newer checkout: each start names its code.
        prov["first_code"] = old.get("first_code", old.get("code"))
        prov["resumes"] = old.get("resumes", []) + [{"at_iteration": start, "time": prov["started"],
                                                      "host": prov["host"],
                                                      "slurm_job_id": prov["slurm_job_id"],
                                                      "code": prov["code"]}]
        prov["first_slurm_job_id"] = old.get("first_slurm_job_id", old.get("slurm_job_id"))
    else:
        prov["first_started"] = prov["started"]
        prov["first_code"] = prov["code"]
    if run.world.is_writer:
        write_json(run.out / PROVENANCE, prov)
    # Rows written after the checkpoint we resume from (or by a run that died before its first
    # checkpoint) would be duplicated: cut them. Grad rows are logged before update `it`.
    train_rows = run.train_log.truncate_after(start)
    run.eval_log.truncate_after(start)
    if run.grad_log is not None:
        run.grad_log.truncate_after(start - 1)
    distributed.check_agreed(run.world, "the iteration to resume from", start, run.device)
    run.recent_errors = [float(r["error_pct"]) for r in train_rows[-recipe.train_window:]]
    run.recent_losses = [float(r["loss"]) for r in train_rows[-recipe.train_window:]]
    return start


def _loop(run: Session, start: int, progress: bool | None, stop_after: int | None):
    """Iterate from `start`: (status, diverged_at, iteration reached), or the Outcome of a
    preemption (SIGTERM, or `stop_after`) after writing a checkpoint."""
    recipe, state = run.recipe, run.state
    sync_every = sync_interval(run.device)
    run.clock = {"window_start": time.perf_counter(), "images": 0, "session": time.perf_counter()}
    bar = run.bar = Progress(total=recipe.iterations, start=start, enabled=progress,
                             stream=None if run.world.is_writer else io.StringIO(),  # rank 0 tells
                             label=f"{run.config.model} seed {run.config.seed}")
    status, diverged_at = "completed", None
    end = recipe.iterations if stop_after is None else min(recipe.iterations, stop_after)
    run.model.train()
    it = start
    with _SigtermFlag() as sigterm:
        while it < end:
            lr = recipe.lr_at(it, warmup_done=state["warmup_done"])
            xb, yb = run.loader.batch(it)
            t0 = time.perf_counter()
            try:
                loss, wrong = train_step(run.step_model, run.optimizer, xb, yb, lr, run.device,
                                         recipe.precision, before_update=run.grad_norm_logger(it))
            except ForwardBackwardOOM:
                # Nothing was updated yet: retry this very iteration with activation
                # checkpointing (slower, far less memory), and record that it happened.
                if recipe.activation_checkpointing or state.get("activation_checkpointing") \
                        or run.world.distributed:  # one rank alone cannot retry a DDP step
                    raise
                _fall_back_to_activation_checkpointing(run, it)
                continue
            run.steps.add(it, lr, loss, wrong)
            it += 1
            run.clock["images"] += len(yb) * run.world.world_size

            if it == start + 1 and recipe.compile:
                # The first compiled step pays for compilation: time it apart.
                if run.device.type == "cuda":
                    torch.cuda.synchronize()
                state["compile_time_s"] += time.perf_counter() - t0
                run.clock.update(window_start=time.perf_counter(), images=0)

            at_sync = it % sync_every == 0 or it == end
            if not run.world.distributed:
                stop = bool(sigterm.raised)
            else:  # the ranks agree at the syncs: a SIGTERM at any one of them stops them all
                stop = at_sync and distributed.any_rank(run.world, bool(sigterm.raised), run.device)
            if at_sync or stop:
                if not run.drain():
                    status, diverged_at = "diverged", it
                    break
                _check_warmup(run, it)
                run.account_time()
                bar.update(it, loss=run.recent_losses[-1], error=run.recent_errors[-1], lr=lr,
                           images_per_s=run.images_per_s())

            if it % recipe.eval_every == 0 and it != recipe.iterations:
                run.paused(run.run_eval, it)
            if stop:
                run.save_checkpoint(it)
                bar.close(f"{sigterm.raised or 'SIGTERM'}: checkpoint written at iteration {it}; "
                          "run the same command to resume")
                return Outcome(_stopped(run, it), EXIT_PREEMPTED)
            if it % recipe.checkpoint_every == 0 and it != recipe.iterations:
                run.paused(run.save_checkpoint, it)

        if status == "completed" and it < recipe.iterations:
            # Stopped early on purpose (stop_after): behave exactly like a preemption.
            run.save_checkpoint(it)
            bar.close(f"stopped at iteration {it}")
            return Outcome(_stopped(run, it), EXIT_PREEMPTED)
    return status, diverged_at, it


def _stopped(run: Session, it: int) -> dict[str, Any]:
    """What a preempted run reports (its checkpoint holds the rest): where it stopped and the
    time it took, so that a caller can measure a run it stops (scripts/gpu-check.sh)."""
    keys = ("train_time_s", "wall_time_s", "compile_time_s", "timed_images", "warmup_done",
            "oom_fallback_at")
    return {"status": PREEMPTED, "iterations": it, **{k: run.state.get(k) for k in keys}}


def _fall_back_to_activation_checkpointing(run: Session, it: int) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()
    run.model.set_activation_checkpointing(True)
    run.state["activation_checkpointing"] = True
    run.state["oom_fallback_at"] = it
    run.bar.note(f"out of GPU memory at iteration {it}: retrying with activation checkpointing")


def _check_warmup(run: Session, it: int) -> None:
    """V1 warm-up (He 2015): over once the mean training error of the last SYNC_EVERY
    iterations drops below the recipe's threshold; tested at fixed iterations only."""
    recipe = run.recipe
    if run.state["warmup_done"] or it % SYNC_EVERY != 0:
        return
    window = sum(run.recent_errors[-SYNC_EVERY:]) / len(run.recent_errors[-SYNC_EVERY:])
    if window < recipe.warmup_error_pct:
        run.state["warmup_done"] = True
        run.bar.note(f"V1 warm-up over at iteration {it}: training error "
                     f"{window:.1f}% < {recipe.warmup_error_pct}%")


def _finish(run: Session, status: str, diverged_at: int | None, it: int) -> Outcome:
    """Final-iteration numbers only, never a best epoch; summary.json is written last."""
    recipe, state = run.recipe, run.state
    if status == "completed":
        test_loss, test_err = run.run_eval(recipe.iterations, final=True)
    else:
        test_loss, test_err = float("nan"), float("nan")
    run.account_time()
    run.flush_logs()
    run.bar.close(f"{status}: test error {test_err:.2f}%" if status == "completed"
                  else f"diverged at iteration {diverged_at}")
    if not run.world.is_writer:  # rank 0 writes the record
        return Outcome({"status": status, "iterations": it}, 0)

    spec = run.spec
    completed = status == "completed"
    images_per_s = run.images_per_s()
    summary = Summary(
        status=status, identity=run.identity,
        model=run.config.model, family=spec.family, block=spec.block, depth=spec.depth,
        variant=spec.variant,
        dataset=run.config.dataset, dataset_label=run.dataset.label,
        seed=run.config.seed, recipe=recipe.name,
        iterations=it if completed else diverged_at,
        target_iterations=recipe.iterations,
        diverged_at=diverged_at,
        final_train_loss=(sum(run.recent_losses) / len(run.recent_losses) if completed
                          else float("nan")),
        final_train_error_pct=(sum(run.recent_errors) / len(run.recent_errors) if completed
                               else float("nan")),
        train_window=recipe.train_window,
        final_test_loss=test_loss, final_test_error_pct=test_err,
        final_test_top5_error_pct=run.test_top5 if completed else None,
        wall_time_s=state["wall_time_s"], train_time_s=state["train_time_s"],
        compile_time_s=state["compile_time_s"], images_per_s=images_per_s,
        # Training costs ~3 forward passes (forward, grad wrt activations, grad wrt weights).
        tflops_per_s=images_per_s * run.macs * 2 * 3 / 1e12,
        params=run.params, macs=run.macs,
        precision=recipe.precision,
        activation_checkpointing=bool(recipe.activation_checkpointing
                                      or state.get("activation_checkpointing")),
        oom_fallback_at=state.get("oom_fallback_at"),
        resumed=state["resumed"],
        device=run.prov["hardware"]["device_name"],
    ).to_dict()
    # Serialised in memory, then written atomically: a full disk raises OSError (torch.save to a
    # path would raise a RuntimeError) and leaves no half-written model.pt.
    buf = io.BytesIO()
    torch.save(run.model.state_dict(), buf)
    atomic_write_bytes(run.out / FINAL_WEIGHTS, buf.getvalue())
    run.prov["finished"] = provenance.now()
    write_json(run.out / PROVENANCE, run.prov)
    write_json(run.out / SUMMARY, summary)  # last: its presence means the run is finished
    (run.out / CHECKPOINT).unlink(missing_ok=True)
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

