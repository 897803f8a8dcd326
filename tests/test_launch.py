"""Distributed runs in the pipeline (resnet_bench/pipeline/launch.py): the run layout a config
declares and its refusals, the torchrun / srun commands `resnet-bench launch` builds for one
node and for several Slurm nodes (a fake Slurm environment), the job's resources, the GPU
pool's all-or-none claim of several GPUs, and the train rule's command in a dry run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_bench.infra import gpu
from resnet_bench.pipeline import launch as L
from resnet_bench.pipeline import resources as R
from resnet_bench.train.recipe import Recipe

from pipeline_helpers import resource_defaults, workflow_copy

RES = resource_defaults()

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TRAIN = ["train", "--model", "v1-basic-8", "--out", "RUN"]


def cfg(**kw):
    return {"device": "auto", "gpus_per_run": 0, "ranks_per_run": 1, "gpus_per_node": 8,
            "runs_per_gpu": 1, "threads_per_run": 1, **kw}


# --------------------------------------------------------------------------- layout


def test_single_process_layouts_are_unchanged():
    for c in (cfg(), cfg(gpus_per_run=1), cfg(runs_per_gpu=4, gpus_per_run=1)):
        lay = L.layout(c)
        assert (lay.world_size, lay.nodes, lay.distributed) == (1, 1, False)
        assert L.train_command(c) == "resnet-bench train"
        assert L.threads_arg(c) == "{threads}"  # the rule's {threads}, as before


def test_gpu_runs_fill_nodes_and_spread_evenly():
    lay = L.layout(cfg(gpus_per_run=4, threads_per_run=3))
    assert (lay.world_size, lay.nodes, lay.ranks_per_node, lay.gpus_per_node) == (4, 1, 4, 4)
    assert lay.threads_per_node == 12
    lay = L.layout(cfg(gpus_per_run=16, gpus_per_node=8))
    assert (lay.nodes, lay.ranks_per_node, lay.gpus_per_node) == (2, 8, 8)
    lay = L.layout(cfg(gpus_per_run=12, gpus_per_node=8))  # 2 nodes of 6
    assert (lay.nodes, lay.ranks_per_node) == (2, 6)
    assert L.train_command(cfg(gpus_per_run=16, gpus_per_node=8, threads_per_run=2)) == (
        "resnet-bench launch --nproc-per-node 8 --nnodes 2 --threads-per-rank 2 --gpus -- train")
    assert L.threads_arg(cfg(gpus_per_run=2, threads_per_run=5)) == "5"


def test_cpu_ranks_are_one_node_without_gpus():
    c = cfg(device="cpu", ranks_per_run=2)
    lay = L.layout(c)
    assert (lay.world_size, lay.nodes, lay.gpus_per_rank, lay.threads_per_node) == (2, 1, 0, 2)
    assert L.train_command(c) == ("resnet-bench launch --nproc-per-node 2 --nnodes 1 "
                                  "--threads-per-rank 1 -- train")


@pytest.mark.parametrize("kw, needle", [
    (dict(ranks_per_run=2, gpus_per_run=1, device="cpu"), "ranks_per_run: got 2 with gpus_per_run: 1"),
    (dict(ranks_per_run=2), "ranks_per_run: got 2 with device: auto"),
    (dict(gpus_per_run=2, device="cpu"), "gpus_per_run: got 2 with device: cpu"),
    (dict(gpus_per_run=2, runs_per_gpu=2), "runs_per_gpu: got 2 with a run of 2 ranks"),
    (dict(ranks_per_run=2, device="cpu", runs_per_gpu=2), "runs_per_gpu: got 2"),
    (dict(gpus_per_run=9, gpus_per_node=8), "gpus_per_run: got 9 on 2 nodes"),
])
def test_contradictions_are_refused_in_one_line(kw, needle):
    with pytest.raises(L.LaunchError, match=needle) as exc:
        L.layout(cfg(**kw))
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- Slurm node lists


@pytest.mark.parametrize("text, hosts", [
    ("node7", ["node7"]),
    ("gpu[01-03,07],login5", ["gpu01", "gpu02", "gpu03", "gpu07", "login5"]),
    ("r[1-2]-n[1,3]", ["r1-n1", "r1-n3", "r2-n1", "r2-n3"]),
    ("a[8-10]", ["a8", "a9", "a10"]),
    ("c[009-011]", ["c009", "c010", "c011"]),
    ("localhost", ["localhost"]),
])
def test_hostlists_expand_like_scontrol(text, hosts):
    assert L.expand_hostlist(text) == hosts
    assert L.first_host(text) == hosts[0]


@pytest.mark.parametrize("text", ["", "gpu[01-03", "gpu]1[", "gpu[a-b]", "gpu[[1]]"])
def test_bad_hostlists_are_refused(text):
    with pytest.raises(L.LaunchError, match="node list"):
        L.expand_hostlist(text)


# --------------------------------------------------------------------------- commands


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    L.configure(parser)
    return parser.parse_args(list(argv))


def test_one_node_is_a_standalone_torchrun():
    cmd, env = L.plan(args("--nproc-per-node", "2", "--threads-per-rank", "3", "--", *TRAIN),
                      {"PATH": "/bin"})
    assert cmd == [PY, "-m", "resnet_bench.train.distributed", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", "2", "-m", "resnet_bench.cli", *TRAIN]
    assert env["OMP_NUM_THREADS"] == "3" and env["RESNET_BENCH_GPU_IDS"] == "none"
    # Under Slurm, one node is still standalone (no srun, no rendezvous host).
    cmd, env = L.plan(args("--nproc-per-node", "4", "--gpus", "--", *TRAIN),
                      {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert "--standalone" in cmd and "RESNET_BENCH_GPU_IDS" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


SLURM_STEP = {  # what slurm-jobstep's `srun -n1` step of a 2-node job sees
    "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NNODES": "1", "SLURM_NTASKS": "1", "SLURM_CPUS_PER_TASK": "32", "SLURM_STEP_ID": "0",
    "SLURM_CONF": "/etc/slurm/slurm.conf", "SRUN_DEBUG": "3", "PATH": "/bin", "HOME": "/h",
}


def test_several_nodes_are_one_srun_task_per_node():
    cmd, env = L.plan(args("--nproc-per-node", "8", "--nnodes", "2", "--threads-per-rank", "4",
                           "--gpus", "--", *TRAIN), SLURM_STEP)
    assert cmd == ["srun", "--overlap", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                   "--cpus-per-task=32", "--kill-on-bad-exit=1", PY, "-m", "resnet_bench.cli",
                   "launch", "--node", "--nnodes", "2", "--nproc-per-node", "8",
                   "--threads-per-rank", "4", "--gpus", "--", *TRAIN]
    # The enclosing step's task geometry must not become the nested srun's defaults.
    assert {k for k in env if k.startswith(("SLURM_", "SRUN_"))} == {"SLURM_JOB_ID", "SLURM_CONF"}
    assert env["OMP_NUM_THREADS"] == "4" and env["HOME"] == "/h"


def test_each_node_runs_torchrun_with_its_rank_and_the_first_host():
    node1 = {"SLURM_JOB_ID": "4242", "SLURM_NODEID": "1", "SLURM_STEP_NODELIST": "gpu[07-08]",
             "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_STEP_NUM_NODES": "2", "SLURM_PROCID": "1"}
    cmd, _ = L.plan(args("--node", "--nproc-per-node", "8", "--nnodes", "2", "--gpus", "--",
                         *TRAIN), node1)
    port = L.RDZV_PORT_BASE + 4242
    assert cmd == [PY, "-m", "resnet_bench.train.distributed", "--nnodes", "2", "--node-rank", "1",
                   "--nproc-per-node", "8", "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", f"gpu07:{port}", "--rdzv-id", "resnet-bench-4242",
                   "-m", "resnet_bench.cli", *TRAIN]
    with pytest.raises(L.LaunchError, match="--nnodes 3 but the Slurm step has 2"):
        L.plan(args("--node", "--nproc-per-node", "8", "--nnodes", "3", "--", *TRAIN), node1)
    with pytest.raises(L.LaunchError, match="missing SLURM_JOB_ID, SLURM_NODEID"):
        L.plan(args("--node", "--nproc-per-node", "8", "--nnodes", "2", "--", *TRAIN), {})


@pytest.mark.parametrize("argv, env, needle", [
    (["--nproc-per-node", "2", "--nnodes", "2", "--", *TRAIN], {}, "under Slurm only"),
    (["--nproc-per-node", "2", "--nnodes", "2", "--rendezvous", "standalone", "--", *TRAIN],
     SLURM_STEP, "standalone rendezvous is one node"),
    (["--nproc-per-node", "2", "--", "models"], {}, "launch starts a training"),
    (["--nproc-per-node", "0", "--", *TRAIN], {}, "--nproc-per-node: got 0"),
])
def test_bad_launches_are_refused(argv, env, needle):
    with pytest.raises(ValueError, match=needle):
        L.plan(args(*argv), env)


def test_launch_cli_refuses_in_one_line():
    r = subprocess.run([PY, "-m", "resnet_bench.cli", "launch", "--nproc-per-node", "2",
                        "--nnodes", "2", "--", *TRAIN], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "resnet-bench launch: error: --nnodes 2: runs on several nodes start under Slurm only "
        "(SLURM_JOB_ID is not set)"]


# --------------------------------------------------------------------------- job resources


def test_a_job_that_needs_more_cpus_than_a_cluster_job_has_is_refused_by_name():
    cpu4 = L.layout(cfg(device="cpu", ranks_per_run=4, threads_per_run=2))
    assert R.cluster_cores_problem(cpu4, 1, 2, cores=8) is None
    assert "4 ranks per node x threads_per_run: 2 exceed --cores 4" in R.cluster_cores_problem(
        cpu4, 1, 2, cores=4)
    single = L.layout(cfg())
    assert R.cluster_cores_problem(single, 2, 2, cores=4) is None
    assert "runs_per_gpu: 3 x threads_per_run: 2 exceeds --cores 4" in R.cluster_cores_problem(
        single, 3, 2, cores=4)


def test_a_pack_is_a_group_of_runs_per_gpu_components():
    assert R.pack_components({}, 2) == {"gpupack": 2}
    assert R.pack_components({"other": 3, "gpupack": 2}, 2) == {"other": 3, "gpupack": 2}
    with pytest.raises(ValueError, match="gpupack=3 contradicts runs_per_gpu: 2; set only runs_per_gpu"):
        R.pack_components({"gpupack": 3}, 2)


def test_job_resources_follow_the_layout():
    single, gpus16, cpu2 = (L.layout(cfg()), L.layout(cfg(gpus_per_run=16)),
                            L.layout(cfg(device="cpu", ranks_per_run=2)))
    assert (R.local_gpus(single), R.gres(single), R.nodes(single)) == (1, "gpu:1", None)
    assert (R.local_gpus(gpus16), R.gres(gpus16), R.nodes(gpus16)) == (16, "gpu:8", 2)
    assert (R.local_gpus(cpu2), R.gres(cpu2), R.nodes(cpu2)) == (0, None, None)
    # A CPU study asks for no GPU: on a CPU-only cluster a gres request would never be met.
    for cpu in (L.layout(cfg(device="cpu")), L.layout(cfg(device="cpu", gpus_per_run=1))):
        assert (R.local_gpus(cpu), R.gres(cpu), R.nodes(cpu)) == (0, None, None)
    assert R.gres(L.layout(cfg(device="cuda"))) == "gpu:1"
    recipe = Recipe()
    one = R.runtime_min("v1-basic-110", recipe, "gpu", {**RES, "min_runtime_min": 1})
    eight = R.runtime_min("v1-basic-110", recipe, "gpu", {**RES, "min_runtime_min": 1}, devices=8)
    assert eight < one and eight >= one / 8
    assert R.mem_mb("v1-basic-20", recipe, RES, ranks=4) - R.mem_mb("v1-basic-20", recipe, RES) == \
        3 * RES["base_mem_mb"]


# --------------------------------------------------------------------------- the GPU pool


@pytest.fixture
def pool(tmp_path, monkeypatch):
    monkeypatch.setenv(gpu.ENV_LOCK_DIR, str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(gpu.ENV_CLAIM, raising=False)
    monkeypatch.delenv(gpu.ENV_SLOTS, raising=False)
    monkeypatch.setenv(gpu.ENV_IDS, "0,1,2")


def test_a_multi_gpu_claim_takes_whole_gpus_all_or_none(pool):
    one = gpu.claim_gpu()
    assert one.gpu == "0"
    two = gpu.claim_gpu(count=2, timeout=0)
    assert two.gpu == "1,2" and two.held and len(two.fds) == 2
    assert [Path(p).name for p in two.lock_paths] == ["gpu1.slot0.lock", "gpu2.slot0.lock"]
    assert two.env()["CUDA_VISIBLE_DEVICES"] == "1,2"
    two.release()
    # GPU 0 is taken: a claim of 3 cannot be met, and it must not sit on GPUs 1 and 2 meanwhile.
    with pytest.raises(gpu.GpuBusyError, match="not 3 free GPUs at once"):
        gpu.claim_gpu(count=3, timeout=0.3, quiet=True)
    with gpu.claim_gpu(count=2, timeout=0) as again:
        assert again.gpu == "1,2"
    one.release()
    with gpu.claim_gpu(count=3, timeout=0) as all3:
        assert all3.gpu == "0,1,2"


def test_a_multi_gpu_claim_needs_whole_gpus_and_a_big_enough_pool(pool):
    with pytest.raises(ValueError, match="takes whole GPUs; got 2 slots per GPU"):
        gpu.claim_gpu(count=2, slots_per_gpu=2)
    with pytest.raises(ValueError, match="a claim of 4 GPUs: the pool has 3"):
        gpu.claim_gpu(count=4)


def test_ranks_inherit_the_launchers_multi_gpu_claim(pool, monkeypatch):
    claim = gpu.claim_gpu(count=2)
    for key, value in claim.env().items():
        monkeypatch.setenv(key, value)
    inherited = gpu.claim_gpu(timeout=0)  # what a rank (a child) gets
    assert inherited.source == "inherited" and inherited.gpu == "0,1"
    assert inherited.lock_paths == claim.lock_paths
    claim.release()  # the launcher's locks are gone: a stale marker is not trusted
    fresh = gpu.claim_gpu(timeout=0)
    assert fresh.source == "lock"
    fresh.release()


# --------------------------------------------------------------------------- the train rule


def _dry_run(tmp_path, *config: str) -> str:
    wd = workflow_copy(tmp_path / "wf")
    env = {**os.environ, "PATH": f"{Path(PY).parent}:{os.environ['PATH']}"}
    r = subprocess.run([PY, "-m", "snakemake", "-n", "-p", "--cores", "2", "--until", "train",
                        "--config", *config], cwd=wd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_the_train_rule_launches_a_cpu_run_of_two_ranks(tmp_path):
    out = _dry_run(tmp_path, "device=cpu", "ranks_per_run=2", "threads_per_run=1")
    shells = [line for line in out.splitlines() if "--model v1-basic-8 " in line
              and "--seed 0 " in line]
    assert len(shells) == 1, out[-3000:]
    assert ("resnet-bench launch --nproc-per-node 2 --nnodes 1 --threads-per-rank 1 -- train "
            "--model v1-basic-8") in shells[0]
    assert "--threads 1 " in shells[0]
    assert "gpu=0" in out and "gres=" not in out


def test_the_train_rule_of_a_cpu_study_asks_for_no_gpu(tmp_path):
    out = _dry_run(tmp_path, "device=cpu")
    assert "--device cpu " in out and "gpu=0" in out and "gres=" not in out, out[-3000:]
    assert "gres=gpu:1" in _dry_run(tmp_path / "auto", "device=auto")


def test_recipes_that_do_not_split_over_the_ranks_are_refused_before_any_job():
    from resnet_bench.pipeline import grid as G
    config = {**cfg(device="cpu", ranks_per_run=3),
              "datasets": {"s": {"kind": "synthetic", "options": {}}},
              "recipes": {"r": {"batch_size": 32}},
              "grid": [{"models": ["v1-basic-8"], "datasets": ["s"], "seeds": [0], "recipe": "r"}]}
    with pytest.raises(G.GridError, match="recipes.r.batch_size: got 32; allowed: a multiple of "
                                          "the world size 3"):
        G.validate(config)
    config["recipes"]["r"]["batch_size"] = 48
    assert len(G.validate(config)) == 1


def test_a_config_refusal_names_the_key(tmp_path):
    wd = workflow_copy(tmp_path / "wf")
    r = subprocess.run([PY, "-m", "snakemake", "-n", "--cores", "2", "--config",
                        "gpus_per_run=2", "runs_per_gpu=2"], cwd=wd, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "config: config key runs_per_gpu: got 2 with a run of 2 ranks" in r.stdout + r.stderr
    assert not (wd / "results").exists()


def _flock_holders(lock_dir: Path) -> dict[str, int]:
    """lock file name -> pid holding its flock, from /proc/locks."""
    inodes = {p.stat().st_ino: p.name for p in lock_dir.glob("*.lock")}
    held = {}
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and "->" not in parts:
            inode = int(parts[5].rsplit(":", 1)[1])
            if inode in inodes:
                held[inodes[inode]] = int(parts[4])
    return held


@pytest.mark.slow
def test_a_local_multi_gpu_launch_holds_its_gpus_until_torchrun_ends(pool, tmp_path):
    """`launch --gpus` outside Slurm, fake GPUs 0,1,2 with GPU 0 taken: the launcher claims the
    two free ones, execs torchrun (which holds both locks, same pid) and its two ranks see
    CUDA_VISIBLE_DEVICES=1,2 (on this CPU machine they train on the CPU, gloo)."""
    import time
    busy = gpu.claim_gpu()  # GPU 0
    lock_dir = Path(os.environ[gpu.ENV_LOCK_DIR])
    data = tmp_path / "data.pt"
    env = {**os.environ, "PATH": f"{Path(PY).parent}:{os.environ['PATH']}"}
    subprocess.run([PY, "-m", "resnet_bench.cli", "data", "prepare", "--dataset", "synthetic",
                    "--train-size", "256", "--test-size", "128", "--out", str(data)],
                   check=True, capture_output=True, env=env, timeout=300)
    proc = subprocess.Popen(
        [PY, "-m", "resnet_bench.cli", "launch", "--nproc-per-node", "2", "--gpus", "--",
         "train", "--model", "v1-basic-8", "--prepared", str(data), "--device", "auto",
         "--iterations", "30", "--batch-size", "32", "--eval-every", "10",
         "--checkpoint-every", "10", "--milestones", "15", "25", "--warmup", "none",
         "--threads", "1", "--no-progress", "--out", str(tmp_path / "run")],
        env=env, stderr=subprocess.PIPE, text=True)
    seen, rank_devices = {}, set()
    while proc.poll() is None:
        held = _flock_holders(lock_dir)
        if "gpu1.slot0.lock" in held:
            seen = held
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(proc.pid):
                try:
                    if int((entry / "stat").read_text().split()[3]) != proc.pid:
                        continue  # not a child of torchrun
                    environ = (entry / "environ").read_bytes().split(b"\0")
                except (OSError, ValueError, IndexError):
                    continue
                for var in environ:
                    if var.startswith(b"CUDA_VISIBLE_DEVICES="):
                        rank_devices.add(var.split(b"=", 1)[1].decode())
        time.sleep(0.05)
    err = proc.stderr.read()
    busy.release()
    assert proc.returncode == 0, err[-3000:]
    assert "resnet-bench launch: GPU 1,2 (lock, slot 0" in err, err[:2000]
    assert seen.get("gpu1.slot0.lock") == seen.get("gpu2.slot0.lock") == proc.pid, seen
    assert rank_devices == {"1,2"}, rank_devices
    assert not {k: v for k, v in _flock_holders(lock_dir).items() if k != "gpu0.slot0.lock"}
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["distributed"]["world_size"] == 2
    # Rank 0 records the launcher's claim: both GPUs, inherited, with both lock files.
    claim = prov["gpu_claim"]
    assert claim["gpu"] == "1,2" and claim["source"] == "inherited", claim
    assert [Path(p).name for p in claim["lock_paths"]] == ["gpu1.slot0.lock", "gpu2.slot0.lock"]


def test_the_schema_fills_in_every_resource_default_a_config_leaves_out():
    """One key of `assumed_tflops` set keeps the other's default (the defaults live in the
    schema, filled in leaf by leaf as Snakemake validates the config)."""
    import yaml
    from snakemake.utils import validate
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["resources"] = {"assumed_tflops": {"gpu": 5.0}}
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["resources"] == {**RES, "assumed_tflops": {"gpu": 5.0, "cpu": 0.05}}
    assert RES == {"assumed_tflops": {"gpu": 20.0, "cpu": 0.05}, "safety": 2.0,
                   "min_runtime_min": 10, "base_mem_mb": 3000}
