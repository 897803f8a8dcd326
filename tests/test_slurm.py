"""Against a real Slurm (CI: .ci/slurm/start.sh, stop.sh): GPU gres assignment and how
`scancel --signal=TERM` reaches a job's Python process (see .ci/slurm/README.md).  The pipeline
on Slurm is tests/test_pipeline_slurm.py.  Without a cluster these tests skip with the reason;
with RESNET_BENCH_REQUIRE_SLURM=1 (set by CI) they fail instead."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_helpers import require_slurm, slurm_gpu_count  # noqa: E402

pytestmark = pytest.mark.slurm
PY = sys.executable
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")


@pytest.fixture(autouse=True)
def _cluster_up():
    """Skipped with the reason when no cluster is up; failed under RESNET_BENCH_REQUIRE_SLURM=1."""
    require_slurm()


@pytest.fixture
def sbatch(tmp_path):
    """Submit with sbatch; every job a test submits is cancelled at the end."""
    submitted: list[str] = []

    def submit(*options: str, wrap: str) -> str:
        r = subprocess.run(["sbatch", "--parsable", "-o", f"{tmp_path}/slurm-%j.out", *options,
                            "--wrap", wrap], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        job_id = r.stdout.strip().split(";")[0]
        submitted.append(job_id)
        return job_id

    yield submit
    if submitted:
        subprocess.run(["scancel", *submitted], capture_output=True, timeout=30)


def _state(job_id: str) -> str:
    r = subprocess.run(["squeue", "--states=all", "-h", "-j", job_id, "-o", "%T"],
                       capture_output=True, text=True, timeout=15)
    return r.stdout.strip()


def _wait_state(job_id: str, timeout: float = 40) -> str:
    deadline = time.monotonic() + timeout
    while (state := _state(job_id)) not in FINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {state or 'unknown'} after {timeout} s"
        time.sleep(0.25)
    return state


def _wait_file(path: Path, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.1)


def test_two_concurrent_gpu_jobs_get_distinct_devices(sbatch, tmp_path):
    if slurm_gpu_count() < 2:
        pytest.skip("the cluster's node has fewer than 2 GPUs (SLURM_CI_GPUS=2 .ci/slurm/start.sh)")
    # Each job reports its device, then waits until both have started: this proves they ran
    # at the same time (the barrier times out otherwise) while holding their GPUs.
    job = textwrap.dedent(f"""
        import json, os, pathlib, sys, time
        d = pathlib.Path({str(tmp_path)!r})
        me = sys.argv[1]
        rec = {{k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_JOB_GPUS")}}
        (d / f"started-{{me}}").write_text(json.dumps(rec))
        deadline = time.time() + 30
        while len(list(d.glob("started-*"))) < 2:
            if time.time() > deadline:
                sys.exit("the other job never started alongside this one")
            time.sleep(0.1)
        (d / f"done-{{me}}").write_text("ok")
        """)
    script = tmp_path / "job.py"
    script.write_text(job)
    ids = [sbatch("--gres=gpu:1", "-t", "5", wrap=f"{PY} {script} {i}") for i in (0, 1)]
    states = [_wait_state(j) for j in ids]
    assert states == ["COMPLETED", "COMPLETED"], (
        states, [p.read_text() for p in tmp_path.glob("slurm-*.out")])
    recs = [json.loads((tmp_path / f"started-{i}").read_text()) for i in (0, 1)]
    assert sorted(r["SLURM_JOB_ID"] for r in recs) == sorted(ids)  # they ran as these Slurm jobs
    devices = [r["CUDA_VISIBLE_DEVICES"] for r in recs]
    assert all(devices) and devices[0] != devices[1], recs


HANDLER = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    marker = pathlib.Path(sys.argv[1])
    def on_term(signum, frame):
        tmp = marker.with_suffix(".tmp")  # atomic: the test polls for the marker
        tmp.write_text(f"SIGTERM in job {os.environ.get('SLURM_JOB_ID')}")
        os.replace(tmp, marker)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    pathlib.Path(sys.argv[1] + ".ready").touch()
    time.sleep(60)
    """
)


@pytest.mark.parametrize(
    ("wrap", "scancel_opts"),
    [
        # snakemake's slurm-jobstep runs a rule as `srun -n1 ...` inside the allocation: a step
        pytest.param("srun -n1 {py} {handler} {marker}", [], id="srun-step"),
        # no srun: only --batch/--full signal the batch step, and `exec` makes Python the
        # batch step's main process (otherwise --batch hits only the shell, see README)
        pytest.param("exec {py} {handler} {marker}", ["--batch"], id="batch-step-exec"),
    ],
)
def test_scancel_signal_term_reaches_python(sbatch, tmp_path, wrap, scancel_opts):
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    marker = tmp_path / "got-sigterm"
    job_id = sbatch("-t", "5", wrap=wrap.format(py=PY, handler=handler, marker=marker))
    _wait_file(Path(f"{marker}.ready"))
    subprocess.run(["scancel", "--signal=TERM", *scancel_opts, job_id], check=True, timeout=30)
    _wait_file(marker, timeout=20)
    assert marker.read_text() == f"SIGTERM in job {job_id}"
    assert _wait_state(job_id) == "COMPLETED"  # the handler's clean exit is the job's result


def test_scancel_signal_term_skips_the_batch_step_by_default(sbatch, tmp_path):
    """The trap: without srun and without --batch/--full, the signal goes nowhere."""
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    marker = tmp_path / "got-sigterm"
    job_id = sbatch("-t", "5", wrap=f"{PY} {handler} {marker}")
    _wait_file(Path(f"{marker}.ready"))
    subprocess.run(["scancel", "--signal=TERM", job_id], check=True, timeout=30)
    time.sleep(2)
    assert not marker.exists()
    assert _state(job_id) == "RUNNING"
