#!/usr/bin/env bash
# Quickstart: all set-up on a fresh Linux machine with Python 3.11+, then one of
#   bash quickstart.sh pipeline   # the default pipeline end to end (embedded data, CPU is enough)
#   bash quickstart.sh test       # the test suite
# Extra arguments go to snakemake / pytest. The virtual environment is .venv (reused when present).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

setup() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "quickstart: error: $PYTHON must be Python 3.11 or newer" >&2
        exit 2
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "quickstart: creating $VENV" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    # Install only when the pins or the package metadata changed since the last install.
    local stamp="$VENV/.resnet-bench-installed"
    local want
    want=$(cat requirements/tested.txt pyproject.toml | sha256sum | cut -d' ' -f1)
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "quickstart: installing resnet-bench and its tested dependencies into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -c requirements/tested.txt -e ".[test,slurm]"
        echo "$want" > "$stamp"
    fi
    export PATH="$PWD/$VENV/bin:$PATH"
}

cmd=${1:-}
shift || true
case "$cmd" in
    pipeline)
        setup
        exec snakemake --cores all "$@"
        ;;
    test)
        setup
        exec python -m pytest "$@"
        ;;
    *)
        echo "usage: bash quickstart.sh {pipeline|test} [extra snakemake/pytest arguments]" >&2
        exit 2
        ;;
esac
