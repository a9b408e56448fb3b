#!/usr/bin/env bash
# The recipient-client benchmark: a 10M-row, ~1 GB, 64-file table served by the release d2o,
# loaded to a Parquet file three ways, with wall time and peak RSS from /usr/bin/time -v:
#
#   1. `d2o client load profile#bench.b.t --out x.parquet`
#   2. the official Python connector's `delta_sharing.load_as_pandas`
#   3. the floors: the same Parquet files read from local disk with arrow-rs
#      (examples/local_floor.rs), once writing the same output file (decoding and re-encoding),
#      once read-only, and once copying their column chunks into one file without decoding
#      (what `d2o client load` does for Parquet output where the files allow it).
#
# and, on the client's decoding path (every file decoded, every batch encoded), three loads
# against the floor of the same work done locally: `--where "amount >= 500"` (half the rows)
# to Parquet, the whole table to CSV, and the whole table to Parquet with a row limit above its
# size (which takes the decoding path instead of the copy).
#
#   bench/client_bench.sh [--runs N] [--skip-python] [--skip-build]
#
# Environment:
#   D2O_BENCH_DATA   where the table is generated (default ~/.cache/d2o-bench-data)
#   D2O_VENV         the Python venv with delta-sharing and pyarrow (scripts/python-env.sh)
#   CARGO_TARGET_DIR as usual (default ./target)
#   D2O_BIN, D2O_FLOOR_BIN  prebuilt binaries to measure instead (with --skip-build)
# Results: bench/results/client.json and a markdown table on stdout.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs=3
skip_python=0
skip_build=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --skip-python) skip_python=1; shift ;;
        --skip-build) skip_build=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
data="${D2O_BENCH_DATA:-$HOME/.cache/d2o-bench-data}"
target="${CARGO_TARGET_DIR:-$repo/target}"
table="$data/client10m"
work="$(mktemp -d)"
say() { echo "client_bench.sh: $*" >&2; }
cleanup() {
    if [[ -n "${server_pid:-}" ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ $skip_build == 0 ]]; then
    say "building the release d2o and the floor"
    # Two commands: with --example, cargo builds only that example of the selected packages.
    cargo build --release -q -p d2o-cli
    cargo build --release -q -p d2o-client --example local_floor
fi
d2o="${D2O_BIN:-$target/release/d2o}"
floor="${D2O_FLOOR_BIN:-$target/release/examples/local_floor}"

venv="$(D2O_VENV="${D2O_VENV:-$HOME/.cache/d2o-venv}" scripts/python-env.sh)"
say "generating the table (once) in $table"
"$venv/bin/python" bench/client_bench.py gen "$table"

cat >"$work/server.yaml" <<EOF
version: 1
shares:
- name: bench
  schemas:
  - name: b
    tables:
    - name: t
      location: $table
authorization:
  bearerToken: bench-token
host: 127.0.0.1
port: 0
preSignedUrlTimeoutSeconds: 3600
EOF
"$d2o" serve --config "$work/server.yaml" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "serving" "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
endpoint="$(sed -n 's/.*serving Delta Sharing at \(http[^ ]*\).*/\1/p' "$work/server.out")"
[[ -n "$endpoint" ]] || { cat "$work/server.err" >&2; exit 1; }
echo "{\"shareCredentialsVersion\":1,\"endpoint\":\"$endpoint\",\"bearerToken\":\"bench-token\"}" >"$work/config.share"
url="$work/config.share#bench.b.t"
say "server at $endpoint"

# measure NAME CMD...: appends "name seconds peak_rss_kib" per run to $work/results. Every run
# writes a new file: earlier outputs are deleted (and the deletion synced) before the clock
# starts, since truncating a 1 GB file costs up to half a second on some disks.
measure() {
    local name="$1"
    shift
    for i in $(seq "$runs"); do
        rm -f "$work"/*.parquet "$work"/*.csv
        sync
        /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/cmd.out" 2>"$work/cmd.err" || {
            cat "$work/cmd.err" >&2
            exit 1
        }
        local wall rss
        wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt" |
            awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
        rss="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")"
        say "$name run $i: ${wall}s, peak RSS $((rss / 1024)) MiB"
        echo "$name $wall $rss" >>"$work/results"
    done
}

measure d2o-client-load "$d2o" client load "$url" --out "$work/out.parquet" --quiet
rows="$("$venv/bin/python" -c "import pyarrow.parquet as pq,sys; print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)" "$work/out.parquet")"
say "d2o client load wrote $rows rows"
measure floor-read-write "$floor" "$table" "$work/floor.parquet" 4
measure floor-read-only "$floor" "$table" --no-write 4
measure floor-copy-chunks "$floor" "$table" "$work/floor-copy.parquet" 4 --copy
measure d2o-client-load-filtered "$d2o" client load "$url" --where "amount >= 500" --out "$work/out.parquet" --quiet
measure floor-read-filter-write "$floor" "$table" "$work/floor.parquet" 4 --filter-ge amount=500
measure d2o-client-load-csv "$d2o" client load "$url" --out "$work/out.csv" --quiet
measure floor-read-write-csv "$floor" "$table" "$work/floor.csv" 4
measure d2o-client-load-decoded "$d2o" client load "$url" --limit 20000000 --out "$work/out.parquet" --quiet
if [[ $skip_python == 0 ]]; then
    runs_saved=$runs
    runs=1
    measure python-load_as_pandas "$venv/bin/python" bench/client_bench.py python-load "$url"
    measure python-load_as_pandas+to_parquet "$venv/bin/python" bench/client_bench.py python-load "$url" --out "$work/py.parquet"
    runs=$runs_saved
fi

mkdir -p bench/results
"$venv/bin/python" - "$work/results" "$rows" <<'EOF' | tee bench/results/client.md
import json, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, wall, rss = line.split()
    rows[name].append((float(wall), int(rss)))
best = {n: (min(w for w, _ in v), max(r for _, r in v)) for n, v in rows.items()}
json.dump({"rows": int(sys.argv[2]), "runs": {n: v for n, v in rows.items()}, "best": best},
          open("bench/results/client.json", "w"), indent=2)
# Each reader against the floor of the same work done locally.
floors = {
    "d2o-client-load": "floor-read-write",
    "d2o-client-load-decoded": "floor-read-write",
    "d2o-client-load-filtered": "floor-read-filter-write",
    "d2o-client-load-csv": "floor-read-write-csv",
    "python-load_as_pandas": "floor-read-write",
    "python-load_as_pandas+to_parquet": "floor-read-write",
}
print("| reader | best wall time (s) | peak RSS (MiB) | floor | vs floor |")
print("|---|---:|---:|---|---:|")
for n, (w, r) in best.items():
    floor = floors.get(n)
    ratio = f"{w / best[floor][0]:.2f}x" if floor in best else "-"
    print(f"| {n} | {w:.2f} | {r / 1024:.0f} | {floor or '-'} | {ratio} |")
if "python-load_as_pandas" in best and "d2o-client-load" in best:
    print(f"\nd2o client load is {best['python-load_as_pandas'][0] / best['d2o-client-load'][0]:.1f}x faster than load_as_pandas.")
if "floor-copy-chunks" in best and "d2o-client-load" in best:
    print(f"d2o client load takes {best['d2o-client-load'][0] / best['floor-copy-chunks'][0]:.2f}x the time of the local chunk copy.")
EOF
