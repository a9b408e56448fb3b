#!/usr/bin/env python3
"""The recipient-client benchmark's helpers (driven by bench/client_bench.sh).

    client_bench.py gen OUT_DIR [--rows N] [--files F] [--seed S]
        A Delta table of N rows (default 10,000,000) in F Parquet files (default 64), about
        1 GB with Snappy: id, customer_id, amount, quantity, region, product, event_date,
        updated_at and a 72-character random `payload`. The Delta log (one commit: protocol,
        metaData, one add per file with numRecords/min/max/nullCount stats) is written by hand.
        A marker file makes a second run with the same parameters a no-op.

    client_bench.py python-load PROFILE#share.schema.table
        The official connector's `delta_sharing.load_as_pandas`, printing rows and seconds
        (with --out FILE, then `DataFrame.to_parquet(FILE)`: the same task as `d2o client load`).

Needs pyarrow and numpy (the bench venv has them) and, for python-load, delta-sharing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

MARKER = ".d2o-client-bench.json"
GENERATOR_VERSION = 2
PAYLOAD_CHARS = 72
REGIONS = ["afr", "apac", "emea", "eu", "latam", "mea", "na", "oce"]
PRODUCTS = ["anvil", "bolt", "crate", "drill", "easel", "funnel", "gauge", "hinge"]

SCHEMA = {
    "type": "struct",
    "fields": [
        {"name": "id", "type": "long", "nullable": False, "metadata": {}},
        {"name": "customer_id", "type": "long", "nullable": True, "metadata": {}},
        {"name": "amount", "type": "double", "nullable": True, "metadata": {}},
        {"name": "quantity", "type": "integer", "nullable": True, "metadata": {}},
        {"name": "region", "type": "string", "nullable": True, "metadata": {}},
        {"name": "product", "type": "string", "nullable": True, "metadata": {}},
        {"name": "event_date", "type": "date", "nullable": True, "metadata": {}},
        {"name": "updated_at", "type": "timestamp", "nullable": True, "metadata": {}},
        {"name": "payload", "type": "string", "nullable": True, "metadata": {}},
    ],
}


def gen(out: Path, rows: int, files: int, seed: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    params = {"v": GENERATOR_VERSION, "rows": rows, "files": files, "seed": seed}
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        print(f"{out}: already generated", file=sys.stderr)
        return
    log = out / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(seed)
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    now_ms = int(time.time() * 1000)
    adds = []
    per_file = rows // files
    start_id = 0
    for i in range(files):
        n = per_file if i < files - 1 else rows - per_file * (files - 1)
        ids = np.arange(start_id, start_id + n, dtype=np.int64)
        start_id += n
        raw = rng.integers(0, 16, size=(n, PAYLOAD_CHARS), dtype=np.uint8)
        payload_bytes = hexdigits[raw].tobytes()
        offsets = np.arange(0, PAYLOAD_CHARS * (n + 1), PAYLOAD_CHARS, dtype=np.int32)
        payload = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(payload_bytes)])
        days = rng.integers(19000, 19700, size=n).astype(np.int32)
        micros = rng.integers(1_600_000_000_000_000, 1_700_000_000_000_000, size=n, dtype=np.int64)
        table = pa.table(
            {
                "id": pa.array(ids),
                "customer_id": pa.array(rng.integers(0, 1_000_000_000, size=n, dtype=np.int64)),
                "amount": pa.array(np.round(rng.random(n) * 1000, 2)),
                "quantity": pa.array(rng.integers(1, 100, size=n).astype(np.int32)),
                "region": pa.array(np.array(REGIONS)[rng.integers(0, len(REGIONS), size=n)]),
                "product": pa.array(np.array(PRODUCTS)[rng.integers(0, len(PRODUCTS), size=n)]),
                "event_date": pa.array(days, type=pa.int32()).cast(pa.date32()),
                "updated_at": pa.array(micros, type=pa.timestamp("us", tz="UTC")),
                "payload": payload,
            }
        )
        name = f"part-{i:05d}-{uuid.UUID(int=seed * 1000 + i)}-c000.snappy.parquet"
        pq.write_table(table, out / name, compression="snappy", row_group_size=1 << 20)
        stats = {
            "numRecords": n,
            "minValues": {"id": int(ids[0]), "quantity": 1},
            "maxValues": {"id": int(ids[-1]), "quantity": 99},
            "nullCount": {"id": 0, "quantity": 0},
        }
        adds.append(
            {
                "add": {
                    "path": name,
                    "partitionValues": {},
                    "size": (out / name).stat().st_size,
                    "modificationTime": now_ms,
                    "dataChange": True,
                    "stats": json.dumps(stats),
                }
            }
        )
        print(f"  file {i + 1}/{files}", file=sys.stderr, end="\r")
    commit = [
        {"commitInfo": {"timestamp": now_ms, "operation": "WRITE", "operationParameters": {"mode": "Overwrite"}}},
        {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
        {
            "metaData": {
                "id": str(uuid.UUID(int=seed)),
                "format": {"provider": "parquet", "options": {}},
                "schemaString": json.dumps(SCHEMA),
                "partitionColumns": [],
                "configuration": {},
                "createdTime": now_ms,
            }
        },
        *adds,
    ]
    (log / "00000000000000000000.json").write_text("\n".join(json.dumps(a) for a in commit) + "\n")
    marker.write_text(json.dumps(params))
    total = sum(a["add"]["size"] for a in adds)
    print(f"{out}: {rows} rows, {files} files, {total / 1e9:.2f} GB", file=sys.stderr)


def python_load(url: str, out: str | None) -> None:
    import delta_sharing

    start = time.perf_counter()
    df = delta_sharing.load_as_pandas(url)
    if out:
        df.to_parquet(out, compression="snappy", index=False)
    secs = time.perf_counter() - start
    print(f"rows={len(df)} seconds={secs:.3f}")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("out", type=Path)
    g.add_argument("--rows", type=int, default=10_000_000)
    g.add_argument("--files", type=int, default=64)
    g.add_argument("--seed", type=int, default=7)
    l = sub.add_parser("python-load")
    l.add_argument("url")
    l.add_argument("--out", help="also write the DataFrame to this Parquet file")
    a = p.parse_args()
    if a.cmd == "gen":
        gen(a.out, a.rows, a.files, a.seed)
    else:
        python_load(a.url, a.out)


if __name__ == "__main__":
    main()
