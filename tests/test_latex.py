"""Every table also as LaTeX (booktabs, pandas' Styler.to_latex), for a paper to \\input."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from resnet_bench.cli import main as cli_main
from resnet_bench.pipeline.outputs import table_files
from resnet_bench.schema import TABLES, read_table
from resnet_bench.tables.latex import display, to_latex

sys.path.insert(0, str(Path(__file__).parent))
from records import write_grid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _rows(tex: str) -> list[list[str]]:
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [[c.strip() for c in line.removesuffix("\\\\").split(" & ")]
            for line in body.strip().splitlines()]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("latex")
    write_grid(root / "runs", families=("plain", "v1"), depths=(8, 20), seeds=(0, 1, 2),
               recipe="my_recipe")
    assert cli_main(["aggregate", "--runs", str(root / "runs"), "--out", str(root / "t")]) == 0
    return root / "t"


def test_every_table_is_written_as_booktabs_latex(tables):
    assert all(f.endswith((".csv", ".md", ".tex")) for f in table_files("x"))
    for name in TABLES:
        tex = (tables / f"{name}.tex").read_text()
        assert tex.startswith("\\begin{table}[htbp]") and tex.rstrip().endswith("\\end{table}")
        assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
        assert f"\\label{{tab:{name}}}" in tex
        shown = display(name, read_table(tables, name))
        rows = _rows(tex)
        assert len(rows) == max(1, len(shown)) and all(len(r) == shown.shape[1] for r in rows)
        if shown.empty:
            assert rows[0][0] == "(no rows)"
        # underscores (recipe, metric and model names) and % are escaped for LaTeX
        assert not re.search(r"(?<!\\)[_%]", tex.split("\\midrule", 1)[1]), name


def test_latex_cells_are_the_csv_values(tables):
    claims = read_table(tables, "claims")
    rows = _rows((tables / "claims.tex").read_text())
    header = display("claims", claims).columns.tolist()
    for (_, r), cells in zip(claims.iterrows(), rows):
        cell = dict(zip(header, cells))
        assert cell["verdict"] == r["verdict"] and cell["recipe"] == "my\\_recipe"
        p = r["p_value"]
        assert cell["p_value"] == ("--" if pd.isna(p) else f"{p:.2g}")
        if r["lower_model"]:
            assert cell["lower"].startswith(f"{r['lower_mean']:.2f}")
            assert cell["lower"].endswith(f"(n={int(r['lower_n'])})")
    summary = read_table(tables, "summary")
    cells = _rows((tables / "summary.tex").read_text())[0]
    first = summary.iloc[0]
    assert f"{first['test_error_mean']:.2f} ± {first['test_error_std']:.2f} (n=3)" in cells


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_the_tables_compile(tables, tmp_path):
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
                   + "".join(f"\\input{{{tables / n}.tex}}\n" for n in ("claims", "summary"))
                   + "\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]


@pytest.mark.parametrize("study", sorted(p.parent.parent.name for p in
                                         REPO.glob("results/published/*/tables/claims.csv")))
def test_published_studies_have_their_latex_tables(study):
    tables = REPO / "results/published" / study / "tables"
    for name in TABLES:
        assert (tables / f"{name}.tex").read_text() == to_latex(name, read_table(tables, name))
