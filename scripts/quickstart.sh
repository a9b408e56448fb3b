#!/usr/bin/env bash
# Builds d2o, shares every Delta table of a folder (default: the shared example tables) and reads
# each one back through the official Python connector, printing what a recipient sees.
#
#   scripts/quickstart.sh [TABLES_DIR]
#
# TABLES_DIR holds one Delta table per sub-folder (a folder with a _delta_log, or a
# <name>/delta/_delta_log layout as in tests/data/delta-tables).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tables="$(cd "${1:-${D2O_SHARED_TABLES:-$repo/tests/data/delta-tables}}" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/d2o-target}"

profile="${D2O_PROFILE:-debug}"   # debug shares its build with scripts/test.sh; release for speed
echo "== building d2o ($profile)" >&2
if [[ "$profile" == release ]]; then
    (cd "$repo" && cargo build --release --locked -p d2o-cli >&2)
else
    (cd "$repo" && cargo build --locked -p d2o-cli >&2)
fi
venv="$("$repo/scripts/python-env.sh")"

work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
token="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

python3 - "$tables" "$work/server.yaml" "$token" "$port" <<'PY'
import os, sys
tables, out, token, port = sys.argv[1:]
lines = ["version: 1", "shares:", "- name: examples", "  schemas:", "  - name: delta", "    tables:"]
for name in sorted(os.listdir(tables)):
    for root in (os.path.join(tables, name, "delta"), os.path.join(tables, name)):
        if os.path.isdir(os.path.join(root, "_delta_log")):
            lines += [f"    - name: {name.replace('-', '_')}", f"      location: {root}", "      historyShared: true"]
            break
lines += ["authorization:", f"  bearerToken: {token}", "host: 127.0.0.1", f"port: {port}"]
open(out, "w").write("\n".join(lines) + "\n")
PY

"$CARGO_TARGET_DIR/$profile/d2o" serve --config "$work/server.yaml" >"$work/server.out" 2>"$work/server.log" &
server=$!
python3 - "$port" <<'PY' || { cat "$work/server.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("d2o did not come up")
PY
printf '{"shareCredentialsVersion":1,"endpoint":"http://127.0.0.1:%s/delta-sharing","bearerToken":"%s"}\n' "$port" "$token" >"$work/config.share"
echo "== d2o is serving $tables at http://127.0.0.1:$port/delta-sharing" >&2

"$venv/bin/python" - "$work/config.share" <<'PY'
import sys, delta_sharing
profile = sys.argv[1]
client = delta_sharing.SharingClient(profile)
tables = client.list_all_tables()
print(f"{'table':55} {'version':>7} {'rows':>6} {'columns':>7}")
for t in tables:
    url = f"{profile}#{t.share}.{t.schema}.{t.name}"
    version = delta_sharing.get_table_version(url)
    df = delta_sharing.load_as_pandas(url)
    print(f"{t.share + '.' + t.schema + '.' + t.name:55} {version:>7} {len(df):>6} {len(df.columns):>7}")
print(f"\nread {len(tables)} shared tables through the official delta-sharing connector")
PY
