"""scripts/registration.py: a study is registered only when its config, byte for byte, was
committed at the revision its first run recorded, from a clean tree; checked on throwaway git
repositories and on the published studies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import registration  # noqa: E402

SCRIPT = REPO / "scripts" / "registration.py"


def git(repo: Path, *args: str, when: str = "2026-12-01T10:00:00+00:00") -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_AUTHOR_DATE": when,
           "GIT_COMMITTER_DATE": when, "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def commit(repo: Path, files: dict[str, str], when: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"at {when}", when=when)
    return git(repo, "rev-parse", "HEAD")


def run_record(runs: Path, name: str, rev: str, started: str, dirty=False, **extra) -> None:
    d = runs / name
    d.mkdir(parents=True)
    prov = {"code": {"git_commit": rev, "git_dirty": dirty}, "started": started,
            "first_started": started, **extra}
    (d / "provenance.json").write_text(json.dumps(prov))


@pytest.fixture
def repo(tmp_path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    commit(r, {"README": "x\n"}, "2026-12-01T09:00:00+00:00")
    return r


def check(repo: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, "check", str(repo / "study.yaml"), str(runs),
                           "--out", str(repo / "reg.json"), *extra], capture_output=True,
                          text=True)


def test_a_config_committed_before_its_first_run_is_registered(repo, tmp_path):
    rev = commit(repo, {"study.yaml": "lr: 0.1\n"}, "2026-12-01T10:00:00+00:00")
    runs = tmp_path / "runs"
    run_record(runs, "a/seed0", rev, "2026-12-01T11:00:00+00:00")
    # a later run, resumed under a later checkout: only the first start counts
    run_record(runs, "b/seed0", "f" * 40, "2026-12-01T12:00:00+00:00",
               resumes=[{"at_iteration": 5}])
    res = check(repo, runs)
    assert res.returncode == 0, res.stderr
    facts = json.loads((repo / "reg.json").read_text())
    assert facts["registered"] and facts["problem"] == ""
    assert facts["first_run"] == {"run": "a/seed0", "started": "2026-12-01 11:00:00 UTC",
                                  "git_commit": rev, "git_dirty": False}
    assert facts["config_commit"] == {"hash": rev, "time": "2026-12-01 10:00:00 UTC"}
    text = registration.sentence(facts)
    assert text.startswith("**Designed before it ran**")
    assert "committed at 2026-12-01 10:00:00 UTC" in text and "started at 2026-12-01 11:00:00 UTC" in text


def test_a_config_changed_after_the_first_run_is_refused(repo, tmp_path):
    rev = commit(repo, {"study.yaml": "lr: 0.1\n"}, "2026-12-01T10:00:00+00:00")
    runs = tmp_path / "runs"
    run_record(runs, "a/seed0", rev, "2026-12-01T11:00:00+00:00")
    commit(repo, {"study.yaml": "lr: 0.2\n"}, "2026-12-01T13:00:00+00:00")
    res = check(repo, runs)
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "study.yaml differs from the file at" in res.stderr and rev[:7] in res.stderr
    assert not (repo / "reg.json").exists()
    # --unregistered writes the facts instead, and the sentence says so
    assert check(repo, runs, "--unregistered").returncode == 0
    facts = json.loads((repo / "reg.json").read_text())
    assert not facts["registered"]
    assert facts["published_bytes_first_committed"]["time"] == "2026-12-01 13:00:00 UTC"
    text = registration.sentence(facts)
    assert text.startswith("**Not registered**") and "120 min after that start" in text


def test_an_untracked_config_and_a_dirty_tree_are_refused(repo, tmp_path):
    rev = git(repo, "rev-parse", "HEAD")
    runs = tmp_path / "runs"
    run_record(runs, "a/seed0", rev, "2026-12-01T11:00:00+00:00")   # the config not yet in git
    commit(repo, {"study.yaml": "lr: 0.1\n"}, "2026-12-01T12:00:00+00:00")
    res = check(repo, runs)
    assert res.returncode == 1 and "was not committed at" in res.stderr, res.stderr
    rev2 = git(repo, "rev-parse", "HEAD")
    dirty = tmp_path / "dirty"
    run_record(dirty, "a/seed0", rev2, "2026-12-01T13:00:00+00:00", dirty=True)
    res = check(repo, dirty)
    assert res.returncode == 1 and "dirty" in res.stderr, res.stderr
    unknown = tmp_path / "unknown"
    run_record(unknown, "a/seed0", rev2, "2026-12-01T13:00:00+00:00",
               resumes=[{"at_iteration": 5}])   # an old record: the first start's code unknown
    res = check(repo, unknown)
    assert res.returncode == 1 and "recorded no code revision" in res.stderr, res.stderr


PUBLISHED = {  # study -> (config in the repository, registered?)
    "v1-cpu": ("config/v1_cpu.yaml", True),
    "v2-cpu-depth": ("config/v2_cpu_depth.yaml", True),
    "v1-cpu-pilot": ("config/v1_cpu_pilot.yaml", False),        # committed 49 min after its start
    "default-synthetic": ("config/config.yaml", False),         # bf16 lines uncommitted at its start
}


@pytest.mark.parametrize("study", sorted(PUBLISHED))
def test_the_published_studies_registration_and_readme_sentence(study):
    config, registered = PUBLISHED[study]
    folder = REPO / "results" / "published" / study
    # the published copy, checked against git's history of the config it was copied from
    facts = registration.facts(folder / "config.yaml", folder / "runs", path=config)
    assert (not facts.get("problem")) is registered, facts.get("problem")
    recorded = json.loads((folder / "registration.json").read_text())
    assert recorded["registered"] is registered
    assert {k: recorded[k] for k in facts} == facts      # the published facts are git's
    res = subprocess.run([sys.executable, SCRIPT, "readme", str(folder), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
