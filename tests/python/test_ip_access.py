"""Per-recipient IP access lists, black box: the real binary, a real catalog, the client's
address as the trusted-proxy logic decides it (here: X-Forwarded-For from a trusted 127.0.0.1).

A recipient held to a list is refused (403 JSON, audited) on the protocol API and on the file
URLs issued to it, from anywhere else; the list is set, shown and cleared through the CLI and the
admin API, and a change applies at the next request.
"""

from __future__ import annotations

import json
import secrets

import pytest

from test_security import audit, cli, http, reader_catalog, start, stop

ADMIN_TOKEN = secrets.token_hex(24)  # never starts with "-", which the CLI would read as a flag


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """Recipient `r`, held to 10.0.0.0/8 and 2001:db8::/32, with share `s` (simple_table); a
    server that trusts 127.0.0.1's forwarded headers and has an admin token."""
    work = tmp_path_factory.mktemp("ip-access")
    catalog, profile = reader_catalog(work)
    shown = json.loads(cli("recipient", "ip-access", "r", "--allow", "10.1.2.3/8", "--allow", "2001:db8::1/32",
                           "--json", catalog=catalog).stdout)
    assert shown["ipAccessList"] == ["10.0.0.0/8", "2001:db8::/32"], shown
    config = work / "server.yaml"
    config.write_text("version: 1\ntrustedProxies: ['127.0.0.1/32']\n")
    server = start(work, ["--catalog", str(catalog), "--config", str(config)], env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        yield {"catalog": catalog, "server": server, "token": json.loads(profile.read_text())["bearerToken"]}
    finally:
        stop(server.proc)


def call(held, method: str, path: str, client: str, body=None, token: bool = True):
    return http(method, f"{held['server'].base}/delta-sharing{path}", held["token"] if token else None, body,
                headers={"X-Forwarded-For": client})


def file_urls(held, client: str) -> list:
    status, _, body = call(held, "POST", "/shares/s/schemas/sc/tables/t/query", client, {})
    assert status == 200, body
    return [json.loads(line)["file"]["url"] for line in body.decode().splitlines() if '"file"' in line]


def assert_refused(status: int, body: bytes, client: str) -> None:
    assert status == 403, (status, body)
    error = json.loads(body)
    assert error["errorCode"] == "PERMISSION_DENIED" and client in error["message"], error


def test_requests_come_only_from_the_allowed_networks(held):
    assert call(held, "GET", "/shares", "10.200.0.1")[0] == 200
    assert call(held, "GET", "/shares", "2001:db8:ff::7")[0] == 200
    for outside in ("192.0.2.1", "11.0.0.1", "2001:db9::1"):
        status, _, body = call(held, "GET", "/shares", outside)
        assert_refused(status, body, outside)
    status, _, body = call(held, "POST", "/shares/s/schemas/sc/tables/t/query", "192.0.2.1", {})
    assert_refused(status, body, "192.0.2.1")
    # The socket's own address (127.0.0.1) is not in the list either.
    status, _, _ = http("GET", f"{held['server'].base}/delta-sharing/shares", held["token"])
    assert status == 403
    refused = [e for e in audit(held["catalog"], recipient="r") if e["status"] == 403]
    assert {e.get("clientIp") for e in refused} >= {"192.0.2.1", "2001:db9::1"}, refused


def test_file_urls_work_only_from_the_recipients_networks(held):
    urls = file_urls(held, "10.0.0.9")
    assert urls
    status, _, body = http("GET", urls[0], headers={"X-Forwarded-For": "10.3.3.3"})
    assert status == 200 and body[:4] == b"PAR1", (status, body[:100])
    # The same URL, handed on to someone elsewhere, is refused.
    status, _, body = http("GET", urls[0], headers={"X-Forwarded-For": "198.51.100.4"})
    assert_refused(status, body, "198.51.100.4")
    downloads = [e for e in audit(held["catalog"], recipient="r", action="download") if e["status"] == 403]
    assert any(e.get("clientIp") == "198.51.100.4" for e in downloads), downloads


def test_the_list_is_checked_changed_and_cleared_through_the_admin_api(held):
    remote = ["--server", held["server"].base, "--admin-token", ADMIN_TOKEN]
    bad = cli("recipient", "ip-access", "r", "--allow", "not-a-network", *remote, catalog=held["catalog"], check=False)
    assert bad.returncode != 0 and "not an IP address or CIDR range" in bad.stderr, bad.stderr
    shown = json.loads(cli("recipient", "show", "r", "--json", *remote, catalog=held["catalog"]).stdout)
    assert shown["ipAccessList"] == ["10.0.0.0/8", "2001:db8::/32"], "a bad list changed nothing"
    status, _, body = http("PUT", f"{held['server'].base}/admin/v1/recipients/r/ip-access-list", ADMIN_TOKEN,
                           {"networks": []})
    assert status == 400 and b"at least one network" in body, (status, body)
    try:
        cli("recipient", "ip-access", "r", "--allow", "192.0.2.0/24", *remote, catalog=held["catalog"])
        assert call(held, "GET", "/shares", "192.0.2.1")[0] == 200, "a new list applies at the next request"
        assert call(held, "GET", "/shares", "10.0.0.1")[0] == 403
        cli("recipient", "ip-access", "r", "--clear", *remote, catalog=held["catalog"])
        assert call(held, "GET", "/shares", "203.0.113.9")[0] == 200, "no list: any address"
        actions = {e["action"] for e in audit(held["catalog"], action="admin.recipient.ip_access_list")}
        assert actions == {"admin.recipient.ip_access_list"}
    finally:
        cli("recipient", "ip-access", "r", "--allow", "10.0.0.0/8", "--allow", "2001:db8::/32", *remote,
            catalog=held["catalog"])
