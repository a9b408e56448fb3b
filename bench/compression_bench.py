#!/usr/bin/env python3
"""Compressed `/query` answers: bytes on the wire and the time to receive a whole file list
through a link of a given speed, without compression, with gzip and with zstd.

One `d2o serve` (release) over the benchmark table (`bench/gen_table.py`); for each encoding a
warm `POST /query` (all files) is read from the socket through a token bucket of the link's
speed, without decoding, so the clock sees what a client on that link sees. Then the body is
decoded and its lines counted, so every encoding is checked to hold the same answer. The server's
CPU time per request is read from /proc. Writes bench/results/compression.json.

    bench/compression_bench.sh [--files N]       # builds, generates, runs this
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
import zlib
from pathlib import Path

from query_bench import SCHEMA, SHARE, TABLE, TOKEN, Server, git_revision, loadavg, log, machine

ENCODINGS = ["identity", "gzip", "zstd"]
LINKS = {"100 Mbit/s": 100e6 / 8, "1 Gbit/s": 1e9 / 8}
CHUNK = 64 * 1024


def fetch(server: Server, encoding: str, rate: float | None) -> dict:
    """One warm /query read at `rate` bytes/s (None: as fast as the socket gives it)."""
    host, port = server.host_port.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    body = json.dumps({}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Accept-Encoding": encoding}
    cpu0 = server.cpu_ms()
    start = time.perf_counter()
    conn.request("POST", f"/delta-sharing/shares/{SHARE}/schemas/{SCHEMA}/tables/{TABLE}/query", body, headers)
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    got = resp.headers.get("Content-Encoding", "identity")
    assert got == encoding, f"asked for {encoding}, got {got}"
    parts, wire = [], 0
    while True:
        chunk = resp.read1(CHUNK)  # undecoded bytes as they arrive
        if not chunk:
            break
        parts.append(chunk)
        wire += len(chunk)
        if rate:
            # The token bucket: never ahead of what the link could have carried by now.
            ahead = wire / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    seconds = time.perf_counter() - start
    cpu = server.cpu_ms() - cpu0
    conn.close()
    raw = b"".join(parts)
    if encoding == "gzip":
        raw = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
    elif encoding == "zstd":
        import zstandard  # type: ignore[import-not-found]

        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return {"wire_bytes": wire, "body_bytes": len(raw), "lines": raw.count(b"\n"), "seconds": seconds, "server_cpu_ms": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d2o", required=True)
    ap.add_argument("--table", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "compression.json")
    args = ap.parse_args()
    work = args.out.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    server = Server(args.d2o, args.table, work)
    results: dict = {"machine": machine(), "revision": git_revision(), "loadavg_before": loadavg(), "runs": args.runs}
    try:
        fetch(server, "identity", None)  # warm the snapshot and file-list caches
        for encoding in ENCODINGS:
            for link, rate in [("local", None), *LINKS.items()]:
                runs = [fetch(server, encoding, rate) for _ in range(args.runs)]
                lines = {r["lines"] for r in runs}
                assert len(lines) == 1, f"{encoding}: the answers differ ({lines})"
                results[f"{encoding} @ {link}"] = {
                    "wire_mb": round(runs[0]["wire_bytes"] / 1e6, 2),
                    "body_mb": round(runs[0]["body_bytes"] / 1e6, 2),
                    "lines": runs[0]["lines"],
                    "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                    "server_cpu_ms": round(statistics.median(r["server_cpu_ms"] for r in runs)),
                }
                log(f"{encoding} @ {link}: {results[f'{encoding} @ {link}']}")
    finally:
        server.stop()
    results["loadavg_after"] = loadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| encoding | link | wire (MB) | time (s) | server CPU (ms) |\n|---|---|---:|---:|---:|")
    for key, r in results.items():
        if "@" in key:
            encoding, link = key.split(" @ ")
            print(f"| {encoding} | {link} | {r['wire_mb']} | {r['seconds']} | {r['server_cpu_ms']} |")


if __name__ == "__main__":
    main()
