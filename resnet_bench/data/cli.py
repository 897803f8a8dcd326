"""`resnet-bench data fetch|prepare|info`: download a public dataset (verified), decode a dataset
once into a prepared file, or describe one."""

from __future__ import annotations

import argparse
import json

from resnet_bench.infra.checks import flag
from resnet_bench.public_data import PUBLIC

from .prepared import load_prepared
from .registry import canonical_kind, kinds, parse_source, prepare, schema_kinds


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
    p.add_argument("--dataset", required=True, choices=schema_kinds(), type=canonical_kind,
                   help="dataset kind: " + "; ".join(
                       f"{k.name}{''.join(f' (= {a})' for a in k.aliases)}: {k.help}"
                       for k in kinds().values()))
    p.add_argument("--root", help="data directory or archive (the kinds that read files)")
    p.add_argument("--out", required=True, help="prepared file to write (atomically)")
    _add_option_flags(p)

    i = sub.add_parser("info", help="print sizes, classes, label and provenance of a prepared file")
    i.add_argument("file")
    i.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the checksum of the tensors")


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per dataset option (--train-size for train_size), under the first kind that
    declares it; a later kind sharing it names it in its own group. The first declaration's rule
    gives the flag's type; the chosen kind's rule checks the value."""
    added: set[str] = set()
    for kind in kinds().values():
        if not kind.options:
            continue
        shared = [flag(o.name) for o in kind.options if o.name in added]
        group = parser.add_argument_group(
            kind.name, f"also {', '.join(shared)} (above)" if shared else None)
        for o in kind.options:
            if o.name in added:
                continue
            default = kind.defaults[o.name]
            shown = "" if default is None else f" [{_shown(default)}]"
            group.add_argument(flag(o.name), dest=o.name, default=None,
                               help=f"{o.help}{shown}", **o.rule.cli())
            added.add(o.name)


def _shown(default) -> str:
    return ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        from .fetch import fetch
        fetch(args.source, args.out, args.url)
        return 0
    if args.data_command == "prepare":
        names = dict.fromkeys(o.name for kind in kinds().values() for o in kind.options)
        options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        ds = prepare(parse_source(args.dataset, args.root, options=options, root_key="--root"),
                     args.out)
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
