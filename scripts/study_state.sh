#!/bin/bash
# Carry an unfinished study from one machine (or sitting) to the next through the repository:
#   scripts/study_state.sh save EXPERIMENT            # results/EXPERIMENT -> results/in-progress/EXPERIMENT.tar.gz
#   scripts/study_state.sh save EXPERIMENT --finished-only   # the same without unfinished runs
#   scripts/study_state.sh restore EXPERIMENT CONFIG  # and back, ready for `snakemake --configfile CONFIG`
# A study longer than a sitting resumes from its checkpoints, but those live in the ignored
# results/ folder and are lost with the machine. The archive holds what resuming needs: every
# run's records and checkpoint (finished runs without their weights, which the study's tables
# and figures do not read), Snakemake's per-job timings and the training logs. Stop the study
# first (SIGTERM to the trainers writes a checkpoint); `save` refuses while a trainer still
# holds one of its runs (the lock on the run's resnet-bench.run marker).
# --finished-only leaves out every unfinished run's folder and training log, so that no
# checkpoint (a ResNet-1001's is 86 MB) enters the repository; such a run restarts from
# iteration 0 after `restore`: the same run, as its seed fixes its batches.
set -euo pipefail
cmd=${1:-} exp=${2:-}
archive=results/in-progress/$exp.tar.gz
usage() { echo "study_state: error: $1 (usage: $0 save EXPERIMENT [--finished-only] | restore EXPERIMENT CONFIG)" >&2; exit 2; }
[ -n "$exp" ] || usage "no EXPERIMENT given"

running_trainers() {  # trainers writing to results/$exp: each holds its run's lock (the marker)
  local marker
  while IFS= read -r -d '' marker; do
    if ! flock -n "$marker" true; then
      sed -n 's/.*pid=\([0-9]*\).*/\1/p' "$marker"
    fi
  done < <(find "results/$exp/runs" -name resnet-bench.run -print0)
}
case "$cmd" in
  save)
    [ -d "results/$exp/runs" ] || usage "results/$exp/runs does not exist"
    case ${3:-} in
      "") only_finished="" ;;
      --finished-only) only_finished=1 ;;
      *) usage "unknown option '$3'" ;;
    esac
    busy=$(running_trainers | xargs)
    if [ -n "$busy" ]; then
      echo "study_state: error: a trainer of $exp is still running (pid $busy); stop the study first" >&2; exit 1
    fi
    excludes=() left_out=0
    if [ -n "$only_finished" ]; then
      # A run's folder holds its config.json (or, before that, the marker); its log mirrors its path.
      while IFS= read -r run; do
        [ -f "results/$exp/runs/$run/summary.json" ] && continue
        excludes+=("--exclude=$exp/runs/$run" "--exclude=$exp/logs/train/$run.log")
        left_out=$((left_out + 1))
      done < <(cd "results/$exp/runs" && find . \( -name config.json -o -name resnet-bench.run \) -printf '%h\n' \
               | sed 's|^\./||' | sort -u)
    fi
    mkdir -p results/in-progress
    members=$(cd results && ls -d "$exp/runs" "$exp/benchmarks" "$exp/logs" 2>/dev/null || true)  # no benchmarks before a job ends
    tar -czf "$archive.tmp" -C results --exclude=model.pt "${excludes[@]}" $members
    mv "$archive.tmp" "$archive"
    packed=$(tar -tzf "$archive")   # counted from what was packed, listed once
    finished=$(grep -c '/summary\.json$' <<< "$packed" || true)
    partial=$(grep -c '/checkpoint\.pt$' <<< "$packed" || true)
    note=${only_finished:+, $left_out unfinished left out}
    echo "study_state: $archive ($(du -h "$archive" | cut -f1)): $finished finished runs, $partial resumable$note"
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
    # The archive was handed over: only plain files and folders below EXPERIMENT/ are unpacked
    # (no links, devices, absolute paths or ..), and never as their recorded owner.
    bad=$(tar -tzf "$archive" | awk -v p="$exp/" 'index($0, p) != 1 || $0 ~ /(^|\/)\.\.(\/|$)/ {print; exit}')
    [ -n "$bad" ] || bad=$(tar -tzvf "$archive" | awk '$1 !~ /^[-d]/ {print $NF; exit}')
    if [ -n "$bad" ]; then
      echo "study_state: error: $archive: member '$bad' is not a plain file or folder below $exp/; not unpacked" >&2; exit 1
    fi
    snakemake --cores 1 --until prepare_data --configfile "$config"
    tar -xzmf "$archive" -C results --no-same-owner --no-same-permissions
    echo "study_state: restored $exp; resume with: snakemake --cores all --configfile $config"
    ;;
  *) usage "unknown command '${cmd}'" ;;
esac
