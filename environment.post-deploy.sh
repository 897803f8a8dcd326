#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda env, from the workflow directory (the
# repository root): installs this checkout's resnet_bench so the rules find `resnet-bench`.
set -euo pipefail
python -m pip install --no-deps -e .
