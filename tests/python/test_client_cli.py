"""`d2o client` as a person at a terminal uses it, against the d2o server over the fixtures:
discovery, loads to Parquet/CSV/Arrow compared with expected/, filters, changes, SQL, and the
errors a broken profile or a missing table give."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from conftest import SCHEMA, SHARE, fixture_by_name
from test_connector_fixtures import assert_frame_matches, expected_snapshot


def _client(d2o, *args: str, ok: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [os.environ["D2O_BIN"], "client", *args], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, **(env or {})),
    )
    if ok:
        assert done.returncode == 0, f"d2o client {' '.join(args)}: {done.stderr}"
    else:
        assert done.returncode != 0, f"d2o client {' '.join(args)} should fail: {done.stdout}"
        assert "panicked" not in done.stderr, done.stderr
    return done


def test_discovery(d2o):
    assert SHARE in _client(d2o, "shares", "--profile", d2o.profile).stdout
    tables = _client(d2o, "tables", f"{SHARE}.{SCHEMA}", "--profile", d2o.profile).stdout
    for name in ("simple_table", "basic_partitioned", "table_with_dv_small"):
        assert name in tables
    described = _client(d2o, "describe", f"{SHARE}.{SCHEMA}.basic_partitioned", "--profile", d2o.profile).stdout
    assert "letter" in described


def test_load_to_each_format_equals_expected(d2o, tmp_path: Path):
    for name in ("basic_partitioned", "table-with-dv-small", "table-with-columnmapping-mode-name"):
        fx = fixture_by_name(name)
        expected = expected_snapshot(fx, None)
        for suffix, read in ((".parquet", pq.read_table), (".csv", None), (".arrow", feather.read_table)):
            if suffix == ".csv" and name != "basic_partitioned":
                continue  # CSV cannot carry nested or binary types; checked on the plain table
            out = tmp_path / f"{name}{suffix}"
            _client(d2o, "load", f"{d2o.profile}#{SHARE}.{SCHEMA}.{fx.table}", "--out", str(out), "--quiet")
            # CSV has no null: an empty field is read back as null (`strings_can_be_null`).
            table = read(out) if read else pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(
                column_types={f.name: f.type for f in expected.schema}, strings_can_be_null=True))
            assert_frame_matches(table.to_pandas(), expected, f"{name}{suffix}")


def test_filters_columns_limit_and_time_travel(d2o, tmp_path: Path):
    url = f"{d2o.profile}#{SHARE}.{SCHEMA}.basic_partitioned"
    out = tmp_path / "a.parquet"
    _client(d2o, "load", url, "--out", str(out), "--where", "letter = 'a'", "--columns", "letter,number", "--quiet")
    t = pq.read_table(out)
    assert t.column_names == ["letter", "number"]
    assert set(t.column("letter").to_pylist()) == {"a"} and t.num_rows == 2
    _client(d2o, "load", url, "--out", str(out), "--limit", "1", "--quiet")
    assert pq.read_table(out).num_rows == 1
    _client(d2o, "load", url, "--out", str(out), "--version", "0", "--quiet")
    assert pq.read_table(out).num_rows == 3


def test_changes_and_sql(d2o, tmp_path: Path):
    out = tmp_path / "changes.parquet"
    _client(d2o, "changes", f"{d2o.profile}#{SHARE}.{SCHEMA}.cdf_table", "--from-version", "0", "--out", str(out), "--quiet")
    changes = pq.read_table(out)
    assert changes.num_rows == pq.read_table(fixture_by_name("cdf-table").expected_dir / "cdf.parquet").num_rows
    assert {"_change_type", "_commit_version", "_commit_timestamp"} <= set(changes.column_names)
    sql = _client(d2o, "sql", "--profile", d2o.profile,
                  f"SELECT count(*) AS n FROM {SHARE}.{SCHEMA}.basic_partitioned WHERE letter = 'a'").stdout
    assert "2" in sql


def test_clear_errors(d2o, tmp_path: Path):
    broken = tmp_path / "broken.share"
    broken.write_text("{not json")
    err = _client(d2o, "shares", "--profile", str(broken), ok=False).stderr
    assert "broken.share" in err
    wrong = tmp_path / "wrong.share"
    wrong.write_text(json.dumps({"shareCredentialsVersion": 1, "endpoint": d2o.endpoint, "bearerToken": "nope"}))
    assert "401" in _client(d2o, "shares", "--profile", str(wrong), ok=False).stderr
    err = _client(d2o, "load", f"{d2o.profile}#{SHARE}.{SCHEMA}.no_such_table", ok=False).stderr
    assert "no_such_table" in err
    # The profile may come from the environment, as a path or as the JSON itself.
    profile_json = Path(d2o.profile).read_text()
    assert SHARE in _client(d2o, "shares", env={"DELTA_SHARING_PROFILE": profile_json}).stdout
