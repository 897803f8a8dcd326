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

from resnet_bench.infra.checks import device as check_device
from resnet_bench.models import build_model, model_cost
from resnet_bench.data.runs import training_data
from resnet_bench.record import (CHECKPOINT, CONFIG, EVAL_LOG, FINAL_WEIGHTS, GRAD_LOG, PREEMPTED,
                                 PROVENANCE, STATUSES, SUMMARY, TRAIN_LOG, Summary)
from resnet_bench.train import checkpoint, distributed, provenance
from resnet_bench.train.exits import EXIT_COMPLETED, EXIT_PREEMPTED
from resnet_bench.train.progress import Progress
from resnet_bench.train.recipe import RunConfig
from resnet_bench.train.records import atomic_write_bytes, read_json, sweep_temp_files, write_json
from resnet_bench.train.rundir import held, out_path
from resnet_bench.train.session import Clock, Logs, State, Training, TrainWindow
from resnet_bench.train.step import (SYNC_EVERY, ForwardBackwardOOM, StepValues, compiled,
                                     configure_backends, make_optimizer, prepare_model,
                                     sync_interval, train_step)

__all__ = ["Outcome", "check_out_dir", "pick_device", "train"]


@dataclass
class Outcome:
    summary: dict[str, Any]
    exit_status: int


@dataclass(frozen=True)
class Ended:
    """Where `_loop` stopped: completed, diverged or preempted, after `iteration` updates."""
    status: str
    iteration: int


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
            return Outcome(summary, EXIT_COMPLETED)

    run = _setup(config, out, device, identity, replace=stale is not None, world=world)
    state, window, prov, start = _resume(run, None if stale is not None else ckpt, gpu_claim)
    bar = Progress(total=run.recipe.iterations, start=start, enabled=progress,
                   stream=None if world.is_writer else io.StringIO(),  # rank 0 tells
                   label=f"{config.model} seed {config.seed}")
    clock = Clock.started()
    ended = _loop(run, state, clock, window, bar, start, stop_after)
    if ended.status == PREEMPTED:
        return Outcome(_stopped(state, ended.iteration), EXIT_PREEMPTED)
    return _finish(run, state, clock, window, bar, prov, ended)


def _setup(config: RunConfig, out: Path, device: torch.device, identity: str,
           replace: bool, world: distributed.World = distributed.SINGLE) -> Training:
    """Data, model, optimizer and logs; the records of a replaced (stale) run are removed only
    once the data has been checked."""
    recipe = config.recipe
    spec = config.spec
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

    num_classes = len(dataset.classes)
    model = build_model(spec, num_classes=num_classes, in_channels=in_channels)
    model = distributed.convert_bn(model, recipe, world, device)  # ghost/sync BN: bn_batch_size
    params, macs = model_cost(spec, num_classes=num_classes, in_channels=in_channels)
    macs = int(macs * spec.area_scale((h, w)))   # at the images trained on
    prepare_model(model, device, recipe)
    if recipe.activation_checkpointing:
        model.set_activation_checkpointing(True)
    optimizer = make_optimizer(model, recipe)

    run = Training(config=config, out=out, device=device, world=world,
                   identity=identity, dataset=dataset, loader=loader, test=test, val=val,
                   model=model, optimizer=optimizer,
                   step_model=compiled(distributed.data_parallel(model, world, device), recipe),
                   params=params, macs=macs, logs=Logs.open(out, recipe, writer=world.is_writer))
    if world.is_writer:
        write_json(out / CONFIG, {**config.to_dict(), "identity": identity,
                                  "config_hash": config.config_hash()})
    return run


def _resume(run: Training, ckpt: dict | None,
            gpu_claim) -> tuple[State, TrainWindow, dict[str, Any], int]:
    """Start fresh, or restore weights, optimizer, RNG states and state from `ckpt`; write the
    provenance; cut the logs back to the checkpoint. Returns the state, the training window,
    the provenance and the first iteration to run."""
    recipe = run.recipe
    prov = provenance.collect(run.config.config_hash(), run.config.seed, run.device)
    if gpu_claim is not None:
        from resnet_bench.infra.gpu import provenance as gpu_provenance
        prov["gpu_claim"] = gpu_provenance(gpu_claim)
    prov["dataset"] = {"name": run.dataset.name, "label": run.dataset.label,
                       "meta": run.dataset.meta}
    layout = distributed.describe(run.world, recipe, run.device, provenance.device_description)
    if layout is not None:
        prov["distributed"] = layout
    if ckpt is None:
        start, state = 0, State.fresh(recipe)
        prov["first_started"] = prov["started"]
        prov["first_code"] = prov["code"]
    else:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        checkpoint.set_rng_states(ckpt["rng"])
        start, state = int(ckpt["iteration"]), State.resumed_from(ckpt["state"], recipe)
        if state.activation_checkpointing:
            run.model.set_activation_checkpointing(True)
        _record_resume(prov, run.out / PROVENANCE, start)
    if run.world.is_writer:
        write_json(run.out / PROVENANCE, prov)
    train_rows = run.logs.cut_after(start)
    distributed.check_agreed(run.world, "the iteration to resume from", start, run.device)
    return state, TrainWindow.from_rows(recipe.train_window, train_rows), prov, start


def _record_resume(prov: dict[str, Any], previous: Path, start: int) -> None:
    """Carry the first session's start, code and job over from the previous provenance, and
    add this resume. A long run may resume under a newer checkout: each start names its code."""
    old = read_json(previous) if previous.exists() else {}
    prov["first_started"] = old.get("first_started", old.get("started"))
    prov["first_code"] = old.get("first_code", old.get("code"))
    prov["resumes"] = old.get("resumes", []) + [{"at_iteration": start, "time": prov["started"],
                                                  "host": prov["host"],
                                                  "slurm_job_id": prov["slurm_job_id"],
                                                  "code": prov["code"]}]
    prov["first_slurm_job_id"] = old.get("first_slurm_job_id", old.get("slurm_job_id"))


def _loop(run: Training, state: State, clock: Clock, window: TrainWindow, bar: Progress,
          start: int, stop_after: int | None) -> Ended:
    """Iterate from `start` until the schedule ends, the loss diverges, or SIGTERM (or
    `stop_after`) stops it after a checkpoint. The lr is a function of the iteration (and of
    the V1 warm-up's state); the batch a function of the seed and the iteration."""
    recipe, world = run.recipe, run.world
    sync_every = sync_interval(run.device)
    end = recipe.iterations if stop_after is None else min(recipe.iterations, stop_after)
    steps = StepValues()  # per-step loss and error, on the device until the next host sync
    run.model.train()
    it = start
    with _SigtermFlag() as sigterm:
        while it < end:
            lr = recipe.lr_at(it, warmup_done=state.warmup_done)
            xb, yb = run.loader.batch(it)
            t0 = time.perf_counter()
            try:
                loss, wrong = train_step(run.step_model, run.optimizer, xb, yb, lr, run.device,
                                         recipe.precision, before_update=run.grad_norm_logger(it))
            except ForwardBackwardOOM:
                # Nothing was updated yet: retry this very iteration with activation
                # checkpointing (slower, far less memory), and record that it happened.
                if recipe.activation_checkpointing or state.activation_checkpointing \
                        or world.distributed:  # one rank alone cannot retry a DDP step
                    raise
                _fall_back_to_activation_checkpointing(run, state, bar, it)
                continue
            steps.add(it, lr, loss, wrong)
            it += 1
            clock.images += len(yb) * world.world_size

            if it == start + 1 and recipe.compile:
                # The first compiled step pays for compilation: time it apart.
                if run.device.type == "cuda":
                    torch.cuda.synchronize()
                state.compile_time_s += time.perf_counter() - t0
                clock.restart_window()

            at_sync = it % sync_every == 0 or it == end
            if not world.distributed:
                stop = bool(sigterm.raised)
            else:  # the ranks agree at the syncs: a SIGTERM at any one of them stops them all
                stop = at_sync and distributed.any_rank(world, bool(sigterm.raised), run.device)
            if at_sync or stop:
                if not run.log_steps(steps, window):
                    return Ended("diverged", it)
                _check_warmup(state, window, bar, it, recipe.warmup_error_pct)
                clock.account(state)
                bar.update(it, loss=window.losses[-1], error=window.errors[-1], lr=lr,
                           images_per_s=state.images_per_s())

            if it % recipe.eval_every == 0 and it != recipe.iterations:
                clock.paused(run.evaluate, it)
            if stop:
                _checkpoint(run, state, clock, steps, window, it)
                bar.close(f"{sigterm.raised or 'SIGTERM'}: checkpoint written at iteration {it}; "
                          "run the same command to resume")
                return Ended(PREEMPTED, it)
            if it % recipe.checkpoint_every == 0 and it != recipe.iterations:
                clock.paused(_checkpoint, run, state, clock, steps, window, it)

        if it < recipe.iterations:
            # Stopped early on purpose (stop_after): behave exactly like a preemption.
            _checkpoint(run, state, clock, steps, window, it)
            bar.close(f"stopped at iteration {it}")
            return Ended(PREEMPTED, it)
    return Ended("completed", it)


def _checkpoint(run: Training, state: State, clock: Clock, steps: StepValues,
                window: TrainWindow, it: int) -> None:
    """The logs and state up to update `it`, then the checkpoint (which names `it`)."""
    run.log_steps(steps, window)
    clock.account(state)
    run.save_checkpoint(it, state)


def _stopped(state: State, it: int) -> dict[str, Any]:
    """What a preempted run reports (its checkpoint holds the rest): where it stopped and the
    time it took, so that a caller can measure a run it stops (bench.gpucheck.paper_run)."""
    return {"status": PREEMPTED, "iterations": it, "train_time_s": state.train_time_s,
            "wall_time_s": state.wall_time_s, "compile_time_s": state.compile_time_s,
            "timed_images": state.timed_images, "warmup_done": state.warmup_done,
            "oom_fallback_at": state.oom_fallback_at}


def _fall_back_to_activation_checkpointing(run: Training, state: State, bar: Progress,
                                           it: int) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()
    run.model.set_activation_checkpointing(True)
    state.activation_checkpointing = True
    state.oom_fallback_at = it
    bar.note(f"out of GPU memory at iteration {it}: retrying with activation checkpointing")


def _check_warmup(state: State, window: TrainWindow, bar: Progress, it: int,
                  threshold: float) -> None:
    """V1 warm-up (He 2015): over once the mean training error of the last SYNC_EVERY
    iterations drops below the recipe's threshold; tested at fixed iterations only."""
    if state.warmup_done or it % SYNC_EVERY != 0:
        return
    error = window.mean_error(last=SYNC_EVERY)
    if error < threshold:
        state.warmup_done = True
        bar.note(f"V1 warm-up over at iteration {it}: training error {error:.1f}% < {threshold}%")


def _finish(run: Training, state: State, clock: Clock, window: TrainWindow, bar: Progress,
            prov: dict[str, Any], ended: Ended) -> Outcome:
    """Final-iteration numbers only, never a best epoch; summary.json is written last."""
    recipe, spec = run.recipe, run.spec
    completed = ended.status == "completed"
    diverged_at = None if completed else ended.iteration
    nan = float("nan")
    # outside the timed window, like the evaluations during the run
    test_loss, test_err, test_top5 = (clock.paused(run.evaluate, recipe.iterations, True)
                                      if completed else (nan, nan, None))
    clock.account(state)
    run.logs.flush()
    bar.close(f"completed: test error {test_err:.2f}%" if completed
              else f"diverged at iteration {diverged_at}")
    if not run.world.is_writer:  # rank 0 writes the record
        return Outcome({"status": ended.status, "iterations": ended.iteration}, EXIT_COMPLETED)

    images_per_s = state.images_per_s()
    summary = Summary(
        status=ended.status, identity=run.identity,
        model=run.config.model, family=spec.family, block=spec.block, depth=spec.depth,
        variant=spec.variant,
        dataset=run.config.dataset, dataset_label=run.dataset.label,
        seed=run.config.seed, recipe=recipe.name,
        iterations=ended.iteration,
        target_iterations=recipe.iterations,
        diverged_at=diverged_at,
        final_train_loss=window.mean_loss() if completed else nan,
        final_train_error_pct=window.mean_error() if completed else nan,
        train_window=recipe.train_window,
        final_test_loss=test_loss, final_test_error_pct=test_err,
        final_test_top5_error_pct=test_top5,
        wall_time_s=state.wall_time_s, train_time_s=state.train_time_s,
        compile_time_s=state.compile_time_s, images_per_s=images_per_s,
        # Training costs ~3 forward passes (forward, grad wrt activations, grad wrt weights).
        tflops_per_s=images_per_s * run.macs * 2 * 3 / 1e12,
        params=run.params, macs=run.macs,
        precision=recipe.precision,
        activation_checkpointing=recipe.activation_checkpointing or state.activation_checkpointing,
        oom_fallback_at=state.oom_fallback_at,
        resumed=state.resumed,
        device=prov["hardware"]["device_name"],
    ).to_dict()
    # Serialised in memory, then written atomically: a full disk raises OSError (torch.save to a
    # path would raise a RuntimeError) and leaves no half-written model.pt.
    buf = io.BytesIO()
    torch.save(run.model.state_dict(), buf)
    atomic_write_bytes(run.out / FINAL_WEIGHTS, buf.getvalue())
    prov["finished"] = provenance.now()
    write_json(run.out / PROVENANCE, prov)
    write_json(run.out / SUMMARY, summary)  # last: its presence means the run is finished
    (run.out / CHECKPOINT).unlink(missing_ok=True)
    return Outcome(summary, EXIT_COMPLETED)


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

