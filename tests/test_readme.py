"""The README's commands, as written: each is run by a test here or elsewhere, or the table below
says why it cannot run on a CPU-only CI machine. The claims block is the pipeline's, not prose."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import (kill_pipeline, pipeline_until_checkpoint, processes_mentioning, run_dir,
                              run_in, snakemake_env, tiny_default_config, workflow_copy)

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Every command the README shows -> the test that runs it as written, or why none can here.
COVERAGE = {
    "bash quickstart.sh pipeline": "the default pipeline: tests/test_pipeline.py::finished_pipeline "
                                   "runs `snakemake --cores 2` on it (quickstart adds set-up only)",
    "bash quickstart.sh test": "CI itself (.ci/run)",
    "snakemake --cores all --rerun-incomplete": "test_kill_recovery_with_orphaned_trainers_"
                                                "ends_with_uncorrupted_records",
    "bash quickstart.sh lint": "CI itself (.ci/run, before the tests)",
    "snakemake --lint": "CI itself (.ci/run, through bash quickstart.sh lint)",
    "snakemake --cores all": "test_recovery_commands_work_as_written_after_a_sigkill",
    "snakemake --cores 2": "tests/test_pipeline.py::finished_pipeline",
    "snakemake --unlock": "test_recovery_commands_work_as_written_after_a_sigkill",
    "snakemake --report report.zip": "test_recovery_commands_work_as_written_after_a_sigkill",
    "snakemake --report": "test_recovery_commands_work_as_written_after_a_sigkill",
    "snakemake --cores all --resources gpu=": "no GPU in CI; the DAG of every preset is dry-run by "
                                              "tests/test_pipeline.py, GPU slots by test_pipeline_gpus.py",
    "snakemake --workflow-profile profiles/slurm": "the full preset needs GPUs; the profile runs on "
                                                   "CI's real Slurm in tests/test_pipeline_slurm.py",
    "resnet-bench train --model v1-basic-56 --dataset cifar10": "needs the CIFAR-10 download (no "
                                                                "network in CI)",
    "resnet-bench train --model v2-bottleneck-1001 --dataset cifar10": "needs CIFAR-10 and hours "
                                                                       "of a GPU",
    "resnet-bench train --help": "test_cli_commands_run_as_written",
    "resnet-bench models": "test_cli_commands_run_as_written",
    "resnet-bench bench": "tests/test_bench.py runs the benchmark (the README's 20-iteration "
                          "ResNet-56 timing takes minutes on 2 cores)",
    "resnet-bench data prepare|info": "tests/test_data.py",
    "resnet-bench data fetch": "tests/test_fetch.py (against archives served from a temporary "
                               "directory; no network here, so never from GitHub)",
    "bash quickstart.sh pipeline --configfile config/": "hours of training per published study: "
        "tests/test_fetch.py dry-runs config/v1_cpu.yaml from a fresh checkout and runs its fetch "
        "rule; every preset's DAG is dry-run by tests/test_pipeline.py",
    "snakemake -n --configfile config/v1_cpu.yaml": "tests/test_fetch.py",
    "resnet-bench tensorboard": "tests/test_tensorboard.py",
    "bash scripts/study_state.sh": "tests/test_study_state.py (save, a fresh checkout, restore, "
                                   "resume, on a tiny grid)",
    "python scripts/readme_claims.py": "test_claims_block_is_the_published_claims_csv",
    "python scripts/make_imagenet_subset.py": "tests/test_imagenet_pipeline.py::"
        "test_subset_script_links_every_tenth_class (on a fake ILSVRC2012 tree; no ImageNet here)",
    "conda env create -f environment.yml": "no conda in CI (the channels were checked against "
                                           "anaconda.org; see environment.yml)",
}


def readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = block.replace("\\\n", " ")
        found += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    found += re.findall(r"`((?:snakemake|bash|python|resnet-bench|conda) [^`]*)`", text)
    return sorted(set(found))


def test_every_readme_command_is_run_by_a_test_or_says_why_not():
    commands = readme_commands()
    assert len(commands) >= 10, commands  # the extraction itself works
    uncovered = [c for c in commands if not any(c.startswith(k) for k in COVERAGE)]
    assert not uncovered, f"README commands with no test and no reason: {uncovered}"


def test_claims_block_is_the_published_claims_csv(tmp_path):
    script = REPO / "scripts" / "readme_claims.py"
    res = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # ...and the check can fail: a hand-typed verdict in a copy of the README is caught.
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text(encoding="utf-8").replace("**shown**", "**not shown**", 1))
    res = subprocess.run([sys.executable, script, "--check", "--readme", readme],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "readme_claims.py" in res.stderr


def test_a_recipe_with_no_testable_claim_is_one_line_not_an_empty_table(tmp_path, monkeypatch):
    """A study's one-seed fp32 check is a recipe of its own in claims.csv, every row of it not
    testable (n = 1): the block names it in one line instead of an empty table."""
    import pandas as pd
    monkeypatch.syspath_prepend(REPO / "scripts")
    from readme_claims import render
    claims = pd.read_csv(REPO / "results/published/v2-cpu-depth/tables/claims.csv")
    check = claims.assign(recipe="fp32", verdict="not testable", reason="n < 2")
    (tmp_path / "study" / "tables").mkdir(parents=True)
    pd.concat([claims, check]).to_csv(tmp_path / "study/tables/claims.csv", index=False)
    block = render(tmp_path)
    assert f"recipe `fp32`: none of its {len(check)} rows is testable" in block
    assert block.count("| claim (paper) |") == 1  # only the testable recipe has a table
    assert "recipe `cpu400` (" in block and "| `v2-preact-test` (V2 Table 3) | stated |" in block
    assert "**inconclusive** (Holm p = " in block and "seeds per side for 80 % power" in block


def test_cli_commands_run_as_written():
    for cmd, expect in (("resnet-bench models", "plain-basic-20"),
                        ("resnet-bench models --csv", "v1-basic-56"),
                        ("resnet-bench train --help", "--model")):
        res = subprocess.run(cmd.split(), capture_output=True, text=True, env=snakemake_env(),
                             timeout=120)
        assert res.returncode == 0 and expect in res.stdout, (cmd, res.stderr[-2000:])


def _run(wd: Path, cmd: str) -> subprocess.CompletedProcess:
    return run_in(wd, *cmd.split())  # the README's command, as written


@pytest.mark.slow
def test_recovery_commands_work_as_written_after_a_sigkill(tmp_path):
    """The README: a killed pipeline is finished by running the same command again, after
    `snakemake --unlock` when Snakemake reports the stale lock; `snakemake --report report.zip`
    then bundles it. All three exactly as written (no --cores added), on a small grid that is the
    copy's config/config.yaml."""
    wd = workflow_copy(tmp_path / "wf")
    cfg = tiny_default_config(["v1-basic-8"], [0], iterations=240, checkpoint_every=20)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = run_dir(wd, cfg, "v1-basic-8", 0)

    kill_pipeline(pipeline_until_checkpoint(wd, "snakemake --cores all".split(), run), wd)
    assert not (run / "summary.json").exists()

    again = _run(wd, "snakemake --cores all")
    assert again.returncode != 0 and "--unlock" in again.stdout + again.stderr  # the stale lock
    unlock = _run(wd, "snakemake --unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    done = _run(wd, "snakemake --cores all")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = yaml.safe_load((run / "summary.json").read_text())  # JSON is YAML
    assert summary["status"] == "completed" and summary["resumed"] >= 1  # from the checkpoint
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "temp files left behind"

    report = _run(wd, "snakemake --report report.zip")
    assert report.returncode == 0, report.stderr[-2000:]
    assert (wd / "report.zip").stat().st_size > 10_000
    shutil.rmtree(wd / "results", ignore_errors=True)


def _trainers(wd: Path) -> list[int]:
    return [pid for pid, cmd in processes_mentioning(str(wd)) if "resnet-bench train" in cmd]


def _uncorrupted(run: Path, iterations: int) -> dict:
    """The records of one run as an uninterrupted trainer writes them: every iteration logged
    once, in order, each evaluation once, a completed summary; returns the summary."""
    with open(run / "train_log.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == list(range(1, iterations + 1))
    with open(run / "eval_log.csv") as f:
        evals = [(r["iteration"], r["split"]) for r in csv.DictReader(f)]
    assert evals and len(evals) == len(set(evals)), evals
    summary = yaml.safe_load((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["iterations"] == iterations
    assert not (run / "checkpoint.pt").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "temp files left behind"
    return summary


@pytest.mark.slow
def test_kill_recovery_with_orphaned_trainers_ends_with_uncorrupted_records(tmp_path):
    """SIGKILL of Snakemake alone (not of its process group): its trainer runs on, an orphan.
    The README's sequence, as written: `snakemake --unlock` and the same command, whose trainer
    waits for the orphan's lock instead of writing the run beside it; and when the orphan has
    finished first, the same command stops with IncompleteFilesException and
    `snakemake --cores all --rerun-incomplete` finishes it. Both end with whole records.
    (The still-running orphan is paused with SIGSTOP until the rerun's trainer waits for it, so
    that a fast machine cannot finish it first.)"""
    wd = workflow_copy(tmp_path / "wf")
    cfg = tiny_default_config(["v1-basic-8"], [0], iterations=240, checkpoint_every=20)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = run_dir(wd, cfg, "v1-basic-8", 0)
    log = (wd / cfg["results"] / cfg["experiment"] / "logs" / "train" / "synthetic" / "quick"
           / "v1-basic-8" / "seed0.log")
    for case in ("orphan still running", "orphan finished"):
        shutil.rmtree(wd / "results", ignore_errors=True)
        proc = pipeline_until_checkpoint(wd, "snakemake --cores all".split(), run)
        try:
            os.kill(proc.pid, signal.SIGKILL)  # Snakemake only
            proc.wait()
            assert _trainers(wd), "the trainer did not outlive Snakemake"
            # the trainer itself (not its shell): the pid its run's marker names
            orphan = int((run / "resnet-bench.run").read_text().split("pid=")[1].split()[0])
            assert orphan in _trainers(wd)
            if case == "orphan still running":
                os.kill(orphan, signal.SIGSTOP)
            else:
                deadline = time.monotonic() + 600
                while _trainers(wd):
                    assert time.monotonic() < deadline
                    time.sleep(0.5)
                assert (run / "summary.json").exists()
            unlock = _run(wd, "snakemake --unlock")
            assert unlock.returncode == 0, unlock.stderr[-2000:]
            if case == "orphan still running":
                rerun = subprocess.Popen("snakemake --cores all".split(), cwd=wd,
                                         env=snakemake_env(), stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
                deadline = time.monotonic() + 300
                while not (log.exists() and f"waiting for trainer pid {orphan}"
                           in log.read_text()):
                    assert rerun.poll() is None and time.monotonic() < deadline, rerun.stdout.read()
                    time.sleep(0.2)
                os.kill(orphan, signal.SIGCONT)
                said, _ = rerun.communicate(timeout=600)
                assert rerun.returncode == 0, said[-3000:]
            else:
                again = _run(wd, "snakemake --cores all")
                said = again.stdout + again.stderr
                assert again.returncode != 0 and "IncompleteFilesException" in said, said[-3000:]
                assert "--rerun-incomplete" in said
                again = _run(wd, "snakemake --cores all --rerun-incomplete")
                assert again.returncode == 0, again.stderr[-3000:]
            summary = _uncorrupted(run, 240)
            assert summary["resumed"] == 0  # one trainer wrote it from start to end
            assert (wd / cfg["results"] / cfg["experiment"] / "tables" / "runs.csv").exists()
        finally:
            for pid in _trainers(wd):
                os.kill(pid, signal.SIGCONT)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(wd / "results", ignore_errors=True)


def test_quickstart_names_a_missing_configfile_in_one_line():
    # Snakemake itself reads --configfile before the workflow loads and prints a traceback.
    for args in (["--configfile", "config/typo.yaml"], ["--configfile=config/typo.yaml"],
                 ["--configfiles", "config/config.yaml", "config/typo.yaml"]):
        r = subprocess.run(["bash", "quickstart.sh", "pipeline", *args], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (args, r.stderr)
        assert "config/typo.yaml does not exist" in lines[0] and "v1_cpu.yaml" in lines[0]
