"""`resnet-bench data fetch|prepare|info`: download a public dataset (verified), decode a dataset
once into a prepared file, or describe one."""

from __future__ import annotations

import argparse
import json

from .prepared import load_prepared, prepare_dataset
from resnet_bench.public_data import PUBLIC
from .registry import KIND_ALIASES, KINDS, canonical_kind


def _image_size(text: str) -> int | list[int]:
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x")
            return [int(h), int(w)]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None


def _sizes(text: str) -> list[int]:
    """224,256,384 or [224, 256, 384] (what the pipeline passes for a list option)."""
    try:
        values = [int(v) for v in text.strip("[] ").replace(",", " ").split()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected sizes such as 224,256,384; got {text!r}")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download a public dataset's pinned archive and verify its "
                                     "content (an existing copy is only verified)")
    f.add_argument("source", choices=sorted(PUBLIC), help="the public dataset " + "; ".join(
        f"{k}: {v.origin}" for k, v in sorted(PUBLIC.items())))
    f.add_argument("--out", help="where the archive goes (default: its place under data/, e.g. "
                                 f"{PUBLIC['cifar10-jpeg'].default_root})")
    f.add_argument("--url", help="download from here instead of the pinned URL (an internal "
                                 "mirror; file:// works); the content check is the same")
    p = sub.add_parser("prepare", help="load a dataset and write it as one prepared file")
    p.add_argument("--dataset", required=True, choices=KINDS + tuple(KIND_ALIASES), type=canonical_kind,
                   help="dataset kind (imagefolder = folder)")
    p.add_argument("--root", help="data directory or archive (cifar10/cifar100/folder; imagenet: "
                                  "a directory)")
    p.add_argument("--out", required=True, help="prepared file to write (atomically)")
    g = p.add_argument_group("synthetic")
    g.add_argument("--seed", type=int)
    g.add_argument("--train-size", type=int)
    g.add_argument("--test-size", type=int)
    g.add_argument("--difficulty", choices=("standard", "easy"),
                   help="easy: no clutter, for CPU smoke runs (default: standard)")
    g = p.add_argument_group("cifar10/cifar100")
    g.add_argument("--download", action="store_true", default=None,
                   help="download with torchvision (md5-checked) into --root")
    g.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                   help="skip the official md5 check (recorded; label says 'unofficial files')")
    g.add_argument("--cache-dir", help="keep the extracted archive here instead of a temp dir")
    g = p.add_argument_group("folder")
    g.add_argument("--image-size", type=_image_size, help="stretch images to N or HxW")
    g.add_argument("--channels", choices=("rgb", "l", "keep"))
    g.add_argument("--max-per-class", type=int, help="first K files per class and split")
    g.add_argument("--name", help="short dataset name (default: from the folder/archive)")
    g = p.add_argument_group("imagenet (writes an index of files and statistics; also "
                             "--max-per-class, --name, --label)")
    g.add_argument("--resize-min", type=int, help="scale augmentation: shortest shorter side [256]")
    g.add_argument("--resize-max", type=int, help="scale augmentation: longest shorter side [480]")
    g.add_argument("--crop", type=int, help="training and test crop [224]")
    g.add_argument("--test-resize", type=int, help="test: shorter side before the crop [256]")
    g.add_argument("--pca-std", type=float, help="std of AlexNet's PCA colour alphas (0: off) [0.1]")
    g.add_argument("--stats-images", type=int,
                   help="training images of the fixed statistics sample [10000]")
    g.add_argument("--final-eval", choices=("center", "ten_crop", "multiscale"),
                   help="protocol of the final test [center]")
    g.add_argument("--test-scales", type=_sizes,
                   help="multiscale test: shorter sides [224,256,384,480,640]")
    g.add_argument("--decode", choices=("cpu", "cuda"),
                   help="cuda: decode JPEGs on the GPU (nvJPEG; untested here) [cpu]")
    p.add_argument("--label", help="label used on figures (folder, cifar10/cifar100)")

    i = sub.add_parser("info", help="print sizes, classes, label and provenance of a prepared file")
    i.add_argument("file")
    i.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the checksum of the tensors")


_OPTION_ARGS = ("seed", "train_size", "test_size", "difficulty", "download", "verify", "cache_dir",
                "image_size", "channels", "max_per_class", "name", "label", "resize_min",
                "resize_max", "crop", "test_resize", "pca_std", "stats_images", "final_eval",
                "test_scales", "decode")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        from .fetch import fetch
        fetch(args.source, args.out, args.url)
        return 0
    if args.data_command == "prepare":
        options = {k: getattr(args, k) for k in _OPTION_ARGS if getattr(args, k) is not None}
        from resnet_bench.validation import check_data_source
        check_data_source(args.dataset, args.root, root_key="--root")
        ds = prepare_dataset(args.dataset, args.root, args.out, **options)
        print(f"wrote {args.out}: {ds.summary()}")
        return 0
    ds = load_prepared(args.file, verify=args.verify)
    if getattr(ds, "streaming", False):
        print(ds.summary())
        print(f"label:   {ds.label}")
        print(f"train:   {len(ds.train_y)} images, per class "
              f"{ds.train_y.bincount(minlength=ds.num_classes).tolist()}")
        print(f"classes: {', '.join(ds.classes)}")
        print("meta:    " + json.dumps(ds.meta, indent=2, sort_keys=True).replace("\n", "\n         "))
        return 0
    counts = ds.train_y.bincount(minlength=ds.num_classes).tolist()
    print(ds.summary())
    print(f"label:   {ds.label}")
    print(f"train:   {len(ds.train_y)} images, per class {counts}")
    print(f"test:    {len(ds.test_y)} images")
    print(f"classes: {', '.join(ds.classes)}")
    print("meta:    " + json.dumps(ds.meta, indent=2, sort_keys=True).replace("\n", "\n         "))
    return 0
