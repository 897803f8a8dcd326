"""How one training run is started: one process, or one torchrun of several ranks (DDP).

The config decides the layout of every run (`layout`):

* `gpus_per_run: N` (N > 1): one run of N ranks, one GPU each (nccl). More GPUs than
  `gpus_per_node` (default 8) spread over `ceil(N / gpus_per_node)` nodes, the same number of
  ranks on each.
* `ranks_per_run: N` (N > 1, `device: cpu`, `gpus_per_run: 0`): one run of N CPU processes
  (gloo) on one node -- the CPU counterpart, which is how CI runs a distributed training.
* `threads_per_run`: CPU threads of each training process, so of each rank
  (`OMP_NUM_THREADS` and `--threads`); a job asks for `ranks per node x threads_per_run` CPUs.

The train rule then starts `resnet-bench launch ... -- train ARGS` instead of `resnet-bench
train ARGS` (`train_command`), and `resnet-bench launch` resolves, at run time, what cannot be
known while the DAG is built:

* one node: ``torchrun --standalone --nnodes 1 --nproc-per-node N -m resnet_bench.cli train ...``
  (outside Slurm it first claims N GPUs from the local pool, resnet_bench/infra/gpu.py, and the
  ranks inherit that claim);
* several nodes (Slurm only): ``srun --nodes M --ntasks M --ntasks-per-node 1 ...`` runs
  `resnet-bench launch --node` once per node, and that one execs ``torchrun --nnodes M
  --node-rank $SLURM_NODEID --rdzv-backend c10d --rdzv-endpoint HOST:PORT``, HOST being the
  first node of the step (`first_host` of ``$SLURM_STEP_NODELIST``) and PORT derived from the
  job id (two jobs that share a first node do not collide).

"torchrun" is `python -m resnet_bench.train.distributed`: torchrun's own code and arguments, but
it exits 75 (resume me) after a SIGTERM where torchrun exits 1. Every step execs the next (no
wrapper process stays behind), so a SIGTERM from Slurm reaches torchrun and the ranks directly,
and the job's exit status is the trainer's.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from resnet_bench.infra import checks

DEFAULT_GPUS_PER_NODE = 8
RDZV_PORT_BASE, RDZV_PORT_SPAN = 20000, 20000


class LaunchError(ValueError):
    """A config or environment a distributed run cannot be started from (one line)."""


# --------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class RunLayout:
    """Where the ranks of one run go. A single-process run is world_size 1."""

    world_size: int
    nodes: int
    gpus_per_rank: int          # 0 (device: cpu; CPU ranks, gloo) or 1 (one GPU per rank, nccl)
    threads_per_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def ranks_per_node(self) -> int:
        return self.world_size // self.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.ranks_per_node * self.gpus_per_rank

    @property
    def threads_per_node(self) -> int:
        """CPUs a node of the job needs: the `threads:` of the train rule."""
        return self.ranks_per_node * self.threads_per_rank


def layout(config: Mapping[str, Any]) -> RunLayout:
    """The layout of every run of `config`; contradictions refused in one line."""
    gpus = config.get("gpus_per_run", 0)
    ranks = config.get("ranks_per_run", 1)
    per_node = config.get("gpus_per_node", DEFAULT_GPUS_PER_NODE)
    pack = config.get("runs_per_gpu", 1)
    device = config.get("device", "auto")
    threads = config.get("threads_per_run", 1)
    if ranks > 1 and gpus > 0:
        raise LaunchError(f"config key ranks_per_run: got {ranks} with gpus_per_run: {gpus}; a GPU "
                          f"run has one rank per GPU: set gpus_per_run: N alone (ranks_per_run "
                          f"is for CPU runs)")
    if ranks > 1 and device != "cpu":
        raise LaunchError(f"config key ranks_per_run: got {ranks} with device: {device}; allowed: "
                          f"device: cpu (gloo); GPU runs of several ranks: gpus_per_run: N")
    if gpus > 1 and device == "cpu":
        raise LaunchError(f"config key gpus_per_run: got {gpus} with device: cpu; CPU runs of "
                          f"several processes: ranks_per_run: N")
    world = gpus if gpus > 1 else ranks
    if pack > 1 and world > 1:
        raise LaunchError(f"config key runs_per_gpu: got {pack} with a run of {world} ranks "
                          f"({'gpus' if gpus > 1 else 'ranks'}_per_run: {world}); allowed: "
                          f"runs_per_gpu: 1 (several runs share one GPU, or one run uses several)")
    nodes = math.ceil(gpus / per_node) if gpus > 1 else 1
    if world % nodes:
        raise LaunchError(f"config key gpus_per_run: got {gpus} on {nodes} nodes of gpus_per_node: "
                          f"{per_node}; allowed: a multiple of {nodes} (every node runs the same "
                          f"number of ranks)")
    # One GPU per rank of a GPU run; a single-process run gets one unless it is told to use
    # the CPU (device: auto takes the GPU when there is one).
    gpu = gpus >= 1 if world > 1 else device != "cpu"
    return RunLayout(world_size=world, nodes=nodes, gpus_per_rank=int(gpu),
                     threads_per_rank=threads)


def train_command(config: Mapping[str, Any]) -> str:
    """The head of the train rule's command: `resnet-bench train`, or its launcher."""
    lay = layout(config)
    if not lay.distributed:
        return "resnet-bench train"
    return (f"resnet-bench launch --nproc-per-node {lay.ranks_per_node} --nnodes {lay.nodes} "
            f"--threads-per-rank {lay.threads_per_rank}"
            + (" --gpus" if lay.gpus_per_rank else "") + " -- train")


def threads_arg(config: Mapping[str, Any]) -> str:
    """`--threads` of each training process: the job's `{threads}` for a single process (as
    before), the per-rank count for a distributed run (the job's threads are all its ranks')."""
    lay = layout(config)
    return str(lay.threads_per_rank) if lay.distributed else "{threads}"


# --------------------------------------------------------------------------- Slurm nodes


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list ("gpu[01-03,07],login5", "r[1-2]-n[1,3]") as host names,
    in Slurm's order (what `scontrol show hostnames` prints)."""
    text = text.strip()
    if not text:
        raise LaunchError("empty Slurm node list")
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth < 0 or depth > 1:
            raise LaunchError(f"Slurm node list {text!r}: unbalanced brackets")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise LaunchError(f"Slurm node list {text!r}: unbalanced brackets")
    parts.append(text[start:])
    hosts: list[str] = []
    for part in parts:
        hosts += _expand_one(part, text)
    return hosts


def _expand_one(part: str, whole: str) -> list[str]:
    m = re.match(r"^([^\[\]]*)\[([^\[\]]+)\](.*)$", part)
    if not m:
        if not part or "[" in part or "]" in part:
            raise LaunchError(f"Slurm node list {whole!r}: bad entry {part!r}")
        return [part]
    prefix, ranges, rest = m.groups()
    tails = _expand_one(rest, whole) if rest else [""]
    out = []
    for r in ranges.split(","):
        lo, sep, hi = r.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise LaunchError(f"Slurm node list {whole!r}: bad range {r!r}")
        width = len(lo)
        for n in range(int(lo), int(hi if sep else lo) + 1):
            out += [f"{prefix}{n:0{width}d}{t}" for t in tails]
    return out


def first_host(nodelist: str) -> str:
    return expand_hostlist(nodelist)[0]


def rendezvous_port(job_id: str) -> int:
    return RDZV_PORT_BASE + int(job_id) % RDZV_PORT_SPAN


# --------------------------------------------------------------------------- commands


def _torchrun(python: str) -> list[str]:
    # torchrun (torch.distributed.run, same arguments, this interpreter) that exits with the
    # trainer's status: 75 after SIGTERM, where torchrun itself exits 1 (train.distributed).
    return [python, "-m", "resnet_bench.train.distributed"]


def _entry(train_args: list[str]) -> list[str]:
    return ["-m", "resnet_bench.cli", *train_args]


def standalone_command(nproc: int, train_args: list[str], python: str = sys.executable) -> list[str]:
    """One node: torchrun's own local rendezvous on a free port."""
    return [*_torchrun(python), "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
            *_entry(train_args)]


def srun_command(nnodes: int, nproc: int, threads: int, gpus: bool, train_args: list[str],
                 python: str = sys.executable) -> list[str]:
    """Several nodes: one task per node, each runs `launch --node` (its node rank is only
    known there). --overlap: the command runs inside the job step of the Snakemake that started
    it (slurm-jobstep's `srun -n1`), which holds this node's CPUs."""
    return ["srun", "--overlap", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1",
            f"--cpus-per-task={nproc * threads}", "--kill-on-bad-exit=1",
            python, "-m", "resnet_bench.cli", "launch", "--node", "--nnodes", str(nnodes),
            "--nproc-per-node", str(nproc), "--threads-per-rank", str(threads),
            *(["--gpus"] if gpus else []), "--", *train_args]


def node_command(env: Mapping[str, str], nnodes: int, nproc: int, train_args: list[str],
                 python: str = sys.executable) -> list[str]:
    """This node's torchrun in a multi-node run, from the Slurm step's environment."""
    missing = [k for k in ("SLURM_JOB_ID", "SLURM_NODEID") if not env.get(k)]
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if missing or not nodelist:
        raise LaunchError("launch --node runs on each node of a Slurm step (srun); missing "
                          + ", ".join(missing + ([] if nodelist else ["SLURM_STEP_NODELIST"])))
    step_nodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES")
    if step_nodes and int(step_nodes) != nnodes:
        raise LaunchError(f"--nnodes {nnodes} but the Slurm step has {step_nodes} node(s) "
                          f"({nodelist}); is the job's `nodes` resource the config's?")
    job_id = env["SLURM_JOB_ID"]
    return [*_torchrun(python), "--nnodes", str(nnodes), "--node-rank", env["SLURM_NODEID"],
            "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"{first_host(nodelist)}:{rendezvous_port(job_id)}",
            "--rdzv-id", f"resnet-bench-{job_id}", *_entry(train_args)]


def _slurm_env_for_srun(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for a nested srun: the job's identity, not the enclosing step's task
    geometry (SLURM_NTASKS=1 etc. would be srun's defaults), as slurm-jobstep does."""
    keep = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_DIR",
            "SLURM_SUBMIT_HOST", "SLURM_CONF"}
    return {k: v for k, v in env.items()
            if not (k.startswith(("SLURM_", "SRUN_", "SBATCH_")) and k not in keep)}


def plan(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command to exec and its environment (GPU claims are made by `run`)."""
    train_args = list(args.cmd)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    if train_args[:1] != ["train"]:
        raise LaunchError("launch starts a training: resnet-bench launch [options] -- train ARGS")
    checks.integer("--nproc-per-node", args.nproc_per_node, 1, 4096)
    checks.integer("--nnodes", args.nnodes, 1, 4096)
    threads = checks.integer("--threads-per-rank", args.threads_per_rank, 1, 4096)
    child = dict(env)
    # torchrun sets OMP_NUM_THREADS=1 when unset; a rank's intra-op threads are its own.
    child["OMP_NUM_THREADS"] = str(threads)
    if not args.gpus:
        child["RESNET_BENCH_GPU_IDS"] = "none"  # CPU ranks claim no GPU slot
    if args.node:
        return node_command(env, args.nnodes, args.nproc_per_node, train_args), child
    rendezvous = args.rendezvous
    if rendezvous == "auto":
        rendezvous = "slurm" if args.nnodes > 1 else "standalone"
    if rendezvous == "standalone":
        if args.nnodes > 1:
            raise LaunchError(f"--nnodes {args.nnodes}: a standalone rendezvous is one node")
        return standalone_command(args.nproc_per_node, train_args), child
    if not env.get("SLURM_JOB_ID"):
        raise LaunchError(f"--nnodes {args.nnodes}: runs on several nodes start under Slurm only "
                          "(SLURM_JOB_ID is not set)")
    return (srun_command(args.nnodes, args.nproc_per_node, threads, args.gpus, train_args),
            _slurm_env_for_srun(child))


# --------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "resnet-bench launch [options] -- train ARGS..."
    parser.epilog = ("Starts one distributed training through torchrun (see "
                     "resnet_bench/pipeline/launch.py): on one node with a standalone rendezvous, "
                     "on several Slurm nodes with one srun task per node and a c10d rendezvous on "
                     "the first. The train rule uses it when gpus_per_run or ranks_per_run > 1.")
    parser.add_argument("--nproc-per-node", type=int, required=True, help="ranks on each node")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes of the run (default 1)")
    parser.add_argument("--threads-per-rank", type=int, default=1,
                        help="CPU threads of each rank (OMP_NUM_THREADS; default 1)")
    parser.add_argument("--gpus", action="store_true",
                        help="one GPU per rank: outside Slurm, claim them from the local pool")
    parser.add_argument("--rendezvous", choices=("auto", "standalone", "slurm"), default="auto",
                        help="standalone (one node) or slurm (srun, one task per node, c10d on "
                             "the first node); auto: slurm when --nnodes > 1")
    parser.add_argument("--node", action="store_true",
                        help="(internal) this is one node's task of a multi-node srun")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- train ARGS...")


def run(args: argparse.Namespace) -> int:
    cmd, env = plan(args, os.environ)
    from resnet_bench.infra.gpu import claim_gpu, describe, exec_holding
    claim = None
    if args.gpus and not args.node and not os.environ.get("SLURM_JOB_ID"):
        claim = claim_gpu(count=args.nproc_per_node)  # torchrun and its ranks inherit the locks
        if claim is not None:
            env.update(claim.env())
            print(f"resnet-bench launch: {describe(claim)}", file=sys.stderr, flush=True)
    print(f"resnet-bench launch: {' '.join(cmd)}", file=sys.stderr, flush=True)
    return exec_holding(claim, cmd, env, "resnet-bench launch")
