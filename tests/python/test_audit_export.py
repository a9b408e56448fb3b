"""The audit log leaves the catalog: `d2o audit export` as Parquet and as a Delta table that
d2o itself can share, and `d2o audit prune`."""

from __future__ import annotations

import json

import delta_sharing
import pyarrow.parquet as pq

from test_security import cli, reader_catalog, start, stop


def test_the_audit_log_exports_as_parquet_and_as_a_shareable_delta_table(tmp_path):
    catalog, profile = reader_catalog(tmp_path)
    server = start(tmp_path, ["--catalog", str(catalog)])
    try:
        creds = json.loads(profile.read_text())
        creds["endpoint"] = f"{server.base}/delta-sharing"
        profile.write_text(json.dumps(creds))
        assert len(delta_sharing.load_as_pandas(f"{profile}#s.sc.t")) > 0

        out = tmp_path / "audit.parquet"
        cli("audit", "export", "-o", str(out), catalog=catalog)
        table = pq.read_table(out)
        assert table.column_names[:3] == ["time", "principal", "action"] and "bytes" in table.column_names
        rows = table.to_pylist()
        reads = [r for r in rows if r["principal"] == "r" and r["action"] == "query"]
        assert reads and reads[0]["share"] == "s" and reads[0]["status"] == 200, rows[:3]
        assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
        refused = cli("audit", "export", "-o", str(out), catalog=catalog, check=False)
        assert refused.returncode != 0 and "exists" in refused.stderr, "an export never overwrites"

        # As a Delta table, filtered to the recipient's reads, then shared with d2o itself.
        delta = tmp_path / "audit-delta"
        cli("audit", "export", "--format", "delta", "-o", str(delta), "--recipient", "r", catalog=catalog)
        cli("share", "create", "ops", catalog=catalog)
        cli("share", "add-table", "ops", "audit.events", "--location", str(delta), catalog=catalog)
        cli("grant", "ops", "r", catalog=catalog)
        shared = delta_sharing.load_as_pandas(f"{profile}#ops.audit.events")
        assert set(shared["principal"]) == {"r"} and "query" in set(shared["action"]), shared.head()
    finally:
        stop(server.proc)
    pruned = cli("audit", "prune", "--older-than", "1h", catalog=catalog).stdout
    assert "deleted 0 audit events" in pruned, pruned
    assert cli("audit", "prune", "--older-than", "5m", catalog=catalog, check=False).returncode != 0
