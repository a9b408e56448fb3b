#!/usr/bin/env bash
# Runs every test of d2o: formatting, lints, the Rust test suites and the official Python
# connector's compatibility suite against a real d2o server.
#
#   scripts/test.sh
#
# Needs cargo (rustup) and python3; everything else (crates, the Python virtualenv with
# delta-sharing, pandas, pytest; Debian's chromium and chromium-driver through apt, as root or
# with sudo, for the browser tests) it installs itself. Builds go to $CARGO_TARGET_DIR
# (default ~/.cache/d2o-target) so repeated runs and CI reuse them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/d2o-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

for tool in cargo python3; do
    command -v "$tool" >/dev/null || { echo "test.sh: '$tool' is required but not installed" >&2; exit 1; }
done
if [[ ! -d "${D2O_SHARED_TABLES:-$repo/tests/data/delta-tables}" ]]; then
    echo "test.sh: the Delta fixtures are missing (tests/data/delta-tables, or set D2O_SHARED_TABLES)" >&2
    exit 1
fi

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "official Python connector against d2o"
cargo build --locked -p d2o-cli
venv="$(scripts/python-env.sh)"
scripts/browser.sh  # Debian chromium + chromedriver for the real-browser tests
D2O_BIN="$CARGO_TARGET_DIR/debug/d2o" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
