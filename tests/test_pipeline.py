"""The Snakemake pipeline: config validation, every preset's DAG, and a real end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from resnet_bench.pipeline import grid as G

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_helpers import (resource_defaults, run_in, tiny_default_config,  # noqa: E402
                              workflow_copy)

RES = resource_defaults()

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.name for p in (REPO / "config").glob("*.yaml"))
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def workdir_copy(tmp_path: Path) -> Path:
    """The workflow in a scratch directory, so tests never touch the repo's results/."""
    return workflow_copy(tmp_path / "wf")


def smk(wd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=wd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def load_config(name: str) -> dict:
    # A preset replaces the default config (see the Snakefile).
    return yaml.safe_load((REPO / "config" / name).read_text())


# --- the grid ----------------------------------------------------------------------------------


def test_analysis_arguments_are_built_from_the_config_with_the_cli_defaults():
    from resnet_bench.pipeline import outputs as O
    config = load_config("config.yaml")
    config["analysis"] = {"gradient_flow": {"models": ["v1-basic-8"], "seed": 0},
                          "layer_responses": {"models": ["v1-basic-8"], "seed": 0,
                                              "max_images": 50},
                          "depth_challenge": {}}
    run = G.analysis_runs(config, "gradient_flow")[0]
    out = f"{config['results']}/{config['experiment']}"
    args = O.analysis_args(config, "gradient_flow").split()
    assert args[:3] == ["gradients", "--runs", run.path(config["results"], config["experiment"])]
    assert "--batch-size" not in args     # unset: the CLI's default, not a second copy of it
    assert args[args.index("--prepared") + 1] == G.prepared_path(config["results"], run.dataset)
    assert G.prepared_path(config["results"], run.dataset) in O.analysis_inputs(config,
                                                                                "gradient_flow")
    responses = O.analysis_args(config, "layer_responses").split()
    assert responses[responses.index("--max-images") + 1] == "50"
    depth = O.analysis_args(config, "depth_challenge").split()
    assert depth[0] == "depth" and depth[depth.index("--tables") + 1] == f"{out}/tables"
    assert f"{out}/tables/curves.csv" in O.analysis_inputs(config, "depth_challenge")
    assert O.analysis_args(config, "identity_path") == ""
    assert O.analysis_outputs("o", "identity_path") == [
        f"o/analysis/{s}.{e}" for s in ("identity_path", "identity_path_maps")
        for e in ("csv", "png", "pdf")]

def test_grid_is_the_product_of_family_depth_dataset_seed():
    cfg = load_config("config.yaml")
    runs = G.validate(cfg)
    entry = cfg["grid"][0]
    assert len(runs) == len(entry["family"]) * len(entry["depth"]) * len(entry["seeds"])
    assert {r.model for r in runs} == {f"{f}-basic-{d}" for f in entry["family"] for d in entry["depth"]}
    run = G.Run("synthetic", "quick", "v1-basic-8", 1)
    assert run.path("results", "quick") == "results/quick/runs/synthetic/quick/v1-basic-8/seed1"


def test_grid_names_are_canonical_and_deduplicated():
    cfg = {"datasets": {"d": {"kind": "synthetic"}}, "recipes": {"r": {"iterations": 5}},
           "grid": [{"models": ["v1-basic-20-optA", "v1-basic-20"], "family": "v1", "depth": 20,
                     "datasets": ["d"], "seeds": [0], "recipe": "r"}]}
    assert [r.model for r in G.validate(cfg)] == ["v1-basic-20"]


@pytest.mark.parametrize("mutation, needle", [
    (lambda c: c["grid"][0].update(depth=[21]), r"6n\+2"),
    (lambda c: c["grid"][0].update(datasets=["imagenet"]), "imagenet"),
    (lambda c: c["grid"][0].update(recipe="nope"), "nope"),
    (lambda c: c["grid"][0].update(variant="optZ"), "optZ"),
])
def test_grid_errors_name_the_problem(mutation, needle):
    cfg = load_config("config.yaml")
    mutation(cfg)
    with pytest.raises(ValueError, match=needle):
        G.validate(cfg)


# --- every preset's DAG -------------------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_dry_runs_with_one_train_job_per_grid_point(tmp_path, preset):
    wd = workdir_copy(tmp_path)
    cfg = load_config(preset)
    (wd / "checked.yaml").write_text(yaml.safe_dump(cfg))
    res = smk(wd, "-n", "--quiet", "rules", "--configfile", "checked.yaml", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = G.validate(cfg)
    trains = [line for line in res.stdout.splitlines() if line.split()[:1] == ["train"]]
    assert trains and int(trains[0].split()[1]) == len(runs), res.stdout


@pytest.mark.parametrize("override, needle", [
    ("bogus_key=1", "bogus_key"),
    ("threads_per_run=0", "threads_per_run"),
    ("device=tpu", "tpu"),
])
def test_invalid_config_fails_before_any_job_with_the_key_named(tmp_path, override, needle):
    wd = workdir_copy(tmp_path)
    res = smk(wd, "-n", "--config", override, timeout=120)
    assert res.returncode != 0
    assert needle in res.stderr + res.stdout
    assert not (wd / "results").exists()


def test_unknown_model_in_the_grid_fails_with_the_valid_choices(tmp_path):
    wd = workdir_copy(tmp_path)
    cfg = load_config("config.yaml")
    cfg["grid"][0]["depth"] = [8, 9]
    (wd / "bad.yaml").write_text(yaml.safe_dump(cfg))
    res = smk(wd, "-n", "--configfile", "bad.yaml", timeout=120)
    text = res.stdout + res.stderr
    assert res.returncode != 0 and "depth 9" in text and "valid: 8, 14, 20" in text


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_pipeline(tmp_path_factory) -> Path:
    """The default pipeline exactly as `snakemake --cores 2` runs it (config/config.yaml: plain/V1/V2
    x 8/32 layers x 2 seeds, every table, figure and analysis). It is not cut down, so that the
    science test below checks what a new user sees."""
    wd = workdir_copy(tmp_path_factory.mktemp("e2e"))
    res = smk(wd, timeout=1800)
    assert res.returncode == 0, res.stderr[-5000:]
    return wd


@pytest.mark.slow
def test_pipeline_produces_every_table_and_figure(finished_pipeline):
    out = finished_pipeline / "results" / "quick"
    for name in ("curves", "runs", "summary", "paper_comparison"):
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0
        assert (out / "tables" / f"{name}.md").stat().st_size > 0
        assert (out / "tables" / f"{name}.tex").read_text().count("\\toprule") == 1
    figs = out / "figures" / "synthetic" / "quick"
    for name in ("v1_fig1", "v1_fig6_left", "v1_fig6_middle", "v1_fig6_right", "v2_fig1", "degradation"):
        for ext in ("png", "pdf", "csv"):
            assert (figs / f"{name}.{ext}").stat().st_size > 0, name
    for name in ("layer_responses", "gradient_flow", "identity_path", "identity_path_maps"):
        for ext in ("png", "pdf", "csv"):
            assert (out / "analysis" / f"{name}.{ext}").stat().st_size > 0, name


@pytest.mark.slow
def test_tables_match_the_run_records(finished_pipeline):
    out = finished_pipeline / "results" / "quick"
    runs = pd.read_csv(out / "tables" / "runs.csv")
    summaries = [json.loads(p.read_text()) for p in (out / "runs").glob("*/*/*/*/summary.json")]
    assert len(runs) == len(summaries) == 12
    by_key = {(s["model"], s["seed"]): s for s in summaries}
    for _, row in runs.iterrows():
        s = by_key[(row["model"], row["seed"])]
        assert row["final_test_error_pct"] == pytest.approx(s["final_test_error_pct"])
        assert row["final_train_error_pct"] == pytest.approx(s["final_train_error_pct"])
    summary = pd.read_csv(out / "tables" / "summary.csv")
    for _, row in summary.iterrows():
        errs = [s["final_test_error_pct"] for s in summaries
                if (s["family"], s["depth"]) == (row["family"], row["depth"])]
        assert row["n"] == len(errs) == 2
        assert row["test_error_mean"] == pytest.approx(sum(errs) / 2)
        assert row["test_error_min"] == pytest.approx(min(errs))


@pytest.mark.slow
def test_figures_show_exactly_the_runs_of_their_panel(finished_pipeline):
    figs = finished_pipeline / "results" / "quick" / "figures" / "synthetic" / "quick"
    left = pd.read_csv(figs / "v1_fig6_left.csv")
    assert set(left["model"]) == {"plain-basic-8", "plain-basic-32"}
    middle = pd.read_csv(figs / "v1_fig6_middle.csv")
    assert set(middle["model"]) == {"v1-basic-8", "v1-basic-32"}
    v2 = pd.read_csv(figs / "v2_fig1.csv")
    assert set(v2["model"]) == {"v1-basic-32", "v2-basic-32"}
    degradation = pd.read_csv(figs / "degradation.csv")
    runs = pd.read_csv(finished_pipeline / "results" / "quick" / "tables" / "runs.csv")
    test_points = degradation[degradation["series"].str.contains("test")]
    merged = test_points.merge(runs, on=["model", "seed"])
    assert len(merged) == 12
    assert (merged["value"] - merged["final_test_error_pct"]).abs().max() < 1e-9


@pytest.mark.slow
def test_default_run_shows_the_degradation_and_its_residual_cure(finished_pipeline):
    """A science regression test: V1's message on the default run's records (final training error,
    mean of 2 seeds). The margins are far inside what the default run shows (at the commit that
    set them: plain 8 -> 32 layers 19.2 -> 86.4 %, V1 29.9 -> 34.6 %, V2 32.3 -> 10.4 %; largest
    seed std 9.2 points), so seeds do not flake it, but a change that breaks the phenomenon does."""
    out = finished_pipeline / "results" / "quick" / "tables"
    runs = pd.read_csv(out / "runs.csv")
    assert (runs["status"] == "completed").all()
    err = runs.groupby(["family", "depth"])["final_train_error_pct"].agg(["mean", "std", "count"])
    assert (err["count"] == 2).all()
    mean, std = err["mean"], err["std"]
    plain_rise = mean["plain", 32] - mean["plain", 8]
    # the deepest plain net is worse than the shallowest, by more than the seeds' spread
    assert plain_rise > 30 and plain_rise > 2 * (std["plain", 32] + std["plain", 8])
    for family in ("v1", "v2"):
        assert mean["plain", 32] - mean[family, 32] > 25, family  # the cure at equal depth
        assert mean[family, 32] - mean[family, 8] < plain_rise - 30, family  # depth hurts less
    # the pipeline's own test agrees in direction: with 2 seeds and the 8 rows of the default
    # grid's family, Holm's adjustment may leave it inconclusive, never contradicted
    claims = pd.read_csv(out / "claims.csv")
    degradation = claims[(claims["claim"] == "v1-degradation") & (claims["metric"] == "train_error")]
    assert len(degradation) == 1 and degradation["p_value"].item() < 0.05
    assert degradation["verdict"].item() in ("shown", "inconclusive")
    assert degradation["p_holm"].item() >= degradation["p_value"].item()


@pytest.mark.slow
def test_restyling_rerenders_figures_without_retraining(finished_pipeline):
    wd = finished_pipeline
    again = smk(wd, "-n", timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    res = smk(wd, "-n", "--quiet", "rules", "--forcerun", "figures",
              timeout=300)
    assert res.returncode == 0
    jobs = {line.split()[0] for line in res.stdout.splitlines()[1:] if line.strip()}
    assert "figures" in jobs and "train" not in jobs and "prepare_data" not in jobs


@pytest.mark.slow
def test_report_holds_every_figure(finished_pipeline):
    res = smk(finished_pipeline, "--report", "report.zip", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    import zipfile
    names = zipfile.ZipFile(finished_pipeline / "report.zip").namelist()
    assert sum(n.endswith(".png") for n in names) >= 6


def test_cluster_resources_grow_with_depth_and_on_retry():
    from resnet_bench.pipeline import resources as R
    from resnet_bench.train.recipe import Recipe
    paper = Recipe()
    r20, r110, r1202 = (R.runtime_min(f"v1-basic-{d}", paper, "gpu", RES) for d in (20, 110, 1202))
    assert r20 < r110 < r1202
    # ResNet-1202 has ~70x the MACs of ResNet-20: the estimate scales with them
    assert r1202 / r110 == pytest.approx(2829.2 / 252.89, rel=0.05)
    m110 = R.mem_mb("v1-basic-110", paper, RES)
    assert R.mem_mb("v1-basic-1202", paper, RES) > m110 < R.mem_mb("v1-basic-110", paper, RES, attempt=2)


@pytest.mark.slow
def test_a_results_path_with_shell_metacharacters_is_only_a_path(tmp_path):
    """`results` reaches every rule's command: with spaces, `;`, `$(...)`, backquotes and both
    quotes in it, every output lands below it and none of the embedded commands runs."""
    wd = workflow_copy(tmp_path / "wf")
    canary = tmp_path / "PWNED"
    weird = (tmp_path / f"r s;touch {canary}1;#" / f"$(touch {canary}2) `touch {canary}3`"
             / "it's \"quoted\" & | > x")
    cfg = tiny_default_config(["v1-basic-8"], [0], iterations=20, checkpoint_every=10)
    cfg["results"] = str(weird)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = sorted(p.name for p in wd.iterdir())
    res = run_in(wd, *SNAKEMAKE, "--cores", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    out = weird / cfg["experiment"]
    summary = json.loads((out / "runs/synthetic/quick/v1-basic-8/seed0/summary.json").read_text())
    assert summary["status"] == "completed"
    assert (weird / "data" / "synthetic.pt").exists()
    assert {p.name for p in (out / "tables").iterdir()} >= {"runs.csv", "claims.csv"}
    assert (out / "figures/synthetic/quick/v1_fig1.png").stat().st_size > 1000
    assert not list(tmp_path.glob("PWNED*")) and not list(wd.glob("PWNED*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["wf", weird.parts[len(tmp_path.parts)]])
    assert sorted(p.name for p in wd.iterdir() if p.name != ".snakemake") == before
