"""The pipeline on a real Slurm (CI: .ci/slurm/start.sh with 2 fake GPUs), through the workflow
profile profiles/slurm-ci: the default config shrunk to 2 models x 2 seeds, with two of the
trainings interrupted while they run --

* `scancel --signal=TERM <job>` (what a site sends before a time limit or preemption): the
  trainer checkpoints and exits 75, snakemake inside the allocation sees the rule fail and, by
  the rule's `retries`, runs it again as a new job step of the *same* Slurm job;
* plain `scancel <job>` (preemption by cancel, node drain): the job ends CANCELLED after the
  trainer checkpointed within KillWait, and the submitting snakemake resubmits it (a *new* Slurm
  job, attempt 2).

Both retries must resume from the checkpoint and end bit-identical (CPU) to an uninterrupted run.
One pipeline run (a few minutes on 2 shared cores) feeds these tests.  A second, smaller one
(`-k pack`) runs two trainings with `runs_per_gpu: 2`: they must share one Slurm job and its GPU,
at the same time, and equal the same runs trained alone.  Without a cluster the tests skip with
the reason; under RESNET_BENCH_REQUIRE_SLURM=1 they fail.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_helpers import (  # noqa: E402
    processes_mentioning, require_slurm, run_dir, slurm_gpu_count, snakemake_env,
    tiny_default_config, workflow_copy,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

MODELS = ["plain-basic-8", "v1-basic-8"]
SEEDS = [0, 1]
ITERATIONS = 120
CHECKPOINT_EVERY = 10
# run -> how it is interrupted once its first checkpoint is on disk
INTERRUPT = {("v1-basic-8", 0): ["scancel", "--signal=TERM"], ("plain-basic-8", 1): ["scancel"]}
FINAL_KEYS = ("final_train_loss", "final_train_error_pct", "final_test_loss",
              "final_test_error_pct", "iterations", "status")


@dataclass
class Interruption:
    job_id: str
    at: float
    command: list[str]


@dataclass
class SlurmPipeline:
    wd: Path
    cfg: dict
    result: subprocess.CompletedProcess
    seconds: float
    interrupted: dict = field(default_factory=dict)  # (model, seed) -> Interruption
    jobs: dict = field(default_factory=dict)  # job id -> squeue record of this pipeline's jobs

    def run(self, model: str, seed: int) -> Path:
        return run_dir(self.wd, self.cfg, model, seed)

    def summary(self, model: str, seed: int) -> dict:
        return json.loads((self.run(model, seed) / "summary.json").read_text())

    def provenance(self, model: str, seed: int) -> dict:
        return json.loads((self.run(model, seed) / "provenance.json").read_text())

    def log_tail(self) -> str:
        return (self.result.stdout + self.result.stderr)[-4000:]



def _run_snakemake(cmd: list[str], wd: Path) -> tuple[subprocess.Popen, str, str]:
    """Run the pipeline to its end; past the timeout SIGINT it, so snakemake scancels its jobs."""
    proc = subprocess.Popen(cmd, cwd=wd, env=snakemake_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    return proc, out, err

def _squeue(*args: str) -> list[dict]:
    fields = ["id", "name", "comment", "state", "start", "end"]
    r = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%j|%k|%T|%S|%e", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [dict(zip(fields, line.split("|"))) for line in r.stdout.splitlines() if line.strip()]


def _run_watched(pipe: SlurmPipeline, cmd: list[str],
                 watch: Callable[[SlurmPipeline, threading.Event], None] | None = None) -> None:
    """Run the pipeline command in pipe.wd, `watch(pipe, stop)` in a thread beside it until it
    ends; record its result and wall time in `pipe`."""
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(pipe, stop), daemon=True) if watch else None
    if watcher:
        watcher.start()
    t0 = time.monotonic()
    try:
        proc, out, err = _run_snakemake(cmd, pipe.wd)
    finally:
        stop.set()
        if watcher:
            watcher.join(timeout=10)
    pipe.seconds = time.monotonic() - t0
    pipe.result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _logged_job_ids(wd: Path) -> list[str]:
    """The Slurm jobs the pipeline submitted: the slurm logs (kept by the profile) name them."""
    return sorted(p.stem for p in (wd / ".snakemake" / "slurm_logs").rglob("*.log"))


def _with_its_jobs(pipe: SlurmPipeline) -> Iterator[SlurmPipeline]:
    """A fixture's value: the finished pipeline with its jobs' squeue records; then cancels
    whatever of them is left, whatever happened."""
    logged = _logged_job_ids(pipe.wd)
    if logged:
        pipe.jobs = {j["id"]: j for j in _squeue("-j", ",".join(logged))}
    yield pipe
    if pipe.jobs:
        subprocess.run(["scancel", *pipe.jobs], capture_output=True, timeout=30)


def _interrupter(pipe: SlurmPipeline, stop: threading.Event) -> None:
    """Interrupt each run of INTERRUPT once, as soon as its first checkpoint exists (mid-run:
    the run has ITERATIONS / CHECKPOINT_EVERY checkpoints to go)."""
    pending = dict(INTERRUPT)
    while pending and not stop.is_set():
        for key, command in list(pending.items()):
            rd = pipe.run(*key)
            if not (rd / "checkpoint.pt").exists():
                continue
            try:
                job_id = json.loads((rd / "provenance.json").read_text())["slurm_job_id"]
            except (OSError, ValueError, KeyError):
                continue
            subprocess.run([*command, job_id], check=True, timeout=30)
            pipe.interrupted[key] = Interruption(job_id, time.time(), command)
            del pending[key]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> SlurmPipeline:
    require_slurm()
    if slurm_gpu_count() < 2:
        pytest.skip("the cluster's node has fewer than 2 GPUs (SLURM_CI_GPUS=2 .ci/slurm/start.sh)")
    wd = workflow_copy(tmp_path_factory.mktemp("slurm") / "wf")
    cfg = tiny_default_config(MODELS, SEEDS, ITERATIONS, CHECKPOINT_EVERY, device="auto")
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm-ci"]
    pipe = SlurmPipeline(wd, cfg, None, 0.0)  # type: ignore[arg-type]
    _run_watched(pipe, cmd, _interrupter)
    # Every Slurm job this pipeline submitted carries its run id as the job name (the plugin's
    # --job-name), so a resumed run's later jobs are found by the name of its first.
    logged = _logged_job_ids(wd)
    names = {j["name"] for j in _squeue("-j", ",".join(logged))} if logged else set()
    for name in names:
        pipe.jobs.update({j["id"]: j for j in _squeue("--name", name)})
    yield pipe
    if names:  # leave nothing behind, whatever happened
        subprocess.run(["scancel", "--name", ",".join(names)], capture_output=True, timeout=30)


def test_pipeline_finishes_on_slurm(pipeline):
    assert pipeline.result.returncode == 0, pipeline.log_tail()
    print(f"pipeline on slurm: {pipeline.seconds:.0f} s, jobs: "
          + ", ".join(f"{j['id']} {j['comment']} {j['state']}" for j in pipeline.jobs.values()))
    assert set(pipeline.interrupted) == set(INTERRUPT), "an interruption was never sent"
    for model in MODELS:
        for seed in SEEDS:
            assert pipeline.summary(model, seed)["status"] == "completed"


def test_every_training_ran_as_its_own_slurm_job(pipeline):
    job_ids = {}
    for model in MODELS:
        for seed in SEEDS:
            prov = pipeline.provenance(model, seed)
            job_id = prov["slurm_job_id"]
            assert job_id, f"{model} seed {seed} did not run under Slurm"
            job = pipeline.jobs[job_id]
            assert job["comment"] == f"rule_train_wildcards_synthetic_quick_{model}_{seed}", job
            assert job["state"] == "COMPLETED"
            log = next((pipeline.wd / ".snakemake" / "slurm_logs" / "rule_train").rglob(f"{job_id}.log"))
            assert f"model={model},seed={seed}" in log.read_text()
            job_ids[(model, seed)] = job_id
    assert len(set(job_ids.values())) == len(job_ids), job_ids


def test_concurrent_trainings_got_distinct_gpus_from_slurm(pipeline):
    """Slurm's gres set CUDA_VISIBLE_DEVICES per job; the trainer recorded it (gpu_claim, source
    'slurm') even on CPU. Jobs whose allocations overlapped in time must have different GPUs."""
    runs = []
    for model in MODELS:
        for seed in SEEDS:
            prov = pipeline.provenance(model, seed)
            claim = prov["gpu_claim"]
            assert claim["source"] == "slurm" and claim["gpu"] in ("0", "1"), claim
            job = pipeline.jobs[prov["slurm_job_id"]]
            start, end = (datetime.fromisoformat(job[k]) for k in ("start", "end"))
            runs.append((model, seed, claim["gpu"], start, end))
    overlapping = 0
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a[3] < b[4] and b[3] < a[4]:
                overlapping += 1
                assert a[2] != b[2], f"{a[:3]} and {b[:3]} ran at the same time on one GPU"
    assert overlapping, f"no two trainings ran at the same time: {runs}"


def test_tables_and_figures_ran_locally(pipeline):
    """The tables/figures rules are localrules: only data preparation and training are submitted."""
    out = pipeline.wd / pipeline.cfg["results"] / pipeline.cfg["experiment"]
    assert (out / "tables" / "summary.csv").is_file()
    pngs = list((out / "figures").rglob("*.png"))
    assert pngs, "no figure was drawn"
    submitted = {j["comment"].split("_wildcards")[0] for j in pipeline.jobs.values()}
    assert submitted == {"rule_prepare_data", "rule_train"}, submitted


@pytest.mark.parametrize("key", list(INTERRUPT), ids=["scancel-signal-TERM", "scancel"])
def test_interrupted_training_resumed_to_the_uninterrupted_result(pipeline, key, tmp_path):
    model, seed = key
    hit = pipeline.interrupted[key]
    prov, summary = pipeline.provenance(model, seed), pipeline.summary(model, seed)
    assert summary["resumed"] >= 1, summary
    resumed_at = prov["resumes"][0]["at_iteration"]
    assert CHECKPOINT_EVERY <= resumed_at < ITERATIONS, prov["resumes"]
    killed = pipeline.jobs[hit.job_id]
    if hit.command == ["scancel"]:
        # The job was cancelled; the submitting snakemake retried it as a new Slurm job.
        assert killed["state"] == "CANCELLED", killed
        assert prov["slurm_job_id"] != hit.job_id
        assert pipeline.jobs[prov["slurm_job_id"]]["comment"] == killed["comment"]
    else:
        # Only the job step got SIGTERM; snakemake inside the allocation retried the rule as a
        # new step of the same job, which then completed.
        assert prov["slurm_job_id"] == hit.job_id and killed["state"] == "COMPLETED", killed
    # The same run, uninterrupted, outside Slurm: identical numbers (CPU, one thread).
    from resnet_bench.pipeline import grid as G
    ref = tmp_path / "ref"
    wd = pipeline.wd
    r = subprocess.run(
        ["resnet-bench", "train", "--model", model, "--dataset", "synthetic",
         "--prepared", str(wd / pipeline.cfg["results"] / "data" / "synthetic.pt"),
         "--seed", str(seed), "--device", "cpu", "--recipe-json", G.recipe_json(pipeline.cfg, "quick"),
         "--threads", "1", "--no-progress", "--out", str(ref)],
        env=snakemake_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    expected = json.loads((ref / "summary.json").read_text())
    assert expected["resumed"] == 0
    assert {k: summary[k] for k in FINAL_KEYS} == {k: expected[k] for k in FINAL_KEYS}
    run = pipeline.run(model, seed)
    assert (run / "train_log.csv").read_bytes() == (ref / "train_log.csv").read_bytes()
    assert (run / "eval_log.csv").read_bytes() == (ref / "eval_log.csv").read_bytes()


def test_nothing_left_running(pipeline):
    active = [j for j in pipeline.jobs.values() if j["state"] not in ("COMPLETED", "CANCELLED")]
    assert not active, active
    names = {j["name"] for j in pipeline.jobs.values()}
    for name in names:
        left = _squeue("--name", name, "-t", "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING")
        assert not left, left
    assert not processes_mentioning(str(pipeline.wd)), processes_mentioning(str(pipeline.wd))


# --------------------------------------------------------------------------- runs_per_gpu packs

PACK_MODELS = ["plain-basic-8", "v1-basic-8"]
PACK_ITERATIONS = 60


def _prepare_data(wd: Path, cfg: dict) -> Path:
    from resnet_bench.pipeline import outputs as O
    data = wd / cfg["results"] / "data" / "synthetic.pt"
    subprocess.run(f"resnet-bench data prepare {O.prepare_args(cfg['datasets']['synthetic'])} "
                   f"--out {data}", shell=True, check=True, env=snakemake_env(), timeout=300)
    return data


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> SlurmPipeline:
    """`runs_per_gpu: 2` through profiles/slurm-ci, nothing else changed: the two trainings must
    share one Slurm job (one pack, one gres GPU).  The data set is prepared beforehand, outside
    Slurm, and only the trainings run (--until train): the test is about how they are packed."""
    require_slurm()
    if slurm_gpu_count() < 1:
        pytest.skip("the cluster's node has no GPU (SLURM_CI_GPUS=2 .ci/slurm/start.sh)")
    wd = workflow_copy(tmp_path_factory.mktemp("slurm-pack") / "wf")
    cfg = tiny_default_config(PACK_MODELS, [0], PACK_ITERATIONS, 10, device="auto")
    cfg["runs_per_gpu"] = 2
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _prepare_data(wd, cfg)
    pipe = SlurmPipeline(wd, cfg, None, 0.0)  # type: ignore[arg-type]
    _run_watched(pipe, [sys.executable, "-m", "snakemake", "--workflow-profile",
                        "profiles/slurm-ci", "--until", "train"])
    yield from _with_its_jobs(pipe)


def test_runs_per_gpu_packs_trainings_into_one_slurm_job(packed):
    assert packed.result.returncode == 0, packed.log_tail()
    print(f"packed pipeline on slurm: {packed.seconds:.0f} s, jobs: "
          + ", ".join(f"{j['id']} {j['comment']} {j['state']}" for j in packed.jobs.values()))
    train_jobs = {i: j for i, j in packed.jobs.items() if "train" in j["comment"]}
    # One Slurm job per pack (2 runs, 2 per pack), named after the group, not one per run.
    assert len(train_jobs) == 1, packed.jobs
    (job_id, job), = train_jobs.items()
    assert job["comment"] == "rule_gpupack_train" and job["state"] == "COMPLETED", job
    provs = [packed.provenance(m, 0) for m in PACK_MODELS]
    assert [p["slurm_job_id"] for p in provs] == [job_id, job_id], provs
    # The job's one gres GPU, seen by both trainers (recorded even on CPU).
    claims = [p["gpu_claim"] for p in provs]
    assert all(c["source"] == "slurm" for c in claims) and claims[0]["gpu"] == claims[1]["gpu"], claims
    # Side by side, not one after the other: each started before the other finished.
    t = [(datetime.fromisoformat(p["started"]), datetime.fromisoformat(p["finished"])) for p in provs]
    assert t[0][0] < t[1][1] and t[1][0] < t[0][1], t
    assert not processes_mentioning(str(packed.wd)), processes_mentioning(str(packed.wd))


def test_packed_runs_equal_unpacked_runs(packed, tmp_path):
    """Each packed run equals the same run trained alone outside Slurm, byte for byte (CPU, one
    thread; the module's other tests show a Slurm job gives the same bytes as a direct run)."""
    from resnet_bench.pipeline import grid as G
    data = packed.wd / packed.cfg["results"] / "data" / "synthetic.pt"
    refs = {m: tmp_path / m for m in PACK_MODELS}
    procs = [subprocess.Popen(
        ["resnet-bench", "train", "--model", m, "--dataset", "synthetic", "--prepared", str(data),
         "--seed", "0", "--device", "cpu", "--recipe-json", G.recipe_json(packed.cfg, "quick"),
         "--threads", "1", "--no-progress", "--out", str(ref)],
        env=snakemake_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for m, ref in refs.items()]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    for m, ref in refs.items():
        summary, expected = packed.summary(m, 0), json.loads((ref / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["resumed"] == 0, summary
        assert {k: summary[k] for k in FINAL_KEYS} == {k: expected[k] for k in FINAL_KEYS}
        run = packed.run(m, 0)
        for name in ("train_log.csv", "eval_log.csv"):
            assert (run / name).read_bytes() == (ref / name).read_bytes(), (m, name)


# --------------------------------------------------------------------------- distributed runs

DDP_MODEL, DDP_ITERATIONS = "v1-basic-8", 40


@pytest.fixture(scope="module")
def two_rank_job(tmp_path_factory) -> SlurmPipeline:
    """`ranks_per_run: 2` (CPU, gloo) through profiles/slurm-ci: one Slurm job of 2 CPUs whose
    step runs torchrun with 2 ranks; once its first checkpoint exists the job gets
    `scancel --signal=TERM`. --verbose makes the plugin log its sbatch call."""
    require_slurm()
    wd = workflow_copy(tmp_path_factory.mktemp("slurm-ddp") / "wf")
    cfg = tiny_default_config([DDP_MODEL], [0], DDP_ITERATIONS, 10)
    cfg.update(device="cpu", ranks_per_run=2, threads_per_run=1)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _prepare_data(wd, cfg)
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm-ci",
           "--until", "train", "--verbose"]
    pipe = SlurmPipeline(wd, cfg, None, 0.0)  # type: ignore[arg-type]
    _run_watched(pipe, cmd, _term_at_the_first_checkpoint)
    yield from _with_its_jobs(pipe)


def _term_at_the_first_checkpoint(pipe: SlurmPipeline, stop: threading.Event) -> None:
    rd = pipe.run(DDP_MODEL, 0)
    while not stop.is_set() and not pipe.interrupted:
        try:
            if (rd / "checkpoint.pt").exists():
                job_id = json.loads((rd / "provenance.json").read_text())["slurm_job_id"]
                subprocess.run(["scancel", "--signal=TERM", job_id], check=True, timeout=30)
                pipe.interrupted[(DDP_MODEL, 0)] = Interruption(job_id, time.time(),
                                                                ["scancel", "--signal=TERM"])
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)


def test_a_two_rank_run_is_one_slurm_job_with_every_ranks_cpus(two_rank_job):
    pipe = two_rank_job
    assert pipe.result.returncode == 0, pipe.log_tail()
    print(f"2-rank run on slurm: {pipe.seconds:.0f} s, jobs: "
          + ", ".join(f"{j['id']} {j['comment']} {j['state']}" for j in pipe.jobs.values()))
    (job_id, job), = pipe.jobs.items()
    assert job["comment"] == f"rule_train_wildcards_synthetic_quick_{DDP_MODEL}_0"
    assert job["state"] == "COMPLETED", job
    summary, prov = pipe.summary(DDP_MODEL, 0), pipe.provenance(DDP_MODEL, 0)
    assert summary["status"] == "completed" and summary["iterations"] == DDP_ITERATIONS
    assert prov["slurm_job_id"] == job_id
    assert prov["distributed"]["world_size"] == 2 and prov["distributed"]["backend"] == "gloo"
    # SIGTERM reached torchrun and both ranks: checkpoint, exit 75, and Snakemake inside the
    # allocation ran the rule again as a new step of the same job, which resumed.
    hit = pipe.interrupted.get((DDP_MODEL, 0))
    assert hit is not None and hit.job_id == job_id, "the job was never interrupted"
    assert summary["resumed"] >= 1, summary
    assert 10 <= prov["resumes"][0]["at_iteration"] < DDP_ITERATIONS, prov["resumes"]
    # The plugin's sbatch call (its debug log): both ranks' CPUs, one task, no GPU.
    sbatch = [line.strip() for line in (pipe.result.stdout + pipe.result.stderr).splitlines()
              if "sbatch call:" in line and "rule_train" in line]
    assert len(sbatch) == 1, pipe.log_tail()
    print(sbatch[0][:600])
    assert " --ntasks=1 " in sbatch[0] and " --cpus-per-task=2" in sbatch[0]
    assert "--gres" not in sbatch[0] and "--gpus" not in sbatch[0] and "--nodes" not in sbatch[0]
    assert not processes_mentioning(str(pipe.wd)), processes_mentioning(str(pipe.wd))


def test_the_multi_node_launch_path_rendezvous_on_the_first_node(two_rank_job, tmp_path):
    """`launch --rendezvous slurm` (what a run over several nodes takes), here on the CI's one
    node: srun starts `launch --node` once per node, which execs torchrun with its node rank
    and a c10d rendezvous on the first host of the step. The same 2-rank run as the pipeline's
    must come out (gloo on CPU is deterministic), although that one was interrupted and
    resumed."""
    from resnet_bench.pipeline import grid as G
    from resnet_bench.pipeline import launch as L
    pipe = two_rank_job
    hosts = subprocess.run(["scontrol", "show", "hostnames", "localhost,r[1-2]-n[08-10]"],
                           capture_output=True, text=True, timeout=30)
    assert hosts.returncode == 0, hosts.stderr
    assert hosts.stdout.split() == L.expand_hostlist("localhost,r[1-2]-n[08-10]")
    out, log = tmp_path / "run", tmp_path / "job.log"
    train = ["train", "--model", DDP_MODEL, "--dataset", "synthetic", "--prepared",
             str(pipe.wd / pipe.cfg["results"] / "data" / "synthetic.pt"), "--seed", "0",
             "--device", "cpu", "--recipe-json", G.recipe_json(pipe.cfg, "quick"),
             "--threads", "1", "--no-progress", "--out", str(out)]
    launch = [sys.executable, "-m", "resnet_bench.cli", "launch", "--rendezvous", "slurm",
              "--nnodes", "1", "--nproc-per-node", "2", "--threads-per-rank", "1", "--", *train]
    import shlex
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--mem=1500",
         "-t", "10", "--job-name", "resnet-bench-ddp-path", "--output", str(log),
         "--wrap", "exec " + shlex.join(launch)],
        env=snakemake_env(), capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            (job,) = _squeue("-j", job_id)
            if job["state"] not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
                break
            time.sleep(1)
        text = log.read_text() if log.exists() else ""
        assert job["state"] == "COMPLETED", (job, text[-3000:])
    finally:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
    port = L.rendezvous_port(job_id)
    assert "srun --overlap --nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=2" in text
    assert (f"--nnodes 1 --node-rank 0 --nproc-per-node 2 --rdzv-backend c10d "
            f"--rdzv-endpoint localhost:{port}") in text, text[-3000:]
    summary, prov = (json.loads((out / name).read_text()) for name in ("summary.json",
                                                                       "provenance.json"))
    assert prov["distributed"]["world_size"] == 2 and prov["slurm_job_id"] == job_id
    expected = pipe.summary(DDP_MODEL, 0)
    assert {k: summary[k] for k in FINAL_KEYS} == {k: expected[k] for k in FINAL_KEYS}
    assert (out / "train_log.csv").read_bytes() == (pipe.run(DDP_MODEL, 0) / "train_log.csv").read_bytes()
