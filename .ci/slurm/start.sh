#!/usr/bin/env bash
# Start a real single-node Slurm (Debian packages) for CI: munged, slurmctld, slurmd, with
# SLURM_CI_GPUS fake GPUs as gres.  Idempotent: installs only what is missing and starts only
# what is not running.  Needs root, apt, CAP_MKNOD and ports 6817/6818.  No systemd.
#
#   SLURM_CI_PREFIX  state, spool, logs, config, fake devices   (default /tmp/resnet-bench-slurm)
#   SLURM_CI_GPUS    fake GPUs in gres.conf                      (default 2)
#   SLURM_CI_CPUS    CPUs of the node                            (default: nproc)
#   SLURM_CI_WAIT_S  how long to wait for the node to be idle    (default 60)
#
# The config is linked to /etc/slurm/{slurm,gres}.conf: the compiled-in path is required,
# because snakemake's slurm-jobstep plugin drops SLURM_CONF before its nested srun.
# Undo everything with stop.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
T0=$(date +%s%N)

GPUS=${SLURM_CI_GPUS:-2}
CPUS=${SLURM_CI_CPUS:-$(nproc)}
WAIT_S=${SLURM_CI_WAIT_S:-60}
[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons as root)"
[[ $GPUS =~ ^[0-9]+$ && $CPUS =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_GPUS/SLURM_CI_CPUS must be integers"

# ---- 1. packages -----------------------------------------------------------------------------
if [[ ! -x /usr/sbin/munged || ! -x /usr/sbin/slurmctld || ! -x /usr/sbin/slurmd ]] \
   || ! command -v sbatch >/dev/null; then
    log "installing munge slurmctld slurmd slurm-client (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null
fi

mkdir -p "$PREFIX"/{state,spool,log,run,dev} "$PIDS"

# ---- 2. munge --------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then  # Debian's postinst normally creates it
    mungekey -c -k /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
if recorded_alive munged >/dev/null; then
    :
elif munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "using the munged that is already running (not started here, so stop.sh leaves it)"
else
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    for _ in $(seq 100); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.05; done
    record_pid munged "$(cat /run/munge/munged.pid)"
fi

# ---- 3. fake GPUs and config -----------------------------------------------------------------
# gres File= must be a character or block device (a regular file is rejected and jobs get an
# empty CUDA_VISIBLE_DEVICES): make /dev/null look-alikes, major 1 minor 3.
: > "$PREFIX/gres.conf.new"
for ((i = 0; i < GPUS; i++)); do
    dev=$PREFIX/dev/fakegpu$i
    [[ -c $dev ]] || mknod -m 666 "$dev" c 1 3 || die "mknod $dev failed (needs CAP_MKNOD)"
    echo "NodeName=localhost Name=gpu File=$dev" >> "$PREFIX/gres.conf.new"
done
mv "$PREFIX/gres.conf.new" "$PREFIX/gres.conf"
mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
node_gres=""
((GPUS > 0)) && node_gres="Gres=gpu:$GPUS"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@CPUS@|$CPUS|g" -e "s|@REALMEM@|$mem_mb|g" \
    -e "s|@NODE_GRES@|$node_gres|g" "$HERE/slurm.conf.in" > "$PREFIX/slurm.conf"
mkdir -p /etc/slurm
for f in slurm.conf gres.conf; do
    target=/etc/slurm/$f
    if [[ -e $target && ! -L $target ]]; then
        log "moving the existing $target aside to $target.before-resnet-bench"
        mv "$target" "$target.before-resnet-bench"
    fi
    ln -sfn "$PREFIX/$f" "$target"
done

# ---- 4. daemons ------------------------------------------------------------------------------
export "$MARKER=$PREFIX"
start_daemon() {  # NAME PIDFILE CMD...
    local name=$1 pidfile=$2 port
    shift 2
    if recorded_alive "$name" >/dev/null; then
        return
    fi
    port=$([[ $name == slurmctld ]] && echo 6817 || echo 6818)
    port_open "$port" && die "port $port is taken by a $name not started from $PREFIX; stop it first"
    rm -f "$pidfile"
    "$@"  # both daemons fork into the background and write their pid file
    for _ in $(seq 200); do [[ -s $pidfile ]] && break; sleep 0.05; done
    [[ -s $pidfile ]] || die "$name did not start; see $PREFIX/log/$name.log"
    record_pid "$name" "$(cat "$pidfile")"
}
start_daemon slurmctld "$PREFIX/run/slurmctld.pid" /usr/sbin/slurmctld
start_daemon slurmd "$PREFIX/run/slurmd.pid" /usr/sbin/slurmd -N localhost

# ---- 5. wait for the node --------------------------------------------------------------------
deadline=$(($(date +%s) + WAIT_S))
state=""
until [[ $state =~ ^(idle|mixed|allocated) ]]; do
    (($(date +%s) < deadline)) || die "node not idle after ${WAIT_S}s (state '${state:-none}'); see $PREFIX/log"
    sleep 0.2
    state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n1) || state=""
done

pids=$(for n in munged slurmctld slurmd; do p=$(recorded_alive "$n") && printf ' %s=%s' "$n" "$p"; done)
ms=$((($(date +%s%N) - T0) / 1000000))
printf 'slurm up in %d.%01ds: cluster resnetci, node localhost %s, %s CPUs, %s fake GPU(s), prefix %s, pids:%s\n' \
    $((ms / 1000)) $((ms % 1000 / 100)) "$state" "$CPUS" "$GPUS" "$PREFIX" "${pids:- none}"
