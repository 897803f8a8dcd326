"""The CUDA-only paths, run on CPU where CPU can reach them: compiled training (through the
`aot_eager` backend, which needs no C++ compiler) stopped by SIGTERM and resumed, the
out-of-memory fallback (a real torch.OutOfMemoryError raised into the step), the nvJPEG branch of
the decoder (with the decoder stubbed), and the activation memory of the large nets measured on
the 'meta' device against the estimate the pipeline gives the scheduler.
tests/test_cuda.py runs the same paths on a GPU (scripts/gpu-check.sh).
"""

from __future__ import annotations

import csv
import functools
import io
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet_bench.data import prepare_dataset
from resnet_bench.train import loop, step
from resnet_bench.train.exits import EXIT_PREEMPTED
from resnet_bench.train.loop import train
from resnet_bench.train.recipe import Recipe, RunConfig


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "synthetic-small.pt"
    prepare_dataset("synthetic", None, path, train_size=256, test_size=64)
    return str(path)


def _config(prepared: str, **recipe) -> RunConfig:
    base = dict(iterations=10, milestones=(6,), batch_size=32, eval_every=5, checkpoint_every=4,
                eval_batch_size=64, train_window=4, name="tiny")
    base.update(recipe)
    return RunConfig(model="v1-basic-8", dataset="synthetic", seed=0, recipe=Recipe(**base),
                     prepared=prepared, device="cpu")


def _log(run_dir: Path) -> list[tuple[int, float, float]]:
    with open(run_dir / "train_log.csv", newline="") as fh:
        return [(int(r["iteration"]), float(r["loss"]), float(r["error_pct"]))
                for r in csv.DictReader(fh)]


def _sigterm_at_call(monkeypatch, n: int) -> None:
    """SIGTERM to this process during the n-th training step (the trainer's handler flags it)."""
    calls = {"n": 0}
    real = loop.train_step

    def stepping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(loop, "train_step", stepping)


def test_compiled_training_stops_on_sigterm_resumes_and_compiles_once_per_process(
        small_data, tmp_path, monkeypatch):
    dynamo = pytest.importorskip("torch._dynamo")
    from torch._dynamo.utils import counters
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    cfg = _config(small_data, compile=True)

    def compiles() -> int:  # frames dynamo turned into graphs, recompiles included
        return counters["frames"].get("ok", 0)

    dynamo.reset()
    counters.clear()
    whole = train(cfg, tmp_path / "whole", progress=False).summary
    assert whole["status"] == "completed" and whole["compile_time_s"] > 0
    # lr changes (milestone 6), evaluations (eager model) and checkpoints recompile nothing
    once = compiles()
    assert once == 1 and counters["stats"]["unique_graphs"] == 1, dict(counters["frames"])
    assert not counters["recompiles"], dict(counters["recompiles"])

    dynamo.reset()
    counters.clear()
    _sigterm_at_call(monkeypatch, 7)
    out = tmp_path / "stopped"
    first = train(cfg, out, progress=False)
    assert first.exit_status == EXIT_PREEMPTED and first.summary["iterations"] == 7
    assert not (out / "summary.json").exists() and (out / "checkpoint.pt").exists()
    monkeypatch.setattr(loop, "train_step", step.train_step)
    dynamo.reset()  # a new process: nothing compiled
    counters.clear()
    resumed = train(cfg, out, progress=False).summary
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    assert compiles() == once, dict(counters["frames"])
    # On CPU a resumed compiled run is the uninterrupted one, bit for bit.
    assert _log(out) == _log(tmp_path / "whole")
    assert resumed["final_test_error_pct"] == whole["final_test_error_pct"]


def test_out_of_memory_in_the_step_falls_back_to_activation_checkpointing(small_data, tmp_path,
                                                                          monkeypatch):
    cfg = _config(small_data)
    plain = train(cfg, tmp_path / "plain", progress=False).summary
    assert plain["oom_fallback_at"] is None and plain["activation_checkpointing"] is False

    calls = {"n": 0, "refused": 0}
    real = step.forward_backward

    def short_of_memory(step_model, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 4 and not step_model.activation_checkpointing:
            calls["refused"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(step_model, *args, **kwargs)
    monkeypatch.setattr(step, "forward_backward", short_of_memory)
    s = train(cfg, tmp_path / "fallback", progress=False).summary
    assert calls["refused"] == 1  # the 4th step (iteration 3) failed once, then ran checkpointed
    assert s["status"] == "completed" and s["iterations"] == 10
    assert s["oom_fallback_at"] == 3 and s["activation_checkpointing"] is True
    # Nothing was updated by the failed attempt, and checkpointing changes no number.
    assert _log(tmp_path / "fallback") == _log(tmp_path / "plain")
    assert s["final_test_error_pct"] == plain["final_test_error_pct"]


def test_an_out_of_memory_error_with_checkpointing_already_on_is_raised(small_data, tmp_path,
                                                                         monkeypatch):
    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    monkeypatch.setattr(step, "forward_backward", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        train(_config(small_data, activation_checkpointing=True), tmp_path / "run", progress=False)


def _encoded(fmt: str, mode: str = "RGB", size=(20, 14), seed=0) -> bytes:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (size[1], size[0], len(mode)), generator=g, dtype=torch.uint8)
    img = Image.fromarray(arr.squeeze(-1).numpy() if mode == "L" else arr.numpy(), mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_the_nvjpeg_branch_batches_jpegs_and_sends_the_rest_through_the_cpu(monkeypatch):
    """decode_rgb(..., device) off the CPU: every JPEG in one batched decode_jpeg call on that
    device, in RGB; PNGs and greyscale through the CPU decoder and moved to the device; the
    order kept. The stub decodes on the CPU ('meta' stands for the GPU: no CUDA here)."""
    import torchvision.io as tvio
    from resnet_bench.data.views import decode_rgb
    items = [("a.jpg", _encoded("JPEG", seed=1)), ("b.png", _encoded("PNG", seed=2)),
             ("c.jpg", _encoded("JPEG", "L", seed=3)), ("d.jpg", _encoded("JPEG", seed=4))]
    cpu = decode_rgb(items)
    calls = []
    real = tvio.decode_jpeg

    def stub(data, mode, device):
        calls.append((len(data), mode, device))
        return [real(d, mode=mode) for d in data]  # a bad file raises RuntimeError, as nvJPEG
    monkeypatch.setattr(tvio, "decode_jpeg", stub)
    out = decode_rgb(items, "meta")
    assert calls == [(3, tvio.ImageReadMode.RGB, "meta")]  # one call, the three JPEGs
    for k in (0, 2, 3):
        assert out[k].shape == (3, 14, 20) and torch.equal(out[k], cpu[k]), k
    assert out[1].device.type == "meta" and out[1].shape == cpu[1].shape  # PNG: CPU, then moved
    # One file the decoder refuses spoils its batch: every image then goes through the CPU.
    calls.clear()
    bad = [items[0], ("e.jpg", b"\xff\xd8")]
    with pytest.raises(Exception, match="e.jpg"):
        decode_rgb(bad, "meta")
    assert calls == [(2, tvio.ImageReadMode.RGB, "meta")]
    calls.clear()
    out = decode_rgb([items[1], items[3]], "meta")
    assert calls == [(1, tvio.ImageReadMode.RGB, "meta")]
    assert out[0].device.type == "meta" and torch.equal(out[1], cpu[3])


def _saved_for_backward(model: str, batch: int, device: str) -> int:
    """Bytes of the distinct tensors one training forward keeps for backward."""
    from resnet_bench.models import build_model
    torch.manual_seed(0)
    net = build_model(model, num_classes=10, in_channels=3).to(device).train()
    kept: dict[int, torch.Tensor] = {}

    def pack(t):
        kept[id(t)] = t
        return t
    x = torch.empty(batch, 3, 32, 32, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x.normal_() if device == "cpu" else x)
    if device == "cpu":  # real tensors: count each storage once
        return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in kept.values()}.values())
    return sum(t.numel() * t.element_size() for t in kept.values())


@pytest.mark.parametrize("model", ["v1-basic-8", "v2-bottleneck-11"])
def test_meta_device_saved_tensors_equal_the_real_ones(model):
    assert _saved_for_backward(model, 8, "meta") == _saved_for_backward(model, 8, "cpu")


@pytest.mark.parametrize("model", ["v1-basic-110", "v1-basic-1202", "v2-bottleneck-164",
                                   "v2-bottleneck-1001"])
def test_the_pipelines_activation_estimate_bounds_the_large_nets_from_above(model):
    """resources.activation_bytes (what a job asks the scheduler for) is an upper bound on what
    a training step of the net keeps for backward, and not a wasteful one: measured on 'meta'
    (no memory used) at the paper's batch of 128, fp32, the estimate is 1.9-2.1x the bytes kept
    (it counts 4 tensors per conv output where the nets keep 2; the rest is workspace room)."""
    from resnet_bench.pipeline.resources import activation_bytes
    measured = _saved_for_backward(model, 128, "meta")
    estimate = activation_bytes(model, Recipe(batch_size=128))
    print(f"{model}: kept for backward {measured / 2**20:.0f} MiB, estimate "
          f"{estimate / 2**20:.0f} MiB ({estimate / measured:.2f}x)")
    assert measured < estimate <= 2.5 * measured
