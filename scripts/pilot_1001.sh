#!/bin/bash
# Timing and memory pilot of the ResNet-1001 study (config/v2_1001_cpu.yaml): iterations/s and
# peak memory of the trainer's own step (`resnet-bench bench`, train/step.py) for the two
# 1001-layer nets, in the two layouts a 2-core machine allows. It measures nothing else: no loss,
# no error is read or written.
#   bash scripts/pilot_1001.sh PREPARED OUTDIR
# PREPARED: the study's data as written by `resnet-bench data prepare` (the real images: the
# in-memory dataset is part of each process's footprint). OUTDIR gets one CSV and one
# `/usr/bin/time -v` log per measurement, and pilot.csv (all rows, with the peak RSS).
set -euo pipefail
prepared=${1:?usage: $0 PREPARED OUTDIR} out=${2:?usage: $0 PREPARED OUTDIR}
[ -f "$prepared" ] || { echo "pilot_1001: error: prepared data '$prepared' does not exist" >&2; exit 2; }
mkdir -p "$out"
WARMUP=${WARMUP:-3} ITERS=${ITERS:-20}

bench() {  # tag threads model [extra bench flags...]
    local tag=$1 threads=$2 model=$3; shift 3
    /usr/bin/time -v -o "$out/$tag.time" \
        resnet-bench bench --model "$model" --prepared "$prepared" --device cpu --no-baseline \
        --precision bf16 --channels-last --threads "$threads" --batch-size 128 \
        --warmup-iters "$WARMUP" --iters "$ITERS" --csv "$out/$tag.csv" "$@" > "$out/$tag.log" 2>&1
}

date -u +"start %FT%TZ" > "$out/when.txt"
# A: one run at a time on both cores (no recomputation)
bench a-v1-2t 2 v1-bottleneck-1001
bench a-v2-2t 2 v2-bottleneck-1001
# B: two runs side by side, one core each, activations recomputed (two do not fit otherwise)
bench b-v1-1t-ckpt 1 v1-bottleneck-1001 --activation-checkpointing &
bench b-v2-1t-ckpt 1 v2-bottleneck-1001 --activation-checkpointing &
wait
# The fp32 check's runs: memory and speed of fp32 on both cores, with and without recomputation
WARMUP=2 ITERS=6 bench c-v1-2t-fp32 2 v1-bottleneck-1001 --precision fp32 --no-channels-last
WARMUP=2 ITERS=6 bench c-v1-2t-fp32-ckpt 2 v1-bottleneck-1001 --precision fp32 --no-channels-last \
    --activation-checkpointing
date -u +"end %FT%TZ" >> "$out/when.txt"

python - "$out" <<'EOF'
import sys, pathlib, re
import pandas as pd
out = pathlib.Path(sys.argv[1])
rows = []
for csv in sorted(out.glob("[abc]-*.csv")):
    df = pd.read_csv(csv)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", (out / f"{csv.stem}.time").read_text())
    df.insert(0, "measurement", csv.stem)
    df["peak_rss_gib"] = int(rss.group(1)) / 2**20 if rss else float("nan")
    rows.append(df)
table = pd.concat(rows, ignore_index=True)
table["s_per_iter"] = table["ms_per_iter"] / 1e3
table.to_csv(out / "pilot.csv", index=False)
print(table[["measurement", "model", "images_per_s", "s_per_iter", "peak_mem_mib", "peak_rss_gib"]]
      .to_string(index=False))
EOF
