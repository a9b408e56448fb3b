"""The provider's flow end to end with the d2o CLI and a SQLite catalog, read by the official
connector: create a share, add tables (one with a per-recipient partition filter), create a
recipient with a credential file, grant, read, rotate with a grace period, revoke, read again.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
from requests.exceptions import HTTPError

from conftest import _wait_healthy, fixture_by_name, free_port, stop
from test_connector_fixtures import assert_frame_matches, expected_snapshot

ADMIN_TOKEN = "admin-token-for-the-flow-test"


def _cli(binary: str, catalog: Path, *args: str) -> str:
    env = dict(os.environ, D2O_CATALOG=str(catalog))
    done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"d2o {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def _cli_fails(binary: str, catalog: Path, *args: str) -> str:
    env = dict(os.environ, D2O_CATALOG=str(catalog))
    done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, f"d2o {' '.join(args)} should have failed: {done.stdout}"
    assert "error:" in done.stderr and "panicked" not in done.stderr, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    binary = os.environ["D2O_BIN"]
    work = tmp_path_factory.mktemp("provider")
    catalog = work / "d2o.db"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/delta-sharing"
    sales = fixture_by_name("basic_partitioned")
    _cli(binary, catalog, "share", "create", "external_retail", "--comment", "retail data for partners")
    _cli(binary, catalog, "share", "add-table", "external_retail", "retail.sales", "--location", str(sales.delta_dir), "--history")
    _cli(
        binary, catalog, "share", "add-table", "external_retail", "retail.by_letter",
        "--location", str(sales.delta_dir), "--partition-filter", "letter = CURRENT_RECIPIENT('letter')",
    )
    profile = work / ".creds" / "config.share"
    _cli(
        binary, catalog, "recipient", "create", "partner_co", "--property", "letter=a", "--expires-in", "30d",
        "--profile-out", str(profile), "--endpoint", endpoint,
    )
    _cli(binary, catalog, "grant", "external_retail", "partner_co")
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(
        [binary, "serve", "--catalog", str(catalog), "--host", "127.0.0.1", "--port", str(port), "--admin-token", ADMIN_TOKEN],
        stdout=log, stderr=subprocess.STDOUT,
    )
    failure = _wait_healthy(proc, f"http://127.0.0.1:{port}/health", 30)
    if failure:
        proc.kill()
        pytest.fail(f"server did not start: {failure}\n{(work / 'server.log').read_text()}")
    yield {"binary": binary, "catalog": catalog, "profile": profile, "endpoint": endpoint, "work": work, "port": port}
    stop(proc)


def test_credential_file_is_private_and_complete(provider):
    profile: Path = provider["profile"]
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    body = json.loads(profile.read_text())
    assert body["shareCredentialsVersion"] == 1
    assert body["endpoint"].rstrip("/") == provider["endpoint"]
    assert body["bearerToken"].startswith("d2o_")
    assert pd.Timestamp(body["expirationTime"]) > pd.Timestamp.now(tz="UTC")


def test_the_recipient_reads_what_was_granted(provider):
    profile = str(provider["profile"])
    client = delta_sharing.SharingClient(profile)
    assert [s.name for s in client.list_shares()] == ["external_retail"]
    assert sorted(t.name for t in client.list_all_tables()) == ["by_letter", "sales"]
    df = delta_sharing.load_as_pandas(f"{profile}#external_retail.retail.sales")
    assert_frame_matches(df, expected_snapshot(fixture_by_name("basic_partitioned"), None), "sales")
    # The partition filter keeps this recipient to letter = 'a', whatever it asks.
    only_a = delta_sharing.load_as_pandas(f"{profile}#external_retail.retail.by_letter")
    assert len(only_a) == 2 and set(only_a["letter"]) == {"a"}
    hinted = delta_sharing.load_as_pandas(
        f"{profile}#external_retail.retail.by_letter",
        jsonPredicateHints=json.dumps({"op": "equal", "children": [
            {"op": "column", "name": "letter", "valueType": "string"},
            {"op": "literal", "value": "b", "valueType": "string"}]}),
    )
    assert set(hinted["letter"]) <= {"a"}


def test_cli_refuses_bad_input_with_clear_errors(provider):
    b, c = provider["binary"], provider["catalog"]
    assert "already exists" in _cli_fails(b, c, "share", "create", "EXTERNAL_RETAIL")
    assert "SCHEMA.TABLE" in _cli_fails(b, c, "share", "add-table", "external_retail", "nodot", "--location", "/tmp")
    assert "partition filter" in _cli_fails(
        b, c, "share", "add-table", "external_retail", "a.b", "--location", "/tmp", "--partition-filter", "x > 1"
    )
    assert "does not exist" in _cli_fails(b, c, "grant", "nope", "partner_co")
    assert "duration" in _cli_fails(b, c, "recipient", "create", "x", "--expires-in", "soon")


def test_rotate_with_grace_then_revoke(provider):
    b, c = provider["binary"], provider["catalog"]
    old = str(provider["profile"])
    url = "#external_retail.retail.sales"
    new = provider["work"] / "rotated.share"
    _cli(b, c, "recipient", "rotate", "partner_co", "--grace", "1h", "--profile-out", str(new), "--endpoint", provider["endpoint"])
    assert len(delta_sharing.load_as_pandas(old + url)) == 6, "the old token works during the grace period"
    assert len(delta_sharing.load_as_pandas(str(new) + url)) == 6
    newest = provider["work"] / "newest.share"
    _cli(b, c, "recipient", "rotate", "partner_co", "--grace", "0", "--profile-out", str(newest), "--endpoint", provider["endpoint"])
    for stale in (old, str(new)):
        with pytest.raises(HTTPError) as e:
            delta_sharing.load_as_pandas(stale + url)
        assert e.value.response.status_code == 401
    assert len(delta_sharing.load_as_pandas(str(newest) + url)) == 6
    shown = json.loads(_cli(b, c, "recipient", "show", "partner_co", "--json"))
    assert sum(1 for t in shown["tokens"] if t.get("revokedAt") is None and t.get("expiresAt", 0) > 0) >= 1
    _cli(b, c, "recipient", "revoke", "partner_co")
    with pytest.raises(HTTPError) as e:
        delta_sharing.load_as_pandas(str(newest) + url)
    assert e.value.response.status_code == 401


def test_audit_log_records_reads_and_admin_actions(provider):
    b, c = provider["binary"], provider["catalog"]
    events = [json.loads(line) for line in _cli(b, c, "audit", "--json", "--limit", "1000").splitlines()]
    reads = [e for e in events if e["principal"] == "partner_co" and e["action"] == "query"]
    assert reads, events
    assert all(e["share"] == "external_retail" and e["status"] == 200 and "files" in e for e in reads)
    sales = [e for e in reads if e.get("table") == "sales"]
    assert sales and all(e["files"] == 6 and e["bytes"] > 0 and e["version"] == 1 for e in sales)
    assert any(e["action"] == "admin.recipient.rotate" for e in events)
    assert any(e["status"] == 401 for e in events), "refused reads are audited"
    text = json.dumps(events)
    for profile in provider["work"].rglob("*.share"):
        assert json.loads(profile.read_text())["bearerToken"] not in text, "tokens never appear in the audit log"
    table = _cli(b, c, "audit", "--recipient", "partner_co", "--table", "retail.sales")
    assert "partner_co" in table and "TIME" in table.splitlines()[0]


def test_admin_api_through_the_cli(provider):
    b, c = provider["binary"], provider["catalog"]
    server = f"http://127.0.0.1:{provider['port']}"
    out = _cli(b, c, "share", "list", "--server", server, "--admin-token", ADMIN_TOKEN, "--json")
    assert json.loads(out.splitlines()[0])["name"] == "external_retail"
    stderr = _cli_fails(b, c, "share", "list", "--server", server, "--admin-token", "wrong-token-xxxxxxxx")
    assert "admin token" in stderr


def test_catalog_import_of_a_reference_config(tmp_path):
    binary = os.environ["D2O_BIN"]
    catalog = tmp_path / "imported.db"
    table = fixture_by_name("simple_table").delta_dir
    (tmp_path / "server.yaml").write_text(
        "version: 1\nshares:\n- name: share1\n  schemas:\n  - name: schema1\n    tables:\n"
        f"    - name: t1\n      location: {table}\n      historyShared: true\n      startVersion: 2\n"
        "    - name: t2\n      location: relative/dir\n"
        "authorization:\n  bearerToken: the-files-token\n"
    )
    out = _cli(binary, catalog, "catalog", "import", str(tmp_path / "server.yaml"))
    assert "create share share1" in out and out.count("add table share1.schema1.") == 2, out
    assert "create recipient legacy" in out and "the-files-token" not in out, out
    shown = json.loads(_cli(binary, catalog, "share", "show", "share1", "--json"))
    tables = {t["name"]: t for t in shown["tables"]}
    assert tables["t1"]["historyShared"] is True and tables["t1"]["startVersion"] == 2
    assert tables["t2"]["location"] == (tmp_path / "relative" / "dir").as_uri() + "/"
    # Importing again adds nothing and fails nothing.
    assert "nothing to change" in _cli(binary, catalog, "catalog", "import", str(tmp_path / "server.yaml"))
