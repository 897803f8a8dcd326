#!/bin/bash
# Publish a finished study:
#   scripts/publish_study.sh [--unregistered] [--runs DIR] EXPERIMENT CONFIG DEST [ANALYSIS...]
#   e.g. scripts/publish_study.sh v2-cpu-depth config/v2_cpu_depth.yaml results/published/v2-cpu-depth depth
# Copies the config, every run's records and provenance (not the weights or checkpoints) and
# Snakemake's per-job timings, then makes the tables (with the claims family the config
# registers under `claims`), figures and the named table-only analyses from the copied records
# with this checkout's code: what is published is what the published records give. Refuses a
# study unless its runs are exactly the config's grid, each with a summary.json (a part-trained
# run has only a checkpoint, one never started no folder), and unless its design was registered:
# CONFIG committed, byte for byte, at the revision its first run recorded, from a clean tree
# (scripts/registration.py; --unregistered publishes one that was not, saying so).
# --runs DIR: the records to publish (default results/EXPERIMENT/runs; a published study's own
# runs/ republishes it with this checkout's tables). Everything is built in a scratch folder
# and moved into DEST only when complete; DEST's other files (README.md, notes) are kept, and
# the README's registration sentence is rewritten from registration.json.
set -euo pipefail
usage="usage: $0 [--unregistered] [--runs DIR] EXPERIMENT CONFIG DEST [ANALYSIS...]"
unregistered=() runs=""
while [ $# -gt 0 ]; do
  case $1 in
    --unregistered) unregistered=(--unregistered); shift ;;
    --runs) [ $# -ge 2 ] || { echo "publish_study: error: --runs needs a directory; $usage" >&2; exit 2; }
            runs=$2; shift 2 ;;
    --*) echo "publish_study: error: unknown option '$1'; $usage" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || { echo "publish_study: error: $usage" >&2; exit 2; }
exp=$1 config=$2 dest=${3%/}; shift 3
runs=${runs:-results/$exp/runs}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$config" ] || { echo "publish_study: error: config file '$config' does not exist" >&2; exit 2; }
mkdir -p "$(dirname "$dest")"
stage=$(mktemp -d "$(dirname "$dest")/.publish.XXXXXX")
trap 'rm -rf "$stage"' EXIT
python - "$config" "$exp" "$runs" "$stage/claims.txt" <<'PY'
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from resnet_bench.pipeline.grid import RUN_ID, GridError, expand

config_file, exp, runs, claims_out = sys.argv[1:]
config = yaml.safe_load(Path(config_file).read_text())
def fail(message: str) -> None:
    sys.exit(f"publish_study: error: {message}")
if config.get("experiment", exp) != exp:
    fail(f"{config_file} is experiment {config['experiment']!r}, not {exp!r}")
try:
    grid = {Path(runs, RUN_ID.format(**asdict(r))) for r in expand(config)}
except GridError as exc:
    fail(f"{config_file}: {exc}")
any_run = RUN_ID.format(dataset="*", recipe="*", model="*", seed="*")
found = {p.parent for p in Path(runs).glob(f"{any_run}/*.json")}
unfinished = sorted(str(d) for d in grid if not (d / "summary.json").is_file())
extra = sorted(str(d) for d in found - grid)
if unfinished:
    fail(f"{len(unfinished)} of {len(grid)} runs of the grid are not finished (no summary.json): "
         + " ".join(unfinished))
if extra:
    fail(f"runs that are not in {config_file}'s grid: " + " ".join(extra))
Path(claims_out).write_text("".join(f"{c}\n" for c in config.get("claims") or []))
PY
python "$here/registration.py" check "$config" "$runs" --out "$stage/registration.json" "${unregistered[@]}"
mapfile -t family < "$stage/claims.txt"
claims=()
if [ ${#family[@]} -gt 0 ]; then claims=(--claims "${family[@]}"); fi
cp "$config" "$stage/config.yaml"
cp -r "$runs" "$stage/runs" && find "$stage/runs" -name model.pt -delete
benchmarks=$(dirname "$runs")/benchmarks
if [ -d "$benchmarks" ]; then cp -r "$benchmarks" "$stage/benchmarks"; fi
resnet-bench aggregate --runs "$stage/runs" --out "$stage/tables" "${claims[@]}"
resnet-bench plot --tables "$stage/tables" --out "$stage/figures"
for analysis in "$@"; do
  resnet-bench analyze "$analysis" --tables "$stage/tables" --runs "$stage/runs" --out "$stage/analysis"
done
find "$stage" -name '*.pdf' -delete   # the PNGs and the plotted data (CSV) are what is kept
for csv in "$stage"/figures/*.csv; do   # placeholders of figures this grid cannot draw
  if [ "$(wc -l < "$csv")" -le 1 ]; then rm "$csv" "${csv%.csv}.png"; fi
done
mkdir -p "$dest"
for part in config.yaml registration.json runs benchmarks tables figures analysis; do
  rm -rf "${dest:?}/$part"
  if [ -e "$stage/$part" ]; then mv "$stage/$part" "$dest/$part"; fi
done
if [ -f "$dest/README.md" ] && grep -q '^<!-- registration: begin' "$dest/README.md"; then
  python "$here/registration.py" readme "$dest"
else
  echo "publish_study: note: $dest/README.md has no registration block; add the marker lines of" \
       "scripts/registration.py (BEGIN, END) and run: python scripts/registration.py readme $dest" >&2
fi
