"""Helpers of scripts/gpu-check.sh: concurrent-training throughput and the paper-schedule run.

    python -m resnet_bench.bench.gpucheck throughput --procs 1 2 4 8 --model v1-basic-20 --csv OUT
    python -m resnet_bench.bench.gpucheck paper-run --config config/v1_cifar10.yaml --recipe paper-warmup \
        --model v1-basic-110 --prepared DATA.pt --dataset cifar10-jpeg --out DIR

Neither needs snakemake. `paper-run` trains one network in this process on a pipeline config's
recipe (the papers' 64k-iteration schedule) until the script sends it SIGTERM at its deadline,
as a scheduler's time limit would: the trainer writes its checkpoint and logs, and the measured
iterations/s give the projected wall time of the whole schedule. What runs when, under which
time limit, is the script's to decide.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

from resnet_bench.bench.measure import PAPER_ITERATIONS
from resnet_bench.infra.strict import config_file
from resnet_bench.record import EVAL_LOG, TRAIN_LOG
from resnet_bench.train.recipe import PRECISIONS


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


# ----------------------------------------------------------------------------- paper run

def _recipe_values(config_path: str, name: str, sets: list[str]) -> tuple[dict, dict]:
    """(the config's recipe `name` with the --set KEY=VALUE overrides applied, the overrides)."""
    import yaml
    config = config_file(config_path)  # as the pipeline reads it: a repeated key is refused
    recipes = (config or {}).get("recipes") or {}
    if name not in recipes:
        raise ValueError(f"{config_path}: no recipe {name!r} (has {', '.join(sorted(recipes))})")
    overrides = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return {**recipes[name], **overrides, "name": name}, overrides


def _curve(run_dir: Path) -> list[dict]:
    """The run's training log and its evaluations, one row per iteration (evaluations on the
    rows of their iteration)."""
    rows = {}
    with open(run_dir / TRAIN_LOG, newline="") as fh:
        for r in csv.DictReader(fh):
            rows[int(r["iteration"])] = {**r, "test_loss": "", "test_error_pct": ""}
    if (run_dir / EVAL_LOG).exists():
        with open(run_dir / EVAL_LOG, newline="") as fh:
            for r in csv.DictReader(fh):
                if r["split"] == "test" and int(r["iteration"]) in rows:
                    rows[int(r["iteration"])].update(test_loss=r["loss"], test_error_pct=r["error_pct"])
    return [rows[k] for k in sorted(rows)]


def paper_run(args) -> int:
    """One network on a config's recipe until SIGTERM (or the schedule's end), and the
    projection of the full schedule from what it did."""
    from resnet_bench.train.exits import EXIT_COMPLETED, EXIT_PREEMPTED
    from resnet_bench.train.loop import train
    from resnet_bench.train.recipe import Recipe, RunConfig

    values, overrides = _recipe_values(args.config, args.recipe, args.set)
    recipe = Recipe.from_dict(values, f"{args.config}: recipes: {args.recipe}")
    cfg = RunConfig(model=args.model, dataset=args.dataset, seed=args.seed, recipe=recipe,
                    prepared=args.prepared, device=args.device)
    out = Path(args.out)
    run_dir = out / "run"
    t0 = time.time()
    print(f"[paper-run] {args.model} on {args.config} recipe {args.recipe} "
          f"(overrides {json.dumps(overrides)})", flush=True)
    # The trainer's own SIGTERM handling: the step in flight ends, a checkpoint is written.
    outcome = train(cfg, run_dir, progress=False)
    elapsed = time.time() - t0
    s = outcome.summary
    it = int(s["iterations"])
    rows = _curve(run_dir) if (run_dir / TRAIN_LOG).exists() else []
    window = rows[-recipe.train_window:]
    info = {"model": args.model, "config": args.config, "recipe_name": args.recipe,
            "overrides": overrides, "recipe": recipe.to_dict(), "device": args.device, "dataset": args.dataset,
            "status": s["status"], "exit_status": outcome.exit_status, "iterations": it,
            "of_iterations": recipe.iterations, "elapsed_s": round(elapsed, 1)}
    train_s, wall_s = s.get("train_time_s"), s.get("wall_time_s")
    if it > 0 and train_s and wall_s:
        setup_s = max(0.0, elapsed - wall_s)  # process start to first iteration, and the stop
        full = PAPER_ITERATIONS  # the papers' CIFAR schedule
        info.update(
            setup_s=round(setup_s, 1), train_time_s=round(train_s, 2), wall_time_s=round(wall_s, 2),
            compile_time_s=s.get("compile_time_s"),
            iterations_per_s_training=round(it / train_s, 3),
            iterations_per_s_wall=round(it / wall_s, 3),
            ms_per_iteration_training=round(1e3 * train_s / it, 3),
            # evaluations and checkpoints at the recipe's intervals are in the wall time
            projected_64k_h_training=round(full * train_s / it / 3600, 3),
            projected_64k_h_wall=round((setup_s + full * wall_s / it) / 3600, 3))
    lrs = [float(r["lr"]) for r in rows]
    info.update(
        warmup_done=s.get("warmup_done"),
        warmup_over_at=next((int(r["iteration"]) for r in rows
                             if recipe.warmup == "v1" and float(r["lr"]) > recipe.warmup_lr), None),
        last_lr=lrs[-1] if lrs else None,
        train_loss_last_window=round(sum(float(r["loss"]) for r in window) / len(window), 4)
        if window else None,
        train_error_pct_last_window=round(sum(float(r["error_pct"]) for r in window) / len(window), 2)
        if window else None,
        evaluations=[{"iteration": int(r["iteration"]), "test_error_pct": float(r["test_error_pct"])}
                     for r in rows if r["test_error_pct"]])
    if rows:
        with open(run_dir / "curve.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    (out / "paper-run.json").write_text(json.dumps(info, indent=2))
    print(f"[paper-run] {s['status']} at iteration {it} of {recipe.iterations}: "
          + (f"{info['iterations_per_s_training']:.2f} it/s training, "
             f"{info['iterations_per_s_wall']:.2f} it/s with evaluations; the 64k schedule "
             f"projected at {info['projected_64k_h_wall']:.2f} h" if "setup_s" in info
             else "no iteration timed"), flush=True)
    # Stopped at the deadline is the plan working; a completed run is fine too.
    return 0 if outcome.exit_status in (EXIT_COMPLETED, EXIT_PREEMPTED) and it > 0 else 3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m resnet_bench.bench.gpucheck", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput", help="aggregate images/s of N concurrent trainings")
    t.add_argument("--model", action="append", required=True)
    t.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4, 8])
    t.add_argument("--device", default="cuda")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--warmup-iters", type=int, default=10)
    t.add_argument("--window-s", type=float, default=5.0)
    t.add_argument("--precision", choices=PRECISIONS, default="bf16")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads per process [1]")
    t.add_argument("--ready-timeout", type=float, default=120.0)
    t.add_argument("--csv")
    r = sub.add_parser("paper-run", help="one network on a config's recipe until a deadline")
    r.add_argument("--config", required=True, help="pipeline config holding the recipe")
    r.add_argument("--recipe", required=True, help="recipe name in the config")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (recorded): precision=bf16, channels_last=true")
    r.add_argument("--model", required=True)
    r.add_argument("--prepared", required=True, help="dataset file of `resnet-bench data prepare`")
    r.add_argument("--dataset", required=True, help="dataset name recorded in the run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto")
    r.add_argument("--out", required=True, help="directory: run/, paper-run.json")
    args = p.parse_args(argv)
    if any(v < 1 for v in (getattr(args, "procs", None) or [])):
        p.error("--procs values must be >= 1")
    if args.cmd == "throughput" and (args.window_s <= 0 or args.batch_size < 1):
        p.error("--window-s and --batch-size must be positive")
    try:
        return throughput(args) if args.cmd == "throughput" else paper_run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gpucheck {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
