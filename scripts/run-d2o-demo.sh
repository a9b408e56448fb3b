#!/usr/bin/env bash
# Builds d2o and runs the one-command demo: a provider shares a retail data set, a recipient
# reads it back and analyses it (report.html, charts, figures.json), then the server keeps
# serving for examples/d2o_example.ipynb until Ctrl-C (unless --no-serve).
#
#   scripts/run-d2o-demo.sh [--dir DIR] [--port N] [--no-serve]
#
# The arguments are passed to `d2o demo` as they are. CARGO_TARGET_DIR defaults to
# ~/.cache/d2o-target (the build scripts/test.sh shares).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/d2o-target}"

# Where the demo writes: the value of --dir / --dir=DIR, else d2o-demo (d2o's default).
dir="d2o-demo"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --dir) dir="${args[i + 1]:-$dir}" ;;
        --dir=*) dir="${args[i]#--dir=}" ;;
    esac
done
case "$dir" in
    /*) report="$dir/report.html" ;;
    *) report="$PWD/$dir/report.html" ;;
esac

echo "== building d2o (cargo build --locked -p d2o-cli, target $CARGO_TARGET_DIR)" >&2
(cd "$repo" && cargo build --locked -p d2o-cli >&2)

echo "== d2o demo $*" >&2
echo "   the report will be at $report" >&2
status=0
"$CARGO_TARGET_DIR/debug/d2o" demo "$@" || status=$?
if [[ -f "$report" ]]; then
    echo "report: $report"
    echo "recipient notebook: $repo/examples/d2o_example.ipynb (DELTA_SHARING_PROFILE=$(dirname "$report")/.creds/config.share)"
fi
exit "$status"
