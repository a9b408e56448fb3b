#!/usr/bin/env python3
"""Measure d2o's `/query` against the bare-kernel floor, and `/shares` throughput.

Usually run through `bench/query_bench.sh`, which builds the binaries and generates the table
first. Standard library only; needs `curl`, and `wrk` for the throughput part.

    bench/query_bench.py --d2o target/release/d2o --floor target/release/floor --table DIR

Steps (all on 127.0.0.1):
1. `floor TABLE` 3 times (separate processes); the figures of the run with the median floor.
2. cold `/query`: start `d2o serve`, send one `POST .../query` with body `{}`, stop the server;
   3 times. Wall time and time to first byte from curl, time to the first `{"file"` line from
   the reader, and the line count (must be files + 2).
3. warm `/query`: on the last cold server, the same request 5 more times; median.
4. uncached repeat: a server with `fileListCacheMib: 0`, one request to warm the snapshot, then
   3 more; median (the kernel scan on every request, snapshot and engine reused).
5. the server's peak RSS (`VmHWM` in /proc/PID/status) after each cold run and the warm runs;
   the server's CPU time (utime + stime, all threads) is recorded for every request too, as a
   figure less disturbed than wall time by other work on the machine.
6. `GET .../shares` with wrk, 64 connections, 2 threads, 10 s.
Writes the results as JSON (with the load average before and after, to spot a busy machine) and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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

# Targets from the benchmark issue.
COLD_MAX_X_FLOOR = 1.5
WARM_MAX_X_FLOOR = 0.5
PEAK_RSS_MAX_MB = 150.0
TTFB_MAX_FRACTION = 0.1  # "far below total": first byte within 10 % of the total


def log(msg: str) -> None:
    print(f"query_bench: {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def r1(x: float) -> float:
    return round(x, 1)


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

    def vm_hwm_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(m.group(1)) * 1024 / 1e6 if m else 0.0

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


def query(server: Server, body_out: Path) -> dict:
    """One `/query`: curl timings, plus the reader's time to the first file line and the line count."""
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
    with open(body_out, "wb") as keep:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            newlines += chunk.count(b"\n")
            if first_file_s is None and newlines >= 3:
                first_file_s = time.monotonic() - t0
            keep.write(chunk)
    err = proc.stderr.read().decode()
    proc.wait()
    fields = err.strip().splitlines()[-1].split() if err.strip() else []
    if proc.returncode != 0 or len(fields) != 4 or fields[0] != "200":
        raise SystemExit(f"query failed: curl exit {proc.returncode}: {err.strip()[:500]}")
    return {
        "total_ms": float(fields[2]) * 1000,
        "ttfb_ms": float(fields[1]) * 1000,
        "first_file_ms": (first_file_s or 0.0) * 1000,
        "bytes": size,
        "lines": newlines,
    }


def check_body(path: Path, files: int) -> None:
    """Protocol, metaData, then `files` file lines."""
    with open(path, "rb") as f:
        first = json.loads(f.readline())
        second = json.loads(f.readline())
        third = json.loads(f.readline())
    if "protocol" not in first or "metaData" not in second or "file" not in third:
        raise SystemExit(f"unexpected response shape: {list(first)} {list(second)} {list(third)}")


def run_floor(floor: str, table: Path, runs: int) -> dict:
    results = []
    for i in range(runs):
        out = subprocess.run([floor, str(table)], check=True, capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        log(f"floor run {i + 1}: scan {res['scan_ms']} ms + serialize {res['serialize_ms']} ms = {res['floor_ms']} ms")
        results.append(res)
    # The figures of the run with the median floor, so that scan + serialize = floor.
    mid = sorted(results, key=lambda r: r["floor_ms"])[len(results) // 2]
    keys = ["scan_ms", "serialize_ms", "floor_ms", "peak_rss_mb", "snapshot_ms", "scan_iter_ms", "warm_scan_ms", "peak_rss_end_mb"]
    med = {k: r1(mid[k]) for k in keys}
    files = {r["files"] for r in results}
    if len(files) != 1:
        raise SystemExit(f"floor runs disagree on the file count: {files}")
    return {"files": files.pop(), "ndjson_bytes": results[0]["ndjson_bytes"], "runs": results, **med}


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


def main() -> None:
    ap = argparse.ArgumentParser(description="d2o /query and /shares benchmark")
    ap.add_argument("--d2o", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--table", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "query.json")
    ap.add_argument("--floor-runs", type=int, default=3)
    ap.add_argument("--cold", type=int, default=3)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--uncached", type=int, default=3)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    started = time.monotonic()
    load_before = loadavg()
    if load_before and load_before[0] > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load_before[0]} before the run; other work on the machine skews the figures")

    work = Path(tempfile.mkdtemp(prefix="d2o-bench-"))
    body = Path("/dev/shm" if Path("/dev/shm").is_dir() else work) / f"d2o-bench-body-{os.getpid()}.ndjson"
    try:
        log("floor")
        floor = run_floor(args.floor, args.table, args.floor_runs)
        files = floor["files"]

        cold, hwm = [], []
        server = None
        for i in range(args.cold):
            if server is not None:
                server.stop()
            server = Server(args.d2o, args.table, work)
            cpu0 = server.cpu_ms()
            q = query(server, body)
            q["cpu_ms"] = server.cpu_ms() - cpu0
            if q["lines"] != files + 2:
                raise SystemExit(f"cold query returned {q['lines']} lines, want {files + 2}")
            check_body(body, files)
            hwm.append(server.vm_hwm_mb())
            log(f"cold {i + 1}: {q['total_ms']:.0f} ms, ttfb {q['ttfb_ms']:.1f} ms, first file {q['first_file_ms']:.1f} ms, "
                f"{q['bytes'] / 1e6:.1f} MB, server CPU {q['cpu_ms']:.0f} ms, VmHWM {hwm[-1]:.0f} MB")  # fmt: skip
            cold.append(q)
        assert server is not None
        warm = []
        for i in range(args.warm):
            cpu0 = server.cpu_ms()
            q = query(server, body)
            q["cpu_ms"] = server.cpu_ms() - cpu0
            if q["lines"] != files + 2:
                raise SystemExit(f"warm query returned {q['lines']} lines, want {files + 2}")
            log(f"warm {i + 1}: {q['total_ms']:.0f} ms, ttfb {q['ttfb_ms']:.1f} ms, server CPU {q['cpu_ms']:.0f} ms")
            warm.append(q)
        hwm_after_warm = server.vm_hwm_mb()
        log("/shares throughput")
        shares = run_wrk(server, args.wrk_seconds, args.connections, args.threads)
        server.stop()

        uncached, uncached_hwm = [], None
        if args.uncached > 0:
            server = Server(args.d2o, args.table, work, cache_mib=0)
            query(server, body)  # builds the engine and snapshot
            for i in range(args.uncached):
                cpu0 = server.cpu_ms()
                q = query(server, body)
                q["cpu_ms"] = server.cpu_ms() - cpu0
                if q["lines"] != files + 2:
                    raise SystemExit(f"uncached query returned {q['lines']} lines, want {files + 2}")
                log(f"uncached {i + 1}: {q['total_ms']:.0f} ms, server CPU {q['cpu_ms']:.0f} ms")
                uncached.append(q)
            uncached_hwm = server.vm_hwm_mb()
            server.stop()
    finally:
        body.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)

    floor_ms = floor["floor_ms"]
    cold_ms = median([q["total_ms"] for q in cold])
    warm_ms = median([q["total_ms"] for q in warm])
    first_file_ms = median([q["first_file_ms"] for q in cold])
    ttfb_ms = median([q["ttfb_ms"] for q in cold])
    peak_mb = max(hwm + [hwm_after_warm])
    results = {
        "machine": machine(),
        "table": {"path": str(args.table), "files": files},
        "floor": floor,
        "query": {
            "response_bytes": cold[0]["bytes"],
            "response_lines": cold[0]["lines"],
            "cold_ms": r1(cold_ms),
            "cold_samples_ms": [r1(q["total_ms"]) for q in cold],
            "cold_cpu_ms": r1(median([q["cpu_ms"] for q in cold])),
            "cold_ttfb_ms": r1(ttfb_ms),
            "cold_first_file_ms": r1(first_file_ms),
            "warm_ms": r1(warm_ms),
            "warm_samples_ms": [r1(q["total_ms"]) for q in warm],
            "warm_cpu_ms": r1(median([q["cpu_ms"] for q in warm])),
            "warm_ttfb_ms": r1(median([q["ttfb_ms"] for q in warm])),
            "uncached_repeat_ms": r1(median([q["total_ms"] for q in uncached])) if uncached else None,
            "uncached_samples_ms": [r1(q["total_ms"]) for q in uncached],
            "uncached_cpu_ms": r1(median([q["cpu_ms"] for q in uncached])) if uncached else None,
            "peak_rss_mb": r1(peak_mb),
            "peak_rss_after_cold_mb": [r1(x) for x in hwm],
            "peak_rss_after_warm_mb": r1(hwm_after_warm),
            "peak_rss_uncached_server_mb": r1(uncached_hwm) if uncached_hwm is not None else None,
        },
        "shares": {k: v for k, v in shares.items() if k != "raw"},
        "targets": {
            "cold_vs_floor": {"value": round(cold_ms / floor_ms, 2), "target": f"<= {COLD_MAX_X_FLOOR}", "pass": cold_ms <= COLD_MAX_X_FLOOR * floor_ms},
            "warm_vs_floor": {"value": round(warm_ms / floor_ms, 2), "target": f"<= {WARM_MAX_X_FLOOR}", "pass": warm_ms <= WARM_MAX_X_FLOOR * floor_ms},
            "peak_rss_mb": {"value": r1(peak_mb), "target": f"< {PEAK_RSS_MAX_MB}", "pass": peak_mb < PEAK_RSS_MAX_MB},
            "streamed": {
                "value": round(ttfb_ms / cold_ms, 3),
                "target": f"cold TTFB <= {TTFB_MAX_FRACTION} x cold total",
                "pass": ttfb_ms <= TTFB_MAX_FRACTION * cold_ms,
            },
            "shares_req_per_s": {"value": shares.get("req_per_s"), "target": "reported (64 connections)", "pass": bool(shares) and shares.get("non_2xx") == 0},
        },
        "bench_seconds": round(time.monotonic() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "git": git_revision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out}")
    print(markdown(results))


def markdown(r: dict) -> str:
    f, q, s, t = r["floor"], r["query"], r["shares"], r["targets"]
    ok = lambda b: "pass" if b else "**FAIL**"  # noqa: E731
    rows = [
        ("files / response", f"{r['table']['files']:,} files, {q['response_lines']:,} lines, {q['response_bytes'] / 1e6:.1f} MB", ""),
        ("floor: kernel scan (cold, engine+snapshot+scan)", f"{f['scan_ms']} ms", ""),
        ("floor: serialize NDJSON", f"{f['serialize_ms']} ms", ""),
        ("**floor** (scan + serialize)", f"**{f['floor_ms']} ms**", ""),
        ("floor peak RSS (streaming scan)", f"{f['peak_rss_mb']} MB", ""),
        ("cold `/query` (median of 3 fresh servers)", f"{q['cold_ms']} ms = {t['cold_vs_floor']['value']}x floor (server CPU {q['cold_cpu_ms']} ms)", f"<= 1.5x: {ok(t['cold_vs_floor']['pass'])}"),
        ("warm `/query` (median of 5)", f"{q['warm_ms']} ms = {t['warm_vs_floor']['value']}x floor (server CPU {q['warm_cpu_ms']} ms)", f"<= 0.5x: {ok(t['warm_vs_floor']['pass'])}"),
        ("uncached repeat (`fileListCacheMib: 0`, median of 3)", f"{q['uncached_repeat_ms']} ms (server CPU {q['uncached_cpu_ms']} ms; VmHWM after {1 + len(q['uncached_samples_ms'])} requests {q['peak_rss_uncached_server_mb']} MB)", ""),
        ("cold TTFB (headers) / first file line", f"{q['cold_ttfb_ms']} ms / {q['cold_first_file_ms']} ms", f"TTFB <= 0.1x total: {ok(t['streamed']['pass'])}"),
        ("server peak RSS (VmHWM)", f"{q['peak_rss_mb']} MB", f"< 150 MB: {ok(t['peak_rss_mb']['pass'])}"),
        (
            f"`/shares` at {s.get('connections', '-')} connections",
            f"{s.get('req_per_s', '-'):,} req/s (p50 {s.get('latency_p50')}, p99 {s.get('latency_p99')})" if s else "not run",
            "reported" if s else "",
        ),
    ]
    lines = ["| measure | value | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
