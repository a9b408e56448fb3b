"""Request rate limits, black box: a recipient's own (set through the CLI and the admin API)
and the server-wide one (`rateLimit` in the configuration). Excess requests get 429 JSON with
`Retry-After`, are audited, and the official connector backs off and succeeds."""

from __future__ import annotations

import json
import secrets
import time

import delta_sharing

from test_security import audit, cli, http, reader_catalog, start, stop

ADMIN_TOKEN = secrets.token_hex(24)  # never starts with "-", which the CLI would read as a flag


def setup(work, config: str = "version: 1\n"):
    catalog, profile = reader_catalog(work)
    (work / "server.yaml").write_text(config)
    server = start(work, ["--catalog", str(catalog), "--config", str(work / "server.yaml")],
                   env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    creds = json.loads(profile.read_text())
    profile.write_text(json.dumps({**creds, "endpoint": f"{server.base}/delta-sharing"}))
    return catalog, server, creds["bearerToken"], profile


def assert_limited(status: int, headers, body: bytes) -> int:
    assert status == 429, (status, body)
    assert json.loads(body)["errorCode"] == "RESOURCE_EXHAUSTED", body
    retry_after = int(headers["retry-after"])
    assert retry_after >= 1
    return retry_after


def test_a_recipients_limit_allows_its_burst_then_429_with_retry_after(tmp_path, monkeypatch):
    catalog, server, token, profile = setup(tmp_path)
    remote = ["--server", server.base, "--admin-token", ADMIN_TOKEN]
    try:
        shown = json.loads(cli("recipient", "rate-limit", "r", "--rate", "1/min", "--burst", "3", "--json", *remote,
                               catalog=catalog).stdout)
        assert shown["rateLimit"] == {"rate": "1/min", "burst": 3}, shown
        shares = f"{server.base}/delta-sharing/shares"
        assert [http("GET", shares, token)[0] for _ in range(3)] == [200, 200, 200]
        status, headers, body = http("GET", shares, token)
        assert 50 <= assert_limited(status, headers, body) <= 60
        assert any(e["status"] == 429 for e in audit(catalog, recipient="r")), "a refused request is audited"
        bad = cli("recipient", "rate-limit", "r", "--rate", "0/s", *remote, catalog=catalog, check=False)
        assert bad.returncode != 0 and "between 1 and" in bad.stderr, bad.stderr
        # A new limit applies at the next request, with a full bucket.
        cli("recipient", "rate-limit", "r", "--rate", "5/s", "--burst", "5", *remote, catalog=catalog)
        assert http("GET", shares, token)[0] == 200
        # The official connector backs off on 429 and gets its answer (its own retries, which the
        # suite otherwise switches off: conftest._connector_fails_fast).
        from delta_sharing import rest_client

        patched = rest_client.DataSharingRestClient.__init__

        def with_retries(self, profile, num_retries=10):
            patched(self, profile)
            self._num_retries = 10

        monkeypatch.setattr(rest_client.DataSharingRestClient, "__init__", with_retries)
        cli("recipient", "rate-limit", "r", "--rate", "2/s", "--burst", "1", *remote, catalog=catalog)
        started = time.monotonic()
        for _ in range(3):
            df = delta_sharing.load_as_pandas(f"{profile}#s.sc.t")
            assert len(df) > 0
        assert time.monotonic() - started < 60
        cli("recipient", "rate-limit", "r", "--clear", *remote, catalog=catalog)
        assert all(http("GET", shares, token)[0] == 200 for _ in range(20)), "no limit after --clear"
    finally:
        stop(server.proc)


def test_the_server_wide_limit(tmp_path):
    _, server, token, _ = setup(tmp_path, "version: 1\nrateLimit: {rate: 1/min, burst: 4}\n")
    try:
        statuses = [http("GET", f"{server.base}/delta-sharing/shares", token)[0] for _ in range(6)]
        assert statuses[:4] == [200] * 4 and statuses[4:] == [429, 429], statuses
        status, headers, body = http("GET", f"{server.base}/delta-sharing/shares/s", None)
        assert_limited(status, headers, body)
        assert http("GET", f"{server.base}/health")[0] == 200, "health checks are not limited"
    finally:
        stop(server.proc)
