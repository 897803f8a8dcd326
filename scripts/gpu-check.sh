#!/usr/bin/env bash
# The GPU check: one short, prepared run that turns a bare GPU machine into the suite's GPU
# numbers (docs/performance.md, "The GPU check").  Needs only torch, torchvision, numpy, pandas,
# matplotlib, seaborn, pyyaml, pytest (no snakemake, no network).
#
#   scripts/gpu-check.sh [--cpu] [--data CIFAR10_JPEG_TAR_GZ|none] [--budget SECONDS] OUTDIR
#
# --data (or $RESNET_BENCH_CIFAR_JPEG): the CIFAR-10 JPEG mirror; default: data/cifar10-jpeg.tar.gz
# or shared/data/cifar10-jpeg.tar.gz inside the checkout (the folders a device run carries).
# Without it the check refuses to start; `--data none` runs on the embedded synthetic set.
#
# It answers three questions: is the CUDA path correct, how fast is the trainer against the
# standard DataLoader recipe, how long would the papers' 64k-iteration schedule take.  Steps, each
# under `timeout` with its own budget (the whole check <= --budget, default 540 s on GPU):
#   environment            versions, GPU (the checkout is imported through PYTHONPATH: nothing is
#                          installed); the data decoded in the background
#   cuda-tests             pytest tests/test_cuda.py, a time limit per test, a line per result
#   bench-eager            the trainer's step (bf16, channels_last) vs the baseline, ResNet-20/56/110
#   compile-110            ResNet-110 compiled with CUDA graphs (reduce-overhead), compile time apart
#   throughput             aggregate images/s of 1/2/4/8 concurrent trainings (runs per GPU)
#   paper-run              ResNet-110 on config/v1_cifar10.yaml's paper-warmup recipe until the
#                          deadline, then SIGTERM: iterations/s and the projected 64k-iteration time
# Every file in OUTDIR is written as soon as its step ends (a kill loses only the step in flight):
# gpu-check.log, steps.json, cuda-tests.jsonl, cuda-tests.xml, bench.csv, throughput.csv,
# paper-run.json, paper-run.tar.gz (8 files at most).
# --cpu: the same steps at tiny sizes on the CPU (CI runs it).
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
REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "$DATA" == none ]]; then
    DATA=""
elif [[ -n "$DATA" ]]; then
    [[ -f "$DATA" ]] || die "--data $DATA: no such file"
    DATA="$(realpath "$DATA")"
else  # inside the checkout: what a device run carries (docs/performance.md)
    for c in data/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz; do
        [[ -f "$REPO/$c" ]] && DATA="$REPO/$c" && break
    done
    [[ -n "$DATA" ]] || die "no CIFAR-10 JPEG mirror: put it at data/cifar10-jpeg.tar.gz in the checkout (carry data/ to the GPU machine) or give --data FILE; --data none runs on synthetic images"
fi
if [[ -n "$BUDGET" ]] && (( BUDGET < 60 )); then die "--budget must be at least 60 s, got $BUDGET"; fi
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(realpath "$OUT")"
cd "$REPO" || exit 2
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then  # the interpreter that has torch
    for c in python3 python; do
        command -v "$c" >/dev/null && "$c" -c "import torch" 2>/dev/null && PY="$c" && break
    done
    [[ -n "$PY" ]] || die "no python3/python with torch on PATH (set PYTHON=...)"
fi
command -v "$PY" >/dev/null || die "$PY not found"
# CPU mode: tiny sizes, but a loaded CI machine can take seconds per Python start.
[[ $MODE == cpu ]] && BUDGET="${BUDGET:-420}" || BUDGET="${BUDGET:-540}"
T0=$(date +%s); DEADLINE=$((T0 + BUDGET))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
LOG="$OUT/gpu-check.log"; STEPS="$WORK/steps.jsonl"; : > "$STEPS"
rm -f "$OUT/cuda-tests.jsonl" "$OUT/cuda-tests.xml" "$OUT/bench.csv" "$OUT/throughput.csv" \
      "$OUT/paper-run.json" "$OUT/paper-run.tar.gz" "$OUT/steps.json"
exec > >(tee -a "$LOG") 2>&1
export RESNET_BENCH_GPU_LOCK_DIR="$WORK/locks" RESNET_BENCH_GPU_WAIT_S=30
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" MPLBACKEND=Agg PYTHONUNBUFFERED=1
BG_PIDS=()

left() { echo $((DEADLINE - $(date +%s))); }
note() { echo "[gpu-check $(date -u +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }

# steps.json after every step: the plan, each step's status, the environment.
write_steps() {
    "$PY" - "$STEPS" "$OUT/steps.json" "$MODE" "$BUDGET" "$T0" "$WORK/env.json" "${DATA:-none (synthetic)}" <<'PYEOF' || true
import json, os, sys, time, pathlib
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
env = pathlib.Path(sys.argv[6])
out = {"mode": sys.argv[3], "budget_s": int(sys.argv[4]), "wall_s": round(time.time() - int(sys.argv[5]), 1),
       "data": os.path.basename(sys.argv[7]), "steps": steps,
       "environment": json.loads(env.read_text()) if env.exists() else None}
tmp = pathlib.Path(sys.argv[2] + ".tmp")
tmp.write_text(json.dumps(out, indent=2))
tmp.replace(sys.argv[2])
PYEOF
}

# bench.csv after every bench step: every row of every bench CSV, named by its step.
write_bench() {
    "$PY" - "$WORK/bench" "$OUT/bench.csv" <<'PYEOF' || true
import csv, sys, pathlib
rows, cols = [], []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.csv")):
    for r in csv.DictReader(open(f)):
        r = {"step": f.stem, **r}
        cols += [c for c in r if c not in cols]
        rows.append(r)
if rows:
    tmp = pathlib.Path(sys.argv[2] + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader(); w.writerows(rows)
    tmp.replace(sys.argv[2])
PYEOF
}

# step NAME BUDGET CMD...: run under `timeout` with min(BUDGET, time left - reserve); record it.
RESERVE=15
step() {
    local name="$1" want="$2"; shift 2
    local have=$(( $(left) - RESERVE )); local b=$(( want < have ? want : have ))
    if (( b < 3 )); then
        note "$name: skipped (no time left)"
        printf '{"step":"%s","status":"skipped","budget_s":%d,"seconds":0,"rc":null}\n' "$name" "$want" >> "$STEPS"
        write_steps
        return 124
    fi
    note "$name: start (budget ${b}s): $*"
    local s=$(date +%s.%N)
    timeout --signal=TERM --kill-after=10 "$b" "$@"; local rc=$?
    local sec; sec=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    local st=ok; (( rc == 124 || rc == 137 )) && st=timeout; (( rc != 0 && rc != 124 && rc != 137 )) && st=failed
    note "$name: $st (rc $rc, ${sec}s of ${b}s)"
    printf '{"step":"%s","status":"%s","budget_s":%d,"seconds":%s,"rc":%d}\n' "$name" "$st" "$b" "$sec" "$rc" >> "$STEPS"
    write_steps
    return $rc
}
# cap WANT LATER: WANT seconds, or fewer so that LATER seconds are left for the steps after it.
cap() { local c=$(( $(left) - RESERVE - $2 )); echo $(( $1 < c ? $1 : c )); }

finish() {
    local pid; for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    write_steps
    note "done in $(( $(date +%s) - T0 ))s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap finish EXIT
trap 'note "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- setup
note "mode $MODE, budget ${BUDGET}s, repo $REPO, out $OUT, work $WORK, data ${DATA:-none (synthetic, --data none)}"
# Imported from the checkout, never installed: every process the check starts (tests, bench,
# trainings) is `python -m resnet_bench...` and sees this PYTHONPATH.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
RB=("$PY" -m resnet_bench.cli)
step environment 60 "$PY" - "$MODE" "$WORK/env.json" <<'PYEOF' || exit 1
import json, os, platform, subprocess, sys
import torch, torchvision
import resnet_bench.bench, resnet_bench.bench.gpucheck, resnet_bench.train.loop, resnet_bench.pipeline.grid  # noqa: F401
assert "snakemake" not in sys.modules, "the check must not need snakemake"
cuda = torch.cuda.is_available()
env = {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
       "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
       "cuda_available": cuda, "device": torch.cuda.get_device_name(0) if cuda else platform.processor(),
       "cpus": os.cpu_count(), "host": platform.node(), "platform": platform.platform(),
       "resnet_bench": os.path.dirname(resnet_bench.__file__)}
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

# ---------------------------------------------------------------- correctness
# A line per test in cuda-tests.jsonl as it ends; a hung test fails alone after its limit; the
# step's SIGTERM reaches pytest as an interrupt, so cuda-tests.xml is still written.
[[ $MODE == cpu ]] && TESTS_S=90 || TESTS_S=180
RESNET_BENCH_TEST_RESULTS="$OUT/cuda-tests.jsonl" RESNET_BENCH_TEST_TIMEOUT_S=120 \
    step cuda-tests $TESTS_S "$PY" -m pytest -m cuda tests/test_cuda.py -q -rs -s -p no:cacheprovider \
    --junitxml "$OUT/cuda-tests.xml"

# ---------------------------------------------------------------- speed
mkdir -p "$WORK/bench"; B="$WORK/bench"
if [[ $MODE == cpu ]]; then
    DEV=(--device cpu --threads 1); IT=(--iters 2 --warmup-iters 1 --train-size 256 --batch-size 32)
    step bench-eager 90 "${RB[@]}" bench "${DEV[@]}" "${IT[@]}" --baseline-workers 0 --model v1-basic-8 \
        --precision bf16 --channels-last --csv "$B/eager.csv"
    write_bench
    # No CUDA graphs on a CPU, and inductor's C++ compile takes minutes on a loaded one: the
    # same compiled path through aot_eager.
    step compile-110 "$(cap 90 180)" "${RB[@]}" bench "${DEV[@]}" "${IT[@]}" --model v1-basic-8 --no-baseline \
        --compile --compile-backend aot_eager --csv "$B/compile.csv"
    write_bench
    step throughput "$(cap 150 80)" "$PY" -m resnet_bench.bench.gpucheck throughput --device cpu --model v1-basic-8 \
        --procs 1 2 --batch-size 32 --warmup-iters 1 --window-s 1 --csv "$OUT/throughput.csv"
else
    DEV=(--device cuda); PAPER_MIN=90
    # The headline: the trainer's eager step (bf16, channels_last, on-device data) vs the baseline.
    step bench-eager 60 "${RB[@]}" bench "${DEV[@]}" --model v1-basic-20 --model v1-basic-56 --model v1-basic-110 \
        --precision bf16 --channels-last --iters 100 --warmup-iters 10 --csv "$B/eager.csv"
    write_bench
    # CUDA graphs remove the launch overhead that bounds these small nets; compile time apart.
    step compile-110 "$(cap 150 $((60 + PAPER_MIN)))" "${RB[@]}" bench "${DEV[@]}" --model v1-basic-110 --no-baseline \
        --precision bf16 --channels-last --compile --compile-mode reduce-overhead --iters 100 --warmup-iters 10 \
        --csv "$B/compile.csv"
    write_bench
    step throughput "$(cap 60 $PAPER_MIN)" "$PY" -m resnet_bench.bench.gpucheck throughput --device cuda \
        --model v1-basic-20 --model v1-basic-56 --procs 1 2 4 8 --window-s 3 --csv "$OUT/throughput.csv"
fi

# ---------------------------------------------------------------- the paper's schedule
wait "${BG_PIDS[0]}" 2>/dev/null; BG_PIDS=()
cat "$WORK/prepare.log"
if [[ "$(cat "$WORK/prepare.rc" 2>/dev/null)" != 0 ]]; then
    note "data prepare failed or timed out: no paper run"
    printf '{"step":"paper-run","status":"failed","budget_s":0,"seconds":0,"rc":null,"why":"data prepare"}\n' >> "$STEPS"
else
    # Stopped 20 s before its step's limit: the step in flight, the checkpoint, paper-run.json,
    # the tarball and the interpreter's exit fit in that on a loaded machine.
    PAPER_END=$((DEADLINE - RESERVE - 20))
    # CPU mode: a minute of the run is enough to rehearse the stop and the projection.
    [[ $MODE == cpu ]] && PAPER_END=$(( PAPER_END < $(date +%s) + 80 ? PAPER_END : $(date +%s) + 80 ))
    PAPER=(--config config/v1_cifar10.yaml --recipe paper-warmup --prepared "$PREP" --dataset "$DSNAME"
           --out "$WORK/paper")
    if [[ $MODE == cpu ]]; then
        GRACE=5
        PAPER+=(--device cpu --model v1-basic-8 --set batch_size=16 --set eval_every=10
                --set eval_batch_size=100 --set checkpoint_every=20 --set train_window=10)
    else  # the trainer's fast eager path; the recipe's schedule, batch, warm-up and evaluations
        GRACE=15
        PAPER+=(--device cuda --model v1-basic-110 --set precision=bf16 --set channels_last=true)
    fi
    # SIGTERM GRACE s before PAPER_END, as a scheduler's time limit would send it: the trainer
    # ends the step in flight and checkpoints (exit 75), paper-run reports it (exit 0).
    STOP_IN=$(( PAPER_END - GRACE - $(date +%s) ))
    if (( STOP_IN < 5 )); then
        note "paper-run: no time for a run (SIGTERM due in ${STOP_IN}s)"
        printf '{"step":"paper-run","status":"skipped","budget_s":0,"seconds":0,"rc":null}\n' >> "$STEPS"
    else
        note "paper-run: SIGTERM in ${STOP_IN}s"
        step paper-run $(( $(left) )) timeout --signal=TERM --preserve-status "$STOP_IN" \
            "$PY" -m resnet_bench.bench.gpucheck paper-run "${PAPER[@]}"
    fi
    # The run's records, never its weights.
    [[ -d "$WORK/paper/run" ]] && tar -czf "$OUT/paper-run.tar.gz" -C "$WORK/paper" --exclude='*.pt' \
        --transform 's,^run,paper-run,' run
    [[ -f "$WORK/paper/paper-run.json" ]] && cp "$WORK/paper/paper-run.json" "$OUT/"
fi
exit 0
