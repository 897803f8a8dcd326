"""The model name parsed once: aliases resolved to canonical specs (and recorded so), the spec
importable without torch, the dataset kind alias, and the paper comparison as a join on names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from resnet_bench import cli
from resnet_bench.models.families import FAMILY_ORDER
from resnet_bench.models.spec import (
    ALIASES,
    ModelNameError,
    ModelSpec,
    Modulation,
    parse_model_name,
)

sys.path.insert(0, str(Path(__file__).parent))
from paper_join_runs import every_model_runs  # noqa: E402

DATA = Path(__file__).parent / "data"

EXPECTED_ALIASES = {
    "resnet20": "v1-basic-20", "resnet32": "v1-basic-32", "resnet44": "v1-basic-44",
    "resnet56": "v1-basic-56", "resnet110": "v1-basic-110", "resnet1202": "v1-basic-1202",
    "plain20": "plain-basic-20", "plain32": "plain-basic-32", "plain44": "plain-basic-44",
    "plain56": "plain-basic-56", "plain110": "plain-basic-110",
    "preact_resnet110": "v2-basic-110", "preact_resnet164": "v2-bottleneck-164",
    "preact_resnet1001": "v2-bottleneck-1001",
    # the ImageNet nets (V1 Table 1/2, V2 Table 5)
    "resnet18": "imagenet-v1-basic-18", "resnet34": "imagenet-v1-basic-34",
    "resnet50": "imagenet-v1-bottleneck-50", "resnet101": "imagenet-v1-bottleneck-101",
    "resnet152": "imagenet-v1-bottleneck-152", "resnet200": "imagenet-v1-bottleneck-200",
    "plain18": "imagenet-plain-basic-18", "plain34": "imagenet-plain-basic-34",
    "preact_resnet18": "imagenet-v2-basic-18", "preact_resnet34": "imagenet-v2-basic-34",
    "preact_resnet50": "imagenet-v2-bottleneck-50", "preact_resnet101": "imagenet-v2-bottleneck-101",
    "preact_resnet152": "imagenet-v2-bottleneck-152", "preact_resnet200": "imagenet-v2-bottleneck-200",
}


@pytest.mark.parametrize("alias, canonical", sorted(EXPECTED_ALIASES.items()))
def test_alias_resolves_to_the_canonical_spec_and_round_trips(alias, canonical):
    spec = parse_model_name(alias)
    assert spec == parse_model_name(canonical)
    assert spec.name == canonical and parse_model_name(spec.name) == spec
    assert parse_model_name(f"  {alias.upper()} ") == spec  # as typed: spaces and case
    assert parse_model_name(spec) is spec  # a spec passes through unparsed


def test_alias_table_is_the_papers_networks_only():
    assert ALIASES == EXPECTED_ALIASES
    from resnet_bench.models import REGISTRY
    assert set(ALIASES.values()) <= set(REGISTRY)
    # other depths have no alias (the grammar name works), and the error lists the aliases
    for name in ("resnet38", "plain1202", "preact_resnet56", "resnet-56"):
        with pytest.raises(ModelNameError) as err:
            parse_model_name(name)
        message = str(err.value)
        assert "\n" not in message and "is not {family}-{block}-{depth}" in message, message
        assert "resnet20" in message and "preact_resnet1001" in message
    assert parse_model_name("v1-basic-38").name == "v1-basic-38"


def test_spec_carries_unit_shortcut_modulation_labels_and_order():
    p = parse_model_name
    assert (p("plain-basic-20").unit, p("plain-basic-20").shortcut) == ("plain", None)
    assert (p("v1-basic-56").unit, p("v1-basic-56").shortcut) == ("original", "optA")
    assert p("v1-bottleneck-164").shortcut == "optB" and p("v2-basic-110-optC").shortcut == "optC"
    assert p("v1-basic-110-bnafter").unit == "bn-after-addition"
    assert p("v1-basic-110-relubefore").unit == "relu-before-addition"
    assert (p("v2-basic-110").unit, p("v2-basic-110-reluonly").unit) == ("full-preact",
                                                                         "relu-only-preact")
    assert p("v1-basic-110-1layer").unit_shape == "1layer" and p("v1-basic-110").unit_shape == "basic"
    assert p("v1-basic-110").modulation == Modulation()
    assert p("v1-basic-110-scale-s0.5-f0.5").modulation == Modulation("scale", 0.5, 0.5)
    assert p("v1-basic-110-scale-s0").modulation == Modulation("scale", 0.0, 1.0)
    assert p("v1-basic-110-exgate-b-6").modulation == Modulation("exgate", gate_bias=-6.0)
    assert p("v1-basic-110-scgate-b0").modulation == Modulation("scgate", gate_bias=0.0)
    assert p("v1-basic-110-dropsc").modulation == Modulation("dropsc", dropout=0.5)
    assert p("v1-basic-110-dropsc-p0.3").modulation == Modulation("dropsc", dropout=0.3)
    # the papers' words: V1's plain-20 / ResNet-56, V2's pre-act ResNet-164
    labels = {"plain-basic-20": "plain-20", "v1-basic-56": "ResNet-56",
              "v2-bottleneck-164": "pre-act ResNet-164", "v1-bottleneck-56": "ResNet-56 (bottleneck)",
              "v1-basic-110-exgate-b-6": "ResNet-110 exgate-b-6"}
    assert {n: p(n).label for n in labels} == labels
    assert [p(n).short_label for n in ("plain-basic-20", "v2-basic-110")] == ["plain-20", "ResNet-110"]
    names = ["v2-basic-20", "v1-bottleneck-164", "v1-basic-1202", "plain-basic-56", "v1-basic-110-optB",
             "v1-basic-110"]
    assert sorted(names, key=lambda n: p(n).sort_key) == [
        "plain-basic-56", "v1-basic-110", "v1-basic-110-optB", "v1-basic-1202",
        "v1-bottleneck-164", "v2-basic-20"]
    assert list(FAMILY_ORDER) == ["plain", "v1", "v2"]
    assert ModelSpec("v1", "basic", 56).base_name == "v1-basic-56"


def test_built_networks_follow_the_spec():
    from resnet_bench.models import build_model, residual_units
    from resnet_bench.models.modulation import ConstantScaling, ExclusiveGating
    from resnet_bench.models import units as U
    from resnet_bench.models.shortcuts import ProjectionShortcut
    for name, cls in (("plain-basic-8", U.PlainUnit), ("v1-basic-8-bnafter", U.BNAfterAdditionUnit),
                      ("v2-basic-8-reluonly", U.ReLUOnlyPreActUnit), ("v2-bottleneck-11", U.PreActUnit),
                      ("v1-basic-8-relubefore", U.ReLUBeforeAdditionUnit), ("v1-basic-8", U.OriginalUnit)):
        assert all(type(u) is cls for _, u in residual_units(build_model(name)))
    units = [u for _, u in residual_units(build_model("v1-basic-8-optC"))]
    assert all(isinstance(u.shortcut, ProjectionShortcut) for u in units)
    scale = [u.modulation for _, u in residual_units(build_model("v1-basic-8-scale-s0.5-f0.5"))]
    assert all(isinstance(m, ConstantScaling) and (m.on_shortcut, m.on_residual) == (0.5, 0.5)
               for m in scale)
    gate = [u.modulation for _, u in residual_units(build_model("v1-basic-8-exgate-b-6"))]
    assert all(isinstance(m, ExclusiveGating) and m.gate.bias_init == -6 for m in gate)


def test_models_cli_lists_the_aliases(capsys):
    assert cli.main(["models", "--aliases"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [[a, n] for a, n in EXPECTED_ALIASES.items()]
    assert cli.main(["models", "--csv", "resnet20"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(table["name"]) == ["v1-basic-20"] and table["params"].iloc[0] == 269_722


TRAIN = ["--data-option", "train_size=64", "--data-option", "test_size=32", "--iterations", "3",
         "--batch-size", "16", "--no-progress", "--threads", "1"]


def _records(out: Path) -> tuple[dict, dict]:
    return (json.loads((out / "config.json").read_text()),
            json.loads((out / "summary.json").read_text()))


def test_train_cli_with_an_alias_records_the_canonical_name(tmp_path):
    out = tmp_path / "r20"
    assert cli.main(["train", "--model", "resnet20", "--out", str(out), *TRAIN]) == 0
    config, summary = _records(out)
    assert config["model"] == summary["model"] == "v1-basic-20"
    assert (summary["family"], summary["block"], summary["depth"]) == ("v1", "basic", 20)


def test_dataset_kind_imagefolder_is_folder(tmp_path):
    from test_data import make_tree

    from resnet_bench.data import load_dataset
    from resnet_bench.data.registry import canonical_kind, options_for
    make_tree(tmp_path / "tree")
    a = load_dataset("imagefolder", tmp_path / "tree", image_size=32)
    b = load_dataset("folder", tmp_path / "tree", image_size=32)
    assert a.train_x.equal(b.train_x) and a.test_y.equal(b.test_y) and a.label == b.label
    assert canonical_kind("imagefolder") == "folder" and options_for("imagefolder") == options_for("folder")
    out = tmp_path / "run"
    argv = ["train", "--model", "v1-basic-8", "--dataset", "imagefolder", "--data-dir",
            str(tmp_path / "tree"), "--data-option", "image_size=32", "--out", str(out),
            "--iterations", "2", "--batch-size", "2", "--no-progress", "--threads", "1"]
    assert cli.main(argv) == 0
    config, summary = _records(out)
    assert config["dataset"] == summary["dataset"] == "folder"


def test_paper_comparison_join_gives_the_rows_the_heuristics_gave():
    """Every registered network (and the V2 Table 1 spellings) on every dataset kind: the join
    on `suite_model` gives exactly the comparison rows of the former text-matching heuristics
    (their output, kept in tests/data/paper_comparison_every_model.csv), except that
    v1-basic-110-exgate-b6 (b = +6) no longer meets V2's b_g = -6 row as it did there."""
    from resnet_bench.tables.paper import compare
    runs = every_model_runs()
    new = compare(runs)
    expected = pd.read_csv(DATA / "paper_comparison_every_model.csv")
    got = pd.read_csv(__import__("io").StringIO(new.to_csv(index=False)))
    pd.testing.assert_frame_equal(got, expected)
    assert "v1-basic-110-exgate-b6" in set(runs["model"])
    assert "v1-basic-110-exgate-b6" not in set(new["model"])


def test_reference_names_are_canonical_and_cover_every_compared_row():
    from resnet_bench.tables.paper import load_reference, paper_rows, suite_models
    ref = load_reference()
    for cell in ref["suite_model"]:
        for name in suite_models(cell):
            assert parse_model_name(name).name == name
    rows = paper_rows(ref)
    # the V2 Table 1 "b_g = 0 to -5" row stands for six networks, each one joined row
    fail = rows[rows["paper_variant"].str.contains("b_g=0 to -5", na=False)]
    assert list(fail["suite_model"]) == [f"v1-basic-110-exgate-b{b}" for b in (0, -1, -2, -3, -4, -5)]
    # external baselines name no suite model; every ImageNet error of a net of the zoo does
    assert ref.loc[ref["variant"] == "(external baseline)", "suite_model"].isna().all()
    imagenet = ref[ref["dataset"].str.startswith("ImageNet-1k val")
                   & ref["metric"].isin(["top1_error_pct", "top5_error_pct", "top1/top5_error_pct"])
                   & ref["model"].str.match(r"(plain|ResNet)")]
    assert len(imagenet) == 42 and imagenet["suite_model"].notna().all()
    assert all(n.startswith("imagenet-") for cell in imagenet["suite_model"]
               for n in suite_models(cell))


def test_reference_without_the_name_column_is_refused(tmp_path):
    from resnet_bench.tables.paper import load_reference
    old = tmp_path / "old.csv"
    load_reference().drop(columns="suite_model").to_csv(old, index=False)
    with pytest.raises(ValueError, match="no suite_model column"):
        load_reference(old)


def test_imagefolder_is_folder_in_data_prepare_and_the_pipeline_validation(tmp_path):
    from PIL import Image
    from resnet_bench.cli import main
    from resnet_bench.data.registry import lookup

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "tree" / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "tree" / split / cls / f"{i}.png")
    out = tmp_path / "prepared.pt"
    assert main(["data", "prepare", "--dataset", "imagefolder", "--root", str(tmp_path / "tree"),
                 "--image-size", "8", "--out", str(out)]) == 0
    assert out.exists()
    assert lookup("imagefolder") is lookup("folder")
    assert lookup("imagefolder").check_options({"image_size": 8}) == {"image_size": 8}
    assert lookup("imagefolder").known_train_size({}) is None
