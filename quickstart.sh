#!/usr/bin/env bash
# Quickstart: all set-up on a fresh Linux machine with Python 3.11+, then one of
#   bash quickstart.sh pipeline   # the default pipeline end to end (embedded data, CPU is enough)
#   bash quickstart.sh test       # the test suite
#   bash quickstart.sh lint       # snakefmt --check and snakemake --lint on every config (CI)
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

check_config() {
    if [[ ! -f $1 ]]; then
        echo "quickstart: error: config file $1 does not exist (presets: $(cd config && echo *.yaml))" >&2
        exit 2
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    pipeline)
        # Snakemake reads --configfile before the workflow loads, so a typo there ends in its own
        # traceback; catch it first, in one line. (Both options take one or more files.)
        in_configfiles=0
        for arg in "$@"; do
            case "$arg" in
                --configfile=*|--configfiles=*) check_config "${arg#*=}" ;;
                --configfile|--configfiles) in_configfiles=1 ;;
                -*) in_configfiles=0 ;;
                *) [[ $in_configfiles == 1 ]] && check_config "$arg" ;;
            esac
        done
        setup
        exec snakemake --cores all "$@"
        ;;
    test)
        setup
        # One worker per core, at most 4; tests/conftest.py says how the suite is split among them.
        exec python -m pytest -n logical --maxprocesses 4 --dist loadfile --no-loadscope-reorder "$@"
        ;;
    lint)
        setup
        # The Snakemake community's checks: formatting (snakefmt, settings in pyproject.toml) and
        # `snakemake --lint` on the default config and on every preset (exit 1 on any lint).
        snakefmt --check Snakefile workflow/rules/
        for cfg in "" config/*.yaml; do
            echo "quickstart: snakemake --lint ${cfg:-(default config)}" >&2
            out=$(snakemake --lint ${cfg:+--configfile "$cfg"} 2>&1) || { echo "$out" >&2; exit 1; }
        done
        ;;
    *)
        echo "usage: bash quickstart.sh {pipeline|test|lint} [extra snakemake/pytest arguments]" >&2
        exit 2
        ;;
esac
