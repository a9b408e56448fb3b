"""The demo's data set read by other tools: `d2o demo --no-serve` writes the Delta tables, then
the Python ``deltalake`` package (delta-rs, an independent Delta implementation) reads every
version back, and must find the rows that d2o serves (read with the official connector) and
the figures the demo reported in ``figures.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import delta_sharing
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from conftest import _wait_healthy, free_port, stop

SHARE, SCHEMA = "external_retail", "retail"
# (table, version) -> rows, as the demo documents them (crates/d2o-demo/src/dataset.rs).
EXPECTED_ROWS = {("customers", 0): 1000, ("customers", 1): 1000, ("sales", 0): 5000, ("sales", 1): 6000}
KEYS = {"customers": "id", "sales": "transaction_id"}


def _normalise(rows):
    """Rows as plain comparable values (dates as ISO strings, no pandas/arrow types)."""
    out = []
    for r in rows:
        n = {}
        for k, v in r.items():
            if hasattr(v, "item"):  # numpy scalars
                v = v.item()
            if isinstance(v, (dt.date, dt.datetime)):
                v = v.isoformat()[:10]
            elif hasattr(v, "isoformat"):  # pandas Timestamp
                v = v.isoformat()[:10]
            n[k] = v
        out.append(n)
    return out


def _delta_rows(table_dir: Path, version: int):
    table = DeltaTable(str(table_dir), version=version).to_pyarrow_table()
    return _normalise(table.to_pylist())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    binary = os.environ["D2O_BIN"]
    work = tmp_path_factory.mktemp("demo")
    port = free_port()
    done = subprocess.run(
        [binary, "demo", "--dir", str(work), "--port", str(port), "--no-serve"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"d2o demo failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert "report.html" in done.stdout, done.stdout
    # Serve the demo's catalog again on the same port, so the profile the demo wrote works.
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [binary, "serve", "--catalog", str(work / "d2o.db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(work),
    )
    try:
        problem = _wait_healthy(proc, f"http://127.0.0.1:{port}/health", 30.0)
        assert problem is None, problem
        yield work
    finally:
        stop(proc)
        log.close()


def test_demo_writes_its_outputs(demo: Path):
    for name in ["report.html", "figures.json", ".creds/config.share", "d2o.db"]:
        assert (demo / name).is_file(), name
    assert oct((demo / ".creds" / "config.share").stat().st_mode & 0o777) == "0o600"
    assert len(list((demo / "charts").glob("*.png"))) == 6
    assert len(list((demo / "charts").glob("*.svg"))) == 6


@pytest.mark.parametrize("table,version", sorted(EXPECTED_ROWS))
def test_deltalake_reads_every_version_as_d2o_serves_it(demo: Path, table: str, version: int):
    key = KEYS[table]
    ours = sorted(_delta_rows(demo / "tables" / table, version), key=lambda r: r[key])
    assert len(ours) == EXPECTED_ROWS[(table, version)]
    profile = str(demo / ".creds" / "config.share")
    served = delta_sharing.load_as_pandas(f"{profile}#{SHARE}.{SCHEMA}.{table}", version=version)
    served_rows = sorted(_normalise(served.to_dict("records")), key=lambda r: r[key])
    assert served_rows == ours


def test_deltalake_reads_the_change_data(demo: Path):
    customers = DeltaTable(str(demo / "tables" / "customers"))
    changes = pa.table(customers.load_cdf(starting_version=1, ending_version=1).read_all()).to_pylist()
    kinds = defaultdict(int)
    for row in changes:
        kinds[row["_change_type"]] += 1
    assert dict(kinds) == {"update_preimage": 50, "update_postimage": 50}
    before = {r["id"]: r["segment"] for r in changes if r["_change_type"] == "update_preimage"}
    after = {r["id"]: r["segment"] for r in changes if r["_change_type"] == "update_postimage"}
    assert before.keys() == after.keys()
    assert all(before[i] != after[i] for i in before)

    figures = json.loads((demo / "figures.json").read_text())
    moves = {m["id"]: (m["from"], m["to"]) for m in figures["changes"]["segment_moves"]}
    assert moves == {i: (before[i], after[i]) for i in before}

    sales = DeltaTable(str(demo / "tables" / "sales"))
    inserted = pa.table(sales.load_cdf(starting_version=1, ending_version=1).read_all()).to_pylist()
    assert {r["_change_type"] for r in inserted} == {"insert"}
    assert len(inserted) == figures["changes"]["sales_change_types"]["insert"] == 1000


def test_figures_match_deltalake(demo: Path):
    figures = json.loads((demo / "figures.json").read_text())
    for table in ["customers", "sales"]:
        got = {v["version"]: v["rows"] for v in figures[f"{table}_versions"]}
        assert got == {v: n for (t, v), n in EXPECTED_ROWS.items() if t == table}

    customers = _delta_rows(demo / "tables" / "customers", 1)
    sales = _delta_rows(demo / "tables" / "sales", 1)
    segment = {c["id"]: c["segment"] for c in customers}
    cents = lambda a: round(a * 100)  # noqa: E731 - amounts are whole cents

    total = sum(cents(s["amount"]) for s in sales)
    assert cents(figures["total_revenue"]) == total

    by_segment = defaultdict(lambda: [0, 0])
    for s in sales:
        cell = by_segment[segment[s["customer_id"]]]
        cell[0] += 1
        cell[1] += cents(s["amount"])
    assert {r["segment"]: [r["transactions"], cents(r["revenue"])] for r in figures["revenue_by_segment"]} == {
        k: v for k, v in by_segment.items()
    }

    per_customer = defaultdict(int)
    for s in sales:
        per_customer[s["customer_id"]] += cents(s["amount"])
    top = sorted(per_customer.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(c["id"], cents(c["revenue"])) for c in figures["top_customers"]] == top

    months = defaultdict(int)
    for s in sales:
        months[s["date"][:7]] += cents(s["amount"])
    assert {m["month"]: cents(m["revenue"]) for m in figures["monthly_revenue"]} == dict(months)

    amounts = sorted(s["amount"] for s in sales)
    mid = len(amounts) // 2
    assert figures["sales_amounts"]["count"] == len(amounts)
    assert figures["sales_amounts"]["median"] == pytest.approx((amounts[mid - 1] + amounts[mid]) / 2)
    assert figures["sales_amounts"]["mean"] == pytest.approx(sum(amounts) / len(amounts))
