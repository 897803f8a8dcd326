"""The streaming `imagenet` kind: index, augmentation, determinism across workers and restarts,
evaluation views, a real interrupted training, and bad input. Real (tiny) JPEGs from PIL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from resnet_bench.cli import main
from resnet_bench.data import (DatasetError, load_dataset, load_prepared, prepare_dataset,
                               save_prepared)
from resnet_bench.data.views import decode_rgb, eval_views, read_bytes, resize_shorter
from resnet_bench.data.stream import StreamLoader, augmentation
from resnet_bench.train.loop import train
from resnet_bench.train.recipe import Recipe, RunConfig
from resnet_bench.train.session import evaluate, evaluate_views

# the tiny preset: 64 px crops from images with shorter sides 72..100 px
SMALL = {"crop": 64, "resize_min": 72, "resize_max": 100, "test_resize": 72,
         "test_scales": [64, 80], "stats_images": 8}


def make_tree(root: Path, classes: int = 3, train: int = 4, held: int = 2,
              held_name: str = "val", seed: int = 0) -> Path:
    """JPEGs (q90) of two sizes and orientations, class-dependent brightness."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), (held_name, held)):
        for c in range(classes):
            folder = root / split / f"n{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                h, w = (72, 100) if k % 2 else (90, 76)
                arr = (rng.random((h, w, 3)) * 80 + c * 60).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"img{k}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def index(tree):
    return load_dataset("imagenet", tree, **SMALL)


def _batches(loader: StreamLoader, its) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [loader.batch(i) for i in its]


def test_index_classes_files_and_statistics(index, tree):
    assert index.classes == ["n0000", "n0001", "n0002"]
    assert len(index.train_files) == 12 and len(index.test_files) == 6
    assert index.meta["test_split"] == "val" and len(index.meta["content_sha256"]) == 64
    assert index.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    s = index.stats
    assert s["mean_image"].shape == (3, 64, 64) and len(s["sample"]) == 8
    # the mean image is the mean of the sample's centre views, recomputed here by hand
    views = [TF.center_crop(resize_shorter(decode_rgb([(str(f), read_bytes(f))])[0], 72),
                            [64, 64]).double() / 255
             for f in (tree / index.train_files[k] for k in s["sample"].tolist())]
    torch.testing.assert_close(s["mean_image"].double(), torch.stack(views).mean(0),
                               atol=1e-6, rtol=0)
    pixels = torch.stack(views).permute(1, 0, 2, 3).reshape(3, -1)
    cov = torch.cov(pixels, correction=0)
    rebuilt = s["eigvec"].double() @ torch.diag(s["eigval"].double()) @ s["eigvec"].double().T
    torch.testing.assert_close(rebuilt, cov, atol=1e-6, rtol=1e-4)


def test_batches_equal_for_0_1_2_workers_and_after_a_restart(index):
    its = range(6)  # 6 batches of 5 over 12 images: crosses two epoch boundaries
    ref = _batches(StreamLoader(index, batch_size=5, seed=7, workers=0), its)
    assert ref[0][0].shape == (5, 3, 64, 64) and ref[0][0].dtype == torch.float32
    assert not torch.equal(ref[0][0], ref[1][0])
    for workers in (1, 2):
        got = _batches(StreamLoader(index, batch_size=5, seed=7, workers=workers), its)
        for (x, y), (rx, ry) in zip(got, ref):
            assert torch.equal(x, rx) and torch.equal(y, ry)
    # a fresh loader starting at iteration 3 (a resume), and jumps back and forth in one loader
    resumed = StreamLoader(index, batch_size=5, seed=7, workers=2)
    for i in (3, 4, 1, 2, 5):
        x, y = resumed.batch(i)
        assert torch.equal(x, ref[i][0]) and torch.equal(y, ref[i][1])
    other = StreamLoader(index, batch_size=5, seed=8, workers=0).batch(0)
    assert not torch.equal(other[0], ref[0][0])


def test_epochs_cover_every_image_once_and_ranks_slice_the_global_batch(index):
    loader = StreamLoader(index, batch_size=4, seed=1)
    first_epoch = torch.cat([loader.indices(i) for i in range(3)])
    assert sorted(first_epoch.tolist()) == list(range(12))
    assert loader.epoch_at(3) == 1.0 and loader.batches_per_epoch == 3.0
    whole = _batches(StreamLoader(index, batch_size=4, seed=1), range(3))
    parts = [_batches(StreamLoader(index, batch_size=4, seed=1, rank=r, world_size=2), range(3))
             for r in (0, 1)]
    for i in range(3):
        assert torch.equal(torch.cat([parts[0][i][0], parts[1][i][0]]), whole[i][0])
        assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), whole[i][1])
    with pytest.raises(DatasetError, match="divisible by world_size"):
        StreamLoader(index, batch_size=5, seed=1, world_size=2)


def test_augmentation_values_are_in_the_stated_ranges(index):
    opts = {**index.options, "resize_min": 256, "resize_max": 480, "pca_std": 0.1}
    draws = [augmentation(3, i, k, opts) for i in range(40) for k in range(50)]
    sizes = [d["size"] for d in draws]
    assert min(sizes) == 256 and max(sizes) == 480  # integers over the whole closed range
    u = torch.tensor([d["u"] for d in draws])
    assert 0 <= u.min() and u.max() < 1
    flips = sum(d["flip"] for d in draws) / len(draws)
    assert 0.45 < flips < 0.55
    alpha = torch.stack([d["alpha"] for d in draws])
    assert abs(float(alpha.std()) - 0.1) < 0.005 and abs(float(alpha.mean())) < 0.005
    assert augmentation(3, 5, 7, opts)["size"] == augmentation(3, 5, 7, opts)["size"]


def test_a_batch_is_the_documented_crop_flip_pca_and_mean(index, tree):
    loader = StreamLoader(index, batch_size=3, seed=2)
    x, y = loader.batch(4)
    idx, params = loader.indices(4).tolist(), loader.augmentation(4)
    s = index.stats
    for j, (k, p) in enumerate(zip(idx, params)):
        f = tree / index.train_files[k]
        img = resize_shorter(decode_rgb([(str(f), read_bytes(f))])[0], p["size"])
        assert min(img.shape[1:]) == p["size"]
        h, w = img.shape[1:]
        top, left = int(p["u"][0] * (h - 63)), int(p["u"][1] * (w - 63))
        crop = img[:, top:top + 64, left:left + 64]
        crop = crop.flip(-1) if p["flip"] else crop
        shift = (s["eigvec"] * s["eigval"]) @ p["alpha"]  # sum_k alpha_k lambda_k p_k
        want = crop.float() / 255 + shift[:, None, None] - s["mean_image"]
        torch.testing.assert_close(x[j], want, atol=1e-5, rtol=0)
        assert int(y[j]) == int(index.train_y[k])


def test_evaluation_views_shapes_and_scores(index):
    loader = StreamLoader(index, batch_size=4, seed=0)
    files, y = index.test_files, index.test_y
    (center,), yc = next(loader.eval_views(files, y, 100, "center"))
    assert center.shape == (6, 3, 64, 64) and torch.equal(yc, y)
    groups = list(loader.eval_views(files, y, 20, "ten_crop"))  # 2 images (20 crops) a group
    assert [len(g[1]) for g in groups] == [2, 2, 2]
    assert groups[0][0][0].shape == (20, 3, 64, 64)
    multi = list(loader.eval_views(files, y, 20, "multiscale"))
    assert len(multi) == 6 and [min(v.shape[2:]) for v in multi[0][0]] == [64, 80]
    assert all(v.shape[0] == 2 for v in multi[0][0])  # the image and its flip
    # ten_crop: torchvision's ten_crop (4 corners + centre, then those of the flipped image)
    img = decode_rgb([(str(index.path(files[0])), read_bytes(index.path(files[0])))])[0]
    views = eval_views(img, "ten_crop", index.options)[0]
    assert torch.equal(views[4], TF.center_crop(resize_shorter(img, 72), [64, 64]))
    # views 5..9 are the crops of the flipped image: its top-left is the flipped top-right
    assert torch.equal(views[5], views[1].flip(-1)) and torch.equal(views[6], views[0].flip(-1))
    assert torch.equal(views[9], views[4].flip(-1))

    from resnet_bench.models import build_model
    torch.manual_seed(0)
    model = build_model("imagenet-v1-basic-18", num_classes=3).eval()
    loss, err = evaluate(model, loader, files, y, "cpu", "fp32", 4)  # DeviceLoader's interface
    vloss, verr, top5 = evaluate_views(model, loader.eval_views(files, y, 4, "center"), "cpu",
                                       "fp32")
    assert vloss == pytest.approx(loss, rel=1e-5) and verr == err
    assert top5 == 0.0  # 3 classes: the top 5 hold every class
    tloss, terr, _ = evaluate_views(model, loader.eval_views(files, y, 20, "ten_crop"), "cpu",
                                    "fp32")
    assert np.isfinite(tloss) and 0 <= terr <= 100 and tloss != pytest.approx(loss)


def _config(tree: Path, **recipe) -> RunConfig:
    base = dict(iterations=3, milestones=(2,), batch_size=4, eval_every=2, checkpoint_every=1,
                train_window=2, data_workers=0)
    return RunConfig(model="imagenet-v1-basic-18", dataset="imagenet", data_dir=str(tree),
                     data_options={**SMALL, "final_eval": "ten_crop"},
                     recipe=Recipe(**{**base, **recipe}), device="cpu")


def _argv(tree: Path, out: Path, workers: int) -> list[str]:
    opts = [a for k, v in {**SMALL, "final_eval": "ten_crop"}.items()
            for a in ("--data-option", f"{k}={json.dumps(v)}")]
    return ["train", "--model", "imagenet-v1-basic-18", "--dataset", "imagenet", "--data-dir",
            str(tree), *opts, "--iterations", "3", "--milestones", "2", "--batch-size", "4",
            "--eval-every", "2", "--checkpoint-every", "1", "--train-window", "2",
            "--data-workers", str(workers), "--device", "cpu", "--no-progress", "--out", str(out)]


@pytest.mark.slow
def test_training_stopped_and_resumed_ends_bit_identical(tree, tmp_path):
    torch.set_num_threads(1)
    assert main(_argv(tree, tmp_path / "ref", workers=0)) == 0
    stopped = train(_config(tree, data_workers=2), tmp_path / "resumed", progress=False,
                    stop_after=1)
    assert stopped.summary["status"] == "preempted"
    assert main(_argv(tree, tmp_path / "resumed", workers=1)) == 0  # other workers: same run
    a = json.loads((tmp_path / "ref" / "summary.json").read_text())
    b = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert b["resumed"] == 1 and a["identity"] == b["identity"]
    for key in ("final_train_loss", "final_test_loss", "final_test_error_pct",
                "final_test_top5_error_pct"):
        assert a[key] == b[key], key
    assert a["final_test_top5_error_pct"] is not None
    assert (tmp_path / "ref" / "train_log.csv").read_text() == \
        (tmp_path / "resumed" / "train_log.csv").read_text()
    wa = torch.load(tmp_path / "ref" / "model.pt")
    wb = torch.load(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_prepare_writes_an_index_that_trains_with_prepared(tree, tmp_path, capsys):
    out = tmp_path / "imagenet.pt"
    argv = ["data", "prepare", "--dataset", "imagenet", "--root", str(tree), "--out", str(out),
            "--crop", "64", "--resize-min", "72", "--resize-max", "100", "--test-resize", "72",
            "--test-scales", "[64, 80]", "--stats-images", "8"]
    assert main(argv) == 0
    index = load_prepared(out)
    direct = load_dataset("imagenet", tree, **SMALL)
    assert index.train_files == direct.train_files and index.options == direct.options
    assert all(torch.equal(index.stats[k], direct.stats[k]) for k in direct.stats)
    assert out.stat().st_size < 100_000  # an index, not tensors of images
    assert main(["data", "info", str(out)]) == 0
    assert "streamed" in capsys.readouterr().out
    cfg = RunConfig(model="imagenet-v2-basic-18", dataset="tiny", prepared=str(out),
                    recipe=Recipe(iterations=2, batch_size=4, eval_every=10, data_workers=1),
                    device="cpu")
    s = train(cfg, tmp_path / "run", progress=False).summary
    assert s["status"] == "completed" and 0 <= s["final_test_top5_error_pct"] <= 100


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_is_one_line(tmp_path, capsys):
    prep = ["data", "prepare", "--dataset", "imagenet", "--out", str(tmp_path / "x.pt")]
    no_val = tmp_path / "no_val"
    make_tree(no_val, held_name="other")
    assert "no val/ or test/" in _error(capsys, [*prep, "--root", str(no_val)])
    mismatch = make_tree(tmp_path / "mismatch", held_name="test")
    (mismatch / "test" / "n0002").rename(mismatch / "test" / "n0009")
    err = _error(capsys, [*prep, "--root", str(mismatch)])
    assert "only in train: n0002" in err and "only in test: n0009" in err
    assert "crop" in _error(capsys, [*prep, "--root", str(mismatch), "--crop", "300"])
    assert "resize_min" in _error(capsys, [*prep, "--root", str(mismatch), "--resize-min", "500"])
    assert "not found" in _error(capsys, [*prep, "--root", str(tmp_path / "nowhere")])

    corrupt = make_tree(tmp_path / "corrupt")
    bad = corrupt / "train" / "n0001" / "img2.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG
    err = _error(capsys, [*prep, "--root", str(corrupt), "--crop", "64", "--resize-min", "72",
                          "--test-resize", "72"])
    assert str(bad) in err and "decode" in err
    # corrupted after indexing: the worker's error reaches the trainer as the same one line
    good = make_tree(tmp_path / "late")
    index = load_dataset("imagenet", good, **SMALL)
    victim = good / "train" / "n0000" / "img1.JPEG"
    victim.write_bytes(b"\xff\xd8 not a jpeg")
    loader = StreamLoader(index, batch_size=12, seed=0, workers=1)
    with pytest.raises(DatasetError, match=f"^{victim}: cannot decode"):
        loader.batch(0)
    with pytest.raises(DatasetError, match="decode=cuda needs a CUDA"):
        StreamLoader(load_dataset("imagenet", good, **{**SMALL, "decode": "cuda",
                                                       "stats_images": 1}), batch_size=4, seed=0)


def test_prepared_index_damage_and_moved_root(tree, tmp_path):
    out = tmp_path / "i.pt"
    index = prepare_dataset("imagenet", tree, out, **SMALL)
    blob = torch.load(out, weights_only=True)
    blob["train_y"] = blob["train_y"].flip(0)
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_prepared(tmp_path / "bad.pt")
    blob = torch.load(out, weights_only=True)
    blob["root"] = str(tmp_path / "moved")
    torch.save(blob, tmp_path / "moved.pt")
    with pytest.raises(DatasetError, match="not a directory"):
        load_prepared(tmp_path / "moved.pt")
    assert load_prepared(out).train_files == index.train_files


def test_pipeline_config_names_the_kind_and_its_options(tree, tmp_path):
    import shlex

    from resnet_bench.pipeline import grid as G
    from resnet_bench.pipeline.outputs import prepare_args
    spec = {"kind": "imagenet", "root": str(tree),
            "options": {**SMALL, "final_eval": "ten_crop", "pca_std": 0.05}}
    cfg = {"experiment": "tiny", "datasets": {"inet": spec},
           "recipes": {"r": {"iterations": 2, "batch_size": 4, "data_workers": 2}},
           "grid": [{"models": ["imagenet-v1-basic-18"], "datasets": ["inet"], "seeds": [0],
                     "recipe": "r"}]}
    G.check_schema(cfg, Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml")
    assert len(G.validate(cfg)) == 1
    out = tmp_path / "inet.pt"
    assert main(["data", "prepare", *shlex.split(prepare_args(spec)), "--out", str(out)]) == 0
    index = load_prepared(out)
    assert index.options["test_scales"] == [64, 80] and index.options["pca_std"] == 0.05
    bad = {**cfg, "datasets": {"inet": {**spec, "options": {"crop": 300}}}}
    with pytest.raises(ValueError, match="crop"):
        G.validate(bad)


def test_bench_refuses_a_streamed_dataset_and_points_to_stream(index, tmp_path, capsys):
    # a kind before its root is indexed (this one does not exist), a prepared index when read
    argv = ["bench", "--device", "cpu", "--no-baseline", "--iters", "1"]
    err = _error(capsys, [*argv, "--dataset", "imagenet", "--data-dir", str(tmp_path / "none")])
    assert "--dataset imagenet: is streamed" in err and "(--stream times" in err
    save_prepared(index, tmp_path / "index.pt")
    err = _error(capsys, [*argv, "--prepared", str(tmp_path / "index.pt")])
    assert "index.pt: is streamed" in err and "(--stream times" in err


def test_bench_stream_times_both_paths(capsys):
    argv = ["bench", "--stream", "--device", "cpu", "--batch-size", "4", "--stream-images", "12",
            "--stream-batches", "1", "--stream-workers", "0", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("torchvision", "resnet"))]
    assert len(rows) == 4 and all(float(r[-2]) > 0 for r in rows)
    assert [r[-1] for r in rows[::2]] == ["1.00", "1.00"]  # the baseline is the unit
    err = _error(capsys, [*argv[:-3], "--stream-batches", "9"])
    assert "need 40 training images" in err


def test_streaming_leaves_the_global_rng_alone(index):
    state = torch.get_rng_state()
    loader = StreamLoader(index, batch_size=4, seed=0, workers=1)
    loader.batch(2), loader.batch(0)
    list(loader.eval_views(index.test_files, index.test_y, 8, "ten_crop"))
    assert torch.equal(state, torch.get_rng_state())  # the checkpoint's RNG state stays exact


def test_inside_analyses_refuse_a_streamed_run_in_one_line(tree, tmp_path):
    from resnet_bench.inside.trained import load_trained
    out = tmp_path / "run"
    train(_config(tree, iterations=1, milestones=()), out, progress=False)
    with pytest.raises(ValueError, match="streamed dataset"):
        load_trained(out)
