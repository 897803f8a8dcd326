"""Looking inside networks: layer responses, gradient flow, identity path, depth challenge.

Every number is checked against something known: a hand-run forward pass, an exact property of
zeroed residual branches, or the records a test wrote itself. Networks are depth 8-20 on a few
random 32x32 images, so the whole file runs in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from records import write_run  # noqa: E402

from resnet_bench.tables.aggregate import load_runs  # noqa: E402
from resnet_bench.tables.build import build_tables, write_tables  # noqa: E402
from resnet_bench.tables.depth import depth_challenge  # noqa: E402
from resnet_bench.plots.inside import render  # noqa: E402
from resnet_bench.inside.gradients import gradient_flow, gradient_norms, read_grad_log  # noqa: E402
from resnet_bench.inside.identity import identity_path, unit_feature_maps, unit_ratios  # noqa: E402
from resnet_bench.inside.responses import channel_std, layer_responses, response_stds  # noqa: E402
from resnet_bench.cli import main  # noqa: E402
from resnet_bench.data import ImageDataset, save_prepared  # noqa: E402
from resnet_bench.models import build_model, residual_units, response_layers  # noqa: E402

# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster than several on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def perturb(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every BN non-trivial affine parameters and running statistics, as training would,
    so that eval mode is not an identity and per-channel differences matter."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.3 * torch.randn(c, generator=g)
            m.running_mean = 0.2 * torch.randn(c, generator=g)
            m.running_var = 0.5 + torch.rand(c, generator=g)
    return model


def zero_residual_branches(model: torch.nn.Module) -> None:
    """Make F(x) = 0 in every unit: zero the last weight layer (and for post-activation units
    the BN that follows it, whose shift would otherwise survive)."""
    for _, unit in residual_units(model):
        unit.convs[-1].weight.data.zero_()
        bns = getattr(unit, "bns", None)
        if bns is not None and len(bns) == len(unit.convs):
            bns[-1].weight.data.zero_()
            bns[-1].bias.data.zero_()


def tiny_dataset(n_train: int = 64, n_test: int = 24) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(
        torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.arange(n_train) % 10,
        torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.arange(n_test) % 10,
        [f"c{i}" for i in range(10)], name="tiny", label="tiny random")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return save_prepared(tiny_dataset(), tmp_path_factory.mktemp("data") / "tiny.pt")


def make_run(root: Path, model_name: str, prepared: Path, seed: int = 0,
             zero_residuals: bool = False) -> Path:
    """A finished run directory as the trainer writes it (architecture.md), with a freshly built
    (BN-perturbed) network standing in for trained weights."""
    from resnet_bench.models import parse_model_name
    from resnet_bench.train.recipe import Recipe

    spec = parse_model_name(model_name)
    d = root / f"{model_name}_s{seed}"
    d.mkdir(parents=True)
    torch.manual_seed(seed)
    model = perturb(build_model(model_name), seed + 1)
    if zero_residuals:
        zero_residual_branches(model)
    torch.save(model.state_dict(), d / "model.pt")
    recipe = Recipe(iterations=10, milestones=(), batch_size=16, name="tiny")
    config = {"model": model_name, "dataset": "tiny", "seed": seed, "recipe": recipe.to_dict(),
              "data_dir": None, "prepared": str(prepared), "device": "cpu"}
    summary = {"status": "completed", "model": model_name, "family": spec.family,
               "block": spec.block, "depth": spec.depth, "variant": spec.variant,
               "dataset": "tiny", "dataset_label": "tiny random", "seed": seed, "recipe": "tiny",
               "iterations": 10}
    (d / "config.json").write_text(json.dumps(config))
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def x_batch(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# layer responses (V1 Fig. 7)


def _bn(x, bn):  # eval-mode BN from its own tensors
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _conv(x, conv):
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding)


def _option_a(x, out_channels, stride):
    x = x[:, :, ::stride, ::stride]
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def hand_responses(model, x, family):
    """Every 3x3 layer's response of a basic-block net, computed with functional ops from the
    weights (no module forward, no hooks)."""
    out = []
    stem = model.stem
    r = _bn(_conv(x, stem.conv), stem.bn)
    out.append(r)
    x = F.relu(r)
    for _, unit in residual_units(model):
        c0, c1 = unit.convs
        cout, stride = c0.out_channels, c0.stride[0]
        if family == "v1":
            r0 = _bn(_conv(x, c0), unit.bns[0])
            r1 = _bn(_conv(F.relu(r0), c1), unit.bns[1])
            out += [r0, r1]
            x = F.relu(_option_a(x, cout, stride) + r1)
        else:  # v2, full pre-activation: responses are the bare conv outputs
            a = x if isinstance(unit.preact, torch.nn.Identity) else F.relu(_bn(x, unit.preact[0]))
            r0 = _conv(a, c0)
            r1 = _conv(F.relu(_bn(r0, unit.bns[0])), c1)
            out += [r0, r1]
            x = _option_a(x, cout, stride) + r1
    return out


@pytest.mark.parametrize("name", ["v1-basic-8", "v2-basic-14"])
def test_response_std_from_hooks_equals_hand_computation(name):
    torch.manual_seed(0)
    model = perturb(build_model(name))
    x = x_batch(10)
    with torch.no_grad():
        expected = hand_responses(model.eval(), x, name[:2])
    model.train()
    # batches of 4, 4 and 2: the accumulated moments must give the one-pass value
    table = response_stds(model, [x[:4], (x[4:8], None), x[8:]])
    assert len(table) == len(expected) == len(response_layers(model))
    for row, y in zip(table.itertuples(), expected):
        assert row.std == pytest.approx(channel_std(y), rel=1e-5)
        assert row.std_all == pytest.approx(float(y.double().std(unbiased=False)), rel=1e-5)
        assert row.channels == y.shape[1]
    # the definition itself: per-channel std over N*H*W, then the mean over channels
    y = expected[3]
    per_channel = [y[:, c].double().flatten().std(unbiased=False) for c in range(y.shape[1])]
    assert table["std"].iloc[3] == pytest.approx(float(torch.stack(per_channel).mean()), rel=1e-9)
    assert sorted(table["rank"]) == list(range(1, len(table) + 1))
    assert table.sort_values("rank")["std"].is_monotonic_decreasing
    assert (table["n_images"] == 10).all()
    assert model.training  # restored


def test_layer_responses_of_runs_table(tmp_path, prepared):
    runs = [make_run(tmp_path / "runs", n, prepared) for n in ("plain-basic-8", "v1-basic-8")]
    table = layer_responses(runs, max_images=20, batch_size=8)  # figure: see the CLI test
    assert set(table["model"]) == {"plain-basic-8", "v1-basic-8"}
    assert (table.groupby("run_id").size() == 7).all()  # stem + 2 per unit x 3 units
    assert (table["n_images"] == 20).all()
    assert list(table[table["model"] == "plain-basic-8"]["layer"]) == list(range(1, 8))
    assert table["std"].gt(0).all() and table["std_all"].gt(0).all()


# ---------------------------------------------------------------------------------------------
# gradient flow


def test_v2_zeroed_residuals_pass_the_gradient_unchanged():
    torch.manual_seed(0)
    model = build_model("v2-basic-14")  # 2 units per stage
    zero_residual_branches(model)
    x, y = x_batch(8), torch.arange(8) % 10
    table, grads = gradient_norms(model, x, y, keep_grads=True)
    act = table[table["quantity"] == "activation"].set_index("name")["grad_norm"]
    # within stage 1 every shortcut is the identity: x_0 (stem output) -> x_2 unchanged
    assert act["stem"] == pytest.approx(act["stages.0.1"], rel=1e-6)
    assert act["stages.1.0"] == pytest.approx(act["stages.1.1"], rel=1e-6)
    # all the way from the last unit to the stem: the gradient arrives untouched, carried by the
    # option-A shortcuts (every 2nd pixel per stage, first channels), nothing added on the way
    g_last, g_stem = grads["stages.2.1"], grads["stem"]
    carried = g_last[:, :16]
    assert torch.allclose(g_stem[:, :, ::4, ::4], carried, rtol=1e-5, atol=1e-9)
    mask = torch.ones_like(g_stem, dtype=torch.bool)
    mask[:, :, ::4, ::4] = False
    assert float(g_stem[mask].abs().max()) == 0.0
    assert act["stem"] == pytest.approx(float(carried.norm()), rel=1e-5)
    # weight-gradient rows: one per conv, in network order
    w = table[table["quantity"] == "weight"]
    assert list(w["layer"]) == list(range(1 + 2 * 6))
    assert w["position"].iloc[0] == 0 and w["position"].iloc[-1] == 1


def test_plain_net_gradient_norms_vary_across_layers():
    torch.manual_seed(0)
    model = build_model("plain-basic-20")
    table = gradient_norms(model, x_batch(8), torch.arange(8) % 10)
    act = table[table["quantity"] == "activation"]["grad_norm"]
    assert act.notna().all() and (act > 0).all()
    assert act.max() / act.min() > 3
    # even inside stage 1, where every signal has the same shape
    stage1 = table[(table["quantity"] == "activation") & (table["layer"] <= 3)]["grad_norm"]
    assert stage1.max() / stage1.min() > 1.2


def test_gradient_flow_at_init_and_from_run_logs(tmp_path, prepared):
    ds = tiny_dataset()
    run = make_run(tmp_path / "runs", "v1-basic-8", prepared)
    model = build_model("v1-basic-8")
    from resnet_bench.models import conv_layers
    names = [n for n, _ in conv_layers(model)]
    rows = [(it, i, n, 0.1 * (i + 1) / (it + 1), 1.0 + i) for it in (0, 5, 9)
            for i, n in enumerate(names)]
    pd.DataFrame(rows, columns=["iteration", "layer", "name", "grad_norm", "weight_norm"]) \
        .to_csv(run / "grad_norms.csv", index=False)
    out = tmp_path / "out"
    table = gradient_flow(["plain-basic-8", "v2-basic-8"], seeds=[0, 1], runs=[run], dataset=ds,
                          batch_size=16, out_dir=out)
    init = table[table["source"] == "init"]
    assert set(init["seed"]) == {0, 1} and set(init["quantity"]) == {"weight", "activation"}
    assert len(init[init["quantity"] == "activation"]) == 2 * 2 * 4  # stem + 3 units
    logged = table[table["source"] == "run"]
    assert sorted(logged["iteration"].unique()) == [0, 5, 9]
    assert logged[logged["iteration"] == 5]["grad_norm"].tolist() == \
        pytest.approx([0.1 * (i + 1) / 6 for i in range(len(names))])
    # the same seed gives the same initialisation, hence the same numbers
    again = gradient_flow(["v2-basic-8"], seeds=[1], dataset=ds, batch_size=16)
    ref = init[(init["model"] == "v2-basic-8") & (init["seed"] == 1)]["grad_norm"].to_numpy()
    assert again["grad_norm"].to_numpy() == pytest.approx(ref, rel=1e-6)
    assert render("gradients", out) == ["gradient_flow"]  # the figure, drawn from the CSV
    for ext in ("csv", "png", "pdf"):
        assert (out / f"gradient_flow.{ext}").stat().st_size > 0
    (run / "grad_norms.csv").write_text("iteration,layer\n0,0\n")
    with pytest.raises(ValueError, match="missing column"):
        read_grad_log(run)


# ---------------------------------------------------------------------------------------------
# identity path


@pytest.mark.parametrize("name", ["v1-basic-8", "v2-basic-8"])
def test_ratio_is_zero_for_zeroed_residual_branches(name):
    torch.manual_seed(0)
    model = perturb(build_model(name))
    zero_residual_branches(model)
    table = unit_ratios(model, [x_batch(5)])
    assert (table["ratio"] == 0).all() and (table["residual_norm"] == 0).all()
    assert (table["shortcut_norm"] > 0).all()


def test_ratio_matches_hand_computation_for_one_unit():
    torch.manual_seed(0)
    model = perturb(build_model("v1-basic-14")).eval()
    x = x_batch(6)
    with torch.no_grad():
        h = model.stem(x)
        h = model.stages[0][0](h)                 # input of unit 2 (stages.0.1)
        unit = model.stages[0][1]
        r = _bn(_conv(F.relu(_bn(_conv(h, unit.convs[0]), unit.bns[0])), unit.convs[1]), unit.bns[1])
        per_image = r.flatten(1).double().norm(dim=1) / h.flatten(1).double().norm(dim=1)
    table = unit_ratios(model, [x[:4], x[4:]]).set_index("name")
    row = table.loc["stages.0.1"]
    assert row["ratio"] == pytest.approx(float(per_image.mean()), rel=1e-5)
    assert row["ratio_to_input"] == pytest.approx(row["ratio"], rel=1e-12)  # identity shortcut
    assert row["unit"] == 2 and row["stage"] == 1 and row["n_images"] == 6
    # option-A unit: h(x) subsamples, so ||h(x)|| < ||x|| and the two ratios differ
    down = table.loc["stages.1.0"]
    assert down["shortcut_norm"] < down["input_norm"] and down["ratio"] > down["ratio_to_input"]


def test_plain_units_have_no_shortcut_ratio():
    torch.manual_seed(0)
    table = unit_ratios(build_model("plain-basic-8"), [x_batch(3)])
    assert table["ratio"].isna().all() and (table["ratio_to_input"] > 0).all()


def test_feature_maps_add_up():
    torch.manual_seed(0)
    model = perturb(build_model("v2-basic-14"))
    maps = unit_feature_maps(model, x_batch(1)[0], unit=2)
    assert maps["input"].shape == maps["output"].shape == (16, 32, 32)
    assert torch.allclose(maps["shortcut"] + maps["residual"], maps["output"], atol=1e-6)
    assert torch.equal(maps["shortcut"], maps["input"])  # identity shortcut
    with pytest.raises(ValueError, match="out of range"):
        unit_feature_maps(model, x_batch(1)[0], unit=7)


def test_identity_path_of_runs_writes_tables_and_figures(tmp_path, prepared):
    runs = [make_run(tmp_path / "runs", "v1-basic-8", prepared),
            make_run(tmp_path / "runs", "v2-basic-8", prepared, zero_residuals=True)]
    out = tmp_path / "out"
    table = identity_path(runs, max_images=8, out_dir=out, maps_channels=2)
    assert (table[table["model"] == "v2-basic-8"]["ratio"] == 0).all()
    assert (table[table["model"] == "v1-basic-8"]["ratio"] > 0).all()
    assert render("identity", out) == ["identity_path", "identity_path_maps"]
    for stem in ("identity_path", "identity_path_maps"):
        for ext in ("csv", "png", "pdf"):
            assert (out / f"{stem}.{ext}").stat().st_size > 0
    maps = pd.read_csv(out / "identity_path_maps.csv")
    assert len(maps) == 2 * 2 * 4 * 32 * 32  # runs x channels x maps x pixels


# ---------------------------------------------------------------------------------------------
# depth challenge


def test_depth_challenge_reads_loss_at_k(tmp_path):
    root = tmp_path / "runs"
    for family in ("plain", "v1", "v2"):
        for depth in (8, 20):
            write_run(root, family=family, depth=depth, iterations=60, eval_every=20)
    write_run(root, family="v1", depth=56, iterations=60, eval_every=20, status="diverged",
              diverge_at=30)
    table = depth_challenge(load_runs([root]), k=40, window=10, out_dir=tmp_path / "out")
    assert len(table) == 7
    log = pd.read_csv(root / "v2-basic-20_synthetic_quick_s0" / "train_log.csv")
    expected = log[(log["iteration"] > 30) & (log["iteration"] <= 40)]["loss"].mean()
    row = table[table["model"] == "v2-basic-20"].iloc[0]
    assert row["train_loss"] == pytest.approx(expected) and not row["diverged"]
    bad = table[table["depth"] == 56].iloc[0]
    assert bad["diverged"] and math.isnan(bad["train_loss"])
    assert table["k"].eq(40).all()
    # default k: the shortest completed run
    assert depth_challenge(load_runs([root]))["k"].eq(60).all()
    with pytest.raises(ValueError, match="fewer than k"):
        depth_challenge(load_runs([root]), k=61)
    render("depth", tmp_path / "out")
    for ext in ("csv", "png", "pdf"):
        assert (tmp_path / "out" / f"depth_challenge.{ext}").stat().st_size > 0
    # drawn from the tables on disk, the same table; --runs picks runs out of them and names
    # them as aggregating only those would
    tables = tmp_path / "tables"
    write_tables(build_tables(load_runs([root])), tables)
    pd.testing.assert_frame_equal(depth_challenge(tables, k=40, window=10), table)
    some = [root / "v1-basic-8_synthetic_quick_s0", root / "v2-basic-20_synthetic_quick_s0"]
    pd.testing.assert_frame_equal(depth_challenge(tables, runs=some, k=40, window=10),
                                  depth_challenge(load_runs(some), k=40, window=10))


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_runs_every_analysis(tmp_path, prepared, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "v1-basic-8", prepared)
    make_run(runs, "v2-basic-8", prepared)
    out = tmp_path / "out"
    assert main(["analyze", "responses", "--runs", str(runs), "--out", str(out),
                 "--max-images", "8"]) == 0
    assert main(["analyze", "identity", "--runs", str(runs / "*"), "--out", str(out),
                 "--max-images", "8", "--channels", "1", "--unit", "1"]) == 0
    assert main(["analyze", "gradients", "--models", "v1-basic-8", "--seeds", "0",
                 "--prepared", str(prepared), "--batch-size", "8", "--out", str(out)]) == 0
    depth_runs = tmp_path / "records"
    write_run(depth_runs, family="v1", depth=8, iterations=30, eval_every=10)
    write_run(depth_runs, family="v2", depth=8, iterations=30, eval_every=10)
    assert main(["analyze", "depth", "--runs", str(depth_runs), "--out", str(out),
                 "--k", "20", "--window", "5"]) == 0
    for stem in ("layer_responses", "identity_path", "identity_path_maps", "gradient_flow",
                 "depth_challenge"):
        for ext in ("csv", "png", "pdf"):
            assert (out / f"{stem}.{ext}").exists(), (stem, ext)
    assert "analyze depth: 2 run(s) at k=20" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["analyze", "responses", "--runs", "{tmp}/nowhere", "--out", "{tmp}/o"], "nowhere"),
    (["analyze", "gradients", "--models", "v9-basic-20", "--out", "{tmp}/o"], "v9"),
    (["analyze", "identity", "--runs", "{run}", "--out", "{tmp}/o", "--unit", "99"], "unit 99"),
    (["analyze", "responses", "--runs", "{run}", "--out", "{tmp}/o", "--max-images", "0"],
     "--max-images"),
    (["analyze", "gradients", "--out", "{tmp}/o"], "nothing to analyse"),
])
def test_cli_bad_input_is_one_line_error(tmp_path, prepared, capsys, argv, message):
    run = make_run(tmp_path / "runs", "v1-basic-8", prepared)
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("resnet-bench analyze: error:") and "\n" not in err
    assert message in err


def test_cli_missing_weights_is_one_line_error(tmp_path, prepared, capsys):
    run = make_run(tmp_path / "runs", "v1-basic-8", prepared)
    (run / "model.pt").unlink()
    assert main(["analyze", "responses", "--runs", str(run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.pt: missing" in err and "\n" not in err


# ---------------------------------------------------------------------------------------------
# one tiny real training run feeding every analysis


@pytest.mark.slow
def test_real_training_run_feeds_the_analyses(tmp_path, prepared):
    from resnet_bench.data import DeviceLoader, load_prepared
    from resnet_bench.train.loop import train
    from resnet_bench.train.recipe import Recipe, RunConfig

    recipe = Recipe(iterations=4, milestones=(), batch_size=16, eval_every=4, checkpoint_every=4,
                    eval_batch_size=24, train_window=2, grad_norm_every=2, name="tiny")
    runs = tmp_path / "runs"
    for name in ("v1-basic-8", "v2-basic-8"):
        # the v1 run holds out a validation split, which changes its normalisation statistics
        r = dataclasses.replace(recipe, val_split=16) if name.startswith("v1") else recipe
        cfg = RunConfig(model=name, dataset="tiny", seed=3, prepared=str(prepared),
                        recipe=r, device="cpu")
        assert train(cfg, runs / name, progress=False).summary["status"] == "completed"

    # the held-out images an analysis sees are the ones the trainer tested on: re-evaluating the
    # final weights gives the recorded final test loss and error
    from resnet_bench.inside.trained import load_trained
    for name in ("v1-basic-8", "v2-basic-8"):
        run = load_trained(runs / name)
        loss, wrong = 0.0, 0
        with torch.no_grad():
            for xb, yb in run.heldout_batches(batch_size=10):
                out = run.model(xb)
                loss += float(F.cross_entropy(out, yb, reduction="sum"))
                wrong += int((out.argmax(1) != yb).sum())
        assert loss / 24 == pytest.approx(run.summary["final_test_loss"], rel=1e-5)
        assert 100.0 * wrong / 24 == pytest.approx(run.summary["final_test_error_pct"])

    # the trainer's gradient log at iteration 0 is the gradient at initialisation: rebuilding the
    # seeded network and its first batch, our gradient code gives the same numbers
    ds = load_prepared(prepared)
    loader = DeviceLoader(ds.train_x, ds.train_y, batch_size=16, seed=3, augment=True)
    xb, yb = loader.batch(0)
    torch.manual_seed(3)
    ours = gradient_norms(build_model("v2-basic-8"), xb, yb)
    ours = ours[ours["quantity"] == "weight"].reset_index(drop=True)
    logged = read_grad_log(runs / "v2-basic-8")
    at0 = logged[logged["iteration"] == 0].reset_index(drop=True)
    assert list(at0["name"]) == list(ours["name"])
    assert at0["grad_norm"].to_numpy() == pytest.approx(ours["grad_norm"].to_numpy(), rel=1e-4)
    assert sorted(logged["iteration"].unique()) == [0, 2, 3]

    responses = layer_responses([runs])
    assert set(responses["n_images"]) == {24} and responses["std"].gt(0).all()
    ratios = identity_path([runs])
    assert ratios["ratio"].gt(0).all()
    flow = gradient_flow(runs=[runs])
    assert set(flow["model"]) == {"v1-basic-8", "v2-basic-8"}
    challenge = depth_challenge(load_runs([runs]), window=2)
    assert challenge["k"].eq(4).all() and challenge["train_loss"].notna().all()
