"""What the pipeline writes, by name: the Snakefile asks here instead of repeating file lists."""

from __future__ import annotations

import shlex
from typing import Any

from resnet_bench.tables.claims import CLAIMS, PAIRINGS
from resnet_bench.tables.build import TABLES
from resnet_bench.models import parse_model_name
from resnet_bench.plots.figures import FIGURE_CLAIMS, FIGURES

TABLE_FORMATS = ("csv", "md")
FIGURE_FORMATS = ("png", "pdf", "csv")  # the csv is the data behind the figure


def table_files(out: str) -> list[str]:
    return [f"{out}/tables/{t}.{ext}" for t in TABLES for ext in TABLE_FORMATS]


def table_caption(path: str) -> str:
    """Report caption (workflow/report/<name>.rst) of a table file: claims has its own."""
    return "claims" if path.rsplit("/", 1)[-1].startswith("claims.") else "tables"


def figure_targets(runs) -> list[tuple[str, str]]:
    """(dataset, recipe) pairs of the grid: each gets its own set of figures."""
    return sorted({(r.dataset, r.recipe) for r in runs})


def figure_names(runs) -> list[str]:
    """The figures this grid draws: every figure, except a V2 ablation figure (Fig. 3, Fig. 6)
    when the grid has none of the variants its claim pairs (the claims table decides)."""
    specs = {s.name: s for s in (parse_model_name(r.model) for r in runs)}
    by_id = {c.id: c for c in CLAIMS}
    return [fig for fig in FIGURES if fig not in FIGURE_CLAIMS
            or not isinstance(PAIRINGS[by_id[FIGURE_CLAIMS[fig]].pairing](specs), str)]


def figure_files(out: str, runs) -> list[str]:
    return [f"{out}/figures/{ds}/{recipe}/{fig}.{ext}" for ds, recipe in figure_targets(runs)
            for fig in figure_names(runs) for ext in FIGURE_FORMATS]


# analysis key (config) -> output stems of its `resnet-bench analyze` subcommand
ANALYSES = {
    "layer_responses": ["layer_responses"],
    "gradient_flow": ["gradient_flow"],
    "identity_path": ["identity_path", "identity_path_maps"],
    "depth_challenge": ["depth_challenge"],
}
ANALYSIS_FORMATS = ("csv", "png", "pdf")


def analysis_outputs(out: str, key: str) -> list[str]:
    return [f"{out}/analysis/{stem}.{ext}" for stem in ANALYSES[key] for ext in ANALYSIS_FORMATS]


def analysis_files(out: str, config: dict[str, Any]) -> list[str]:
    return [f for key in config.get("analysis", {}) for f in analysis_outputs(out, key)]


def prepare_args(spec: dict[str, Any]) -> str:
    """Command-line arguments of `resnet-bench data prepare` for one `datasets:` entry."""
    args = ["--dataset", spec["kind"]]
    if spec.get("root"):
        args += ["--root", spec["root"]]
    for key, value in sorted((spec.get("options") or {}).items()):
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False and value is not None:
            args += [flag, str(value)]
    return " ".join(shlex.quote(a) for a in args)
