"""The dataset kinds and the recipe knobs are declared once: the config schema, the CLI flags and
the checks agree with the declarations, and a kind registered from a test file alone is accepted
by the config validation, the CLI and a one-iteration training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from resnet_bench.infra.checks import Int
from resnet_bench.cli import build_parser, main
from resnet_bench.data.dataset import ImageDataset
from resnet_bench.data.kind import DatasetKind, Option, register, unregister
from resnet_bench.data.registry import (kinds, lookup, parse_source, schema_kinds,
                                         schema_options)
from resnet_bench.pipeline import grid as G
from resnet_bench.record import RECIPE_SPEED_ONLY
from resnet_bench.train import recipe as R

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


# --- the schema file holds what the declarations derive -------------------------------------------

def test_the_schema_files_recipes_are_the_knobs():
    assert _schema()["properties"]["recipes"]["additionalProperties"] == R.schema()


def test_the_schema_files_dataset_kinds_and_options_are_the_declared_ones():
    entry = _schema()["properties"]["datasets"]["additionalProperties"]
    builtin = ["synthetic", "cifar10", "cifar100", "folder", "imagenet", "imagefolder"]
    assert entry["properties"]["kind"]["enum"] == builtin
    # the file is written for the built-in kinds (a test may have registered more)
    assert entry["allOf"] == [o for o in schema_options()
                              if o["if"]["properties"]["kind"]["enum"][0] in builtin]


def test_the_derived_schema_checks_what_the_declarations_check():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["recipes"]["quick"]["momentum"] = 1.0
    with pytest.raises(ValueError, match=r"recipes.quick key momentum: got 1.0; allowed: a "
                                         r"finite number in \[0, 1\)"):
        G.check_schema(cfg, SCHEMA)


# --- the knobs -----------------------------------------------------------------------------------

def test_every_knob_has_one_flag_and_its_default_is_the_recipes():
    parser = build_parser("train")
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {o for a in train._actions for o in a.option_strings}
    for name, knob in R.KNOBS.items():
        assert knob.flag in flags
        assert getattr(R.Recipe(), name) == knob.default
    assert {n for n, k in R.KNOBS.items() if k.speed_only} == set(RECIPE_SPEED_ONLY)
    assert {n for n, k in R.KNOBS.items() if k.recorded_when_set} == {"data_workers",
                                                                      "bn_batch_size"}


def test_a_recipe_is_checked_once_per_knob(monkeypatch):
    calls = []
    rule = R.KNOBS["lr"].rule
    original = type(rule).check
    monkeypatch.setattr(type(rule), "check",
                        lambda self, *a, **k: calls.append(a[0]) or original(self, *a, **k))
    R.Recipe.from_dict({"lr": 0.2, "iterations": 10, "milestones": [5]})
    assert calls.count("lr") == 1


# --- the kinds -----------------------------------------------------------------------------------

def test_every_option_has_one_prepare_flag_with_the_loaders_default():
    parser = build_parser("data")
    prepare = parser._subparsers._group_actions[0].choices["data"]
    prepare = prepare._subparsers._group_actions[0].choices["prepare"]
    dests = {a.dest: a for a in prepare._actions}
    for kind in kinds().values():
        for option in kind.options:
            assert option.name in dests, (kind.name, option.name)
            assert dests[option.name].default is None  # only options given are passed


def test_the_final_eval_option_offers_the_views_the_stream_implements():
    from resnet_bench.data.views import EVAL_MODES
    final_eval = next(o for o in lookup("imagenet").options if o.name == "final_eval")
    assert final_eval.rule.choices == EVAL_MODES


@pytest.mark.parametrize("kind, options", [
    ("cifar10", {"verify": False, "download": True, "label": "CIFAR-10 (a copy)"}),
    ("folder", {"image_size": [64, 48], "max_per_class": 20.0, "channels": "l"}),
    ("folder", {"image_size": 40}),
    ("imagenet", {"test_scales": [64, 80], "pca_std": 0.05, "final_eval": "ten_crop"}),
])
def test_the_pipeline_passes_dataset_options_as_flags_that_parse_back_to_them(kind, options):
    import shlex

    from resnet_bench.pipeline.outputs import prepare_args
    argv = shlex.split(prepare_args({"kind": kind, "root": "data/x", "options": options}))
    args = build_parser("data").parse_args(["data", "prepare", "--out", "x.pt", *argv])
    assert {k: getattr(args, k) for k in options} == lookup(kind).check_options(options)


def test_a_dataset_option_no_flag_can_carry_is_refused_at_config_check():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["datasets"] = {"c10": {"kind": "cifar10", "root": "data/c10",
                               "options": {"verify": {"data_batch_1": "0" * 32}}}}
    for entry in cfg["grid"]:
        entry["datasets"] = ["c10"]
    cfg.pop("analysis", None)
    G.check_schema(cfg, SCHEMA)  # a mapping is a valid `verify` for the loader itself
    with pytest.raises(G.GridError, match="datasets.c10.options.verify: got .* no flag carries"):
        G.validate(cfg)


def test_the_workflows_name_wildcards_are_the_schemas_entry_names():
    import re
    for section, name, bad in (("datasets", "cifar10-jpeg", "CIFAR"), ("recipes", "Paper_1", "-x")):
        pattern = G.key_pattern(SCHEMA, section)
        assert re.fullmatch(pattern, name) and not re.fullmatch(pattern, bad)
        assert f"^{pattern}$" == _schema()["properties"][section]["propertyNames"]["pattern"]


def test_schema_kinds_list_every_kind_and_alias():
    assert schema_kinds()[:5] == list(kinds())[:5]
    assert "imagefolder" in schema_kinds() and lookup("imagefolder").name == "folder"


# --- a kind registered here alone ----------------------------------------------------------------

def load_toy(root=None, *, n: int = 48, side: int = 8) -> ImageDataset:
    """Two classes: dark and bright images."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = (torch.rand(n, 3, side, side, generator=gen) * 100 + 100 * y[:, None, None, None])
    x = x.to(torch.uint8)
    return ImageDataset(x, y, x[: n // 2], y[: n // 2], ["dark", "bright"], name="toy",
                        label="Toy (dark or bright)", meta={"source": "generated"})


@pytest.fixture(scope="module")
def toy():
    kind = register(DatasetKind("toy", load_toy,
                                options=(Option("n", Int(4, 10_000), "images"),
                                         Option("side", Int(8, 64), "image side")),
                                help="dark or bright images (a test's kind)",
                                train_size=lambda o: o["n"],
                                image_size=lambda o: (o["side"],) * 2, reads_files=False))
    yield kind
    unregister("toy")


def test_a_registered_kind_is_in_the_cli_and_the_config_validation(toy, capsys):
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "toy: dark or bright images" in shown
    assert "toy: --n N images [48] --side SIDE image side [8]" in shown
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["datasets"] = {"toy": {"kind": "toy", "options": {"n": 64}}}
    for entry in cfg["grid"]:
        entry["datasets"] = ["toy"]
    cfg.pop("analysis", None)
    G.check_schema(cfg, SCHEMA)
    assert G.validate(cfg)
    assert G.image_size_of(cfg, "toy") == (8, 8)
    cfg["datasets"]["toy"]["options"]["n"] = 2
    with pytest.raises(ValueError, match="datasets.toy.options.n: got 2; allowed: an integer "
                                         "in 4..10000"):
        G.check_schema(cfg, SCHEMA)


def test_a_flag_two_kinds_share_is_named_in_both_groups(toy, capsys):
    register(DatasetKind("toy-too", lambda root=None, *, n=48: load_toy(n=n),
                         options=(Option("n", Int(4, 100), "images"),),
                         help="the same images, fewer", reads_files=False))
    try:
        with pytest.raises(SystemExit):
            main(["data", "prepare", "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "toy-too: also --n (above)" in shown and shown.count("--n N images") == 1
        with pytest.raises(ValueError, match="got 500; allowed: an integer in 4..100"):
            parse_source("toy-too", options={"n": 500})   # its own rule checks the shared flag
    finally:
        unregister("toy-too")
    assert "toy-too" not in kinds()


def test_a_registered_kind_trains_one_iteration(toy, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "v1-basic-8", "--dataset", "toy", "--data-option", "n=32",
            "--iterations", "1", "--batch-size", "8", "--eval-every", "1", "--no-progress",
            "--threads", "1", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "toy" and summary["dataset_label"] == "Toy (dark or bright)"
    assert main([*argv[:-1], str(tmp_path / "bad"), "--data-option", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "bogus: unknown for dataset toy; valid: n, side" in err


def test_the_normalizations_the_recipe_offers_are_the_ones_the_loader_implements():
    # two spellings: the recipe stays importable without torch, the loader cannot
    from resnet_bench.data.loader import NORMALIZATIONS as LOADER, Normalizer
    from resnet_bench.train.recipe import NORMALIZATIONS as RECIPE
    assert LOADER == RECIPE
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    for mode in RECIPE:
        assert Normalizer(x, mode).mode == mode
    with pytest.raises(ValueError, match="normalize must be one of pixel, channel"):
        Normalizer(x, "zca")
