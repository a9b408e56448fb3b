"""Replicas on one PostgreSQL catalog behave as one server (issue [9], item 4).

Three `d2o serve --catalog postgres://...` processes share one fresh database, each with its
own admin token: A and B with the same `urlSigningKey` (given in a `--config` file), as behind
a load balancer; C with another key, to show what the key is for. What one replica (or the CLI
on the catalog) changes, the others serve at once; a revocation anywhere is honoured everywhere
within a second; every replica's audit events land in the one log; file URLs, page tokens,
activation links and OAuth access tokens issued by one are accepted by the others that share
its key. OIDC federation is not exercised here: each replica fetches and caches an issuer's
keys by itself and shares nothing else about it.

PostgreSQL: `D2O_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`) is the
database that the test connects to (with `psql`) to create a fresh database for this module,
and drop it afterwards. Without a reachable server the module is skipped, unless
`D2O_REQUIRE_POSTGRES=1` (CI sets it) makes that a failure, as in the Rust catalog tests.

Timings (the moment a replica saw a change made elsewhere) are printed; `pytest -s` shows them.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import secrets
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import delta_sharing
import pytest

from conftest import _wait_healthy, drop_database, fixture_by_name, free_port, fresh_database, stop
from test_activation import _form, assertion, key_pair, token_request
from test_security import Server, cli, http, start, wait_for

SIMPLE = fixture_by_name("simple_table")
PARTITIONED = fixture_by_name("basic_partitioned")


# --------------------------------------------------------------------------- the replicas


@dataclass
class Replica:
    name: str
    server: Server
    admin_token: str

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def endpoint(self) -> str:
        return f"{self.server.base}/delta-sharing"

    def cli(self, *args: str, catalog: str, check: bool = True) -> subprocess.CompletedProcess:
        """A `d2o` admin command through this replica's admin API."""
        return cli(*args, "--server", self.base, catalog=catalog, check=check,
                   env={"D2O_ADMIN_TOKEN": self.admin_token})

    def admin(self, method: str, path: str, body: Optional[dict] = None):
        return http(method, f"{self.base}/admin/v1{path}", self.admin_token, body=body)


@dataclass
class Cluster:
    catalog: str  # postgres://.../<fresh database>
    a: Replica
    b: Replica
    c: Replica  # same catalog, another signing key
    work: Path


TIMINGS: Dict[str, float] = {}


def timing(what: str, seconds: float) -> None:
    TIMINGS[what] = seconds
    print(f"\n[replicas] {what}: {seconds * 1000:.1f} ms")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    catalog, database = fresh_database()
    work = tmp_path_factory.mktemp("replicas")
    shared_key = base64.b64encode(secrets.token_bytes(32)).decode()
    other_key = base64.b64encode(secrets.token_bytes(32)).decode()
    shared = work / "shared.yaml"
    shared.write_text(f"version: 1\nurlSigningKey: {shared_key}\n")
    other = work / "other.yaml"
    other.write_text(f"version: 1\nurlSigningKey: {other_key}\n")
    replicas: List[Replica] = []
    try:
        for name, config in (("A", shared), ("B", shared), ("C", other)):
            token = f"admin-{name}-{secrets.token_urlsafe(16)}"
            server = start(work, ["--catalog", catalog, "--config", str(config)], env={"D2O_ADMIN_TOKEN": token})
            replicas.append(Replica(name, server, token))
        yield Cluster(catalog, *replicas, work=work)
    finally:
        for r in replicas:
            stop(r.server.proc)
        drop_database(database)
        if TIMINGS:
            print("\n[replicas] timings: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in TIMINGS.items()))


def profile_for(path: Path, endpoint: str, token: str) -> Path:
    path.write_text(json.dumps({"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": token}))
    return path


def bearer_recipient(cluster: Cluster, name: str, share: str) -> str:
    """A recipient of `share` created on the catalog; its bearer token."""
    out = cluster.work / f"{name}.share"
    cli("recipient", "create", name, "--profile-out", str(out), catalog=cluster.catalog)
    cli("grant", share, name, catalog=cluster.catalog)
    return json.loads(out.read_text())["bearerToken"]


def share_with_table(cluster: Cluster, share: str, fixture=SIMPLE, table: str = "sc.t") -> None:
    cli("share", "create", share, catalog=cluster.catalog)
    cli("share", "add-table", share, table, "--location", str(fixture.delta_dir), catalog=cluster.catalog)


def query_lines(base_url: str, share: str, table: str, token: str, body: Optional[dict] = None,
                headers: Optional[Dict[str, str]] = None) -> List[dict]:
    status, _, raw = http("POST", f"{base_url}/delta-sharing/shares/{share}/schemas/sc/tables/{table}/query",
                          token, body=body or {}, headers=headers)
    assert status == 200, raw
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def file_urls(lines: List[dict]) -> List[str]:
    return [line["file"]["url"] for line in lines if "file" in line]


def on(replica: Replica, url: str) -> str:
    """The same URL at another replica (what a load balancer in front of both would do)."""
    return urllib.parse.urlsplit(url)._replace(netloc=urllib.parse.urlsplit(replica.base).netloc).geturl()


def refused_within(url: str, token: str, limit: float, what: str) -> float:
    """Seconds from now until GET url with token stops answering 200 (polled every 5 ms); fails
    beyond `limit`. Reports how many requests it took."""
    started = time.monotonic()
    attempts = 0
    while True:
        status, _, _ = http("GET", url, token)
        attempts += 1
        elapsed = time.monotonic() - started
        if status != 200:
            assert status == 401, (what, status)
            timing(f"{what} (refused at request {attempts})", elapsed)
            return elapsed
        assert elapsed <= limit, f"{what}: still served {elapsed:.3f} s after the change"
        time.sleep(0.005)


# --------------------------------------------------------------------------- the tests


def test_replicas_started_together_on_a_new_database_all_start(tmp_path):
    """Each replica migrates the catalog at start. Started together on an empty database they
    used to run the same migration at once, and all but one stopped (a unique violation in
    PostgreSQL's own catalog, `pg_type_typname_nsp_index`); an advisory lock serializes them."""
    catalog, database = fresh_database()
    started: List[tuple] = []
    try:
        for i in range(4):
            port = free_port()
            log = tmp_path / f"replica-{i}.log"
            proc = subprocess.Popen(
                [os.environ["D2O_BIN"], "serve", "--catalog", catalog, "--host", "127.0.0.1", "--port", str(port)],
                stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(tmp_path))
            started.append((proc, port, log))
        for proc, port, log in started:
            failure = _wait_healthy(proc, f"http://127.0.0.1:{port}/health", 30)
            assert failure is None, f"{failure}\n{log.read_text(errors='replace')}"
        assert json.loads(cli("share", "list", "--json", catalog=catalog).stdout or "[]") == []
    finally:
        for proc, _, _ in started:
            stop(proc)
        drop_database(database)


def test_what_one_replica_creates_the_others_serve_at_once(cluster: Cluster):
    a, b, c = cluster.a, cluster.b, cluster.c
    catalog = cluster.catalog
    # Through A's admin API (the CLI with --server): a share, a table, a recipient and its grant.
    a.cli("share", "create", "made_on_a", catalog=catalog)
    a.cli("share", "add-table", "made_on_a", "sc.t", "--location", str(SIMPLE.delta_dir), catalog=catalog)
    profile = cluster.work / "on_b.share"
    a.cli("recipient", "create", "reader_a", "--profile-out", str(profile), "--endpoint", b.endpoint,
          catalog=catalog)
    a.cli("grant", "made_on_a", "reader_a", catalog=catalog)
    granted = time.monotonic()
    token = json.loads(profile.read_text())["bearerToken"]
    # B's first answer already has it (no retry)...
    status, _, body = http("GET", f"{b.endpoint}/shares", token)
    assert status == 200 and [s["name"] for s in json.loads(body)["items"]] == ["made_on_a"], body
    timing("grant through A's API -> B's first answer lists the share", time.monotonic() - granted)
    # ...and the official connector reads through B right away (it does not retry either).
    frame = delta_sharing.load_as_pandas(f"{profile}#made_on_a.sc.t")
    timing("grant through A's API -> the connector's whole read through B", time.monotonic() - granted)
    assert len(frame) > 0
    through_c = delta_sharing.load_as_pandas(f"{profile_for(cluster.work / 'on_c.share', c.endpoint, token)}"
                                             "#made_on_a.sc.t")
    assert sorted(frame.to_dict("records"), key=repr) == sorted(through_c.to_dict("records"), key=repr)

    # Through the CLI on the catalog (no server involved): B and A list the new table at once.
    cli("share", "add-table", "made_on_a", "sc.parts", "--location", str(PARTITIONED.delta_dir), catalog=catalog)
    added = time.monotonic()
    for replica in (b, a):
        status, _, body = http("GET", f"{replica.endpoint}/shares/made_on_a/all-tables", token)
        assert status == 200 and {t["name"] for t in json.loads(body)["items"]} == {"t", "parts"}, (replica.name, body)
    timing("table added by the CLI on the catalog -> listed by B and A", time.monotonic() - added)
    assert len(delta_sharing.load_as_pandas(f"{profile}#made_on_a.sc.parts")) > 0

    # Through B's admin API, the other way: a table B removes is gone on A at once.
    status, _, body = b.admin("DELETE", "/shares/made_on_a/tables/sc/parts")
    assert status in (200, 204), body
    status, _, body = http("GET", f"{a.endpoint}/shares/made_on_a/all-tables", token)
    assert status == 200 and [t["name"] for t in json.loads(body)["items"]] == ["t"], body
    status, _, _ = http("GET", f"{a.endpoint}/shares/made_on_a/schemas/sc/tables/parts/version", token)
    assert status == 404

    # Admin tokens are each process's own: A's does not open B's admin API.
    assert http("GET", f"{b.base}/admin/v1/shares", a.admin_token)[0] == 401
    assert http("GET", f"{b.base}/admin/v1/shares", b.admin_token)[0] == 200


def test_a_revocation_through_one_is_honoured_by_the_others_within_a_second(cluster: Cluster):
    a, b, c = cluster.a, cluster.b, cluster.c
    share_with_table(cluster, "revoked_share")
    token = bearer_recipient(cluster, "leaver", "revoked_share")
    shares = "/delta-sharing/shares"
    for replica in (a, b, c):
        assert http("GET", replica.base + shares, token)[0] == 200, replica.name
    url = file_urls(query_lines(b.base, "revoked_share", "t", token))[0]
    assert http("GET", on(a, url))[0] == 200

    # Revoked through A's admin API: B and C refuse the token, and A's signed URL, within 1 s.
    status, _, body = a.admin("POST", "/recipients/leaver/revoke")
    assert status == 200, body
    refused_within(b.base + shares, token, 1.0, "revocation through A's API -> token refused by B")
    refused_within(c.base + shares, token, 1.0, "revocation through A's API -> token refused by C")
    assert http("GET", a.base + shares, token)[0] == 401
    assert http("GET", url)[0] == 403 and http("GET", on(a, url))[0] == 403

    # Removing a grant through the CLI on the catalog hides the share on every replica within 1 s.
    token2 = bearer_recipient(cluster, "stayer", "revoked_share")
    table = "/delta-sharing/shares/revoked_share/schemas/sc/tables/t/version"
    for replica in (a, b, c):
        assert http("GET", replica.base + table, token2)[0] == 200, replica.name
    cli("revoke", "revoked_share", "stayer", catalog=cluster.catalog)
    started = time.monotonic()
    for replica in (b, a, c):
        while (status := http("GET", replica.base + table, token2)[0]) == 200:
            assert time.monotonic() - started <= 1.0, f"{replica.name} still serves the share"
            time.sleep(0.005)
        assert status == 404, (replica.name, status)
    timing("grant removed by the CLI on the catalog -> 404 on B, A and C", time.monotonic() - started)


def test_audit_events_of_every_replica_land_in_one_log(cluster: Cluster):
    a, b = cluster.a, cluster.b
    share_with_table(cluster, "audited")
    token = bearer_recipient(cluster, "watched", "audited")
    run = uuid.uuid4().hex[:8]
    for replica in (a, b):
        headers = {"User-Agent": f"replica-probe/{replica.name}", "X-Request-Id": f"{run}-{replica.name}-query"}
        lines = query_lines(replica.base, "audited", "t", token, headers=headers)
        status, response_headers, _ = http("GET", file_urls(lines)[0], headers={
            "User-Agent": f"replica-probe/{replica.name}", "X-Request-Id": f"{run}-{replica.name}-download"})
        assert status == 200 and response_headers.get("x-request-id") == f"{run}-{replica.name}-download"
    # Admin actions through either API land there too, each under its own request id.
    for replica in (a, b):
        status, _, body = http("POST", f"{replica.base}/admin/v1/shares", replica.admin_token,
                               body={"name": f"audit_{replica.name}_{run}"},
                               headers={"X-Request-Id": f"{run}-{replica.name}-admin"})
        assert status == 201, body

    def events() -> List[dict]:
        out = cli("audit", "--json", "--limit", "10000", "--since", "1h", catalog=cluster.catalog).stdout
        return [e for e in map(json.loads, out.splitlines()) if str(e.get("requestId", "")).startswith(run)]

    expected = {f"{run}-{r}-{kind}" for r in ("A", "B") for kind in ("query", "download", "admin")}
    found = wait_for(lambda: (lambda e: e if {x["requestId"] for x in e} >= expected else None)(events()),
                     what="events of both replicas in the catalog's audit log")
    by_id = {e["requestId"]: e for e in found}
    for r in ("A", "B"):
        q, d, adm = (by_id[f"{run}-{r}-{k}"] for k in ("query", "download", "admin"))
        assert (q["action"], q["principal"], q["userAgent"], q["status"]) == ("query", "watched", f"replica-probe/{r}", 200)
        assert (d["action"], d["principal"], d["userAgent"]) == ("download", "watched", f"replica-probe/{r}")
        # The admin action's outcome, recorded as the CLI on the catalog records it (200).
        assert (adm["action"], adm["principal"], adm["status"]) == ("admin.share.create", "admin", 200), adm
    # The admin API of either replica reads the same log.
    status, _, body = http("GET", f"{b.base}/admin/v1/audit?action=query&limit=1000", b.admin_token)
    assert status == 200, body
    listed = body.decode()
    assert f"{run}-A-query" in listed and f"{run}-B-query" in listed


def test_file_urls_and_page_tokens_of_one_replica_work_on_another_with_its_key(cluster: Cluster):
    a, b, c = cluster.a, cluster.b, cluster.c
    share_with_table(cluster, "signed")
    token = bearer_recipient(cluster, "downloader", "signed")
    urls = file_urls(query_lines(a.base, "signed", "t", token))
    assert len(urls) >= 2 and all(u.startswith(a.base) for u in urls)
    for url in urls:
        status, _, data = http("GET", on(b, url))
        assert status == 200 and data[:4] == b"PAR1" and data[-4:] == b"PAR1", (url, status)
        status, _, body = http("GET", on(c, url))
        assert status == 403, ("a replica with another key", status, body)
    # C's own URLs work on C, and not on A or B.
    own = file_urls(query_lines(c.base, "signed", "t", token))[0]
    assert http("GET", own)[0] == 200
    assert http("GET", on(a, own))[0] == 403 and http("GET", on(b, own))[0] == 403

    # Page tokens continue on any replica with the key: the pages alternate between A and B.
    everything = sorted(l["file"]["id"] for l in query_lines(a.base, "signed", "t", token) if "file" in l)
    seen: List[str] = []
    page_token = None
    for page in range(len(everything) + 2):
        body = {"maxFiles": 1, **({"pageToken": page_token} if page_token else {})}
        lines = query_lines((a, b)[page % 2].base, "signed", "t", token, body=body)
        seen += [l["file"]["id"] for l in lines if "file" in l]
        page_token = lines[-1]["endStreamAction"].get("nextPageToken")
        if not page_token:
            break
        if page == 0:
            # C (another key) refuses A's page token.
            status, _, refused = http("POST", f"{c.base}/delta-sharing/shares/signed/schemas/sc/tables/t/query",
                                      token, body={"maxFiles": 1, "pageToken": page_token})
            assert status == 400, refused
    assert page >= 1 and sorted(seen) == everything, "the pages through A and B hold every file once"


def test_activation_links_and_oauth_tokens_cross_replicas(cluster: Cluster):
    a, b, c = cluster.a, cluster.b, cluster.c
    share_with_table(cluster, "onboard")
    # A link issued through A's admin API, redeemed on B (the load balancer's choice).
    status, _, body = a.admin("POST", "/recipients", body={
        "name": "newcomer", "credential": {"type": "activation", "kind": "bearer_token"}})
    assert status == 201, body
    link = json.loads(body)["activation"]["url"]
    assert link.startswith(a.endpoint + "/activate/")
    a.cli("grant", "onboard", "newcomer", catalog=cluster.catalog)
    status, _, page = http("GET", on(b, link))
    assert status == 200 and b"newcomer" in page, page
    status, _, config = http("POST", on(b, link))
    assert status == 200, config
    profile = cluster.work / "newcomer.share"
    profile.write_bytes(config)
    assert json.loads(config)["endpoint"].rstrip("/") == b.endpoint
    assert len(delta_sharing.load_as_pandas(f"{profile}#onboard.sc.t")) > 0
    # It was used once, on B: A and C say so.
    assert http("POST", link)[0] == 410 and http("GET", on(c, link))[0] == 410
    # A link redeemed on every replica at once gives exactly one credential.
    status, _, body = c.admin("POST", "/recipients", body={
        "name": "contested", "credential": {"type": "activation", "kind": "bearer_token"}})
    assert status == 201, body
    contested = json.loads(body)["activation"]["url"]
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        statuses = sorted(pool.map(lambda i: http("POST", on((a, b, c)[i % 3], contested))[0], range(9)))
    assert statuses == [200] + [410] * 8, statuses
    shown = json.loads(cli("recipient", "show", "contested", "--json", catalog=cluster.catalog).stdout)
    assert len(shown["tokens"]) == 1 and shown["activation"]["state"] == "used", shown

    # OAuth client credentials (through a link made on B, redeemed on A): A's token endpoint
    # issues access tokens that B accepts, and C (another key) does not.
    status, _, body = b.admin("POST", "/recipients", body={
        "name": "machine", "credential": {"type": "activation", "kind": "oauth_client_credentials"}})
    assert status == 201, body
    b.cli("grant", "onboard", "machine", catalog=cluster.catalog)
    status, _, config = http("POST", on(a, json.loads(body)["activation"]["url"]))
    assert status == 200, config
    creds = json.loads(config)
    status, _, body = token_request(a.endpoint, creds["clientId"], creds["clientSecret"])
    assert status == 200, body
    access = json.loads(body)["access_token"]
    assert http("GET", f"{b.endpoint}/shares", access)[0] == 200
    status, _, body = http("GET", f"{c.endpoint}/shares", access)
    assert status == 401, ("an access token sealed by another key", status, body)
    # The connector gets its token from A's endpoint and reads through B.
    mixed = cluster.work / "machine.share"
    mixed.write_text(json.dumps({**creds, "endpoint": b.endpoint, "tokenEndpoint": f"{a.endpoint}/oauth/token"}))
    assert len(delta_sharing.load_as_pandas(f"{mixed}#onboard.sc.t")) > 0
    # Revoked on the catalog: B refuses A's access token within a second.
    cli("recipient", "revoke", "machine", catalog=cluster.catalog)
    refused_within(f"{b.endpoint}/shares", access, 1.0,
                   "revocation by the CLI on the catalog -> A's access token refused by B")
    assert token_request(b.endpoint, creds["clientId"], creds["clientSecret"])[0] == 401


def test_a_private_key_assertion_is_remembered_per_replica(cluster: Cluster, tmp_path):
    """Pins a documented limit (provider guide, "Replicas behind a load balancer"): each process
    remembers the assertions it redeemed, so one assertion is refused when replayed on the same
    replica but may be redeemed once on each other replica within its (at most 10-minute) life."""
    a, b = cluster.a, cluster.b
    share_with_table(cluster, "keyed")
    cli("recipient", "create", "signer", "--no-credential", catalog=cluster.catalog)
    cli("grant", "keyed", "signer", catalog=cluster.catalog)
    private, public = key_pair(tmp_path, "ES256")
    (tmp_path / "signer.pub").write_text(public)
    client = json.loads(a.cli("recipient", "client-key", "signer", "--public-key", str(tmp_path / "signer.pub"),
                              "--json", catalog=cluster.catalog).stdout)["clientId"]
    now = int(time.time())
    claims = {"iss": client, "aud": [f"{r.endpoint}/oauth/token" for r in (a, b)], "iat": now, "exp": now + 120,
              "jti": uuid.uuid4().hex}
    body = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   "assertion": assertion(private, "ES256", claims)})
    status, _, answer = _form(f"{a.endpoint}/oauth/token", body, {})
    assert status == 200, answer
    assert http("GET", f"{b.endpoint}/shares", json.loads(answer)["access_token"])[0] == 200
    status, _, answer = _form(f"{a.endpoint}/oauth/token", body, {})
    assert status == 400 and json.loads(answer)["error"] == "invalid_grant", answer
    status, _, answer = _form(f"{b.endpoint}/oauth/token", body, {})
    assert status == 200, ("the replay cache is per process; if it is shared now, update the guide", answer)
