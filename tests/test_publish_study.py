"""scripts/publish_study.sh publishes a study only when its runs are exactly the config's grid,
each finished; what it publishes is remade from the copied records."""

from __future__ import annotations

import pandas as pd
import yaml

from pipeline_helpers import REPO, run_in, tiny_default_config
from records import write_run

SCRIPT = REPO / "scripts" / "publish_study.sh"
MODELS, SEEDS = ["plain-basic-8", "v1-basic-8"], [0, 1]


def _study(tmp_path):
    cfg = tiny_default_config(MODELS, SEEDS, iterations=120, checkpoint_every=40)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    runs = tmp_path / "results" / cfg["experiment"] / "runs"

    def run(family: str, seed: int, **kw):
        return write_run(runs, family=family, depth=8, seed=seed, dataset="synthetic", recipe="quick",
                         run_name=f"synthetic/quick/{family}-basic-8/seed{seed}", **kw)
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
