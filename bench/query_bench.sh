#!/usr/bin/env bash
# The /query benchmark, end to end: build, generate the table, measure, write
# bench/results/query.json (query-<N>k.json for other sizes) and print a markdown table.
# See docs/benchmarks.md and the docstring of bench/query_bench.py.
#
#   bench/query_bench.sh [--files N] [--skip-build] [--no-wrk] [extra query_bench.py options]
#
#   --files N      active files in the table (default 100000; e.g. 300000, 1000000); the table
#                  is generated once into $D2O_BENCH_DATA/t<N/1000>k
#   --skip-build   do not run cargo; use the binaries already built (or D2O_BIN / D2O_FLOOR)
#   --no-wrk       skip the /shares throughput part (and do not try to install wrk)
#   --reader curl  have curl read /query answers through a pipe to the script, as before
#                  2026-12-07 (default: the script reads them from the socket itself)
#
# Environment:
#   D2O_BENCH_VENV   venv with Python `deltalake` for the generator
#                    (default ~/.cache/d2o-bench-venv; created when missing)
#   D2O_BENCH_DATA   where generated tables live (default ~/.cache/d2o-bench-data)
#   CARGO_TARGET_DIR as usual (default ./target)
#   D2O_BIN, D2O_FLOOR  prebuilt `d2o` and `floor` binaries (default $CARGO_TARGET_DIR/release/…);
#                    when both are set, nothing is built
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
files=100000
build=1
wrk=1
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --files) files="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        --no-wrk) wrk=0; extra+=(--no-wrk); shift ;;
        *) extra+=("$1"); shift ;;
    esac
done
venv="${D2O_BENCH_VENV:-$HOME/.cache/d2o-bench-venv}"
data="${D2O_BENCH_DATA:-$HOME/.cache/d2o-bench-data}"
target="${CARGO_TARGET_DIR:-$repo/target}"
python="${PYTHON:-python3}"
deltalake_req="deltalake==1.6.6"
d2o="${D2O_BIN:-$target/release/d2o}"
floor="${D2O_FLOOR:-$target/release/floor}"
[[ -n "${D2O_BIN:-}" && -n "${D2O_FLOOR:-}" ]] && build=0

say() { echo "query_bench.sh: $*" >&2; }

# Tools: curl for /query with --reader curl, wrk for /shares.
tools=(curl)
[[ "$wrk" == 1 ]] && tools+=(wrk)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        say "installing ${missing[*]} with apt-get"
        apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
    else
        say "${missing[*]} missing and apt-get not usable; install them (the /shares part is skipped without wrk)"
    fi
fi

# The generator's venv.
if ! "$venv/bin/python" -c 'import deltalake' >/dev/null 2>&1; then
    say "creating venv $venv with $deltalake_req"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$deltalake_req"
fi

if [[ "$build" == 1 ]]; then
    say "building (release)"
    cargo build --release -p d2o-cli -p d2o-bench
else
    say "not building; using $d2o and $floor"
fi
for bin in "$d2o" "$floor"; do
    [[ -x "$bin" ]] || { say "$bin is missing or not executable"; exit 1; }
done

table="$data/t$((files / 1000))k"
[[ "$files" -lt 1000 || $((files % 1000)) -ne 0 ]] && table="$data/t$files"
"$venv/bin/python" bench/gen_table.py "$table" --files "$files"

"$python" bench/query_bench.py --d2o "$d2o" --floor "$floor" --table "$table" "${extra[@]}"
