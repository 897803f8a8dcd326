"""scripts/gpu-check.sh in its CPU mode: the same steps as on a GPU, tiny, so the script cannot
rot between GPU allocations.  Checks what comes back (at most 8 files), each step's status, and
the paper run's projection and curve."""

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
                 ["--frobnicate", str(tmp_path)], [str(tmp_path), str(tmp_path / "b")],
                 ["--budget", "30", "--data", "none", str(tmp_path)]):
        r = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_the_paper_run_reads_its_config_as_the_pipeline_does(tmp_path):
    from resnet_bench.bench.gpucheck import _recipe_values
    config = tmp_path / "c.yaml"
    config.write_text("recipes:\n  paper:\n    iterations: 300\n    iterations: 3000000\n")
    with pytest.raises(ValueError, match="key 'iterations' is given twice"):
        _recipe_values(str(config), "paper", [])
    config.write_text("recipes:\n  paper:\n    iterations: 300\n")
    assert _recipe_values(str(config), "paper", ["lr=0.2"]) == (
        {"iterations": 300, "lr": 0.2, "name": "paper"}, {"lr": 0.2})


def test_without_the_mirror_it_refuses_to_start_unless_told_none(tmp_path):
    """No silent fallback to synthetic images: a clone without data/cifar10-jpeg.tar.gz and no
    --data stops before anything runs, naming where the mirror goes."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    (clone / "scripts" / "gpu-check.sh").write_bytes(SCRIPT.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "RESNET_BENCH_CIFAR_JPEG"}
    for mode in ([], ["--cpu"]):
        r = subprocess.run(["bash", str(clone / "scripts" / "gpu-check.sh"), *mode, str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 2 and "data/cifar10-jpeg.tar.gz" in r.stderr and "--data none" in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()


def test_cpu_mode_runs_every_step(check):
    out, r = check
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    assert set(files) == {"gpu-check.log", "steps.json", "cuda-tests.jsonl", "cuda-tests.xml",
                          "bench.csv", "throughput.csv", "paper-run.json", "paper-run.tar.gz"}
    steps = json.loads((out / "steps.json").read_text())
    assert steps["mode"] == "cpu" and steps["environment"]["cuda_available"] is False
    assert steps["data"] == "none (synthetic)"
    status = {s["step"]: s["status"] for s in steps["steps"]}
    assert status == {k: "ok" for k in ("environment", "cuda-tests", "bench-eager", "compile-110",
                                         "throughput", "paper-run")}, status
    assert [s["step"] for s in steps["steps"]][-1] == "paper-run"  # the projection comes last
    assert all(s["seconds"] <= s["budget_s"] for s in steps["steps"])
    assert steps["wall_s"] <= steps["budget_s"]


def test_cuda_tests_are_present_and_skipped_with_a_reason(check):
    out, _ = check
    xml = (out / "cuda-tests.xml").read_text()
    lines = [json.loads(x) for x in (out / "cuda-tests.jsonl").read_text().splitlines()]
    n = len(re.findall(r"^def test_", (REPO / "tests" / "test_cuda.py").read_text(), flags=re.M))
    assert n >= 7 and len({x["test"] for x in lines}) >= n
    assert {x["outcome"] for x in lines} == {"skipped"}
    assert all("no CUDA device" in x["message"] for x in lines)
    assert f'tests="{len(lines)}"' in xml and f'skipped="{len(lines)}"' in xml, xml[:500]


def test_bench_and_throughput_csvs(check):
    out, _ = check
    rows = list(csv.DictReader(open(out / "bench.csv")))
    assert {(r["step"], r["model"], r["path"]) for r in rows} == {
        ("eager", "v1-basic-8", "project"), ("eager", "v1-basic-8", "baseline"),
        ("compile", "v1-basic-8", "project")}
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    compiled = next(r for r in rows if r["step"] == "compile")
    assert compiled["compile"] == "True" and compiled["compile_backend"] == "aot_eager"
    assert float(compiled["compile_time_s"]) > 0
    tp = list(csv.DictReader(open(out / "throughput.csv")))
    assert [int(r["processes"]) for r in tp] == [1, 2]
    assert all(float(r["images_per_s_total"]) > 0 and int(r["iters_min"]) >= 1 for r in tp)


def test_the_paper_run_is_stopped_at_the_deadline_and_projected(check, tmp_path):
    out, _ = check
    info = json.loads((out / "paper-run.json").read_text())
    assert info["status"] == "preempted" and info["exit_status"] == 75
    assert info["recipe"]["iterations"] == 64000 and info["recipe"]["warmup"] == "v1"
    assert info["overrides"]["batch_size"] == 16 and info["iterations"] >= 1
    it_s = info["iterations_per_s_wall"]
    assert it_s > 0 and abs(info["projected_64k_h_wall"]
                            - (info["setup_s"] + 64000 / it_s) / 3600) < 0.01 * info["projected_64k_h_wall"]
    with tarfile.open(out / "paper-run.tar.gz") as tar:
        names = tar.getnames()
        assert not [n for n in names if n.endswith(".pt")], "weights must not come back"
        tar.extractall(tmp_path, filter="data")
    curve = list(csv.DictReader(open(tmp_path / "paper-run" / "curve.csv")))
    assert [int(r["iteration"]) for r in curve] == list(range(1, info["iterations"] + 1))
    assert {float(r["lr"]) for r in curve} <= {0.01, 0.1}  # the V1 warm-up's two rates
