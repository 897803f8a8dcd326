"""Bad input, as a hostile new user gives it: every case is refused with status 2 and one line
naming the culprit, no traceback, before any record is written (CLI), or refused by the
pipeline's validation step with the key named (the same rules: resnet_bench.validation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resnet_bench.cli import main
from resnet_bench.pipeline import grid as G

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BASE = ["train", "--model", "v1-basic-8", "--data-option", "train_size=64",
        "--data-option", "test_size=32", "--iterations", "4", "--batch-size", "16", "--no-progress"]

# (class, extra argv, needle that must appear in the one-line message)
CLI_CASES = [
    ("nonsense", ["--lr", "nan"], "lr"), ("nonsense", ["--lr", "inf"], "lr"),
    ("nonsense", ["--lr", "-0.1"], "lr"), ("nonsense", ["--lr", "0"], "lr"),
    ("nonsense", ["--warmup-lr", "nan"], "warmup_lr"), ("nonsense", ["--momentum", "1.0"], "momentum"),
    ("nonsense", ["--momentum", "nan"], "momentum"), ("nonsense", ["--weight-decay", "-1"], "weight_decay"),
    ("nonsense", ["--weight-decay", "inf"], "weight_decay"), ("nonsense", ["--lr-decay", "0"], "lr_decay"),
    ("nonsense", ["--lr-decay", "2"], "lr_decay"), ("nonsense", ["--warmup-error-pct", "101"], "warmup_error_pct"),
    ("nonsense", ["--milestones", "5", "3"], "milestones"), ("nonsense", ["--milestones", "0"], "milestones"),
    ("nonsense", ["--seed", "-1"], "seed"),
    ("coercion", ["--recipe-json", '{"train_window": 20.7}'], "train_window"),
    ("coercion", ["--recipe-json", '{"checkpoint_every": true}'], "checkpoint_every"),
    ("coercion", ["--recipe-json", '{"augment": "yes"}'], "augment"),
    ("coercion", ["--recipe-json", '{"lr": "0.1"}'], "lr"),
    ("coercion", ["--recipe-json", '{"eval_every": 2.5}'], "eval_every"),
    ("coercion", ["--recipe-json", '{"milestones": [1.5]}'], "milestones"),
    ("coercion", ["--recipe-json", '{"milestones": 5}'], "milestones"),
    ("coercion", ["--recipe-json", "[1, 2]"], "mapping"),
    ("coercion", ["--recipe-json", "{not json"], "--recipe-json"),
    ("coercion", ["--recipe-json", '{"bogus": 1}'], "bogus"),
    ("coercion", ["--recipe-json", '{"warmup": "v3"}'], "warmup"),
    ("coercion", ["--recipe-json", '{"name": ""}'], "name"),
    ("coercion", ["--iterations", "20.7"], "--iterations"),
    ("coercion", ["--iterations", "ten"], "--iterations"),
    ("coercion", ["--iterations", "100000000000"], "iterations"),
    ("coercion", ["--iterations", "0"], "iterations"),
    ("coercion", ["--threads", "0"], "threads"),
    ("coercion", ["--data-option", "train_size=abc"], "train_size"),
    ("coercion", ["--data-option", "train_size=0"], "train_size"),
    ("coercion", ["--data-option", "difficulty=hard"], "difficulty"),
    ("coercion", ["--data-option", "bogus=1"], "bogus"),
    ("coercion", ["--data-option", "novalue"], "KEY=VALUE"),
    ("coercion", ["--data-option", "train_size=[1"], "train_size"),
    ("unknown", ["--device", "tpu"], "tpu"), ("unknown", ["--device", "cuda:99"], "cuda:99"),
    ("unknown", ["--model", "v1-basic-9"], "depth 9"), ("unknown", ["--model", "resnet51"], "resnet51"),
    ("unknown", ["--dataset", "imagenet"], "imagenet"), ("unknown", ["--precision", "fp16"], "--precision"),
    ("sizes", ["--batch-size", "65"], "batch_size"),
    ("sizes", ["--val-split", "64"], "val_split"),
    ("sizes", ["--val-split", "60"], "batch_size"),
]


def _one_line(err: str, needle: str) -> None:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("cls, extra, needle", CLI_CASES, ids=[f"{c[0]}:{' '.join(c[1])}" for c in CLI_CASES])
def test_cli_refuses_bad_values_before_any_work(tmp_path, capsys, cls, extra, needle):
    out = tmp_path / "run"
    try:
        code = main([*BASE, *extra, "--out", str(out)])
    except SystemExit as exc:  # argparse's usage errors (our one-line parser)
        code = exc.code
    assert code == 2
    _one_line(capsys.readouterr().err, needle)
    assert not out.exists()  # nothing written


FS_CASES = ["file", "below_file"]


@pytest.mark.parametrize("case", FS_CASES)
def test_cli_filesystem_errors_are_one_line_with_the_path(tmp_path, capsys, case):
    f = tmp_path / "afile"
    f.write_text("x")
    out = f if case == "file" else f / "run"
    assert main([*BASE, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, str(out))
    assert f.read_text() == "x"


def test_corrupt_checkpoint_names_the_path_and_the_way_out(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"garbage")
    assert main([*BASE, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "--discard-checkpoint")
    (out / ".checkpoint.pt.abcd1234").write_bytes(b"litter")
    assert main([*BASE, "--out", str(out), "--discard-checkpoint"]) == 0
    assert (out / "summary.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # litter swept


def test_single_class_dataset_is_refused(tmp_path, capsys):
    import torch
    from resnet_bench.data import ImageDataset
    from resnet_bench.data.prepared import save_prepared
    x = torch.zeros(40, 3, 8, 8, dtype=torch.uint8)
    y = torch.zeros(40, dtype=torch.int64)
    prep = save_prepared(ImageDataset(x, y, x[:8], y[:8], ["only"], name="one", label="one"),
                         tmp_path / "one.pt")
    out = tmp_path / "run"
    assert main([*BASE, "--prepared", str(prep), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "at least 2")
    assert not out.exists()


def _cfg():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _set(path, value):
    def mutate(c):
        node = c
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


# (class, mutation, needle): the pipeline's validation step (schema, then the shared rules)
PIPELINE_CASES = [
    ("nonsense", _set(["recipes", "quick", "lr"], float("nan")), "lr"),
    ("nonsense", _set(["recipes", "quick", "lr"], float("inf")), "lr"),
    ("nonsense", _set(["recipes", "quick", "warmup_lr"], float("nan")), "warmup_lr"),
    ("nonsense", _set(["recipes", "quick", "lr_decay"], 5), "lr_decay"),
    ("coercion", _set(["recipes", "quick", "iterations"], 20.7), "iterations"),
    ("coercion", _set(["recipes", "quick", "iterations"], True), "iterations"),
    ("coercion", _set(["recipes", "quick", "iterations"], "ten"), "iterations"),
    ("coercion", _set(["recipes", "quick", "iterations"], 10**12), "iterations"),
    ("coercion", _set(["recipes", "quick"], [1, 2]), "quick"),
    ("coercion", _set(["datasets", "synthetic", "options", "train_size"], "abc"), "train_size"),
    ("coercion", _set(["threads_per_run"], 0), "threads_per_run"),
    ("unknown", _set(["device"], "tpu"), "device"),
    ("unknown", _set(["bogus"], 1), "bogus"),
    ("unknown", _set(["recipes", "quick", "bogus"], 1), "bogus"),
    ("sizes", _set(["recipes", "quick", "batch_size"], 5000), "batch_size"),
    ("sizes", _set(["recipes", "quick", "val_split"], 4000), "val_split"),
]


@pytest.mark.parametrize("cls, mutate, needle", PIPELINE_CASES,
                         ids=[f"{c[0]}:{c[2]}:{i}" for i, c in enumerate(PIPELINE_CASES)])
def test_pipeline_validation_refuses_with_the_key_named(cls, mutate, needle):
    cfg = _cfg()
    mutate(cfg)
    with pytest.raises(ValueError) as exc:
        G.check_schema(cfg, SCHEMA)
        G.validate(cfg)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg, msg


def test_pipeline_refuses_results_that_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for results in (f, f / "below"):
        with pytest.raises(ValueError, match="not a directory"):
            G.check_results_dir(str(results))


def test_case_table_covers_every_class():
    classes = [c[0] for c in CLI_CASES] + [c[0] for c in PIPELINE_CASES] + ["fs"] * 4 + ["data"]
    assert len(classes) >= 60 and {"nonsense", "coercion", "unknown", "sizes"} <= set(classes)


# --- SIGKILL at seeded random moments: the rerun ends byte-identical, with no litter -------------

import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

KILL_POINTS = 20 if os.environ.get("RESNET_BENCH_KILL_CAMPAIGN") == "1" else 3
TRAIN = [sys.executable, "-m", "resnet_bench.cli", *BASE[:-1], "--iterations", "12",
         "--checkpoint-every", "2", "--eval-every", "5", "--grad-norm-every", "3", "--no-progress"]
RECORDS = ("train_log.csv", "eval_log.csv", "grad_norms.csv", "model.pt")


@pytest.mark.slow
def test_sigkill_at_random_points_reruns_byte_identical(tmp_path):
    t0 = time.time()
    ref = subprocess.run([*TRAIN, "--out", str(tmp_path / "ref")], capture_output=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    span = time.time() - t0
    rng = random.Random(12)
    for k in range(KILL_POINTS):
        out = tmp_path / f"k{k}"
        proc = subprocess.Popen([*TRAIN, "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * span)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        again = subprocess.run([*TRAIN, "--out", str(out)], capture_output=True, timeout=300)
        assert again.returncode == 0, again.stderr
        for name in RECORDS:
            assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), (k, name)
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())
