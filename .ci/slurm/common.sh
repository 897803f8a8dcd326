# Shared by start.sh and stop.sh (sourced, not run).  Bash.
#
# A daemon we started is recorded in $PIDS/<name>.pid as "PID STARTTIME COMM", STARTTIME being
# field 22 of /proc/PID/stat: a recycled PID has another start time, so stop.sh can never
# signal a process that merely inherited the number.

PREFIX=${SLURM_CI_PREFIX:-/tmp/resnet-bench-slurm}
PIDS=$PREFIX/pids
# Exported into the daemons' environment; slurmstepd (forked by slurmd) inherits it, which is
# how stop.sh recognises step daemons of this cluster.
MARKER=RESNET_BENCH_SLURM_PREFIX

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

proc_starttime() {  # PID -> start time in clock ticks, or nothing if the process is gone
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }               # drop "pid (comm) ", comm may contain spaces
    set -- $stat
    # A zombie has exited; it stays listed only because nobody reaps it (where PID 1 is not an
    # init, e.g. a VM or container without one, the daemons' fork intermediates end up so).
    [[ $1 != Z ]] || return 1
    echo "${20}"                    # field 22 overall = 20th after pid and comm
}

record_pid() {  # NAME PID: remember that we started PID as daemon NAME
    local st comm
    st=$(proc_starttime "$2") || die "$1 (pid $2) exited right after starting; see $PREFIX/log"
    comm=$(cat "/proc/$2/comm")
    echo "$2 $st $comm" > "$PIDS/$1.pid"
}

recorded_alive() {  # NAME -> prints the PID if the recorded daemon is still that process
    local f=$PIDS/$1.pid pid st comm
    [[ -f $f ]] || return 1
    read -r pid st comm < "$f" || return 1
    [[ -n ${pid:-} && $(proc_starttime "$pid" 2>/dev/null) == "$st" ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    echo "$pid"
}

marked_processes() {  # PIDs whose environment carries our marker (slurmctld, slurmd, slurmstepd)
    local p
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} == "$$" ]] && continue
        if grep -qzxF "$MARKER=$PREFIX" "$p/environ" 2>/dev/null; then
            echo "${p#/proc/}"
        fi
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
