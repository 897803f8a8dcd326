"""Helpers of scripts/gpu-check.sh: concurrent-training throughput and a deadline-bound study.

    python -m resnet_bench.gpucheck throughput --procs 1 2 4 8 --model v1-basic-20 --csv OUT
    python -m resnet_bench.gpucheck study --config config/degradation.yaml --prepared DATA.pt ...

Neither needs snakemake: the study expands the pipeline config with resnet_bench.pipeline.grid and
starts one `resnet-bench train` process per run, all at once on the one device (each claims a slot
of the GPU pool, RESNET_BENCH_GPU_SLOTS = number of runs).  At its deadline it sends SIGTERM, so
every unfinished run writes its checkpoint and keeps its logs (exit status 75).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Fractions of the study tried from the largest down: (seeds kept, share of the iterations).
LADDER = [(None, 1.0), (1, 1.0), (1, 0.5), (1, 0.25), (1, 0.125), (1, 0.0625), (1, 0.03125)]
# Used only when no throughput was measured: aggregate images/s of a GPU full of such runs.
# Guesses, not measurements (recorded in the plan as such).
ASSUMED_IPS = {20: 20000.0, 56: 8000.0}
OVERHEAD_S = 30.0   # process start, data load, cuDNN autotuning, evaluations, checkpoints
SAFETY = 1.3


# ----------------------------------------------------------------------------- throughput

def _worker(rank, models, device, batch, warmup, channels_last, precision, ready, go, results, threads):
    """One training process: per model, warm up, report ready, train through the common window."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    from resnet_bench.data import DeviceLoader
    from resnet_bench.models import build_model
    from resnet_bench.train.step import configure_backends, forward_backward, make_optimizer
    from resnet_bench.train.recipe import Recipe
    dev = torch.device(device)
    configure_backends(dev, precision)
    # Random CIFAR-shaped images: the throughput does not depend on their content.
    g = torch.Generator().manual_seed(rank)
    x = torch.randint(0, 256, (max(batch * 8, 1024), 3, 32, 32), dtype=torch.uint8, generator=g)
    loader = DeviceLoader(x, torch.randint(0, 10, (len(x),), generator=g), batch_size=batch,
                          device=dev, seed=rank, channels_last=channels_last)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for model in models:
        torch.manual_seed(rank)
        net = build_model(model, num_classes=10, in_channels=3).to(dev)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        opt = make_optimizer(net, Recipe())
        for i in range(warmup):
            forward_backward(net, opt, *loader.batch(i), dev, precision)
            opt.step()
        sync()
        ready.put(rank)
        start_at, stop_at = go.get()
        while time.time() < start_at:
            time.sleep(0.001)
        i = 0
        t0 = time.perf_counter()
        while time.time() < stop_at:
            forward_backward(net, opt, *loader.batch(warmup + i), dev, precision)
            opt.step()
            i += 1
            if i % 5 == 0 or dev.type == "cpu":
                sync()  # bound the queue so the window ends close to stop_at
        sync()
        results.put((rank, i, time.perf_counter() - t0))
        del net, opt


def throughput(args) -> int:
    """Aggregate images/s of N concurrent training processes on one device over a common window.

    One set of N processes per N times every model in turn (a process start costs seconds)."""
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.procs:
        ready, results = ctx.Queue(), ctx.Queue()
        gos = [ctx.Queue() for _ in range(n)]
        ps = [ctx.Process(target=_worker, args=(r, args.model, args.device, args.batch_size,
                                                args.warmup_iters, args.channels_last,
                                                args.precision, ready, gos[r], results,
                                                args.threads), daemon=True)
              for r in range(n)]
        for p in ps:
            p.start()
        for model in args.model:
            for _ in range(n):
                ready.get(timeout=args.ready_timeout)
            start_at = time.time() + 0.5
            for q in gos:
                q.put((start_at, start_at + args.window_s))
            got = [results.get(timeout=args.window_s + args.ready_timeout) for _ in range(n)]
            iters = [g[1] for g in got]
            secs = max(g[2] for g in got)
            ips = sum(iters) * args.batch_size / secs
            row = {"model": model, "processes": n, "images_per_s_total": round(ips, 1),
                   "images_per_s_per_process": round(ips / n, 1),
                   "iters_min": min(iters), "iters_max": max(iters),
                   "window_s": round(secs, 3), "batch_size": args.batch_size,
                   "precision": args.precision, "channels_last": args.channels_last,
                   "device": args.device}
            base = next((r for r in rows if r["model"] == model), row)
            row["speedup_vs_first"] = round(ips / base["images_per_s_total"], 3)
            rows.append(row)
            print(f"[throughput] {model} x{n}: {ips:.0f} images/s in all "
                  f"({row['speedup_vs_first']:.2f}x of x{base['processes']})", flush=True)
            if args.csv:  # after every point: a timeout keeps what was measured
                _write_rows(args.csv, rows)
        for p in ps:
            p.join()
    return 0


def _write_rows(path, rows) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# ----------------------------------------------------------------------------- study

def _scaled_recipe(values: dict, f: float, iterations: int | None, batch: int | None) -> dict:
    r = dict(values)
    full = int(r.get("iterations", 64000))
    n = iterations if iterations is not None else max(1, round(full * f))
    s = n / full
    r["iterations"] = n
    r["milestones"] = [max(1, round(m * s)) for m in r.get("milestones", [32000, 48000])]
    for key in ("eval_every", "checkpoint_every", "grad_norm_every"):
        if r.get(key):
            r[key] = max(1, round(r[key] * s))
    r["train_window"] = max(1, min(int(r.get("train_window", 100)), n))
    if batch is not None:
        r["batch_size"] = batch
    return r


def _throughput_table(path: str | None) -> dict[int, float]:
    """depth -> aggregate images/s at the largest measured process count."""
    table: dict[int, tuple[int, float]] = {}
    if path and Path(path).is_file():
        from resnet_bench.models import parse_model_name
        with open(path) as fh:
            for row in csv.DictReader(fh):
                depth = parse_model_name(row["model"]).depth
                n, ips = int(row["processes"]), float(row["images_per_s_total"])
                if n >= table.get(depth, (0, 0.0))[0]:
                    table[depth] = (n, ips)
    return {d: ips for d, (n, ips) in table.items()}


def plan(runs, recipe: dict, budget_s: float, ips: dict[int, float], iterations: int | None,
         batch: int | None):
    """The largest ladder step whose estimated GPU time fits the budget (the smallest if none)."""
    from resnet_bench.models import parse_model_name

    def ips_of(model: str) -> float:
        d = parse_model_name(model).depth
        if d in ips:
            return ips[d]
        near = min(ips, key=lambda k: abs(k - d))  # scale by depth from the nearest measurement
        return ips[near] * near / d

    steps = LADDER if iterations is None else [(None, 1.0)]
    for seeds, f in steps:
        chosen = [r for r in runs if seeds is None or r.seed in sorted({x.seed for x in runs})[:seeds]]
        rec = _scaled_recipe(recipe, f, iterations, batch)
        # All runs share the GPU: each costs its images over the GPU's aggregate rate for its net.
        est = OVERHEAD_S + SAFETY * sum(rec["iterations"] * rec["batch_size"] / ips_of(r.model)
                                        for r in chosen)
        if est <= budget_s or (seeds, f) == steps[-1]:
            return chosen, rec, f, est
    raise AssertionError("unreachable")


def study(args) -> int:
    import yaml
    from resnet_bench.pipeline import grid as G

    t_start = time.time()
    deadline = args.deadline if args.deadline else t_start + args.budget_s
    config = yaml.safe_load(Path(args.config).read_text())
    runs = G.validate(config)
    if args.depth:
        config = dict(config)
        config["grid"] = [{**e, "depth": args.depth, "models": []} if "family" in e else e
                          for e in config["grid"]]
        runs = G.validate(config)
    if args.seeds:
        runs = [r for r in runs if r.seed in args.seeds]
        if not runs:
            raise ValueError(f"--seeds {args.seeds}: no run of the grid has these seeds")
    recipes = {r.recipe for r in runs}
    if len(recipes) != 1:
        raise ValueError(f"{args.config}: the study runs one recipe, found {sorted(recipes)}")
    rname = recipes.pop()
    measured = _throughput_table(args.throughput_csv)
    ips = measured or ASSUMED_IPS
    budget = deadline - time.time() - args.grace_s
    chosen, rec, f, est = plan(runs, config["recipes"][rname], budget, ips, args.iterations,
                               args.batch_size)
    rec["name"] = rname if f == 1.0 and args.iterations is None else f"{rname}-{rec['iterations']}it"
    recipe_json = json.dumps(rec, sort_keys=True)
    exp = config["experiment"]
    root = Path(args.results)
    info = {"config": args.config, "experiment": exp, "recipe": rec, "fraction_of_iterations": f,
            "seeds": sorted({r.seed for r in chosen}), "models": sorted({r.model for r in chosen}),
            "runs": len(chosen), "of_runs": len(runs), "estimated_s": round(est, 1),
            "budget_s": round(budget, 1), "throughput_source": args.throughput_csv if measured
            else "assumed (no measurement): " + json.dumps(ASSUMED_IPS),
            "throughput_images_per_s": ips, "dataset": args.dataset, "device": args.device,
            "started": t_start, "deadline": deadline}
    print(f"[study] {len(chosen)} of {len(runs)} runs, {rec['iterations']} iterations each "
          f"(the config: {config['recipes'][rname].get('iterations')}), seeds {info['seeds']}; "
          f"estimated {est:.0f} s of {budget:.0f} s", flush=True)
    env = dict(os.environ)
    # Several runs on one GPU: that many slots in the pool (resnet_bench/gpu.py).
    env["RESNET_BENCH_GPU_SLOTS"] = str(max(1, len(chosen)))
    procs = []
    for r in chosen:
        run_dir = root / exp / "runs" / args.dataset / rec["name"] / r.model / f"seed{r.seed}"
        log = root / exp / "logs" / "train" / args.dataset / rec["name"] / r.model / f"seed{r.seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "resnet_bench.cli", "train", "--model", r.model,
               "--dataset", args.dataset, "--prepared", args.prepared, "--seed", str(r.seed),
               "--device", args.device, "--recipe-json", recipe_json, "--no-progress",
               "--threads", str(args.threads), "--out", str(run_dir)]
        fh = open(log, "w")
        procs.append((r, run_dir, subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env), fh))
    stop_at = deadline - args.grace_s
    asked = []  # a SIGTERM to the study (its step's timeout) stops the runs the same way
    signal.signal(signal.SIGTERM, lambda *_: asked.append(1))
    while any(p.poll() is None for _, _, p, _ in procs) and time.time() < stop_at and not asked:
        time.sleep(0.5)
    stopped = [p for _, _, p, _ in procs if p.poll() is None]
    for p in stopped:
        p.send_signal(signal.SIGTERM)  # checkpoint + logs are kept; exit status 75
    kill_at = time.time() + args.grace_s
    for p in stopped:
        try:
            p.wait(timeout=max(0.1, kill_at - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    results = []
    for r, run_dir, p, fh in procs:
        fh.close()
        s = run_dir / "summary.json"
        summary = json.loads(s.read_text()) if s.exists() else {}
        results.append({"model": r.model, "seed": r.seed, "exit_status": p.returncode,
                        "stopped_at_deadline": p in stopped, "status": summary.get("status",
                        "preempted" if p.returncode == 75 else "failed"),
                        "final_train_error_pct": summary.get("final_train_error_pct"),
                        "final_test_error_pct": summary.get("final_test_error_pct"),
                        "images_per_s": summary.get("images_per_s"), "dir": str(run_dir)})
    info.update(finished=time.time(), wall_s=round(time.time() - t_start, 1), results=results)
    (root / exp / "study.json").write_text(json.dumps(info, indent=2))
    done = sum(1 for x in results if x["status"] == "completed")
    print(f"[study] {done}/{len(results)} runs completed, {len(stopped)} stopped at the deadline, "
          f"{time.time() - t_start:.0f} s -> {root / exp}", flush=True)
    # Stopped at the deadline is the plan working (records kept); anything else is a failure.
    clean = all(x["status"] == "completed" or (x["stopped_at_deadline"] and x["exit_status"] == 75)
                for x in results)
    return 0 if clean else 3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m resnet_bench.gpucheck", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput", help="aggregate images/s of N concurrent trainings")
    t.add_argument("--model", action="append", required=True)
    t.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4, 8])
    t.add_argument("--device", default="cuda")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--warmup-iters", type=int, default=10)
    t.add_argument("--window-s", type=float, default=5.0)
    t.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads per process [1]")
    t.add_argument("--ready-timeout", type=float, default=120.0)
    t.add_argument("--csv")
    s = sub.add_parser("study", help="train a pipeline config's runs at once, until a deadline")
    s.add_argument("--config", required=True)
    s.add_argument("--prepared", required=True, help="dataset file of `resnet-bench data prepare`")
    s.add_argument("--dataset", required=True, help="dataset name of the run directories")
    s.add_argument("--results", required=True, help="results root (runs go to ROOT/EXPERIMENT/runs)")
    s.add_argument("--device", default="auto")
    s.add_argument("--deadline", type=float, help="epoch seconds by which every run has stopped")
    s.add_argument("--budget-s", type=float, default=300.0, help="used without --deadline")
    s.add_argument("--grace-s", type=float, default=20.0, help="SIGTERM this long before the deadline")
    s.add_argument("--throughput-csv", help="`throughput` output used to size the study")
    s.add_argument("--iterations", type=int, help="fixed iterations instead of the ladder (CPU mode)")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--depth", type=int, nargs="+", help="replace the grid's depths (CPU mode)")
    s.add_argument("--seeds", type=int, nargs="+", help="keep only these seeds of the grid (CPU mode)")
    s.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    for name in ("procs", "depth"):
        if any(v < 1 for v in (getattr(args, name, None) or [])):
            p.error(f"--{name} values must be >= 1")
    if args.cmd == "throughput" and (args.window_s <= 0 or args.batch_size < 1):
        p.error("--window-s and --batch-size must be positive")
    try:
        return throughput(args) if args.cmd == "throughput" else study(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gpucheck {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
