#!/usr/bin/env python3
"""Object storage against local disk: one table served from disk, S3 (moto), Azure (Azurite) and
GCS (fake-gcs-server), all on 127.0.0.1.

    $(scripts/python-env.sh)/bin/python bench/object_store_bench.py \\
        [--d2o target/release/d2o] [--files 100000] [--gcs-files 10000] [--rounds 5] [--tables s3,azure]

For each copy of the table (the generator's log-only table, bench/gen_table.py): the cold
`/query` (first one after start), the median warm `/query` over `--rounds`, the store requests
each cost (counted by a forwarding proxy in front of every emulator), and the extra time per
1,000 files over the local copy of the same size, which is what pre-signing costs (S3 SigV4 is
HMAC; Azure SAS is HMAC; GCS V4 is an RSA signature per URL, hence its smaller table).

`--tables` queries only the named tables (local, s3, azure, local_small, gcs), in that order; the
server's `VmHWM` after each table's cold and warm queries is recorded, so with one table it is
that table's peak.

Prints a markdown table and writes bench/results/object_store.json. Emulators come from the
test venv and scripts/emulators.sh (as the tests); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

# The test harness: emulator processes, uploads, the counting proxy, and (on import) the
# explicit credentials and switched-off metadata lookups every child process inherits.
import emulators  # noqa: E402
from conftest import _wait_healthy, free_port, stop  # noqa: E402


def table_dir(files: int) -> Path:
    data = Path(os.environ.get("D2O_BENCH_DATA", Path.home() / ".cache" / "d2o-bench-data"))
    out = data / (f"t{files // 1000}k" if files >= 1000 else f"t{files}")
    subprocess.run([sys.executable, str(REPO / "bench" / "gen_table.py"), str(out), "--files", str(files)],
                   check=True)
    return out


class Factory:
    """tmp_path_factory's one method, for the emulator fixtures' helpers."""

    def __init__(self, root: Path):
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name, dir=self.root))


def start_emulators(work: Path):
    """(moto, azurite, fake_gcs) started as the tests start them."""
    factory = Factory(work)
    generators = [emulators.moto_s3.__wrapped__(factory), emulators.azurite.__wrapped__(factory),
                  emulators.fake_gcs.__wrapped__(factory)]
    return [next(g) for g in generators], generators


def query(endpoint: str, token: str, table: str) -> tuple:
    """(seconds, bytes, files) of one /query."""
    req = urllib.request.Request(
        f"{endpoint}/shares/bench/schemas/s/tables/{table}/query", data=b"{}", method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=900) as r:
        body = r.read()
    took = time.perf_counter() - started
    return took, len(body), body.count(b'{"file":')


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d2o", type=Path, default=Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
                    / "release" / "d2o")
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--gcs-files", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tables", default="local,s3,azure,local_small,gcs",
                    help="comma-separated tables to query (default: all)")
    args = ap.parse_args()

    big, small = table_dir(args.files), table_dir(args.gcs_files)
    work = Path(tempfile.mkdtemp(prefix="d2o-os-bench-"))
    (moto, azurite, gcs), generators = start_emulators(work)
    proxies = {"s3": emulators.CountingProxy(moto.endpoint), "azure": emulators.CountingProxy(azurite.endpoint),
               "gcs": emulators.CountingProxy(gcs.endpoint, rewrite_host=True)}
    moto.create_bucket("bench")
    azurite.create_container("bench")
    gcs.create_bucket("bench")
    for prefix, src in (("big", big), ("small", small)):
        moto.upload_tree("bench", prefix, src)
        azurite.upload_tree("bench", prefix, src)
        gcs.upload_tree("bench", prefix, src)
    gcs_options = dict(gcs.options())
    account = dict(gcs.service_account, gcs_base_url=proxies["gcs"].endpoint)
    os.environ["GOOGLE_SERVICE_ACCOUNT_KEY"] = json.dumps(account)
    azure_options = dict(azurite.options(), endpoint=f"{proxies['azure'].endpoint}/{azurite.account}")
    storage = [
        {"name": "s3", "url": "s3://bench/", "options": moto.options(endpoint=proxies["s3"].endpoint)},
        {"name": "azure", "url": "az://bench/", "options": azure_options},
        {"name": "gcs", "url": "gs://bench/", "options": gcs_options},
    ]
    tables = {
        "local": (str(big), args.files, None),
        "s3": ("s3://bench/big/", args.files, "s3"),
        "azure": ("az://bench/big/", args.files, "azure"),
        "local_small": (str(small), args.gcs_files, None),
        "gcs": ("gs://bench/small/", args.gcs_files, "gcs"),
    }
    token = "bench-token"
    port = free_port()
    config = {
        "version": 1, "host": "127.0.0.1", "port": port, "storage": storage,
        "authorization": {"bearerToken": token},
        "shares": [{"name": "bench", "schemas": [{"name": "s", "tables": [
            {"name": name, "location": location} for name, (location, _, _) in tables.items()]}]}],
    }
    (work / "server.yaml").write_text(json.dumps(config))
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([str(args.d2o), "serve", "--config", str(work / "server.yaml")],
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}/delta-sharing"
    try:
        failure = _wait_healthy(server, f"http://127.0.0.1:{port}/health", 60)
        if failure:
            sys.exit(f"d2o did not start: {failure}")
        rows = {}
        wanted = args.tables.split(",")
        for name, (_, files, store) in tables.items():
            if name not in wanted:
                continue
            proxy = proxies.get(store)
            if proxy:
                proxy.reset()
            cold, size, served = query(endpoint, token, name)
            assert served == files, f"{name}: {served} files, expected {files}"
            cold_requests = sum(proxy.counts().values()) if proxy else 0
            warm, warm_requests = [], []
            for _ in range(args.rounds):
                if proxy:
                    proxy.reset()
                warm.append(query(endpoint, token, name)[0])
                warm_requests.append(sum(proxy.counts().values()) if proxy else 0)
            rows[name] = {"files": files, "cold_s": cold, "warm_s": statistics.median(warm), "bytes": size,
                          "cold_store_requests": cold_requests, "warm_store_requests": max(warm_requests),
                          "vmhwm_mb": vm_hwm_mb(server.pid)}
        for name, base in (("s3", "local"), ("azure", "local"), ("gcs", "local_small")):
            if name not in rows or base not in rows:
                continue
            r = rows[name]
            r["extra_warm_ms_per_1000_files"] = (r["warm_s"] - rows[base]["warm_s"]) * 1000 / (r["files"] / 1000)
    finally:
        stop(server)
        for p in proxies.values():
            p.close()
        for g in generators:
            g.close()
    out = REPO / "bench" / "results" / "object_store.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"d2o": str(args.d2o), "rounds": args.rounds, "tables": rows}, indent=2) + "\n")
    print("| table | files | cold s | warm s (median) | store requests cold / warm | extra warm ms per 1,000 files "
          "| server VmHWM MB |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        extra = r.get("extra_warm_ms_per_1000_files")
        print(f"| {name} | {r['files']:,} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | "
              f"{r['cold_store_requests']} / {r['warm_store_requests']} | "
              f"{'-' if extra is None else f'{extra:.1f}'} | {r['vmhwm_mb']:.0f} |")


if __name__ == "__main__":
    main()
