"""scripts/study_state.sh carries an unfinished study to a fresh checkout: finished runs are kept
(not retrained), a part-trained run resumes from its checkpoint."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline_helpers import (REPO, kill_pipeline, pipeline_until_checkpoint, run_dir, run_in, tiny_default_config,
                              workflow_copy)

SCRIPT = REPO / "scripts" / "study_state.sh"


@pytest.mark.slow
def test_a_study_moves_to_a_fresh_checkout_and_resumes(tmp_path):
    wd = workflow_copy(tmp_path / "wf")
    cfg = tiny_default_config(["v1-basic-8"], [0, 1], iterations=80, checkpoint_every=10)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    exp = cfg["experiment"]
    done, part = run_dir(wd, cfg, "v1-basic-8", 0), run_dir(wd, cfg, "v1-basic-8", 1)

    first = run_in(wd, "snakemake", "--cores", "1", str((done / "summary.json").relative_to(wd)))
    assert first.returncode == 0, first.stderr[-3000:]
    finished = (done / "summary.json").read_bytes()
    proc = pipeline_until_checkpoint(wd, ["snakemake", "--cores", "1"], part)
    refused = run_in(wd, "bash", str(SCRIPT), "save", exp)  # a trainer still writes to the study
    assert refused.returncode == 1 and "still running" in refused.stderr
    kill_pipeline(proc, wd)

    saved = run_in(wd, "bash", str(SCRIPT), "save", exp)
    assert saved.returncode == 0, saved.stderr
    assert "1 finished runs, 1 resumable" in saved.stdout
    # A fresh checkout: the repository's files and the archive, nothing else of the study.
    for name in ("results/" + exp, "results/data", ".snakemake"):
        shutil.rmtree(wd / name)
    restored = run_in(wd, "bash", str(SCRIPT), "restore", exp, "config/config.yaml")
    assert restored.returncode == 0, restored.stderr[-3000:]
    again = run_in(wd, "bash", str(SCRIPT), "restore", exp, "config/config.yaml")
    assert again.returncode == 1 and "would overwrite" in again.stderr

    resumed = run_in(wd, "snakemake", "--cores", "1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (done / "summary.json").read_bytes() == finished  # kept, not retrained
    summary = yaml.safe_load((part / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed"] >= 1


def test_bad_arguments_are_one_line_errors(tmp_path):
    for args, message in ((["save"], "no EXPERIMENT"), (["load", "x"], "unknown command"),
                          (["save", "nothing"], "results/nothing/runs does not exist"),
                          (["restore", "x", "missing.yaml"], "config file 'missing.yaml' does not exist")):
        r = run_in(tmp_path, "bash", str(SCRIPT), *args)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_a_study_before_its_first_finished_job_is_saved(tmp_path):
    (tmp_path / "results" / "x" / "runs" / "a").mkdir(parents=True)  # no benchmarks/, no logs/ yet
    r = run_in(tmp_path, "bash", str(SCRIPT), "save", "x")
    assert r.returncode == 0, r.stderr
    assert "0 finished runs, 0 resumable" in r.stdout
    assert (tmp_path / "results" / "in-progress" / "x.tar.gz").stat().st_size > 0


def test_finished_only_leaves_out_unfinished_runs_and_their_logs(tmp_path):
    exp = tmp_path / "results" / "x"
    runs, logs = exp / "runs" / "d" / "r" / "m", exp / "logs" / "train" / "d" / "r" / "m"
    files = {"seed0": ("config.json", "summary.json", "model.pt"),  # finished
             "seed1": ("config.json", "checkpoint.pt"),               # part-trained
             "seed2": ("resnet-bench.run",)}                          # started, nothing written yet
    for seed, names in files.items():
        (runs / seed).mkdir(parents=True)
        for name in names:
            (runs / seed / name).write_text(name)
    logs.mkdir(parents=True)
    for seed in files:
        (logs / f"{seed}.log").write_text("log")

    bad = run_in(tmp_path, "bash", str(SCRIPT), "save", "x", "--everything")
    assert bad.returncode == 2 and "unknown option '--everything'" in bad.stderr

    r = run_in(tmp_path, "bash", str(SCRIPT), "save", "x", "--finished-only")
    assert r.returncode == 0, r.stderr
    assert "1 finished runs, 0 resumable, 2 unfinished left out" in r.stdout
    listing = run_in(tmp_path, "tar", "-tzf", "results/in-progress/x.tar.gz").stdout.split()
    members = {m.rstrip("/") for m in listing}
    assert {"x/runs/d/r/m/seed0/config.json", "x/runs/d/r/m/seed0/summary.json",
            "x/logs/train/d/r/m/seed0.log"} <= members
    assert not [m for m in members if "seed1" in m or "seed2" in m or m.endswith("model.pt")], members

    everything = run_in(tmp_path, "bash", str(SCRIPT), "save", "x")  # the default keeps them
    assert "1 finished runs, 1 resumable" in everything.stdout and "left out" not in everything.stdout
