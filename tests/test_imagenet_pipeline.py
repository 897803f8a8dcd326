"""The ImageNet experiments in the pipeline: grid entries of ImageNet nets, resources from the
nets' real cost at the data's image size, the ImageNet presets, the subset script, and a tiny
end-to-end run of ImageNet-style JPEGs through Snakemake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_helpers import REPO, resource_defaults, snakemake_env, workflow_copy  # noqa: E402

from resnet_bench.pipeline import grid as G  # noqa: E402
from resnet_bench.pipeline import resources as R  # noqa: E402

RES = resource_defaults()
from resnet_bench.train.recipe import Recipe  # noqa: E402

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
FIG4_NETS = ["imagenet-plain-basic-18", "imagenet-plain-basic-34", "imagenet-v1-basic-18",
             "imagenet-v1-basic-34"]
IMAGES_PER_EPOCH = 1_280_000   # ImageNet-1k's 1.28M training images (1,281,167)


def grid_config(**entry) -> dict:
    return {"experiment": "e", "datasets": {"d": {"kind": "synthetic"}},
            "recipes": {"r": {"iterations": 5}},
            "grid": [{"datasets": ["d"], "seeds": [0], "recipe": "r", **entry}]}


# --- the grid -------------------------------------------------------------------------------------

def test_a_grid_entry_with_the_imagenet_stem_names_the_imagenet_nets():
    cfg = grid_config(stem="imagenet", family=["plain", "v1"], block="basic", depth=[18, 34])
    G.check_schema(cfg, SCHEMA)
    assert [r.model for r in G.validate(cfg)] == sorted(FIG4_NETS)
    cfg = grid_config(stem="imagenet", family="v2", block="bottleneck", depth=[152, 200],
                      variant=["default", "stride3x3"])
    assert {r.model for r in G.validate(cfg)} == {
        "imagenet-v2-bottleneck-152", "imagenet-v2-bottleneck-200",
        "imagenet-v2-bottleneck-152-stride3x3", "imagenet-v2-bottleneck-200-stride3x3"}
    # without `stem` the product stays CIFAR's, and run paths carry the canonical name
    assert [r.model for r in G.validate(grid_config(family="v1", depth=20))] == ["v1-basic-20"]
    run = G.validate(grid_config(models=["resnet34"]))[0]
    assert run.path("res", "e") == "res/e/runs/d/r/imagenet-v1-basic-34/seed0"


@pytest.mark.parametrize("entry, needle", [
    (dict(stem="imagenet", family="v1", depth=20), "depth 20 is not a V1 Table 1 depth for "
                                                   "ImageNet block basic; valid: 18, 34"),
    (dict(stem="imagenet", models=["resnet18"]), "`stem` applies to `family`/`depth` products"),
    (dict(stem="cifar", family="v1", depth=18), "depth 18 is not 6n+2"),
])
def test_bad_imagenet_grid_entries_are_refused_in_one_line(entry, needle):
    with pytest.raises(ValueError, match="grid\\[0\\]") as err:
        G.validate(grid_config(**entry))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_schema_refuses_an_unknown_stem():
    with pytest.raises(ValueError) as err:
        G.check_schema(grid_config(stem="tiny", family="v1", depth=20), SCHEMA)
    assert "grid.0.stem" in str(err.value) and "cifar, imagenet" in str(err.value)


# --- resources -------------------------------------------------------------------------------------

def _conv_outputs(model: torch.nn.Module, size: int) -> int:
    total = 0

    def count(_m, _i, out):
        nonlocal total
        total += out[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total


def test_conv_outputs_are_measured_and_scale_with_the_image_area():
    from resnet_bench.models import build_model, conv_output_elements
    torch.set_num_threads(1)
    for name in ("imagenet-plain-basic-18", "imagenet-v1-bottleneck-50"):
        at_224 = conv_output_elements(name)
        # a real CPU pass at 64 px (a multiple of 32: every map scales exactly)
        assert _conv_outputs(build_model(name), 64) * (224 / 64) ** 2 == at_224
    # the stem's 7x7/2 conv alone makes a 64x112x112 map
    assert conv_output_elements("imagenet-plain-basic-18") > 64 * 112 * 112
    assert conv_output_elements("v1-basic-20") == _conv_outputs(build_model("v1-basic-20"), 32)


def test_resources_follow_the_net_at_the_datasets_image_size():
    recipe = Recipe(iterations=600_000, milestones=(150_000,), batch_size=256)
    r34 = "imagenet-v1-basic-34"
    full, small = (R.runtime_min(r34, recipe, "gpu", RES, image_size=s) for s in ((224, 224), 128))
    assert full == R.runtime_min(r34, recipe, "gpu", RES)   # the net's own 224 by default
    assert small / full == pytest.approx((128 / 224) ** 2, rel=0.01)
    # FLOPs are the measured MACs: ResNet-34 3.6 G per 224 image (V1 Table 1), x2 x3 per image
    assert R.training_flops(R.parse_model_name(r34), recipe) == pytest.approx(
        600_000 * 256 * 3.64e9 * 6, rel=0.01)
    assert R.mem_mb(r34, recipe, RES, image_size=128) < R.mem_mb(r34, recipe, RES) < R.mem_mb(
        "imagenet-v1-bottleneck-152", recipe, RES)
    # the CIFAR nets at 32x32 are where their cost is measured: no scaling
    cifar = Recipe()
    assert R.runtime_min("v1-basic-110", cifar, "gpu", RES, image_size=(32, 32)) == \
        R.runtime_min("v1-basic-110", cifar, "gpu", RES)


def test_the_image_size_of_a_dataset_comes_from_its_kind_or_options():
    cfg = {"datasets": {"c": {"kind": "cifar10"}, "s": {"kind": "synthetic"},
                        "f": {"kind": "folder", "root": "x"},
                        "g": {"kind": "folder", "options": {"image_size": [96, 64]}},
                        "i": {"kind": "imagenet"}, "j": {"kind": "imagenet",
                                                         "options": {"crop": 128}}}}
    sizes = {d: G.image_size_of(cfg, d) for d in cfg["datasets"]}
    assert sizes == {"c": (32, 32), "s": (32, 32), "f": None, "g": (96, 64), "i": (224, 224),
                     "j": (128, 128)}


# --- the presets -----------------------------------------------------------------------------------

def preset(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name, models", [
    ("v1_imagenet.yaml", FIG4_NETS + ["imagenet-v1-basic-34-optB", "imagenet-v1-basic-34-optC",
                                      "imagenet-v1-bottleneck-50", "imagenet-v1-bottleneck-101",
                                      "imagenet-v1-bottleneck-152"]),
    ("v2_imagenet.yaml", [f"imagenet-{f}-bottleneck-{d}" for f in ("v1", "v2")
                          for d in (152, 200)]),
    ("imagenet_subset.yaml", FIG4_NETS),
])
def test_imagenet_presets_validate_as_written(name, models):
    raw = preset(name)
    G.check_schema(raw, SCHEMA)
    runs = G.validate(raw)
    assert sorted({r.model for r in runs}) == sorted(models)
    assert all(spec["kind"] == "imagenet" for spec in raw["datasets"].values())
    assert {r.dataset for r in runs} == set(raw["datasets"])


def _epochs(iterations: int, batch: int) -> float:
    return iterations * batch / IMAGES_PER_EPOCH


def test_the_paper_presets_have_the_papers_schedule():
    v1 = preset("v1_imagenet.yaml")
    v2 = preset("v2_imagenet.yaml")
    for cfg in (v1, v2):
        assert cfg["gpus_per_run"] == 8
        for r in cfg["recipes"].values():
            assert (r["batch_size"], r["lr"], r["momentum"], r["weight_decay"]) == (256, 0.1, 0.9,
                                                                                    1e-4)
            assert "warmup" not in r
    (r1,), (r2,) = v1["recipes"].values(), v2["recipes"].values()
    # V1: up to 60x10^4 iterations (120 epochs), /10 every 30 epochs
    assert r1["iterations"] == 600_000 and _epochs(600_000, 256) == 120
    assert [_epochs(m, 256) for m in r1["milestones"]] == [30, 60, 90]
    # V2: /10 at epochs 30 and 60, 90 epochs (fb.resnet.torch's total)
    assert [_epochs(m, 256) for m in r2["milestones"]] == [30, 60]
    assert _epochs(r2["iterations"], 256) == 90
    for cfg in (v1, v2):
        assert all(spec["options"]["label"] == "ImageNet-1k" for spec in cfg["datasets"].values())


def test_the_subset_preset_fits_one_gpu_and_keeps_the_schedules_shape():
    cfg = preset("imagenet_subset.yaml")
    assert cfg["gpus_per_run"] == 1
    (r,) = cfg["recipes"].values()
    per_epoch = 100 * 1_280 // r["batch_size"]            # 100 classes of ~1,280 images
    assert r["iterations"] / per_epoch == 18
    assert [m / r["iterations"] for m in r["milestones"]] == pytest.approx([1 / 3, 2 / 3])
    runs = G.validate(cfg)
    flops = sum(R.training_flops(R.parse_model_name(run.model), G.recipe_of(cfg, run.recipe),
                                 G.image_size_of(cfg, run.dataset)) for run in runs)
    assert flops == pytest.approx(50e15, rel=0.05)        # the comment's ~50 PFLOP


# --- the subset script -----------------------------------------------------------------------------

def _jpeg(path: Path, color, size=(40, 30)) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=90)


def fake_imagenet(root: Path, n_classes=25, train=3, val=2) -> list[str]:
    wnids = [f"n{1440764 + 37 * i:08d}" for i in range(n_classes)]
    for i, w in enumerate(wnids):
        for k in range(train):
            _jpeg(root / "train" / w / f"{w}_{k}.JPEG", (10 * i, 5 * k, 100))
        for k in range(val):
            _jpeg(root / "val" / w / f"ILSVRC2012_val_{i:04d}{k}.JPEG", (10 * i, 5 * k, 200))
    (root / "train" / ".cache").mkdir()      # hidden: ignored, as ImageFolder does
    return wnids


def subset(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "make_imagenet_subset.py"),
                           *args], capture_output=True, text=True, timeout=120)


def test_subset_script_links_every_tenth_class(tmp_path):
    from resnet_bench.data import load_dataset
    wnids = fake_imagenet(tmp_path / "src")
    out = tmp_path / "sub"
    res = subset("--source", str(tmp_path / "src"), "--out", str(out), "--splits", "train",
                 "val:test")
    assert res.returncode == 0, res.stderr
    chosen = wnids[::10]
    assert (out / "classes.txt").read_text().split() == chosen == [wnids[0], wnids[10], wnids[20]]
    links = sorted((out / "train" / chosen[1]).iterdir())
    assert len(links) == 3 and all(p.is_symlink() and p.readlink().is_absolute() for p in links)
    assert links[0].resolve() == (tmp_path / "src" / "train" / chosen[1] / links[0].name)
    # the subset is an ImageFolder tree the folder kind reads (train/ and test/)
    ds = load_dataset("folder", out, image_size=32)
    assert ds.classes == chosen and len(ds.train_y) == 9 and len(ds.test_y) == 6
    # again with the same arguments: nothing changes; another offset into the same folder: refused
    assert subset("--source", str(tmp_path / "src"), "--out", str(out), "--splits", "train",
                  "val:test").returncode == 0
    res = subset("--source", str(tmp_path / "src"), "--out", str(out), "--offset", "1",
                 "--splits", "train", "val:test")
    assert res.returncode == 1 and "choose an empty --out" in res.stderr
    assert (out / "classes.txt").read_text().split() == chosen


def flat_val(src: Path) -> None:
    """The devkit's layout: every validation image directly in val/."""
    import shutil
    shutil.rmtree(src / "val")
    _jpeg(src / "val" / "ILSVRC2012_val_00000001.JPEG", (0, 0, 0))


@pytest.mark.parametrize("setup, args, needle", [
    (lambda src: None, ["--every", "0"], "need every >= 1"),
    (lambda src: flat_val(src), [], "flat validation images: sort them into <wnid>/ folders"),
    (lambda src: (src / "val" / "n99999999").mkdir(), [], "class folders differ"),
    (lambda src: None, ["--splits", "nope"], "nope: no such directory"),
])
def test_subset_script_refuses_bad_input_in_one_line(tmp_path, setup, args, needle):
    fake_imagenet(tmp_path / "src", n_classes=3, train=1, val=1)
    setup(tmp_path / "src")
    res = subset("--source", str(tmp_path / "src"), "--out", str(tmp_path / "sub"), *args)
    assert res.returncode == 1 and needle in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "sub").exists()


# --- end to end ------------------------------------------------------------------------------------

def tiny_imagenet_tree(root: Path, classes=4, train=16, test=8, size=48) -> None:
    """ImageFolder of real JPEGs, ImageNet-style (class folders named like wnids), one colour
    cast per class so there is something to learn."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        tint = np.array([60 * c, 255 - 60 * c, 128], dtype=float)
        for split, n in (("train", train), ("test", test)):
            d = root / split / f"n{1000 + c:08d}"
            d.mkdir(parents=True)
            for k in range(n):
                pixels = np.clip(tint + rng.normal(0, 40, (size, size, 3)), 0, 255)
                Image.fromarray(pixels.astype("uint8")).save(d / f"img{k}.JPEG", quality=85)


@pytest.mark.slow
def test_tiny_imagenet_style_pipeline_draws_fig4_and_tables_of_the_four_nets(tmp_path):
    tiny_imagenet_tree(tmp_path / "tiny")
    wd = workflow_copy(tmp_path / "wf")
    # the streaming kind, scaled down: 40 px crops of 44-56 px resizes (the paper's 224 of 256-480)
    cfg = {"experiment": "inet", "results": "results", "device": "cpu", "gpus_per_run": 0,
           "threads_per_run": 1,
           "datasets": {"tiny": {"kind": "imagenet", "root": str(tmp_path / "tiny"),
                                 "options": {"label": "ImageNet-style tiny JPEGs", "crop": 40,
                                             "resize_min": 44, "resize_max": 56,
                                             "test_resize": 44, "stats_images": 32}}},
           "recipes": {"tiny": {"iterations": 4, "milestones": [2, 3], "batch_size": 16,
                                "eval_every": 2, "eval_batch_size": 32, "checkpoint_every": 2,
                                "train_window": 2, "data_workers": 1}},
           "grid": [{"stem": "imagenet", "family": ["plain", "v1"], "block": "basic",
                     "depth": [18, 34], "datasets": ["tiny"], "seeds": [0], "recipe": "tiny"}]}
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                          "tiny.yaml"], cwd=wd, env=snakemake_env(OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    out = wd / "results" / "inet"
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert sorted(runs["model"]) == sorted(FIG4_NETS)
    assert (runs["status"] == "completed").all() and (runs["iterations"] == 4).all()
    figs = out / "figures" / "tiny" / "tiny"
    for ext in ("png", "pdf", "csv"):
        assert (figs / f"v1_fig4.{ext}").stat().st_size > 0
    assert sorted(p.name for p in figs.glob("*.png")) == ["v1_fig4.png"]   # no CIFAR figure
    fig4 = pd.read_csv(figs / "v1_fig4.csv")
    assert fig4.groupby("panel")["model"].unique().map(set).to_dict() == {
        "left": set(FIG4_NETS[:2]), "right": set(FIG4_NETS[2:])}
    assert set(fig4["series"]) == {"train_error", "test_error"}
    claims = pd.read_csv(out / "tables" / "claims.csv")
    fig4_claims = claims[claims["claim"].str.startswith("v1-imagenet")]
    assert set(fig4_claims["lower_model"]) == {FIG4_NETS[0], FIG4_NETS[3], FIG4_NETS[2]}
    assert (fig4_claims["verdict"] == "not testable").all()        # one seed per net
    comparison = pd.read_csv(out / "tables" / "paper_comparison.csv")
    table2 = comparison[comparison["table"] == "Table 2"]
    assert sorted(table2["model"]) == sorted(FIG4_NETS) and not table2["comparable"].any()
