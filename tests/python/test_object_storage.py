"""d2o serving Delta tables from object storage, against local emulators (emulators.py).

What runs where: each emulator is a child process on 127.0.0.1 (moto, s3s-fs, Azurite,
fake-gcs-server), filled with copies of tests/data/delta-tables; each test group starts its
own `$D2O_BIN serve` (YAML with a top-level `storage:` list, or a catalog filled with
`d2o storage add`) and reads through the official connector or plain HTTP. Secrets reach d2o
only as `${ENV}` references to the fake credentials of emulators.py.

Groups: S3/moto every fixture at every version in every format (+ CDF) and the pre-signed URL
shape; S3/s3s-fs signature and expiry enforcement; Azurite SAS; GCS V4 signatures checked
here against the service account's public key; `urlMode: proxy`; failures (missing bucket,
wrong key, dead endpoint) answered fast without leaking secrets; the store requests of a warm
query; the catalog commands. The `*_refuses_*`/`*_verifies_*` proofs at the top need no d2o.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import delta_sharing
import pytest
import requests
from requests.exceptions import HTTPError

from conftest import PREFIX, SCHEMA, SHARE, Fixture, _q, fixture_by_name, fixtures, free_port, stop
from emulators import (  # noqa: F401  (fixtures are used by name)
    AWS_SECRET_ACCESS_KEY,
    AZURE_ACCOUNT_KEY,
    CountingProxy,
    azurite,
    fake_gcs,
    moto_s3,
    query_param,
    sigv4_s3,
    tamper,
    verify_gcs_v4_signature,
)
import pyarrow.parquet as pq
from test_client_cli import _client
from test_connector_fixtures import (
    CDF_FIXTURES, SNAPSHOT_CASES, assert_frame_matches, check_changes_read, check_snapshot_read, expected_snapshot,
)
from test_security import Server, cli, http, start

BUCKET = "d2o-test"
REPRESENTATIVE = ["simple_table", "table-with-dv-small", "cdf-table", "basic_partitioned"]
FORMATS = ["auto", "delta", "parquet"]
ERROR_DEADLINE_S = 15.0


# --------------------------------------------------------------------------- serving


@dataclass
class Served:
    server: Server
    token: str
    profile: Path

    @property
    def base(self) -> str:
        return self.server.base

    def url(self, table: str) -> str:
        return f"{self.profile}#{SHARE}.{SCHEMA}.{table}"

    def api(self, table: str, suffix: str) -> str:
        return f"{self.base}{PREFIX}/shares/{SHARE}/schemas/{SCHEMA}/tables/{table}{suffix}"

    def query(self, table: str, body: Optional[dict] = None, **kw) -> Tuple[int, dict, List[dict]]:
        status, headers, raw = http("POST", self.api(table, "/query"), self.token, body or {}, **kw)
        lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()] if status == 200 else [json.loads(raw or b"{}")]
        return status, headers, lines

    def log(self) -> str:
        """The server log without terminal colour codes."""
        return re.sub(r"\x1b\[[0-9;]*m", "", self.server.log_text())


def file_urls(lines: List[dict]) -> List[Tuple[str, int]]:
    """(url, expirationTimestamp) of every file action of a /query or /changes answer."""
    out = []
    for line in lines:
        for kind in ("file", "add", "cdf", "remove"):
            action = line.get(kind)
            if not isinstance(action, dict):
                continue
            if "url" in action:  # parquet format
                out.append((action["url"], int(action.get("expirationTimestamp") or 0)))
            for inner in (action.get("deltaSingleAction") or {}).values():  # delta format: the URL is the path
                if isinstance(inner, dict) and "path" in inner:
                    out.append((inner["path"], int(action.get("expirationTimestamp") or 0)))
    return out


def storage_yaml(entries: List[dict]) -> List[str]:
    lines = ["storage:"]
    for e in entries:
        lines += [f"- name: {_q(e['name'])}", f"  url: {_q(e['url'])}"]
        if e.get("urlMode"):
            lines.append(f"  urlMode: {e['urlMode']}")
        lines.append("  options:")
        lines += [f"    {k}: {_q(v)}" for k, v in e["options"].items()]
    return lines


def serve_yaml(work: Path, storage: List[dict], tables: Dict[str, str], extra: Optional[Dict[str, object]] = None,
               env: Optional[Dict[str, str]] = None) -> Served:
    """Writes a config serving `tables` (name -> location) as fixtures.delta.<name> with the
    given storage entries, starts d2o on it, writes a profile."""
    if not os.environ.get("D2O_BIN"):
        pytest.fail("D2O_BIN is not set (the d2o binary under test)", pytrace=False)
    token = secrets.token_urlsafe(24)
    lines = ["version: 1", *storage_yaml(storage), "shares:", f"- name: {_q(SHARE)}", "  schemas:",
             f"  - name: {_q(SCHEMA)}", "    tables:"]
    for name, location in tables.items():
        lines += [f"    - name: {_q(name)}", f"      location: {_q(location)}", "      historyShared: true"]
    lines += ["authorization:", f"  bearerToken: {_q(token)}", f"endpoint: {_q(PREFIX)}"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in (extra or {}).items()]
    config = work / f"server-{secrets.token_hex(4)}.yaml"
    config.write_text("\n".join(lines) + "\n")
    server = start(work, ["--config", str(config)], env=env)
    profile = work / f"{config.stem}.share"
    profile.write_text(json.dumps({"shareCredentialsVersion": 1, "endpoint": server.base + PREFIX, "bearerToken": token}))
    return Served(server, token, profile)


def s3_entry(store, name: str = "lake", bucket: str = BUCKET, endpoint: Optional[str] = None, **extra) -> dict:
    return {"name": name, "url": f"s3://{bucket}/", "options": store.options(endpoint), **extra}


def upload_fixtures(store, bucket: str, names: List[str]) -> None:
    store.create_bucket(bucket) if hasattr(store, "create_bucket") else store.create_container(bucket)
    for name in names:
        store.upload_tree(bucket, name, fixture_by_name(name).delta_dir)


def assert_protocol_error(status: int, body: bytes, label: str) -> dict:
    assert 400 <= status < 600, f"{label}: expected an error, got {status}: {body[:300]!r}"
    try:
        error = json.loads(body)
    except ValueError:
        pytest.fail(f"{label}: error body is not JSON: {body[:300]!r}", pytrace=False)
    assert isinstance(error.get("errorCode"), str) and isinstance(error.get("message"), str), f"{label}: {error}"
    return error


# =========================================================================== emulator proofs (no d2o)


def test_moto_round_trip_keeps_delta_names(moto_s3, tmp_path):
    """Upload keeps '=' '%3A' and spaces verbatim; moto serves a pre-signed URL (it checks no
    signature, which is why the signature tests use s3s-fs)."""
    fx = fixture_by_name("data-reader-timestamp_ntz")
    moto_s3.create_bucket("proof")
    keys = moto_s3.upload_tree("proof", "t", fx.delta_dir)
    odd = [k for k in keys if "%3A" in k and " " in k]
    assert odd, keys
    r = requests.get(moto_s3.presign_get("proof", odd[0]), timeout=10)
    assert r.status_code == 200 and r.content == (fx.delta_dir / odd[0][2:]).read_bytes()


def test_sigv4_s3_verifies_presigned_signature_and_expiry(sigv4_s3):
    """The S3 server used for the signature tests really checks them: a pre-signed GET works,
    the same URL with one signature character changed is a 403, a URL signed with another
    secret is a 403, and an expired URL is a 403."""
    fx = fixture_by_name("simple_table")
    sigv4_s3.create_bucket("proof")
    keys = sigv4_s3.upload_tree("proof", "t", fx.delta_dir)
    key = next(k for k in keys if k.endswith(".parquet"))
    url = sigv4_s3.presign_get("proof", key, expires=2)
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content[:4] == b"PAR1", (r.status_code, r.text[:300])
    r = requests.get(tamper(url, "X-Amz-Signature"), timeout=10)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    r = requests.get(sigv4_s3.presign_get("proof", key, secret_key="not-the-secret"), timeout=10)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    time.sleep(3.5)
    r = requests.get(url, timeout=10)
    assert r.status_code == 403, ("expired URL accepted", r.status_code, r.text[:300])


def test_azurite_verifies_sas(azurite):
    """Azurite checks SAS signatures and expiry, and the SharedKey of the account."""
    fx = fixture_by_name("simple_table")
    azurite.create_container("proof")
    names = azurite.upload_tree("proof", "t", fx.delta_dir)
    blob = next(n for n in names if n.endswith(".parquet"))
    url = azurite.sas_url("proof", blob, expires_in=2)
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content[:4] == b"PAR1", (r.status_code, r.text[:300])
    r = requests.get(tamper(url, "sig"), timeout=10)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    wrong_key = "V3Jvbmcga2V5IGZvciB0aGUgZDJvIHRlc3RzLCBub3QgdGhlIGFjY291bnQga2V5IQ=="
    r = azurite.request("GET", azurite.blob_url("proof", blob), key=wrong_key)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    time.sleep(3.5)
    r = requests.get(url, timeout=10)
    assert r.status_code == 403, ("expired SAS accepted", r.status_code, r.text[:300])


def test_fake_gcs_serves_xml_listing_and_ranges(fake_gcs):
    """What object_store's GCS client needs: XML-API listing (list-type=2) and ranged GETs,
    with Delta names kept verbatim."""
    fx = fixture_by_name("basic_partitioned")
    fake_gcs.create_bucket("proof")
    names = fake_gcs.upload_tree("proof", "t", fx.delta_dir)
    r = requests.get(f"{fake_gcs.endpoint}/proof", params={"list-type": "2", "prefix": "t/_delta_log/"}, timeout=10)
    assert r.status_code == 200 and "<Key>t/_delta_log/00000000000000000000.json</Key>" in r.text, r.text[:500]
    part = next(n for n in names if "letter=__HIVE_DEFAULT_PARTITION__" in n and n.endswith(".parquet"))
    r = requests.get(fake_gcs.object_url("proof", part), headers={"Range": "bytes=0-3"}, timeout=10)
    assert r.status_code == 206 and r.content == b"PAR1", (r.status_code, r.content[:20])


# =========================================================================== (a) S3 via moto, YAML


@pytest.fixture(scope="module")
def moto_lake(moto_s3, tmp_path_factory):
    upload_fixtures(moto_s3, BUCKET, [fx.name for fx in fixtures()])
    served = serve_yaml(tmp_path_factory.mktemp("d2o-moto"), [s3_entry(moto_s3)],
                        {fx.table: f"s3://{BUCKET}/{fx.name}/" for fx in fixtures()})
    yield served
    stop(served.server.proc)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fx,version", SNAPSHOT_CASES)
def test_s3_snapshot(moto_lake, fx: Fixture, version: Optional[int], fmt: str):
    check_snapshot_read(moto_lake.url(fx.table), fx, version, fmt)


@pytest.mark.parametrize("fmt", ["default", "parquet", "delta"])
@pytest.mark.parametrize("fx", CDF_FIXTURES)
def test_s3_changes(moto_lake, fx: Fixture, fmt: str):
    check_changes_read(moto_lake.url(fx.table), fx, fmt)


@pytest.mark.parametrize("fx,version", SNAPSHOT_CASES)
def test_s3_snapshot_with_d2o_client(moto_lake, fx: Fixture, version: Optional[int], tmp_path):
    """`d2o client load` (the Rust client, which downloads from the pre-signed URLs itself)
    gives the expected rows at every version."""
    out = tmp_path / "t.parquet"
    args = ["load", moto_lake.url(fx.table), "--out", str(out), "--quiet"]
    if version is not None:
        args += ["--version", str(version)]
    _client(None, *args)
    assert_frame_matches(pq.read_table(out).to_pandas(), expected_snapshot(fx, version), f"d2o client {fx.name}@{version}")


@pytest.mark.parametrize("fx", [p for p in CDF_FIXTURES if p.values[0].cdf_expected])
def test_s3_changes_with_d2o_client(moto_lake, fx: Fixture, tmp_path):
    out = tmp_path / "changes.parquet"
    start_version = fx.cdf_start_version or 0
    _client(None, "changes", moto_lake.url(fx.table), "--from-version", str(start_version), "--out", str(out), "--quiet")
    assert pq.read_table(out).num_rows == pq.read_table(fx.cdf_expected).num_rows, fx.name


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_s3_urls_are_presigned_by_the_store(moto_s3, moto_lake, fmt: str):
    """File URLs point at the emulator, carry a SigV4 signature, and expirationTimestamp is
    X-Amz-Date + X-Amz-Expires (within 1 s)."""
    headers = {"delta-sharing-capabilities": "responseformat=delta"} if fmt == "delta" else {}
    status, _, lines = moto_lake.query("basic_partitioned", headers=headers)
    assert status == 200, lines
    urls = file_urls(lines)
    assert urls, lines
    for url, expiration in urls:
        assert url.startswith(f"{moto_s3.endpoint}/{BUCKET}/basic_partitioned/"), url
        assert query_param(url, "X-Amz-Algorithm") == "AWS4-HMAC-SHA256"
        assert query_param(url, "X-Amz-Signature"), url
        signed = time.mktime(time.strptime(query_param(url, "X-Amz-Date"), "%Y%m%dT%H%M%SZ")) - time.timezone
        expected_ms = (signed + int(query_param(url, "X-Amz-Expires"))) * 1000
        assert abs(expiration - expected_ms) <= 1000, (url, expiration, expected_ms)
        r = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=10)
        assert r.status_code in (200, 206) and r.content[:4] == b"PAR1", (url, r.status_code)
    assert AWS_SECRET_ACCESS_KEY not in json.dumps(lines)


# =========================================================================== (b) S3 that checks signatures


@pytest.fixture(scope="module")
def sigv4_lake(sigv4_s3, tmp_path_factory):
    upload_fixtures(sigv4_s3, BUCKET, ["simple_table"])
    return tmp_path_factory.mktemp("d2o-sigv4")


def test_s3_presigned_urls_are_enforced_by_the_store(sigv4_s3, sigv4_lake):
    served = serve_yaml(sigv4_lake, [s3_entry(sigv4_s3)], {"simple_table": f"s3://{BUCKET}/simple_table/"})
    try:
        status, _, lines = served.query("simple_table")
        assert status == 200, lines
        url, _ = file_urls(lines)[0]
        assert url.startswith(sigv4_s3.endpoint), url
        r = requests.get(url, timeout=10)
        assert r.status_code == 200 and r.content[:4] == b"PAR1", (r.status_code, r.text[:300])
        r = requests.get(tamper(url, "X-Amz-Signature"), timeout=10)
        assert r.status_code == 403, (r.status_code, r.text[:300])
        check_snapshot_read(served.url("simple_table"), fixture_by_name("simple_table"), None, "delta")
    finally:
        stop(served.server.proc)


def test_s3_presigned_urls_expire(sigv4_s3, sigv4_lake):
    served = serve_yaml(sigv4_lake, [s3_entry(sigv4_s3)], {"simple_table": f"s3://{BUCKET}/simple_table/"},
                        extra={"preSignedUrlTimeoutSeconds": 2})
    try:
        status, _, lines = served.query("simple_table")
        assert status == 200, lines
        url, expiration = file_urls(lines)[0]
        # Each URL lives from the second it is signed in to the stated expiry: 2 s, or 1 when
        # signing fell into the next second (a loaded machine).
        signed = datetime.datetime.strptime(query_param(url, "X-Amz-Date"), "%Y%m%dT%H%M%SZ")
        lifetime = int(query_param(url, "X-Amz-Expires"))
        assert lifetime in (1, 2), url
        signed_at = int(signed.replace(tzinfo=datetime.timezone.utc).timestamp())
        assert signed_at + lifetime == expiration // 1000, (url, expiration)
        assert requests.get(url, timeout=10).status_code == 200
        time.sleep(max(0.0, expiration / 1000 - time.time()) + 1.5)
        r = requests.get(url, timeout=10)
        assert r.status_code == 403, ("expired URL accepted", r.status_code, r.text[:300])
    finally:
        stop(served.server.proc)


def test_s3_wrong_secret_is_a_protocol_error_without_the_secret(sigv4_s3, sigv4_lake):
    wrong = "wrong-secret-" + secrets.token_hex(8)
    entry = s3_entry(sigv4_s3)
    entry["options"]["secret_access_key"] = "${D2O_STORAGE_TEST_WRONG_SECRET}"
    served = serve_yaml(sigv4_lake, [entry], {"simple_table": f"s3://{BUCKET}/simple_table/"},
                        env={"D2O_STORAGE_TEST_WRONG_SECRET": wrong})
    try:
        started = time.monotonic()
        status, _, body = http("POST", served.api("simple_table", "/query"), served.token, {}, timeout=60)
        assert time.monotonic() - started < ERROR_DEADLINE_S
        assert_protocol_error(status, body, "wrong secret")
        for secret in (wrong, AWS_SECRET_ACCESS_KEY):
            assert secret.encode() not in body and secret not in served.log()
        assert f"s3://{BUCKET}/simple_table" in served.log()
    finally:
        stop(served.server.proc)


# =========================================================================== (c) Azure via Azurite


@pytest.fixture(scope="module")
def azure_lake(azurite, tmp_path_factory):
    upload_fixtures(azurite, BUCKET, REPRESENTATIVE)
    entries = [{"name": "lake", "url": f"az://{BUCKET}/", "options": azurite.options()}]
    tables = {fixture_by_name(n).table: f"az://{BUCKET}/{n}/" for n in REPRESENTATIVE}
    served = serve_yaml(tmp_path_factory.mktemp("d2o-azurite"), entries, tables)
    yield served
    stop(served.server.proc)


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_azure_snapshot(azure_lake, name: str, fmt: str):
    fx = fixture_by_name(name)
    for version in [None, *fx.versions]:
        check_snapshot_read(azure_lake.url(fx.table), fx, version, fmt)


def test_azure_abfss_url(azurite, azure_lake, tmp_path):
    """The abfss://<container>@<account>.dfs.core.windows.net/ form of the same container."""
    url = f"abfss://{BUCKET}@{azurite.account}.dfs.core.windows.net/"
    served = serve_yaml(tmp_path, [{"name": "lake-abfss", "url": url, "options": azurite.options()}],
                        {"simple_table": url + "simple_table/"})
    try:
        check_snapshot_read(served.url("simple_table"), fixture_by_name("simple_table"), None, "delta")
    finally:
        stop(served.server.proc)


def test_azure_cdf(azure_lake):
    check_changes_read(azure_lake.url("cdf_table"), fixture_by_name("cdf-table"), "delta")


def test_azure_urls_are_sas_checked_by_azurite(azurite, azure_lake):
    status, _, lines = azure_lake.query("simple_table")
    assert status == 200, lines
    for url, _ in file_urls(lines):
        assert url.startswith(f"{azurite.account_url}/{BUCKET}/simple_table/") and "sig=" in url, url
        assert requests.get(url, timeout=10).status_code == 200
        r = requests.get(tamper(url, "sig"), timeout=10)
        assert r.status_code == 403, (r.status_code, r.text[:300])
    assert AZURE_ACCOUNT_KEY not in json.dumps(lines) and AZURE_ACCOUNT_KEY not in azure_lake.log()


# =========================================================================== (d) GCS


GCS_FIXTURES = ["simple_table", "basic_partitioned"]


@pytest.fixture(scope="module")
def gcs_lake(fake_gcs, tmp_path_factory):
    upload_fixtures(fake_gcs, BUCKET, GCS_FIXTURES)
    served = serve_yaml(tmp_path_factory.mktemp("d2o-gcs"),
                        [{"name": "lake", "url": f"gs://{BUCKET}/", "options": fake_gcs.options()}],
                        {fixture_by_name(n).table: f"gs://{BUCKET}/{n}/" for n in GCS_FIXTURES})
    yield served
    stop(served.server.proc)


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
@pytest.mark.parametrize("name", GCS_FIXTURES)
def test_gcs_snapshot(gcs_lake, name: str, fmt: str):
    fx = fixture_by_name(name)
    check_snapshot_read(gcs_lake.url(fx.table), fx, None, fmt)


def test_gcs_urls_carry_a_valid_v4_signature(fake_gcs, gcs_lake):
    """fake-gcs-server checks no signature, so the test does: each URL's GOOG4-RSA-SHA256
    signature verifies against the service account's public key, and a tampered URL does not."""
    from cryptography.exceptions import InvalidSignature

    # object_store 0.13 signs for Host storage.googleapis.com even when gcs_base_url points
    # elsewhere (here the emulator); against real GCS that is the request's host.
    host = "storage.googleapis.com"
    status, _, lines = gcs_lake.query("basic_partitioned")
    assert status == 200, lines
    urls = file_urls(lines)
    assert urls
    for url, expiration in urls:
        assert url.startswith(f"{fake_gcs.endpoint}/{BUCKET}/basic_partitioned/"), url
        try:
            verify_gcs_v4_signature(url, fake_gcs.public_key_pem, host=host)
        except InvalidSignature:
            pytest.fail(f"the V4 signature of {url} does not verify with the service account's key", pytrace=False)
        with pytest.raises(InvalidSignature):
            verify_gcs_v4_signature(url.replace("/basic_partitioned/", "/simple_table/", 1), fake_gcs.public_key_pem,
                                    host=host)
        assert requests.get(url, timeout=10).status_code == 200
    assert fake_gcs.service_account["private_key"] not in gcs_lake.log()


# =========================================================================== (e) urlMode: proxy


@pytest.fixture(scope="module")
def proxy_lake(moto_s3, tmp_path_factory):
    upload_fixtures(moto_s3, "d2o-proxied", ["simple_table", "basic_partitioned"])
    served = serve_yaml(tmp_path_factory.mktemp("d2o-proxy"), [s3_entry(moto_s3, bucket="d2o-proxied", urlMode="proxy")],
                        {fixture_by_name(n).table: f"s3://d2o-proxied/{n}/" for n in ["simple_table", "basic_partitioned"]})
    yield served
    stop(served.server.proc)


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_proxy_mode_reads(proxy_lake, fmt: str):
    for name in ["simple_table", "basic_partitioned"]:
        check_snapshot_read(proxy_lake.url(fixture_by_name(name).table), fixture_by_name(name), None, fmt)


def test_proxy_mode_urls_and_ranges(moto_s3, proxy_lake):
    status, _, lines = proxy_lake.query("basic_partitioned")
    assert status == 200, lines
    for url, _ in file_urls(lines):
        assert url.startswith(proxy_lake.base) and "/files/" in url, url
        assert moto_s3.endpoint not in url
        whole = requests.get(url, timeout=10)
        assert whole.status_code == 200 and whole.content[:4] == b"PAR1"
        r = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=10)
        assert r.status_code == 206 and r.content == b"PAR1", (r.status_code, r.headers)
        r = requests.get(url, headers={"Range": "bytes=-4"}, timeout=10)
        assert r.status_code == 206 and r.content == whole.content[-4:] == b"PAR1"


# =========================================================================== (f) failures


def test_storage_failures_are_fast_protocol_errors_without_secrets(moto_s3, azurite, tmp_path):
    """A missing bucket, a wrong key (Azurite checks SharedKey) and an endpoint nobody listens
    on: each is a protocol error JSON within a few seconds, through REST and the connector;
    neither the answer nor the log holds a secret; the log names the location."""
    upload_fixtures(azurite, "d2o-wrongkey", ["simple_table"])
    wrong_key = "V3Jvbmcga2V5IGZvciB0aGUgZDJvIHRlc3RzLCBub3QgdGhlIGFjY291bnQga2V5IQ=="
    dead = f"http://127.0.0.1:{free_port()}"
    entries = [
        s3_entry(moto_s3, name="missing", bucket="d2o-no-such-bucket"),
        s3_entry(moto_s3, name="dead", bucket="d2o-dead", endpoint=dead),
        {"name": "wrongkey", "url": "az://d2o-wrongkey/",
         "options": {**azurite.options(), "access_key": "${D2O_STORAGE_TEST_WRONG_AZURE_KEY}"}},
    ]
    tables = {
        "missing": "s3://d2o-no-such-bucket/simple_table/",
        "dead": "s3://d2o-dead/simple_table/",
        "wrongkey": "az://d2o-wrongkey/simple_table/",
    }
    served = serve_yaml(tmp_path, entries, tables, env={"D2O_STORAGE_TEST_WRONG_AZURE_KEY": wrong_key})
    try:
        bodies = []
        for table, location in tables.items():
            for suffix, method in (("/query", "POST"), ("/version", "GET")):
                started = time.monotonic()
                status, _, body = http(method, served.api(table, suffix), served.token,
                                       {} if method == "POST" else None, timeout=60)
                took = time.monotonic() - started
                assert took < ERROR_DEADLINE_S, f"{table}{suffix}: error took {took:.1f}s"
                assert_protocol_error(status, body, f"{table}{suffix}")
                bodies.append(body)
            started = time.monotonic()
            with pytest.raises(HTTPError):
                delta_sharing.load_as_pandas(served.url(table))
            assert time.monotonic() - started < ERROR_DEADLINE_S
            assert location.rstrip("/") in served.log(), f"the log does not name {location}"
        log = served.log()
        for secret in (AWS_SECRET_ACCESS_KEY, AZURE_ACCOUNT_KEY, wrong_key):
            assert all(secret.encode() not in b for b in bodies), "a response holds a secret"
            assert secret not in log, "the server log holds a secret"
    finally:
        stop(served.server.proc)


def test_inline_secrets_are_refused(moto_s3, tmp_path):
    import subprocess

    entry = s3_entry(moto_s3)
    entry["options"]["secret_access_key"] = AWS_SECRET_ACCESS_KEY
    config = tmp_path / "inline.yaml"
    config.write_text("\n".join(["version: 1", *storage_yaml([entry]), "shares: []"]) + "\n")
    done = subprocess.run([os.environ["D2O_BIN"], "serve", "--config", str(config), "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done.stdout
    assert "secret_access_key" in done.stderr and AWS_SECRET_ACCESS_KEY not in done.stderr, done.stderr


# =========================================================================== (g) warm query cost


def test_a_warm_query_costs_a_listing_not_a_request_per_file(moto_s3, tmp_path):
    fx = fixture_by_name("basic_partitioned")
    upload_fixtures(moto_s3, "d2o-counted", [fx.name])
    proxy = CountingProxy(moto_s3.endpoint)
    served = serve_yaml(tmp_path, [s3_entry(moto_s3, bucket="d2o-counted", endpoint=proxy.endpoint)],
                        {fx.table: f"s3://d2o-counted/{fx.name}/"})
    try:
        status, _, lines = served.query(fx.table)
        assert status == 200, lines
        n_files = len(file_urls(lines))
        cold = proxy.counts()
        proxy.reset()
        status, _, lines = served.query(fx.table)
        assert status == 200 and len(file_urls(lines)) == n_files
        warm = proxy.counts()
        total = sum(warm.values())
        assert total <= 2, f"warm /query made {total} store requests (cold: {sum(cold.values())}): {dict(warm)}"
        assert not [p for (_, p) in warm if p.endswith(".parquet")], dict(warm)
    finally:
        stop(served.server.proc)
        proxy.close()


# =========================================================================== catalog commands


def test_catalog_storage_commands_and_serving(moto_s3, tmp_path):
    fx = fixture_by_name("simple_table")
    upload_fixtures(moto_s3, "d2o-catalog", [fx.name])
    catalog = tmp_path / "d2o.db"
    options = [a for k, v in moto_s3.options().items() for a in ("--option", f"{k}={v}")]
    cli("storage", "add", "lake", "--url", "s3://d2o-catalog/", *options, "--catalog", str(catalog), catalog=catalog)
    inline = cli("storage", "add", "bad", "--url", "s3://other/", "--option", f"secret_access_key={AWS_SECRET_ACCESS_KEY}",
                 "--catalog", str(catalog), catalog=catalog, check=False)
    assert inline.returncode != 0 and AWS_SECRET_ACCESS_KEY not in inline.stderr, inline.stderr
    listed = [json.loads(x) for x in cli("storage", "list", "--json", "--catalog", str(catalog), catalog=catalog).stdout.splitlines() if x.strip()]
    assert [e["name"] for e in listed] == ["lake"], listed
    shown = cli("storage", "show", "lake", "--catalog", str(catalog), catalog=catalog).stdout
    assert "s3://d2o-catalog/" in shown and AWS_SECRET_ACCESS_KEY not in shown, shown
    cli("storage", "check", "lake", "--catalog", str(catalog), catalog=catalog)
    cli("share", "create", SHARE, catalog=catalog)
    missing = cli("share", "add-table", SHARE, f"{SCHEMA}.nothing", "--location", "s3://d2o-catalog/nothing/",
                  catalog=catalog, check=False)
    assert missing.returncode != 0 and "s3://d2o-catalog/nothing" in missing.stderr, missing.stderr
    cli("share", "add-table", SHARE, f"{SCHEMA}.{fx.table}", "--location", f"s3://d2o-catalog/{fx.name}/", "--history",
        catalog=catalog)
    profile = tmp_path / "recipient.share"
    cli("recipient", "create", "reader", "--profile-out", str(profile), "--endpoint", f"http://127.0.0.1:9{PREFIX}",
        catalog=catalog)
    cli("grant", SHARE, "reader", catalog=catalog)
    server = start(tmp_path, ["--catalog", str(catalog)])
    try:
        # the port is known only now: point the recipient's profile at it
        creds = json.loads(profile.read_text())
        profile.write_text(json.dumps({**creds, "endpoint": server.base + PREFIX}))
        check_snapshot_read(f"{profile}#{SHARE}.{SCHEMA}.{fx.table}", fx, None, "delta")
        # A recipient held to an IP access list gets the server's own URLs, which check the
        # client's address; a store's pre-signed URL would work from anywhere.
        cli("recipient", "ip-access", "reader", "--allow", "127.0.0.1/32", catalog=catalog)
        token = json.loads(profile.read_text())["bearerToken"]
        status, _, body = http("POST", f"{server.base}{PREFIX}/shares/{SHARE}/schemas/{SCHEMA}/tables/{fx.table}/query",
                               token, {})
        urls = [json.loads(line)["file"]["url"] for line in body.decode().splitlines() if '"file"' in line]
        assert status == 200 and urls and all(u.startswith(f"{server.base}{PREFIX}/files/") for u in urls), urls[:2]
        status, _, data = http("GET", urls[0])
        assert status == 200 and data[:4] == b"PAR1", (status, data[:100])
    finally:
        stop(server.proc)
    cli("storage", "drop", "lake", "--catalog", str(catalog), catalog=catalog)
    assert cli("storage", "list", "--json", "--catalog", str(catalog), catalog=catalog).stdout.strip() == ""


def test_storage_through_the_admin_api_and_proxy_mode(moto_s3, tmp_path):
    """The same commands through a running server's admin API (`--server`): an inline secret is
    a 400 that does not echo it, a reference to a variable outside the stores' own is refused,
    a cloud table without a log is refused by the server, and a proxied location added at run
    time serves at once, through /files. Every storage action is in the audit log."""
    fx = fixture_by_name("basic_partitioned")
    upload_fixtures(moto_s3, "d2o-admin-api", [fx.name])
    catalog = tmp_path / "d2o.db"
    cli("share", "create", SHARE, catalog=catalog)
    admin_token = secrets.token_hex(24)  # never starts with "-"
    server = start(tmp_path, ["--catalog", str(catalog)], env={"D2O_ADMIN_TOKEN": admin_token})
    remote = ["--server", server.base, "--admin-token", admin_token]
    try:
        status, _, body = http("POST", f"{server.base}/admin/v1/storage", admin_token, {
            "name": "bad", "url": "s3://d2o-admin-api/",
            "options": {"secret_access_key": AWS_SECRET_ACCESS_KEY}})
        assert status == 400 and AWS_SECRET_ACCESS_KEY.encode() not in body, (status, body)
        status, _, body = http("POST", f"{server.base}/admin/v1/storage", admin_token, {
            "name": "bad", "url": "s3://d2o-admin-api/", "options": {"secret_access_key": "${D2O_ADMIN_TOKEN}"}})
        assert status == 400 and b"only name variables" in body, (status, body)
        options = [a for k, v in moto_s3.options().items() for a in ("--option", f"{k}={v}")]
        cli("storage", "add", "lake", "--url", "s3://d2o-admin-api/", "--url-mode", "proxy", *options, *remote,
            catalog=catalog)
        shown = json.loads(cli("storage", "show", "lake", "--json", *remote, catalog=catalog).stdout)
        assert shown["urlMode"] == "proxy" and shown["options"]["secret_access_key"] == "${AWS_SECRET_ACCESS_KEY}"
        missing = cli("share", "add-table", SHARE, f"{SCHEMA}.nothing", "--location", "s3://d2o-admin-api/nothing/",
                      *remote, catalog=catalog, check=False)
        assert missing.returncode != 0 and "no Delta log" in missing.stderr, missing.stderr
        cli("share", "add-table", SHARE, f"{SCHEMA}.{fx.table}", "--location", f"s3://d2o-admin-api/{fx.name}/",
            "--history", *remote, catalog=catalog)
        profile = tmp_path / "reader.share"
        cli("recipient", "create", "reader", "--profile-out", str(profile), "--endpoint", server.base + PREFIX,
            *remote, catalog=catalog)
        cli("grant", SHARE, "reader", *remote, catalog=catalog)
        url = f"{profile}#{SHARE}.{SCHEMA}.{fx.table}"
        check_snapshot_read(url, fx, None, "parquet")
        token = json.loads(profile.read_text())["bearerToken"]
        status, _, body = http("POST", f"{server.base}{PREFIX}/shares/{SHARE}/schemas/{SCHEMA}/tables/{fx.table}/query",
                               token, {})
        urls = [json.loads(line)["file"]["url"] for line in body.decode().splitlines() if '"file"' in line]
        assert urls and all(u.startswith(server.base + PREFIX + "/files/") for u in urls), urls[:2]
    finally:
        stop(server.proc)
    actions = [json.loads(x)["action"] for x in cli("audit", "--json", "--limit", "1000", catalog=catalog).stdout.splitlines()
               if x.strip()]
    assert {"admin.storage.add", "admin.storage.show"} <= set(actions), sorted(set(actions))
    assert AWS_SECRET_ACCESS_KEY not in server.log.read_text(errors="replace")
