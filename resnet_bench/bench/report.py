"""The timing report: a path's pooled result, provenance of the measurement, the CSV rows, the
printed table."""

from __future__ import annotations

import csv
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PathResult:
    """One path's timed iterations of one network, pooled over the rounds: a CSV row."""
    model: str
    path: str
    images_per_s: float
    ms_per_iter: float                   # mean over the timed iterations
    ms_per_iter_median: float
    ms_per_iter_min: float
    ms_per_iter_max: float
    tflops_per_s: float
    peak_mem_mib: float
    peak_mem_method: str
    first_iter_s: float                  # includes compilation / autotuning / lazy init
    compile_time_s: float                # first_iter_s when compiled, else 0
    projected_64k_h: float
    params: int
    macs: int
    settings: dict[str, Any] = field(default_factory=dict)
    ratio_vs_baseline: float | None = None


def measurement_provenance(device) -> dict[str, Any]:
    import socket
    from resnet_bench.train import provenance
    code = provenance.code_revision()
    hw = provenance.device_description(device)
    sw = provenance.software_versions()
    import torch
    return {
        "device": str(device), "device_name": hw["device_name"],
        "cpu_name": provenance.cpu_name(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": sw["torch"], "torchvision": sw["torchvision"], "python": sw["python"],
        "cuda": sw["cuda"], "cudnn": sw["cudnn"],
        "git_commit": code["git_commit"], "git_dirty": code["git_dirty"],
        "package_version": code["package_version"],
        "host": socket.gethostname(), "platform": platform.platform(),
        "load_avg_1m_at_start": load_avg(), "started": provenance.now(),
    }


def load_avg() -> float | None:
    """1-minute load average: how busy the machine was (other processes skew CPU timings)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


CSV_COLUMNS = [
    "model", "path", "images_per_s", "ms_per_iter", "ms_per_iter_median", "ms_per_iter_min",
    "ms_per_iter_max", "tflops_per_s", "ratio_vs_baseline", "ratio_vs_baseline_median",
    "ratio_per_round", "ratio_median_of_rounds",
    "peak_mem_mib", "peak_mem_method", "first_iter_s", "compile_time_s", "projected_64k_h",
    "params", "macs", "batch_size", "iters", "warmup_iters", "rounds", "timed_iters_total",
    "precision", "compile", "compile_mode", "compile_backend", "channels_last", "sgd", "data_path", "num_workers",
    "dataset", "train_size", "seed",
    "device", "device_name", "cpu_name", "cpu_count", "torch_threads", "torch", "torchvision",
    "python", "cuda", "cudnn", "git_commit", "git_dirty", "package_version", "host", "platform",
    "load_avg_1m_at_start", "load_avg_1m_at_end", "started", "finished",
]


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    tmp.replace(path)


def _fmt_h(hours: float) -> str:
    return f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def print_model(results: list[PathResult], batch: int) -> None:
    r0 = results[0]
    print(f"\n{r0.model}: {r0.params / 1e6:.3f}M params, {r0.macs / 1e6:.2f}M MACs/image "
          f"(forward), batch {batch}")
    header = (f"  {'path':<9}{'images/s':>10}{'ms/iter':>10}{'median':>9}{'TFLOP/s':>9}"
              f"{'peak MiB':>10}{'1st it s':>9}{'64k iters':>11}  settings")
    print(header)
    for r in results:
        s = r.settings
        opts = [s["precision"], "compile" + (f"({s['compile_mode']})" if s["compile_mode"] else "")
                if s["compile"] else "eager", "channels_last" if s["channels_last"] else "NCHW",
                *(["fused SGD"] if s["sgd"] == "fused" else []),
                "DeviceLoader" if r.path == "project" else f"DataLoader x{s['num_workers']} workers"]
        print(f"  {r.path:<9}{r.images_per_s:>10.1f}{r.ms_per_iter:>10.2f}{r.ms_per_iter_median:>9.2f}"
              f"{r.tflops_per_s:>9.4g}{r.peak_mem_mib:>10.1f}{r.first_iter_s:>9.2f}"
              f"{_fmt_h(r.projected_64k_h):>11}  {', '.join(opts)}")
    for r in results:
        if r.ratio_vs_baseline is not None and r.path == "project":
            print(f"  ratio project/baseline: {r.ratio_vs_baseline:.2f}x images/s "
                  f"({r.settings['ratio_vs_baseline_median']:.2f}x on median ms/iter)")
            rounds = r.settings["ratio_per_round"].split(";")
            if len(rounds) > 1:
                print(f"  per-round ratios (adjacent project/baseline pairs): {', '.join(rounds)}; "
                      f"median {r.settings['ratio_median_of_rounds']:.2f}x")
