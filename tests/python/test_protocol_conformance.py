"""REST-level conformance checks (guide/protocol.md section 8, items 1-29 as they apply to the
shared fixtures), made with `requests` straight against the server.

Mapping of the section-8 roles onto the fixtures:
  s1 / sc1  -> share `fixtures`, schema `delta`     (second share: `plain`)
  t_plain   -> simple_table        (unpartitioned, 5 versions, several files, no stats)
  t_part    -> basic_partitioned   (partitioned by string `letter`, incl. a null partition)
               and cdf_table       (partitioned by date `birthday`)
  t_cdf     -> cdf_table           (history shared, change data feed on from version 0)
  no history-> plain.delta.simple_table (historyShared: false)
"""

from __future__ import annotations

import collections
import json
import time
import urllib.parse
from typing import Any, Dict, Iterable, List, Optional

import pytest
import requests

from conftest import (
    MODES,
    PLAIN_SCHEMA,
    PLAIN_SHARE,
    PLAIN_TABLE,
    SCHEMA,
    SHARE,
    Fixture,
    expected_table_id,
    fixture_by_name,
    fixtures,
)

# Every case runs against the YAML file and against the same file imported into SQLite and
# PostgreSQL, read with its own token and with a new recipient's (see conftest.MODES).
D2O_MODES = MODES

TIMEOUT = 60
FIXTURES = fixtures()
T_PLAIN = "simple_table"
T_PART = "basic_partitioned"
T_CDF = "cdf_table"
CAPS = "delta-sharing-capabilities"
# Query-parameter names that make delta-kernel-rs (inside delta-kernel-rust-sharing-wrapper)
# treat an http(s) file URL as pre-signed and fetch it with a plain GET. Without one of them
# the kernel resolves the URL's *path* against the local temp log directory and fails with
# "Object at location /... not found" (delta_kernel default engine, UrlExt::is_presigned).
KERNEL_PRESIGNED_KEYS = {"x-amz-signature", "sp", "x-goog-credential", "x-oss-credential", "x-databricks-signature"}


# =========================================================================== helpers


@pytest.fixture(scope="module")
def http() -> Iterable[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # loopback only; never go through a proxy
    yield s
    s.close()


def get(http, d2o, url: str, *, auth: bool = True, headers: Optional[Dict[str, str]] = None, **kw) -> requests.Response:
    h = dict(d2o.auth) if auth else {}
    h.update(headers or {})
    return http.get(url, headers=h, timeout=TIMEOUT, **kw)


def post(http, d2o, url: str, body: Any = None, *, raw: Optional[bytes] = None, auth: bool = True,
         headers: Optional[Dict[str, str]] = None) -> requests.Response:
    h = dict(d2o.auth) if auth else {}
    h["Content-Type"] = "application/json; charset=utf-8"
    h.update(headers or {})
    data = raw if raw is not None else json.dumps({} if body is None else body).encode()
    return http.post(url, data=data, headers=h, timeout=TIMEOUT)


def assert_error(r: requests.Response, status: int, what: str) -> dict:
    """4xx with a JSON {"errorCode": str, "message": str} body."""
    assert r.status_code == status, f"{what}: expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), (
        f"{what}: error Content-Type {r.headers.get('Content-Type')!r}"
    )
    body = r.json()
    assert isinstance(body.get("errorCode"), str) and body["errorCode"], f"{what}: errorCode in {body}"
    assert isinstance(body.get("message"), str), f"{what}: message in {body}"
    return body


def one_line_json(r: requests.Response, what: str) -> dict:
    """List/get responses: 200, application/json, the JSON on a single line (the Python
    connector parses only the first line)."""
    assert r.status_code == 200, f"{what}: {r.status_code} {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers.get("Content-Type")
    text = r.text
    assert "\n" not in text.rstrip("\r\n"), f"{what}: JSON spans several lines: {text[:300]!r}"
    return json.loads(text)


def ndjson(r: requests.Response, what: str) -> List[dict]:
    """NDJSON responses: 200, application/x-ndjson, Delta-Table-Version, no blank lines,
    every line an object with exactly one key."""
    assert r.status_code == 200, f"{what}: {r.status_code} {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/x-ndjson"), (
        f"{what}: Content-Type {r.headers.get('Content-Type')!r}"
    )
    assert "Delta-Table-Version" in r.headers, f"{what}: Delta-Table-Version header missing"
    int(r.headers["Delta-Table-Version"])
    text = r.text
    if text.endswith("\n"):
        text = text[:-1]
    raw = text.split("\n")
    assert all(line.strip() for line in raw), f"{what}: blank line in NDJSON body {r.text[:300]!r}"
    lines = [json.loads(line) for line in raw]
    for i, obj in enumerate(lines):
        assert isinstance(obj, dict) and len(obj) == 1, f"{what}: line {i + 1} is not a one-key object: {obj}"
    return lines


def table_version(r: requests.Response) -> int:
    return int(r.headers["Delta-Table-Version"])


def response_format(r: requests.Response) -> Optional[str]:
    """'delta' | 'parquet' | None (header absent) from the response capabilities header."""
    h = r.headers.get(CAPS)
    if h is None:
        return None
    for part in h.lower().split(";"):
        k, _, v = part.partition("=")
        if k.strip() == "responseformat":
            return v.strip()
    return None


def parquet_files(lines: List[dict], what: str) -> List[dict]:
    assert "protocol" in lines[0], f"{what}: line 1 is not protocol: {lines[0]}"
    assert "metaData" in lines[1], f"{what}: line 2 is not metaData: {lines[1]}"
    out = []
    for obj in lines[2:]:
        assert list(obj) == ["file"], f"{what}: unexpected line after metaData: {obj}"
        f = obj["file"]
        assert isinstance(f.get("url"), str) and f["url"], f"{what}: file.url {f}"
        assert isinstance(f.get("id"), str) and f["id"], f"{what}: file.id {f}"
        assert isinstance(f.get("partitionValues"), dict), f"{what}: file.partitionValues {f}"
        assert isinstance(f.get("size"), int), f"{what}: file.size {f}"
        if "stats" in f:
            assert isinstance(f["stats"], str), f"{what}: stats must be a JSON string: {f}"
            json.loads(f["stats"])
        out.append(f)
    return out


def query(http, d2o, table: str, body: Any = None, **kw) -> requests.Response:
    return post(http, d2o, d2o.table_api(table, "/query"), body, **kw)


def active_files_json_only(fx: Fixture, version: int) -> collections.Counter:
    """(path, size) of the files live at `version`, replaying the JSON commits (only for
    fixtures without checkpoints up to that version)."""
    log = fx.delta_dir / "_delta_log"
    assert not any(log.glob("*.checkpoint*.parquet")), f"{fx.name} has checkpoints"
    live: Dict[str, int] = {}
    for v in range(0, version + 1):
        p = log / f"{v:020d}.json"
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            a = json.loads(line)
            if "remove" in a:
                live.pop(a["remove"]["path"], None)
            elif "add" in a:
                live[a["add"]["path"]] = int(a["add"]["size"])
    return collections.Counter(live.values())


def paginate(http, d2o, url: str, max_results: int) -> List[dict]:
    items: List[dict] = []
    token: Optional[str] = None
    for _ in range(1000):
        params = {"maxResults": str(max_results)}
        if token is not None:
            params["pageToken"] = token
        page = one_line_json(get(http, d2o, url, params=params), f"page of {url}")
        got = page.get("items") or []
        assert len(got) <= max_results, f"{url}: page of {len(got)} items > maxResults={max_results}"
        items += got
        token = page.get("nextPageToken")
        if token is None or token == "":
            return items
    pytest.fail(f"{url}: more than 1000 pages", pytrace=False)


# =========================================================================== 1-3 auth, list shares


def test_health_needs_no_auth(http, d2o):
    assert http.get(d2o.base_url + "/health", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/shares", f"/shares/{SHARE}", f"/shares/{SHARE}/schemas", f"/shares/{SHARE}/all-tables",
     f"/shares/{SHARE}/schemas/{SCHEMA}/tables/{T_PLAIN}/version",
     f"/shares/{SHARE}/schemas/{SCHEMA}/tables/{T_PLAIN}/metadata",
     f"/shares/{SHARE}/schemas/{SCHEMA}/tables/{T_CDF}/changes?startingVersion=0"],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic Zm9vOmJhcg==", "Bearer "], ids=["none", "wrong", "basic", "empty"])
def test_unauthenticated_get_is_401(http, d2o, path: str, header: Optional[str]):
    h = {} if header is None else {"Authorization": header}
    r = http.get(d2o.api(path), headers=h, timeout=TIMEOUT)
    assert r.status_code == 401, f"{path} with {header!r}: {r.status_code} {r.text[:200]}"


def test_unauthenticated_query_is_401(http, d2o):
    r = post(http, d2o, d2o.table_api(T_PLAIN, "/query"), {}, auth=False)
    assert r.status_code == 401
    r = post(http, d2o, d2o.table_api(T_PLAIN, "/query"), {}, auth=False, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_list_shares(http, d2o):
    body = one_line_json(get(http, d2o, d2o.api("/shares")), "/shares")
    names = [s["name"] for s in body.get("items") or []]
    assert all(isinstance(n, str) for n in names)
    assert sorted(names) == sorted([SHARE, PLAIN_SHARE])
    assert body.get("nextPageToken") in (None, "")


# =========================================================================== 4-5 pagination


@pytest.mark.parametrize(
    "path,page",
    [("/shares", 1), (f"/shares/{SHARE}/schemas", 1), (f"/shares/{SHARE}/schemas/{SCHEMA}/tables", 1),
     (f"/shares/{SHARE}/schemas/{SCHEMA}/tables", 5), (f"/shares/{SHARE}/all-tables", 4)],
)
def test_list_pagination(http, d2o, path: str, page: int):
    url = d2o.api(path)
    unpaged = one_line_json(get(http, d2o, url), path).get("items") or []
    paged = paginate(http, d2o, url, page)
    key = lambda it: json.dumps(it, sort_keys=True)  # noqa: E731
    assert len({key(i) for i in paged}) == len(paged), f"{path}: duplicates across pages"
    assert sorted(map(key, paged)) == sorted(map(key, unpaged))


def test_list_max_results_zero(http, d2o):
    body = one_line_json(get(http, d2o, d2o.api("/shares"), params={"maxResults": "0"}), "maxResults=0")
    assert (body.get("items") or []) == []


@pytest.mark.parametrize("params", [{"maxResults": "abc"}, {"maxResults": "-1"}, {"pageToken": "garbage"}],
                         ids=["maxResults=abc", "maxResults=-1", "pageToken=garbage"])
@pytest.mark.parametrize("path", ["/shares", f"/shares/{SHARE}/schemas", f"/shares/{SHARE}/schemas/{SCHEMA}/tables",
                                  f"/shares/{SHARE}/all-tables"])
def test_list_bad_params_are_400(http, d2o, path: str, params: dict):
    assert_error(get(http, d2o, d2o.api(path), params=params), 400, f"{path} {params}")


def test_page_token_of_another_listing_is_400(http, d2o):
    page = one_line_json(
        get(http, d2o, d2o.api(f"/shares/{SHARE}/schemas/{SCHEMA}/tables"), params={"maxResults": "1"}), "tables"
    )
    token = page.get("nextPageToken")
    assert token, "14+ tables with maxResults=1 must give a nextPageToken"
    r = get(http, d2o, d2o.api(f"/shares/{PLAIN_SHARE}/schemas/{PLAIN_SCHEMA}/tables"), params={"pageToken": token})
    assert_error(r, 400, "tables token replayed on another schema")


# =========================================================================== 6-9 get/list


def test_get_share(http, d2o):
    body = one_line_json(get(http, d2o, d2o.api(f"/shares/{SHARE}")), "get share")
    assert body["share"]["name"] == SHARE
    body = one_line_json(get(http, d2o, d2o.api(f"/shares/{SHARE.upper()}")), "get share, other case")
    assert body["share"]["name"].lower() == SHARE
    assert_error(get(http, d2o, d2o.api("/shares/nope")), 404, "unknown share")


def test_list_schemas(http, d2o):
    body = one_line_json(get(http, d2o, d2o.api(f"/shares/{SHARE}/schemas")), "schemas")
    items = body.get("items") or []
    assert all(isinstance(i.get("name"), str) and i.get("share") == SHARE for i in items), items
    assert [i["name"] for i in items] == [SCHEMA]
    assert_error(get(http, d2o, d2o.api("/shares/nope/schemas")), 404, "schemas of unknown share")


def test_list_tables(http, d2o):
    body = one_line_json(get(http, d2o, d2o.api(f"/shares/{SHARE}/schemas/{SCHEMA}/tables")), "tables")
    items = body.get("items") or []
    for i in items:
        assert isinstance(i.get("name"), str) and i.get("schema") == SCHEMA and i.get("share") == SHARE, i
    assert sorted(i["name"] for i in items) == sorted(fx.table for fx in FIXTURES)
    assert_error(get(http, d2o, d2o.api(f"/shares/{SHARE}/schemas/nope/tables")), 404, "tables of unknown schema")
    assert_error(get(http, d2o, d2o.api("/shares/nope/schemas/delta/tables")), 404, "tables of unknown share")


def test_table_ids_are_the_yamls(http, d2o):
    """Every listing reports each table's id as the YAML gives it (or YAML mode derives it), in
    every mode: a catalog import keeps them, so recipients' caches and checkpoints see the same
    tables after the move."""
    for share in (SHARE, PLAIN_SHARE):
        listed = one_line_json(get(http, d2o, d2o.api(f"/shares/{share}/all-tables")), "all-tables").get("items") or []
        for sc in one_line_json(get(http, d2o, d2o.api(f"/shares/{share}/schemas")), "schemas").get("items") or []:
            tables = one_line_json(get(http, d2o, d2o.api(f"/shares/{share}/schemas/{sc['name']}/tables")), "tables")
            listed += tables.get("items") or []
        assert listed
        for t in listed:
            assert t.get("id") == expected_table_id(t["share"], t["schema"], t["name"]), (d2o.mode, t)


def test_all_tables_is_union_of_schemas(http, d2o):
    for share in (SHARE, PLAIN_SHARE):
        body = one_line_json(get(http, d2o, d2o.api(f"/shares/{share}/all-tables")), "all-tables")
        all_t = {(i["share"], i["schema"], i["name"]) for i in body.get("items") or []}
        per_schema = set()
        for sc in one_line_json(get(http, d2o, d2o.api(f"/shares/{share}/schemas")), "schemas").get("items") or []:
            t = one_line_json(get(http, d2o, d2o.api(f"/shares/{share}/schemas/{sc['name']}/tables")), "tables")
            per_schema |= {(i["share"], i["schema"], i["name"]) for i in t.get("items") or []}
        assert all_t == per_schema
    assert_error(get(http, d2o, d2o.api("/shares/nope/all-tables")), 404, "all-tables of unknown share")


# =========================================================================== 10-12 version


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES])
def test_table_version(http, d2o, fx: Fixture):
    r = get(http, d2o, d2o.table_api(fx.table, "/version"))
    assert r.status_code == 200, r.text
    assert table_version(r) == fx.latest
    assert r.content == b"", f"/version body must be empty, got {r.content[:100]!r}"


def test_table_names_are_case_insensitive(http, d2o):
    r = get(http, d2o, d2o.api(f"/shares/{SHARE.upper()}/schemas/{SCHEMA.upper()}/tables/{T_PLAIN.upper()}/version"))
    assert r.status_code == 200 and table_version(r) == fixture_by_name("simple_table").latest


def test_unknown_table_is_404(http, d2o):
    assert_error(get(http, d2o, d2o.table_api("nope", "/version")), 404, "version of unknown table")
    assert_error(get(http, d2o, d2o.table_api("nope", "/metadata")), 404, "metadata of unknown table")
    assert_error(query(http, d2o, "nope", {}), 404, "query of unknown table")
    assert_error(get(http, d2o, d2o.table_api("nope", "/changes"), params={"startingVersion": "0"}), 404,
                 "changes of unknown table")
    assert_error(get(http, d2o, d2o.table_api(T_PLAIN, "/version", schema="nope")), 404, "unknown schema")


def test_version_starting_timestamp(http, d2o):
    url = d2o.table_api(T_CDF, "/version")
    r = get(http, d2o, url, params={"startingTimestamp": "2000-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert table_version(r) == 0
    assert_error(get(http, d2o, url, params={"startingTimestamp": "abc"}), 400, "startingTimestamp=abc")
    assert_error(get(http, d2o, url, params={"startingTimestamp": "2999-01-01T00:00:00Z"}), 400,
                 "startingTimestamp after the latest commit")
    plain = d2o.table_api(PLAIN_TABLE, "/version", share=PLAIN_SHARE, schema=PLAIN_SCHEMA)
    assert_error(get(http, d2o, plain, params={"startingTimestamp": "2000-01-01T00:00:00Z"}), 400,
                 "startingTimestamp on a table without history sharing")


# =========================================================================== 13-15 metadata


def _check_parquet_metadata(lines: List[dict], fx: Fixture, what: str) -> dict:
    assert len(lines) == 2, f"{what}: /metadata must have exactly 2 lines, got {len(lines)}"
    p = lines[0].get("protocol")
    assert isinstance(p, dict) and isinstance(p.get("minReaderVersion"), int), f"{what}: {lines[0]}"
    assert p["minReaderVersion"] <= 3
    m = lines[1].get("metaData")
    assert isinstance(m, dict), f"{what}: {lines[1]}"
    assert isinstance(m.get("id"), str) and m["id"]
    assert m.get("format", {}).get("provider") == "parquet"
    schema = json.loads(m["schemaString"])
    assert schema["type"] == "struct" and isinstance(schema["fields"], list)
    assert m.get("partitionColumns") == fx.partition_columns
    return m


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES])
def test_metadata_parquet_format(http, d2o, fx: Fixture):
    """No capabilities header = parquet. Tables needing the delta format (deletion vectors,
    column mapping) must be refused with 400; timestamp_ntz tables may be refused (400) or
    described (the connector then rejects the type itself)."""
    r = get(http, d2o, d2o.table_api(fx.table, "/metadata"))
    if fx.needs_delta_format:
        assert_error(r, 400, f"{fx.name} /metadata in parquet format")
        return
    if fx.has_timestamp_ntz and r.status_code == 400:
        assert_error(r, 400, f"{fx.name} /metadata")
        return
    lines = ndjson(r, f"{fx.name} /metadata")
    assert table_version(r) == fx.latest
    assert response_format(r) in (None, "parquet"), r.headers.get(CAPS)
    m = _check_parquet_metadata(lines, fx, fx.name)
    names = [f["name"] for f in json.loads(m["schemaString"])["fields"]]
    assert names == [f["name"] for f in json.loads(fx.meta["schema_string"])["fields"]]


def _check_delta_metadata(lines: List[dict], fx: Fixture, what: str) -> None:
    assert len(lines) == 2, f"{what}: /metadata must have exactly 2 lines, got {len(lines)}"
    dp = lines[0].get("protocol", {}).get("deltaProtocol")
    assert isinstance(dp, dict), f"{what}: line 1 {lines[0]}"
    assert dp.get("minReaderVersion") == fx.meta["protocol"]["minReaderVersion"], dp
    assert dp.get("minWriterVersion") == fx.meta["protocol"]["minWriterVersion"], dp
    assert set(dp.get("readerFeatures") or []) == set(fx.meta["protocol"].get("readerFeatures") or []), dp
    dm = lines[1].get("metaData", {}).get("deltaMetadata")
    assert isinstance(dm, dict), f"{what}: line 2 {lines[1]}"
    assert json.loads(dm["schemaString"]) == json.loads(fx.meta["schema_string"]), "schemaString must be verbatim"
    assert dm.get("partitionColumns") == fx.partition_columns
    assert isinstance(dm.get("format"), dict) and dm["format"].get("provider") == "parquet"
    # delta-kernel-rs parses these strictly: maps must be JSON objects
    assert isinstance(dm["format"].get("options", {}), dict)
    assert isinstance(dm.get("configuration", {}), dict)
    for k, v in (fx.meta.get("configuration") or {}).items():
        assert dm["configuration"].get(k) == v, f"configuration[{k}] must be passed through: {dm.get('configuration')}"


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES])
def test_metadata_delta_format(http, d2o, fx: Fixture):
    r = get(http, d2o, d2o.table_api(fx.table, "/metadata"),
            headers={CAPS: "responseformat=delta;readerfeatures=deletionvectors,columnmapping,timestampntz"})
    lines = ndjson(r, f"{fx.name} /metadata delta")
    assert response_format(r) == "delta", f"response {CAPS}: {r.headers.get(CAPS)!r}"
    assert table_version(r) == fx.latest
    _check_delta_metadata(lines, fx, fx.name)


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES])
def test_metadata_format_negotiation(http, d2o, fx: Fixture):
    """`responseformat=delta,parquet` (what the connector sends to auto-resolve): exactly one
    format in the answer, the body in that format. Delta is mandatory when the parquet format
    cannot describe the data: deletion vectors, column mapping, timestamp_ntz (not a type of
    the parquet-format schema). Log-only reader features (v2Checkpoint) may be answered
    either way; the reference server picks delta for any minReaderVersion > 1."""
    r = get(http, d2o, d2o.table_api(fx.table, "/metadata"),
            headers={CAPS: "responseformat=delta,parquet;readerfeatures=deletionvectors,columnmapping,timestampntz"})
    lines = ndjson(r, f"{fx.name} /metadata delta,parquet")
    fmt = response_format(r)
    assert fmt in ("delta", "parquet", None), f"response {CAPS} must name one format: {r.headers.get(CAPS)!r}"
    if fx.needs_delta_format or fx.has_timestamp_ntz:
        assert fmt == "delta", f"{fx.name} (features {fx.meta['protocol'].get('readerFeatures')}, column mapping " \
                               f"{fx.column_mapping}) needs the delta format, got {fmt!r}"
    if fmt == "delta":
        _check_delta_metadata(lines, fx, fx.name)
    else:
        _check_parquet_metadata(lines, fx, fx.name)


def test_metadata_at_version(http, d2o):
    """time-travel-partition-changes-b changes its partition column between v0 and v1."""
    fx = fixture_by_name("time-travel-partition-changes-b")
    url = d2o.table_api(fx.table, "/metadata")
    r0 = get(http, d2o, url, params={"version": "0"})
    m0 = ndjson(r0, "metadata v0")[1]["metaData"]
    assert table_version(r0) == 0
    r1 = get(http, d2o, url)
    m1 = ndjson(r1, "metadata latest")[1]["metaData"]
    assert m1["partitionColumns"] == fx.partition_columns
    assert m0["partitionColumns"] != m1["partitionColumns"], (m0["partitionColumns"], m1["partitionColumns"])
    plain = d2o.table_api(PLAIN_TABLE, "/metadata", share=PLAIN_SHARE, schema=PLAIN_SCHEMA)
    assert_error(get(http, d2o, plain, params={"version": "0"}), 400, "metadata?version on a history-less table")


# =========================================================================== 16-18 query + files


def test_query_parquet_lines(http, d2o):
    fx = fixture_by_name("simple_table")
    r = query(http, d2o, T_PLAIN, {})
    lines = ndjson(r, "query {}")
    assert table_version(r) == fx.latest
    assert response_format(r) in (None, "parquet")
    files = parquet_files(lines, "query {}")
    assert not any("endStreamAction" in l for l in lines), "endStreamAction sent without being asked for"
    for f in files:
        assert f["partitionValues"] == {}
    sizes = collections.Counter(f["size"] for f in files)
    assert sizes == active_files_json_only(fx, fx.latest), "file sizes differ from the log's live files"


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_file_urls_fetchable(http, d2o):
    """Every file URL: readable without the bearer token, byte count == size, PAR1 at both
    ends, HEAD gives Content-Length, Range requests give 206 with the right bytes."""
    files = parquet_files(ndjson(query(http, d2o, T_PART, {}), "query"), "query")
    assert files
    for f in files:
        url, size = f["url"], f["size"]
        if "expirationTimestamp" in f:
            assert f["expirationTimestamp"] > _now_ms(), f
        r = http.get(url, timeout=TIMEOUT)
        assert r.status_code == 200, f"GET {url}: {r.status_code}"
        assert len(r.content) == size, f"GET {url}: {len(r.content)} bytes, size says {size}"
        assert r.content[:4] == b"PAR1" and r.content[-4:] == b"PAR1"
        body = r.content

        h = http.head(url, timeout=TIMEOUT)
        assert h.status_code == 200, f"HEAD {url}: {h.status_code}"
        assert int(h.headers["Content-Length"]) == size

        for rng, lo, hi in (("bytes=0-3", 0, 3), (f"bytes={size - 8}-{size - 1}", size - 8, size - 1),
                            ("bytes=-8", size - 8, size - 1), ("bytes=4-", 4, size - 1)):
            p = http.get(url, headers={"Range": rng}, timeout=TIMEOUT)
            assert p.status_code == 206, f"Range {rng}: {p.status_code}"
            assert p.content == body[lo:hi + 1], f"Range {rng}: wrong bytes"
            assert p.headers.get("Content-Range") == f"bytes {lo}-{hi}/{size}", p.headers.get("Content-Range")


def _tamper(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    if q:
        k, v = q[-1]
        q[-1] = (k, (v[:-1] + ("A" if v[-1:] != "A" else "B")) if v else "x")
        return urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(q)))
    path = u.path[:-1] + ("A" if u.path[-1:] != "A" else "B")
    return urllib.parse.urlunsplit(u._replace(path=path))


def test_file_url_tampering_is_rejected(http, d2o):
    files = parquet_files(ndjson(query(http, d2o, T_PLAIN, {}), "query"), "query")
    bad = _tamper(files[0]["url"])
    r = http.get(bad, timeout=TIMEOUT)
    assert 400 <= r.status_code < 500, f"tampered file URL answered {r.status_code}"


def test_file_ids_stable_and_unique(http, d2o):
    a = parquet_files(ndjson(query(http, d2o, T_PLAIN, {}), "q1"), "q1")
    b = parquet_files(ndjson(query(http, d2o, T_PLAIN, {}), "q2"), "q2")
    ids_a = [f["id"] for f in a]
    assert len(ids_a) == len(set(ids_a)), "file ids not unique within a response"
    assert sorted(ids_a) == sorted(f["id"] for f in b)


def test_query_delta_format_lines(http, d2o):
    """Delta-format query: protocol.deltaProtocol, metaData.deltaMetadata, then file lines
    with deltaSingleAction.add carrying the URL in `path` plus the fields delta-kernel-rs
    needs; the URL must look pre-signed to the kernel."""
    for name in ("simple_table", "table-with-dv-small", "table-with-columnmapping-mode-name", "cdf-table"):
        fx = fixture_by_name(name)
        r = query(http, d2o, fx.table, {}, headers={CAPS: "responseformat=delta;readerfeatures=deletionvectors,columnmapping,timestampntz"})
        lines = ndjson(r, f"{name} delta query")
        assert response_format(r) == "delta", r.headers.get(CAPS)
        _check_delta_metadata(lines[:2], fx, name)
        adds = []
        for obj in lines[2:]:
            assert list(obj) == ["file"], f"{name}: unexpected line {obj}"
            f = obj["file"]
            assert isinstance(f.get("id"), str) and f["id"]
            dsa = f.get("deltaSingleAction")
            assert isinstance(dsa, dict) and list(dsa) == ["add"], f
            add = dsa["add"]
            for k, typ in (("path", str), ("partitionValues", dict), ("size", int), ("modificationTime", int),
                           ("dataChange", bool)):
                assert isinstance(add.get(k), typ), f"{name}: add.{k} missing/wrong type: {add}"
            u = urllib.parse.urlsplit(add["path"])
            assert u.scheme in ("http", "https"), add["path"]
            keys = {k.lower() for k, _ in urllib.parse.parse_qsl(u.query, keep_blank_values=True)}
            assert keys & KERNEL_PRESIGNED_KEYS, (
                f"{name}: file URL {add['path']} has none of the query parameters delta-kernel-rs uses to "
                f"recognise a pre-signed URL ({sorted(KERNEL_PRESIGNED_KEYS)}); the connector's delta path "
                f"would look the URL's path up on the local disk"
            )
            adds.append(add)
        assert adds, f"{name}: no files"
        if fx.has_deletion_vectors and fx.latest >= 1:
            dvs = [a["deletionVector"] for a in adds if a.get("deletionVector")]
            assert dvs, f"{name}: the latest version has a deletion vector"
            for dv in dvs:
                assert dv.get("storageType") == "p", f"DV must be rewritten to an absolute URL: {dv}"
                dv_body = http.get(dv["pathOrInlineDv"], timeout=TIMEOUT)
                assert dv_body.status_code == 200, f"DV URL: {dv_body.status_code}"
                off = int(dv.get("offset") or 0)
                assert len(dv_body.content) >= off + 4 + int(dv["sizeInBytes"]), "DV file too short"
                assert dv_body.content[0:1] == b"\x01", "DV file format version byte"


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES if fx.needs_delta_format])
def test_query_parquet_refused_for_delta_only_tables(http, d2o, fx: Fixture):
    assert_error(query(http, d2o, fx.table, {}), 400, f"{fx.name} parquet query")
    assert_error(query(http, d2o, fx.table, {}, headers={CAPS: "responseformat=parquet"}), 400,
                 f"{fx.name} explicit parquet query")


# =========================================================================== 19-21 hints


def _hint(column: str, value: str, value_type: str) -> str:
    return json.dumps({"op": "equal", "children": [
        {"op": "column", "name": column, "valueType": value_type},
        {"op": "literal", "value": value, "valueType": value_type}]})


@pytest.mark.parametrize("table,column,vtype", [(T_PART, "letter", "string"), (T_CDF, "birthday", "date")])
def test_json_predicate_hints_keep_matching_files(http, d2o, table: str, column: str, vtype: str):
    all_files = parquet_files(ndjson(query(http, d2o, table, {}), "all"), "all")
    values = sorted({f["partitionValues"].get(column) for f in all_files if f["partitionValues"].get(column)})
    assert len(values) >= 2, f"{table}: need >= 2 partitions, got {values}"
    wanted = values[0]
    r = query(http, d2o, table, {"jsonPredicateHints": _hint(column, wanted, vtype)})
    got = parquet_files(ndjson(r, "hinted"), "hinted")
    got_ids = {f["id"] for f in got}
    must = {f["id"] for f in all_files if f["partitionValues"].get(column) == wanted}
    assert must <= got_ids, f"files of {column}={wanted} dropped by the hint: {must - got_ids}"
    assert got_ids <= {f["id"] for f in all_files}, "hint produced files that are not in the table"


def test_json_predicate_hint_is_null_keeps_null_partition(http, d2o):
    all_files = parquet_files(ndjson(query(http, d2o, T_PART, {}), "all"), "all")
    nulls = {f["id"] for f in all_files if f["partitionValues"].get("letter") in (None, "")}
    assert nulls, "basic_partitioned has a __HIVE_DEFAULT_PARTITION__ file with a null letter"
    hint = json.dumps({"op": "isNull", "children": [{"op": "column", "name": "letter", "valueType": "string"}]})
    got = {f["id"] for f in parquet_files(ndjson(query(http, d2o, T_PART, {"jsonPredicateHints": hint}), "isNull"), "isNull")}
    assert nulls <= got, "isNull hint dropped the null partition"


@pytest.mark.parametrize("hint", ["bad-predicates", '{"op":"nope"}', '{"op":"equal","children":[]}'])
def test_bad_json_predicate_hints_return_all_files(http, d2o, hint: str):
    all_ids = sorted(f["id"] for f in parquet_files(ndjson(query(http, d2o, T_PART, {}), "all"), "all"))
    r = query(http, d2o, T_PART, {"jsonPredicateHints": hint})
    got = sorted(f["id"] for f in parquet_files(ndjson(r, f"hint {hint}"), "hint"))
    assert got == all_ids


def test_limit_hint(http, d2o):
    for table in (T_PLAIN, T_PART):
        r = query(http, d2o, table, {"limitHint": 1})
        files = parquet_files(ndjson(r, f"{table} limitHint"), "limitHint")
        assert len(files) >= 1


# =========================================================================== 22-25 time travel, errors, paging


def test_query_at_version(http, d2o):
    fx = fixture_by_name("cdf-table")
    r = query(http, d2o, T_CDF, {"version": 0})
    lines = ndjson(r, "version 0")
    assert table_version(r) == 0
    files = parquet_files(lines, "version 0")
    for f in files:
        if "version" in f:
            assert f["version"] == 0, f
    assert collections.Counter(f["size"] for f in files) == active_files_json_only(fx, 0)


def test_query_time_travel_without_history_is_400(http, d2o):
    url = d2o.table_api(PLAIN_TABLE, "/query", share=PLAIN_SHARE, schema=PLAIN_SCHEMA)
    assert_error(post(http, d2o, url, {"version": 0}), 400, "version on a history-less table")
    assert_error(post(http, d2o, url, {"timestamp": "2022-01-01T00:00:00Z"}), 400, "timestamp on a history-less table")


@pytest.mark.parametrize(
    "body",
    [{"version": 0, "timestamp": "2022-01-01T00:00:00Z"}, {"version": -1}, {"version": 999999},
     {"timestamp": "2000-01-01T00:00:00Z"}, {"timestamp": "not a timestamp"},
     {"version": 0, "startingVersion": 0}],
    ids=["version+timestamp", "version=-1", "version=999999", "timestamp-before-v0", "timestamp=garbage",
         "version+startingVersion"],
)
def test_query_bad_time_travel_is_400(http, d2o, body: dict):
    assert_error(query(http, d2o, T_CDF, body), 400, f"query {body}")


@pytest.mark.parametrize("raw", [b"not json", b'{"predicateHints":{}}', b"[]", b'{"limitHint":"x"}'],
                         ids=["not-json", "predicateHints-object", "array", "limitHint-string"])
def test_query_malformed_body_is_400(http, d2o, raw: bytes):
    assert_error(query(http, d2o, T_PLAIN, raw=raw), 400, f"body {raw!r}")


def test_query_pagination_max_files(http, d2o):
    expected_ids = sorted(f["id"] for f in parquet_files(ndjson(query(http, d2o, T_PLAIN, {}), "all"), "all"))
    assert len(expected_ids) >= 2
    got: List[str] = []
    token: Optional[str] = None
    for page_no in range(len(expected_ids) + 2):
        body: Dict[str, Any] = {"maxFiles": 1}
        if token is not None:
            body["pageToken"] = token
        lines = ndjson(query(http, d2o, T_PLAIN, body), f"page {page_no}")
        assert "protocol" in lines[0] and "metaData" in lines[1]
        assert "endStreamAction" in lines[-1], f"page {page_no} must end with endStreamAction: {lines[-1]}"
        mid = lines[2:-1]
        assert all(list(l) == ["file"] for l in mid), mid
        assert len(mid) <= 1
        got += [l["file"]["id"] for l in mid]
        token = lines[-1]["endStreamAction"].get("nextPageToken")
        if not token:
            break
    else:
        pytest.fail("pagination did not terminate", pytrace=False)
    assert sorted(got) == expected_ids


@pytest.mark.parametrize("body", [{"maxFiles": 0}, {"maxFiles": -1}, {"pageToken": "x"}, {"maxFiles": 1, "pageToken": "x"}],
                         ids=["maxFiles=0", "maxFiles=-1", "pageToken=x", "maxFiles+pageToken=x"])
def test_query_bad_pagination_is_400(http, d2o, body: dict):
    assert_error(query(http, d2o, T_PLAIN, body), 400, f"query {body}")


def test_query_page_token_of_another_table_is_400(http, d2o):
    lines = ndjson(query(http, d2o, T_PLAIN, {"maxFiles": 1}), "page 1")
    token = lines[-1]["endStreamAction"].get("nextPageToken")
    assert token
    assert_error(query(http, d2o, T_CDF, {"maxFiles": 1, "pageToken": token}), 400, "foreign page token")


def test_include_end_stream_action(http, d2o):
    r = query(http, d2o, T_PLAIN, {}, headers={CAPS: "includeendstreamaction=true"})
    lines = ndjson(r, "includeendstreamaction")
    echoed = "includeendstreamaction=true" in (r.headers.get(CAPS) or "").lower().replace(" ", "")
    if echoed:
        assert "endStreamAction" in lines[-1], f"echoed includeendstreamaction but last line is {lines[-1]}"
    else:
        assert not any("endStreamAction" in l for l in lines), "endStreamAction without the echo"


# =========================================================================== 27-29 changes


def test_changes_lines(http, d2o):
    fx = fixture_by_name("cdf-table")
    r = get(http, d2o, d2o.table_api(T_CDF, "/changes"),
            params={"startingVersion": "0", "endingVersion": str(fx.latest)})
    lines = ndjson(r, "changes")
    assert table_version(r) == 0, "Delta-Table-Version of /changes is the starting version"
    assert "protocol" in lines[0] and "metaData" in lines[1]
    kinds = collections.Counter()
    for obj in lines[2:]:
        (k,) = obj
        assert k in ("add", "cdf", "remove", "metaData"), f"unexpected line {obj}"
        kinds[k] += 1
        if k == "metaData":
            continue
        a = obj[k]
        for field, typ in (("url", str), ("id", str), ("partitionValues", dict), ("size", int), ("version", int),
                           ("timestamp", int)):
            assert isinstance(a.get(field), typ), f"{k}.{field}: {a}"
        assert 0 <= a["version"] <= fx.latest
    assert kinds["cdf"] > 0, "cdf-table has _change_data files: expected cdf lines"
    assert kinds["add"] > 0, "version 0 is a plain insert: expected add lines"


@pytest.mark.parametrize(
    "params",
    [{}, {"startingVersion": "999999"}, {"startingVersion": "0", "startingTimestamp": "2000-01-01T00:00:00Z"},
     {"startingVersion": "2", "endingVersion": "1"}, {"startingVersion": "abc"}, {"startingVersion": "0", "endingVersion": "999999"}],
    ids=["no-start", "start-too-large", "version+timestamp", "end-before-start", "start-not-a-number", "end-too-large"],
)
def test_changes_bad_params_are_400(http, d2o, params: dict):
    assert_error(get(http, d2o, d2o.table_api(T_CDF, "/changes"), params=params), 400, f"changes {params}")


def test_changes_without_history_is_400(http, d2o):
    url = d2o.table_api(PLAIN_TABLE, "/changes", share=PLAIN_SHARE, schema=PLAIN_SCHEMA)
    assert_error(get(http, d2o, url, params={"startingVersion": "0"}), 400, "changes on a history-less table")


@pytest.mark.parametrize("value", ["True", "False", "true", "false"])
def test_changes_include_historical_metadata(http, d2o, value: str):
    r = get(http, d2o, d2o.table_api(T_CDF, "/changes"),
            params={"startingVersion": "0", "includeHistoricalMetadata": value})
    lines = ndjson(r, f"includeHistoricalMetadata={value}")
    assert "protocol" in lines[0] and "metaData" in lines[1]


def test_changes_delta_format_lines(http, d2o):
    """What the connector's kernel path needs: every file line has version and timestamp,
    every metaData line (including line 2) has version."""
    fx = fixture_by_name("cdf-table")
    r = get(http, d2o, d2o.table_api(T_CDF, "/changes"),
            params={"startingVersion": "0", "includeHistoricalMetadata": "True"},
            headers={CAPS: "responseformat=delta;readerfeatures=deletionvectors,columnmapping"})
    lines = ndjson(r, "delta changes")
    assert response_format(r) == "delta", r.headers.get(CAPS)
    assert "deltaProtocol" in lines[0]["protocol"]
    assert lines[1]["metaData"].get("version") == 0, f"line 2 metaData.version: {lines[1]}"
    for obj in lines[2:]:
        (k,) = obj
        assert k in ("file", "metaData"), obj
        if k == "metaData":
            assert isinstance(obj[k].get("version"), int), obj
            continue
        f = obj["file"]
        assert isinstance(f.get("version"), int) and isinstance(f.get("timestamp"), int), f
        (akind,) = f["deltaSingleAction"]
        assert akind in ("add", "remove", "cdc"), f
        assert 0 <= f["version"] <= fx.latest, f
