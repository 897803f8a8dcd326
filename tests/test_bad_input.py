"""Bad input, as a hostile new user gives it: every case is refused with status 2 and one line
naming the culprit, no traceback, before any record is written (CLI), or refused by the
pipeline's validation step with the key named (the same rules: each vocabulary's declaration)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from resnet_bench.cli import main
from resnet_bench.pipeline import grid as G
from resnet_bench.record import RUN_MARKER

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
    ("duplicates", ["--milestones", "2", "2"], "milestones"),
    ("duplicates", ["--data-option", "train_size=128"], "train_size is given twice"),
    ("duplicates", ["--recipe-json", '{"milestones": [2, 2]}'], "milestones"),
    ("duplicates", ["--recipe-json", '{"iterations": 4, "iterations": 3000000}'], "given twice"),
    ("duplicates", ["--recipe-json", '{"lr": 0.1, "lr": 0.1}'], "'lr' is given twice"),
    ("sizes", ["--model", "v1-basic-60000002"], "TB of activations"),
    ("sizes", ["--model", "v2-bottleneck-45002"], "depth <= 37442"),
    ("sizes", ["--seed", str(2**32)], "seed"),
    ("ignored", ["--data-dir", "some/where"], "data_dir"),
    ("ignored", ["--prepared", "some.pt"], "ignored with a prepared file"),
    ("unknown", ["--device", "mps"], "mps"),
    ("unknown", ["--device", "cuda:0:1"], "cuda:0:1"),
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
    (out / RUN_MARKER).write_text("")  # a run directory of the suite's
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
    assert main([*BASE[:3], *BASE[7:], "--prepared", str(prep), "--out", str(out)]) == 2
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
    ("duplicates", _set(["recipes", "quick", "milestones"], [200, 200]), "milestones"),
    ("duplicates", _set(["recipes", "quick", "milestones"], [300, 200]), "milestones"),
    ("sizes", _set(["grid", 0, "depth"], [8, 6000002]), "TB of activations"),
    ("sizes", _set(["grid", 0, "seeds"], [0, 2**32]), "seeds"),
    ("duplicates", _set(["grid", 0, "seeds"], [0, 1, 0]), "without repeated items"),
    ("ignored", _set(["datasets", "synthetic", "root"], "data/cifar"), "datasets.synthetic.root"),
    ("paths", _set(["results"], "a{experiment}b"), "results"),
    ("paths", _set(["results"], "-rf"), "results"),
    ("paths", _set(["results"], ""), "results"),
    ("paths", _set(["results"], "r\n; touch pwned"), "results"),
    ("paths", _set(["results"], "r\n"), "results"),
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
    assert len(classes) >= 85 and {"nonsense", "coercion", "unknown", "sizes", "duplicates",
                                   "ignored", "paths"} <= set(classes)


# --- files handed over: duplicate keys, crafted checkpoints, directories the suite did not make --

def test_duplicate_keys_in_a_recipe_file_are_refused(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("iterations: 4\nlr: 0.1\niterations: 3000000\n")
    out = tmp_path / "run"
    assert main([*BASE, "--recipe-file", str(recipe), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "'iterations' is given twice (lines 1 and 3)")
    assert not out.exists()


@pytest.mark.parametrize("text", ["experiment: a\niterations: 300\nexperiment: b\n",
                                  '{"experiment": "a", "experiment": "b"}',
                                  "recipes:\n  q:\n    lr: 0.1\n    lr: 0.2\n"])
def test_duplicate_keys_in_a_config_file_are_refused(tmp_path, text):
    from resnet_bench.infra.strict import config_file
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="is given twice") as exc:
        config_file(str(path))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_data_prepare_refuses_a_root_the_synthetic_set_would_ignore(tmp_path, capsys):
    out = tmp_path / "synthetic.pt"
    assert main(["data", "prepare", "--dataset", "synthetic", "--root", str(tmp_path),
                 "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "--root")
    assert not out.exists()


def _marked_run(tmp_path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_MARKER).write_text("")  # a run directory of the suite's
    return out


def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path, capsys):
    """A checkpoint is unpickled weights-only: an object whose unpickling would run a command
    is refused, and the command never runs."""
    import torch

    payload = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {payload}",))

    out = _marked_run(tmp_path)
    torch.save({"format": 2, "iteration": 1, "identity": "x", "model": Payload()},
               out / "checkpoint.pt")
    assert main([*BASE, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "nothing in it was run")
    assert not payload.exists()
    assert (out / "checkpoint.pt").exists()  # refused, not deleted


def test_a_checkpoint_of_the_older_format_is_one_line_with_the_way_out(tmp_path, capsys):
    import numpy as np
    import torch
    out = _marked_run(tmp_path)
    torch.save({"iteration": 1, "rng": {"numpy": np.random.get_state()}}, out / "checkpoint.pt")
    assert main([*BASE, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "--discard-checkpoint")
    torch.save({"iteration": 1, "identity": "x"}, out / "checkpoint.pt")  # plain data, no format
    assert main([*BASE, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "format none, expected 2")


def test_out_empty_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*BASE, "--out", ""]) == 2
    _one_line(capsys.readouterr().err, "--out: got ''")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [[], ["--replace-stale"], ["--discard-checkpoint"]])
def test_a_directory_the_suite_did_not_make_is_never_written(tmp_path, capsys, flags):
    out = tmp_path / "mine"
    out.mkdir()
    files = {"config.json": '{"mine": true}', "model.pt": "my weights",
             "checkpoint.pt": "my checkpoint"}
    for name, text in files.items():
        (out / name).write_text(text)
    assert main([*BASE, *flags, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "not a run directory of resnet-bench")
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def _holder(out: Path, seconds: float) -> subprocess.Popen:
    """Another process holding `out` as a trainer does; returns once it holds it."""
    code = ("import sys, time; from pathlib import Path; from resnet_bench.train.rundir import held\n"
            f"with held(Path({str(out)!r})):\n    print('held', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_trainer_on_a_held_run_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder(out, 60)
    try:
        assert main([*BASE, "--out", str(out)]) == 2
        line = capsys.readouterr().err
        _one_line(line, f"trainer pid {holder.pid}")
        assert not (out / "summary.json").exists() and not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main([*BASE, "--out", str(out)]) == 0  # the kernel released the dead holder's lock


def test_wait_for_lock_trains_once_the_holder_is_gone(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder(out, 3)
    t0 = time.monotonic()
    assert main([*BASE, "--wait-for-lock", "--out", str(out)]) == 0
    holder.wait()
    assert time.monotonic() - t0 >= 1.5  # it waited
    assert f"waiting for trainer pid {holder.pid}" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# --- degenerate data -------------------------------------------------------------------------------

def test_images_smaller_than_8x8_are_refused(tmp_path, capsys):
    import torch
    from resnet_bench.data import ImageDataset
    from resnet_bench.data.prepared import save_prepared
    x = torch.randint(0, 256, (64, 3, 1, 1), dtype=torch.uint8)
    y = torch.arange(64) % 2
    prep = save_prepared(ImageDataset(x, y, x[:8], y[:8], ["a", "b"], name="dots", label="dots"),
                         tmp_path / "dots.pt")
    out = tmp_path / "run"
    assert main([*BASE[:3], *BASE[7:], "--prepared", str(prep), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "its images are 1x1; training needs at least 8x8")
    assert not out.exists()


def test_a_class_folder_that_is_a_symbolic_link_is_followed(tmp_path):
    from PIL import Image
    from resnet_bench.data import load_dataset
    elsewhere = tmp_path / "elsewhere"
    for split in ("train", "test"):
        for c, colour in (("cat", 0), ("dog", 255)):
            folder = (elsewhere if c == "dog" else tmp_path / "tree" / split) / (
                f"{split}-dog" if c == "dog" else c)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (colour, i, 0)).save(folder / f"{i}.png")
        (tmp_path / "tree" / split / "dog").symlink_to(elsewhere / f"{split}-dog")
    (tmp_path / "tree" / "train" / "cat" / "loop").symlink_to(tmp_path / "tree")  # a link loop
    ds = load_dataset("folder", tmp_path / "tree")
    assert ds.classes == ["cat", "dog"] and ds.train_y.tolist() == [0, 0, 0, 1, 1, 1]


# --- the tables and figures: non-finite values and malformed tables ---------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*BASE, "--out", str(out)]) == 0
    return out


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


@pytest.mark.parametrize("value", ["nan", "inf", ""])
def test_aggregate_refuses_a_completed_run_with_a_non_finite_loss(finished_run, tmp_path, capsys,
                                                                   value):
    run = _copy_run(finished_run, tmp_path / "run")
    lines = (run / "train_log.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = value
    lines[2] = ",".join(cells)
    (run / "train_log.csv").write_text("\n".join(lines) + "\n")
    assert main(["aggregate", "--runs", str(run), "--out", str(tmp_path / "tables")]) == 2
    _one_line(capsys.readouterr().err, f"{run / 'train_log.csv'}: column loss is")
    assert not (tmp_path / "tables").exists()


@pytest.mark.parametrize("table, column, value", [("runs", "final_test_error_pct", "abc"),
                                                  ("runs", "final_train_error_pct", "inf"),
                                                  ("runs", "final_test_error_pct", ""),
                                                  ("curves", "loss", "-inf"),
                                                  ("curves", "loss", "")])
def test_plot_refuses_a_malformed_table_naming_file_row_column_and_draws_nothing(
        finished_run, tmp_path, capsys, table, column, value):
    import pandas as pd
    tables = tmp_path / "tables"
    assert main(["aggregate", "--runs", str(finished_run), "--out", str(tables)]) == 0
    df = pd.read_csv(tables / f"{table}.csv", dtype=str, keep_default_na=False)
    df.loc[len(df) - 1, column] = value
    df.to_csv(tables / f"{table}.csv", index=False)
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "v1_fig1.png").write_bytes(b"an earlier figure")
    capsys.readouterr()
    assert main(["plot", "--tables", str(tables), "--out", str(figures)]) == 2
    err = capsys.readouterr().err
    _one_line(err, f"{tables / (table + '.csv')}: column {column}")
    assert f"data row {len(df)}" in err
    assert [p.name for p in figures.iterdir()] == ["v1_fig1.png"]  # no figure drawn, none lost
    assert (figures / "v1_fig1.png").read_bytes() == b"an earlier figure"


# --- SIGKILL at seeded random moments: the rerun ends byte-identical, with no litter -------------

import random  # noqa: E402
import signal  # noqa: E402

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


@pytest.mark.slow
def test_sigint_checkpoints_and_exits_75_like_sigterm(tmp_path):
    """Ctrl-C during training: a checkpoint, one line, exit status 75; the same command then
    finishes the run from that checkpoint."""
    out = tmp_path / "run"
    cmd = [*TRAIN[:-1], "--iterations", "400", "--checkpoint-every", "5", "--eval-every", "400",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "SIGINT: checkpoint written at iteration" in err and "Traceback" not in err, err
    stopped = int(err.split("checkpoint written at iteration ")[1].split(";")[0])
    assert 0 < stopped < 400
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == 1 and summary["iterations"] == 400
