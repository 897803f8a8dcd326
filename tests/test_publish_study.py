"""scripts/publish_study.sh publishes a study only when its runs are exactly the config's grid,
each finished, and its config was committed before its first run (scripts/registration.py);
what it publishes is remade from the copied records."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from pipeline_helpers import REPO, run_in, tiny_default_config
from records import write_run
from test_registration import commit, git, registration

SCRIPT = REPO / "scripts" / "publish_study.sh"
MODELS, SEEDS = ["plain-basic-8", "v1-basic-8"], [0, 1]


def _study(tmp_path, claims=None):
    """A git repository whose study.yaml is committed before its runs (which record that
    revision, clean, at their start)."""
    cfg = tiny_default_config(MODELS, SEEDS, iterations=120, checkpoint_every=40)
    if claims:
        cfg["claims"] = claims
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("results/\npublished/\n")
    rev = commit(tmp_path, {"study.yaml": yaml.safe_dump(cfg)}, "2026-12-01T10:00:00+00:00")
    runs = tmp_path / "results" / cfg["experiment"] / "runs"

    def run(family: str, seed: int, **kw):
        d = write_run(runs, family=family, depth=8, seed=seed, dataset="synthetic",
                      recipe="quick", run_name=f"synthetic/quick/{family}-basic-8/seed{seed}", **kw)
        started = f"2026-12-01T11:0{seed}:00+00:00"
        (d / "provenance.json").write_text(json.dumps({
            "code": {"git_commit": rev, "git_dirty": False}, "started": started,
            "first_started": started}))
        return d
    return cfg["experiment"], run


def _publish(tmp_path, exp, *extra):
    return run_in(tmp_path, "bash", str(SCRIPT), exp, "study.yaml", "published", *extra)


def test_a_study_with_an_unstarted_or_part_trained_run_is_refused(tmp_path):
    exp, run = _study(tmp_path)
    run("plain", 0), run("plain", 1), run("v1", 0)
    refused = _publish(tmp_path, exp)  # v1 seed 1 never started: no folder at all
    assert refused.returncode == 1, refused.stderr
    assert "1 of 4 runs of the grid are not finished" in refused.stderr and "v1-basic-8/seed1" in refused.stderr
    part = run("v1", 1, skip=("summary.json",))
    (part / "checkpoint.pt").write_bytes(b"")
    refused = _publish(tmp_path, exp)
    assert refused.returncode == 1 and "v1-basic-8/seed1" in refused.stderr, refused.stderr
    assert not (tmp_path / "published").exists()


def test_runs_outside_the_grid_and_a_wrong_experiment_are_refused(tmp_path):
    exp, run = _study(tmp_path)
    for family in ("plain", "v1"):
        for seed in SEEDS:
            run(family, seed)
    run("v1", 2)  # a leftover of an earlier grid would be published as part of this one
    refused = _publish(tmp_path, exp)
    assert refused.returncode == 1 and "not in study.yaml's grid" in refused.stderr, refused.stderr
    wrong = _publish(tmp_path, "other")
    assert wrong.returncode == 1 and "is experiment" in wrong.stderr, wrong.stderr
    for args in ([], ["x", "missing.yaml", "out"]):
        r = run_in(tmp_path, "bash", str(SCRIPT), *args)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr


def test_a_finished_study_is_published_from_its_copied_records(tmp_path):
    exp, run = _study(tmp_path)
    for family in ("plain", "v1"):
        for seed in SEEDS:
            d = run(family, seed)
            (d / "model.pt").write_bytes(b"weights")
    done = _publish(tmp_path, exp)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "published"
    assert yaml.safe_load((out / "config.yaml").read_text())["experiment"] == exp
    assert not list(out.glob("runs/**/model.pt"))  # records and provenance, not the weights
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert sorted(runs["model"].unique()) == MODELS and len(runs) == 4
    assert (out / "tables" / "claims.csv").is_file() and list(out.glob("figures/*.png"))


def test_a_study_whose_config_changed_after_its_first_run_is_refused(tmp_path):
    exp, run = _study(tmp_path)
    for family in ("plain", "v1"):
        for seed in SEEDS:
            run(family, seed)
    cfg = yaml.safe_load((tmp_path / "study.yaml").read_text())
    cfg["recipes"]["quick"]["lr"] = 0.05          # the design, edited after the runs started
    commit(tmp_path, {"study.yaml": yaml.safe_dump(cfg)}, "2026-12-01T12:00:00+00:00")
    refused = _publish(tmp_path, exp)
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "not registered: study.yaml differs from the file at" in refused.stderr
    assert not (tmp_path / "published").exists() and not list(tmp_path.glob(".publish.*"))
    # said out loud, it is published as not registered, and its README says so
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "README.md").write_text(
        f"# Study\n\n{registration.BEGIN}\nold\n{registration.END}\n")
    done = run_in(tmp_path, "bash", str(SCRIPT), "--unregistered", exp, "study.yaml", "published")
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads((tmp_path / "published" / "registration.json").read_text())
    assert facts["registered"] is False
    readme = (tmp_path / "published" / "README.md").read_text()
    assert "**Not registered**" in readme and "\nold\n" not in readme


def test_a_registered_family_reaches_the_published_claims(tmp_path):
    exp, run = _study(tmp_path, claims=["v1-degradation"])
    for family in ("plain", "v1"):
        for seed in SEEDS:
            run(family, seed)
    done = _publish(tmp_path, exp)
    assert done.returncode == 0, done.stderr[-3000:]
    claims = pd.read_csv(tmp_path / "published" / "tables" / "claims.csv")
    other = claims[claims["claim"] == "v1-resnet-vs-plain"]
    assert (other["verdict"] == "not testable").all()
    assert other["reason"].str.contains("registered family").all()
    assert json.loads((tmp_path / "published" / "registration.json").read_text())["registered"]
