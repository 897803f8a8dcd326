"""The fidelity table (bf16 seeds against fp32 repeats) on hand-made run tables and records."""

from __future__ import annotations

import math
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


# --- prefix pairs: a shorter fp32 run against its twin over the second half of its iterations ---

LONG = recipe_hash(Recipe(iterations=8, milestones=()).to_dict(), ("precision", "iterations"))


def prefix_tables(losses: dict[tuple[str, int], list[float]], planned: dict[str, int]):
    """Runs and train-log curves from {(precision, seed): per-iteration losses}; the error is
    10x the loss. A NaN loss diverges the run there (its log ends at that iteration)."""
    rows, curves = [], []
    for (precision, seed), loss in losses.items():
        run_id = f"{precision}-s{seed}"
        diverged = any(v != v for v in loss)
        rows.append({"run_id": run_id, "model": "v2-bottleneck-1001", "seed": seed,
                     "dataset": "cifar10-jpeg", "dataset_label": "CIFAR-10 (JPEG q75 mirror)",
                     "recipe": precision, "precision": precision,
                     "recipe_hash_except_precision": f"{precision}-length",
                     "recipe_hash_except_precision_length": LONG,
                     "planned_iterations": planned[precision],
                     "status": "diverged" if diverged else "completed", "duplicate_of": "",
                     "final_train_error_pct": math.nan if diverged else 10 * loss[-1],
                     "final_test_error_pct": math.nan})
        curves += [{"run_id": run_id, "split": "train", "iteration": i + 1, "loss": v,
                    "error_pct": 10 * v} for i, v in enumerate(loss)]
    return pd.DataFrame(rows), pd.DataFrame(curves)


BF16 = {("bf16", 0): [2.4, 2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7],
        ("bf16", 1): [2.4, 2.3, 2.3, 2.3, 2.0, 1.9, 1.8, 1.7],
        ("bf16", 2): [2.4, 2.3, 2.1, 2.0, 2.0, 1.9, 1.8, 1.7]}
PLANNED = {"bf16": 8, "fp32": 4}


def test_a_shorter_fp32_run_is_compared_with_its_twin_over_its_second_half():
    # window 3-4: bf16 seed means 2.15, 2.30, 2.05 -> spread 0.25; twin (seed 0) 2.15
    runs, curves = prefix_tables({**BF16, ("fp32", 0): [2.4, 2.3, 2.3, 2.2]}, PLANNED)
    table = fidelity_table(runs, curves)
    assert set(table["metric"]) == {"train_loss", "train_error"} and set(table["window"]) == {"3-4"}
    loss = one(table, "v2-bottleneck-1001", "train_loss")
    assert loss["reference_values"] == "2.25" and loss["n"] == 3
    assert loss["mean"] == pytest.approx(statistics.fmean([2.15, 2.30, 2.05]))
    assert loss["max_abs_diff"] == pytest.approx(0.10)
    assert (loss["band_low"], loss["band_high"]) == (pytest.approx(1.90), pytest.approx(2.40))
    assert loss["verdict"] == "consistent" and "0.100 (seed 0) <= seed spread 0.250" \
        in loss["reason"]
    error = one(table, "v2-bottleneck-1001", "train_error")     # the same, 10x
    assert error["verdict"] == "consistent" and error["max_abs_diff"] == pytest.approx(1.0)
    # without the train logs there is nothing to compare over: no final-value pair either
    assert one(fidelity_table(runs), "v2-bottleneck-1001")["verdict"] == "not testable"


def test_a_prefix_pair_further_apart_than_the_seeds_or_diverging_alone_is_not_consistent():
    runs, curves = prefix_tables({**BF16, ("fp32", 0): [2.4, 2.3, 2.6, 2.5]}, PLANNED)
    loss = one(fidelity_table(runs, curves), "v2-bottleneck-1001", "train_loss")
    assert loss["verdict"] == "not consistent" and "0.400 (seed 0) > seed spread 0.250" \
        in loss["reason"]
    runs, curves = prefix_tables({**BF16, ("fp32", 0): [2.4, 2.3, 2.3, math.nan]}, PLANNED)
    loss = one(fidelity_table(runs, curves), "v2-bottleneck-1001", "train_loss")
    assert loss["verdict"] == "not consistent"
    assert "seed 0 diverged by iteration 4 in fp32 only" in loss["reason"]
    runs, curves = prefix_tables({**BF16, ("fp32", 0): [2.4, math.nan]}, PLANNED)   # before it
    assert "seed 0 diverged by iteration 4 in fp32 only" in one(
        fidelity_table(runs, curves), "v2-bottleneck-1001", "train_loss")["reason"]
    # a twin diverging after the window does not count against the prefix
    late = {**BF16, ("bf16", 0): [*BF16["bf16", 0][:6], math.nan]}
    runs, curves = prefix_tables({**late, ("fp32", 0): [2.4, 2.3, 2.3, 2.2]}, PLANNED)
    assert one(fidelity_table(runs, curves), "v2-bottleneck-1001")["verdict"] == "consistent"


def test_a_prefix_pair_needs_two_seeds_and_the_twin():
    two = {("bf16", 1): BF16["bf16", 1], ("fp32", 0): [2.4, 2.3, 2.3, 2.2]}
    runs, curves = prefix_tables(two, PLANNED)
    r = one(fidelity_table(runs, curves), "v2-bottleneck-1001")
    assert r["verdict"] == "not testable" and "no reduced-precision twin of seed 0" in r["reason"]
    one_seed = {("bf16", 0): BF16["bf16", 0], ("fp32", 0): [2.4, 2.3, 2.3, 2.2]}
    runs, curves = prefix_tables(one_seed, PLANNED)
    r = one(fidelity_table(runs, curves), "v2-bottleneck-1001")
    assert r["verdict"] == "not testable" and "n=1" in r["reason"]


def test_aggregate_pairs_a_shorter_fp32_run_from_the_records(tmp_path, capsys):
    runs = tmp_path / "runs"
    knobs = {"milestones": [], "lr": 0.1, "warmup": "v2", "warmup_iters": 20}
    dirs = [write_run(runs, family="v2", block="bottleneck", depth=1001, seed=seed,
                      recipe="bf16", precision="bf16", iterations=120,
                      recipe_knobs={**knobs, "channels_last": True}) for seed in (0, 1)]
    write_run(runs, family="v2", block="bottleneck", depth=1001, seed=0, recipe="fp32",
              iterations=40, eval_every=40,
              recipe_knobs={**knobs, "activation_checkpointing": True})
    out = tmp_path / "tables"
    assert main(["aggregate", "--runs", str(runs), "--out", str(out)]) == 0
    assert "2 fidelity row(s)" in capsys.readouterr().out
    table = read_table(out, "fidelity")
    loss = one(table, "v2-bottleneck-1001", "train_loss")
    assert (loss["window"], loss["reference_recipe"]) == ("21-40", "fp32")
    # recomputed here from the train logs the records hold
    means = [pd.read_csv(d / "train_log.csv").query("21 <= iteration <= 40")["loss"].mean()
             for d in dirs]
    fp32 = pd.read_csv(runs / "v2-bottleneck-1001_synthetic_fp32_s0" / "train_log.csv")
    diff = abs(fp32.query("21 <= iteration <= 40")["loss"].mean() - means[0])
    spread = abs(means[0] - means[1])
    assert loss["max_abs_diff"] == pytest.approx(diff, abs=1e-9)
    assert loss["verdict"] == ("consistent" if diff <= spread else "not consistent")
    assert f"seed spread {spread:.3f} over iterations 21-40" in loss["reason"]
    md = (out / "fidelity.md").read_text()
    assert "Prefix rule" in md and "training loss, mean over iterations 21-40" in md
    header = next(line for line in (out / "fidelity.tex").read_text().splitlines()
                  if line.startswith("dataset &"))
    assert "& metric & iterations & fp32 recipe &" in header     # the window, shown only here
