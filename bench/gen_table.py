#!/usr/bin/env python3
"""Generate a synthetic Delta table for the d2o benchmarks.

    bench/gen_table.py OUT_DIR [--files N] [--seed S] [--force]

The table is shaped as in the project's perf-floors guide: only `_delta_log/` is written (data
files are absent; listing reads only the log).

* v0: protocol (minReader 1, minWriter 2) + metaData, 8 columns (`id` long, `region` string,
  the partition column with 8 values, `event_date` date, `customer_id` long, `amount` double,
  `quantity` int, `product` string, `updated_at` timestamp).
* v1..v100: the adds, spread evenly over 100 commits; from v2 on each commit also removes 10
  earlier files.
* a checkpoint at v100, made by Python `deltalake`'s `DeltaTable.create_checkpoint()`.
* v101..v150: 50 JSON commits, each +5 adds / -3 removes.
* every add: `region=<r>/part-<nnnnn>-<uuid>-c000.snappy.parquet`, partitionValues, size,
  modificationTime, dataChange, and ~300 B of stats (numRecords + min/max/nullCount of 5 columns).

The log JSON is written here directly (fast); `deltalake` makes the checkpoint and verifies the
result (version 150, N active files). The content is deterministic for a seed, except for
timestamps, which are recent so that the checkpoint keeps its remove tombstones.

A marker file `OUT_DIR/.d2o-bench-table.json` records the parameters; when it matches, the
table is not generated again. Run it with the bench venv's Python (see query_bench.sh), which
has `deltalake` installed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path

GENERATOR_VERSION = 1
MARKER = ".d2o-bench-table.json"
REGIONS = ["afr", "apac", "emea", "eu", "latam", "mea", "na", "oce"]
PRODUCTS = ["anvil", "bolt", "crate", "drill", "easel", "funnel", "gauge", "hinge"]
ADD_COMMITS = 100  # v1..v100
REMOVES_PER_ADD_COMMIT = 10  # from v2 on
TAIL_COMMITS = 50  # v101..v150
TAIL_ADDS, TAIL_REMOVES = 5, 3

SCHEMA = {
    "type": "struct",
    "fields": [
        {"name": "id", "type": "long", "nullable": False, "metadata": {}},
        {"name": "region", "type": "string", "nullable": False, "metadata": {}},
        {"name": "event_date", "type": "date", "nullable": True, "metadata": {}},
        {"name": "customer_id", "type": "long", "nullable": True, "metadata": {}},
        {"name": "amount", "type": "double", "nullable": True, "metadata": {}},
        {"name": "quantity", "type": "integer", "nullable": True, "metadata": {}},
        {"name": "product", "type": "string", "nullable": True, "metadata": {}},
        {"name": "updated_at", "type": "timestamp", "nullable": True, "metadata": {}},
    ],
}


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Gen:
    def __init__(self, root: Path, files: int, seed: int) -> None:
        self.root = root
        self.log = root / "_delta_log"
        self.rng = random.Random(seed)
        self.files = files
        self.counter = 0
        self.active: list[tuple[str, str, int]] = []  # (path, region, size)
        # Commit timestamps: one second apart, ending about now.
        self.t0 = int(time.time() * 1000) - (ADD_COMMITS + TAIL_COMMITS + 10) * 1000

    def ts(self, version: int) -> int:
        return self.t0 + version * 1000

    def new_add(self, version: int) -> str:
        rng = self.rng
        region = REGIONS[self.counter % len(REGIONS)]
        file_uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
        path = f"region={region}/part-{self.counter % 100000:05d}-{file_uuid}-c000.snappy.parquet"
        self.counter += 1
        size = rng.randint(200_000, 20_000_000)
        n = rng.randint(10_000, 2_000_000)
        id0 = rng.randint(0, 10**12)
        day = rng.randint(0, 1000)
        d0 = time.strftime("%Y-%m-%d", time.gmtime(1_640_995_200 + day * 86400))
        d1 = time.strftime("%Y-%m-%d", time.gmtime(1_640_995_200 + (day + rng.randint(0, 30)) * 86400))
        c0 = rng.randint(1, 10**7)
        a0 = round(rng.uniform(0, 100), 2)
        stats = {
            "numRecords": n,
            "minValues": {"id": id0, "event_date": d0, "customer_id": c0, "amount": a0, "quantity": rng.randint(1, 5)},
            "maxValues": {
                "id": id0 + n - 1,
                "event_date": d1,
                "customer_id": c0 + rng.randint(0, 10**7),
                "amount": round(a0 + rng.uniform(0, 10_000), 2),
                "quantity": rng.randint(6, 1000),
            },
            "nullCount": {"id": 0, "event_date": 0, "customer_id": rng.randint(0, 50), "amount": rng.randint(0, 50), "quantity": 0},
        }
        self.active.append((path, region, size))
        return dumps(
            {
                "add": {
                    "path": path,
                    "partitionValues": {"region": region},
                    "size": size,
                    "modificationTime": self.ts(version),
                    "dataChange": True,
                    "stats": dumps(stats),
                }
            }
        )

    def new_remove(self, version: int) -> str:
        i = self.rng.randrange(len(self.active))
        self.active[i], self.active[-1] = self.active[-1], self.active[i]
        path, region, size = self.active.pop()
        return dumps(
            {
                "remove": {
                    "path": path,
                    "deletionTimestamp": self.ts(version),
                    "dataChange": True,
                    "extendedFileMetadata": True,
                    "partitionValues": {"region": region},
                    "size": size,
                }
            }
        )

    def commit_info(self, version: int, op: str, adds: int, removes: int) -> str:
        return dumps(
            {
                "commitInfo": {
                    "timestamp": self.ts(version),
                    "operation": op,
                    "operationParameters": {"mode": "Append"},
                    "readVersion": version - 1,
                    "isBlindAppend": removes == 0,
                    "operationMetrics": {"numAddedFiles": str(adds), "numRemovedFiles": str(removes)},
                    "engineInfo": "d2o-bench gen_table.py",
                }
            }
        )

    def write_commit(self, version: int, lines: list[str]) -> None:
        path = self.log / f"{version:020d}.json"
        path.write_text("\n".join(lines) + "\n")
        t = self.ts(version) / 1000
        os.utime(path, (t, t))

    def run(self) -> None:
        self.log.mkdir(parents=True)
        v0 = [
            dumps({"commitInfo": {"timestamp": self.ts(0), "operation": "CREATE TABLE", "engineInfo": "d2o-bench gen_table.py"}}),
            dumps({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
            dumps(
                {
                    "metaData": {
                        "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                        "name": "bench",
                        "format": {"provider": "parquet", "options": {}},
                        "schemaString": dumps(SCHEMA),
                        "partitionColumns": ["region"],
                        "configuration": {},
                        "createdTime": self.ts(0),
                    }
                }
            ),
        ]
        self.write_commit(0, v0)
        # Adds over v1..v100 such that the table ends with exactly `files` active files.
        tail_net = TAIL_COMMITS * (TAIL_ADDS - TAIL_REMOVES)
        total_adds = self.files - tail_net + (ADD_COMMITS - 1) * REMOVES_PER_ADD_COMMIT
        if total_adds < ADD_COMMITS * (REMOVES_PER_ADD_COMMIT + 1):
            raise SystemExit(f"--files must be at least {ADD_COMMITS * (REMOVES_PER_ADD_COMMIT + 1)}")
        for v in range(1, ADD_COMMITS + 1):
            n = total_adds * v // ADD_COMMITS - total_adds * (v - 1) // ADD_COMMITS
            removes = [self.new_remove(v) for _ in range(REMOVES_PER_ADD_COMMIT)] if v >= 2 else []
            adds = [self.new_add(v) for _ in range(n)]
            self.write_commit(v, [self.commit_info(v, "WRITE", n, len(removes))] + removes + adds)
        t = time.monotonic()
        from deltalake import DeltaTable

        DeltaTable(str(self.root)).create_checkpoint()
        print(f"gen_table: checkpoint at v{ADD_COMMITS} in {time.monotonic() - t:.1f} s", file=sys.stderr)
        for v in range(ADD_COMMITS + 1, ADD_COMMITS + TAIL_COMMITS + 1):
            removes = [self.new_remove(v) for _ in range(TAIL_REMOVES)]
            adds = [self.new_add(v) for _ in range(TAIL_ADDS)]
            self.write_commit(v, [self.commit_info(v, "WRITE", TAIL_ADDS, TAIL_REMOVES)] + removes + adds)
        assert len(self.active) == self.files, (len(self.active), self.files)


def verify(root: Path, files: int) -> None:
    from deltalake import DeltaTable

    dt = DeltaTable(str(root))
    version = dt.version()
    n = len(dt.file_uris())
    if version != ADD_COMMITS + TAIL_COMMITS or n != files:
        raise SystemExit(f"gen_table: verification failed: version {version}, {n} active files (want {files})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output directory (the table root)")
    ap.add_argument("--files", type=int, default=100_000, help="active files at the last version (default 100000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--force", action="store_true", help="regenerate even if the marker matches; replace a foreign directory")
    args = ap.parse_args()

    root: Path = args.out.resolve()
    params = {"generator": GENERATOR_VERSION, "files": args.files, "seed": args.seed, "version": ADD_COMMITS + TAIL_COMMITS}
    marker = root / MARKER
    if root.exists():
        old = None
        if marker.exists():
            try:
                old = json.loads(marker.read_text())
            except ValueError:
                old = None
        if old is not None and {k: old.get(k) for k in params} == params and not args.force:
            print(f"gen_table: {root} is up to date ({args.files} files), skipping", file=sys.stderr)
            return
        if old is None and any(root.iterdir()) and not args.force:
            raise SystemExit(f"gen_table: {root} exists, is not empty and has no {MARKER}; use --force to replace it")
        shutil.rmtree(root)

    t = time.monotonic()
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    Gen(tmp, args.files, args.seed).run()
    verify(tmp, args.files)
    size = sum(p.stat().st_size for p in (tmp / "_delta_log").iterdir())
    (tmp / MARKER).write_text(dumps({**params, "log_bytes": size}) + "\n")
    tmp.rename(root)
    print(
        f"gen_table: wrote {root}: {args.files} active files, v{params['version']}, "
        f"_delta_log {size / 1e6:.0f} MB, in {time.monotonic() - t:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
