"""The names and columns the stages agree on: tables, figures and inside-the-network outputs.

The tables stage (`resnet_bench.tables`) writes the tables named here, the inside stage
(`resnet_bench.inside`) writes the analysis CSVs named here, the figure stage
(`resnet_bench.plots`) reads both, and the pipeline (`resnet_bench.pipeline.outputs`) lists their
files. It sits below all of them and imports only the torch-free model-name grammar and family
declarations (`resnet_bench.models.spec`, `.families`), the run record (`resnet_bench.record`)
and pandas -- neither torch nor matplotlib -- so a stage learns what another writes without
importing that stage.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resnet_bench.infra import atomic
from resnet_bench.models.families import FAMILY_ORDER, Role, family_for
from resnet_bench.models.spec import BLOCK_ORDER, base_name
from resnet_bench.record import TRAIN_COLUMNS

CSV_FLOAT_FORMAT = "%.10g"   # every table and figure CSV

# ---------------------------------------------------------------------------------------------
# the networks' order in every table and figure: the papers' (plain, original, pre-activation),
# the order the families are declared in (resnet_bench.models.families)

def is_default_variant(runs: pd.DataFrame) -> pd.Series:
    """True where a run's model is its family/block/depth's default CIFAR net (no name suffix;
    an ImageNet net, `imagenet-...`, is never one: the CIFAR figures leave them out)."""
    base = [base_name(f, b, d) for f, b, d in zip(runs["family"], runs["block"], runs["depth"])]
    return runs["model"] == pd.Series(base, index=runs.index)


def sort_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Order rows the way the papers read: family, block, depth, variant, dataset, recipe, seed."""
    keys = [k for k in ("family", "block", "depth", "variant", "dataset", "recipe", "seed",
                        "run_id") if k in df.columns]

    def order(col: pd.Series) -> pd.Series:
        if col.name == "family":
            return col.map(FAMILY_ORDER).fillna(len(FAMILY_ORDER))
        if col.name == "block":
            return col.map(BLOCK_ORDER).fillna(len(BLOCK_ORDER))
        return col

    return df.sort_values(keys, key=order, kind="stable").reset_index(drop=True)


def sort_table(df: pd.DataFrame, within: str = "layer") -> pd.DataFrame:
    """Rows of a per-run analysis table in the papers' reading order: family, depth, variant,
    seed, run, then `within`."""
    keys = [k for k in ("family", "block", "depth", "variant", "seed", "run_id", within)
            if k in df.columns]
    return df.sort_values(keys, key=lambda c: c.map(FAMILY_ORDER) if c.name == "family" else c,
                          kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# the metrics the claims, the fidelity table and the figures compare: each one's final value in
# the runs table and its course in the curves table

@dataclass(frozen=True)
class Metric:
    final: str         # the runs-table column of its final value
    split: str         # its curve: the curves table's split (train: the train log's rows)
    column: str        # ... and column
    words: str         # as a figure's legend or panel says it
    unit: str = ""

    @property
    def heading(self) -> str:
        """As a table says it: 'training error (%)'."""
        return f"{self.words} ({self.unit})" if self.unit else self.words


METRICS = {
    "train_error": Metric("final_train_error_pct", "train", "error_pct", "training error", "%"),
    "train_loss": Metric("final_train_loss", "train", "loss", "training loss"),
    "test_error": Metric("final_test_error_pct", "test", "error_pct", "test error", "%"),
}


# ---------------------------------------------------------------------------------------------
# the tables (`resnet-bench aggregate`): <name>.csv and <name>.md

ID_COLUMNS = ["run_id", "model", "family", "block", "depth", "variant", "dataset",
              "dataset_label", "seed", "recipe"]
# curves: every run's train log (iteration, epoch, lr, loss, error_pct) and eval log, tidy
CURVE_COLUMNS = ID_COLUMNS + ["split", *TRAIN_COLUMNS]  # the train log's columns, per split
RUN_COLUMNS = ID_COLUMNS + [
    "status", "iterations", "planned_iterations", "batch_size",
    "final_train_loss", "final_train_error_pct", "final_test_loss", "final_test_error_pct",
    "final_test_top5_error_pct", "final_val_error_pct",
    "wall_time_s", "train_time_s", "compile_time_s", "images_per_s", "tflops_per_s",
    "params", "macs", "activation_checkpointing", "resumed", "device", "path",
    # the arithmetic, and the rest of the recipe: equal hashes are the fidelity table's pairs
    # (the second hash leaves out the schedule's length too: an fp32 run of its first iterations)
    "precision", "recipe_hash_except_precision", "recipe_hash_except_precision_length",
    # duplicates never count as seeds: the run identity hash, the train log's sha256, and the
    # run_id of the run this one repeats (same identity and seed, or a byte-identical log)
    "identity", "train_log_sha256", "duplicate_of",
    # the results root the record was read from (aggregate --roots: another machine's runs)
    "root",
]
GROUP_KEYS = ["family", "block", "depth", "variant", "dataset", "recipe"]
STATS = ("mean", "std", "median", "min", "max")
SUMMARY_COLUMNS = GROUP_KEYS + ["model", "dataset_label", "n", "n_completed", "n_diverged"] + [
    f"{q}_{s}" for q in ("test_error", "train_error") for s in STATS
] + ["test_loss_mean", "train_loss_mean", "test_error_best_mean_std",
     "test_error_median_mean_std", "train_error_median_mean_std", "params", "macs",
     "images_per_s_mean"]
COMPARISON_COLUMNS = [
    "paper", "table", "paper_model", "paper_variant", "paper_dataset", "quantity", "statistic",
    "relation", "paper_value", "paper_std", "paper_n", "paper_text",
    "model", "family", "block", "depth", "variant", "dataset", "dataset_label", "recipe",
    "n", "reproduced", "reproduced_std", "diff", "within_paper_spread", "rule", "comparable",
    "note",
]
CLAIM_COLUMNS = [
    "claim", "paper", "where", "claim_text", "dataset", "dataset_label", "recipe", "metric",
    "lower_model", "higher_model", "paper_lower", "paper_higher",
    "lower_mean", "lower_std", "lower_n", "lower_n_diverged",
    "higher_mean", "higher_std", "higher_n", "higher_n_diverged",
    "source", "diff", "diff_ci_low", "diff_ci_high", "diff_boot_low", "diff_boot_high",
    "hedges_g", "t_statistic", "p_value", "family_size", "p_holm", "p_holm_opposite", "alpha",
    "verdict", "seeds_needed", "reason",
]
# fidelity: a reduced-precision recipe's seeds against an fp32 repeat (resnet_bench.tables.fidelity)
FIDELITY_COLUMNS = [
    "dataset", "dataset_label", "model", "metric", "window", "reference_recipe", "recipe",
    "precision",
    "reference_values", "reference_n", "mean", "std", "n", "band_low", "band_high",
    "max_abs_diff", "verdict", "reason",
]
# Columns added after tables were published: read back as "" from a table written before them.
LATER_COLUMNS = {"runs": ("root", "recipe_hash_except_precision_length"),
                 "fidelity": ("window",)}
TABLE_COLUMNS = {"curves": CURVE_COLUMNS, "runs": RUN_COLUMNS, "summary": SUMMARY_COLUMNS,
                 "paper_comparison": COMPARISON_COLUMNS, "claims": CLAIM_COLUMNS,
                 "fidelity": FIDELITY_COLUMNS}
TABLES = tuple(TABLE_COLUMNS)
# read back as strings ("" for empty), not NaN: an empty variant is the default unit
STRING_COLUMNS = ("run_id", "model", "family", "block", "variant", "dataset", "dataset_label",
                  "recipe", "status", "split", "device", "path", "lower_model", "higher_model",
                  "paper_lower", "paper_higher", "reason", "precision",
                  "recipe_hash_except_precision", "recipe_hash_except_precision_length",
                  "window", "reference_recipe", "reference_values",
                  "verdict", "identity", "train_log_sha256", "duplicate_of", "source",
                  "seeds_needed", "root")


# Columns of the tables the figures read that must hold numbers (empty allowed: NaN, e.g. a
# diverged run's final error); a word or an infinity there is refused with its row named.
NUMERIC_COLUMNS = {
    "runs": ["depth", "seed", "iterations", "planned_iterations", "batch_size",
             "final_train_loss", "final_train_error_pct", "final_test_loss",
             "final_test_error_pct", "final_test_top5_error_pct", "final_val_error_pct",
             "wall_time_s", "train_time_s", "compile_time_s", "images_per_s", "tflops_per_s",
             "params", "macs", "resumed"],
    "curves": ["depth", "seed", "iteration", "epoch", "lr", "loss", "error_pct"],
}


def read_table(tables_dir: str | os.PathLike, name: str) -> pd.DataFrame:
    """Read one table written by `resnet-bench aggregate`, checking its columns."""
    path = Path(tables_dir) / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run `resnet-bench aggregate` first)")
    df = _read_csv(path, STRING_COLUMNS)
    for col in LATER_COLUMNS.get(name, ()):
        if col not in df.columns:
            df[col] = ""
    missing = [c for c in TABLE_COLUMNS.get(name, ()) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in NUMERIC_COLUMNS.get(name, ()):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = (values.isna() & df[col].notna()) | values.isin([math.inf, -math.inf])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{path}: column {col} holds {df[col].iloc[row]!r} on data row "
                             f"{row + 1} (line {row + 2}); allowed: a finite number or empty")
        df[col] = values
    return df


def _read_csv(path: Path, strings) -> pd.DataFrame:
    try:
        # as strings from the start: "21.50" must not come back as 21.5
        df = pd.read_csv(path, low_memory=False, dtype=dict.fromkeys(strings, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable CSV ({str(exc).splitlines()[0]})") from None
    for col in strings:
        if col in df.columns:
            df[col] = df[col].astype(object).fillna("").astype(str)
    return df


# ---------------------------------------------------------------------------------------------
# the figures (`resnet-bench plot`): <name>.png, .pdf and .csv per (dataset, recipe)

# The papers' schedules, per network stem: CIFAR 64k iterations of batch 128 (V1 Sec. 4.2, V2
# Sec. 4), ImageNet 60e4 iterations of batch 256 (V1 Sec. 3.4); figure titles scale to them
PAPER_ITERATIONS = {"cifar": 64_000, "imagenet": 600_000}

@dataclass(frozen=True)
class Figure:
    """One figure of `resnet-bench plot`: `<name>.png`, `.pdf` and `.csv` per (dataset, recipe).

    Drawn by the function of the same name in resnet_bench.plots.figures; its report caption is
    workflow/report/<name>.rst (Snakemake's report takes a caption file per output).
    `claim`: the claim (resnet_bench.tables.claims.CLAIMS) whose pairs the figure draws; a grid
    draws it only when the claims table can pair something for it. `nets`: the networks it
    draws, for a figure of ImageNet nets, which a grid draws when it has any of them; every
    other figure draws CIFAR-stem nets and is drawn for grids with those."""

    name: str
    claim: str = ""
    nets: tuple[str, ...] = ()


# V1 Fig. 4 (ImageNet): panel -> its networks, V1 Table 2's (option A)
V1_FIG4_PANELS = {
    "left": tuple(base_name(family_for(Role.PLAIN).name, "basic", d, "imagenet") for d in (18, 34)),
    "right": tuple(base_name(family_for(Role.ORIGINAL).name, "basic", d, "imagenet")
                   for d in (18, 34)),
}

FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("v1_fig1"),
    Figure("v1_fig4", nets=tuple(m for nets in V1_FIG4_PANELS.values() for m in nets)),
    Figure("v1_fig6"),
    Figure("v1_fig6_left"),
    Figure("v1_fig6_middle"),
    Figure("v1_fig6_right"),
    Figure("v2_fig1"),
    Figure("v2_fig3", claim="v2-table1-shortcuts"),
    Figure("v2_fig6", claim="v2-table2-units"),
    Figure("degradation"),
)}


# ---------------------------------------------------------------------------------------------
# inside the networks (`resnet-bench analyze`): <stem>.csv written by the analysis, <stem>.png
# and .pdf drawn from it by resnet_bench.plots.inside

# subcommand -> its default output stem, which is also its key under `analysis:` in the config
ANALYSES = {"responses": "layer_responses", "gradients": "gradient_flow",
            "identity": "identity_path", "depth": "depth_challenge"}
MAPS_SUFFIX = "_maps"   # `identity` also writes <stem>_maps: one unit's feature maps
MAP_PLANES = ("input", "shortcut", "residual", "output")
MAP_COLUMNS = ["run_id", "label", "unit", "unit_name", "image", "map", "channel", "row", "col",
               "value"]
ANALYSIS_STRING_COLUMNS = ("run_id", "model", "label", "family", "block", "variant", "source",
                           "quantity", "name", "unit_name", "map", "dataset", "recipe", "status")


def analysis_stems(analysis: str, name: str | None = None) -> list[str]:
    """The CSV stems one `resnet-bench analyze` subcommand writes (default name: `ANALYSES`)."""
    stem = name or ANALYSES[analysis]
    return [stem, stem + MAPS_SUFFIX] if analysis == "identity" else [stem]


def write_csv(df: pd.DataFrame, out_dir: str | os.PathLike, stem: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.csv"
    with atomic.replacing(path) as tmp:
        df.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    return path


def read_analysis(out_dir: str | os.PathLike, stem: str) -> pd.DataFrame:
    """An analysis CSV written by `resnet-bench analyze` (string columns as strings)."""
    path = Path(out_dir) / f"{stem}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run `resnet-bench analyze` first)")
    return _read_csv(path, ANALYSIS_STRING_COLUMNS)
