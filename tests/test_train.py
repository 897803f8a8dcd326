"""The training engine: recipe, real short runs, resume (also after SIGKILL), SIGTERM, divergence."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_bench.cli import main
from resnet_bench.data import prepare_dataset
from resnet_bench.train.exits import EXIT_PREEMPTED
from resnet_bench.train.loop import train
from resnet_bench.train.recipe import Recipe, RecipeError, RunConfig
from mirror import require_mirror

SMALL = {"train_size": 512, "test_size": 256}


def tiny_recipe(**overrides) -> Recipe:
    base = dict(iterations=12, milestones=(8,), batch_size=32, eval_every=5, checkpoint_every=4,
                eval_batch_size=128, train_window=4, name="tiny")
    base.update(overrides)
    return Recipe(**base)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "synthetic-small.pt"
    prepare_dataset("synthetic", None, path, **SMALL)
    return str(path)


# --- the recipe ------------------------------------------------------------------------------

def test_paper_schedule_is_an_explicit_function_of_the_iteration():
    r = Recipe()
    assert (r.iterations, r.batch_size, r.momentum, r.weight_decay) == (64_000, 128, 0.9, 1e-4)
    assert [r.lr_at(i) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == [
        0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    v2 = Recipe(warmup="v2")
    assert v2.lr_at(0) == v2.lr_at(399) == 0.01 and v2.lr_at(400) == 0.1
    v1 = Recipe(warmup="v1")
    assert v1.lr_at(5000, warmup_done=False) == 0.01 and v1.lr_at(5000, warmup_done=True) == 0.1


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(milestones=(5, 3)), dict(warmup="v3"),
                                 dict(precision="fp16"), dict(momentum=1.0)])
def test_invalid_recipe_is_rejected_with_the_key_named(bad):
    with pytest.raises(RecipeError, match=next(iter(bad))):
        Recipe(**bad)


def test_speed_knobs_do_not_change_run_identity():
    a = RunConfig(model="v1-basic-8", recipe=Recipe())
    b = RunConfig(model="v1-basic-8", recipe=Recipe(compile=True, activation_checkpointing=True))
    c = RunConfig(model="v1-basic-8", recipe=Recipe(lr=0.2))
    assert a.identity_hash() == b.identity_hash() != c.identity_hash()


# --- real runs ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_short_real_run_learns_the_embedded_dataset(tmp_path):
    data = tmp_path / "syn.pt"
    prepare_dataset("synthetic", None, data, train_size=2000, test_size=500, difficulty="easy")
    recipe = Recipe(iterations=200, milestones=(150,), batch_size=64, eval_every=100,
                    checkpoint_every=1000, train_window=25, warmup="v2", warmup_iters=20, name="t")
    out = train(RunConfig(model="v1-basic-8", dataset="synthetic", prepared=str(data), recipe=recipe),
                tmp_path / "run", progress=False)
    s = out.summary
    assert out.exit_status == 0 and s["status"] == "completed" and s["iterations"] == 200
    # chance is 90% error on 10 balanced classes
    assert s["final_train_error_pct"] < 60, s
    assert s["final_test_error_pct"] < 70, s
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 201))
    # the lr actually used at every step is logged (warm-up, then base, then the drop)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[:20] == [0.01] * 20 and lrs[20:150] == [0.1] * 130
    assert lrs[150:] == pytest.approx([0.01] * 50)
    evals = read_csv(tmp_path / "run" / "eval_log.csv")
    assert [(int(e["iteration"]), e["split"]) for e in evals] == [(100, "test"), (200, "test")]
    assert float(evals[-1]["error_pct"]) == pytest.approx(s["final_test_error_pct"])
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    for key in ("config_hash", "seed", "code", "software", "hardware", "host", "started", "finished"):
        assert key in prov
    assert prov["software"]["torch"] == torch.__version__
    assert (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_short_real_run_on_the_cifar10_jpeg_mirror(tmp_path):
    tarball = require_mirror()
    data = tmp_path / "jpeg.pt"
    prepare_dataset("folder", tarball, data, max_per_class=100)
    recipe = Recipe(iterations=150, milestones=(120,), batch_size=64, eval_every=150,
                    checkpoint_every=1000, train_window=30, warmup="v2", warmup_iters=10, name="t")
    s = train(RunConfig(model="v1-basic-8", dataset="cifar10-jpeg", prepared=str(data), recipe=recipe),
              tmp_path / "run", progress=False).summary
    assert s["dataset_label"] == "CIFAR-10 (JPEG q75 mirror)"
    assert s["status"] == "completed" and s["final_train_error_pct"] < 75, s


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, small_data):
    cfg = RunConfig(model="v1-basic-8", dataset="synthetic", prepared=small_data, recipe=tiny_recipe())
    full = train(cfg, tmp_path / "full", progress=False)
    stopped = train(cfg, tmp_path / "resumed", progress=False, stop_after=6)
    assert stopped.exit_status == EXIT_PREEMPTED
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "summary.json").exists()
    resumed = train(cfg, tmp_path / "resumed", progress=False)
    assert resumed.summary["resumed"] == 1
    for key in ("final_train_loss", "final_train_error_pct", "final_test_loss", "final_test_error_pct"):
        assert resumed.summary[key] == full.summary[key], key
    for log in ("train_log.csv", "eval_log.csv"):
        a, b = read_csv(tmp_path / "full" / log), read_csv(tmp_path / "resumed" / log)
        assert [(r["iteration"], r["loss"]) for r in a] == [(r["iteration"], r["loss"]) for r in b]
    wa = torch.load(tmp_path / "full" / "model.pt")
    wb = torch.load(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_run_resumed_under_another_checkout_names_both_revisions(tmp_path, small_data, monkeypatch):
    from resnet_bench.train import provenance
    cfg = RunConfig(model="v1-basic-8", dataset="synthetic", prepared=small_data, recipe=tiny_recipe())

    def checkout(commit: str):
        return lambda: {"git_commit": commit, "git_dirty": False, "package_version": "x"}
    monkeypatch.setattr(provenance, "code_revision", checkout("a" * 40))
    train(cfg, tmp_path / "run", progress=False, stop_after=6)
    monkeypatch.setattr(provenance, "code_revision", checkout("b" * 40))
    train(cfg, tmp_path / "run", progress=False)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["first_code"]["git_commit"] == "a" * 40 and prov["code"]["git_commit"] == "b" * 40
    assert [r["code"]["git_commit"] for r in prov["resumes"]] == ["b" * 40], prov["resumes"]


def test_the_dirty_flag_is_about_code_not_the_results_folder(tmp_path):
    """A study's tracked state archive under results/ changes while it trains (study_state.sh
    save); a changed tracked source file makes the revision dirty."""
    from resnet_bench.train.provenance import code_revision

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    (tmp_path / "results" / "in-progress").mkdir(parents=True)
    (tmp_path / "results" / "in-progress" / "x.tar.gz").write_bytes(b"state 1")
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert code_revision(tmp_path)["git_dirty"] is False
    (tmp_path / "results" / "in-progress" / "x.tar.gz").write_bytes(b"state 2")
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert code_revision(tmp_path)["git_dirty"] is False
    (tmp_path / "train.py").write_text("lr = 0.2\n")
    rev = code_revision(tmp_path)
    assert rev["git_dirty"] is True and len(rev["git_commit"]) == 40


def test_finished_run_is_not_redone_and_a_different_config_is_refused(tmp_path, small_data):
    cfg = RunConfig(model="v1-basic-8", dataset="synthetic", prepared=small_data,
                    recipe=tiny_recipe(iterations=4, milestones=()))
    first = train(cfg, tmp_path / "r", progress=False)
    mtime = (tmp_path / "r" / "summary.json").stat().st_mtime_ns
    again = train(cfg, tmp_path / "r", progress=False)
    assert again.summary == first.summary
    assert (tmp_path / "r" / "summary.json").stat().st_mtime_ns == mtime
    other = RunConfig(model="v1-basic-8", dataset="synthetic", prepared=small_data, seed=1,
                      recipe=cfg.recipe)
    with pytest.raises(ValueError, match="different run config"):
        train(other, tmp_path / "r", progress=False)
    replaced = train(other, tmp_path / "r", progress=False, replace_stale=True)
    assert replaced.summary["seed"] == 1


def test_divergence_is_a_recorded_result_not_a_crash(tmp_path, small_data):
    cfg = RunConfig(model="plain-basic-8", dataset="synthetic", prepared=small_data,
                    recipe=tiny_recipe(lr=1e6, milestones=()))
    out = train(cfg, tmp_path / "d", progress=False)
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert out.exit_status == 0 and s["status"] == "diverged"
    assert s["diverged_at"] is not None and s["final_test_error_pct"] is None


def test_v1_warmup_ends_when_training_error_drops(tmp_path, small_data):
    # A threshold the first window always meets ends warm-up at the first check; one it never
    # meets keeps lr at warmup_lr for the whole run.
    for threshold, expect_done in ((100.0, True), (0.0, False)):
        cfg = RunConfig(model="v1-basic-8", dataset="synthetic", prepared=small_data,
                        recipe=tiny_recipe(iterations=30, milestones=(), warmup="v1",
                                           warmup_error_pct=threshold, checkpoint_every=100))
        train(cfg, tmp_path / str(threshold), progress=False)
        lrs = [float(r["lr"]) for r in read_csv(tmp_path / str(threshold) / "train_log.csv")]
        assert lrs[:25] == [0.01] * 25
        assert lrs[25:] == ([0.1] * 5 if expect_done else [0.01] * 5)


def test_the_final_evaluation_is_not_training_time(tmp_path, small_data, monkeypatch):
    # no evaluation or checkpoint before the end: the wall time's surplus over the timed
    # training is the final evaluation
    from resnet_bench.train.session import Training
    pause, evaluate = 1.0, Training.evaluate

    def slow(self, iteration, final=False):
        if final:
            time.sleep(pause)
        return evaluate(self, iteration, final)

    monkeypatch.setattr(Training, "evaluate", slow)
    recipe = tiny_recipe(iterations=4, milestones=(), eval_every=100, checkpoint_every=100)
    s = train(RunConfig(model="v1-basic-8", dataset="synthetic", prepared=small_data,
                        recipe=recipe), tmp_path / "run", progress=False).summary
    assert s["status"] == "completed"
    assert s["wall_time_s"] - s["train_time_s"] >= pause, s
    assert s["images_per_s"] == pytest.approx(4 * 32 / s["train_time_s"])


@pytest.mark.parametrize("size", [10, 40])
def test_the_training_window_holds_what_the_v1_warmup_test_averages(size):
    # the warm-up test averages the last SYNC_EVERY iterations, the final numbers the last
    # train_window; a resumed run restores the window from the training log
    from resnet_bench.train.session import TrainWindow
    from resnet_bench.train.step import SYNC_EVERY
    window, rows = TrainWindow(size), []
    for i in range(100):
        window.add(float(i), 2.0 * i)
        window.trim()
        rows.append({"loss": str(float(i)), "error_pct": str(2.0 * i)})
    assert window.mean_error(last=SYNC_EVERY) == 2 * sum(range(100 - SYNC_EVERY, 100)) / SYNC_EVERY
    assert window.mean_loss() == sum(range(100 - size, 100)) / size
    assert window.mean_error() == 2 * window.mean_loss()
    assert len(window.losses) == max(size, SYNC_EVERY)
    restored = TrainWindow.from_rows(size, rows)
    assert (restored.losses, restored.errors) == (window.losses, window.errors)


def _noise_set(path: Path, side: int) -> str:
    """A prepared in-memory set of random `side` x `side` images in two classes."""
    from resnet_bench.data import ImageDataset, save_prepared
    x = torch.randint(0, 256, (48, 3, side, side), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    y = torch.arange(48) % 2
    save_prepared(ImageDataset(x[:32], y[:32], x[32:], y[32:], ["a", "b"], name="noise",
                               label="noise"), path)
    return str(path)


@pytest.mark.parametrize("model, side", [("v1-basic-8", 64), ("resnet18", 64)])
def test_macs_are_those_of_the_images_trained_on(tmp_path, model, side):
    # a count at the size trained on, not at the net's own input size (224 for resnet18)
    from torch.utils.flop_counter import FlopCounterMode

    from resnet_bench.models import build_model
    recipe = tiny_recipe(iterations=2, milestones=(), batch_size=8, eval_every=2,
                         checkpoint_every=2, eval_batch_size=16, train_window=1)
    s = train(RunConfig(model=model, dataset="noise", prepared=_noise_set(tmp_path / "d.pt", side),
                        recipe=recipe), tmp_path / "run", progress=False).summary
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        build_model(model, num_classes=2).eval()(torch.zeros(1, 3, side, side))
    # the fully connected layer's few MACs do not scale with the area
    assert s["macs"] == pytest.approx(counter.get_total_flops() // 2, rel=1e-3)
    assert s["tflops_per_s"] == pytest.approx(s["images_per_s"] * s["macs"] * 6 / 1e12)


# --- processes: SIGKILL at any moment, SIGTERM preemption, bad input -------------------------

def _train_cmd(out: Path, data: str, **recipe) -> list[str]:
    cmd = [sys.executable, "-m", "resnet_bench.cli", "train", "--model", "v1-basic-8",
           "--dataset", "synthetic", "--prepared", data, "--out", str(out), "--no-progress"]
    for k, v in recipe.items():
        cmd += [f"--{k.replace('_', '-')}", *([str(x) for x in v] if isinstance(v, tuple) else [str(v)])]
    return cmd


def _wait_for_rows(path: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} rows")


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_result(tmp_path, small_data):
    recipe = dict(iterations=16, milestones=(10,), batch_size=32, eval_every=5,
                  checkpoint_every=3, train_window=4)
    ref = subprocess.run(_train_cmd(tmp_path / "ref", small_data, **recipe), capture_output=True,
                         text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(out, small_data, **recipe), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for_rows(out / "train_log.csv", 4)  # past the first checkpoint, mid-run
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "summary.json").exists()
    again = subprocess.run(_train_cmd(out, small_data, **recipe), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    a = json.loads((tmp_path / "ref" / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    for key in ("final_train_loss", "final_train_error_pct", "final_test_loss", "final_test_error_pct"):
        assert a[key] == b[key], key
    assert [r["loss"] for r in read_csv(out / "train_log.csv")] == \
           [r["loss"] for r in read_csv(tmp_path / "ref" / "train_log.csv")]


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_with_the_preempted_status(tmp_path, small_data):
    out = tmp_path / "term"
    recipe = dict(iterations=400, milestones=(), batch_size=32, checkpoint_every=1000, eval_every=1000)
    proc = subprocess.Popen(_train_cmd(out, small_data, **recipe), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_rows(out / "train_log.csv", 0)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert 0 < ckpt["iteration"] < 400
    assert len(read_csv(out / "train_log.csv")) == ckpt["iteration"]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "v1-basic-21"], "6n+2"),
    (["--model", "v1-basic-20", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"],
     "/nonexistent/cifar"),
    (["--model", "v1-basic-20", "--prepared", "/nonexistent/x.pt"], "/nonexistent/x.pt"),
    (["--model", "v1-basic-20", "--iterations", "0"], "iterations"),
])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, capsys, argv, needle):
    code = main(["train", *argv, "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_published_runs_keep_their_identity():
    """Every committed run's config.json, read with today's code, gives the identity and config
    hash it was recorded with: a new recipe knob (Knob.recorded_when_set) or a changed default must
    not orphan published or half-finished runs, nor retrain them through the pipeline's params."""
    root = Path(__file__).resolve().parent.parent / "results" / "published"
    configs = sorted(root.rglob("config.json"))
    assert len(configs) >= 10
    for path in configs:
        recorded = json.loads(path.read_text())
        config = RunConfig.from_dict({k: v for k, v in recorded.items()
                                      if k not in ("identity", "config_hash")})
        assert config.identity_hash() == recorded["identity"], path
        assert config.config_hash() == recorded["config_hash"], path
        assert config.recipe.to_dict() == recorded["recipe"], path
