"""The network zoo: sizes and costs against the papers and published reimplementations, the names, the unit algebra,
the identity path, the analysis hooks and activation checkpointing."""

from __future__ import annotations

import copy
import io
import json
import math
import re
from functools import lru_cache
from importlib import resources

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnet_bench import cli
from resnet_bench.models import (
    REGISTRY,
    ModelNameError,
    ModelSpec,
    build_model,
    conv_layers,
    list_models,
    model_cost,
    parse_model_name,
    residual_units,
    response_layers,
)
from resnet_bench.models import cost as cost_module
from resnet_bench.models.modulation import (
    ConstantScaling,
    ExclusiveGating,
    ShortcutDropout,
    ShortcutOnlyGating,
    Unmodulated,
)
from resnet_bench.models.shortcuts import IdentityShortcut, ProjectionShortcut, ZeroPadShortcut
from resnet_bench.models.spec import valid_depths
from resnet_bench.models.units import BNAfterAdditionUnit

torch.set_num_threads(1)  # the test machine's cores are shared


@pytest.fixture(scope="session", autouse=True)
def _private_cost_cache(tmp_path_factory):
    """Measure costs from scratch into a throwaway cache, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESNET_BENCH_CACHE", str(tmp_path_factory.mktemp("cost-cache")))
        cost_module._memory.clear()
        yield
        cost_module._memory.clear()


@lru_cache(maxsize=None)
def _built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name)


def _weights_only(name: str) -> int:
    """Conv + FC parameters, leaving out BN's affine parameters."""
    model = _built(name)
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters())


def _smallest_sibling(spec: ModelSpec) -> ModelSpec:
    return ModelSpec(spec.family, spec.block, valid_depths(spec.block, spec.variant)[0], spec.variant)


# ---------------------------------------------------------------------------------------------
# Sizes and costs

OPTION_A = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
OPTION_B = {20: 272_474, 32: 466_906, 44: 661_338, 56: 855_770, 110: 1_730_714, 1202: 19_424_026}


@pytest.mark.parametrize("depth", sorted(OPTION_A))
def test_exact_param_counts_option_a_b_and_plain_twin(depth):
    assert model_cost(f"v1-basic-{depth}")[0] == OPTION_A[depth]
    assert model_cost(f"v1-basic-{depth}-optB")[0] == OPTION_B[depth]
    # option A is parameter-free, so the plain net has exactly its residual twin's size
    assert model_cost(f"plain-basic-{depth}")[0] == OPTION_A[depth]


def test_exact_param_counts_preact_bottleneck():
    assert model_cost("v2-bottleneck-164")[0] == 1_703_258
    assert model_cost("v2-bottleneck-1001")[0] == 10_327_706


def test_meta_cost_equals_a_real_model():
    """The cached numbers come from a meta-device pass without BN; a real CPU pass agrees."""
    for name in ("v1-basic-20-exgate-b-6", "v2-bottleneck-20", "v1-basic-8-optC"):
        model = build_model(name).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.randn(1, 3, 32, 32))
        params = sum(p.numel() for p in model.parameters())
        assert cost_module.measure_cost(name) == (params, counter.get_total_flops() // 2)


def test_option_a_shortcuts_have_no_parameters():
    model = _built("v1-basic-56")
    shortcuts = [unit.shortcut for _, unit in residual_units(model)]
    assert sum(isinstance(s, ZeroPadShortcut) for s in shortcuts) == 2  # the two stage transitions
    assert all(isinstance(s, (IdentityShortcut, ZeroPadShortcut)) for s in shortcuts)
    assert sum(p.numel() for s in shortcuts for p in s.parameters()) == 0
    # option B projects exactly where the shape changes: two 1x1 convs + BN
    b = build_model("v1-basic-56-optB")
    projections = [u.shortcut for _, u in residual_units(b) if isinstance(u.shortcut, ProjectionShortcut)]
    assert len(projections) == 2
    assert sum(p.numel() for s in projections for p in s.parameters()) == OPTION_B[56] - OPTION_A[56]


def _paper_params() -> pd.DataFrame:
    with resources.files("resnet_bench.reference").joinpath("paper_reference.csv").open() as f:
        table = pd.read_csv(f, dtype=str)
    rows = table[(table.metric == "params_M") & table.dataset.str.contains("CIFAR") & table.depth.notna()]
    rows = rows[rows.model.str.startswith("ResNet")]
    return rows[["table_or_figure", "model", "depth", "value"]]


def test_param_counts_match_the_papers_rounded_values():
    rows = _paper_params()
    seen = set()
    for _, row in rows.iterrows():
        depth, value = int(row.depth), row.value
        decimals = len(value.split(".")[1]) if "." in value else 0
        rounded = lambda n: round(n / 1e6, decimals)  # noqa: E731
        if row.table_or_figure == "Table 6":  # V1: every learnable parameter, BN included
            for name in (f"v1-basic-{depth}", f"plain-basic-{depth}"):
                assert rounded(model_cost(name)[0]) == float(value), (name, value)
        else:  # V2 Table 4: the counts only agree with conv + FC weights (BN's affine left out)
            for name in (f"v1-bottleneck-{depth}", f"v2-bottleneck-{depth}"):
                assert rounded(_weights_only(name)) == float(value), (name, value)
        seen.add((row.table_or_figure, depth))
    assert {d for t, d in seen if t == "Table 6"} == {20, 32, 44, 56, 110, 1202}
    assert {d for t, d in seen if t != "Table 6"} == {164, 1001}
    # ...and the V2 convention really differs: with BN, ResNet-1001 would be 10.3M, not 10.2M
    assert round(model_cost("v2-bottleneck-1001")[0] / 1e6, 1) == 10.3


@pytest.mark.parametrize(
    "name, anchor_mmacs",
    [
        ("v1-basic-20", "40.55"),
        ("plain-basic-20", "40.55"),
        ("v1-basic-20-optB", "40.81"),
        ("v1-basic-56", "125.49"),
        ("v1-basic-110", "252.89"),
        ("v1-basic-110-optB", "253.15"),
        ("v1-basic-1202", "2829.2"),
        ("v2-bottleneck-164", "244.5"),  # stride in the first 1x1, as in the authors' code
        ("v2-bottleneck-1001", "1487.9"),
    ],
)
def test_macs_match_anchors(name, anchor_mmacs):
    # within the anchor's last digit, allowing for its double rounding (1,487.85 -> 1,487.9)
    last_digit = 10 ** -len(anchor_mmacs.split(".")[1])
    assert abs(model_cost(name)[1] / 1e6 - float(anchor_mmacs)) <= 0.6 * last_digit


def test_cost_is_cached_on_disk(monkeypatch):
    expected = model_cost("v1-basic-32")
    data = json.loads(cost_module.cache_path().read_text())
    assert data["entries"]["v1-basic-32|10|3"] == list(expected)
    cost_module._memory.clear()
    monkeypatch.setattr(cost_module, "measure_cost", lambda *a, **k: pytest.fail("recomputed a cached cost"))
    assert model_cost("v1-basic-32") == expected


# ---------------------------------------------------------------------------------------------
# Names


def test_registered_names_round_trip_and_cover_both_papers():
    specs = list_models()
    assert [s.name for s in specs] == list(REGISTRY)
    for spec in specs:
        assert parse_model_name(spec.name) == spec
    names = set(REGISTRY)
    for required in (
        "plain-basic-20", "plain-basic-56", "v1-basic-1202", "v1-basic-56-optB", "v1-bottleneck-1001",
        "v2-bottleneck-164", "v2-bottleneck-1001", "v1-basic-110-exgate-b-6", "v1-basic-110-scgate-b0",
        "v1-basic-110-scale-s0.5-f0.5", "v1-basic-110-dropsc", "v1-basic-110-optC",
        "v1-basic-110-bnafter", "v1-bottleneck-164-relubefore", "v2-bottleneck-164-reluonly",
        "v2-basic-110", "v2-basic-110-1layer",
    ):
        assert required in names


def test_parse_defaults_canonical_spellings_and_any_depth():
    spec = parse_model_name("v1-basic-56")
    assert spec == ModelSpec("v1", "basic", 56, "optA")
    assert parse_model_name("v1-basic-56-optA").name == "v1-basic-56"
    assert parse_model_name("v1-bottleneck-164").variant == "optB"
    assert parse_model_name("plain-basic-20").variant == "none"
    assert parse_model_name("v1-basic-110-exgate-b-6.0").name == "v1-basic-110-exgate-b-6"
    assert parse_model_name("v1-basic-110-scale-s0.50-f1").name == "v1-basic-110-scale-s0.5"
    assert parse_model_name("v1-basic-110-dropsc-p0.5").name == "v1-basic-110-dropsc"
    assert parse_model_name("v1-basic-38").units_per_stage == 6
    assert parse_model_name("v2-bottleneck-47").units_per_stage == 5
    assert parse_model_name("v1-basic-110-1layer").units_per_stage == 36  # 3n+2
    assert parse_model_name("v1-basic-8").depth == 8
    # specs rebuilt from a pandas table: numpy integers and a missing variant
    row = pd.DataFrame({"depth": [56], "variant": [float("nan")]}).iloc[0]
    assert ModelSpec("v1", "basic", row.depth, row.variant).name == "v1-basic-56"
    with pytest.raises(ModelNameError, match="not a whole number"):
        ModelSpec("v1", "basic", 56.5)


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("v1-basic-21", r"depth 21 is not 6n\+2 .*valid: 8, 14, 20, 26"),
        ("v2-bottleneck-164-optD", r"unknown variant 'optD' for v2-bottleneck; valid: optA, optB \(default\)"),
        ("v1-basic-20-foo", r"unknown variant 'foo'.*exgate-b<b>.*bnafter"),
        ("v2-basic-110-bnafter", r"unknown variant 'bnafter' for v2-basic; valid: .*reluonly"),
        ("v3-basic-20", r"unknown family 'v3'.*valid: plain, v1, v2"),
        ("plain-bottleneck-164", r"unknown block 'bottleneck' for family plain; valid: basic"),
        ("v1-bottleneck-57", r"depth 57 is not 9n\+2 .*valid: 11, 20, 29"),
        ("v1-basic-111-1layer", r"depth 111 is not 3n\+2"),
        ("v1-basic-2", r"depth 2 is not 6n\+2"),
        ("resnet38", r"is not \{family\}-\{block\}-\{depth\}"),  # resnet56 is an alias
    ],
)
def test_invalid_names_give_one_line_listing_valid_choices(name, pattern):
    with pytest.raises(ModelNameError) as err:
        build_model(name)
    message = str(err.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    assert isinstance(err.value, ValueError)


def test_cli_reports_invalid_names_on_one_line_with_nonzero_status(capsys):
    assert cli.main(["models", "v1-basic-21"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "depth 21 is not 6n+2" in lines[0] and "valid: 8, 14, 20" in lines[0]
    assert cli.main(["models", "--csv", "v1-basic-20-optZ"]) != 0
    assert "unknown variant 'optZ'" in capsys.readouterr().err


def test_cli_csv_lists_every_registered_network(capsys):
    assert cli.main(["models", "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert {"name", "family", "block", "depth", "variant", "params", "macs"} <= set(table.columns)
    assert list(table.name) == list(REGISTRY)
    row = table.set_index("name").loc["v1-basic-1202"]
    assert (row.family, row.block, row.depth, row.variant, row.params) == ("v1", "basic", 1202, "optA", 19_421_274)
    assert table.set_index("name").loc["v2-bottleneck-1001"].params == 10_327_706
    assert (table.macs > 0).all()

    assert cli.main(["models", "--family", "v2", "--block", "bottleneck"]) == 0
    text = capsys.readouterr().out
    assert "v2-bottleneck-1001" in text and "10,327,706" in text and "v1-" not in text
    assert cli.main(["models", "v1-basic-38"]) == 0  # any valid depth, not only registered ones
    assert "v1-basic-38" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Building and running


def test_every_registered_network_builds_and_its_design_runs():
    """All registered nets build (real weights, 1202/1001 included); each design runs forward and
    backward at its smallest depth, in training mode, on a tiny batch."""
    designs = set()
    for spec in list_models():
        model = build_model(spec.name)
        assert model.spec == spec
        assert sum(p.numel() for p in model.parameters()) == model_cost(spec.name)[0]
        designs.add(_smallest_sibling(spec))
    for spec in sorted(designs, key=lambda s: s.name):
        model = build_model(spec, num_classes=7, in_channels=1).train()
        out = model(torch.randn(2, 1, 32, 32))
        assert out.shape == (2, 7) and torch.isfinite(out).all(), spec.name
        out.sum().backward()
        assert model.stem.conv.weight.grad.abs().sum() > 0, spec.name


def test_deepest_net_runs_a_tiny_batch():
    # training mode: at initialisation BN's running statistics are (0, 1), so in eval mode the
    # 600 un-normalised post-activation units of a fresh ResNet-1202 overflow float32
    model = _built("v1-basic-1202").train()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_bottleneck_layout_follows_the_authors_code():
    model = _built("v2-bottleneck-164")
    first = model.stages[0][0]
    assert isinstance(first.shortcut, ProjectionShortcut)  # 16 -> 64 at stride 1
    assert isinstance(first.preact, nn.Identity)  # the stem's BN-ReLU is its pre-activation
    assert not any(isinstance(m, nn.BatchNorm2d) for m in first.shortcut.modules())
    down = model.stages[1][0]
    assert [(c.kernel_size, c.stride) for c in down.convs] == [((1, 1), (2, 2)), ((3, 3), (1, 1)), ((1, 1), (1, 1))]
    assert [c.out_channels for c in down.convs] == [32, 32, 128]
    assert isinstance(model.head.bn, nn.BatchNorm2d) and model.head.fc.in_features == 256
    assert all(isinstance(u.shortcut, IdentityShortcut) for u in list(model.stages[2])[1:])
    v1 = _built("v1-bottleneck-164")
    assert isinstance(v1.stages[0][0].shortcut[1], nn.BatchNorm2d)  # post-activation projection: conv + BN


def test_he_init_fan_out_and_bn_and_fc():
    torch.manual_seed(0)
    model = build_model("v1-basic-110")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 64 and m.in_channels == 64]
    w = torch.cat([c.weight.flatten() for c in convs])
    assert w.std().item() == pytest.approx(math.sqrt(2 / (3 * 3 * 64)), rel=0.02)
    assert w.mean().abs().item() < 1e-3
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
    assert torch.equal(model.head.fc.bias, torch.zeros(10))
    assert model.head.fc.weight.abs().max() <= 1 / math.sqrt(64)


def test_gate_bias_comes_from_the_name():
    model = build_model("v1-basic-20-exgate-b-6")
    gates = [u.modulation.gate for _, u in residual_units(model)]
    assert len(gates) == 9
    for gate in gates:
        assert torch.equal(gate.conv.bias, torch.full_like(gate.conv.bias, -6.0))
    assert isinstance(build_model("v1-basic-20-scgate-b0").stages[0][0].modulation, ShortcutOnlyGating)


# ---------------------------------------------------------------------------------------------
# The unit algebra


def test_option_a_shortcut_subsamples_and_appends_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(y[:, 16:], torch.zeros(2, 16, 4, 4))


@pytest.mark.parametrize("name, where", [("v2-basic-20", (0, 1)), ("v2-basic-20", (2, 2)), ("v2-bottleneck-20", (1, 1))])
def test_v2_unit_with_zero_residual_is_exactly_the_identity(name, where):
    model = build_model(name)
    unit = model.stages[where[0]][where[1]]
    nn.init.zeros_(unit.convs[-1].weight)  # the residual branch F now outputs 0
    x = torch.randn(4, unit.convs[0].in_channels, 8, 8)
    for mode in (True, False):
        unit.train(mode)
        assert torch.equal(unit(x), x)
    # the original unit, in contrast, clips the signal: ReLU after the addition
    v1 = build_model(name.replace("v2", "v1")).stages[where[0]][where[1]]
    nn.init.zeros_(v1.bns[-1].weight)
    nn.init.zeros_(v1.bns[-1].bias)
    assert torch.equal(v1(x), F.relu(x)) and not torch.equal(v1(x), x)


def _after_addition(unit, total):
    kind = type(unit).AFTER_ADDITION
    if kind == "ReLU":
        return F.relu(total)
    if kind == "BN, ReLU":
        return F.relu(unit.bn_after_addition(total))
    assert kind == "nothing"
    return total


def test_branches_are_the_two_summands_of_every_unit_type():
    torch.manual_seed(0)
    for spec in {_smallest_sibling(s) for s in list_models()}:
        model = build_model(spec).eval()
        x = model.stem(torch.randn(2, 3, 32, 32))
        for _, unit in residual_units(model):
            shortcut, residual = unit.branches(x)
            assert shortcut.shape == residual.shape
            out = unit(x)
            assert torch.equal(out, _after_addition(unit, shortcut + residual)), spec.name
            x = out


def test_table1_modulations_multiply_the_summands_as_the_paper_says():
    torch.manual_seed(0)
    for variant, expected_type in [
        ("scale-s0.5", ConstantScaling), ("scale-s0.5-f0.5", ConstantScaling), ("exgate-b-2", ExclusiveGating),
        ("scgate-b0", ShortcutOnlyGating), ("dropsc", ShortcutDropout),
    ]:
        unit = build_model(f"v1-basic-8-{variant}").eval().stages[1][0]  # a transition unit
        assert isinstance(unit.modulation, expected_type)
        x = torch.randn(2, 16, 8, 8)
        s, r = unit.branches(x)
        modulation, unit.modulation = unit.modulation, Unmodulated()
        s0, r0 = unit.branches(x)
        unit.modulation = modulation
        if variant == "scale-s0.5":
            assert torch.equal(s, 0.5 * s0) and torch.equal(r, r0)
        elif variant == "scale-s0.5-f0.5":
            assert torch.equal(s, 0.5 * s0) and torch.equal(r, 0.5 * r0)
        elif variant == "exgate-b-2":
            g = modulation.gate(x)
            assert torch.equal(s, (1 - g) * s0) and torch.equal(r, g * r0)
            assert g.shape == s.shape and 0.0 < g.mean() < 0.5  # b_g = -2 starts the gate mostly shut
        elif variant == "scgate-b0":
            g = modulation.gate(x)
            assert torch.equal(s, (1 - g) * s0) and torch.equal(r, r0)
        else:  # dropout: off at test time; in training each entry is dropped or doubled
            assert torch.equal(s, s0)
            unit.train()
            s_train, _ = unit.branches(x)
            nonzero = s0 != 0
            kept = torch.isclose(s_train, 2 * s0) & nonzero
            dropped = (s_train == 0) & nonzero
            assert torch.all(kept | dropped | ~nonzero)
            assert 0.3 < kept.sum() / nonzero.sum() < 0.7


# ---------------------------------------------------------------------------------------------
# Identity path and gradient flow


def _grads(model, start=None, seed=0):
    """d loss / d (output of `start`, default the stem) and d loss / d (last unit's output),
    from one training-mode pass."""
    torch.manual_seed(seed)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    saved = {}
    (start or model.stem).register_forward_hook(lambda m, i, o: saved.__setitem__("start", o))
    model.head.register_forward_pre_hook(lambda m, i: saved.__setitem__("last", i[0]))
    loss = F.cross_entropy(model.train()(x), y)
    return torch.autograd.grad(loss, [saved["start"], saved["last"]])


def _zero_residual_branches(model):
    for _, unit in residual_units(model):
        nn.init.zeros_(unit.convs[-1].weight)
    return model


def test_v2_identity_path_carries_the_gradient_undiminished():
    g_stem, g_last = _grads(_zero_residual_branches(build_model("v2-basic-56")))
    assert g_last.abs().sum() > 0
    # through the final BN-ReLU into the last unit's output, then back along the identity path:
    # identity within stages, option A (subsample, append zeros) between them, so stem channel c
    # at pixel (4i, 4j) is last-unit channel c at (i, j), bit for bit, and nothing else
    assert torch.equal(g_stem[:, :, ::4, ::4], g_last[:, :16])
    rest = torch.ones_like(g_stem, dtype=torch.bool)
    rest[:, :, ::4, ::4] = False
    assert torch.equal(g_stem[rest], torch.zeros_like(g_stem[rest]))

    # bottleneck net: projections between stages, but within a stage the gradient is untouched
    model = _zero_residual_branches(build_model("v2-bottleneck-29"))
    g_into_stage3, g_last = _grads(model, start=model.stages[2][0])
    assert g_last.abs().sum() > 0 and torch.equal(g_into_stage3, g_last)


def test_plain_net_gradient_changes_by_orders_of_magnitude():
    g_stem, g_last = _grads(build_model("plain-basic-56"))
    ratio = (g_stem.norm() / g_last.norm()).item()
    assert abs(math.log10(ratio)) > 2, ratio  # 56 layers of BN-ReLU-conv rescale it far from 1


# ---------------------------------------------------------------------------------------------
# Analysis hooks


def test_response_layers_are_each_3x3_layer_after_bn_before_relu_or_addition():
    model = _built("v1-basic-20")
    layers = response_layers(model)
    assert len(layers) == 19  # stem + 2 x 3 x 3 units: every 3x3 conv
    assert all(isinstance(m, nn.BatchNorm2d) for _, m in layers)
    assert layers[0][0] == "stem.bn" and layers[1][0] == "stages.0.0.bns.0" and layers[-1][0] == "stages.2.2.bns.1"
    assert dict(model.named_modules())[layers[-1][0]] is layers[-1][1]

    # forward hooks fire in the listed order, and the second response of a unit plus its
    # shortcut, through the ReLU, is exactly the unit's output (the response is pre-addition)
    order, outputs, unit_io = [], {}, {}

    def record(name):
        def hook(module, inputs, output):
            order.append(name)
            outputs[name] = output
        return hook

    for name, module in layers:
        module.register_forward_hook(record(name))
    for name, unit in residual_units(model):
        unit.register_forward_hook(lambda m, i, o, name=name: unit_io.__setitem__(name, (i[0], o)))
    model.eval()(torch.randn(2, 3, 32, 32))
    assert order == [n for n, _ in layers]
    for name, unit in residual_units(model):
        x, out = unit_io[name]
        assert torch.equal(out, F.relu(unit.shortcut(x) + outputs[f"{name}.bns.1"]))
        assert (outputs[f"{name}.bns.1"] < 0).any()  # taken before the ReLU


def test_response_layers_for_other_unit_types():
    v2 = build_model("v2-basic-20")
    layers = response_layers(v2)
    assert len(layers) == 19 and isinstance(layers[0][1], nn.BatchNorm2d)
    assert all(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for _, m in layers[1:])
    bottleneck = response_layers(build_model("v1-bottleneck-20"))
    assert len(bottleneck) == 1 + 6  # one 3x3 per bottleneck unit
    bnafter = [type(m) for _, m in response_layers(build_model("v1-basic-8-bnafter"))]
    assert bnafter == [nn.BatchNorm2d] + [nn.BatchNorm2d, nn.Conv2d] * 3
    unit = build_model("v1-basic-8-bnafter").stages[0][0]
    assert isinstance(unit, BNAfterAdditionUnit)


def test_conv_layers_in_order():
    model = build_model("v1-basic-20-optB")
    names = [n for n, _ in conv_layers(model)]
    assert len(names) == 19 and names[0] == "stem.conv" and names[-1] == "stages.2.2.convs.1"
    with_shortcuts = conv_layers(model, include_shortcuts=True)
    assert len(with_shortcuts) == 21 and "stages.1.0.shortcut.0" in dict(with_shortcuts)
    gated = conv_layers(build_model("v1-basic-8-exgate-b-6"), include_shortcuts=True)
    assert [n for n, _ in gated if "gate" in n] == [f"stages.{s}.0.modulation.gate.conv" for s in range(3)]
    assert len(conv_layers(build_model("v2-bottleneck-164"))) == 1 + 54 * 3


# ---------------------------------------------------------------------------------------------
# Activation checkpointing


@pytest.mark.parametrize("name", ["v1-basic-14-dropsc", "v2-bottleneck-20", "v1-basic-8-exgate-b-1"])
def test_activation_checkpointing_changes_nothing_but_memory(name):
    torch.manual_seed(0)
    plain = build_model(name).train()
    ckpt = copy.deepcopy(plain).set_activation_checkpointing(True)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    calls = []
    for model in (plain, ckpt):
        first_unit = model.stages[0][0]
        handle = first_unit.register_forward_pre_hook(lambda *a, model=model: calls.append(model))
        torch.manual_seed(1)  # same dropout masks in both runs...
        out = model(x)
        F.cross_entropy(out, y).backward()
        handle.remove()
        model.out = out
    assert calls.count(plain) == 1 and calls.count(ckpt) == 2  # ...and the recompute reuses them
    assert torch.equal(plain.out, ckpt.out)
    for (name_p, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.equal(p.grad, q.grad), name_p
    for (name_b, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        assert torch.equal(b, c), name_b  # BN statistics updated once, not twice
    # evaluation never recomputes
    plain.eval(), ckpt.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), ckpt(x))


def test_activation_checkpointing_under_torch_compile():
    torch.manual_seed(0)
    plain = build_model("v2-basic-8").train()
    ckpt = copy.deepcopy(plain).set_activation_checkpointing(True)
    x = torch.randn(4, 3, 32, 32)
    torch._dynamo.reset()
    out = torch.compile(ckpt, backend="aot_eager")(x)
    out.sum().backward()
    ref = plain(x)
    ref.sum().backward()
    assert torch.equal(out, ref)
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        assert torch.equal(p.grad, q.grad)
    for b, c in zip(plain.buffers(), ckpt.buffers()):
        assert torch.equal(b, c)
