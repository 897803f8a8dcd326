"""Where the tests find the CIFAR-10 JPEG mirror (resnet_bench/public_data.py, `cifar10-jpeg`).

`$RESNET_BENCH_CIFAR_JPEG` names a copy (the archive or its extracted folder); without it, the
place `resnet-bench data fetch cifar10-jpeg` writes to in this checkout (data/cifar10-jpeg.tar.gz).
Tests that need it skip, saying so, when neither exists (docs/datasets.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnet_bench.public_data import PUBLIC

ENV = "RESNET_BENCH_CIFAR_JPEG"
REPO = Path(__file__).resolve().parents[1]


def mirror_path() -> Path | None:
    given = os.environ.get(ENV)
    path = Path(given) if given else REPO / PUBLIC["cifar10-jpeg"].default_root
    return path if path.exists() else None


def require_mirror() -> Path:
    path = mirror_path()
    if path is None:
        where = os.environ.get(ENV) or PUBLIC["cifar10-jpeg"].default_root
        pytest.skip(f"the CIFAR-10 JPEG mirror is absent ({where}); set ${ENV} to a copy or run "
                    "`resnet-bench data fetch cifar10-jpeg`")
    return path
