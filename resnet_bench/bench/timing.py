"""Timing the project path against the baseline: rounds, pooled results, ratios."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

from resnet_bench.bench.baseline import time_baseline
from resnet_bench.bench.measure import FLOP_PER_MAC_TRAIN, PAPER_ITERATIONS, bench_dataset
from resnet_bench.bench.memory import PeakMemory, release_freed_memory
from resnet_bench.bench.project import time_project
from resnet_bench.bench.report import (PathResult, load_avg, measurement_provenance, print_model,
                                       write_csv)

PATHS = ("project", "baseline")


@dataclass
class _Raw:
    first_s: float
    ms: list[float]
    images: int
    peak_mib: float
    mem_method: str


def measure_once(name: str, path: str, dataset, args, device, note) -> _Raw:
    """One fresh measurement of one path: new model, optimizer and loader; peak memory around it."""
    fn = time_project if path == "project" else time_baseline
    with PeakMemory(device) as mem:
        first_s, ms, images = fn(name, dataset, args, device, note)
    release_freed_memory()
    return _Raw(first_s, ms, images, mem.mib, mem.method)


def _ips(raw: _Raw) -> float:
    return raw.images / (sum(raw.ms) / 1e3)


def summarize(name: str, path: str, raws: list[_Raw], args) -> PathResult:
    """Pool the timed iterations of all rounds of one path."""
    from resnet_bench.models import model_cost, parse_model_name
    params, macs = model_cost(name, num_classes=args.num_classes, in_channels=args.in_channels)
    macs = int(macs * parse_model_name(name).area_scale(tuple(args.image_size)))  # as timed
    ms = [t for r in raws for t in r.ms]
    images = sum(r.images for r in raws)
    images_per_s = images / (sum(ms) / 1e3)
    ms_mean = sum(ms) / len(ms)
    project = path == "project"
    first_s = raws[0].first_s
    return PathResult(
        model=name, path=path, images_per_s=images_per_s, ms_per_iter=ms_mean,
        ms_per_iter_median=statistics.median(ms), ms_per_iter_min=min(ms), ms_per_iter_max=max(ms),
        tflops_per_s=images_per_s * macs * FLOP_PER_MAC_TRAIN / 1e12,
        peak_mem_mib=max(r.peak_mib for r in raws), peak_mem_method=raws[0].mem_method,
        first_iter_s=first_s, compile_time_s=first_s if (project and args.compile) else 0.0,
        projected_64k_h=PAPER_ITERATIONS * ms_mean / 1e3 / 3600, params=params, macs=macs,
        settings={
            "precision": args.precision if project else "fp32",
            "compile": bool(args.compile) if project else False,
            "compile_mode": (args.compile_mode or "default") if (project and args.compile) else "",
            "compile_backend": args.compile_backend if (project and args.compile) else "",
            "channels_last": bool(args.channels_last) if project else False,
            "activation_checkpointing": bool(args.activation_checkpointing) if project else False,
            "sgd": "fused" if (project and args.fused_sgd) else "default",
            "data_path": ("DeviceLoader (dataset on device as uint8, batched pad/crop/flip)"
                          if project else
                          f"DataLoader(num_workers={args.baseline_workers}, shuffle=True) + "
                          "per-image PIL transforms"),
            "num_workers": 0 if project else args.baseline_workers,
            "rounds": len(raws),
            "timed_iters_total": len(ms),
        },
    )


def run_timing(args: argparse.Namespace, device) -> int:
    import torch

    def note(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    dataset = bench_dataset(args)
    note(f"{dataset.summary()} (loaded in {time.perf_counter() - t:.1f} s)")
    if len(dataset.train_y) < args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {len(dataset.train_y)} "
                         "training images")
    paths = PATHS if args.baseline else ("project",)
    prov = measurement_provenance(device)
    note(f"device {device} ({prov['device_name']}), torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads; {args.warmup_iters} warm-up + {args.iters} timed "
         f"iterations per path")
    if device.type == "cpu" and prov["load_avg_1m_at_start"] is not None:
        note(f"load average {prov['load_avg_1m_at_start']:.2f} on {os.cpu_count()} cores before "
             "timing (other processes skew both paths)")
    args.num_classes, args.in_channels = dataset.num_classes, dataset.in_channels
    args.image_size = dataset.image_size
    all_results: list[PathResult] = []
    for m, name in enumerate(args.models, 1):
        raws: dict[str, list[_Raw]] = {p: [] for p in paths}
        for rnd in range(1, args.rounds + 1):
            # Paths alternate (project, baseline, project, ...) so that a change in the machine's
            # load during the command hits both.
            for path in paths:
                prefix = f"[{m}/{len(args.models)}] {name} {path}" + (
                    f" round {rnd}/{args.rounds}" if args.rounds > 1 else "")
                note(f"{prefix}: timing")
                raw = measure_once(name, path, dataset, args, device,
                                   lambda s, p=prefix: note(f"{p}: {s}"))
                ms = sum(raw.ms) / len(raw.ms)
                note(f"{prefix}: {raw.images / (sum(raw.ms) / 1e3):.1f} images/s, {ms:.2f} ms/iter")
                raws[path].append(raw)
        results = [summarize(name, path, raws[path], args) for path in paths]
        if args.baseline:
            base = results[1]
            # Round k of the project path ran just before round k of the baseline: under a
            # changing load these adjacent pairs are the fairest comparisons available.
            per_round = [_ips(p) / _ips(b) for p, b in zip(raws["project"], raws["baseline"])]
            for r in results:
                own = r.path == "project"
                r.ratio_vs_baseline = r.images_per_s / base.images_per_s
                r.settings["ratio_vs_baseline_median"] = base.ms_per_iter_median / r.ms_per_iter_median
                r.settings["ratio_per_round"] = ";".join(
                    f"{x:.4f}" if own else "1" for x in per_round)
                r.settings["ratio_median_of_rounds"] = statistics.median(per_round) if own else 1.0
        print_model(results, args.batch_size)
        all_results.extend(results)

    print("\nTFLOP/s = images/s x MACs/image x 2 FLOP/MAC x 3 (forward + backward ~ 3 forward "
          "passes); these 16-64-channel nets are memory-bound, so it is far below peak.")
    print(f"peak memory: {all_results[0].peak_mem_method}.")
    print(f"64k iters = the paper's schedule ({PAPER_ITERATIONS} iterations) x mean ms/iter; "
          "evaluation, checkpointing and compilation excluded.")
    if args.baseline:
        print("baseline = torchvision Dataset of PIL images + RandomCrop(pad 4)/RandomHorizontalFlip/"
              f"ToTensor/Normalize in DataLoader(num_workers={args.baseline_workers}, shuffle=True), "
              "fp32, eager, NCHW; same model, images, batch size, optimizer.")
    from resnet_bench.train.provenance import now
    prov.update(load_avg_1m_at_end=load_avg(), finished=now())
    if args.csv:
        rows = []
        for r in all_results:
            row = {k: v for k, v in vars(r).items() if k != "settings"}
            row.update(r.settings)
            row.update(batch_size=args.batch_size, iters=args.iters, warmup_iters=args.warmup_iters,
                       dataset=dataset.name, train_size=len(dataset.train_y), seed=args.seed, **prov)
            rows.append(row)
        write_csv(args.csv, rows)
        note(f"wrote {args.csv} ({len(rows)} rows)")
    return 0
