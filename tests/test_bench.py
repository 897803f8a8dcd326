"""`resnet-bench bench` end to end on CPU in a tiny setting.

No assertion compares the speed of the two paths: timings on a shared machine are noise, and the
benchmark's job is to measure, not to guarantee a result.
"""

from __future__ import annotations

import csv
import math
import re

import pytest

from resnet_bench import bench
from resnet_bench.cli import main
from resnet_bench.models import model_cost

MODEL = "v1-basic-8"
TINY = ["--model", MODEL, "--batch-size", "32", "--iters", "3", "--warmup-iters", "2",
        "--train-size", "96", "--baseline-workers", "1", "--device", "cpu", "--threads", "1"]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _printed(stdout: str) -> dict[str, dict[str, float]]:
    """The per-path table lines: path -> images/s, ms/iter, TFLOP/s as printed."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"\s+(project|baseline)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.e+-]+)\s", line)
        if m:
            out[m.group(1)] = {"images_per_s": float(m.group(2)), "ms_per_iter": float(m.group(3)),
                               "tflops_per_s": float(m.group(5))}
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import io
    from contextlib import redirect_stdout
    out_csv = tmp_path_factory.mktemp("bench") / "bench.csv"
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["bench", *TINY, "--csv", str(out_csv)])
    return rc, buf.getvalue(), out_csv


def test_cli_end_to_end_writes_both_paths_and_ratio(tiny_run):
    rc, stdout, out_csv = tiny_run
    assert rc == 0
    rows = _rows(out_csv)
    assert [(r["model"], r["path"]) for r in rows] == [(MODEL, "project"), (MODEL, "baseline")]
    project, baseline = rows
    ratio = float(project["ratio_vs_baseline"])
    assert ratio == pytest.approx(float(project["images_per_s"]) / float(baseline["images_per_s"]))
    assert float(baseline["ratio_vs_baseline"]) == pytest.approx(1.0)
    # one round: the per-round ratio is the ratio
    assert float(project["ratio_per_round"]) == pytest.approx(ratio, abs=1e-4)
    assert float(project["ratio_median_of_rounds"]) == pytest.approx(ratio)
    assert "ratio project/baseline" in stdout
    # provenance travels with every row
    for r in rows:
        for key in ("device_name", "torch", "torch_threads", "git_commit", "cpu_count", "started",
                    "finished", "load_avg_1m_at_start", "load_avg_1m_at_end"):
            assert key in r
        assert r["started"] <= r["finished"]
        assert r["torch_threads"] == "1" and r["batch_size"] == "32" and r["iters"] == "3"
    assert project["num_workers"] == "0" and baseline["num_workers"] == "1"
    assert project["precision"] == baseline["precision"] == "fp32"
    assert project["sgd"] == baseline["sgd"] == "default"


def test_numbers_are_positive_finite_and_consistent(tiny_run):
    _, _, out_csv = tiny_run
    params, macs = model_cost(MODEL)
    for r in _rows(out_csv):
        for key in ("images_per_s", "ms_per_iter", "ms_per_iter_median", "ms_per_iter_min",
                    "ms_per_iter_max", "tflops_per_s", "ratio_vs_baseline", "first_iter_s",
                    "projected_64k_h"):
            v = float(r[key])
            assert math.isfinite(v) and v > 0, (key, r[key])
        peak = float(r["peak_mem_mib"])
        assert math.isfinite(peak) and peak >= 0
        assert int(r["macs"]) == macs and int(r["params"]) == params
        ips, ms = float(r["images_per_s"]), float(r["ms_per_iter"])
        # MAC-based throughput: 2 FLOP/MAC x 3 (forward + backward)
        assert float(r["tflops_per_s"]) == pytest.approx(ips * macs * 6 / 1e12, rel=1e-9)
        # every timed iteration is a full batch
        assert ips == pytest.approx(32 * 1000 / ms, rel=1e-9)
        assert float(r["projected_64k_h"]) == pytest.approx(64_000 * ms / 1e3 / 3600, rel=1e-9)
        assert float(r["ms_per_iter_min"]) <= float(r["ms_per_iter_median"]) <= float(r["ms_per_iter_max"])
        assert int(r["timed_iters_total"]) == 3


def test_printed_tflops_match_printed_images_per_s(tiny_run):
    _, stdout, _ = tiny_run
    _, macs = model_cost(MODEL)
    printed = _printed(stdout)
    assert set(printed) == {"project", "baseline"}
    for p in printed.values():
        assert p["images_per_s"] > 0 and p["tflops_per_s"] > 0
        # both are rounded for printing (images/s to 0.1, TFLOP/s to 4 significant digits)
        expected = p["images_per_s"] * macs * 6 / 1e12
        assert p["tflops_per_s"] == pytest.approx(expected, rel=2e-3 + 0.05 / p["images_per_s"])
    assert "2 FLOP/MAC x 3" in stdout and "evaluation" in stdout


def test_no_baseline_rounds_and_fused_sgd(tmp_path, capsys):
    out_csv = tmp_path / "b.csv"
    assert main(["bench", *TINY, "--no-baseline", "--rounds", "2", "--fused-sgd",
                 "--csv", str(out_csv)]) == 0
    rows = _rows(out_csv)
    assert [r["path"] for r in rows] == ["project"]
    assert rows[0]["sgd"] == "fused"
    assert rows[0]["ratio_vs_baseline"] == ""
    assert rows[0]["rounds"] == "2" and rows[0]["timed_iters_total"] == "6"
    assert "ratio project/baseline" not in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--iters", "0"], "--iters must be >= 1"),
    (["--model", "v1-basic-7"], "v1-basic-7"),
    (["--compile-mode", "max-autotune"], "--compile-mode needs --compile"),
    (["--compile-backend", "aot_eager"], "--compile-backend needs --compile"),
    (["--compile", "--compile-backend", "aot_eager", "--compile-mode", "reduce-overhead"],
     "--compile-mode reduce-overhead needs --compile-backend inductor"),
    (["--batch-size", "200"], "exceeds the 96 training images"),
    (["--dataset", "cifar10"], "--train-size applies to the synthetic dataset only"),
    (["--rounds", "0"], "--rounds must be >= 1"),
])
def test_bad_arguments_give_one_line_error(extra, message, capsys):
    rc = main(["bench", *TINY, *extra])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("resnet-bench bench: error:")]
    assert len(lines) == 1 and message in lines[0], err


@pytest.mark.parametrize("model, side", [(MODEL, 64), ("resnet18", 32)])
def test_macs_are_those_of_the_images_timed_on(model, side):
    import argparse

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from resnet_bench.bench.timing import _Raw, summarize
    from resnet_bench.models import build_model
    raw = _Raw(first_s=0.1, ms=[10.0, 10.0], images=64, peak_mib=0.0, mem_method="none")
    args = argparse.Namespace(num_classes=10, in_channels=3, image_size=(side, side),
                              baseline_workers=1)
    result = summarize(model, "baseline", [raw], args)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        build_model(model, num_classes=10).eval()(torch.zeros(1, 3, side, side))
    # the fully connected layer's few MACs do not scale with the area
    assert result.macs == pytest.approx(counter.get_total_flops() // 2, rel=1e-3)


def test_cuda_without_cuda_is_a_one_line_error(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", *TINY, "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_baseline_loader_is_the_standard_pipeline_on_the_same_images():
    import torch
    from resnet_bench.data import load_dataset
    ds = load_dataset("synthetic", None, train_size=40, test_size=10)
    loader = bench.baseline_loader(ds, batch_size=8, workers=0, pin_memory=False, seed=0)
    names = [type(t).__name__ for t in loader.dataset.transform.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert loader.num_workers == 0 and loader.drop_last
    xb, yb = next(iter(loader))
    assert xb.shape == (8, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    # item i of the Dataset is image i of the uint8 tensor (before its random crop/flip)
    img = loader.dataset.data[5]
    assert torch.equal(torch.from_numpy(img).permute(2, 0, 1), ds.train_x[5])
    assert loader.dataset.targets[5] == int(ds.train_y[5])


def test_peak_memory_on_cpu_is_reported():
    import torch
    with bench.PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(32 * 2**20, dtype=torch.uint8)  # 32 MiB touched
        block += 1
        import time
        time.sleep(0.05)
    assert mem.mib >= 0
    assert "RSS" in mem.method or "ru_maxrss" in mem.method
    del block


@pytest.mark.slow
def test_fidelity_check_trains_each_config_over_seeds(tmp_path, capsys):
    from resnet_bench.data import load_dataset, save_prepared
    prepared = tmp_path / "tiny.pt"
    save_prepared(load_dataset("synthetic", None, train_size=64, test_size=20), prepared)
    out_csv = tmp_path / "fid.csv"
    rc = main(["bench", "--fidelity", "--model", "plain-basic-8", "--fidelity-iters", "3",
               "--batch-size", "16", "--seeds", "0", "1", "--device", "cpu", "--threads", "1",
               "--prepared", str(prepared), "--csv", str(out_csv)])
    assert rc == 0
    rows = _rows(out_csv)
    assert sorted((r["config"], r["seed"]) for r in rows) == [
        ("bf16 eager", "0"), ("bf16 eager", "1"), ("fp32 eager", "0"), ("fp32 eager", "1")]
    for r in rows:
        assert math.isfinite(float(r["final_train_loss"])) and float(r["final_train_loss"]) > 0
        assert 0 <= float(r["final_train_error_pct"]) <= 100
    out = capsys.readouterr().out
    assert "fp32 eager" in out and "bf16 eager" in out and "seed-to-seed" in out


def test_fidelity_needs_two_seeds(capsys):
    assert main(["bench", "--fidelity", "--seeds", "3", "--device", "cpu"]) == 2
    assert "two distinct --seeds" in capsys.readouterr().err
