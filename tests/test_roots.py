"""Several results roots in one set of tables (`resnet-bench aggregate --roots`, the pipeline's
`extra_results`): runs paired by identity, each counted once, every row naming its root."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from resnet_bench.cli import main as cli_main
from resnet_bench.record import RecordError
from resnet_bench.schema import read_table
from resnet_bench.tables.aggregate import load_runs

sys.path.insert(0, str(Path(__file__).parent))
from records import write_run  # noqa: E402

NETS = (("plain", 20), ("v1", 20))


def _run(root: Path, family: str, depth: int, seed: int, identity: str | None = "design-a",
         **kw) -> Path:
    d = write_run(root, family=family, depth=depth, seed=seed, dataset="cifar10-jpeg",
                  recipe="r", run_name=f"cifar10-jpeg/r/{family}-basic-{depth}/seed{seed}", **kw)
    if identity is not None:   # as the trainer records it: a hash of the design and the seed
        s = json.loads((d / "summary.json").read_text())
        s["identity"] = f"{identity}-{family}-{depth}-{seed}"
        (d / "summary.json").write_text(json.dumps(s))
    return d


@pytest.fixture()
def two_roots(tmp_path):
    """This machine: seeds 0 and 1; another machine: seeds 1 (the very same runs, copied with
    the study's state) and 2."""
    here, there = tmp_path / "here" / "runs", tmp_path / "there" / "runs"
    for family, depth in NETS:
        for seed in (0, 1):
            _run(here, family, depth, seed)
        shutil.copytree(here / f"cifar10-jpeg/r/{family}-basic-{depth}/seed1",
                        there / f"cifar10-jpeg/r/{family}-basic-{depth}/seed1")
        _run(there, family, depth, 2)
    return here, there


def test_two_roots_with_an_overlapping_run_count_it_once(two_roots, tmp_path, capsys):
    here, there = two_roots
    assert cli_main(["aggregate", "--runs", str(here), "--roots", str(there),
                     "--out", str(tmp_path / "tables")]) == 0
    assert "2 run(s) found again in another root, counted once" in capsys.readouterr().out
    runs = read_table(tmp_path / "tables", "runs")
    assert len(runs) == 8 and sorted(runs["seed"].astype(int)) == [0, 0, 1, 1, 1, 1, 2, 2]
    copies = runs[runs["duplicate_of"] != ""]
    assert len(copies) == 2 and (copies["seed"].astype(int) == 1).all()
    for _, row in runs.iterrows():
        seed = int(row["seed"])
        # every record is kept with its provenance, and says which root it was read from
        assert Path(row["path"], "provenance.json").is_file()
        in_there = Path(row["path"]).is_relative_to(there)
        assert row["root"] == (str(there) if in_there else str(here / "cifar10-jpeg/r"))
        if seed == 1:   # the copy names the other root's record of the same run
            twin = runs[(runs["model"] == row["model"]) & (runs["seed"] == row["seed"])
                        & (runs["run_id"] != row["run_id"])].iloc[0]
            assert row["duplicate_of"] == twin["run_id"] or twin["duplicate_of"] == row["run_id"]
    summary = read_table(tmp_path / "tables", "summary")
    assert summary["n"].astype(int).tolist() == [3, 3]
    # the statistics are those of the three distinct runs, recomputed from the records
    v1 = runs[(runs["model"] == "v1-basic-20") & (runs["duplicate_of"] == "")][
        "final_test_error_pct"].astype(float)
    got = summary.loc[summary["family"] == "v1", "test_error_mean"].astype(float).iloc[0]
    assert got == pytest.approx(v1.mean(), abs=1e-6) and len(v1) == 3
    claims = read_table(tmp_path / "tables", "claims")
    resnet_vs_plain = claims[claims["lower_model"] == "v1-basic-20"]
    assert len(resnet_vs_plain) == 2 and (resnet_vs_plain["lower_n"].astype(int) == 3).all()
    assert "duplicate_of" in (tmp_path / "tables" / "runs.md").read_text()


def test_records_without_an_identity_pair_by_their_train_log(tmp_path):
    here, there = tmp_path / "a", tmp_path / "b"
    _run(here, "v1", 20, 0, identity=None)
    _run(here, "v1", 20, 1, identity=None)
    shutil.copytree(here / "cifar10-jpeg/r/v1-basic-20/seed1", there / "seed1")
    runs = load_runs([here], roots=[there]).runs
    assert len(runs) == 3 and (runs["duplicate_of"] != "").sum() == 1


def test_two_designs_under_one_name_are_refused(two_roots, tmp_path):
    here, _ = two_roots
    other = tmp_path / "other"
    _run(other, "v1", 20, 1, identity="design-b", recipe_knobs={"lr": 0.05})
    with pytest.raises(RecordError) as err:
        load_runs([here], roots=[other])
    msg = str(err.value)
    assert "\n" not in msg and "two designs under one name" in msg and "v1-basic-20 seed 1" in msg


def test_one_root_is_as_before(two_roots):
    here, _ = two_roots
    runs = load_runs([here]).runs
    assert len(runs) == 4 and (runs["duplicate_of"] == "").all()
    assert runs["run_id"].tolist()[0].count("/") == 1   # relative to the common parent, as before
    assert set(runs["root"]) == {str(here / "cifar10-jpeg/r")}
    assert pd.Series(runs["identity"]).str.startswith("design-a").all()


def test_the_pipeline_passes_extra_results_to_aggregate(tmp_path):
    """config key extra_results -> `resnet-bench aggregate --roots` (quoted), and the schema
    refuses anything but a list of paths."""
    import subprocess
    from pipeline_helpers import workflow_copy
    wf = workflow_copy(tmp_path / "wf")
    root = "other machine/results/quick/runs"   # a space: the rule quotes it
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1",
                        "--config", f"extra_results=['{root}']"], cwd=wf, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"--roots '{root}' > results/quick/logs/tables.log" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1",
                          "--config", "extra_results=3"], cwd=wf, capture_output=True,
                         text=True, timeout=600)
    assert bad.returncode != 0 and "extra_results" in bad.stdout + bad.stderr
