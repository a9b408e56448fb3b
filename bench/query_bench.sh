#!/usr/bin/env bash
# The /query benchmark, end to end: build, generate the table, measure, write
# bench/results/query.json and print a markdown table. See docs/benchmarks.md.
#
#   bench/query_bench.sh [--files N] [extra query_bench.py options]
#
# Environment:
#   D2O_BENCH_VENV   venv with Python `deltalake` for the generator
#                    (default ~/.cache/d2o-bench-venv; created when missing)
#   D2O_BENCH_DATA   where generated tables live (default ~/.cache/d2o-bench-data)
#   CARGO_TARGET_DIR as usual (default ./target)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
files=100000
if [[ "${1:-}" == "--files" ]]; then
    files="$2"
    shift 2
fi
venv="${D2O_BENCH_VENV:-$HOME/.cache/d2o-bench-venv}"
data="${D2O_BENCH_DATA:-$HOME/.cache/d2o-bench-data}"
target="${CARGO_TARGET_DIR:-$repo/target}"
python="${PYTHON:-python3}"
deltalake_req="deltalake==1.6.6"

say() { echo "query_bench.sh: $*" >&2; }

# Tools: curl for /query, wrk for /shares.
if ! command -v wrk >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        say "installing wrk/curl with apt-get"
        apt-get install -y -qq wrk curl >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk curl >/dev/null; }
    else
        say "wrk or curl missing and apt-get not usable; install them (the /shares part is skipped without wrk)"
    fi
fi

# The generator's venv.
if ! "$venv/bin/python" -c 'import deltalake' >/dev/null 2>&1; then
    say "creating venv $venv with $deltalake_req"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$deltalake_req"
fi

say "building (release)"
cargo build --release -p d2o-cli -p d2o-bench

table="$data/t$((files / 1000))k"
[[ "$files" -lt 1000 ]] && table="$data/t$files"
"$venv/bin/python" bench/gen_table.py "$table" --files "$files"

"$python" bench/query_bench.py --d2o "$target/release/d2o" --floor "$target/release/floor" --table "$table" "$@"
