"""Operations, black box (issue [9]): `/metrics` in the Prometheus text format (read with
prometheus_client's parser), guarded by the admin token or served on `--metrics-addr`;
`/ready` following the catalog; `--log-format json` with one line per request and no secret
in the log."""

from __future__ import annotations

import json
import secrets
import sqlite3
import urllib.parse
from typing import Dict, FrozenSet, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, stop
from test_security import audit, http, reader_catalog, start

ADMIN_TOKEN = secrets.token_urlsafe(24)
TABLE = "/delta-sharing/shares/s/schemas/sc/tables/t"

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


def parse(text: str) -> Tuple[Dict[str, str], Samples]:
    """(family name -> type, (sample name, labels) -> value) of a scrape."""
    types, samples = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """Share `s` (table `sc.t`) granted to `r`, served with an admin token, JSON logs and a
    metrics listener of its own."""
    work = tmp_path_factory.mktemp("metrics")
    catalog, profile = reader_catalog(work)
    metrics_port = free_port()
    server = start(work, ["--catalog", str(catalog), "--log-format", "json",
                          "--metrics-addr", f"127.0.0.1:{metrics_port}"],
                   env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    token = json.loads(profile.read_text())["bearerToken"]
    yield {"server": server, "catalog": catalog, "token": token,
           "metrics": f"http://127.0.0.1:{metrics_port}"}
    stop(server.proc)


def scrape(provider) -> Tuple[Dict[str, str], Samples]:
    status, headers, body = http("GET", f"{provider['server'].base}/metrics", ADMIN_TOKEN)
    assert status == 200, body
    content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert content_type.startswith("text/plain; version=0.0.4"), headers
    return parse(body.decode())


def query(provider, headers=None) -> list:
    status, _, body = http("POST", f"{provider['server'].base}{TABLE}/query", provider["token"], body={},
                           headers=headers)
    assert status == 200, body
    return [json.loads(line) for line in body.decode().splitlines()]


def test_metrics_need_the_admin_token_on_the_protocol_address(provider):
    base = provider["server"].base
    assert http("GET", f"{base}/metrics")[0] == 401
    assert http("GET", f"{base}/metrics", provider["token"])[0] == 401, "a recipient's token is not enough"
    assert http("GET", f"{base}/metrics", ADMIN_TOKEN + "x")[0] == 401
    refused = [e for e in audit(provider["catalog"]) if e["action"] == "metrics"]
    assert refused and all(e["status"] == 401 for e in refused), refused
    query(provider)
    types, _ = scrape(provider)
    assert types["d2o_requests"] == "counter"
    assert types["d2o_request_duration_seconds"] == "histogram"


def test_a_query_moves_its_recipients_counters(provider):
    _, before = scrape(provider)
    lines = query(provider)
    files = [line["file"] for line in lines if "file" in line]
    assert files
    listed_bytes = sum(f["size"] for f in files)
    status, _, data = http("GET", files[0]["url"])
    assert status == 200
    _, after = scrape(provider)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("d2o_requests_total", route="query", status="200", recipient="r") == 1
    assert moved("d2o_files_served_total", route="query", recipient="r") == len(files)
    assert moved("d2o_bytes_served_total", route="query", recipient="r") == listed_bytes
    assert moved("d2o_requests_total", route="download", status="200", recipient="r") == 1
    assert moved("d2o_bytes_served_total", route="download", recipient="r") == len(data)
    assert moved("d2o_request_duration_seconds_count", route="query") == 1
    assert moved("d2o_request_duration_seconds_sum", route="query") > 0
    assert moved("d2o_urls_signed_total", scheme="file") == len(files)
    assert moved("d2o_url_signing_seconds_count", scheme="file") == 1
    # The table's snapshot and file list are looked up in their caches once each.
    lookups = sum(moved(f"d2o_cache_{kind}_total", cache=cache)
                  for kind in ("hits", "misses") for cache in ("latest_snapshot", "file_list"))
    assert lookups == 2
    # Labels are route names, never paths.
    assert not any("/delta-sharing" in v for (_, labels) in after for (_, v) in labels)


def test_the_catalog_and_the_audit_queue_are_measured(provider):
    query(provider)
    _, samples = scrape(provider)
    assert value(samples, "d2o_catalog_reloads_total", result="ok") >= 1
    assert ("d2o_audit_queue_depth", frozenset()) in samples
    assert value(samples, "d2o_catalog_reload_seconds_count") >= 1
    status, _, _ = http("GET", f"{provider['server'].base}/admin/v1/shares", ADMIN_TOKEN)
    assert status == 200
    _, samples = scrape(provider)
    assert value(samples, "d2o_requests_total", route="GET /admin/v1/shares", status="200", recipient="admin") >= 1


def test_the_metrics_address_serves_without_a_token(provider):
    query(provider)
    status, _, body = http("GET", f"{provider['metrics']}/metrics")
    assert status == 200, body
    types, _ = parse(body.decode())
    assert "d2o_requests" in types
    assert http("GET", f"{provider['metrics']}/ready")[0] == 200
    assert http("GET", f"{provider['metrics']}/health")[0] == 200
    assert http("GET", f"{provider['metrics']}{TABLE}/version", provider["token"])[0] == 404


def test_ready_follows_the_catalog(tmp_path):
    """503 with a reason while a migration is missing or the catalog cannot be read, 200 again
    once repaired. (A catalog file made unreadable would not do: the server keeps its
    connections open, and the tests run as root.)"""
    catalog, _ = reader_catalog(tmp_path)
    server = start(tmp_path, ["--catalog", str(catalog)])
    try:
        status, _, body = http("GET", f"{server.base}/ready")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
        db = sqlite3.connect(catalog)
        (latest,) = db.execute("SELECT MAX(version) FROM d2o_schema_migrations").fetchone()
        with db:
            db.execute("DELETE FROM d2o_schema_migrations WHERE version = ?", (latest,))
        status, _, body = http("GET", f"{server.base}/ready")
        answer = json.loads(body)
        assert status == 503 and answer["status"] == "unavailable", body
        assert f"needs {latest}" in answer["reason"], answer
        with db:
            db.execute("ALTER TABLE d2o_schema_migrations RENAME TO moved_away")
        status, _, body = http("GET", f"{server.base}/ready")
        assert status == 503, body
        assert json.loads(body)["reason"] == "the catalog database cannot be read", body
        with db:
            db.execute("ALTER TABLE moved_away RENAME TO d2o_schema_migrations")
            db.execute("INSERT INTO d2o_schema_migrations (version, applied_at) VALUES (?, 0)", (latest,))
        db.close()
        assert http("GET", f"{server.base}/ready")[0] == 200
        assert http("GET", f"{server.base}/health")[0] == 200, "alive all along"
    finally:
        stop(server.proc)


def test_json_logs_have_one_line_per_request_and_no_secret(provider):
    lines = query(provider, headers={"X-Request-Id": "metrics-test-request-1"})
    url = next(line["file"]["url"] for line in lines if "file" in line)
    signature = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["sig"][0]
    assert http("GET", url)[0] == 200
    assert http("GET", f"{provider['server'].base}/delta-sharing/shares", "not-a-token")[0] == 401
    text = provider["server"].log_text()
    records = []
    for line in text.splitlines():
        if line.startswith("d2o serving "):
            continue  # the address, on stdout (the test's log file holds both streams)
        records.append(json.loads(line))
    access = [r for r in records if r.get("target") == "d2o::access"]
    mine = [r for r in access if r.get("request_id") == "metrics-test-request-1"]
    assert len(mine) == 1, access
    assert mine[0]["recipient"] == "r" and mine[0]["route"] == "query" and mine[0]["status"] == 200, mine
    assert isinstance(mine[0]["duration_ms"], (int, float)) and mine[0]["duration_ms"] > 0
    assert any(r["route"] == "download" and r["recipient"] == "r" for r in access), access
    assert any(r["route"] == "list_shares" and r["status"] == 401 and r["recipient"] == "anonymous"
               for r in access), access
    for secret in (provider["token"], ADMIN_TOKEN, signature, "not-a-token"):
        assert secret not in text, "a secret reached the log"
