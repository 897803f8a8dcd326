"""The stages import only downward (docs/architecture.md). Each case imports modules in a fresh
interpreter and lists the forbidden packages they pulled in: the list must be empty."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = {
    "model names need no torch": (
        "import resnet_bench.models.spec; "
        "from resnet_bench.models import parse_model_name, REGISTRY, list_models; list_models(); "
        "assert parse_model_name('resnet56').name == 'v1-basic-56'",
        ("torch",)),
    "the run record needs no torch, pandas or numpy": (
        "import resnet_bench.record", ("torch", "pandas", "numpy")),
    "listing the pipeline's outputs needs no plotting and no torch": (
        "import resnet_bench.pipeline.outputs", ("matplotlib", "seaborn", "torch")),
    "tables and figures import neither torch nor the inside or train stages": (
        "import resnet_bench.tables.cli, resnet_bench.tables.depth, resnet_bench.plots.cli, "
        "resnet_bench.plots.inside",
        ("torch", "resnet_bench.inside", "resnet_bench.train")),
    "train's and bench's --help need no torch": (
        "import resnet_bench.train.cli, resnet_bench.bench.cli", ("torch",)),
}


@pytest.mark.parametrize("case", CASES)
def test_a_stage_imports_nothing_above_it(case):
    statement, forbidden = CASES[case]
    code = (f"import sys; {statement}; forbidden = {forbidden!r}; "
            "print(sorted(m for m in sys.modules "
            "if any(m == f or m.startswith(f + '.') for f in forbidden)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{case}: {out.stdout.strip()}"
