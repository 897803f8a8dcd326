"""One run across several processes: torch.distributed, started by torchrun.

    torchrun --nproc-per-node 2 -m resnet_bench.cli train --model ... --out RUN

(or `torchrun --nproc-per-node 2 $(which resnet-bench) train ...`; `python -m
resnet_bench.train.distributed` takes torchrun's arguments and exits with the trainer's statuses,
75 on SIGTERM: see `torchrun` below) is one run of two processes:
torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) makes the
process group, nccl on CUDA (process r on cuda:LOCAL_RANK), gloo on CPU. Without torchrun, or
with WORLD_SIZE 1, nothing here does anything: the single-process code path is unchanged.

What W processes change, and what they do not (resnet_bench.train.loop):

* The mini-batch stays `recipe.batch_size` (the global batch); process r trains on the
  contiguous slice r of global batch i (resnet_bench.data.loader), so the data are the same
  pure function of (seed, i) for every W. DistributedDataParallel averages the gradients.
* BatchNorm statistics (`recipe.bn_batch_size`, Recipe.bn_mode): per process
  (plain BN under DDP) when it equals batch_size/W, ghost BN within the process when smaller,
  SyncBN across processes when 0 (torch's SyncBatchNorm on CUDA; on CPU, where torch's refuses,
  resnet_bench.models.batchnorm.AllReduceBatchNorm2d). A single process with bn_batch_size < B
  uses ghost BN, so it reproduces a W-GPU per-GPU-BN run. Running statistics: DDP broadcasts
  rank 0's buffers before every forward, so the recorded ones are rank 0's, those of the first
  bn_batch_size examples of each batch; single-process ghost BN keeps the same ones.
* The logged loss and error are those of the global batch: all-reduced at the loop's host
  syncs, so V1 warm-up and divergence decisions are the same on every process. A SIGTERM on
  any process is all-reduced at the next sync; every process stops there, rank 0 writes the
  checkpoint, every process exits 75.
* Rank 0 alone writes the run's records; every process reads the checkpoint on resume.
  Evaluation runs on rank 0 alone (the others wait at a barrier): under per-GPU BN each
  process's running statistics differ until DDP's next broadcast, and rank 0's are the ones
  checkpointed and saved, so its evaluation is exactly that of the recorded model.
* Dropout (V2 Table 1's dropout shortcut) draws its masks from each process's torch generator,
  seeded alike and restored from rank 0's state on resume: resumes stay exact, but the ranks'
  masks are correlated and differ from a single process's (a stated deviation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from resnet_bench.infra.checks import refuse
from resnet_bench.train.exits import EXIT_COMPLETED, EXIT_FAILED, EXIT_PREEMPTED


@dataclass(frozen=True)
class World:
    """This process's place in the run; world_size 1 is a plain single-process run."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run's records (logs, checkpoint, provenance, summary, model.pt)."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """This process's device under torchrun: cuda:LOCAL_RANK for auto/cuda, or the CPU."""
        if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if name in ("auto", "cuda") and torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise refuse("LOCAL_RANK", self.local_rank,
                             f"< the {torch.cuda.device_count()} visible CUDA devices "
                             "(torchrun --nproc-per-node at most the number of GPUs)")
            return torch.device("cuda", self.local_rank)
        raise refuse("device", name, "auto, cuda or cpu under torchrun (process r takes "
                     "cuda:LOCAL_RANK)" if name.startswith("cuda:") or name == "mps"
                     else "auto or cpu (CUDA is not available on this machine)")


SINGLE = World()

# How long a collective may wait. The others wait at a barrier while rank 0 evaluates alone
# (a full test set, ten-crop on ImageNet), which can outlast NCCL's default of 10 minutes.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


def world_from_env() -> World:
    """The World torchrun's environment describes (SINGLE without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(rank=int(os.environ["RANK"]), world_size=size,
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def joined(world: World, device_name: str) -> Iterator[World]:
    """The process group for the length of a run (nothing for a single process)."""
    if not world.distributed:
        yield world
        return
    device = world.device(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend, device_id=device, timeout=COLLECTIVE_TIMEOUT)
    else:
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield dataclasses.replace(world, backend=backend)
    finally:
        dist.destroy_process_group()


# --- the model ----------------------------------------------------------------------------------

def bn_mode(recipe, world: World) -> str:
    """per-process, ghost or sync (one-line ConfigError for a combination that is neither)."""
    return recipe.bn_mode(world.world_size)


def convert_bn(model: torch.nn.Module, recipe, world: World,
               device: torch.device) -> torch.nn.Module:
    """The network with the BatchNorm layers the recipe's bn_batch_size asks for at this world
    size, to be trained on `device`. Before the optimizer is made: converted layers have new
    parameters."""
    mode = bn_mode(recipe, world)
    if mode == "ghost":
        from resnet_bench.models.batchnorm import GhostBatchNorm2d, convert_batchnorm
        return convert_batchnorm(model, GhostBatchNorm2d, group=recipe.bn_batch_size)
    if mode == "sync":
        if device.type == "cuda":
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        from resnet_bench.models.batchnorm import AllReduceBatchNorm2d, convert_batchnorm
        return convert_batchnorm(model, AllReduceBatchNorm2d)
    return model


def data_parallel(model: torch.nn.Module, world: World, device: torch.device):
    """What the training step calls: the model itself, or DDP around it (same parameters, so
    checkpoints and model.pt hold the bare model's state_dict, whatever the world size)."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    # DDP's default buffer sync (the old broadcast_buffers=True): rank 0's BN running
    # statistics are copied to every rank before each forward; see the module docstring.
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


# --- agreement at the loop's host syncs ------------------------------------------------------------

def reduce_steps(steps, world: World) -> None:
    """Replace the pending per-step (loss, wrong) of `steps` (a StepValues) by their global-batch
    values: mean loss over the processes (equal slices), summed wrong counts. One all-reduce."""
    if not world.distributed or not steps.pending:
        return
    values = torch.stack([torch.stack([loss.double(), wrong.double()])
                          for _, _, loss, wrong in steps.pending])
    dist.all_reduce(values)
    values[:, 0] /= world.world_size
    steps.pending = [(it, lr, v[0], v[1]) for (it, lr, _, _), v in zip(steps.pending, values)]


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True on every process if `flag` is true on any (e.g. SIGTERM arrived at one of them)."""
    if not world.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_agreed(world: World, what: str, value: int, device: torch.device) -> None:
    """Every process must have decided the same `value` (e.g. the iteration it resumes from,
    read from the checkpoint by each): a RuntimeError naming `what` otherwise."""
    if not world.distributed:
        return
    t = torch.tensor([value, -value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[0]) != -int(t[1]):
        raise RuntimeError(f"the processes disagree on {what} ({-int(t[1])}..{int(t[0])}): was "
                           "the run directory changed while they started?")


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def describe(world: World, recipe, device: torch.device, device_description) -> dict | None:
    """What provenance records of the process layout (None for a plain single-process run)."""
    mode = bn_mode(recipe, world)
    if not world.distributed and mode == "per-process" and recipe.bn_batch_size == 0:
        return None
    over = recipe.bn_batch_size or recipe.batch_size
    mine = device_description(device)
    devices = [mine]
    if world.distributed:
        devices = [None] * world.world_size
        dist.all_gather_object(devices, {"rank": world.rank, **mine})  # collective: every rank
    return {"world_size": world.world_size, "backend": world.backend,
            "batch_per_process": recipe.batch_size // world.world_size,
            "bn": {"mode": mode, "bn_batch_size": recipe.bn_batch_size,
                   "statistics_over_examples": over,
                   "running_statistics": ("rank 0's, of the first bn_batch_size examples of each "
                                          "batch" if mode in ("ghost", "per-process") and
                                          over < recipe.batch_size else "the whole batch's")},
            "rank_devices": devices}


# --- the launcher's exit status -------------------------------------------------------------------

def torchrun(argv: list[str] | None = None) -> int:
    """torchrun (torch.distributed.run, same arguments), exiting with the trainer's statuses.

    torchrun itself exits 1 however its processes ended, and with a traceback when it is sent
    SIGTERM (it forwards the signal to the processes and waits for them). Here: 0 when every
    process finished; 75 (the trainer's EXIT_PREEMPTED: run the same command again, it
    resumes) on SIGTERM, or when every failed process exited 75 (e.g. Slurm signalled the
    processes directly); 1 otherwise. Once one process has exited 75, torchrun stops the
    others with SIGTERM (SIGKILL past its timeout); one that it stopped before it could exit 75
    itself is no failure of its own: the rerun resumes from the checkpoint, so 75 is the truth.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main

    try:
        main(argv)
    except SignalException as exc:
        return EXIT_PREEMPTED if exc.sigval == signal.SIGTERM else 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = {f.exitcode for f in exc.failures.values()}
        stopped_by_torchrun = {-signal.SIGTERM, -signal.SIGKILL}
        preempted = EXIT_PREEMPTED in codes and codes <= {EXIT_PREEMPTED, *stopped_by_torchrun}
        return EXIT_PREEMPTED if preempted else EXIT_FAILED
    return EXIT_COMPLETED


if __name__ == "__main__":
    sys.exit(torchrun())
