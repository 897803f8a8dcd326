#!/bin/bash
# Publish a finished study: scripts/publish_study.sh EXPERIMENT CONFIG DEST [ANALYSIS...]
#   e.g. scripts/publish_study.sh v2-cpu-depth config/v2_cpu_depth.yaml results/published/v2-cpu-depth depth
# Copies the config, every run's records and provenance (not the weights or checkpoints) and
# Snakemake's per-job timings, then makes the tables, figures and the named table-only
# analyses from the copied records with this checkout's code: what is published is what the
# published records give. Refuses a study unless its runs are exactly the config's grid, each
# with a summary.json (a part-trained run has only a checkpoint, one never started no folder).
set -euo pipefail
[ $# -ge 3 ] || { echo "publish_study: error: usage: $0 EXPERIMENT CONFIG DEST [ANALYSIS...]" >&2; exit 2; }
exp=$1 config=$2 dest=$3; shift 3
src=results/$exp
[ -f "$config" ] || { echo "publish_study: error: config file '$config' does not exist" >&2; exit 2; }
python - "$config" "$exp" "$src/runs" <<'EOF'
import sys
from pathlib import Path

import yaml

from resnet_bench.pipeline.grid import GridError, expand

config_file, exp, runs = sys.argv[1:]
config = yaml.safe_load(Path(config_file).read_text())
def fail(message: str) -> None:
    sys.exit(f"publish_study: error: {message}")
if config.get("experiment", exp) != exp:
    fail(f"{config_file} is experiment {config['experiment']!r}, not {exp!r}")
try:
    grid = {Path(runs, r.dataset, r.recipe, r.model, f"seed{r.seed}") for r in expand(config)}
except GridError as exc:
    fail(f"{config_file}: {exc}")
found = {p.parent for p in Path(runs).glob("*/*/*/seed*/*.json")}
unfinished = sorted(str(d) for d in grid if not (d / "summary.json").is_file())
extra = sorted(str(d) for d in found - grid)
if unfinished:
    fail(f"{len(unfinished)} of {len(grid)} runs of the grid are not finished (no summary.json): "
         + " ".join(unfinished))
if extra:
    fail(f"runs that are not in {config_file}'s grid: " + " ".join(extra))
EOF
rm -rf "$dest" && mkdir -p "$dest"
cp "$config" "$dest/config.yaml"
cp -r "$src/runs" "$dest/runs" && find "$dest/runs" -name model.pt -delete
if [ -d "$src/benchmarks" ]; then cp -r "$src/benchmarks" "$dest/benchmarks"; fi
resnet-bench aggregate --runs "$dest/runs" --out "$dest/tables"
resnet-bench plot --tables "$dest/tables" --out "$dest/figures"
for analysis in "$@"; do
  resnet-bench analyze "$analysis" --tables "$dest/tables" --runs "$dest/runs" --out "$dest/analysis"
done
find "$dest" -name '*.pdf' -delete   # the PNGs and the plotted data (CSV) are what is kept
for csv in "$dest"/figures/*.csv; do   # placeholders of figures this grid cannot draw
  if [ "$(wc -l < "$csv")" -le 1 ]; then rm "$csv" "${csv%.csv}.png"; fi
done
