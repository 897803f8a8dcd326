"""Each vocabulary is declared once: the network families (resnet_bench.models.families), the
figures (resnet_bench.schema.FIGURES); what else names them is derived from the declarations."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from resnet_bench.models import families as F
from resnet_bench.models.units import OriginalUnit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "resnet_bench"
BUILT_IN = ("plain", "v1", "v2")


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def _names_a_warmup(stmt: ast.stmt) -> bool:
    """Whether the statement's own expressions (a compound statement's header, not its body)
    name a warm-up: the recipe's `warmup` knob has values v1 and v2 too (V1's and V2's warm-up
    schedules), which are not families."""
    header = ([stmt.test] if isinstance(stmt, (ast.If, ast.While)) else
              [] if isinstance(stmt, (ast.For, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef,
                                      ast.AsyncFunctionDef)) else [stmt])
    words = [getattr(n, attr) for h in header for n in ast.walk(h)
             for attr in ("id", "attr", "arg") if isinstance(getattr(n, attr, None), str)]
    return any("warmup" in w.lower() for w in words)


def family_literals() -> dict[str, list[str]]:
    """module -> 'line: value' of every str constant equal to a family name (docstrings and
    warm-up values left out)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and node.value in BUILT_IN) or id(node) in docs:
                continue
            stmt = node
            while not isinstance(stmt, ast.stmt):
                stmt = parents[id(stmt)]
            if _names_a_warmup(stmt):
                continue
            found.setdefault(str(path.relative_to(ROOT)), []).append(f"{node.lineno}: {node.value}")
    return found


def family_phrases() -> dict[str, list[str]]:
    """module -> 'line: text' of every str constant, f-strings' parts included, that spells a
    family name in words: before a block, 'and' or 'or', or before a ')' ("v1 basic", "(v2)")."""
    phrase = re.compile(rf"(?<![\w-])({'|'.join(BUILT_IN)})(?= (basic|bottleneck|and|or)\b|\))")
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs and phrase.search(node.value)):
                found.setdefault(str(path.relative_to(ROOT)), []).append(
                    f"{node.lineno}: {node.value}")
    return found


def test_the_family_names_are_spelled_in_at_most_two_modules():
    assert tuple(F.FAMILIES) == BUILT_IN
    found = family_literals()
    assert len(found) <= 2, found
    assert "resnet_bench/models/families.py" in found
    # messages name a family by its declaration (families.family_for(role).name), not in words
    assert family_phrases() == {}


def test_the_config_schema_lists_the_declared_families():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    family = schema["properties"]["grid"]["items"]["properties"]["family"]["oneOf"]
    assert family[0]["enum"] == family[1]["items"]["enum"] == list(BUILT_IN)


def test_what_names_the_families_is_derived_from_the_declarations():
    from resnet_bench.models.spec import model_name_pattern
    from resnet_bench.record import Summary
    assert Summary.__dataclass_fields__["family"].metadata["help"] == "plain | v1 | v2"
    assert model_name_pattern() == r"(imagenet-)?(plain|v1|v2)-[A-Za-z0-9.-]+"
    common = (ROOT / "workflow/rules/common.smk").read_text()
    assert "model=model_name_pattern()" in common and "plain|" not in common
    assert {f.role for f in F.FAMILIES.values()} == set(F.Role)


# --- a family declared outside the package ------------------------------------------------------

class ToyUnit(OriginalUnit):
    """The original unit, with its branch halved: enough to tell it apart."""

    def branches(self, x):
        shortcut, residual = super().branches(x)
        return shortcut, 0.5 * residual


@pytest.fixture
def toy():
    family = F.register_family(F.Family(
        "toy", label="toy ResNet", legend="toy", blocks=("basic",),
        unit=F.Unit("toy-unit", f"{__name__}:ToyUnit"),
        unit_variants={"twice": F.Unit("toy-twice", f"{__name__}:ToyUnit", "toy unit, again")}))
    yield family
    F.unregister_family("toy")


def test_a_family_registered_here_is_parsed_built_validated_sorted_and_styled(toy, tmp_path):
    import torch
    from resnet_bench.models import build_model, parse_model_name, residual_units
    from resnet_bench.models.spec import ModelNameError, model_name_pattern
    from resnet_bench.pipeline import grid as G
    from resnet_bench.plots import figures, style
    from resnet_bench.schema import sort_runs

    spec = parse_model_name("toy-basic-8")
    assert (spec.unit, spec.shortcut, spec.label) == ("toy-unit", "optA", "toy ResNet-8")
    with pytest.raises(ModelNameError, match="unknown block"):
        parse_model_name("toy-bottleneck-11")
    net = build_model(spec)
    assert all(type(u) is ToyUnit for _, u in residual_units(net))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert re.fullmatch(model_name_pattern(), "toy-basic-8")

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["grid"] = [{"family": ["v1", "toy"], "block": "bottleneck", "depth": 11,
                       "datasets": ["d"], "seeds": [0], "recipe": "r"},
                      {"family": "toy", "depth": 8, "datasets": ["d"], "seeds": [0], "recipe": "r"}]
    G.check_schema(config, ROOT / "workflow/schemas/config.schema.yaml")
    assert [s.name for s in G.models_of(config["grid"][0])] == ["v1-bottleneck-11"]  # no toy one
    assert [s.name for s in G.models_of(config["grid"][1])] == ["toy-basic-8"]

    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "model": ["toy-basic-8", "v1-basic-8",
                                                              "plain-basic-8"],
                         "family": ["toy", "v1", "plain"], "block": "basic", "depth": 8,
                         "variant": ["optA", "optA", "none"], "seed": 0, "status": "completed",
                         "final_train_error_pct": [1.0, 2.0, 3.0],
                         "final_test_error_pct": [4.0, 5.0, 6.0],
                         "planned_iterations": 10, "iterations": 10})
    assert list(sort_runs(runs)["family"]) == ["plain", "v1", "toy"]
    data = figures.PlotData(runs, pd.DataFrame(columns=["run_id", "iteration"]), "d", "D", "r")
    drawn = figures.degradation(data, tmp_path)
    assert set(drawn["label"]) == {"plain", "ResNet (original)", "toy"}
    assert (tmp_path / "degradation.png").exists()
    labels = [figures._ablation_label({"model": m})
              for m in ("toy-basic-8", "toy-basic-8-twice", "toy-basic-8-optB")]
    assert labels == ["toy-unit", "toy unit, again", "optB (optB)"]
    assert F.style_of("toy") == F.PlotStyle() and style.lightness(F.style_of("toy").color) > 0


def test_a_family_with_an_unknown_block_or_a_shadowing_unit_variant_is_refused():
    unit = F.Unit("toy-unit", f"{__name__}:ToyUnit")
    with pytest.raises(ValueError, match=r"^family 'toy': unknown block\(s\) wide; "
                                         r"valid: basic, bottleneck$"):
        F.register_family(F.Family("toy", label="toy", legend="toy", unit=unit,
                                   blocks=("basic", "wide")))
    for shared in ("optB", "stride3x3", "none", "exgate"):
        with pytest.raises(ValueError, match=rf"^family 'toy': unit variant\(s\) {shared} would "
                                             "shadow the shared variants"):
            F.register_family(F.Family("toy", label="toy", legend="toy", unit=unit,
                                       unit_variants={"half": unit, shared: unit}))
    assert "toy" not in F.FAMILIES


def test_the_shared_variants_are_those_the_grammar_gives_every_family():
    from resnet_bench.models import spec as S
    given = {re.match(r"[A-Za-z0-9]+", v)[0] for f in F.FAMILIES.values() for b in f.blocks
             for stem in S.STEMS for v in S._valid_variants(f.name, b, stem)}
    own = {v for f in F.FAMILIES.values() for v in f.unit_variants}
    assert given - own == set(F.SHARED_VARIANTS)
