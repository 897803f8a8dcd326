#!/usr/bin/env bash
# Stop what start.sh started, and only that: the PIDs recorded in $SLURM_CI_PREFIX/pids
# (SIGTERM, wait, then SIGKILL for that PID alone; never pkill), after cancelling the queue so
# no job step (slurmstepd, forked by our slurmd and carrying our marker variable) outlives it.
# A munged that was already running before start.sh is left alone.  Safe to run when nothing is
# running.  Logs and state stay under the prefix for inspection.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
T0=$(date +%s%N)
stopped=()
forced=()

still_there() {  # PID STARTTIME
    [[ $(proc_starttime "$1" 2>/dev/null) == "$2" ]]
}

terminate() {  # LABEL PID: SIGTERM, up to 15 s, then SIGKILL for this PID only
    local label=$1 pid=$2 st
    st=$(proc_starttime "$pid") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do still_there "$pid" "$st" || break; sleep 0.1; done
    if still_there "$pid" "$st"; then
        log "$label (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do still_there "$pid" "$st" || break; sleep 0.1; done
        forced+=("$label=$pid")
    else
        stopped+=("$label=$pid")
    fi
}

# 1. Empty the queue while the controller is still up, and give the steps time to end
#    (KillWait=10 in slurm.conf, then slurmd kills them).
if recorded_alive slurmctld >/dev/null && command -v squeue >/dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        log "cancelling jobs: $(echo $jobs)"
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 250); do
            [[ -z $(squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
fi

# 2. The daemons, in reverse order of starting.
for name in slurmd slurmctld munged; do
    if pid=$(recorded_alive "$name"); then
        terminate "$name" "$pid"
    fi
    rm -f "$PIDS/$name.pid"
done

# 3. Step daemons of this cluster that outlived slurmd (they carry our marker variable).
for pid in $(marked_processes); do
    terminate "$(cat "/proc/$pid/comm" 2>/dev/null || echo process)" "$pid"
done

# 4. Give /etc/slurm back.
for f in slurm.conf gres.conf; do
    target=/etc/slurm/$f
    if [[ -L $target && $(readlink "$target") == "$PREFIX/$f" ]]; then
        rm -f "$target"
        [[ -e $target.before-resnet-bench ]] && mv "$target.before-resnet-bench" "$target"
    fi
done

left=$(marked_processes | tr '\n' ' ')
ms=$((($(date +%s%N) - T0) / 1000000))
if ((${#stopped[@]} + ${#forced[@]} == 0)); then
    summary="nothing was running"
else
    summary="stopped ${stopped[*]:-}${forced:+; killed with SIGKILL ${forced[*]}}"
fi
printf 'slurm down in %d.%01ds: %s (prefix %s)\n' $((ms / 1000)) $((ms % 1000 / 100)) "$summary" "$PREFIX"
[[ -z $left ]] || die "still running after stop: $left"
