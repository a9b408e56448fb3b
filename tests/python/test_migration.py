"""Moving from the reference server with `d2o catalog import`, and back with `catalog export`.

The whole official-connector suite also runs in catalog mode (conftest.MODES); this file
covers the import itself as a provider runs it: a dry run, a repeat that changes nothing, a
changed file (updates, additions, removals only with --prune), bad input that changes nothing,
the file's token working on the first request after the switch, and an export that a second
catalog imports to the same ids."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import delta_sharing
import yaml

from conftest import expected_table_id, fixture_by_name
from test_security import cli, start, stop

TOKEN = "dapi" + secrets.token_hex(16)  # a reference-server token, not one d2o made
SIMPLE = fixture_by_name("simple_table")
PARTITIONED = fixture_by_name("basic_partitioned")


def server_yaml(path: Path, tables: list, token: str = TOKEN) -> Path:
    """A reference-format file: share `sales` with `tables` as (schema, name, location, extra keys)."""
    doc = {
        "version": 1,
        "shares": [
            {"name": "sales", "schemas": [{"name": "retail", "tables": [
                {"name": name, "location": str(location), **extra} for name, location, extra in tables
            ]}]},
        ],
        "authorization": {"bearerToken": token},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def shares(catalog: Path) -> dict:
    """{share: {schema.table: table entry}} of the catalog."""
    listed = json.loads(cli("share", "list", "--json", catalog=catalog).stdout or "[]")
    listed = listed if isinstance(listed, list) else [listed]
    out = {}
    for s in listed:
        shown = json.loads(cli("share", "show", s["name"], "--json", catalog=catalog).stdout)
        out[s["name"]] = {f"{t['schema']}.{t['name']}": t for t in shown["tables"]}
    return out


def test_import_is_planned_repeatable_and_keeps_the_token(tmp_path):
    catalog = tmp_path / "d2o.db"
    config = server_yaml(tmp_path / "server.yaml", [
        ("orders", SIMPLE.delta_dir, {"id": "orders-id-from-the-file", "historyShared": True}),
        ("stores", PARTITIONED.delta_dir, {}),
    ])
    planned = cli("catalog", "import", str(config), "--dry-run", catalog=catalog).stdout
    assert "would change" in planned and "add table sales.retail.orders (id orders-id-from-the-file)" in planned
    assert shares(catalog) == {}, "a dry run changes nothing"
    done = cli("catalog", "import", str(config), catalog=catalog).stdout
    assert "grant share sales to legacy" in done and TOKEN not in done, done
    tables = shares(catalog)["sales"]
    assert tables["retail.orders"]["id"] == "orders-id-from-the-file"
    assert tables["retail.stores"]["id"] == expected_table_id("sales", "retail", "stores"), "YAML mode's id"
    assert TOKEN.encode() not in catalog.read_bytes(), "the token is stored hashed"
    again = cli("catalog", "import", str(config), catalog=catalog).stdout
    assert "nothing to change" in again, again

    # The file's profile works on the first request after the switch.
    server = start(tmp_path, ["--catalog", str(catalog)])
    try:
        profile = tmp_path / "old.share"
        profile.write_text(json.dumps({"shareCredentialsVersion": 1, "bearerToken": TOKEN,
                                       "endpoint": f"{server.base}/delta-sharing"}))
        assert len(delta_sharing.load_as_pandas(f"{profile}#sales.retail.orders")) > 0
    finally:
        stop(server.proc)

    # A changed file: orders moves, stores goes, returns is new.
    changed = server_yaml(tmp_path / "server.yaml", [
        ("orders", PARTITIONED.delta_dir, {"id": "orders-id-from-the-file"}),
        ("returns", SIMPLE.delta_dir, {"startVersion": 1}),
    ])
    out = cli("catalog", "import", str(changed), catalog=catalog).stdout
    assert "update table sales.retail.orders: location" in out and "historyShared false" in out, out
    assert "add table sales.retail.returns" in out and "remove" not in out
    assert "retail.stores" in shares(catalog)["sales"], "kept without --prune"
    out = cli("catalog", "import", str(changed), "--prune", "--dry-run", catalog=catalog).stdout
    assert "remove table sales.retail.stores (not in the file)" in out
    cli("catalog", "import", str(changed), "--prune", catalog=catalog)
    assert sorted(shares(catalog)["sales"]) == ["retail.orders", "retail.returns"]

    # Bad input changes nothing.
    before = shares(catalog)
    for bad in [
        [("orders", "ftp://elsewhere/orders", {})],
        [("orders", SIMPLE.delta_dir, {"id": "same"}), ("returns", SIMPLE.delta_dir, {"id": "same"})],
    ]:
        refused = cli("catalog", "import", str(server_yaml(tmp_path / "bad.yaml", bad)), "--prune",
                      catalog=catalog, check=False)
        assert refused.returncode != 0, refused.stdout
        assert shares(catalog) == before


def test_export_round_trips_the_ids(tmp_path):
    catalog = tmp_path / "d2o.db"
    config = server_yaml(tmp_path / "server.yaml", [
        ("orders", SIMPLE.delta_dir, {"id": "orders-id", "historyShared": True, "cdfEnabled": True}),
        ("stores", PARTITIONED.delta_dir, {"startVersion": 1}),
    ])
    cli("catalog", "import", str(config), catalog=catalog)
    exported = tmp_path / "exported.yaml"
    cli("catalog", "export", "--out", str(exported), catalog=catalog)
    text = exported.read_text()
    assert TOKEN not in text and "bearerToken:" not in text.replace("`authorization: {bearerToken: ...}`", "")
    doc = yaml.safe_load(text)
    tables = {t["name"]: t for t in doc["shares"][0]["schemas"][0]["tables"]}
    assert tables["orders"]["id"] == "orders-id" and tables["orders"]["historyShared"] is True
    assert tables["orders"]["cdfEnabled"] is True and tables["stores"]["startVersion"] == 1
    # The reference format: the YAML mode serves it (with a token added) with the same ids.
    doc["authorization"] = {"bearerToken": TOKEN}
    served = tmp_path / "served.yaml"
    served.write_text(yaml.safe_dump(doc))
    server = start(tmp_path, ["--config", str(served)])
    try:
        profile = tmp_path / "p.share"
        profile.write_text(json.dumps({"shareCredentialsVersion": 1, "bearerToken": TOKEN,
                                       "endpoint": f"{server.base}/delta-sharing"}))
        listed = delta_sharing.SharingClient(str(profile)).list_all_tables()
        assert {t.name for t in listed} == {"orders", "stores"}
    finally:
        stop(server.proc)
    second = tmp_path / "second.db"
    cli("catalog", "import", str(exported), "--no-legacy-token", catalog=second)
    assert {k: v["id"] for k, v in shares(second)["sales"].items()} == \
        {k: v["id"] for k, v in shares(catalog)["sales"].items()}
