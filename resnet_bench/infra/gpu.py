"""Which GPU does this training process get?  A lock-file slot pool.

Snakemake's local executor only *counts* ``--resources gpu=N``; it never tells a job which
device to use (snakemake#281), so every job would land on ``cuda:0``.  Here each training
process that may use a GPU (any ``--device`` but ``cpu``), before CUDA is initialised, takes a
non-blocking ``fcntl.flock`` on one lock file of a pool --
``<lockdir>/gpu{id}.slot{k}.lock``, ``k`` slots per GPU -- sets
``CUDA_VISIBLE_DEVICES={id}`` and keeps the file descriptor open until it exits.  The kernel drops
the lock when the process dies, however it dies (crash, SIGKILL, OOM killer), so a slot never
goes stale and there is nothing to clean up.

The pool, first match wins:

1. ``RESNET_BENCH_GPU_IDS`` ("0,1,2"; ids are kept as strings, so UUIDs work too; "" or "none"
   means no GPU).  Tests use it to fake GPUs on a CPU-only machine.
2. The parent's ``CUDA_VISIBLE_DEVICES`` (the user already restricted the devices).
3. ``nvidia-smi -L``: one id per listed GPU, ``0..n-1``.
4. Nothing: CPU, and claiming is a no-op.

Under Slurm (``SLURM_JOB_ID`` set) nothing is claimed: Slurm's gres plugin has already exported
the job's devices in ``CUDA_VISIBLE_DEVICES``.  A process started by ``gpu-run`` (or a subprocess
of a claiming process) finds ``RESNET_BENCH_GPU_CLAIM`` in its environment and reuses the
parent's claim instead of locking a second slot.

Lock directory: ``RESNET_BENCH_GPU_LOCK_DIR``, default ``/tmp/resnet-bench-gpu-locks-<uid>``.
Not ``.snakemake/``: GPUs belong to the host, not to a working directory, so two pipelines (two
checkouts, a test run beside a real run) on one host must draw from the same pool; and a
working directory may sit on NFS, where ``flock`` is emulated with byte-range locks that are
shared between hosts, which would make GPU 0 on one node block GPU 0 on another.  ``/tmp`` is
host-local.  It is literally ``/tmp``, not ``$TMPDIR``, because Snakemake may give each job its
own ``TMPDIR``.  The uid suffix keeps users apart (a private 0700 directory in a world-writable
``/tmp``); users who share GPUs set a common ``RESNET_BENCH_GPU_LOCK_DIR``.

A distributed run of N ranks on one host (resnet_bench/pipeline/launch.py) claims N whole GPUs
at once (``claim_gpu(count=N)``: slot 0 of N different GPUs, all or none, so two such runs can
never deadlock holding half each) and its ranks inherit the claim: ``CUDA_VISIBLE_DEVICES``
lists the N ids, and rank i uses ``cuda:<local rank>``.

Slots per GPU: ``RESNET_BENCH_GPU_SLOTS`` (default 1) -- k > 1 runs up to k small nets per GPU.
Slots are tried slot-major (slot 0 of every GPU before slot 1 of any), so work spreads over the
GPUs first.  Match ``snakemake --resources gpu=N`` to ``len(pool) * k`` and a job never waits;
if it does find every slot taken it waits (``RESNET_BENCH_GPU_WAIT_S``, default 600 s) with a
message, then fails, rather than doubling up on a device.

All processes must name a GPU the same way (all indices, or all UUIDs) and use the same
``CUDA_DEVICE_ORDER`` for the locks to mean the same device.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

ENV_IDS = "RESNET_BENCH_GPU_IDS"
ENV_SLOTS = "RESNET_BENCH_GPU_SLOTS"
ENV_LOCK_DIR = "RESNET_BENCH_GPU_LOCK_DIR"
ENV_WAIT = "RESNET_BENCH_GPU_WAIT_S"
ENV_CLAIM = "RESNET_BENCH_GPU_CLAIM"  # set for children of a claiming process (JSON)

DEFAULT_WAIT_S = 600.0
_POLL_S = 0.25


class GpuBusyError(RuntimeError):
    """Every slot of the pool stayed taken for the whole wait."""


@dataclass
class GpuClaim:
    """One process's GPU: which device, from which pool, and why (for provenance.json).

    ``source`` says why: ``lock`` (a slot was locked here), ``inherited`` (a parent process
    holds the slot), ``slurm`` (Slurm's gres assigned the device; nothing locked).  ``gpu`` is
    the ``CUDA_VISIBLE_DEVICES`` value: one id, or several ("0,1") for a multi-GPU claim, whose
    lock files are all in ``lock_paths`` (``lock_path`` is the first).
    """

    gpu: str | None
    source: str
    slot: int | None = None
    pool: list[str] = field(default_factory=list)
    pool_source: str | None = None
    lock_path: str | None = None
    waited_s: float = 0.0
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    lock_paths: list[str] = field(default_factory=list)
    _fds: list[int] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.lock_path and not self.lock_paths:
            self.lock_paths = [self.lock_path]

    @property
    def held(self) -> bool:
        """True while this object itself holds the slot's lock(s)."""
        return bool(self._fds)

    @property
    def fd(self) -> int | None:
        return self._fds[0] if self._fds else None

    @property
    def fds(self) -> list[int]:
        return list(self._fds)

    def env(self) -> dict[str, str]:
        """Environment a child process needs: its device and the claim it inherits."""
        if self.gpu is None:
            return {}
        return {"CUDA_VISIBLE_DEVICES": self.gpu, ENV_CLAIM: json.dumps(self.as_dict())}

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("_fds")
        return d

    def release(self) -> None:
        """Give the slot(s) back (also happens when the process exits)."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    def __enter__(self) -> GpuClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # an unreferenced claim must not keep a GPU busy
        try:
            self.release()
        except Exception:
            pass


def provenance(claim: GpuClaim | None) -> dict:
    """A JSON-ready record of the assignment, also for the no-GPU case."""
    if claim is None:
        return {"gpu": None, "source": "none"}
    return claim.as_dict()


# --------------------------------------------------------------------------- the pool


def _split_ids(text: str) -> list[str]:
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if ids in (["none"], ["-1"]):  # CUDA_VISIBLE_DEVICES=-1 is the usual "hide all GPUs"
        return []
    return ids


def _nvidia_smi_count() -> int:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    # "GPU 0: NVIDIA H100 (UUID: GPU-...)"; MIG devices are indented "  MIG 1g.10gb Device 0: ..."
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def discover_pool(env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The GPU ids this host offers and where that came from (see the module docstring)."""
    env = os.environ if env is None else env
    if ENV_IDS in env:
        return _split_ids(env[ENV_IDS]), ENV_IDS
    if "CUDA_VISIBLE_DEVICES" in env:
        return _split_ids(env["CUDA_VISIBLE_DEVICES"]), "CUDA_VISIBLE_DEVICES"
    n = _nvidia_smi_count()
    if n:
        return [str(i) for i in range(n)], "nvidia-smi"
    return [], "none"


def default_lock_dir() -> str:
    return os.environ.get(ENV_LOCK_DIR) or f"/tmp/resnet-bench-gpu-locks-{os.getuid()}"


def _prepare_lock_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid():
        # Someone else's directory (or a symlink) in a shared /tmp: do not trust it.
        if ENV_LOCK_DIR not in os.environ:
            raise RuntimeError(
                f"GPU lock dir {path} is not a directory owned by uid {os.getuid()}; "
                f"set {ENV_LOCK_DIR} to a directory you own"
            )


def _lock_name(gpu: str, slot: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", gpu)
    return f"gpu{safe}.slot{slot}.lock"


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on `path`, or None if another open file holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _note_holder(fd: int) -> None:
    """Write who holds the slot into the lock file (only for humans debugging a busy pool)."""
    text = f"pid={os.getpid()} host={socket.gethostname()} since={time.time():.3f} argv={sys.argv!r}\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:
        pass


def _inherited_claim() -> GpuClaim | None:
    """The parent's claim, if the environment carries one that is still held by someone."""
    raw = os.environ.get(ENV_CLAIM)
    if not raw:
        return None
    try:
        parent = json.loads(raw)
        gpu, lock_path = parent.get("gpu"), parent.get("lock_path")
        lock_paths = list(parent.get("lock_paths") or ([lock_path] if lock_path else []))
    except (ValueError, AttributeError, TypeError):
        return None
    if gpu is None or os.environ.get("CUDA_VISIBLE_DEVICES") != gpu:
        return None
    for path in lock_paths:
        # A marker left behind by a process that is gone is stale: if we can lock its slot,
        # nobody holds it any more.  Probe and let go; the caller then claims normally.
        try:
            fd = _try_lock(path)
        except OSError:
            fd = None
        if fd is not None:
            os.close(fd)
            return None
    return GpuClaim(
        gpu=gpu,
        source="inherited",
        slot=parent.get("slot"),
        pool=list(parent.get("pool") or []),
        pool_source=parent.get("pool_source"),
        lock_path=lock_path,
        lock_paths=lock_paths,
    )


def claim_gpu(
    *,
    count: int = 1,
    slots_per_gpu: int | None = None,
    timeout: float | None = None,
    lock_dir: str | None = None,
    pool: list[str] | None = None,
    quiet: bool = False,
) -> GpuClaim | None:
    """Take one free GPU slot.  Does not touch ``os.environ``; see `claim_for_this_process`.

    Returns None when there is no GPU to claim (empty pool: CPU), and a claim that holds no
    lock under Slurm (``source="slurm"``, the device Slurm exported) or when a parent process
    already holds the slot (``source="inherited"``).  Keep the returned object alive for as long
    as the GPU is in use: the slot is free again on `GpuClaim.release`, on garbage collection of
    the claim, or when the process exits.  Raises `GpuBusyError` if every slot stays taken for
    `timeout` seconds (default ``RESNET_BENCH_GPU_WAIT_S`` or 600).

    ``count`` > 1 claims that many whole GPUs together (slot 0 of each; all or none, see the
    module docstring); it needs one slot per GPU and a pool of at least ``count`` GPUs.
    """
    given = assigned_gpus()
    if given is not None or os.environ.get("SLURM_JOB_ID"):
        return given

    pool_source = "argument"
    if pool is None:
        pool, pool_source = discover_pool()
    if not pool:
        return None

    k = slots_per_gpu if slots_per_gpu is not None else int(os.environ.get(ENV_SLOTS) or 1)
    if k < 1:
        raise ValueError(f"slots per GPU must be >= 1, got {k}")
    if count < 1:
        raise ValueError(f"GPUs per claim must be >= 1, got {count}")
    if count > 1 and k > 1:
        raise ValueError(f"a claim of {count} GPUs takes whole GPUs; got {k} slots per GPU "
                         f"(${ENV_SLOTS}, runs_per_gpu); allowed: 1")
    if count > len(pool):
        raise ValueError(f"a claim of {count} GPUs: the pool has {len(pool)} "
                         f"({','.join(pool)} from {pool_source})")
    if timeout is None:
        timeout = float(os.environ.get(ENV_WAIT) or DEFAULT_WAIT_S)
    lock_dir = lock_dir or default_lock_dir()
    _prepare_lock_dir(lock_dir)

    candidates = [(gpu, slot) for slot in range(k) for gpu in pool]  # slot-major: spread first
    start = time.monotonic()
    announced = False
    while True:
        taken: list[tuple[str, int, str, int]] = []  # (gpu, slot, lock path, fd)
        for gpu, slot in candidates:
            path = os.path.join(lock_dir, _lock_name(gpu, slot))
            fd = _try_lock(path)
            if fd is not None:
                taken.append((gpu, slot, path, fd))
                if len(taken) == count:
                    break
        if len(taken) == count:
            for *_, fd in taken:
                _note_holder(fd)
            return GpuClaim(
                gpu=",".join(t[0] for t in taken),
                source="lock",
                slot=taken[0][1],
                pool=list(pool),
                pool_source=pool_source,
                lock_path=taken[0][2],
                lock_paths=[t[2] for t in taken],
                waited_s=round(time.monotonic() - start, 3),
                _fds=[t[3] for t in taken],
            )
        for *_, fd in taken:  # all or none: never sit on part of a multi-GPU claim
            os.close(fd)
        waited = time.monotonic() - start
        if waited >= timeout:
            wanted = "no free GPU slot" if count == 1 else f"not {count} free GPUs at once"
            raise GpuBusyError(
                f"{wanted} after {waited:.0f} s: {'all' if count == 1 else 'too many of the'} "
                f"{len(candidates)} slots "
                f"({len(pool)} GPU(s) {','.join(pool)} from {pool_source} x {k} slot(s)) are "
                f"held in {lock_dir}; is snakemake's --resources gpu=N larger than the pool?"
            )
        if not announced and not quiet:
            print(
                "resnet-bench gpu: "
                + (f"all {len(candidates)} GPU slots busy " if count == 1 else
                   f"fewer than {count} of {len(candidates)} GPUs free ") +
                f"(pool {','.join(pool)} from {pool_source}, {k} slot(s) per GPU, locks in "
                f"{lock_dir}); waiting up to {timeout:.0f} s.  This should not happen when "
                f"snakemake's --resources gpu=N matches the pool.",
                file=sys.stderr,
                flush=True,
            )
            announced = True
        time.sleep(min(_POLL_S, max(0.0, timeout - waited)))


def assigned_gpus() -> GpuClaim | None:
    """The GPUs this process was given without claiming any: Slurm's gres, or the claim of a
    parent (`resnet-bench launch` for the ranks of a distributed run). Never locks; for the
    provenance of processes that must not claim (torchrun's ranks)."""
    if os.environ.get("SLURM_JOB_ID"):
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None
        return None if gpu is None else GpuClaim(gpu=gpu, source="slurm", pool=_split_ids(gpu),
                                                 pool_source="slurm gres")
    return _inherited_claim()


_PROCESS_CLAIM: list[GpuClaim | None] = []  # one entry once claim_for_this_process has run


def claim_for_this_process(**kwargs) -> GpuClaim | None:
    """Claim a GPU for the rest of this process's life and point CUDA at it.

    Call it before anything initialises CUDA (best: before ``import torch``).  Sets
    ``CUDA_VISIBLE_DEVICES`` to the claimed id, so the training code uses ``cuda:0``, and
    ``RESNET_BENCH_GPU_CLAIM`` so that subprocesses reuse the claim.  Idempotent: a second
    call returns the first call's claim.  Keyword arguments go to `claim_gpu`.
    """
    if _PROCESS_CLAIM:
        return _PROCESS_CLAIM[0]
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.cuda, "is_initialized", lambda: False)():
        raise RuntimeError(
            "claim_for_this_process() called after CUDA was initialised; "
            "CUDA_VISIBLE_DEVICES can no longer take effect (call it before using torch.cuda)"
        )
    claim = claim_gpu(**kwargs)
    if claim is not None and claim.source == "lock":
        os.environ.update(claim.env())
    _PROCESS_CLAIM.append(claim)  # module reference keeps the fd (and the lock) alive
    return claim


# --------------------------------------------------------------------------- gpu-run CLI
#
# gpu-run execs the command in its own process instead of spawning a child and forwarding
# signals.  Tried both under Slurm (.ci/slurm/README.md): a forwarding wrapper makes the command
# receive SIGTERM twice whenever the whole process tree is signalled (an srun step on
# `scancel --signal=TERM`, `scancel --full`, a killpg), and a second SIGTERM re-enters a Python
# handler in the middle of its checkpoint write.  With exec, SIGTERM/SIGINT reach the command
# directly, its exit status (or death by signal) is the job's, and the lock fd, made inheritable,
# is held by the command itself: the slot is free exactly when the command (and any forked
# child still holding the fd) is gone.


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "resnet-bench gpu-run [options] -- CMD [ARGS...]"
    parser.epilog = (
        "Claims a free GPU slot (see resnet_bench/infra/gpu.py) and execs CMD with CUDA_VISIBLE_DEVICES "
        "set to it, holding the slot until CMD exits; signals and the exit status are CMD's own.  "
        "Under Slurm, or without GPUs, CMD runs with the environment unchanged."
    )
    parser.add_argument("--slots-per-gpu", type=int, default=None,
                        help=f"processes per GPU (default ${ENV_SLOTS} or 1)")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds to wait for a free slot (default ${ENV_WAIT} or {DEFAULT_WAIT_S:.0f})")
    parser.add_argument("--lock-dir", default=None,
                        help=f"lock directory (default ${ENV_LOCK_DIR} or /tmp/resnet-bench-gpu-locks-<uid>)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log the assignment")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to run, after --")


def describe(claim: GpuClaim | None) -> str:
    """One line for logs: which GPU and why."""
    if claim is None:
        return "no GPU (CPU)"
    what = f"GPU {claim.gpu} ({claim.source}"
    if claim.slot is not None:
        what += f", slot {claim.slot} of pool {','.join(claim.pool)} from {claim.pool_source}"
    return what + ")"


def run(args: argparse.Namespace) -> int:
    """Claim, then exec the command; returns only if the command cannot be started."""
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ValueError("gpu-run needs a command: resnet-bench gpu-run -- CMD [ARGS...]")
    claim = claim_gpu(slots_per_gpu=args.slots_per_gpu, timeout=args.timeout,
                      lock_dir=args.lock_dir, quiet=args.quiet)
    env = dict(os.environ)
    if claim is not None and claim.source == "lock":
        env.update(claim.env())
    if not args.quiet:
        print(f"resnet-bench gpu-run: {describe(claim)}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    return exec_holding(claim, cmd, env, "resnet-bench gpu-run")


def exec_holding(claim: GpuClaim | None, cmd: list[str], env: dict[str, str], who: str) -> int:
    """Replace this process by `cmd`, which inherits the claim's locks (and so holds its GPUs
    until it exits); returns an exit status, having released the claim, only if exec failed."""
    for fd in claim.fds if claim is not None else ():
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        print(f"{who}: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"{who}: not executable: {cmd[0]}", file=sys.stderr)
        return 126
    finally:  # only reached when exec failed
        if claim is not None:
            claim.release()
    return 1  # unreachable: execvpe either replaces the process or raises
