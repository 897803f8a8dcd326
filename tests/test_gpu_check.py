"""scripts/gpu-check.sh in its CPU mode: the same steps as on a GPU, tiny, so the script cannot
rot between GPU allocations.  Checks what comes back (at most 8 files) and that the bundled runs
make tables and figures here."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check.sh"


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    # The embedded synthetic set: CI machines need not have the JPEG mirror.
    r = subprocess.run(["bash", str(SCRIPT), "--cpu", "--data", "none", str(out)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    return out, r


def test_bad_arguments_fail_in_one_line(tmp_path):
    for args in ([], ["--budget", "soon", str(tmp_path)], ["--data", str(tmp_path / "nope"), str(tmp_path)],
                 ["--frobnicate", str(tmp_path)], [str(tmp_path), str(tmp_path / "b")]):
        r = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_cpu_mode_runs_every_step(check):
    out, r = check
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    assert {"gpu-check.log", "steps.json", "cuda-tests.xml", "bench.csv", "throughput.csv",
            "bench.tar.gz", "runs.tar.gz"} <= set(files)
    steps = json.loads((out / "steps.json").read_text())
    assert steps["mode"] == "cpu" and steps["environment"]["cuda_available"] is False
    status = {s["step"]: s["status"] for s in steps["steps"]}
    assert status == {k: "ok" for k in ("install", "environment", "cuda-tests", "bench-eager",
                                         "throughput", "study")}, status
    assert all(s["seconds"] <= s["budget_s"] for s in steps["steps"])
    assert steps["wall_s"] <= steps["budget_s"]


def test_cuda_tests_are_present_and_skipped_with_a_reason(check):
    out, _ = check
    xml = (out / "cuda-tests.xml").read_text()
    n = len(re.findall(r"^def test_", (REPO / "tests" / "test_cuda.py").read_text(), flags=re.M))
    assert n >= 7 and f'tests="{n}"' in xml and f'skipped="{n}"' in xml, xml[:500]
    assert "no CUDA device" in xml


def test_bench_and_throughput_csvs(check):
    out, _ = check
    rows = list(csv.DictReader(open(out / "bench.csv")))
    assert {(r["model"], r["path"]) for r in rows} == {
        ("v1-basic-8", "project"), ("v1-basic-8", "baseline"),
        ("v2-bottleneck-11", "project"), ("v2-bottleneck-11", "baseline")}
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    tp = list(csv.DictReader(open(out / "throughput.csv")))
    assert [int(r["processes"]) for r in tp] == [1, 2]
    assert all(float(r["images_per_s_total"]) > 0 and int(r["iters_min"]) >= 1 for r in tp)


def test_bundled_runs_make_tables_and_figures(check, tmp_path):
    out, _ = check
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
        assert not [n for n in names if n.endswith(".pt")], "weights must not come back"
        tar.extractall(tmp_path, filter="data")
    exp = tmp_path / "results" / "degradation"
    study = json.loads((exp / "study.json").read_text())
    assert study["runs"] == 3 and {x["status"] for x in study["results"]} == {"completed"}
    assert study["models"] == ["plain-basic-8", "v1-basic-8", "v2-basic-8"]
    rb = [sys.executable, "-m", "resnet_bench.cli"]
    r = subprocess.run(rb + ["aggregate", "--runs", str(exp / "runs"), "--out", str(tmp_path / "t")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list(csv.DictReader(open(tmp_path / "t" / "runs.csv")))
    assert len(runs) == 3 and {x["recipe"] for x in runs} == {"short-4it"}
    r = subprocess.run(rb + ["plot", "--tables", str(tmp_path / "t"), "--out", str(tmp_path / "f"),
                             "--figure", "degradation"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "f" / "degradation.png").stat().st_size > 0


def test_study_plan_takes_the_largest_fraction_that_fits():
    from resnet_bench.gpucheck import plan
    from resnet_bench.pipeline.grid import Run
    runs = [Run("d", "short", m, s) for m in ("plain-basic-20", "v1-basic-56") for s in (0, 1)]
    recipe = {"iterations": 16000, "milestones": [8000, 12000], "batch_size": 128,
              "eval_every": 1000, "checkpoint_every": 1000, "train_window": 100}
    ips = {20: 40000.0, 56: 16000.0}
    full_s = 30 + 1.3 * 2 * 16000 * 128 * (1 / 40000 + 1 / 16000)
    chosen, rec, f, est = plan(runs, recipe, full_s + 1, ips, None, None)
    assert (len(chosen), f, rec["iterations"]) == (4, 1.0, 16000) and abs(est - full_s) < 1e-6
    chosen, rec, f, est = plan(runs, recipe, (full_s - 30) / 2 - 1 + 30, ips, None, None)
    assert len(chosen) == 2 and {r.seed for r in chosen} == {0} and f == 0.5
    assert rec["iterations"] == 8000 and rec["milestones"] == [4000, 6000]
    assert rec["eval_every"] == rec["checkpoint_every"] == 500 and est <= (full_s - 30) / 2 + 29
    chosen, rec, f, _ = plan(runs, recipe, 1, ips, None, None)  # nothing fits: the smallest step
    assert f == 0.03125 and rec["iterations"] == 500 and len(chosen) == 2


def test_study_stops_cleanly_at_its_deadline(tmp_path):
    """Runs that cannot finish get SIGTERM before the deadline: exit 75, checkpoint and logs kept."""
    rb = [sys.executable, "-m", "resnet_bench.cli"]
    subprocess.run(rb + ["data", "prepare", "--dataset", "synthetic", "--train-size", "256",
                         "--test-size", "50", "--out", str(tmp_path / "d.pt")], check=True,
                   capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "resnet_bench.gpucheck", "study", "--config",
                        str(REPO / "config" / "degradation.yaml"), "--prepared", str(tmp_path / "d.pt"),
                        "--dataset", "synthetic", "--results", str(tmp_path / "res"), "--device", "cpu",
                        "--depth", "8", "--seeds", "0", "--iterations", "1000000", "--batch-size", "8",
                        "--budget-s", "35", "--grace-s", "5"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    study = json.loads((tmp_path / "res" / "degradation" / "study.json").read_text())
    assert study["wall_s"] <= 35 + 5
    for x in study["results"]:
        assert x["stopped_at_deadline"] and x["exit_status"] == 75 and x["status"] == "preempted"
        run = Path(x["dir"])
        assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists()
        assert len((run / "train_log.csv").read_text().splitlines()) > 1
