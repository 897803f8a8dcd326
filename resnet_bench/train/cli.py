"""`resnet-bench train`: one network, one dataset, one seed -> one run directory."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import yaml

from resnet_bench.infra import checks
from resnet_bench.infra.args import add_source_args
from resnet_bench.infra.strict import json_loads, yaml_load
from resnet_bench.train.recipe import KNOBS, Recipe, RunConfig

# The kinds are listed by `resnet-bench data prepare --help`: naming them here would import them
# (and torch) for every --help.
DATASET_HELP = ("a dataset kind (`resnet-bench data prepare --help` lists them and their "
                "options)")


def _add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recipe (defaults: the papers' CIFAR recipe)")
    for name, k in KNOBS.items():
        group.add_argument(k.flag, dest=name, default=None, help=f"{k.help} [{k.default}]",
                           **k.rule.cli())


EPILOG = """\
several processes (one run, torch.distributed): start the same command with torchrun, e.g.
  torchrun --nproc-per-node 2 -m resnet_bench.cli train --model v1-basic-20 --out RUN ...
nccl on CUDA (process r on cuda:LOCAL_RANK), gloo on CPU; --batch-size stays the global batch,
split evenly over the processes; --bn-batch-size sets per-GPU BN (e.g. 64 for the papers' 128
over 2 GPUs), 0 = SyncBN. Rank 0 writes the records; SIGTERM stops every rank at the next sync,
rank 0 checkpoints, each rank exits 75. See docs/cluster.md."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model", required=True, help="network name (see `resnet-bench models`)")
    add_source_args(parser, DATASET_HELP)
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, e.g. train_size=2000 (see `resnet-bench data prepare --help`)")
    parser.add_argument("--out", required=True, help="run directory (created; resumed if it holds a checkpoint)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--recipe-file", help="YAML/JSON mapping of recipe keys; flags override it")
    parser.add_argument("--recipe-json", help="JSON mapping of recipe keys (as the pipeline passes it)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--discard-checkpoint", action="store_true",
                        help="delete the checkpoint in --out (e.g. an unreadable one) and start the "
                             "run over")
    parser.add_argument("--replace-stale", action="store_true",
                        help="if --out holds records of a different config, delete them and start over "
                             "(the pipeline uses this after a config change)")
    parser.add_argument("--wait-for-lock", action="store_true",
                        help="if another trainer is writing --out, wait for it to finish (or die) "
                             "instead of refusing (the pipeline uses this: the trainer of a killed "
                             "Snakemake may still be running when the same command is rerun)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="live progress bar (default: when stderr is a terminal)")
    _add_recipe_flags(parser)


def _mapping(loaded, source: str) -> dict:
    if not isinstance(loaded, dict):
        raise ValueError(f"{source}: got a {type(loaded).__name__}; allowed: a mapping of recipe "
                         f"keys (see resnet-bench train --help)")
    return loaded


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    values: dict = {}
    if args.recipe_file:
        path = Path(args.recipe_file)
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "recipe file not found (or not a file)", str(path))
        try:
            loaded = yaml_load(path.read_text(), str(path))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{path}: not valid YAML/JSON ({getattr(exc, 'problem', None) or exc}"
                             f"{at})") from None
        values.update(_mapping({} if loaded is None else loaded, str(path)))
    if args.recipe_json:
        try:
            loaded = json_loads(args.recipe_json, "--recipe-json")
        except json.JSONDecodeError as exc:
            raise ValueError(f"--recipe-json is not valid JSON: {exc.msg}") from None
        values.update(_mapping(loaded, "--recipe-json"))
    for name in KNOBS:
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    return Recipe.from_dict(values)


def parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--data-option: got {pair!r}; allowed: KEY=VALUE")
        if key in options:
            raise ValueError(f"--data-option {key} is given twice; keep one")
        try:
            options[key] = yaml.safe_load(value)  # numbers and booleans as such
        except yaml.YAMLError:
            raise ValueError(f"data option {key}: got {value!r}; allowed: a number, true/false "
                             "or a string") from None
    return options


def run(args: argparse.Namespace) -> int:
    from resnet_bench.data.registry import canonical_kind
    from resnet_bench.models.spec import parse_model_name
    # Every value is checked (the knobs' and the dataset kinds' rules, which the pipeline
    # checks too) before a GPU slot is claimed, any data is loaded or any file is written.
    # Aliases (resnet56, imagefolder) are resolved here, so the records carry the canonical names.
    config = RunConfig(model=parse_model_name(args.model).name,
                       dataset=args.dataset if args.prepared else canonical_kind(args.dataset),
                       seed=args.seed,
                       recipe=recipe_from_args(args), data_dir=args.data_dir,
                       data_options=parse_options(args.data_option),
                       prepared=args.prepared, device=args.device)
    threads = None if args.threads is None else checks.threads(args.threads)
    from resnet_bench.train import distributed
    from resnet_bench.train.loop import check_out_dir
    from resnet_bench.train.rundir import held, out_path
    world = distributed.world_from_env()  # started by torchrun: one process of a run
    out = out_path(args.out)
    check_out_dir(out)
    # The run directory is held (or waited for) before a GPU slot is claimed, and until exit.
    with held(out, wait=args.wait_for_lock) if world.is_writer else nullcontext():
        return _run(args, config, threads, world)


def _run(args: argparse.Namespace, config: RunConfig, threads: int | None, world) -> int:
    from resnet_bench.infra.gpu import assigned_gpus, claim_for_this_process
    from resnet_bench.train import distributed
    # Before CUDA is touched: take a free GPU slot when several trainings share a machine
    # (not under torchrun: its processes use the devices it was given, cuda:LOCAL_RANK, and
    # record them: Slurm's, or those `resnet-bench launch` claimed for the run). A --device cpu
    # training takes none: a CPU study beside GPU jobs must not hold their slots.
    if world.distributed:
        claim = assigned_gpus()
    else:
        claim = None if config.device == "cpu" else claim_for_this_process()
    from resnet_bench.train.loop import pick_device, train
    # an absent CUDA device, a batch that does not split over the processes: one line, before
    # any data is loaded or any process waits for the others
    world.device(config.device) if world.distributed else pick_device(config.device)
    distributed.bn_mode(config.recipe, world)
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    with distributed.joined(world, config.device) as world:
        outcome = train(config, args.out, progress=args.progress,
                        replace_stale=args.replace_stale, gpu_claim=claim,
                        discard_checkpoint=args.discard_checkpoint, world=world)
    s = outcome.summary if world.is_writer else {"status": None}  # rank 0 reports the run
    if s["status"] == "completed":
        print(f"{config.model} seed {config.seed}: final train error {s['final_train_error_pct']:.2f}%, "
              f"test error {s['final_test_error_pct']:.2f}% after {s['iterations']} iterations "
              f"({s['images_per_s']:,.0f} img/s) -> {args.out}")
    elif s["status"] == "diverged":
        print(f"{config.model} seed {config.seed}: diverged at iteration {s['diverged_at']} -> {args.out}")
    if claim is not None:
        claim.release()
    sys.stdout.flush()
    return outcome.exit_status
