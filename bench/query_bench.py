#!/usr/bin/env python3
"""Measure d2o's `/query` against the bare-kernel floor, and `/shares` throughput.

Usually run through `bench/query_bench.sh`, which builds the binaries (unless told not to) and
generates the table first. Standard library only; needs `wrk` for the throughput part (and `curl`
with `--reader curl`).

    bench/query_bench.py --d2o target/release/d2o --floor target/release/floor --table DIR

Steps (all on 127.0.0.1; every `/query` is `POST .../query` with body `{}`, read into memory by
this script straight from the socket, which counts lines (must be files + 2) and checks the first
three; `--reader curl` has curl read it and this script drain curl's output through a pipe, which
costs the shared cores a second process and a second copy):
1. `floor TABLE` 3 times (separate processes); the figures of the run with the median floor.
   The floor's own `peak_rss_mb` (VmHWM right after its streaming scan) and the whole process's
   peak (ru_maxrss from wait4: it also holds every batch and the whole NDJSON body) are recorded.
2. cold `/query`: start `d2o serve`, send one request, stop the server; `--cold` (3) times.
   Total time and time to the first byte (the reader's; with curl, also this script's wall time
   from starting curl), the time to the first `{"file"` line seen by this script, and the
   server's peak RSS (`VmHWM` in /proc/PID/status) afterwards.
3. warm `/query`: on the last cold server, the same request `--warm` (5) more times; median.
4. `GET .../shares` with wrk, 64 connections, 2 threads, 10 s, on that server (`--no-wrk` skips).
5. burst: start a fresh `d2o serve`, send `--burst` (8) requests at the same moment (one thread
   and one reader each); the wall time from the start until the last response has completed, and
   the server's `VmHWM` afterwards; on `--cold` fresh servers, median. Reported against the
   cold step's medians (this script's wall time, `VmHWM`): the single-flight targets.
6. uncached: a server with `fileListCacheMib: 0`, one request to warm the snapshot, then
   `--uncached` (10) more (the kernel scan on every request, snapshot and engine reused);
   `VmHWM` and `VmRSS` after each request, and the median time.
The server's CPU time (utime + stime, all threads) is recorded for every request too, as a
figure less disturbed than wall time by other work on the machine; so is this script's own CPU
time with its curl children, if any (the client's share of the 2 cores).

Writes the results as JSON (with the load average before and after, to spot a busy machine) to
`bench/results/query.json` for a 100,000-file table, `query-<N>k.json` otherwise (or `--out`),
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOKEN = "d2o-bench-token"
SHARE, SCHEMA, TABLE = "bench", "default", "t"

# Targets from the benchmark issues.
COLD_MAX_X_FLOOR = 1.3  # [10]; 1.5 before it
WARM_MAX_X_FLOOR = 0.3  # [10]; 0.5 before it
PEAK_RSS_MAX_MB = 150.0  # one cold query: <= 150 MB
TTFB_MAX_FRACTION = 0.1  # "far below total": first byte within 10 % of the total
BURST_WALL_MAX_X_COLD = 1.3  # N concurrent cold queries vs one (single flight)
BURST_HWM_MAX_X_COLD = 1.5
UNCACHED_HWM_MAX_MB = 200.0  # after the uncached repeats: < 200 MB

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(f"query_bench: {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def r1(x: float) -> float:
    return round(x, 1)


def client_cpu_ms() -> float:
    """User + system CPU time of this script (all threads) and of its reaped children (curl)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


class Server:
    """A `d2o serve` process over the benchmark table."""

    def __init__(self, d2o: str, table: Path, workdir: Path, cache_mib: int | None = None) -> None:
        cfg = workdir / f"server-{os.getpid()}-{time.monotonic_ns()}.yaml"
        extra = f"fileListCacheMib: {cache_mib}\n" if cache_mib is not None else ""
        cfg.write_text(
            "version: 1\n"
            "shares:\n"
            f"- name: {SHARE}\n"
            "  schemas:\n"
            f"  - name: {SCHEMA}\n"
            "    tables:\n"
            f"    - name: {TABLE}\n"
            f"      location: {table.resolve().as_uri()}\n"
            "host: 127.0.0.1\n"
            "port: 0\n"
            "authorization:\n"
            f"  bearerToken: {TOKEN}\n" + extra
        )
        self.stderr = open(workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [d2o, "serve", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        self.base = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                raise SystemExit(f"d2o serve exited early (code {self.proc.wait()}); see {workdir / 'server.log'}")
            m = re.search(r"d2o serving Delta Sharing at (http://\S+)", line)
            if m:
                self.base = m.group(1)
                break
        if not self.base:
            self.stop()
            raise SystemExit("d2o serve did not report its address within 30 s")
        # Keep draining stdout so the server can never block on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.host_port = self.base.split("/")[2]

    def url(self, path: str) -> str:
        return self.base + path

    def _status_mb(self, field: str) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"{field}:\s+(\d+) kB", status)
        return int(m.group(1)) * 1024 / 1e6 if m else 0.0

    def vm_hwm_mb(self) -> float:
        """Peak resident size so far, MB (10^6 bytes)."""
        return self._status_mb("VmHWM")

    def vm_rss_mb(self) -> float:
        """Current resident size, MB (10^6 bytes)."""
        return self._status_mb("VmRSS")

    def cpu_ms(self) -> float:
        """User + system CPU time the server has used so far (all threads)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def query(server: Server) -> dict:
    """One `/query`, read by the reader `--reader` chose (`READER`): total and first-byte times,
    time to the first file line, bytes, line count, and the first lines as `head`."""
    return query_curl(server) if READER == "curl" else query_python(server)


# How `/query` answers are read: "python" (this process, straight from the socket) or "curl"
# (a curl process whose output this process drains through a pipe). Set by `--reader`.
READER = "python"


def query_python(server: Server) -> dict:
    """The answer read by this process from the socket into one reused buffer: one copy out of
    the kernel, as an application reading the body into memory makes. Times are from before the
    connection to the last byte; first byte is when the status line and headers were in."""
    host, port = server.host_port.rsplit(":", 1)
    path = server.url(f"/shares/{SHARE}/schemas/{SCHEMA}/tables/{TABLE}/query").split(server.host_port, 1)[1]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    # Small enough that the first file line is seen when it arrives: http.client fills the
    # whole buffer before it returns.
    buf = bytearray(1 << 18)
    view = memoryview(buf)
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        conn.request("POST", path, body=b"{}", headers=headers)
        resp = conn.getresponse()
        ttfb_s = time.monotonic() - t0
        if resp.status != 200:
            raise SystemExit(f"query failed: HTTP {resp.status}: {resp.read()[:500]!r}")
        newlines, size, first_file_s, head = 0, 0, None, b""
        while n := resp.readinto(view):
            size += n
            newlines += buf.count(b"\n", 0, n)
            if first_file_s is None and newlines >= 3:
                first_file_s = time.monotonic() - t0
            if head.count(b"\n") < 3:
                head += bytes(view[:n])
    finally:
        conn.close()
    total_ms = (time.monotonic() - t0) * 1000
    return {
        "total_ms": total_ms,
        "ttfb_ms": ttfb_s * 1000,
        "wall_ms": total_ms,
        "first_file_ms": (first_file_s or 0.0) * 1000,
        "bytes": size,
        "lines": newlines,
        "head": head,
    }


def query_curl(server: Server) -> dict:
    """The answer read by curl and drained from its output by this script; curl's own total and
    first-byte times, and this script's wall time from starting curl to the last byte."""
    url = server.url(f"/shares/{SHARE}/schemas/{SCHEMA}/tables/{TABLE}/query")
    cmd = [
        "curl", "-sS", "--no-buffer", "-X", "POST", url,
        "-H", f"Authorization: Bearer {TOKEN}", "-H", "Content-Type: application/json",
        "--data", "{}", "-o", "-",
        "-w", "%{stderr}%{http_code} %{time_starttransfer} %{time_total} %{size_download}\n",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    fd = proc.stdout.fileno()
    newlines = 0
    first_file_s = None
    size = 0
    head = b""
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        size += len(chunk)
        newlines += chunk.count(b"\n")
        if first_file_s is None and newlines >= 3:
            first_file_s = time.monotonic() - t0
        if head.count(b"\n") < 3:
            head += chunk
    wall_s = time.monotonic() - t0
    err = proc.stderr.read().decode()
    proc.wait()
    fields = err.strip().splitlines()[-1].split() if err.strip() else []
    if proc.returncode != 0 or len(fields) != 4 or fields[0] != "200":
        raise SystemExit(f"query failed: curl exit {proc.returncode}: {err.strip()[:500]}")
    return {
        "total_ms": float(fields[2]) * 1000,
        "ttfb_ms": float(fields[1]) * 1000,
        "wall_ms": wall_s * 1000,
        "first_file_ms": (first_file_s or 0.0) * 1000,
        "bytes": size,
        "lines": newlines,
        "head": head,
    }


def checked_query(server: Server, files: int, what: str) -> dict:
    """`query`, failing unless the body is protocol, metaData, then `files` file lines."""
    q = query(server)
    if q["lines"] != files + 2:
        raise SystemExit(f"{what}: {q['lines']} lines, want {files + 2}")
    lines = q.pop("head").split(b"\n")[:3]
    try:
        first, second, third = (json.loads(x) for x in lines)
    except ValueError as e:
        raise SystemExit(f"{what}: unexpected response start {lines[:3]!r}: {e}") from None
    if "protocol" not in first or "metaData" not in second or "file" not in third:
        raise SystemExit(f"{what}: unexpected response shape: {list(first)} {list(second)} {list(third)}")
    return q


def run_floor(floor: str, table: Path, runs: int, workdir: Path) -> dict:
    results = []
    for i in range(runs):
        with open(workdir / "floor.log", "w+b") as err:
            proc = subprocess.Popen([floor, str(table)], stdout=subprocess.PIPE, stderr=err)
            assert proc.stdout is not None
            out = proc.stdout.read().decode()
            proc.stdout.close()
            # wait4 rather than wait: it also gives the process's peak RSS (ru_maxrss, KiB).
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"floor exited with {proc.returncode}: {err.read().decode(errors='replace')[-2000:]}")
        res = json.loads(out.strip().splitlines()[-1])
        res["max_rss_mb"] = r1(usage.ru_maxrss * 1024 / 1e6)
        log(f"floor run {i + 1}: scan {res['scan_ms']} ms + serialize {res['serialize_ms']} ms = {res['floor_ms']} ms, "
            f"peak RSS {res['peak_rss_mb']} MB after the scan, {res['max_rss_mb']} MB process")  # fmt: skip
        results.append(res)
    # The figures of the run with the median floor, so that scan + serialize = floor.
    mid = sorted(results, key=lambda r: r["floor_ms"])[len(results) // 2]
    keys = ["scan_ms", "serialize_ms", "floor_ms", "peak_rss_mb", "snapshot_ms", "scan_iter_ms", "warm_scan_ms", "peak_rss_end_mb", "max_rss_mb"]
    med = {k: r1(mid[k]) for k in keys}
    files = {r["files"] for r in results}
    if len(files) != 1:
        raise SystemExit(f"floor runs disagree on the file count: {files}")
    return {"files": files.pop(), "ndjson_bytes": results[0]["ndjson_bytes"], "runs": results, **med}


def run_burst(server: Server, n: int, files: int) -> dict:
    """`n` cold `/query`s sent at the same moment to a fresh server."""
    go = threading.Barrier(n + 1)
    done: list[dict | None] = [None] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        go.wait()
        try:
            q = checked_query(server, files, f"burst request {i + 1}")
            q["done"] = time.monotonic()
            done[i] = q
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    cpu0, client0 = server.cpu_ms(), client_cpu_ms()
    go.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    qs = [q for q in done if q is not None]
    return {
        "wall_ms": r1((max(q["done"] for q in qs) - t0) * 1000),
        "vmhwm_mb": r1(server.vm_hwm_mb()),
        "server_cpu_ms": r1(server.cpu_ms() - cpu0),
        "client_cpu_ms": r1(client_cpu_ms() - client0),
        "request_wall_ms": [r1((q["done"] - t0) * 1000) for q in qs],
        "request_ttfb_ms": [r1(q["ttfb_ms"]) for q in qs],
    }


def run_wrk(server: Server, seconds: int, connections: int, threads: int) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        log("wrk not found; skipping /shares throughput")
        return {}
    url = server.url("/shares")
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {TOKEN}", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)

    def lat(p: str) -> str | None:
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        return m.group(1) if m else None

    return {
        "connections": connections,
        "threads": threads,
        "seconds": seconds,
        "requests": total,
        "req_per_s": round(rps),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else None,
        "latency_p50": lat("50"),
        "latency_p99": lat("99"),
        "raw": out,
    }


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem_gib = round(int(m.group(1)) / 1024 / 1024, 1) if m else 0.0
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip() if shutil.which("rustc") else ""
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": mem_gib, "kernel": platform.release(), "rustc": rustc}


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def git_revision() -> str:
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return out.stdout.strip()


def size_label(files: int) -> str:
    """`100k` for 100,000 files, as the table directories are named."""
    return f"{files // 1000}k" if files >= 1000 and files % 1000 == 0 else str(files)


def target(value: float | None, limit: float, op: str) -> dict:
    """A target entry; `pass` is None when the step was not run."""
    ok = None if value is None else (value <= limit if op == "<=" else value < limit)
    return {"value": value, "target": f"{op} {limit}", "pass": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description="d2o /query and /shares benchmark")
    ap.add_argument("--d2o", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--table", required=True, type=Path)
    ap.add_argument("--out", type=Path, help="default bench/results/query.json (100,000 files) or query-<N>k.json")
    ap.add_argument("--floor-runs", type=int, default=3)
    ap.add_argument("--cold", type=int, default=3, help="fresh servers for the cold step, and for the burst step")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--burst", type=int, default=8, help="concurrent cold requests per burst (0: skip the step)")
    ap.add_argument("--uncached", type=int, default=10, help="requests after the warm-up with fileListCacheMib: 0 (0: skip)")
    ap.add_argument("--no-wrk", action="store_true", help="skip the /shares throughput (wrk) step")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--reader",
        choices=["python", "curl"],
        default="python",
        help="who reads /query answers: this process from the socket (default), or curl through a pipe (as before 2026-12-07)",
    )
    args = ap.parse_args()
    global READER
    READER = args.reader
    if args.cold < 1 or args.warm < 1 or args.floor_runs < 1:
        ap.error("--cold, --warm and --floor-runs must be at least 1")
    started = time.monotonic()
    load_before = loadavg()
    if load_before and load_before[0] > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load_before[0]} before the run; other work on the machine skews the figures")

    work = Path(tempfile.mkdtemp(prefix="d2o-bench-"))
    servers: list[Server] = []

    def start(cache_mib: int | None = None) -> Server:
        s = Server(args.d2o, args.table, work, cache_mib=cache_mib)
        servers.append(s)
        return s

    try:
        log("floor")
        floor = run_floor(args.floor, args.table, args.floor_runs, work)
        files = floor["files"]

        cold, hwm = [], []
        server = None
        for i in range(args.cold):
            if server is not None:
                server.stop()
            server = start()
            cpu0, client0 = server.cpu_ms(), client_cpu_ms()
            q = checked_query(server, files, "cold query")
            q["cpu_ms"] = server.cpu_ms() - cpu0
            q["client_cpu_ms"] = client_cpu_ms() - client0
            hwm.append(server.vm_hwm_mb())
            log(f"cold {i + 1}: {q['total_ms']:.0f} ms, ttfb {q['ttfb_ms']:.1f} ms, first file {q['first_file_ms']:.1f} ms, "
                f"{q['bytes'] / 1e6:.1f} MB, server CPU {q['cpu_ms']:.0f} ms, VmHWM {hwm[-1]:.0f} MB")  # fmt: skip
            cold.append(q)
        assert server is not None
        warm = []
        for i in range(args.warm):
            cpu0 = server.cpu_ms()
            q = checked_query(server, files, "warm query")
            q["cpu_ms"] = server.cpu_ms() - cpu0
            log(f"warm {i + 1}: {q['total_ms']:.0f} ms, ttfb {q['ttfb_ms']:.1f} ms, server CPU {q['cpu_ms']:.0f} ms")
            warm.append(q)
        hwm_after_warm = server.vm_hwm_mb()
        shares: dict = {}
        if args.no_wrk:
            log("/shares throughput skipped (--no-wrk)")
        else:
            log("/shares throughput")
            shares = run_wrk(server, args.wrk_seconds, args.connections, args.threads)
        server.stop()

        bursts = []
        for i in range(args.cold if args.burst > 0 else 0):
            server = start()
            b = run_burst(server, args.burst, files)
            server.stop()
            log(f"burst {i + 1}: {args.burst} concurrent cold queries in {b['wall_ms']:.0f} ms, VmHWM {b['vmhwm_mb']:.0f} MB, "
                f"server CPU {b['server_cpu_ms']:.0f} ms, client CPU {b['client_cpu_ms']:.0f} ms")  # fmt: skip
            bursts.append(b)

        uncached, uncached_hwm, uncached_rss = [], [], []
        uncached_start_rss = None
        if args.uncached > 0:
            server = start(cache_mib=0)
            uncached_start_rss = server.vm_rss_mb()
            checked_query(server, files, "uncached warm-up query")  # builds the engine and snapshot
            uncached_hwm.append(server.vm_hwm_mb())
            uncached_rss.append(server.vm_rss_mb())
            log(f"uncached warm-up: VmHWM {uncached_hwm[-1]:.0f} MB, VmRSS {uncached_rss[-1]:.0f} MB")
            for i in range(args.uncached):
                cpu0 = server.cpu_ms()
                q = checked_query(server, files, "uncached query")
                q["cpu_ms"] = server.cpu_ms() - cpu0
                uncached_hwm.append(server.vm_hwm_mb())
                uncached_rss.append(server.vm_rss_mb())
                log(f"uncached {i + 1}: {q['total_ms']:.0f} ms, server CPU {q['cpu_ms']:.0f} ms, "
                    f"VmHWM {uncached_hwm[-1]:.0f} MB, VmRSS {uncached_rss[-1]:.0f} MB")  # fmt: skip
                uncached.append(q)
            server.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    floor_ms = floor["floor_ms"]
    cold_ms = median([q["total_ms"] for q in cold])
    cold_wall_ms = median([q["wall_ms"] for q in cold])
    cold_hwm = median(hwm)
    warm_ms = median([q["total_ms"] for q in warm])
    first_file_ms = median([q["first_file_ms"] for q in cold])
    ttfb_ms = median([q["ttfb_ms"] for q in cold])
    peak_mb = max(hwm + [hwm_after_warm])
    burst_wall = median([b["wall_ms"] for b in bursts]) if bursts else None
    burst_hwm = median([b["vmhwm_mb"] for b in bursts]) if bursts else None
    burst_wall_x = round(burst_wall / cold_wall_ms, 2) if bursts else None
    burst_hwm_x = round(burst_hwm / cold_hwm, 2) if bursts else None
    uncached_final_hwm = r1(uncached_hwm[-1]) if uncached_hwm else None
    results = {
        "machine": machine(),
        "reader": READER,
        "table": {"path": str(args.table), "files": files},
        "binaries": {"d2o": str(Path(args.d2o).resolve()), "floor": str(Path(args.floor).resolve())},
        "floor": floor,
        "query": {
            "response_bytes": cold[0]["bytes"],
            "response_lines": cold[0]["lines"],
            "cold_ms": r1(cold_ms),
            "cold_samples_ms": [r1(q["total_ms"]) for q in cold],
            "cold_wall_ms": r1(cold_wall_ms),
            "cold_wall_samples_ms": [r1(q["wall_ms"]) for q in cold],
            "cold_cpu_ms": r1(median([q["cpu_ms"] for q in cold])),
            "cold_client_cpu_ms": r1(median([q["client_cpu_ms"] for q in cold])),
            "cold_ttfb_ms": r1(ttfb_ms),
            "cold_first_file_ms": r1(first_file_ms),
            "warm_ms": r1(warm_ms),
            "warm_samples_ms": [r1(q["total_ms"]) for q in warm],
            "warm_cpu_ms": r1(median([q["cpu_ms"] for q in warm])),
            "warm_ttfb_ms": r1(median([q["ttfb_ms"] for q in warm])),
            "uncached_repeat_ms": r1(median([q["total_ms"] for q in uncached])) if uncached else None,
            "uncached_samples_ms": [r1(q["total_ms"]) for q in uncached],
            "uncached_cpu_ms": r1(median([q["cpu_ms"] for q in uncached])) if uncached else None,
            # After the server start, then after the warm-up request and each of the repeats.
            "uncached_vmrss_at_start_mb": r1(uncached_start_rss) if uncached_start_rss is not None else None,
            "uncached_vmhwm_mb": [r1(x) for x in uncached_hwm],
            "uncached_vmrss_mb": [r1(x) for x in uncached_rss],
            "peak_rss_mb": r1(peak_mb),
            "peak_rss_cold_mb": r1(cold_hwm),
            "peak_rss_after_cold_mb": [r1(x) for x in hwm],
            "peak_rss_after_warm_mb": r1(hwm_after_warm),
            "peak_rss_uncached_server_mb": uncached_final_hwm,
        },
        "burst": {
            "concurrency": args.burst if bursts else 0,
            "wall_ms": r1(burst_wall) if bursts else None,
            "vmhwm_mb": burst_hwm,
            "server_cpu_ms": r1(median([b["server_cpu_ms"] for b in bursts])) if bursts else None,
            "client_cpu_ms": r1(median([b["client_cpu_ms"] for b in bursts])) if bursts else None,
            "single_cold_wall_ms": r1(cold_wall_ms),
            "single_cold_vmhwm_mb": r1(cold_hwm),
            "runs": bursts,
        },
        "shares": {k: v for k, v in shares.items() if k != "raw"},
        "targets": {
            "cold_vs_floor": {"value": round(cold_ms / floor_ms, 2), "target": f"<= {COLD_MAX_X_FLOOR}", "pass": cold_ms <= COLD_MAX_X_FLOOR * floor_ms},
            "warm_vs_floor": {"value": round(warm_ms / floor_ms, 2), "target": f"<= {WARM_MAX_X_FLOOR}", "pass": warm_ms <= WARM_MAX_X_FLOOR * floor_ms},
            "peak_rss_mb": target(r1(peak_mb), PEAK_RSS_MAX_MB, "<="),
            "streamed": {
                "value": round(ttfb_ms / cold_ms, 3),
                "target": f"cold TTFB <= {TTFB_MAX_FRACTION} x cold total",
                "pass": ttfb_ms <= TTFB_MAX_FRACTION * cold_ms,
            },
            "burst_wall_vs_cold": target(burst_wall_x, BURST_WALL_MAX_X_COLD, "<="),
            "burst_vmhwm_vs_cold": target(burst_hwm_x, BURST_HWM_MAX_X_COLD, "<="),
            "uncached_vmhwm_mb": target(uncached_final_hwm, UNCACHED_HWM_MAX_MB, "<"),
            "shares_req_per_s": {
                "value": shares.get("req_per_s"),
                "target": f"reported ({args.connections} connections)",
                "pass": shares.get("non_2xx") == 0 if shares else None,
            },
        },
        "bench_seconds": round(time.monotonic() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "git": git_revision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out
    if out is None:
        out = RESULTS / ("query.json" if files == 100_000 else f"query-{size_label(files)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    print(markdown(results))


def markdown(r: dict) -> str:
    f, q, b, s, t = r["floor"], r["query"], r["burst"], r["shares"], r["targets"]

    def ok(entry: dict, label: str) -> str:
        verdict = {True: "pass", False: "**FAIL**", None: "not run"}[entry["pass"]]
        return f"{label}: {verdict}"

    n_cold, n_warm, n_unc = len(q["cold_samples_ms"]), len(q["warm_samples_ms"]), len(q["uncached_samples_ms"])
    series = lambda xs: " → ".join(f"{x:.0f}" for x in xs)  # noqa: E731
    rows = [
        ("files / response", f"{r['table']['files']:,} files, {q['response_lines']:,} lines, {q['response_bytes'] / 1e6:.1f} MB", ""),
        ("floor: kernel scan (cold, engine+snapshot+scan)", f"{f['scan_ms']} ms", ""),
        ("floor: serialize NDJSON", f"{f['serialize_ms']} ms", ""),
        ("**floor** (scan + serialize)", f"**{f['floor_ms']} ms**", ""),
        (
            "floor peak RSS",
            f"{f['peak_rss_mb']} MB after the streaming scan; {f.get('max_rss_mb', '-')} MB whole process (batches + body held)",
            "",
        ),
        (
            f"cold `/query` (median of {n_cold} fresh servers)",
            f"{q['cold_ms']} ms = {t['cold_vs_floor']['value']}x floor (server CPU {q['cold_cpu_ms']} ms, client CPU {q['cold_client_cpu_ms']} ms)",
            ok(t["cold_vs_floor"], f"<= {COLD_MAX_X_FLOOR}x"),
        ),
        (
            f"warm `/query` (median of {n_warm})",
            f"{q['warm_ms']} ms = {t['warm_vs_floor']['value']}x floor (server CPU {q['warm_cpu_ms']} ms)",
            ok(t["warm_vs_floor"], f"<= {WARM_MAX_X_FLOOR}x"),
        ),
        ("cold TTFB (headers) / first file line", f"{q['cold_ttfb_ms']} ms / {q['cold_first_file_ms']} ms", ok(t["streamed"], "TTFB <= 0.1x total")),
        (
            "server peak RSS (VmHWM, cold and warm) vs floor",
            f"{q['peak_rss_mb']} MB (cold median {q['peak_rss_cold_mb']} MB); floor {f['peak_rss_mb']} MB / {f.get('max_rss_mb', '-')} MB",
            ok(t["peak_rss_mb"], f"<= {PEAK_RSS_MAX_MB:.0f} MB"),
        ),
    ]
    if b["runs"]:
        rows += [
            (
                f"burst: {b['concurrency']} concurrent cold `/query` (median of {len(b['runs'])} fresh servers)",
                f"{b['wall_ms']} ms to the last response = {t['burst_wall_vs_cold']['value']}x one cold ({b['single_cold_wall_ms']} ms) "
                f"(server CPU {b['server_cpu_ms']} ms, client CPU {b['client_cpu_ms']} ms)",
                ok(t["burst_wall_vs_cold"], f"<= {BURST_WALL_MAX_X_COLD}x"),
            ),
            (
                "burst: server VmHWM",
                f"{b['vmhwm_mb']} MB = {t['burst_vmhwm_vs_cold']['value']}x one cold ({b['single_cold_vmhwm_mb']} MB)",
                ok(t["burst_vmhwm_vs_cold"], f"<= {BURST_HWM_MAX_X_COLD}x"),
            ),
        ]
    else:
        rows.append(("burst of concurrent cold `/query`", "not run", ""))
    if n_unc:
        rows += [
            (
                f"uncached repeat (`fileListCacheMib: 0`, median of {n_unc})",
                f"{q['uncached_repeat_ms']} ms (server CPU {q['uncached_cpu_ms']} ms)",
                "",
            ),
            (
                f"uncached: VmHWM after warm-up + {n_unc} requests",
                f"{q['peak_rss_uncached_server_mb']} MB (VmRSS {series(q['uncached_vmrss_mb'])} MB)",
                ok(t["uncached_vmhwm_mb"], f"< {UNCACHED_HWM_MAX_MB:.0f} MB"),
            ),
        ]
    else:
        rows.append(("uncached repeat (`fileListCacheMib: 0`)", "not run", ""))
    rows.append(
        (
            f"`/shares` at {s.get('connections', '-')} connections",
            f"{s['req_per_s']:,} req/s (p50 {s.get('latency_p50')}, p99 {s.get('latency_p99')})" if s else "not run",
            ok(t["shares_req_per_s"], "reported") if s else "",
        )
    )
    lines = ["| measure | value | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
