"""The run record (resnet_bench.record): one definition, written by the trainer, read strictly."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from resnet_bench.record import (COST_KEYS, REQUIRED_KEYS, RESULT_KEYS, STATUSES, RecordError,
                                 Summary, read_summary)
from resnet_bench.train.records import write_json


def _summary(**overrides) -> Summary:
    values = dict(
        status="completed", identity="abc123", model="v1-basic-20", family="v1", block="basic",
        depth=20, variant="optA", dataset="synthetic", dataset_label="Synthetic", seed=0,
        recipe="quick", iterations=120, target_iterations=120, diverged_at=None,
        final_train_loss=0.5, final_train_error_pct=12.5, train_window=10,
        final_test_loss=0.7, final_test_error_pct=20.25, wall_time_s=10.0, train_time_s=8.0,
        compile_time_s=0.0, images_per_s=1000.0, tflops_per_s=0.5, params=270410, macs=40_000_000,
        precision="fp32", activation_checkpointing=False, oom_fallback_at=None, resumed=0,
        device="cpu")
    values.update(overrides)
    return Summary(**values)


def _write(tmp_path, data: dict):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    return path


def test_round_trip_through_the_trainers_writer(tmp_path):
    s = _summary()
    write_json(tmp_path / "summary.json", s.to_dict())
    assert read_summary(tmp_path / "summary.json") == s


def test_diverged_run_reads_back_with_null_results(tmp_path):
    s = _summary(status="diverged", iterations=37, diverged_at=37, final_train_loss=math.nan,
                 final_train_error_pct=math.nan, final_test_loss=math.nan,
                 final_test_error_pct=math.nan)
    write_json(tmp_path / "summary.json", s.to_dict())  # NaN -> null
    back = read_summary(tmp_path / "summary.json")
    assert all(getattr(back, k) is None for k in RESULT_KEYS)
    assert back.diverged_at == 37 and back.status == "diverged"


def test_required_keys_are_those_every_record_carries():
    # records written before identity/target_iterations/... existed must still read
    assert set(REQUIRED_KEYS) == {
        "status", "model", "family", "block", "depth", "variant", "dataset", "dataset_label",
        "seed", "recipe", "iterations", "final_train_loss", "final_train_error_pct",
        "final_test_loss", "final_test_error_pct", "wall_time_s", "train_time_s",
        "compile_time_s", "images_per_s", "tflops_per_s", "params", "macs",
        "activation_checkpointing", "resumed", "device"}
    assert all(f.metadata["help"] for f in fields(Summary))


def test_older_record_without_optional_keys(tmp_path):
    data = {k: v for k, v in _summary().to_dict().items() if k in REQUIRED_KEYS}
    back = read_summary(_write(tmp_path, {**data, "a_key_from_the_future": 1}))
    assert back.target_iterations is None and back.identity is None
    assert back.final_test_error_pct == 20.25


def _one_line_error(tmp_path, data) -> str:
    with pytest.raises(RecordError) as err:
        read_summary(_write(tmp_path, data))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "summary.json") in message
    return message


def test_missing_key_is_refused_in_one_line(tmp_path):
    data = _summary().to_dict()
    del data["seed"], data["macs"]
    assert "missing key(s) seed, macs" in _one_line_error(tmp_path, data)


def test_bad_status_is_refused_in_one_line(tmp_path):
    data = {**_summary().to_dict(), "status": "preempted"}
    assert (f"status must be one of {', '.join(STATUSES)}, got 'preempted'"
            in _one_line_error(tmp_path, data))


@pytest.mark.parametrize("key, value, expected", [
    ("family", "v3", "family must be one of plain, v1, v2"),
    ("depth", 0, "depth must be an integer >= 1"),
    ("seed", "0", "seed must be an integer >= 0"),
    ("final_test_error_pct", 101.0, "final_test_error_pct must be a percentage in [0, 100]"),
    ("final_train_loss", None, "final_train_loss is null"),
    ("params", "many", "params must be a number"),
    ("model", "v1-basic-56", "does not match family/block/depth 'v1-basic-20'"),
    ("target_iterations", -1, "target_iterations must be an integer >= 0"),
])
def test_bad_values_are_refused_in_one_line(tmp_path, key, value, expected):
    assert expected in _one_line_error(tmp_path, {**_summary().to_dict(), key: value})


def test_costs_may_be_null_for_any_run(tmp_path):
    data = {**_summary().to_dict(), **{k: None for k in COST_KEYS}}
    back = read_summary(_write(tmp_path, data))
    assert all(getattr(back, k) is None for k in COST_KEYS)


def test_top5_is_optional_and_checked(tmp_path):
    data = _summary().to_dict()
    assert data["final_test_top5_error_pct"] is None  # CIFAR runs: null
    assert read_summary(_write(tmp_path, {**data, "final_test_top5_error_pct": 3.5})
                        ).final_test_top5_error_pct == 3.5
    del data["final_test_top5_error_pct"]  # records written before the key existed
    assert read_summary(_write(tmp_path, data)).final_test_top5_error_pct is None
    message = _one_line_error(tmp_path, {**data, "final_test_top5_error_pct": 120.0})
    assert "final_test_top5_error_pct must be a percentage" in message
