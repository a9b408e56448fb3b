#!/usr/bin/env python3
"""Authentication and authorisation cost: /shares and /metadata served from a catalog with
1,000 recipients and 10,000 tables, against the same requests served from a YAML config.

    python3 bench/catalog_bench.py [--duration 10] [--connections 64]

Builds the release d2o, writes a reference YAML with 10,000 tables (100 schemas x 100 tables,
all pointing at one small Delta table), imports it into a SQLite catalog, creates 1,000
recipients through the admin API and grants them the share, then runs `wrk` (installed with
apt-get if missing) against both servers on 127.0.0.1. `D2O_BIN=path` skips the build. Prints a markdown table and writes
bench/results/catalog.json.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "d2o-target"))
TABLE = Path(os.environ.get("D2O_SHARED_TABLES", REPO / "tests" / "data" / "delta-tables")) / "basic_partitioned" / "delta"
ADMIN = "bench-admin-token-0123456789"
YAML_TOKEN = "bench-yaml-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log):
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    port = int(args[args.index("--port") + 1])
    for _ in range(300):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"server did not start: {args}")


def wrk(url: str, token: str, duration: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    to_ms = lambda m: float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return {"rps": rps, "p50_ms": to_ms(p50), "p99_ms": to_ms(p99), "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--schemas", type=int, default=100)
    ap.add_argument("--tables-per-schema", type=int, default=100)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    d2o = os.environ.get("D2O_BIN")
    if not d2o:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "d2o-cli"], cwd=REPO, check=True)
        d2o = str(TARGET / "release" / "d2o")
    work = Path(tempfile.mkdtemp(prefix="d2o-catalog-bench-"))
    lines = ["version: 1", "shares:", "- name: bench", "  schemas:"]
    for s in range(a.schemas):
        lines += [f"  - name: schema{s:03}", "    tables:"]
        for t in range(a.tables_per_schema):
            lines += [f"    - name: table{t:03}", f"      location: {TABLE}"]
    yaml_port = free_port()
    lines += ["authorization:", f"  bearerToken: {YAML_TOKEN}", "host: 127.0.0.1", f"port: {yaml_port}"]
    (work / "server.yaml").write_text("\n".join(lines) + "\n")
    catalog = str(work / "d2o.db")
    subprocess.run([d2o, "catalog", "import", str(work / "server.yaml"), "--catalog", catalog], check=True, capture_output=True)

    cat_port = free_port()
    log = open(work / "server.log", "w")
    cat, _ = start([d2o, "serve", "--catalog", catalog, "--host", "127.0.0.1", "--port", str(cat_port), "--admin-token", ADMIN], log)
    conn = http.client.HTTPConnection("127.0.0.1", cat_port)
    token = None
    for i in range(a.recipients):
        conn.request("POST", "/admin/v1/recipients", json.dumps({"name": f"recipient{i:04}"}),
                     {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
        body = json.loads(conn.getresponse().read())
        if i == a.recipients // 2:
            token = body["token"]["token"]
        conn.request("PUT", f"/admin/v1/shares/bench/recipients/recipient{i:04}", headers={"Authorization": f"Bearer {ADMIN}"})
        conn.getresponse().read()
    yml, _ = start([d2o, "serve", "--config", str(work / "server.yaml"), "--port", str(yaml_port)], log)

    table = f"schema{a.schemas // 2:03}/tables/table{a.tables_per_schema // 2:03}"
    results = {"recipients": a.recipients, "tables": a.schemas * a.tables_per_schema, "connections": a.connections,
               "duration_s": a.duration, "runs": {}}
    try:
        for name, path in [("/shares", "/delta-sharing/shares"),
                           ("/metadata", f"/delta-sharing/shares/bench/schemas/{table}/metadata")]:
            for source, port, tok in [("yaml", yaml_port, YAML_TOKEN), ("catalog", cat_port, token)]:
                wrk(f"http://127.0.0.1:{port}{path}", tok, 2, a.connections)  # warm-up
                results["runs"][f"{name} {source}"] = wrk(f"http://127.0.0.1:{port}{path}", tok, a.duration, a.connections)
    finally:
        for p in (cat, yml):
            p.terminate()
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalog.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{a.recipients} recipients, {a.schemas * a.tables_per_schema} tables, wrk {a.connections} connections, {a.duration}s\n")
    print("| endpoint | source | req/s | p50 ms | p99 ms | non-2xx | catalog / yaml |")
    print("|---|---|---|---|---|---|---|")
    for name in ["/shares", "/metadata"]:
        y, c = results["runs"][f"{name} yaml"], results["runs"][f"{name} catalog"]
        for source, r in [("yaml", y), ("catalog", c)]:
            ratio = f"{y['rps'] / c['rps']:.2f}x slower" if source == "catalog" else ""
            print(f"| {name} | {source} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} | {ratio} |")


if __name__ == "__main__":
    main()
