"""`resnet-bench tensorboard`: the runs' CSV logs as TensorBoard event files (an optional extra),
read back with TensorBoard's own reader."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from resnet_bench.cli import main as cli_main
from resnet_bench.train import tensorboard as tb

sys.path.insert(0, str(Path(__file__).parent))
from records import write_run  # noqa: E402


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    ea = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="TensorBoard (the optional extra) is not installed").EventAccumulator(str(logdir))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_finished_and_running_runs_become_tensorboard_scalars(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="TensorBoard (the optional extra) is not installed")
    done = write_run(tmp_path / "runs", seed=0, run_name="v1-basic-20/seed0")
    live = write_run(tmp_path / "runs", seed=1, run_name="v1-basic-20/seed1",
                     skip=("summary.json", "eval_log.csv"))   # still training, not yet evaluated
    assert cli_main(["tensorboard", "--runs", str(tmp_path / "runs"),
                     "--logdir", str(tmp_path / "tb")]) == 0
    assert capsys.readouterr().out.startswith("2 run(s), ")
    for run, has_test in ((done, True), (live, False)):
        got = _scalars(tmp_path / "tb" / f"seed{run.name[-1]}")
        train = pd.read_csv(run / "train_log.csv")
        assert [s for s, _ in got["train/error_pct"]] == train["iteration"].tolist()
        assert [v for _, v in got["train/loss"]] == pytest.approx(train["loss"].tolist(), rel=1e-6)
        assert [v for _, v in got["train/lr"]] == pytest.approx(train["lr"].tolist())
        assert ("test/error_pct" in got) == has_test
    evals = pd.read_csv(done / "eval_log.csv")
    got = _scalars(tmp_path / "tb" / "seed0")
    assert got["test/error_pct"] == [(int(i), pytest.approx(e, rel=1e-6)) for i, e in
                                     zip(evals["iteration"], evals["error_pct"])]
    # a second pass rewrites, it does not append
    assert cli_main(["tensorboard", "--runs", str(done), "--logdir", str(tmp_path / "tb1")]) == 0
    assert cli_main(["tensorboard", "--runs", str(done), "--logdir", str(tmp_path / "tb1")]) == 0
    assert len(_scalars(tmp_path / "tb1" / "seed0")["train/loss"]) == len(
        pd.read_csv(done / "train_log.csv"))


def test_without_tensorboard_or_runs_one_line(tmp_path, monkeypatch, capsys):
    assert cli_main(["tensorboard", "--runs", str(tmp_path), "--logdir", str(tmp_path / "tb")]) == 2
    assert "no run directories" in capsys.readouterr().err
    write_run(tmp_path / "runs", run_name="r")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # the extra is absent
    assert cli_main(["tensorboard", "--runs", str(tmp_path / "runs"),
                     "--logdir", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resnet-bench[tensorboard]" in err
    assert not (tmp_path / "tb").exists() and tb.run_dirs([str(tmp_path / "runs")])
