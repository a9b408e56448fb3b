"""`GET /openapi.json` (issue [9]): the server's OpenAPI document, fetched from a running
server without a credential and checked by an independent validator (openapi-spec-validator),
with the protocol's paths under the configured endpoint."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from conftest import stop
from test_security import http, reader_catalog, start


def fetch(base: str) -> dict:
    status, headers, body = http("GET", f"{base}/openapi.json")
    assert status == 200, body
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json"
    return json.loads(body)


def test_the_document_is_valid_openapi_and_matches_the_endpoint(tmp_path):
    catalog, profile = reader_catalog(tmp_path)
    config = tmp_path / "server.yaml"
    config.write_text("version: 1\nendpoint: /sharing/v1\n")
    server = start(tmp_path, ["--catalog", str(catalog), "--config", str(config)],
                   env={"D2O_ADMIN_TOKEN": "admin-token-for-openapi-tests-0123"})
    try:
        doc = fetch(server.base)
        validate(doc)
        assert doc["openapi"].startswith("3.")
        paths = doc["paths"]
        assert "/sharing/v1/shares/{share}/schemas/{schema}/tables/{table}/query" in paths
        assert "post" in paths["/sharing/v1/oauth/token"]
        assert "/admin/v1/recipients" in paths and "/health" in paths and "/openapi.json" in paths
        assert not any(p.startswith("/delta-sharing") for p in paths)
        # The document's paths are the server's: a recipient's listing there answers.
        token = json.loads(profile.read_text())["bearerToken"]
        status, _, body = http("GET", f"{server.base}/sharing/v1/shares", token)
        assert status == 200 and json.loads(body)["items"][0]["name"] == "s", body
        status, _, _ = http("GET", f"{server.base}/admin/v1/shares", "admin-token-for-openapi-tests-0123")
        assert status == 200
    finally:
        stop(server.proc)
