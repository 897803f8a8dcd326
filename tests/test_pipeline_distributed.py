"""One training as several processes through the pipeline, locally: `ranks_per_run: 2` on CPU
(gloo) makes the train rule start `resnet-bench launch`, i.e. one torchrun of two ranks
(resnet_bench/pipeline/launch.py). The run must end with one run record that says it was a
world of 2. Midway, torchrun gets SIGTERM (as from a scheduler): its ranks checkpoint and
stop, the rule's retry resumes, and the run ends with the numbers of the same 2-rank run
started directly and never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_helpers import (  # noqa: E402
    processes_mentioning, run_dir, snakemake_env, tiny_default_config, workflow_copy,
)

pytestmark = pytest.mark.slow

MODEL, SEED = "v1-basic-8", 0
ITERATIONS, CHECKPOINT_EVERY = 60, 10
FINAL_KEYS = ("final_train_loss", "final_train_error_pct", "final_test_loss",
              "final_test_error_pct", "iterations", "status")


def _torchrun_pids(wd: Path) -> list[int]:
    return [pid for pid, cmd in processes_mentioning(str(wd)) if "resnet_bench.train.distributed" in cmd]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    wd = workflow_copy(tmp_path_factory.mktemp("ddp") / "wf")
    cfg = tiny_default_config([MODEL], [SEED], ITERATIONS, CHECKPOINT_EVERY)
    cfg.update(device="cpu", ranks_per_run=2, threads_per_run=1)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run = run_dir(wd, cfg, MODEL, SEED)
    hit: dict = {}
    stop = threading.Event()

    def interrupt():  # SIGTERM torchrun once, as soon as the first checkpoint is on disk
        while not stop.is_set() and not hit:
            pids = _torchrun_pids(wd) if (run / "checkpoint.pt").exists() else []
            if pids:
                hit["pid"], hit["at"] = pids[0], time.time()
                os.kill(pids[0], signal.SIGTERM)
                hit["sent"] = True
            time.sleep(0.05)

    watcher = threading.Thread(target=interrupt, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--until", "train"],
                             cwd=wd, env=snakemake_env(), capture_output=True, text=True, timeout=900)
    finally:
        stop.set()
        watcher.join(timeout=10)
    return wd, cfg, run, res, hit, time.monotonic() - t0


def test_a_two_rank_cpu_run_ends_with_one_record_of_world_size_2(two_ranks):
    wd, cfg, run, res, hit, seconds = two_ranks
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    print(f"2-rank pipeline: {seconds:.0f} s")
    summary = json.loads((run / "summary.json").read_text())
    prov = json.loads((run / "provenance.json").read_text())
    assert summary["status"] == "completed" and summary["iterations"] == ITERATIONS
    assert prov["distributed"]["world_size"] == 2 and prov["distributed"]["backend"] == "gloo"
    log = (wd / cfg["results"] / cfg["experiment"] / "logs" / "train" / "synthetic" / "quick"
           / MODEL / f"seed{SEED}.log").read_text()
    assert "resnet_bench.train.distributed --standalone --nnodes 1 --nproc-per-node 2" in log, log[-2000:]
    assert not processes_mentioning(str(wd)), processes_mentioning(str(wd))


def test_sigterm_to_torchrun_checkpoints_and_the_retry_resumes_to_the_same_numbers(two_ranks, tmp_path):
    wd, cfg, run, res, hit, _ = two_ranks
    assert hit.get("sent"), "torchrun was never interrupted"
    summary = json.loads((run / "summary.json").read_text())
    prov = json.loads((run / "provenance.json").read_text())
    assert summary["resumed"] >= 1, summary
    assert CHECKPOINT_EVERY <= prov["resumes"][0]["at_iteration"] < ITERATIONS, prov["resumes"]
    # The same 2-rank run, started directly and never interrupted.
    from resnet_bench.pipeline import grid as G
    ref = tmp_path / "ref"
    r = subprocess.run(
        ["resnet-bench", "launch", "--nproc-per-node", "2", "--threads-per-rank", "1", "--",
         "train", "--model", MODEL, "--dataset", "synthetic",
         "--prepared", str(wd / cfg["results"] / "data" / "synthetic.pt"), "--seed", str(SEED),
         "--device", "cpu", "--recipe-json", G.recipe_json(cfg, "quick"), "--threads", "1",
         "--no-progress", "--out", str(ref)],
        env=snakemake_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    expected = json.loads((ref / "summary.json").read_text())
    assert expected["resumed"] == 0
    assert {k: summary[k] for k in FINAL_KEYS} == {k: expected[k] for k in FINAL_KEYS}
    assert (run / "train_log.csv").read_bytes() == (ref / "train_log.csv").read_bytes()
    assert (run / "eval_log.csv").read_bytes() == (ref / "eval_log.csv").read_bytes()
