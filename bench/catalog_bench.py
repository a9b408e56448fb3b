#!/usr/bin/env python3
"""Authentication and authorisation cost: /shares and /metadata served from a catalog with
1,000 recipients and 10,000 tables (SQLite and PostgreSQL), against the same requests served
from a YAML config.

    python3 bench/catalog_bench.py [--backends sqlite,postgres] [--rounds 1] [--duration 10]
                                   [--connections 64] [--postgres ADMIN_URL]

Builds the release d2o, writes a reference YAML with 10,000 tables (100 schemas x 100 tables,
all pointing at one small Delta table) and imports it into a catalog per backend: a SQLite file,
and a fresh PostgreSQL database `d2o_catalog_bench_<random>` (created through the admin URL,
dropped at the end). On each catalog server it creates 1,000 recipients through the admin API and
grants them the share. Then, per round and per endpoint, it runs `wrk` (installed with apt-get if
missing) against the YAML server and each catalog server back to back (the order rotates from
round to round, so no source always goes first), all on 127.0.0.1. `D2O_BIN=path` skips the build.
The work directory (YAML, SQLite catalog, server logs) is removed after a successful run unless
--keep-work is given, and kept after a failure.

The PostgreSQL admin URL is --postgres, else $D2O_TEST_POSTGRES (as the Python suite uses it),
else postgres://postgres@127.0.0.1:5432/postgres; the catalog URL is the same with the new
database's name as its path.

Prints every run and, per endpoint and backend, the median over the rounds of YAML req/s /
backend req/s against the target (catalog <= 1.2x YAML); writes bench/results/catalog.json.
Besides wrk's figures each run records the server's CPU per request, how idle the machine was,
and the audit events the run added to the catalog (a check that every request was recorded);
PostgreSQL runs also record transactions and WAL flushes per request (from the statistics
views, which PostgreSQL updates up to 10 s late: read once the next run has started, so
approximate with short --duration).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "d2o-target"))
TABLE = Path(os.environ.get("D2O_SHARED_TABLES", REPO / "tests" / "data" / "delta-tables")) / "basic_partitioned" / "delta"
ADMIN = "bench-admin-token-0123456789"
YAML_TOKEN = "bench-yaml-token"
BACKENDS = ("sqlite", "postgres")
LABEL = {"yaml": "YAML", "sqlite": "SQLite", "postgres": "PostgreSQL"}
TARGET_RATIO = 1.2  # catalog req/s may be at most this many times slower than YAML
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, env=None):
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    port = int(args[args.index("--port") + 1])
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode} (see {log.name}): {args}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"server did not start (see {log.name}): {args}")


def stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, token: str, duration: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    to_ms = lambda m: float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[m.group(2)]
    return {"rps": rps, "requests": requests, "p50_ms": to_ms(p50), "p99_ms": to_ms(p99),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0}


def process_cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def postgres_cpu_ms() -> float:
    """CPU time so far of every live PostgreSQL process (backends, WAL writer, ...)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] == "postgres":
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK
    return total


def machine_cpu() -> tuple:
    """(idle, total) jiffies of the whole machine so far."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return values[3] + values[4], sum(values)


# --------------------------------------------------------------------------- PostgreSQL
# As tests/python/conftest.py: an admin URL, a fresh database per run, dropped at the end.


def psql(url: str, statement: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("psql") or "psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", statement],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PGCONNECT_TIMEOUT="5"),
    )


def fresh_database(admin: str) -> tuple:
    """(catalog URL, database name) of a new, empty database."""
    if shutil.which("psql") is None:
        sys.exit("psql is not installed (apt-get install postgresql-client), or pass --backends sqlite")
    name = f"d2o_catalog_bench_{uuid.uuid4().hex[:12]}"
    done = psql(admin, f"CREATE DATABASE {name}")
    if done.returncode != 0:
        sys.exit(f"cannot create a database through {admin}: {done.stderr.strip()} (or pass --backends sqlite)")
    return urllib.parse.urlsplit(admin)._replace(path=f"/{name}").geturl(), name


def drop_database(admin: str, name: str) -> None:
    dropped = psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if dropped.returncode != 0:
        print(f"warning: could not drop the database {name}: {dropped.stderr.strip()}", file=sys.stderr)


def postgres_stats(url: str) -> dict:
    """The database's committed transactions and the cluster's WAL writes and flushes so far."""
    done = psql(url, "SELECT d.xact_commit, w.wal_write, w.wal_sync FROM pg_stat_database d, pg_stat_wal w "
                     "WHERE d.datname = current_database()")
    if done.returncode != 0:
        return {}
    xact, wal_write, wal_sync = (int(v) for v in done.stdout.strip().split("|"))
    return {"xact_commit": xact, "wal_write": wal_write, "wal_sync": wal_sync}


# --------------------------------------------------------------------------- the servers


class Source:
    """A server to measure: YAML, or a catalog backend."""

    def __init__(self, name: str, proc, port: int, token: str, catalog: str | None = None):
        self.name, self.proc, self.port, self.token, self.catalog = name, proc, port, token, catalog

    def audit_events(self) -> int | None:
        """Audit events stored in the catalog so far (None for YAML)."""
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True, timeout=30)) as db:
                return db.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        if self.name == "postgres":
            done = psql(self.catalog, "SELECT count(*) FROM audit_events")
            return int(done.stdout) if done.returncode == 0 else None
        return None


def populate(d2o: str, yaml: Path, name: str, catalog: str, recipients: int, work: Path, sources: list) -> None:
    """Imports the YAML into `catalog`, starts a server on it (added to `sources`) and creates
    the recipients; the source reads with the token of the middle one."""
    t0 = time.monotonic()
    subprocess.run([d2o, "catalog", "import", str(yaml), "--catalog", catalog], check=True, capture_output=True)
    t1 = time.monotonic()
    port = free_port()
    log = open(work / f"server-{name}.log", "w")
    proc, _ = start([d2o, "serve", "--catalog", catalog, "--host", "127.0.0.1", "--port", str(port)], log,
                    env=dict(os.environ, D2O_ADMIN_TOKEN=ADMIN))
    source = Source(name, proc, port, "", catalog)
    sources.append(source)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for i in range(recipients):
        conn.request("POST", "/admin/v1/recipients", json.dumps({"name": f"recipient{i:04}"}),
                     dict(admin, **{"Content-Type": "application/json"}))
        response = conn.getresponse()
        body = response.read()
        if response.status >= 300:
            sys.exit(f"{name}: creating recipient{i:04} failed: {response.status} {body[:500]!r}")
        if i == recipients // 2:
            source.token = json.loads(body)["token"]["token"]
        conn.request("PUT", f"/admin/v1/shares/bench/recipients/recipient{i:04}", headers=admin)
        response = conn.getresponse()
        body = response.read()
        if response.status >= 300:
            sys.exit(f"{name}: granting the share to recipient{i:04} failed: {response.status} {body[:500]!r}")
    conn.close()
    print(f"{LABEL[name]}: import {t1 - t0:.1f} s, {recipients} recipients {time.monotonic() - t1:.1f} s", flush=True)


def check(source: Source, paths: dict) -> None:
    """Each endpoint answers 200 to the source's token before it is measured."""
    for name, path in paths.items():
        conn = http.client.HTTPConnection("127.0.0.1", source.port, timeout=30)
        conn.request("GET", path, headers={"Authorization": f"Bearer {source.token}"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status != 200:
            sys.exit(f"{LABEL[source.name]} {name}: {response.status} {body[:500]!r}")


def measure(source: Source, path: str, a) -> dict:
    url = f"http://127.0.0.1:{source.port}{path}"
    events_before = source.audit_events()
    warm = wrk(url, source.token, a.warmup, a.connections) if a.warmup > 0 else {"requests": 0}
    cpu0, (idle0, total0) = process_cpu_ms(source.proc.pid), machine_cpu()
    pg0 = postgres_cpu_ms() if source.name == "postgres" else 0.0
    run = wrk(url, source.token, a.duration, a.connections)
    cpu1, (idle1, total1) = process_cpu_ms(source.proc.pid), machine_cpu()
    pg1 = postgres_cpu_ms() if source.name == "postgres" else 0.0
    requests = max(run["requests"], 1)
    run["server_cpu_us_per_req"] = round((cpu1 - cpu0) * 1000 / requests, 1)
    run["machine_idle_pct"] = round(100 * (idle1 - idle0) / max(total1 - total0, 1), 1)
    if source.name == "postgres":
        run["postgres_cpu_us_per_req"] = round((pg1 - pg0) * 1000 / requests, 1)
    if events_before is not None:
        time.sleep(0.5)  # responses cut off by wrk's end are still being recorded
        events = source.audit_events()
        if events is not None:
            # wrk counts completed responses only: the events of the requests it cut off at
            # its end (at most one per connection and wrk run) come on top.
            run["audit_events_added"] = events - events_before
            run["requests_incl_warmup"] = warm["requests"] + run["requests"]
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each measurement")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--schemas", type=int, default=100)
    ap.add_argument("--tables-per-schema", type=int, default=100)
    ap.add_argument("--backends", default=",".join(BACKENDS), help="catalog backends, comma-separated: sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole measurement; medians are reported")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the work directory (YAML, SQLite catalog, server logs) after a successful run")
    ap.add_argument("--postgres", default=os.environ.get("D2O_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"),
                    help="admin URL of PostgreSQL (a database to connect to for CREATE DATABASE)")
    a = ap.parse_args()
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends) or len(set(backends)) != len(backends):
        ap.error(f"--backends: a comma-separated list of {', '.join(BACKENDS)}")
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    d2o = os.environ.get("D2O_BIN")
    if not d2o:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "d2o-cli"], cwd=REPO, check=True)
        d2o = str(TARGET / "release" / "d2o")
    d2o = str(Path(d2o).expanduser())
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="d2o-catalog-bench-"))
    print(f"work directory: {work}", flush=True)
    yaml = work / "server.yaml"
    lines = ["version: 1", "shares:", "- name: bench", "  schemas:"]
    for s in range(a.schemas):
        lines += [f"  - name: schema{s:03}", "    tables:"]
        for t in range(a.tables_per_schema):
            lines += [f"    - name: table{t:03}", f"      location: {TABLE}"]
    yaml_port = free_port()
    lines += ["authorization:", f"  bearerToken: {YAML_TOKEN}", "host: 127.0.0.1", f"port: {yaml_port}"]
    yaml.write_text("\n".join(lines) + "\n")

    table = f"schema{a.schemas // 2:03}/tables/table{a.tables_per_schema // 2:03}"
    paths = {"/shares": "/delta-sharing/shares",
             "/metadata": f"/delta-sharing/shares/bench/schemas/{table}/metadata"}
    sources: list[Source] = []
    database = None
    runs: list[dict] = []
    pg_marks: list[tuple] = []  # (run index, statistics) taken before each PostgreSQL run
    try:
        yml, _ = start([d2o, "serve", "--config", str(yaml), "--port", str(yaml_port)], open(work / "server-yaml.log", "w"))
        sources.append(Source("yaml", yml, yaml_port, YAML_TOKEN))
        for backend in backends:
            if backend == "sqlite":
                catalog = str(work / "d2o.db")
            else:
                catalog, database = fresh_database(a.postgres)
                print(f"PostgreSQL catalog: {catalog}", flush=True)
            populate(d2o, yaml, backend, catalog, a.recipients, work, sources)
        for source in sources:
            check(source, paths)

        pg = next((s for s in sources if s.name == "postgres"), None)
        for r in range(a.rounds):
            # Every endpoint measures every source back to back; the order rotates per round.
            order = sources[r % len(sources):] + sources[:r % len(sources)]
            for endpoint, path in paths.items():
                for source in order:
                    if source is pg:
                        pg_marks.append((len(runs), postgres_stats(pg.catalog)))
                    run = measure(source, path, a)
                    runs.append({"round": r + 1, "endpoint": endpoint, "source": source.name, **run})
                    print(f"round {r + 1} {endpoint} {LABEL[source.name]}: {run['rps']:.0f} req/s, "
                          f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms", flush=True)
        if pg is not None:
            time.sleep(11)  # PostgreSQL's statistics reach its views up to 10 s late
            pg_marks.append((len(runs), postgres_stats(pg.catalog)))
    finally:
        for source in sources:
            stop(source.proc)
        if database:
            drop_database(a.postgres, database)
    load_after = os.getloadavg()

    # PostgreSQL statistics per run: what happened between the mark before it and the next.
    for (i, before), (_, after) in zip(pg_marks, pg_marks[1:]):
        run = runs[i]
        if before and after and run.get("requests_incl_warmup"):
            n = run["requests_incl_warmup"]
            run["postgres_xact_per_req"] = round((after["xact_commit"] - before["xact_commit"]) / n, 3)
            run["postgres_wal_flushes_per_req"] = round((after["wal_sync"] - before["wal_sync"]) / n, 3)

    # Ratios: YAML req/s / backend req/s of the same round and endpoint.
    by_key = {(run["round"], run["endpoint"], run["source"]): run for run in runs}
    for run in runs:
        if run["source"] != "yaml":
            run["yaml_over_source"] = round(by_key[(run["round"], run["endpoint"], "yaml")]["rps"] / run["rps"], 3)
    summary = {}
    for endpoint in paths:
        summary[endpoint] = {}
        for source in ["yaml", *backends]:
            mine = [run for run in runs if run["endpoint"] == endpoint and run["source"] == source]
            entry = {"median_rps": statistics.median(run["rps"] for run in mine),
                     "median_p50_ms": statistics.median(run["p50_ms"] for run in mine),
                     "median_p99_ms": statistics.median(run["p99_ms"] for run in mine)}
            if source != "yaml":
                ratios = [run["yaml_over_source"] for run in mine]
                entry.update(ratios=ratios, median_ratio=round(statistics.median(ratios), 3),
                             meets_target=statistics.median(ratios) <= TARGET_RATIO)
            summary[endpoint][source] = entry

    results = {
        "recipients": a.recipients, "tables": a.schemas * a.tables_per_schema, "connections": a.connections,
        "duration_s": a.duration, "warmup_s": a.warmup, "rounds": a.rounds, "backends": backends,
        "target_ratio": TARGET_RATIO, "binary": d2o,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "summary": summary, "runs": runs,
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalog.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{a.recipients} recipients, {a.schemas * a.tables_per_schema} tables, wrk {a.connections} connections, "
          f"{a.duration} s after a {a.warmup} s warm-up, {a.rounds} round(s), binary {d2o}")
    print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}\n")
    print("Every run (YAML / source: how many times fewer req/s than YAML in the same round):\n")
    print("| round | endpoint | source | req/s | p50 ms | p99 ms | non-2xx | errors | server CPU µs/req "
          "| machine idle % | audit events / requests | PG tx / req | PG WAL flushes / req | YAML / source |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in range(1, a.rounds + 1):
        for endpoint in paths:
            for source in ["yaml", *backends]:
                run = by_key[(r, endpoint, source)]
                audit = (f"{run['audit_events_added']} / {run['requests_incl_warmup']}"
                         if "audit_events_added" in run else "")
                ratio = f"{run['yaml_over_source']:.2f}x" if "yaml_over_source" in run else ""
                print(f"| {r} | {endpoint} | {LABEL[source]} | {run['rps']:.0f} | {run['p50_ms']:.2f} | "
                      f"{run['p99_ms']:.2f} | {run['non_2xx']} | {run['socket_errors']} | "
                      f"{run['server_cpu_us_per_req']:.0f} | {run['machine_idle_pct']:.0f} | {audit} | "
                      f"{run.get('postgres_xact_per_req', '')} | {run.get('postgres_wal_flushes_per_req', '')} | {ratio} |")
    print(f"\nMedians over {a.rounds} round(s); target: catalog <= {TARGET_RATIO}x YAML\n")
    print("| endpoint | source | req/s | p50 ms | p99 ms | YAML / source per round | median YAML / source | target |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for endpoint in paths:
        for source in ["yaml", *backends]:
            e = summary[endpoint][source]
            per_round = ", ".join(f"{x:.2f}x" for x in e.get("ratios", []))
            median = f"{e['median_ratio']:.2f}x" if "median_ratio" in e else ""
            verdict = "" if source == "yaml" else ("met" if e["meets_target"] else "MISSED")
            print(f"| {endpoint} | {LABEL[source]} | {e['median_rps']:.0f} | {e['median_p50_ms']:.2f} | "
                  f"{e['median_p99_ms']:.2f} | {per_round} | {median} | {verdict} |")
    if a.keep_work:
        print(f"\nwork directory (server logs, SQLite catalog): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)  # the servers log every request: hundreds of MB
    bad = [run for run in runs if run["non_2xx"]]
    if bad:
        print(f"\nwarning: {len(bad)} run(s) had non-2xx responses: those figures do not measure successful requests")


if __name__ == "__main__":
    main()
