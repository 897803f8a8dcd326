"""The fidelity table (bf16 seeds against fp32 repeats) on hand-made run tables and records."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from records import write_run  # noqa: E402

from resnet_bench.cli import main  # noqa: E402
from resnet_bench.record import recipe_hash  # noqa: E402
from resnet_bench.schema import FIDELITY_COLUMNS, read_table  # noqa: E402
from resnet_bench.tables.fidelity import fidelity_table  # noqa: E402
from resnet_bench.train.recipe import Recipe  # noqa: E402

SAME = recipe_hash(Recipe(iterations=7000, milestones=(5500, 6250)).to_dict(), ("precision",))
OTHER = recipe_hash(Recipe(iterations=3000, milestones=(2000, 2500)).to_dict(), ("precision",))


def runs_table(entries) -> pd.DataFrame:
    """(model, recipe, precision, recipe hash, [final errors per seed]); "div": a diverged seed.
    The value is the final training and test error alike."""
    rows = []
    for model, recipe, precision, rhash, values in entries:
        for seed, v in enumerate(values):
            x = float("nan") if v == "div" else float(v)
            rows.append({"model": model, "seed": seed, "dataset": "cifar10-jpeg",
                         "dataset_label": "CIFAR-10 (JPEG q75 mirror)", "recipe": recipe,
                         "precision": precision, "recipe_hash_except_precision": rhash,
                         "status": "diverged" if v == "div" else "completed",
                         "final_train_error_pct": x, "final_test_error_pct": x})
    return pd.DataFrame(rows)


def one(table, model, metric="train_error", **match) -> pd.Series:
    sel = table[(table["model"] == model) & (table["metric"] == metric)]
    for key, value in match.items():
        sel = sel[sel[key] == value]
    assert len(sel) == 1, sel
    return sel.iloc[0]


BF16_20, BF16_56 = [12.16, 12.31, 12.33], [11.24, 11.33, 11.40]


def test_consistent_not_consistent_and_not_testable():
    table = fidelity_table(runs_table([
        ("v1-basic-20", "bf16", "bf16", SAME, BF16_20),
        ("v1-basic-20", "fp32", "fp32", SAME, [12.40]),     # inside the band
        ("v1-basic-56", "bf16", "bf16", SAME, BF16_56),
        ("v1-basic-56", "fp32", "fp32", SAME, [12.00]),     # far outside it
        ("plain-basic-20", "bf16", "bf16", SAME, [15.7, 15.0, 15.7]),  # no fp32 repeat
        ("plain-basic-56", "bf16", "bf16", SAME, [44.0]),
        ("plain-basic-56", "fp32", "fp32", SAME, [43.0]),   # one bf16 seed: no spread
    ]))
    assert list(table.columns) == FIDELITY_COLUMNS
    assert len(table) == 4 * 2     # one row per reduced-precision (model, recipe) and metric
    r20 = one(table, "v1-basic-20")
    mean, std = statistics.fmean(BF16_20), statistics.stdev(BF16_20)
    assert (r20["mean"], r20["std"], r20["n"]) == (pytest.approx(mean), pytest.approx(std), 3)
    assert (r20["band_low"], r20["band_high"]) == (pytest.approx(mean - 2 * std),
                                                  pytest.approx(mean + 2 * std))
    assert r20["reference_recipe"] == "fp32" and r20["reference_values"] == "12.40"
    assert r20["max_abs_diff"] == pytest.approx(12.40 - mean)
    assert r20["verdict"] == "consistent"
    r56 = one(table, "v1-basic-56")
    assert r56["verdict"] == "not consistent" and "12.00 outside" in r56["reason"]
    nofp32 = one(table, "plain-basic-20")
    assert nofp32["verdict"] == "not testable" and "no fp32 run" in nofp32["reason"]
    assert nofp32["n"] == 3     # the seeds are still summarised
    single = one(table, "plain-basic-56", "test_error")
    assert single["verdict"] == "not testable" and "n=1" in single["reason"]


def test_only_a_recipe_equal_but_for_precision_is_a_reference():
    table = fidelity_table(runs_table([
        ("v1-basic-20", "bf16", "bf16", SAME, BF16_20),
        ("v1-basic-20", "short-fp32", "fp32", OTHER, [12.30]),   # another schedule
    ]))
    r = one(table, "v1-basic-20")
    assert r["verdict"] == "not testable" and r["reference_recipe"] == ""


def test_each_reference_run_must_be_inside_and_a_divergence_is_a_difference():
    table = fidelity_table(runs_table([
        ("v1-basic-20", "bf16", "bf16", SAME, BF16_20),
        ("v1-basic-20", "fp32", "fp32", SAME, [12.30, 14.0]),
        ("v1-basic-56", "bf16", "bf16", SAME, [*BF16_56, "div"]),
        ("v1-basic-56", "fp32", "fp32", SAME, [11.3]),
    ]))
    r20 = one(table, "v1-basic-20")
    assert r20["reference_n"] == 2 and r20["verdict"] == "not consistent"
    assert "14.00 outside" in r20["reason"] and "12.30" not in r20["reason"]
    r56 = one(table, "v1-basic-56")
    assert r56["verdict"] == "not consistent" and "1 of 4 reduced" in r56["reason"]


def test_no_reduced_precision_run_gives_an_empty_table():
    table = fidelity_table(runs_table([("v1-basic-20", "fp32", "fp32", SAME, [12.4, 12.5])]))
    assert table.empty and list(table.columns) == FIDELITY_COLUMNS


def test_aggregate_pairs_records_by_their_recipes(tmp_path, capsys):
    runs = tmp_path / "runs"
    schedule = {"milestones": [90, 105], "lr": 0.1}
    for seed, err in enumerate([20.0, 21.0, 22.5]):
        write_run(runs, depth=20, seed=seed, recipe="bf16", precision="bf16",
                  recipe_knobs={**schedule, "channels_last": True}, final_test_error=err)
    write_run(runs, depth=20, seed=0, recipe="fp32", final_test_error=21.5,
              recipe_knobs=schedule)
    # same name and precision, a different lr: not a repeat of the bf16 recipe
    write_run(runs, depth=20, seed=0, recipe="fp32-lr", final_test_error=21.0,
              recipe_knobs={**schedule, "lr": 0.05})
    out = tmp_path / "tables"
    assert main(["aggregate", "--runs", str(runs), "--out", str(out)]) == 0
    assert "2 fidelity row(s)" in capsys.readouterr().out
    assert set(read_table(out, "runs")["precision"]) == {"bf16", "fp32"}
    table = read_table(out, "fidelity")
    test = one(table, "v1-basic-20", "test_error")
    assert (test["reference_recipe"], test["reference_values"]) == ("fp32", "21.50")
    assert test["verdict"] == "consistent"
    md = (out / "fidelity.md").read_text()
    assert "mean ± 2 std" in md and "**consistent**" in md and "21.50 (`fp32`)" in md
