"""`resnet-bench bench` command line: the options, their checks, and the choice of job."""

from __future__ import annotations

import argparse

from resnet_bench.infra import checks
from resnet_bench.infra.args import add_source_args
from resnet_bench.bench.baseline import BASELINE_WORKERS
from resnet_bench.train.recipe import PRECISIONS

DEFAULT_MODEL = "v1-basic-20"
FIDELITY_DEFAULT_MODEL = "v1-basic-8"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help=f"network to time; repeat for several (default: {DEFAULT_MODEL}; "
                             f"--fidelity: {FIDELITY_DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size [128, the paper's]")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [auto]")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="project path: fp32 or bf16 autocast [fp32]; the baseline is always fp32")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="project path: torch.compile the model (compile time reported apart)")
    parser.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune",
                                                   "max-autotune-no-cudagraphs"),
                        help="torch.compile mode (needs --compile) [torch's default]")
    parser.add_argument("--compile-backend", choices=("inductor", "aot_eager"), default="inductor",
                        help="torch.compile backend (needs --compile); aot_eager: the same graphs "
                             "without generated kernels, to rehearse on a CPU [inductor]")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                        help="project path: channels_last memory format")
    parser.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction,
                        default=False,
                        help="project path: recompute unit activations in backward (less memory, "
                             "more compute; how the 1001/1202-layer nets fit)")
    parser.add_argument("--fused-sgd", action="store_true",
                        help="project path: torch.optim.SGD(fused=True) -- a what-if lever the "
                             "trainer does not use yet (recorded in the output)")
    parser.add_argument("--iters", type=int,
                        help="timed iterations per path [cuda: 200, cpu: 20]")
    parser.add_argument("--warmup-iters", type=int,
                        help="untimed iterations before timing, the first timed apart [cuda: 20, cpu: 3]")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each path this many times, alternating project/baseline, and "
                             "pool the timed iterations (steadier ratio on a busy machine) [1]")
    add_source_args(parser, "a dataset kind held in memory (`resnet-bench data prepare --help` "
                            "lists them and their options)")
    parser.add_argument("--train-size", type=int,
                        help="synthetic only: number of training images [the dataset's default]")
    parser.add_argument("--baseline-workers", type=int, default=BASELINE_WORKERS,
                        help=f"baseline DataLoader num_workers [{BASELINE_WORKERS}, as typical "
                             "CIFAR scripts]")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="time only the project path (no ratio)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch [torch's choice]")
    parser.add_argument("--seed", type=int, default=0, help="model init and batch order seed [0]")
    parser.add_argument("--csv", metavar="OUT", help="write one row per (model, path) here")
    fid = parser.add_argument_group("fidelity check (--fidelity)")
    fid.add_argument("--fidelity", action="store_true",
                     help="instead of timing: train one small net with fp32 eager vs bf16 (and "
                          "bf16 + compile + channels_last on GPU) over several seeds and compare "
                          "final training loss/error with the seed-to-seed spread")
    fid.add_argument("--fidelity-iters", type=int,
                     help="training iterations per fidelity run [cuda: 2000, cpu: 60]")
    fid.add_argument("--seeds", type=int, nargs="+",
                     help="fidelity seeds [cuda: 0 1 2 3 4, cpu: 0 1]")
    st = parser.add_argument_group("streaming input pipeline (--stream)")
    st.add_argument("--stream", action="store_true",
                    help="instead of timing networks: images/s of the streaming ImageNet loader "
                         "against torchvision ImageFolder + DataLoader, same transforms (no model)")
    st.add_argument("--stream-root", metavar="DIR",
                    help="an ImageFolder tree train/<class>/*, val/<class>/* [generate 500x375 "
                         "q90 JPEGs in a temporary folder]")
    st.add_argument("--stream-images", type=int, default=384,
                    help="training JPEGs to generate [384]")
    st.add_argument("--stream-batches", type=int, default=4,
                    help="timed batches per path, after one untimed [4]")
    st.add_argument("--stream-workers", type=int, nargs="+", default=[1, 2],
                    help="decoding worker counts to compare [1 2]")


def run(args: argparse.Namespace) -> int:
    import torch

    if not args.device.startswith("cpu"):
        # Before CUDA is touched: time on a GPU slot of our own when trainings share the machine.
        from resnet_bench.infra.gpu import claim_for_this_process
        claim_for_this_process()
    from resnet_bench.train.loop import pick_device
    device = pick_device(args.device)
    _validate(args, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stream:
        from resnet_bench.bench.stream import run_stream_bench
        return run_stream_bench(args, device)
    if args.fidelity:
        from resnet_bench.bench.fidelity import run_fidelity
        return run_fidelity(args, device)
    from resnet_bench.bench.timing import run_timing
    return run_timing(args, device)


def _validate(args: argparse.Namespace, device) -> None:
    from resnet_bench.models import parse_model_name
    cuda = device.type == "cuda"
    if args.iters is None:
        args.iters = 200 if cuda else 20
    if args.warmup_iters is None:
        args.warmup_iters = 20 if cuda else 3
    if args.fidelity_iters is None:
        args.fidelity_iters = 2000 if cuda else 60
    if args.seeds is None:
        args.seeds = [0, 1, 2, 3, 4] if cuda else [0, 1]
    if not args.models:
        args.models = [FIDELITY_DEFAULT_MODEL if args.fidelity else DEFAULT_MODEL]
    for key, low in (("batch_size", 1), ("iters", 1), ("rounds", 1), ("warmup_iters", 1), ("fidelity_iters", 1),
                     ("baseline_workers", 0)):
        if getattr(args, key) < low:
            raise ValueError(f"--{key.replace('_', '-')} must be >= {low}, got {getattr(args, key)}")
    if args.threads is not None:
        checks.threads(args.threads)
    if args.train_size is not None:
        if args.prepared or args.dataset != "synthetic":
            raise ValueError("--train-size applies to the synthetic dataset only")
        if args.train_size < 1:
            raise ValueError(f"--train-size must be >= 1, got {args.train_size}")
    for key in ("stream_images", "stream_batches"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if any(w < 0 for w in args.stream_workers):
        raise ValueError(f"--stream-workers must be >= 0, got {args.stream_workers}")
    if args.compile_mode and not args.compile:
        raise ValueError("--compile-mode needs --compile")
    if args.compile_backend != "inductor" and not args.compile:
        raise ValueError("--compile-backend needs --compile")
    if args.compile_backend != "inductor" and args.compile_mode not in (None, "default"):
        raise ValueError(f"--compile-mode {args.compile_mode} needs --compile-backend inductor")
    if args.fidelity and len(args.models) != 1:
        raise ValueError("--fidelity trains one network: give at most one --model")
    if args.fidelity and len(set(args.seeds)) < 2:
        raise ValueError("--fidelity needs at least two distinct --seeds for a seed-to-seed spread")
    for name in args.models:
        try:
            parse_model_name(name)
        except ValueError as exc:  # ModelNameError: one line listing the valid choices
            raise ValueError(f"--model {name}: {exc}") from None
