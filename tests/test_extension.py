"""Proof by extension: a network family and a dataset kind declared in this file alone (no edit
anywhere else) go through every stage: the command line's help, config validation, one
iteration of training each, the tables and a figure. docs/architecture.md ("How to add") names
the files a built-in addition touches; this is what an addition outside the package needs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from resnet_bench.infra.checks import Int
from resnet_bench.cli import main
from resnet_bench.data.dataset import ImageDataset
from resnet_bench.data.kind import DatasetKind, Option
from resnet_bench.data.kind import register as register_kind
from resnet_bench.data.kind import unregister as unregister_kind
from resnet_bench.models import families as F
from resnet_bench.models.units import OriginalUnit
from resnet_bench.pipeline import grid as G

from pipeline_helpers import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


class HalfBranchUnit(OriginalUnit):
    """The original unit with its residual branch halved at the addition."""

    def branches(self, x):
        shortcut, residual = super().branches(x)
        return shortcut, 0.5 * residual


def load_stripes(root=None, *, n: int = 32, side: int = 8) -> ImageDataset:
    """Two classes: horizontal or vertical stripes, drawn from a fixed generator."""
    y = torch.arange(n) % 2
    stripes = (torch.arange(side) % 2 * 200).to(torch.uint8)
    x = torch.where(y[:, None, None, None].bool(), stripes[None, None, :, None],
                    stripes[None, None, None, :]).expand(n, 3, side, side).contiguous()
    return ImageDataset(x, y, x[: n // 2], y[: n // 2], ["horizontal", "vertical"],
                        name="stripes", label="Stripes (extension test)",
                        meta={"source": "generated"})


@pytest.fixture(scope="module")
def extended():
    family = F.register_family(F.Family(
        "halfres", label="half-ResNet", legend="half-branch ResNet", blocks=("basic",),
        unit=F.Unit("half-branch", f"{__name__}:HalfBranchUnit")))
    register_kind(DatasetKind(
            "stripes", load_stripes, help="striped images (the extension test's kind)",
            options=(Option("n", Int(4, 10_000), "images"), Option("side", Int(8, 64), "side")),
            train_size=lambda o: o["n"], image_size=lambda o: (o["side"],) * 2,
            reads_files=False))
    yield family
    F.unregister_family("halfres")
    unregister_kind("stripes")


def test_a_family_and_a_kind_declared_here_run_through_every_stage(extended, tmp_path, capsys):
    # the command line: the kind's options in the data help, the family's nets in the zoo
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    assert "stripes: striped images" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    assert "halfres" in capsys.readouterr().out      # a choice of --family
    assert main(["models", "halfres-basic-8"]) == 0
    assert "halfres-basic-8" in capsys.readouterr().out

    # config validation: the schema and the grid accept both, and refuse a wrong option
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"] = {"stripes": {"kind": "stripes", "options": {"n": 128}}}
    config["grid"] = [{"family": ["plain", "halfres"], "block": "basic", "depth": 8,
                       "datasets": ["stripes"], "seeds": [0], "recipe": "quick"}]
    config.pop("analysis", None)
    config.pop("claims", None)
    G.check_schema(config, SCHEMA)
    runs = G.validate(config)
    assert sorted(r.model for r in runs) == ["halfres-basic-8", "plain-basic-8"]
    bad = dict(config, datasets={"stripes": {"kind": "stripes", "options": {"n": 2}}})
    with pytest.raises(ValueError, match="datasets.stripes.options.n: got 2"):
        G.check_schema(bad, SCHEMA)

    # one iteration of training each, through the trainer's command line
    for model in ("plain-basic-8", "halfres-basic-8"):
        out = tmp_path / "runs" / model
        assert main(["train", "--model", model, "--dataset", "stripes", "--data-option", "n=32",
                     "--iterations", "1", "--batch-size", "8", "--eval-every", "1",
                     "--no-progress", "--threads", "1", "--device", "cpu",
                     "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["model"], summary["dataset"], summary["iterations"]) == (model, "stripes", 1)
    assert json.loads((tmp_path / "runs/halfres-basic-8/summary.json").read_text())["family"] \
        == "halfres"

    # the tables, then a figure drawn from them alone
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    assert main(["aggregate", "--runs", str(tmp_path / "runs"), "--out", str(tables)]) == 0
    table = pd.read_csv(tables / "runs.csv")
    assert sorted(table["family"]) == ["halfres", "plain"]
    assert set(table["dataset_label"]) == {"Stripes (extension test)"}
    assert main(["plot", "--tables", str(tables), "--out", str(figures),
                 "--figure", "degradation"]) == 0
    drawn = pd.read_csv(figures / "degradation.csv")
    assert {"plain", "half-branch ResNet"} <= set(drawn["label"])
    assert (figures / "degradation.png").stat().st_size > 0


def test_the_cost_cache_key_follows_a_unit_class_declared_outside_the_package(tmp_path,
                                                                              monkeypatch):
    import sys

    from resnet_bench.models import cost

    built_in = cost._source_key()
    source = tmp_path / "outside_units.py"
    source.write_text("from resnet_bench.models.units import OriginalUnit\n\n\n"
                      "class OutsideUnit(OriginalUnit):\n    pass\n")
    monkeypatch.syspath_prepend(tmp_path)
    F.register_family(F.Family("outside", label="outside", legend="outside", blocks=("basic",),
                               unit=F.Unit("outside", "outside_units:OutsideUnit")))
    try:
        registered = cost._source_key()
        source.write_text(source.read_text() + "    # edited: its nets' costs may differ\n")
        edited = cost._source_key()
    finally:
        F.unregister_family("outside")
        sys.modules.pop("outside_units", None)
    assert len({built_in, registered, edited}) == 3
    assert cost._source_key() == built_in
