"""What the pipeline writes, by name: the Snakefile asks here instead of repeating file lists.

The names come from `resnet_bench.schema`; building the job list imports neither the plotting
stack nor torch (tests/test_pipeline.py checks).
"""

from __future__ import annotations

import shlex
from typing import Any

from resnet_bench.models.spec import parse_model_name
from resnet_bench.pipeline import grid
from resnet_bench.schema import ANALYSES, FIGURES, TABLES, analysis_stems
from resnet_bench.tables.claims import CLAIMS, PAIRINGS

TABLE_FORMATS = ("csv", "md", "tex")  # tex: booktabs, for a paper to \input
FIGURE_FORMATS = ("png", "pdf", "csv")  # the csv is the data behind the figure


def table_files(out: str) -> list[str]:
    return [f"{out}/tables/{t}.{ext}" for t in TABLES for ext in TABLE_FORMATS]


def table_caption(path: str) -> str:
    """Report caption (workflow/report/<name>.rst) of a table file: claims and fidelity have
    their own (their decision rules)."""
    name = path.rsplit("/", 1)[-1].split(".")[0]
    return name if name in ("claims", "fidelity") else "tables"


def figure_targets(runs) -> list[tuple[str, str]]:
    """(dataset, recipe) pairs of the grid: each gets its own set of figures."""
    return sorted({(r.dataset, r.recipe) for r in runs})


def figure_names(runs) -> list[str]:
    """The figures this grid draws: V1 Fig. 4 when it has any of that figure's ImageNet nets;
    the CIFAR figures when it has CIFAR-stem nets, except a V2 ablation figure (Fig. 3,
    Fig. 6) when the grid has none of the variants its claim pairs (the claims table decides)."""
    specs = {s.name: s for s in (parse_model_name(r.model) for r in runs)}
    by_id = {c.id: c for c in CLAIMS}
    cifar = any(s.stem == "cifar" for s in specs.values())

    def drawn(fig) -> bool:
        if fig.nets:
            return bool(set(fig.nets) & set(specs))
        return cifar and (not fig.claim or not isinstance(
            PAIRINGS[by_id[fig.claim].pairing](specs), str))

    return [fig.name for fig in FIGURES.values() if drawn(fig)]


def figure_files(out: str, runs) -> list[str]:
    return [f"{out}/figures/{ds}/{recipe}/{fig}.{ext}" for ds, recipe in figure_targets(runs)
            for fig in figure_names(runs) for ext in FIGURE_FORMATS]


# analysis key (config: the subcommand's default output stem) -> `resnet-bench analyze` subcommand
ANALYSIS_COMMANDS = {stem: command for command, stem in ANALYSES.items()}
ANALYSIS_FORMATS = ("csv", "png", "pdf")


def analysis_outputs(out: str, key: str) -> list[str]:
    return [f"{out}/analysis/{stem}.{ext}" for stem in analysis_stems(ANALYSIS_COMMANDS[key])
            for ext in ANALYSIS_FORMATS]


def analysis_files(out: str, config: dict[str, Any]) -> list[str]:
    return [f for key in config.get("analysis", {}) for f in analysis_outputs(out, key)]


# `analysis:` options passed on to `resnet-bench analyze` when set (their defaults: the CLI's)
ANALYSIS_OPTIONS = {"max_images": "--max-images", "batch_size": "--batch-size"}


def analysis_inputs(config: dict[str, Any], key: str) -> list[str]:
    """What one analysis reads: its runs' summary.json; the depth challenge also the runs and
    curves tables, the gradients at initialisation the prepared dataset of their fixed batch."""
    results, exp = config["results"], config["experiment"]
    runs = grid.analysis_runs(config, key)
    files = [f"{r.path(results, exp)}/summary.json" for r in runs]
    if runs and ANALYSIS_COMMANDS[key] == "depth":
        files += [f"{results}/{exp}/tables/{t}.csv" for t in ("runs", "curves")]
    if runs and ANALYSIS_COMMANDS[key] == "gradients":
        files.append(grid.prepared_path(results, runs[0].dataset))
    return files


def analysis_args(config: dict[str, Any], key: str) -> str:
    """Command-line arguments of `resnet-bench analyze` for the `analysis:` entry `key` ("" when
    the config has none). The runs of an analysis share one dataset (`grid.analysis_runs`); the
    gradients at initialisation take their fixed batch from it."""
    if key not in config.get("analysis", {}):
        return ""
    results, exp = config["results"], config["experiment"]
    command = ANALYSIS_COMMANDS[key]
    runs = grid.analysis_runs(config, key)
    args = [command, "--runs", *(r.path(results, exp) for r in runs),
            "--out", f"{results}/{exp}/analysis"]
    if command == "depth":
        args += ["--tables", f"{results}/{exp}/tables"]
    else:
        args += ["--device", config["device"]]
    if command == "gradients":
        args += ["--models", *sorted({r.model for r in runs}),
                 "--prepared", grid.prepared_path(results, runs[0].dataset)]
    for option, flag in ANALYSIS_OPTIONS.items():
        if option in config["analysis"][key]:
            args += [flag, str(config["analysis"][key][option])]
    return " ".join(shlex.quote(a) for a in args)


def prepare_args(spec: dict[str, Any]) -> str:
    """Command-line arguments of `resnet-bench data prepare` for one `datasets:` entry: its
    options as the kind's flags that parse back to them (grid.validate refuses a value that no
    flag can carry)."""
    from resnet_bench.data.registry import lookup  # imports torch: not when outputs are listed
    kind = lookup(spec["kind"], "kind")
    args = ["--dataset", spec["kind"]]
    if spec.get("root"):
        args += ["--root", spec["root"]]
    args += kind.prepare_args(kind.check_options(spec.get("options") or {}))
    return " ".join(shlex.quote(a) for a in args)


def prepare_inputs(spec: dict[str, Any]) -> list[str]:
    """Files a prepare_data job waits for: a fetched dataset's root (grid.fetch_targets)."""
    return [spec["root"]] if spec.get("source") else []
