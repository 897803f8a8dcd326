"""`bench --fidelity`: short real trainings of one net, fp32 eager vs the fast options, over
several seeds, to check that the fast path stays within the seed-to-seed spread."""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from resnet_bench.bench.measure import bench_dataset

FIDELITY_COLUMNS = ["model", "config", "seed", "iterations", "batch_size", "final_train_loss",
                    "final_train_error_pct", "final_test_loss", "final_test_error_pct",
                    "images_per_s", "compile_time_s", "dataset", "device", "torch", "git_commit"]


def fidelity_configs(device) -> list[dict[str, Any]]:
    configs = [{"config": "fp32 eager", "precision": "fp32", "compile": False, "channels_last": False},
               {"config": "bf16 eager", "precision": "bf16", "compile": False, "channels_last": False}]
    if device.type == "cuda":
        configs.append({"config": "bf16 compile channels_last", "precision": "bf16",
                        "compile": True, "channels_last": True})
    return configs


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def run_fidelity(args: argparse.Namespace, device) -> int:
    """Short real trainings (resnet_bench.train.loop.train) of one net: fp32 eager vs fast options.

    The dataset is loaded once and handed to every run as a prepared file, so each run trains on
    exactly the same images; the same seed gives every config the same initialisation and batches.
    """
    import torch
    from resnet_bench.data import save_prepared
    from resnet_bench.train.loop import train
    from resnet_bench.train.recipe import Recipe, RunConfig

    name = args.models[0]
    n = args.fidelity_iters
    milestones = (max(1, n // 2), max(1, 3 * n // 4))  # the paper's 32k/48k of 64k, scaled
    configs = fidelity_configs(device)
    window = max(1, min(50, n // 4))
    dataset = bench_dataset(args)
    print(f"fidelity check: {name}, {n} iterations (lr 0.1, /10 at {milestones[0]} and "
          f"{milestones[1]}), batch {args.batch_size}, seeds {' '.join(map(str, args.seeds))}, "
          f"{dataset.summary()}, device {device}; final train loss/error = mean of the last "
          f"{window} mini-batches; configs: {'; '.join(c['config'] for c in configs)}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="resnet-bench-fidelity-") as tmp:
        prepared = Path(tmp) / "dataset.pt"
        save_prepared(dataset, prepared)
        for seed in args.seeds:
            for c in configs:
                recipe = Recipe(iterations=n, milestones=milestones, batch_size=args.batch_size,
                                precision=c["precision"], compile=c["compile"],
                                channels_last=c["channels_last"], eval_every=n,
                                checkpoint_every=n, train_window=window, name="fidelity")
                config = RunConfig(model=name, dataset=dataset.name, seed=seed, recipe=recipe,
                                   prepared=str(prepared), device=str(device))
                t = time.perf_counter()
                out = Path(tmp) / f"{c['config'].replace(' ', '_')}-{seed}"
                s = train(config, out, progress=False).summary
                if s.get("status") != "completed":
                    raise FloatingPointError(f"fidelity run {c['config']} seed {seed} "
                                             f"{s.get('status')} at iteration {s.get('iterations')}")
                print(f"  seed {seed} {c['config']:<28} train loss {s['final_train_loss']:.4f}  "
                      f"train err {s['final_train_error_pct']:6.2f}%  test err "
                      f"{s['final_test_error_pct']:6.2f}%  ({time.perf_counter() - t:.0f} s)",
                      flush=True)
                rows.append({"model": name, "config": c["config"], "seed": seed, "iterations": n,
                             "batch_size": args.batch_size, "dataset": dataset.name,
                             "device": s.get("device"), "torch": torch.__version__,
                             **{k: s[k] for k in ("final_train_loss", "final_train_error_pct",
                                                  "final_test_loss", "final_test_error_pct",
                                                  "images_per_s", "compile_time_s")}})
    _print_fidelity(rows, configs)
    if args.csv:
        from resnet_bench.train import provenance
        commit = provenance.code_revision()["git_commit"]
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=FIDELITY_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "git_commit": commit})
        print(f"[bench] wrote {path} ({len(rows)} rows)", file=sys.stderr)
    return 0


def _print_fidelity(rows: list[dict[str, Any]], configs: list[dict[str, Any]]) -> None:
    ref = configs[0]["config"]
    ref_mean, ref_sd = _mean_std([r["final_train_error_pct"] for r in rows if r["config"] == ref])
    print(f"\n  {'config':<28}{'train loss':>20}{'train err %':>18}{'test err %':>18}"
          f"{'train err - ' + ref:>30}")
    for c in configs:
        sel = [r for r in rows if r["config"] == c["config"]]
        cells = []
        for key, fmt in (("final_train_loss", "{:.4f} ± {:.4f}"), ("final_train_error_pct", "{:.2f} ± {:.2f}"),
                         ("final_test_error_pct", "{:.2f} ± {:.2f}")):
            cells.append(fmt.format(*_mean_std([r[key] for r in sel])))
        delta = _mean_std([r["final_train_error_pct"] for r in sel])[0] - ref_mean
        in_sd = f" ({abs(delta) / ref_sd:.1f} sd)" if ref_sd > 0 else ""
        print(f"  {c['config']:<28}{cells[0]:>20}{cells[1]:>18}{cells[2]:>18}"
              f"{f'{delta:+.2f}{in_sd}':>30}")
    print(f"\n± = seed-to-seed standard deviation; sd = the difference of mean training error "
          f"in units of the {ref} seed-to-seed sd. A fast option that leaves the science "
          "unchanged stays within about 2 sd; more seeds and iterations give a sharper test.")
