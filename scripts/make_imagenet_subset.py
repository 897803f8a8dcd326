#!/usr/bin/env python3
"""Make the 100-class ImageNet subset of config/imagenet_subset.yaml: an ImageFolder tree of
symlinks into an ILSVRC2012 tree, nothing copied.

    python scripts/make_imagenet_subset.py --source /data/ILSVRC2012 --out data/imagenet100
    python scripts/make_imagenet_subset.py --source ... --out ... --splits train val:test

The source holds `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the validation images sorted
into class folders, as torchvision's ImageFolder and the `imagenet` dataset kind read them; the
devkit's flat `val/` must be sorted first). The classes: the sorted wnids of `train/`, every
`--every`-th from `--offset` (default 10 and 0: classes 0, 10, ..., 990, i.e. 100 classes). Why
that rule: it is deterministic and needs no list shipped with the code, and since wnids sort by
WordNet offset, which groups related synsets, a stride samples every part of the hierarchy
(dogs, other animals, artefacts, food, scenes) in ImageNet's own proportions rather than one
neighbourhood of it. The chosen wnids are written to `<out>/classes.txt`.

`--splits` names the source splits to link, each `SRC` or `SRC:DEST` (`val:test` gives the
`test/` split the in-memory `folder` kind expects). Each `<out>/<DEST>/<wnid>/` is a folder of
symlinks to the absolute `<source>/<SRC>/<wnid>/*` files (links per file, not per folder, so
readers that do not follow linked folders, such as os.walk's default, see the images too);
running it again with the same arguments changes nothing, and any other existing entry is
refused. Bad input: one line naming the problem, exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class SubsetError(ValueError):
    """A source tree or output folder that cannot give the subset."""


def class_folders(split_dir: Path) -> list[str]:
    """The class folder names of one split, sorted (hidden entries ignored, as ImageFolder)."""
    if not split_dir.is_dir():
        raise SubsetError(f"{split_dir}: no such directory")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        files = any(p.is_file() for p in split_dir.iterdir())
        raise SubsetError(f"{split_dir}: no class folders" + (
            " (flat validation images: sort them into <wnid>/ folders first)" if files else ""))
    return names


def choose(classes: list[str], every: int, offset: int) -> list[str]:
    if every < 1 or not 0 <= offset < every:
        raise SubsetError(f"--every {every} --offset {offset}: need every >= 1 and "
                          "0 <= offset < every")
    return classes[offset::every]


def parse_splits(specs: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        src, _, dest = spec.partition(":")
        if not src or "/" in src or "/" in dest:
            raise SubsetError(f"--splits {spec!r}: expected SRC or SRC:DEST (folder names)")
        pairs.append((src, dest or src))
    if len({d for _, d in pairs}) != len(pairs):
        raise SubsetError(f"--splits {' '.join(specs)}: two splits share one output name")
    return pairs


def make_subset(source: Path, out: Path, every: int = 10, offset: int = 0,
                splits: list[str] = ("train", "val")) -> list[str]:
    """Link the chosen classes of each split into `out`; returns the chosen wnids."""
    source = source.resolve()
    pairs = parse_splits(list(splits))
    classes = class_folders(source / pairs[0][0])
    for src, _ in pairs[1:]:
        other = class_folders(source / src)
        if other != classes:
            missing = sorted(set(classes) ^ set(other))
            raise SubsetError(f"{source / src}: class folders differ from {source / pairs[0][0]} "
                              f"({len(missing)} not in both, e.g. {missing[0]})")
    chosen = choose(classes, every, offset)
    plan = [(out / dest / wnid / f.name, f) for src, dest in pairs for wnid in chosen
            for f in sorted((source / src / wnid).iterdir())
            if f.is_file() and not f.name.startswith(".")]
    for link, target in plan:   # check everything before writing anything
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            raise SubsetError(f"{link}: exists and is not a link to {target}; choose an empty --out")
    listing = out / "classes.txt"
    text = "".join(f"{w}\n" for w in chosen)
    if listing.exists() and listing.read_text() != text:
        raise SubsetError(f"{listing}: lists other classes; choose an empty --out")
    for link, target in plan:
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
    listing.write_text(text)
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, required=True, help="ILSVRC2012 tree with train/ and val/")
    ap.add_argument("--out", type=Path, required=True, help="folder for the subset (created)")
    ap.add_argument("--every", type=int, default=10, help="keep every k-th class (default 10)")
    ap.add_argument("--offset", type=int, default=0, help="first class kept (default 0)")
    ap.add_argument("--splits", nargs="+", default=["train", "val"],
                    help="source splits to link, SRC or SRC:DEST (default: train val)")
    args = ap.parse_args(argv)
    try:
        chosen = make_subset(args.source, args.out, args.every, args.offset, args.splits)
    except (SubsetError, OSError) as exc:
        print(f"make_imagenet_subset: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(chosen)} classes ({chosen[0]} ... {chosen[-1]}), "
          f"splits {' '.join(args.splits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
