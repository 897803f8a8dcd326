#!/usr/bin/env bash
# The GPU check: one short, prepared run that turns a bare GPU machine into the suite's GPU
# numbers (docs/performance.md, "The GPU check").  Needs only torch, torchvision, numpy, pandas,
# matplotlib, seaborn, pyyaml, pytest (no snakemake, no network).
#
#   scripts/gpu-check.sh [--cpu] [--data CIFAR10_JPEG_TAR_GZ|none] [--budget SECONDS] OUTDIR
#
# --data (or $RESNET_BENCH_CIFAR_JPEG): the CIFAR-10 JPEG mirror; default: data/ (where
# `resnet-bench data fetch cifar10-jpeg` puts it) or shared/data/ in the checkout; `none`: the
# embedded synthetic set.
#
# Steps, each under `timeout` with its own budget (the whole check <= --budget, default 480 s):
#   0 setup    pip install --no-deps -e . (nothing fetched), versions, GPU, data decoded in background
#   1 tests    pytest -m cuda (tests/test_cuda.py)
#   2 speed    resnet-bench bench (ResNet-20/56/110, pre-act 164/1001; eager and compiled) and
#              aggregate images/s of 1/2/4/8 concurrent trainings
#   3 study    config/degradation.yaml's runs, all at once on the GPU, sized to the time left;
#              SIGTERM at the deadline (runs keep checkpoints and logs)
# --cpu: the same steps at tiny sizes on the CPU (seconds; CI runs it).  OUTDIR gets at most 8
# files: gpu-check.log, steps.json, cuda-tests.xml, bench.csv, throughput.csv, bench.tar.gz, runs.tar.gz.
set -uo pipefail

usage() { echo "usage: scripts/gpu-check.sh [--cpu] [--data FILE|none] [--budget SECONDS] OUTDIR" >&2; exit 2; }
die() { echo "gpu-check: error: $*" >&2; exit 2; }
MODE=gpu; DATA="${RESNET_BENCH_CIFAR_JPEG:-}"; BUDGET=""; OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) MODE=cpu ;;
        --data) [[ $# -ge 2 ]] || usage; DATA="$2"; shift ;;
        --budget) [[ $# -ge 2 ]] || usage; BUDGET="$2"; shift ;;
        -h|--help) usage ;;
        -*) die "unknown option $1" ;;
        *) [[ -z "$OUT" ]] || die "one OUTDIR only (got $OUT and $1)"; OUT="$1" ;;
    esac
    shift
done
[[ -n "$OUT" ]] || usage
[[ -z "$BUDGET" || "$BUDGET" =~ ^[0-9]+$ ]] || die "--budget must be whole seconds, got $BUDGET"
if [[ "$DATA" == none ]]; then DATA=""; NODATA=1; else NODATA=""; fi  # --data none: synthetic
if [[ -n "$DATA" && ! -f "$DATA" ]]; then die "--data $DATA: no such file"; fi
if [[ -z "$DATA" && -z "$NODATA" ]]; then  # the mirror where the device tool or a checkout keeps it
    for c in data/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz; do
        [[ -f "$(dirname "$0")/../$c" ]] && DATA="$(cd "$(dirname "$0")/.." && realpath "$c")" && break
    done
fi
[[ -z "$DATA" ]] || DATA="$(realpath "$DATA")"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(realpath "$OUT")"
cd "$(dirname "$0")/.." || exit 2
REPO="$(pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then  # the interpreter that has torch
    for c in python3 python; do
        command -v "$c" >/dev/null && "$c" -c "import torch" 2>/dev/null && PY="$c" && break
    done
    [[ -n "$PY" ]] || die "no python3/python with torch on PATH (set PYTHON=...)"
fi
command -v "$PY" >/dev/null || die "$PY not found"
# CPU mode: tiny sizes, but a loaded CI machine can take seconds per Python start.
[[ $MODE == cpu ]] && BUDGET="${BUDGET:-300}" || BUDGET="${BUDGET:-480}"
T0=$(date +%s); DEADLINE=$((T0 + BUDGET))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
LOG="$OUT/gpu-check.log"; STEPS="$WORK/steps.jsonl"; : > "$STEPS"
exec > >(tee -a "$LOG") 2>&1
export RESNET_BENCH_GPU_LOCK_DIR="$WORK/locks" RESNET_BENCH_GPU_WAIT_S=30
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" MPLBACKEND=Agg PYTHONUNBUFFERED=1
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1  # never reach for the network
BG_PIDS=()

left() { echo $((DEADLINE - $(date +%s))); }
note() { echo "[gpu-check $(date -u +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }
# step NAME BUDGET CMD...: run under `timeout` with min(BUDGET, time left - reserve); record it.
RESERVE=15
step() {
    local name="$1" want="$2"; shift 2
    local have=$(( $(left) - RESERVE )); local b=$(( want < have ? want : have ))
    if (( b < 3 )); then
        note "$name: skipped (no time left)"
        printf '{"step":"%s","status":"skipped","budget_s":%d,"seconds":0,"rc":null}\n' "$name" "$want" >> "$STEPS"
        return 124
    fi
    note "$name: start (budget ${b}s): $*"
    local s=$(date +%s.%N)
    timeout --signal=TERM --kill-after=10 "$b" "$@"; local rc=$?
    local sec; sec=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    local st=ok; (( rc == 124 || rc == 137 )) && st=timeout; (( rc != 0 && rc != 124 && rc != 137 )) && st=failed
    note "$name: $st (rc $rc, ${sec}s of ${b}s)"
    printf '{"step":"%s","status":"%s","budget_s":%d,"seconds":%s,"rc":%d}\n' "$name" "$st" "$b" "$sec" "$rc" >> "$STEPS"
    return $rc
}

finish() {
    local pid; for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    note "bundling into $OUT"
    if [[ -d "$WORK/bench" ]]; then
        tar czf "$OUT/bench.tar.gz" -C "$WORK" bench 2>/dev/null
        "$PY" - "$WORK/bench" "$OUT/bench.csv" <<'PYEOF' || true
import csv, sys, pathlib
rows, cols = [], []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.csv")):
    if f.name == "throughput.csv":
        continue
    for r in csv.DictReader(open(f)):
        r = {"run": f.stem, **r}
        cols += [c for c in r if c not in cols]
        rows.append(r)
if rows:
    w = csv.DictWriter(open(sys.argv[2], "w", newline=""), fieldnames=cols)
    w.writeheader(); w.writerows(rows)
PYEOF
        [[ -f "$WORK/bench/throughput.csv" ]] && cp "$WORK/bench/throughput.csv" "$OUT/"
    fi
    if [[ -d "$WORK/results" ]]; then  # records, logs, provenance; no weights or checkpoints
        tar czf "$OUT/runs.tar.gz" -C "$WORK" --exclude='*.pt' results
    fi
    "$PY" - "$STEPS" "$OUT/steps.json" "$MODE" "$BUDGET" "$T0" "$WORK/env.json" <<'PYEOF' || true
import json, sys, time, pathlib
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
env = pathlib.Path(sys.argv[6])
out = {"mode": sys.argv[3], "budget_s": int(sys.argv[4]), "wall_s": round(time.time() - int(sys.argv[5]), 1),
       "steps": steps, "environment": json.loads(env.read_text()) if env.exists() else None}
pathlib.Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
PYEOF
    note "done in $(( $(date +%s) - T0 ))s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap finish EXIT
trap 'note "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- 0 setup
note "mode $MODE, budget ${BUDGET}s, repo $REPO, out $OUT, work $WORK, data ${DATA:-none (synthetic)}"
if ! step install 60 "$PY" -m pip install -q --no-deps --no-build-isolation -e "$REPO"; then
    note "pip install failed: using the checkout through PYTHONPATH"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
RB=("$PY" -m resnet_bench.cli)
step environment 60 "$PY" - "$MODE" "$WORK/env.json" <<'PYEOF' || exit 1
import json, os, platform, subprocess, sys
import torch, torchvision
import resnet_bench.bench, resnet_bench.gpucheck, resnet_bench.train.loop, resnet_bench.pipeline.grid  # noqa: F401
assert "snakemake" not in sys.modules, "the check must not need snakemake"
cuda = torch.cuda.is_available()
env = {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
       "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
       "cuda_available": cuda, "device": torch.cuda.get_device_name(0) if cuda else platform.processor(),
       "cpus": os.cpu_count(), "host": platform.node(), "platform": platform.platform()}
try:
    env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                                        "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    env["nvidia_smi"] = None
print(json.dumps(env, indent=2))
open(sys.argv[2], "w").write(json.dumps(env))
if sys.argv[1] == "gpu" and not cuda:
    sys.exit("gpu-check: error: no CUDA device visible (use --cpu for the CPU rehearsal)")
PYEOF

# Decode the dataset while the tests run (CPU work; the GPU steps do not wait for it).
PREP="$WORK/data.pt"
if [[ -n "$DATA" ]]; then
    DSNAME=cifar10-jpeg; PREP_ARGS=(--dataset folder --root "$DATA" --name cifar10-jpeg --label "CIFAR-10 (JPEG q75 mirror)")
    [[ $MODE == cpu ]] && PREP_ARGS+=(--max-per-class 20)
else
    DSNAME=synthetic; PREP_ARGS=(--dataset synthetic --train-size 2000 --test-size 200 --difficulty easy)
fi
( timeout $(( $(left) - RESERVE )) nice -n 5 "${RB[@]}" data prepare "${PREP_ARGS[@]}" --out "$PREP" > "$WORK/prepare.log" 2>&1
  echo $? > "$WORK/prepare.rc" ) &
BG_PIDS+=($!)

# ---------------------------------------------------------------- 1 CUDA tests
step cuda-tests $([[ $MODE == cpu ]] && echo 90 || echo 150) \
    "$PY" -m pytest -m cuda tests/test_cuda.py -q -rs -p no:cacheprovider --junitxml "$OUT/cuda-tests.xml"

# ---------------------------------------------------------------- 2 speed
mkdir -p "$WORK/bench"; B="$WORK/bench"
if [[ $MODE == cpu ]]; then
    DEV=(--device cpu --threads 1); IT=(--iters 2 --warmup-iters 1 --train-size 256 --batch-size 32)
    # One bench process for both kinds of net (basic and bottleneck): each start costs seconds.
    step bench-eager 90 "${RB[@]}" bench "${DEV[@]}" "${IT[@]}" --baseline-workers 0 --model v1-basic-8 \
        --model v2-bottleneck-11 --precision bf16 --channels-last --csv "$B/eager.csv"
    step throughput 90 "$PY" -m resnet_bench.gpucheck throughput --device cpu --model v1-basic-8 \
        --procs 1 2 --batch-size 32 --warmup-iters 1 --window-s 1 --csv "$B/throughput.csv"
else
    DEV=(--device cuda)
    # The headline: everything the trainer does (bf16, channels_last, on-device data) vs the baseline.
    step bench-eager 60 "${RB[@]}" bench "${DEV[@]}" --model v1-basic-20 --model v1-basic-56 --model v1-basic-110 \
        --precision bf16 --channels-last --iters 100 --warmup-iters 10 --csv "$B/eager.csv"
    step bench-giants 40 "${RB[@]}" bench "${DEV[@]}" --model v2-bottleneck-164 --model v2-bottleneck-1001 \
        --no-baseline --precision bf16 --channels-last --iters 15 --warmup-iters 3 --csv "$B/giants.csv"
    step throughput 80 "$PY" -m resnet_bench.gpucheck throughput --device cuda --model v1-basic-20 \
        --model v1-basic-56 --procs 1 2 4 8 --window-s 3 --csv "$B/throughput.csv"
    # CUDA graphs (compile reduce-overhead) remove launch overhead, the bound of these small nets.
    # Compiling is slow: these two only get time that leaves the study STUDY_MIN seconds.
    STUDY_MIN=150
    cap() { local c=$(( $(left) - RESERVE - STUDY_MIN )); echo $(( $1 < c ? $1 : c )); }
    step compile-56-ro "$(cap 60)" "${RB[@]}" bench "${DEV[@]}" --model v1-basic-56 --no-baseline --precision bf16 \
        --channels-last --compile --compile-mode reduce-overhead --iters 100 --warmup-iters 10 --csv "$B/compile56_ro.csv"
    step compile-110-ro "$(cap 70)" "${RB[@]}" bench "${DEV[@]}" --model v1-basic-110 --no-baseline --precision bf16 \
        --channels-last --compile --compile-mode reduce-overhead --iters 100 --warmup-iters 10 --csv "$B/compile110_ro.csv"
fi

# ---------------------------------------------------------------- 3 study
wait "${BG_PIDS[0]}" 2>/dev/null; BG_PIDS=()
cat "$WORK/prepare.log"
if [[ "$(cat "$WORK/prepare.rc" 2>/dev/null)" != 0 ]]; then
    note "data prepare failed or timed out: no study"
else
    STUDY=(--config config/degradation.yaml --prepared "$PREP" --dataset "$DSNAME" --results "$WORK/results"
           --deadline $((DEADLINE - RESERVE - 5)) --throughput-csv "$B/throughput.csv")
    if [[ $MODE == cpu ]]; then
        STUDY+=(--device cpu --depth 8 --seeds 0 --iterations 4 --batch-size 16 --grace-s 5)
    else
        STUDY+=(--device cuda --grace-s 20)
    fi
    step study $(( $(left) )) "$PY" -m resnet_bench.gpucheck study "${STUDY[@]}"
fi
exit 0
