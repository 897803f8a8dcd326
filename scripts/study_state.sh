#!/bin/bash
# Carry an unfinished study from one machine (or sitting) to the next through the repository:
#   scripts/study_state.sh save EXPERIMENT            # results/EXPERIMENT -> results/in-progress/EXPERIMENT.tar.gz
#   scripts/study_state.sh restore EXPERIMENT CONFIG  # and back, ready for `snakemake --configfile CONFIG`
# A study longer than a sitting resumes from its checkpoints, but those live in the ignored
# results/ folder and are lost with the machine. The archive holds what resuming needs: every
# run's records and checkpoint (finished runs without their weights, which the study's tables
# and figures do not read), Snakemake's per-job timings and the training logs. Stop the study
# first (SIGTERM to the trainers writes a checkpoint); `save` refuses while a trainer of this
# checkout still writes to it.
set -euo pipefail
cmd=${1:-} exp=${2:-}
archive=results/in-progress/$exp.tar.gz
usage() { echo "study_state: error: $1 (usage: $0 save EXPERIMENT | restore EXPERIMENT CONFIG)" >&2; exit 2; }
[ -n "$exp" ] || usage "no EXPERIMENT given"

running_trainers() {  # live trainers writing to results/$exp of this checkout
  local pid
  for pid in $(pgrep -f "resnet-bench train"); do
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(pwd -P)" ] || continue
    grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null && continue
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--out results/$exp/"; then
      echo "$pid"
    fi
  done
}
case "$cmd" in
  save)
    [ -d "results/$exp/runs" ] || usage "results/$exp/runs does not exist"
    busy=$(running_trainers | xargs)
    if [ -n "$busy" ]; then
      echo "study_state: error: a trainer of $exp is still running (pid $busy); stop the study first" >&2; exit 1
    fi
    mkdir -p results/in-progress
    members=$(cd results && ls -d "$exp/runs" "$exp/benchmarks" "$exp/logs" 2>/dev/null || true)  # no benchmarks before a job ends
    tar -czf "$archive.tmp" -C results --exclude=model.pt $members
    mv "$archive.tmp" "$archive"
    finished=$(find "results/$exp/runs" -name summary.json | wc -l)
    partial=$(find "results/$exp/runs" -name checkpoint.pt | wc -l)
    echo "study_state: $archive ($(du -h "$archive" | cut -f1)): $finished finished runs, $partial resumable"
    ;;
  restore)
    config=${3:-}
    [ -f "$config" ] || usage "config file '${config}' does not exist"
    [ -f "$archive" ] || usage "$archive does not exist"
    if [ -d "results/$exp/runs" ]; then
      echo "study_state: error: results/$exp/runs exists; restoring would overwrite newer work" >&2; exit 1
    fi
    # The prepared data first: unpacked records then get a later mtime than their input, so
    # Snakemake keeps the finished runs instead of retraining them.
    snakemake --cores 1 --until prepare_data --configfile "$config"
    tar -xzmf "$archive" -C results
    echo "study_state: restored $exp; resume with: snakemake --cores all --configfile $config"
    ;;
  *) usage "unknown command '${cmd}'" ;;
esac
