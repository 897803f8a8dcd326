"""Datasets, the prepared cache, the validation split and the DeviceLoader (resnet_bench.data)."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from resnet_bench.cli import main as cli_main
from resnet_bench.data import (DatasetError, DeviceLoader, load_dataset, load_prepared,
                               prepare_dataset, validation_split)
from resnet_bench.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from resnet_bench.data.synthetic import load_synthetic
from mirror import require_mirror

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# synthetic


@pytest.fixture(scope="module")
def synth() -> object:
    return load_synthetic(seed=3, train_size=1000, test_size=500)


def test_synthetic_is_deterministic_shaped_and_balanced(synth):
    again = load_synthetic(seed=3, train_size=1000, test_size=500)
    assert torch.equal(synth.train_x, again.train_x) and torch.equal(synth.test_y, again.test_y)
    other = load_synthetic(seed=4, train_size=100, test_size=10)
    assert not torch.equal(other.train_x, synth.train_x[:100])
    assert synth.train_x.shape == (1000, 3, 32, 32) and synth.train_x.dtype == torch.uint8
    assert synth.test_x.shape == (500, 3, 32, 32) and synth.train_y.dtype == torch.int64
    assert synth.classes == SYNTHETIC_CLASSES and len(synth.classes) == 10
    assert synth.train_y.bincount(minlength=10).tolist() == [100] * 10
    assert synth.test_y.bincount(minlength=10).tolist() == [50] * 10
    # image i depends only on (seed, split, i): a smaller set is a prefix of a larger one
    small = load_synthetic(seed=3, train_size=250, test_size=20)
    assert torch.equal(small.train_x, synth.train_x[:250])
    assert torch.equal(small.test_x, synth.test_x[:20])
    assert synth.meta["seed"] == 3 and synth.label and synth.name == "synthetic"
    assert synth.train_x.float().std() > 30  # real contrast, not a flat image


def test_synthetic_is_not_linearly_separable(synth):
    x = synth.train_x.flatten(1).double() / 255
    mean = x.mean(0)
    x = x - mean
    xt = synth.test_x.flatten(1).double() / 255 - mean
    # nearest class mean on raw pixels
    centres = torch.stack([x[synth.train_y == c].mean(0) for c in range(10)])
    ncm_err = (torch.cdist(xt, centres).argmin(1) != synth.test_y).double().mean().item()
    # ridge-regression linear classifier (dual form: 1000x1000 solve)
    targets = F.one_hot(synth.train_y, 10).double()
    alpha = torch.linalg.solve(x @ x.T + 10.0 * torch.eye(len(x), dtype=x.dtype), targets)
    lin_err = ((xt @ (x.T @ alpha)).argmax(1) != synth.test_y).double().mean().item()
    assert ncm_err > 0.75 and lin_err > 0.75, (ncm_err, lin_err)


# ---------------------------------------------------------------------------------------------
# CIFAR in the real python-pickle format


def _pickle(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int]]:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta (tiny, real format)."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(base / name, {"batch_label": name, "labels": labels, "data": data,
                              "filenames": [f"{name}_{k}.png" for k in range(per_batch)]})
        all_data.append(data)
        all_labels += labels
    _pickle(base / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch":
                                    per_batch, "num_vis": 3072})
    return np.concatenate(all_data), all_labels


def make_cifar100(root: Path, n: int = 6) -> None:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        _pickle(base / name, {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                              "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                              "coarse_labels": [int(v) for v in rng.integers(0, 20, n)]})
    _pickle(base / "meta", {"fine_label_names": [f"fine{i:02d}" for i in range(100)],
                            "coarse_label_names": [f"coarse{i}" for i in range(20)]})


def md5s_of(folder: Path) -> dict[str, str]:
    return {p.name: md5(p) for p in folder.iterdir()}


def test_cifar10_tiny_real_format_loads_with_md5_list(tmp_path):
    data, labels = make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    ds = load_dataset("cifar10", tmp_path, verify=md5s_of(folder))
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    # CIFAR rows are channel-planar (1024 R, 1024 G, 1024 B)
    assert torch.equal(ds.train_x[7], torch.from_numpy(data[7].reshape(3, 32, 32)))
    assert ds.train_y.tolist() == labels[:20] and ds.test_y.tolist() == labels[20:]
    assert ds.classes == CIFAR10_CLASSES and ds.name == "cifar10"
    assert ds.meta["verified"] == "custom md5 list"
    assert ds.meta["md5"]["data_batch_3"] == md5(folder / "data_batch_3")
    assert ds.label == "CIFAR-10 (unofficial files)"  # never plain "CIFAR-10" for look-alikes
    # the folder itself is also accepted as root
    assert torch.equal(load_dataset("cifar10", folder, verify=False).test_x, ds.test_x)


def test_cifar10_default_verify_uses_official_md5s(tmp_path):
    make_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="md5 mismatch") as err:
        load_dataset("cifar10", tmp_path)
    assert "cifar-10-batches-py/data_batch_1" in str(err.value) and "\n" not in str(err.value)


def test_cifar_targz_archive_and_cifar100(tmp_path):
    src = tmp_path / "src"
    make_cifar10(src)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", archive, verify=False)
    assert len(ds.train_y) == 20 and ds.meta["source"] == str(archive)
    assert ds.meta["verified"] == "no (presence only)" and len(ds.meta["archive_sha256"]) == 64
    # a directory holding torchvision's archive name works the same way
    assert torch.equal(load_dataset("cifar10", tmp_path, verify=False).train_x, ds.train_x)

    make_cifar100(tmp_path / "c100")
    ds100 = load_dataset("cifar100", tmp_path / "c100", verify=False, label="tiny C100")
    assert ds100.num_classes == 100 and ds100.classes[5] == "fine05"
    assert ds100.train_x.shape == (6, 3, 32, 32) and ds100.label == "tiny C100"


def test_cifar_missing_and_corrupt_give_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="path not found") as err:
        load_dataset("cifar10", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(DatasetError, match="no cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path / "empty")
    make_cifar10(tmp_path / "t")
    batch = tmp_path / "t" / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated pickle
    with pytest.raises(DatasetError, match="corrupt CIFAR pickle") as err:
        load_dataset("cifar10", tmp_path / "t", verify=False)
    assert "cifar-10-batches-py" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "t" / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError, match="missing file") as err:
        load_dataset("cifar10", tmp_path / "t", verify=False)
    assert "test_batch" in str(err.value)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", bad, verify=False)
    assert str(bad) in str(err.value)


# ---------------------------------------------------------------------------------------------
# ImageFolder trees


def _img(path: Path, mode: str, size: tuple[int, int], value: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0]) + ({"L": (), "RGB": (3,), "RGBA": (4,)}[mode])
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return arr


def make_tree(root: Path) -> dict[str, np.ndarray]:
    arrs = {
        "train/cat/a.png": _img(root / "train/cat/a.png", "RGB", (32, 32), 1),
        "train/cat/b.png": _img(root / "train/cat/b.png", "L", (32, 32), 2),
        "train/dog/c.png": _img(root / "train/dog/c.png", "RGBA", (32, 32), 3),
        "test/cat/d.png": _img(root / "test/cat/d.png", "RGB", (32, 32), 4),
        "test/dog/e.png": _img(root / "test/dog/e.png", "RGB", (40, 24), 5),
    }
    (root / "train/dog/notes.txt").write_text("not an image")
    return arrs


def test_folder_channels_and_sizes_are_explicit(tmp_path):
    arrs = make_tree(tmp_path / "tree")
    with pytest.raises(DatasetError, match="is 24x40 but .* pass image_size") as err:
        load_dataset("folder", tmp_path / "tree")
    assert "e.png" in str(err.value)

    ds = load_dataset("folder", tmp_path / "tree", image_size=32)
    assert ds.classes == ["cat", "dog"] and ds.train_y.tolist() == [0, 0, 1]
    assert ds.train_x.shape == (3, 3, 32, 32) and ds.test_x.shape == (2, 3, 32, 32)
    assert torch.equal(ds.train_x[0], torch.from_numpy(arrs["train/cat/a.png"]).permute(2, 0, 1))
    grey = torch.from_numpy(arrs["train/cat/b.png"])
    assert all(torch.equal(ds.train_x[1, c], grey) for c in range(3))  # grey replicated
    rgba = torch.from_numpy(arrs["train/dog/c.png"]).permute(2, 0, 1)
    assert torch.equal(ds.train_x[2], rgba[:3])  # alpha dropped, colours untouched
    assert ds.meta["source_modes"] == {"L": 1, "RGB": 3, "RGBA": 1}
    assert ds.meta["resize"].endswith(": 1 images") and ds.meta["skipped_non_images"] == 1
    assert ds.meta["channels"].startswith("RGB") and ds.label == "tree (folder)"

    grey_ds = load_dataset("folder", tmp_path / "tree", image_size=(32, 32), channels="l")
    assert grey_ds.train_x.shape == (3, 1, 32, 32)
    pil_luma = np.array(Image.fromarray(arrs["train/cat/a.png"]).convert("L"))
    assert torch.equal(grey_ds.train_x[0, 0], torch.from_numpy(pil_luma))
    with pytest.raises(DatasetError, match="channels"):
        load_dataset("folder", tmp_path / "tree", image_size=32, channels="keep")


def test_folder_archive_matches_directory_and_label_option(tmp_path):
    make_tree(tmp_path / "tree")
    archive = tmp_path / "mytree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="mytree")  # tree one folder down, like the mirror
    a = load_dataset("folder", archive, image_size=32, label="My tree")
    d = load_dataset("folder", tmp_path / "tree", image_size=32)
    assert torch.equal(a.train_x, d.train_x) and torch.equal(a.test_y, d.test_y)
    assert a.label == "My tree" and a.name == "mytree" and len(a.meta["archive_sha256"]) == 64
    assert a.meta["content_sha256"] == d.meta["content_sha256"]


def test_folder_errors(tmp_path):
    make_tree(tmp_path / "tree")
    _img(tmp_path / "tree/test/bird/x.png", "RGB", (32, 32), 9)
    with pytest.raises(DatasetError, match="only in train: -; only in test: bird"):
        load_dataset("folder", tmp_path / "tree", image_size=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty") as err:
        load_dataset("folder", tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)
    with pytest.raises(DatasetError, match="path not found"):
        load_dataset("folder", tmp_path / "missing")
    (tmp_path / "tree/train/bird").mkdir()
    with pytest.raises(DatasetError, match="class folder has no images") as err:
        load_dataset("folder", tmp_path / "tree", image_size=32)
    assert "train/bird" in str(err.value)
    (tmp_path / "broken/train/a").mkdir(parents=True)
    (tmp_path / "broken/test/a").mkdir(parents=True)
    (tmp_path / "broken/train/a/x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "broken/test/a/y.jpg").write_bytes(b"\xff\xd8 nor this")
    with pytest.raises(DatasetError, match="cannot decode image") as err:
        load_dataset("folder", tmp_path / "broken")
    assert "x.jpg" in str(err.value) and "\n" not in str(err.value)


def test_real_cifar10_jpeg_mirror_slice():
    ds = load_dataset("folder", require_mirror(), max_per_class=3)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.label == "CIFAR-10 (JPEG q75 mirror)" and ds.name == "cifar10-jpeg"
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (30, 3, 32, 32)
    assert ds.train_y.tolist() == [c for c in range(10) for _ in range(3)]
    assert ds.meta["content_sha256"].startswith("96c87824") and ds.meta["max_per_class"] == 3
    assert ds.meta["source_modes"] == {"RGB": 60} and 20 < ds.train_x.float().mean() < 235


# ---------------------------------------------------------------------------------------------
# validation split


def test_validation_split_is_stratified_and_deterministic():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    tx, ty, vx, vy = validation_split(x, y, 10, seed=0)
    assert vy.bincount().tolist() == [5, 3, 2] and len(ty) == 90
    assert sorted(tx.flatten().tolist() + vx.flatten().tolist()) == list(range(100))
    assert torch.equal(vx, validation_split(x, y, 10, seed=0)[2])
    assert not torch.equal(vx, validation_split(x, y, 10, seed=1)[2])
    assert torch.equal(y[vx.flatten().long()], vy)
    with pytest.raises(DatasetError):
        validation_split(x, y, 100)


# ---------------------------------------------------------------------------------------------
# DeviceLoader


def _data(n: int = 10, c: int = 3, h: int = 8, w: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8), torch.arange(n)


def test_loader_batches_are_pure_functions_of_seed_and_index():
    x, y = _data()
    a = DeviceLoader(x, y, batch_size=4, seed=7)
    drawn = [a.batch(i) for i in range(5)]
    xa, ya = a.batch(5)
    xb, yb = DeviceLoader(x, y, batch_size=4, seed=7).batch(5)  # fresh: 0..4 never drawn
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(drawn[2][0], DeviceLoader(x, y, batch_size=4, seed=7).batch(2)[0])
    xc, yc = DeviceLoader(x, y, batch_size=4, seed=8).batch(5)
    assert not torch.equal(xa, xc)
    assert xa.dtype == torch.float32 and xa.shape == (4, 3, 8, 8) and ya.dtype == torch.int64
    assert a.epoch_at(5) == 2.0 and a.batches_per_epoch == 2.5


def test_loader_epochs_cover_every_example_once_and_wrap():
    x, y = _data(n=10)
    loader = DeviceLoader(x, y, batch_size=4, seed=1, augment=False)
    stream = torch.cat([loader.batch(i)[1] for i in range(10)])  # 40 positions = 4 epochs
    epochs = stream.view(4, 10)
    for e in range(4):
        assert sorted(epochs[e].tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])  # a fresh permutation per epoch
    # batch 2 straddles epochs 0 and 1 (positions 8..11), Caffe-style
    assert loader.batch(2)[1].tolist() == epochs[0, 8:].tolist() + epochs[1, :2].tolist()


def test_loader_crop_and_flip_match_a_hand_computed_reference():
    x, y = _data(n=6, h=8, w=8)
    loader = DeviceLoader(x, y, batch_size=6, seed=3, pad=4, normalize="pixel")
    mean_img = x.double().mean(0) / 255
    seen_flip = seen_shift = False
    for i in range(4):
        out, labels = loader.batch(i)
        dy, dx, flip = loader.augmentation(i)
        for k in range(6):
            img = x[labels[k]].double() / 255 - mean_img          # normalise first ...
            padded = F.pad(img, (4, 4, 4, 4))                     # ... so the pad value is the mean
            ref = padded[:, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8]
            if flip[k]:
                ref = ref.flip(-1)
            assert torch.allclose(out[k].double(), ref, atol=1e-6)
        seen_flip |= bool(flip.any()) and not bool(flip.all())
        seen_shift |= bool(((dy != 4) | (dx != 4)).any())
    assert seen_flip and seen_shift
    for norm in ("pixel", "channel"):
        ref = DeviceLoader(x, y, batch_size=6, seed=3, normalize=norm).batch(2)[0]
        cl = DeviceLoader(x, y, batch_size=6, seed=3, normalize=norm,
                          channels_last=True).batch(2)[0]
        assert torch.allclose(cl, ref, atol=1e-6)
        assert cl.is_contiguous(memory_format=torch.channels_last)


def test_channel_statistics_do_not_depend_on_the_summation_order():
    """The channel mean/std are exact functions of the images: the same bits in any order and
    chunking (CUDA sums in yet another order), and equal to a float64 reference. The data is
    made so that float32 sums of squares are beyond float32's exact integers (2^24)."""
    from resnet_bench.data.loader import Normalizer
    g = torch.Generator().manual_seed(5)
    x = torch.randint(150, 256, (3000, 3, 32, 32), dtype=torch.uint8, generator=g)  # 3 chunks
    orders = {"as given": torch.arange(len(x)), "reversed": torch.arange(len(x) - 1, -1, -1),
              "shuffled": torch.randperm(len(x), generator=g)}
    stats = {k: Normalizer(x[o], "channel") for k, o in orders.items()}
    x64 = x.to(torch.float64) / 255
    mean_ref, std_ref = x64.mean((0, 2, 3)), x64.std((0, 2, 3), unbiased=False)
    for name, s in stats.items():
        assert torch.equal(s.mean, stats["as given"].mean), name
        assert torch.equal(s.std, stats["as given"].std), name
        assert torch.equal(s.scale, stats["as given"].scale), name
        assert torch.allclose(s.mean.double(), mean_ref, rtol=1e-7, atol=0), name
        assert torch.allclose(s.std.double(), std_ref, rtol=1e-6, atol=0), name  # float32 rounding
    # Without integer sums this data would not pass: float32 sums of squares differ by order.
    sq32 = {k: (x[o].float() ** 2).sum((0, 2, 3)) for k, o in orders.items()}
    assert float(sq32["as given"][0]) > 2**24
    sq32_chunked = sum((x[s:s + 1365].float() ** 2).sum((0, 2, 3)) for s in range(0, 3000, 1365))
    assert len({tuple(v.tolist()) for v in [*sq32.values(), sq32_chunked]}) > 1


def test_loader_normalisation_statistics_and_eval_iterator():
    x, y = _data(n=64, h=4, w=4)
    ch = DeviceLoader(x, y, batch_size=16, seed=0, augment=False, normalize="channel")
    epoch = torch.cat([ch.batch(i)[0] for i in range(4)]).double()
    assert torch.allclose(epoch.mean((0, 2, 3)), torch.zeros(3, dtype=torch.double), atol=1e-5)
    assert torch.allclose(epoch.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.double),
                          atol=1e-4)
    px = DeviceLoader(x, y, batch_size=16, seed=0, augment=False, normalize="pixel")
    epoch = torch.cat([px.batch(i)[0] for i in range(4)]).double()
    assert epoch.mean(0).abs().max() < 1e-6  # the mean image is subtracted per pixel
    assert torch.allclose(px.norm.mean_image.double(), x.double().mean(0) / 255, atol=1e-6)

    tx, ty = _data(n=23, h=4, w=4)
    batches = list(ch.eval_batches(tx, ty + 100, batch_size=10))
    assert [len(b[1]) for b in batches] == [10, 10, 3]
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(100, 123))
    expected = (tx.double() / 255 - ch.norm.mean.double().view(1, 3, 1, 1)) \
        / ch.norm.std.double().view(1, 3, 1, 1)  # training statistics, no augmentation
    assert torch.allclose(torch.cat([b[0] for b in batches]).double(), expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# prepared cache and CLI


def test_prepare_round_trip_and_damage(tmp_path):
    out = tmp_path / "prep" / "synth.pt"
    ds = prepare_dataset("synthetic", None, out, seed=1, train_size=60, test_size=20)
    back = load_prepared(out)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(ds, key), getattr(back, key))
    assert back.classes == ds.classes and back.label == ds.label and back.name == "synthetic"
    assert back.meta["prepared"]["options"] == {"seed": 1, "train_size": 60, "test_size": 20}
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left no temporary behind
    blob = torch.load(out, weights_only=True)
    blob["train_x"][0, 0, 0, 0] ^= 1
    torch.save(blob, out)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_prepared(out)
    out.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a readable prepared dataset"):
        load_prepared(out)
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset("synthetic", None, image_size=32)


def test_cli_prepare_info_and_bad_path(tmp_path, capsys):
    out = tmp_path / "s.pt"
    assert cli_main(["data", "prepare", "--dataset", "synthetic", "--train-size", "30",
                     "--test-size", "10", "--seed", "2", "--out", str(out)]) == 0
    assert cli_main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Synthetic" in text and "30 train / 10 test" in text and "disk-stripes" in text
    bad = tmp_path / "does-not-exist"
    assert cli_main(["data", "prepare", "--dataset", "folder", "--root", str(bad),
                     "--out", str(tmp_path / "f.pt")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert not (tmp_path / "f.pt").exists()
    assert cli_main(["data", "info", str(tmp_path / "nope.pt")]) != 0
