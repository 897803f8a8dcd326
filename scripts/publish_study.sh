#!/bin/bash
# Publish a finished study: scripts/publish_study.sh EXPERIMENT CONFIG DEST [ANALYSIS...]
#   e.g. scripts/publish_study.sh v2-cpu-depth config/v2_cpu_depth.yaml results/published/v2-cpu-depth depth
# Copies the config, every run's records and provenance (not the weights or checkpoints) and
# Snakemake's per-job timings, then makes the tables, figures and the named table-only
# analyses from the copied records with this checkout's code: what is published is what the
# published records give. Refuses a study with a run that has no summary.json.
set -euo pipefail
exp=$1 config=$2 dest=$3; shift 3
src=results/$exp
unfinished=$(find "$src/runs" -name checkpoint.pt -printf '%h\n')
if [ -n "$unfinished" ]; then
  echo "publish_study: error: unfinished runs (checkpoint, no summary.json): $unfinished" >&2; exit 1
fi
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
