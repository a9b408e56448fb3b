"""The official Python connector (delta-sharing) reading every shared fixture table.

Each fixture <name> of shared/delta-tables is served as `fixtures.delta.<name with - -> _>`.
Results are compared with expected/v<N>.parquet (snapshots) and expected/cdf.parquet
(change data feed) as MULTISETS of rows after normalising both sides to plain,
JSON-serialisable Python values (see `normalise`).

Formats:
  * auto    - use_delta_format=None: the connector asks /metadata with
              `responseformat=delta,parquet` and follows the server's choice;
  * delta   - use_delta_format=True: delta-format responses read by delta-kernel-rs
              (delta-kernel-rust-sharing-wrapper);
  * parquet - use_delta_format=False: parquet-format responses read by pyarrow+fsspec.
A table the parquet format cannot represent (deletion vectors, column mapping) must get
a 400 for a parquet-only request; that is asserted, not skipped.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import delta_sharing
from requests.exceptions import HTTPError

from conftest import (
    MODES,
    PLAIN_SCHEMA,
    PLAIN_SHARE,
    PLAIN_TABLE,
    SCHEMA,
    SHARE,
    Fixture,
    fixture_by_name,
    fixtures,
)

FIXTURES: List[Fixture] = fixtures()

# The official connector reads every fixture from the YAML file and from the same file
# imported into a catalog, with the file's token and with a new recipient's (conftest.MODES).
D2O_MODES = MODES
CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


# =========================================================================== normalisation


def _is_null(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (str, bytes, bytearray, memoryview, list, tuple, dict, np.ndarray)):
        return False
    try:
        r = pd.isna(v)
    except (TypeError, ValueError):
        return False
    return bool(r) if isinstance(r, (bool, np.bool_)) else False


def _seq(v: Any) -> list:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.dtype != object else list(v)
    if isinstance(v, (list, tuple)):
        return list(v)
    raise TypeError(f"expected a list-like value, got {type(v).__name__}: {v!r}")


def _timestamp_iso(v: Any) -> str:
    """UTC-normalised, tz-free ISO string; the instant is preserved.

    Values of `timestamp` (UTC-adjusted) columns arrive tz-aware from pyarrow/kernel but
    naive from the connector's partition-value converter; `timestamp_ntz` values are
    naive wall-clock times. A tz-aware value is converted to UTC and made naive; a naive
    value is taken as is. The expected files use tz=UTC for `timestamp` and naive for
    `timestamp_ntz`, so both sides end up in the same representation.
    """
    if isinstance(v, np.datetime64):
        v = pd.Timestamp(v)
    if isinstance(v, str):
        v = pd.Timestamp(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if isinstance(v, datetime.date):
        return datetime.datetime(v.year, v.month, v.day).isoformat()
    if isinstance(v, (int, np.integer)):
        # epoch microseconds (how a raw arrow/kernel value would look)
        return (datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=int(v))).isoformat()
    raise TypeError(f"cannot interpret {type(v).__name__} {v!r} as a timestamp")


def normalise(v: Any, t: pa.DataType) -> Any:
    """Map one cell to a canonical JSON-serialisable value, guided by the expected type."""
    if _is_null(v):
        return None
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        if isinstance(v, (float, np.floating)):
            if math.isnan(v):
                return None
            if float(v).is_integer():
                return int(v)
            return float(v)  # a genuine mismatch; keep it visible
        if isinstance(v, (bool, np.bool_)):
            return int(v)
        return int(v)
    if pa.types.is_floating(t):
        f = float(v)
        if math.isnan(f):
            return None  # NaN and null are unified (the connector turns nulls into NaN)
        return f
    if pa.types.is_boolean(t):
        return bool(v)
    if pa.types.is_decimal(t):
        d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
        try:
            d = d.quantize(decimal.Decimal(1).scaleb(-t.scale))
        except decimal.InvalidOperation:
            pass
        return {"decimal": format(d, "f")}
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t):
        return v if isinstance(v, str) else str(v)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) or _is_binary_view(t):
        if isinstance(v, str):
            v = v.encode("latin-1")
        return {"binary": bytes(v).hex()}
    if pa.types.is_date(t):
        if isinstance(v, datetime.datetime):
            v = v.date()
        elif isinstance(v, (np.datetime64, pd.Timestamp, str)):
            v = pd.Timestamp(v).date()
        elif isinstance(v, (int, np.integer)):
            v = datetime.date(1970, 1, 1) + datetime.timedelta(days=int(v))
        return {"date": v.isoformat()}
    if pa.types.is_timestamp(t):
        return {"ts": _timestamp_iso(v)}
    if pa.types.is_struct(t):
        if not isinstance(v, dict):
            raise TypeError(f"expected a dict for {t}, got {type(v).__name__}: {v!r}")
        lower = {str(k).lower(): val for k, val in v.items()}
        return {
            f.name: normalise(v[f.name] if f.name in v else lower.get(f.name.lower()), f.type)
            for f in t
        }
    if pa.types.is_map(t):
        if isinstance(v, dict):
            items = list(v.items())
        else:
            items = [tuple(x) if not isinstance(x, dict) else (x["key"], x["value"]) for x in _seq(v)]
        pairs = [[normalise(k, t.key_type), normalise(val, t.item_type)] for k, val in items]
        return {"map": sorted(pairs, key=lambda p: json.dumps(p, sort_keys=True))}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or _is_list_view(t):
        return [normalise(x, t.value_type) for x in _seq(v)]
    # anything else: a stable textual form
    return {"other": str(v)}


def _is_string_view(t: pa.DataType) -> bool:
    f = getattr(pa.types, "is_string_view", None)
    return bool(f and f(t))


def _is_binary_view(t: pa.DataType) -> bool:
    f = getattr(pa.types, "is_binary_view", None)
    return bool(f and f(t))


def _is_list_view(t: pa.DataType) -> bool:
    f = getattr(pa.types, "is_list_view", None)
    g = getattr(pa.types, "is_large_list_view", None)
    return bool((f and f(t)) or (g and g(t)))


def _row_key(values: Sequence[Any]) -> str:
    return json.dumps(list(values), sort_keys=True, default=str)


def expected_rows(table: pa.Table, columns: Sequence[str]) -> List[str]:
    types = {f.name: f.type for f in table.schema}
    out = []
    for rec in table.select(list(columns)).to_pylist():
        out.append(_row_key([normalise(rec[c], types[c]) for c in columns]))
    return sorted(out)


def _match_columns(df: pd.DataFrame, wanted: Sequence[str], label: str) -> Dict[str, str]:
    """wanted name -> name in df; names are matched case-insensitively like the connector."""
    by_lower: Dict[str, List[str]] = collections.defaultdict(list)
    for c in df.columns:
        by_lower[str(c).lower()].append(str(c))
    missing = [c for c in wanted if c.lower() not in by_lower]
    dup = {k: v for k, v in by_lower.items() if len(v) > 1}
    assert not dup, f"{label}: duplicate columns (case-insensitive) in result: {dup}"
    assert not missing, (
        f"{label}: result columns {list(df.columns)} lack expected {missing} "
        f"(expected columns {list(wanted)})"
    )
    return {c: by_lower[c.lower()][0] for c in wanted}


def actual_rows(df: pd.DataFrame, columns: Sequence[str], types: Dict[str, pa.DataType], label: str) -> List[str]:
    colmap = _match_columns(df, columns, label)
    cols = [df[colmap[c]].tolist() for c in columns]
    out = []
    for i in range(len(df)):
        row = []
        for j, c in enumerate(columns):
            try:
                row.append(normalise(cols[j][i], types[c]))
            except Exception as e:  # keep the offending value in the message
                raise AssertionError(
                    f"{label}: cannot normalise row {i} column {c!r} value {cols[j][i]!r} "
                    f"as {types[c]}: {e}"
                ) from e
        out.append(_row_key(row))
    return sorted(out)


def assert_same_multiset(actual: List[str], expected: List[str], columns: Sequence[str], label: str) -> None:
    if actual == expected:
        return
    a, e = collections.Counter(actual), collections.Counter(expected)
    missing = list((e - a).elements())
    extra = list((a - e).elements())
    lines = [
        f"{label}: rows differ (as multisets): got {len(actual)} rows, expected {len(expected)}",
        f"columns: {list(columns)}",
        f"missing ({len(missing)}; first 15):",
        *("  - " + r for r in missing[:15]),
        f"unexpected ({len(extra)}; first 15):",
        *("  + " + r for r in extra[:15]),
    ]
    pytest.fail("\n".join(lines), pytrace=False)


def assert_frame_matches(df: pd.DataFrame, expected: pa.Table, label: str, *, exact_columns: bool = True) -> None:
    assert isinstance(df, pd.DataFrame), f"{label}: expected a DataFrame, got {type(df)}"
    columns = list(expected.schema.names)
    if exact_columns:
        got = sorted(str(c).lower() for c in df.columns)
        want = sorted(c.lower() for c in columns)
        assert got == want, f"{label}: columns {list(df.columns)} != expected {columns}"
    types = {f.name: f.type for f in expected.schema}
    assert_same_multiset(actual_rows(df, columns, types, label), expected_rows(expected, columns), columns, label)


_EXPECTED_CACHE: Dict[Path, pa.Table] = {}


def read_expected(path: Path) -> pa.Table:
    if path not in _EXPECTED_CACHE:
        _EXPECTED_CACHE[path] = pq.read_table(path)
    return _EXPECTED_CACHE[path]


def expected_snapshot(fx: Fixture, version: Optional[int]) -> pa.Table:
    return read_expected(fx.expected_version(fx.latest if version is None else version))


# =========================================================================== error expectations


def assert_http_400(fn: Callable[[], Any], label: str) -> HTTPError:
    """The connector must surface the server's 400 (it raises requests' HTTPError, whose
    message starts with '400 Client Error' and carries the server's JSON error)."""
    try:
        result = fn()
    except HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        assert status == 400, f"{label}: expected HTTP 400, got {status}: {e}"
        assert "400" in str(e), f"{label}: error does not mention the 400: {e}"
        return e
    pytest.fail(
        f"{label}: expected the server to refuse with 400, but the connector returned "
        f"{type(result).__name__} {getattr(result, 'shape', '')}",
        pytrace=False,
    )


def assert_ntz_refused_in_parquet(fn: Callable[[], Any], label: str) -> None:
    """timestamp_ntz cannot be read through the parquet format by this connector: either the
    server refuses the parquet-only request (400, like for other reader features the client
    did not announce), or it answers with a `timestamp_ntz` schemaString and the
    connector's converter raises "Could not parse datatype: timestamp_ntz"
    (delta_sharing/converter.py). Any successful read would mean the server rewrote the type
    (a silent change of meaning) and fails this test."""
    try:
        result = fn()
    except HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        assert status == 400, f"{label}: expected HTTP 400, got {status}: {e}"
        return
    except ValueError as e:
        assert "timestamp_ntz" in str(e), f"{label}: unexpected ValueError: {e}"
        return
    pytest.fail(
        f"{label}: parquet-format read of a timestamp_ntz table unexpectedly succeeded "
        f"({getattr(result, 'shape', result)})",
        pytrace=False,
    )


# =========================================================================== parametrisation


def _snapshot_cases() -> List[Any]:
    cases = []
    for fx in FIXTURES:
        cases.append(pytest.param(fx, None, id=f"{fx.name}@latest"))
        for v in fx.versions:
            cases.append(pytest.param(fx, v, id=f"{fx.name}@v{v}"))
    return cases


SNAPSHOT_CASES = _snapshot_cases()
CDF_FIXTURES = [pytest.param(fx, id=fx.name) for fx in FIXTURES if fx.cdf_enabled]
ALL_FIXTURES = [pytest.param(fx, id=fx.name) for fx in FIXTURES]


def _version_kwargs(version: Optional[int]) -> Dict[str, int]:
    return {} if version is None else {"version": version}


def _label(fx: Fixture, version: Optional[int], fmt: str) -> str:
    return f"{fx.name}@{'latest' if version is None else f'v{version}'} [{fmt}]"


# =========================================================================== snapshot reads


def check_snapshot_read(table_url: str, fx: Fixture, version: Optional[int], fmt: str) -> None:
    """Reads `table_url` (a connector URL serving fixture fx) at `version` (None: latest) with
    load_as_pandas and checks the rows; fmt is "auto" (format resolved via /metadata),
    "delta" (use_delta_format=True) or "parquet" (use_delta_format=False). A parquet-only
    read of a table that format cannot represent must be refused (see the module doc).
    Also used by test_object_storage.py for tables in object storage."""
    label = _label(fx, version, fmt)
    use_delta = {"auto": None, "delta": True, "parquet": False}[fmt]
    call = lambda: delta_sharing.load_as_pandas(  # noqa: E731
        table_url, use_delta_format=use_delta, **_version_kwargs(version)
    )
    if fmt == "parquet" and fx.needs_delta_format:
        # deletion vectors / column mapping: a parquet-only request must be refused
        assert_http_400(call, label)
    elif fmt == "parquet" and fx.has_timestamp_ntz:
        assert_ntz_refused_in_parquet(call, label)
    else:
        assert_frame_matches(call(), expected_snapshot(fx, version), label)


@pytest.mark.parametrize("fx,version", SNAPSHOT_CASES)
def test_load_as_pandas_auto_format(d2o, fx: Fixture, version: Optional[int]):
    """Default call: the connector auto-resolves the format via /metadata."""
    check_snapshot_read(d2o.fixture_url(fx), fx, version, "auto")


@pytest.mark.parametrize("fx,version", SNAPSHOT_CASES)
def test_load_as_pandas_delta_format(d2o, fx: Fixture, version: Optional[int]):
    check_snapshot_read(d2o.fixture_url(fx), fx, version, "delta")


@pytest.mark.parametrize("fx,version", SNAPSHOT_CASES)
def test_load_as_pandas_parquet_format(d2o, fx: Fixture, version: Optional[int]):
    check_snapshot_read(d2o.fixture_url(fx), fx, version, "parquet")


@pytest.mark.parametrize(
    "fx",
    [pytest.param(fx, id=fx.name) for fx in FIXTURES if fx.meta["versions"][str(fx.latest)]["rows"] > 0],
)
def test_load_as_pandas_limit(d2o, fx: Fixture):
    """limit=1 yields exactly one row, and it is a row of the table."""
    df = delta_sharing.load_as_pandas(d2o.fixture_url(fx), limit=1)
    expected = expected_snapshot(fx, None)
    assert len(df) == 1, f"{fx.name}: limit=1 returned {len(df)} rows"
    columns = list(expected.schema.names)
    types = {f.name: f.type for f in expected.schema}
    (row,) = actual_rows(df, columns, types, f"{fx.name} limit=1")
    assert row in set(expected_rows(expected, columns)), f"{fx.name}: limit=1 row {row} is not in the table"


@pytest.mark.parametrize("fx", ALL_FIXTURES)
def test_get_table_version(d2o, fx: Fixture):
    assert delta_sharing.get_table_version(d2o.fixture_url(fx)) == fx.latest


@pytest.mark.parametrize("fx", ALL_FIXTURES)
def test_get_table_metadata_and_protocol(d2o, fx: Fixture):
    """get_table_metadata/get_table_protocol send `responseformat=delta,parquet`; whichever
    format the server picks, the schema and partition columns are those of the latest
    version."""
    url = d2o.fixture_url(fx)
    md = delta_sharing.get_table_metadata(url)
    assert list(md.partition_columns) == fx.partition_columns
    schema = json.loads(md.schema_string)
    assert schema["type"] == "struct"
    names = [f["name"] for f in schema["fields"]]
    assert names == list(expected_snapshot(fx, None).schema.names)
    proto = delta_sharing.get_table_protocol(url)
    assert 1 <= proto.min_reader_version <= 3
    if fx.needs_delta_format:
        # only a delta-format answer can describe these tables
        assert proto.min_writer_version is not None, "expected a delta-format protocol"
        assert proto.min_reader_version == fx.meta["protocol"]["minReaderVersion"]


def test_jsonpredicatehints_partition_filter(d2o):
    """jsonPredicateHints on a partitioned table: the server may prune files (best effort,
    the connector does not re-filter), but every row of the matching partition must be
    there, and no row may come out that is not in the table."""
    fx = fixture_by_name("basic_partitioned")
    expected = expected_snapshot(fx, None)
    letters = sorted({x for x in expected.column("letter").to_pylist() if x is not None})
    assert letters, "fixture basic_partitioned has no non-null partition"
    wanted = letters[0]
    hint = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "letter", "valueType": "string"},
                {"op": "literal", "value": wanted, "valueType": "string"},
            ],
        }
    )
    for use_delta in (False, True):
        df = delta_sharing.load_as_pandas(d2o.fixture_url(fx), jsonPredicateHints=hint, use_delta_format=use_delta)
        columns = list(expected.schema.names)
        types = {f.name: f.type for f in expected.schema}
        got = collections.Counter(actual_rows(df, columns, types, "hint"))
        allrows = collections.Counter(expected_rows(expected, columns))
        must = collections.Counter(
            expected_rows(expected.filter(pc.equal(expected.column("letter"), wanted)), columns)
        )
        assert not (must - got), f"[delta={use_delta}] rows of letter={wanted!r} missing: {list((must - got).elements())}"
        assert not (got - allrows), f"[delta={use_delta}] rows not in the table: {list((got - allrows).elements())}"


def test_null_partition_rows(d2o):
    """basic_partitioned has a __HIVE_DEFAULT_PARTITION__ (null) partition: the connector
    must see a null `letter` there, in both formats (partitionValues {"letter": null})."""
    fx = fixture_by_name("basic_partitioned")
    expected = expected_snapshot(fx, None)
    n_null = expected.column("letter").null_count
    assert n_null > 0, "fixture changed: no null partition in basic_partitioned"
    for use_delta in (False, True):
        df = delta_sharing.load_as_pandas(d2o.fixture_url(fx), use_delta_format=use_delta)
        got = int(df["letter"].isna().sum())
        assert got == n_null, f"[delta={use_delta}] {got} null letters, expected {n_null}"


# =========================================================================== history-less share


def _plain_url(d2o) -> str:
    return d2o.table_url(PLAIN_TABLE, share=PLAIN_SHARE, schema=PLAIN_SCHEMA)


def test_plain_share_latest_snapshot(d2o):
    fx = fixture_by_name("simple_table")
    df = delta_sharing.load_as_pandas(_plain_url(d2o))
    assert_frame_matches(df, expected_snapshot(fx, None), "plain.simple_table@latest")


@pytest.mark.parametrize("use_delta", [False, True], ids=["parquet", "delta"])
def test_plain_share_time_travel_refused(d2o, use_delta: bool):
    """historyShared: false -> version queries are a 400 (not a 5xx, which the connector
    would retry for ~100 s)."""
    assert_http_400(
        lambda: delta_sharing.load_as_pandas(_plain_url(d2o), version=0, use_delta_format=use_delta),
        f"plain.simple_table version=0 delta={use_delta}",
    )


def test_plain_share_changes_refused(d2o):
    assert_http_400(
        lambda: delta_sharing.load_table_changes_as_pandas(_plain_url(d2o), starting_version=0),
        "plain.simple_table changes",
    )


# =========================================================================== listing


def test_sharing_client_lists_everything(d2o):
    client = delta_sharing.SharingClient(d2o.profile)
    want = {(SHARE, SCHEMA, fx.table) for fx in FIXTURES} | {(PLAIN_SHARE, PLAIN_SCHEMA, PLAIN_TABLE)}

    tables = client.list_all_tables()
    got = [(t.share, t.schema, t.name) for t in tables]
    assert len(got) == len(set(got)), f"duplicates in list_all_tables: {got}"
    assert set(got) == want

    shares = client.list_shares()
    assert sorted(s.name for s in shares) == sorted({SHARE, PLAIN_SHARE})
    via_schemas = set()
    for share in shares:
        for schema in client.list_schemas(share):
            assert schema.share == share.name
            for t in client.list_tables(schema):
                via_schemas.add((t.share, t.schema, t.name))
    assert via_schemas == want


# =========================================================================== change data feed


def _cdf_call(table_url: str, fmt: str, start: int) -> Callable[[], pd.DataFrame]:
    use_delta = {"default": None, "parquet": False, "delta": True}[fmt]
    return lambda: delta_sharing.load_table_changes_as_pandas(
        table_url, starting_version=start, use_delta_format=use_delta
    )


def _commit_ts_ms(v: Any) -> int:
    """_commit_timestamp is epoch ms (int) from the parquet path, a tz-aware timestamp from
    the kernel path."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v)
    ts = pd.Timestamp(v)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


def check_commit_columns(df: pd.DataFrame, fx: Fixture, label: str) -> None:
    colmap = _match_columns(df, list(CDF_COLUMNS), label)
    versions = [int(v) for v in df[colmap["_commit_version"]].tolist()]
    assert all(0 <= v <= fx.latest for v in versions), f"{label}: _commit_version out of range: {set(versions)}"
    types = set(df[colmap["_change_type"]].tolist())
    assert types <= {"insert", "delete", "update_preimage", "update_postimage"}, f"{label}: _change_type {types}"
    # _commit_timestamp: one value per commit, non-decreasing with the version. Its exact
    # value is not compared with cdf.parquet: the server may take it from commitInfo or
    # from the commit file's mtime (not stable across copies of the fixture), and the
    # kernel path rounds it to whole seconds (the connector stores it as the mtime of a
    # temp log file: os.utime(..., ts // 1000)).
    per_version: Dict[int, set] = collections.defaultdict(set)
    for v, ts in zip(versions, df[colmap["_commit_timestamp"]].tolist()):
        assert not _is_null(ts), f"{label}: null _commit_timestamp at version {v}"
        per_version[v].add(_commit_ts_ms(ts))
    multi = {v: s for v, s in per_version.items() if len(s) != 1}
    assert not multi, f"{label}: several _commit_timestamp values within one version: {multi}"
    ordered = [next(iter(per_version[v])) for v in sorted(per_version)]
    assert ordered == sorted(ordered), f"{label}: _commit_timestamp decreases with version: {dict(zip(sorted(per_version), ordered))}"


def check_cdf_replays_snapshots(df: pd.DataFrame, fx: Fixture, start: int, label: str) -> None:
    """Internal consistency against the snapshot ground truth, usable where no cdf.parquet
    exists: for every version v >= start, snapshot(v-1) - deletes/preimages(v) +
    inserts/postimages(v) == snapshot(v) (multisets; snapshot(-1) is empty)."""
    latest = expected_snapshot(fx, None)
    columns = list(latest.schema.names)
    types = {f.name: f.type for f in latest.schema}
    colmap = _match_columns(df, list(columns) + list(CDF_COLUMNS), label)
    colvals = [df[colmap[c]].tolist() for c in columns]
    per_row = [
        _row_key([normalise(colvals[j][i], types[c]) for j, c in enumerate(columns)])
        for i in range(len(df))
    ]
    versions = [int(v) for v in df[colmap["_commit_version"]].tolist()]
    kinds = df[colmap["_change_type"]].tolist()
    assert all(v >= start for v in versions), f"{label}: _commit_version below the start {start}: {set(versions)}"
    state: collections.Counter = collections.Counter()
    if start > 0:
        state = collections.Counter(expected_rows(expected_snapshot(fx, start - 1), columns))
    for v in [v for v in fx.versions if v >= start]:
        for row, rv, kind in zip(per_row, versions, kinds):
            if rv == v and kind in ("delete", "update_preimage"):
                assert state[row] > 0, f"{label}: v{v} {kind} of a row not in snapshot v{v - 1}: {row}"
                state[row] -= 1
        for row, rv, kind in zip(per_row, versions, kinds):
            if rv == v and kind in ("insert", "update_postimage"):
                state[row] += 1
        state = +state
        want = collections.Counter(expected_rows(expected_snapshot(fx, v), columns))
        if state != want:
            pytest.fail(
                f"{label}: replaying changes up to v{v} does not give snapshot v{v}\n"
                f"missing: {list((want - state).elements())[:15]}\n"
                f"unexpected: {list((state - want).elements())[:15]}",
                pytrace=False,
            )


def check_changes_read(table_url: str, fx: Fixture, fmt: str) -> None:
    """load_table_changes_as_pandas(url, starting_version=<first version with CDF on>), which
    is 0 for every fixture that has expected/cdf.parquet.

    default = use_delta_format unset (parquet format, no includeHistoricalMetadata),
    parquet = use_delta_format=False (sends includeHistoricalMetadata=False),
    delta   = use_delta_format=True (sends includeHistoricalMetadata=True; read by kernel).
    """
    start = fx.cdf_start_version
    assert start is not None, f"{fx.name}: meta.json says cdf but the log never enables it"
    if fx.cdf_expected is not None:
        assert start == 0, f"{fx.name}: cdf.parquet is computed from version 0, CDF starts at {start}"
    label = f"{fx.name} changes from v{start} [{fmt}]"
    call = _cdf_call(table_url, fmt, start)
    if fmt != "delta" and fx.needs_delta_format:
        assert_http_400(call, label)
        return
    df = call()
    check_commit_columns(df, fx, label)
    if fx.cdf_expected is not None:
        expected = read_expected(fx.cdf_expected)
        columns = [c for c in expected.schema.names if c != "_commit_timestamp"]
        types = {f.name: f.type for f in expected.schema}
        got = sorted(str(c).lower() for c in df.columns)
        want = sorted(c.lower() for c in expected.schema.names)
        assert got == want, f"{label}: columns {list(df.columns)} != expected {expected.schema.names}"
        assert_same_multiset(actual_rows(df, columns, types, label), expected_rows(expected, columns), columns, label)
    check_cdf_replays_snapshots(df, fx, start, label)


@pytest.mark.parametrize("fmt", ["default", "parquet", "delta"])
@pytest.mark.parametrize("fx", CDF_FIXTURES)
def test_load_table_changes(d2o, fx: Fixture, fmt: str):
    check_changes_read(d2o.fixture_url(fx), fx, fmt)


@pytest.mark.parametrize("fmt", ["default", "delta"])
@pytest.mark.parametrize(
    "fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES if fx.cdf_enabled and (fx.cdf_start_version or 0) > 0]
)
def test_load_table_changes_before_cdf_was_enabled(d2o, fx: Fixture, fmt: str):
    """A range that includes versions written before delta.enableChangeDataFeed was set is a
    400 (ref: "change data was not recorded for version [V]")."""
    assert_http_400(_cdf_call(d2o.fixture_url(fx), fmt, 0), f"{fx.name} changes from v0 [{fmt}]")


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.name) for fx in FIXTURES if not fx.cdf_enabled][:3])
def test_load_table_changes_without_cdf(d2o, fx: Fixture):
    """Tables that never enabled the change data feed: /changes is a 400, not a 5xx."""
    assert_http_400(_cdf_call(d2o.fixture_url(fx), "default", 0), f"{fx.name} changes (no CDF)")


# =========================================================================== self-check


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=f"{p.parent.parent.name}/{p.name}")
        for fx in FIXTURES
        for p in sorted(fx.expected_dir.glob("*.parquet"))
    ],
)
def test_compare_logic_selfcheck(path: Path):
    """No server needed: every expected file equals itself read back through pandas (the way
    the connector hands data over), and a changed multiset is detected."""
    table = read_expected(path)
    columns = list(table.schema.names)
    types = {f.name: f.type for f in table.schema}
    df = table.to_pandas(date_as_object=True)
    assert_frame_matches(df, table, f"self {path}")
    if table.num_rows:
        exp = expected_rows(table, columns)
        dropped = actual_rows(df.iloc[1:], columns, types, "self")
        assert dropped != exp
        duplicated = actual_rows(pd.concat([df, df.iloc[:1]]), columns, types, "self")
        assert duplicated != exp
