#!/usr/bin/env bash
# Compressed /query answers: build (release), generate the benchmark table once, measure bytes on
# the wire and time through a throttled link with and without gzip/zstd. See docs/benchmarks.md.
#
#   bench/compression_bench.sh [--files N] [extra compression_bench.py options]
#
# Environment: D2O_BENCH_VENV, D2O_BENCH_DATA, CARGO_TARGET_DIR as for bench/query_bench.sh.
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

if ! "$venv/bin/python" -c 'import deltalake, zstandard' >/dev/null 2>&1; then
    echo "compression_bench.sh: installing deltalake and zstandard into $venv" >&2
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "deltalake==1.6.6" "zstandard==0.25.0"
fi

echo "compression_bench.sh: building (release)" >&2
cargo build --release -p d2o-cli

table="$data/t$((files / 1000))k"
[[ "$files" -lt 1000 ]] && table="$data/t$files"
"$venv/bin/python" bench/gen_table.py "$table" --files "$files"

"$venv/bin/python" bench/compression_bench.py --d2o "$target/release/d2o" --table "$table" "$@"
