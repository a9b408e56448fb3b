"""Session fixtures for the d2o Python compatibility suite.

The suite starts the real server binary (``$D2O_BIN serve --config <yaml>``) once per
session, pointed at the shared Delta fixtures, and exposes it to the tests through the
``d2o`` fixture. See tests/python/README.md.

The ``d2o`` fixture can also serve the same YAML the way a provider moving from the reference
server would: ``d2o catalog import`` into SQLite or PostgreSQL, then ``d2o serve --catalog``,
with the file's bearer token (kept by the import as recipient ``legacy``) or with a new
recipient's. A module asks for those modes with ``D2O_MODES = MODES``: each of its tests
that uses ``d2o`` then runs once per mode.

Environment:
  D2O_BIN            path to the d2o binary (required; the suite fails, it does not skip,
                     when it is missing)
  D2O_SHARED_TABLES  directory holding the fixture tables
                     (default: <repo>/tests/data/delta-tables)
  D2O_CONNECTOR_RETRIES  retries of the connector on 429/5xx/connection errors (default 0)
  D2O_TEST_POSTGRES  an admin URL of PostgreSQL for the catalog modes (default
                     postgres://postgres@127.0.0.1:5432/test); without it those modes skip,
                     unless D2O_REQUIRE_POSTGRES=1 makes that a failure
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SHARE = "fixtures"
SCHEMA = "delta"
PLAIN_SHARE = "plain"
PLAIN_SCHEMA = "delta"
PLAIN_TABLE = "simple_table"  # served from the simple_table fixture, historyShared: false
PLAIN_TABLE_ID = "reference-plain-table-0001"  # given in the YAML; the others are derived
PREFIX = "/delta-sharing"
HEALTH_TIMEOUT_S = 30.0

# How the `d2o` fixture serves the suite's YAML: as the file itself, or imported into a
# catalog and read with the file's token (`legacy`) or with a new recipient's.
MODES = ["yaml", "sqlite-legacy", "sqlite-recipient", "postgres-legacy", "postgres-recipient"]

# d2o_catalog::derived_table_id: the id YAML mode gives a table the file gives none.
_DERIVED_ID_NAMESPACE = uuid.UUID(int=0x64326F007461626C6569647300000001)


def expected_table_id(share: str, schema: str, table: str) -> str:
    """The id the suite's YAML gives a table: its `id`, else the one d2o derives from its names."""
    if (share, schema, table) == (PLAIN_SHARE, PLAIN_SCHEMA, PLAIN_TABLE):
        return PLAIN_TABLE_ID
    return str(uuid.uuid5(_DERIVED_ID_NAMESPACE, f"{share.lower()}\n{schema.lower()}\n{table.lower()}"))

# The connector (requests, aiohttp via fsspec, and reqwest inside the kernel wrapper)
# honours *_PROXY variables; the server under test is always on loopback.
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var, "")
    os.environ[_var] = ",".join(x for x in (_cur, "127.0.0.1", "localhost") if x)

# Nothing a test starts may reach a cloud: instance metadata is off, and a store named without
# an endpoint of its own goes to a closed port on loopback instead of AWS or Azure (tests that
# use an emulator give its endpoint in the storage location's options, which win).
os.environ.update({
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "true",
    "D2O_INSTANCE_METADATA": "off",
    "AWS_ENDPOINT": "http://127.0.0.1:9",
    "AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:9",
})


# --------------------------------------------------------------------------- fixtures on disk


def shared_tables_dir() -> Path:
    env = os.environ.get("D2O_SHARED_TABLES")
    if env:
        return Path(env).resolve()
    return (REPO_ROOT / "tests" / "data" / "delta-tables").resolve()


@dataclass(frozen=True)
class Fixture:
    """One directory of tests/data/delta-tables: <name>/{delta,expected}."""

    name: str
    root: Path
    meta: dict

    @property
    def table(self) -> str:
        return self.name.replace("-", "_")

    @property
    def delta_dir(self) -> Path:
        return self.root / "delta"

    @property
    def expected_dir(self) -> Path:
        return self.root / "expected"

    @property
    def versions(self) -> List[int]:
        return sorted(int(v) for v in self.meta["versions"])

    @property
    def latest(self) -> int:
        return int(self.meta["latest_version"])

    @property
    def features(self) -> dict:
        return self.meta.get("features", {})

    @property
    def partition_columns(self) -> List[str]:
        return list(self.meta.get("partition_columns") or [])

    @property
    def has_deletion_vectors(self) -> bool:
        return bool(self.features.get("deletionVectors"))

    @property
    def column_mapping(self) -> str:
        return str(self.features.get("columnMapping") or "none")

    @property
    def has_timestamp_ntz(self) -> bool:
        return bool(self.features.get("timestampNtz"))

    @property
    def cdf_enabled(self) -> bool:
        return bool(self.features.get("cdf"))

    @property
    def needs_delta_format(self) -> bool:
        """Tables a parquet-format response cannot represent: the server must answer 400
        to a parquet-only request (PROTOCOL 'responseformat'; ref: "Unsupported Delta Table
        Properties" for deletion vectors / column mapping)."""
        return self.has_deletion_vectors or self.column_mapping != "none"

    @property
    def cdf_start_version(self) -> Optional[int]:
        """First version from which change data is recorded up to the latest version (the
        metadata has delta.enableChangeDataFeed=true at every version of the range), read
        from the JSON commits; None when the table never had CDF on at the latest version."""
        log = self.delta_dir / "_delta_log"
        enabled: Dict[int, bool] = {}
        current = False
        for v in range(0, self.latest + 1):
            commit = log / f"{v:020d}.json"
            if commit.is_file():
                for line in commit.read_text().splitlines():
                    if line.strip():
                        action = json.loads(line)
                        if "metaData" in action:
                            conf = action["metaData"].get("configuration") or {}
                            current = conf.get("delta.enableChangeDataFeed", "false").lower() == "true"
            enabled[v] = current
        if not enabled.get(self.latest):
            return None
        start = self.latest
        while start > 0 and enabled.get(start - 1):
            start -= 1
        return start

    @property
    def cdf_expected(self) -> Optional[Path]:
        p = self.expected_dir / "cdf.parquet"
        return p if p.exists() else None

    def expected_version(self, version: int) -> Path:
        return self.expected_dir / f"v{version}.parquet"


def discover_fixtures() -> List[Fixture]:
    root = shared_tables_dir()
    if not root.is_dir():
        raise pytest.UsageError(
            f"fixture tables not found at {root}; set D2O_SHARED_TABLES to a copy of "
            f"tests/data/delta-tables"
        )
    out = []
    for d in sorted(root.iterdir()):
        meta = d / "expected" / "meta.json"
        if (d / "delta" / "_delta_log").is_dir() and meta.is_file():
            out.append(Fixture(d.name, d, json.loads(meta.read_text())))
    if not out:
        raise pytest.UsageError(f"no fixture tables (<name>/delta + expected/meta.json) in {root}")
    return out


_FIXTURES: Optional[List[Fixture]] = None


def fixtures() -> List[Fixture]:
    global _FIXTURES
    if _FIXTURES is None:
        _FIXTURES = discover_fixtures()
    return _FIXTURES


def fixture_by_name(name: str) -> Fixture:
    for f in fixtures():
        if f.name == name:
            return f
    raise KeyError(f"fixture {name!r} not in {shared_tables_dir()}")


# --------------------------------------------------------------------------- server config


def _q(s: str) -> str:
    """YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(s)


def render_config(port: int, token: str, fx: List[Fixture]) -> str:
    lines = [
        "# generated by tests/python/conftest.py",
        "version: 1",
        "shares:",
        f"- name: {_q(SHARE)}",
        "  schemas:",
        f"  - name: {_q(SCHEMA)}",
        "    tables:",
    ]
    for f in fx:
        lines += [
            f"    - name: {_q(f.table)}",
            f"      location: {_q(str(f.delta_dir.resolve()))}",
            "      historyShared: true",
        ]
    plain = fixture_by_name("simple_table")
    lines += [
        f"- name: {_q(PLAIN_SHARE)}",
        "  schemas:",
        f"  - name: {_q(PLAIN_SCHEMA)}",
        "    tables:",
        f"    - name: {_q(PLAIN_TABLE)}",
        f"      id: {_q(PLAIN_TABLE_ID)}",
        f"      location: {_q(str(plain.delta_dir.resolve()))}",
        "      historyShared: false",
        "authorization:",
        f"  bearerToken: {_q(token)}",
        f"host: {_q('127.0.0.1')}",
        f"port: {port}",
        f"endpoint: {_q(PREFIX)}",
    ]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PostgreSQL


def postgres_admin_url() -> str:
    return os.environ.get("D2O_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def psql(url: str, statement: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("psql") or "psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", statement],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PGCONNECT_TIMEOUT="5"),
    )


def fresh_database() -> tuple:
    """(catalog URL, database name) of a new, empty database; skips (or fails, with
    D2O_REQUIRE_POSTGRES=1) when PostgreSQL cannot be reached."""
    admin = postgres_admin_url()

    def unavailable(why: str):
        if os.environ.get("D2O_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL must run at {admin} (.ci/run starts it): {why}")
        pytest.skip(f"PostgreSQL is not reachable at {admin} ({why}); set D2O_REQUIRE_POSTGRES=1 to make this a failure")

    if shutil.which("psql") is None:
        unavailable("psql is not installed")
    name = f"d2o_test_{uuid.uuid4().hex}"
    done = psql(admin, f"CREATE DATABASE {name}")
    if done.returncode != 0:
        unavailable(done.stderr.strip() or f"psql exited with {done.returncode}")
    url = urllib.parse.urlsplit(admin)._replace(path=f"/{name}").geturl()
    return url, name


def drop_database(name: str) -> None:
    dropped = psql(postgres_admin_url(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert dropped.returncode == 0, dropped.stderr


# --------------------------------------------------------------------------- the server


@dataclass
class D2O:
    """What the tests get: a running server and how to reach it."""

    base_url: str  # http://127.0.0.1:<port>
    endpoint: str  # base_url + /delta-sharing
    token: str
    profile: str  # path of the profile JSON file
    log_path: Path
    config_path: Path
    fixtures: List[Fixture] = field(default_factory=list)
    mode: str = "yaml"  # one of MODES

    def table_url(self, table: str, share: str = SHARE, schema: str = SCHEMA) -> str:
        """Connector URL `<profile>#<share>.<schema>.<table>`."""
        return f"{self.profile}#{share}.{schema}.{table}"

    def fixture_url(self, fx: Fixture) -> str:
        return self.table_url(fx.table)

    def api(self, path: str) -> str:
        """Absolute REST URL for a path below the prefix (path starts with '/')."""
        return self.endpoint + path

    def table_api(self, table: str, suffix: str = "", share: str = SHARE, schema: str = SCHEMA) -> str:
        return self.api(f"/shares/{share}/schemas/{schema}/tables/{table}{suffix}")

    @property
    def auth(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_tail(self, n: int = 200) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"


def stop(proc: subprocess.Popen) -> None:
    """Stops a server process: SIGTERM, then SIGKILL if it is still running after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> Optional[str]:
    """None when GET url answered 200 in time, else a description of the failure."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            return f"server exited with code {rc} before {url} answered"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return None
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = repr(e)
        time.sleep(0.1)
    return f"{url} did not answer 200 within {timeout:.0f}s (last: {last})"


def _cli(binary: str, *args: str, cwd: Path) -> str:
    """A `d2o` admin command; its output, or the session stops with what it printed."""
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=str(cwd))
    if done.returncode != 0:
        pytest.exit(f"d2o {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}", returncode=1)
    return done.stdout


def _catalog_for(mode: str, binary: str, work: Path, config_path: Path, endpoint: str, token: str):
    """Imports the YAML into the mode's catalog; returns (catalog, the token to read with,
    the database to drop afterwards)."""
    database = None
    if mode.startswith("postgres"):
        catalog, database = fresh_database()
    else:
        catalog = str(work / "d2o.db")
    try:
        _cli(binary, "catalog", "import", str(config_path), "--catalog", catalog, cwd=work)
        if mode.endswith("recipient"):
            profile = work / "partner.share"
            _cli(binary, "recipient", "create", "partner_co", "--endpoint", endpoint, "--profile-out", str(profile),
                 "--catalog", catalog, cwd=work)
            for share in (SHARE, PLAIN_SHARE):
                _cli(binary, "grant", share, "partner_co", "--catalog", catalog, cwd=work)
            token = json.loads(profile.read_text())["bearerToken"]
    except BaseException:
        if database:
            drop_database(database)
        raise
    return catalog, token, database


@pytest.fixture(scope="session")
def d2o(tmp_path_factory, request) -> Iterator[D2O]:
    mode = getattr(request, "param", "yaml")
    assert mode in MODES, mode
    binary = os.environ.get("D2O_BIN")
    if not binary:
        pytest.exit(
            "D2O_BIN is not set: point it at the d2o server binary, e.g. "
            "D2O_BIN=target/release/d2o $(scripts/python-env.sh)/bin/pytest tests/python",
            returncode=1,
        )
    binary = str(Path(binary).resolve())
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.exit(f"D2O_BIN={binary} is not an executable file", returncode=1)

    fx = fixtures()
    work = tmp_path_factory.mktemp(f"d2o-{mode}")
    token = secrets.token_urlsafe(24)
    port = free_port()
    config_path = work / "server.yaml"
    config_path.write_text(render_config(port, token, fx))
    log_path = work / "server.log"
    base_url = f"http://127.0.0.1:{port}"
    command = [binary, "serve", "--config", str(config_path)]
    database = None
    if mode != "yaml":
        catalog, token, database = _catalog_for(mode, binary, work, config_path, base_url + PREFIX, token)
        command += ["--catalog", catalog]

    log_fh = open(log_path, "wb")
    proc = subprocess.Popen(
        command,
        stdout=log_fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=str(work),
    )
    try:
        problem = _wait_healthy(proc, base_url + "/health", HEALTH_TIMEOUT_S)
        if problem:
            log_fh.flush()
            log = log_path.read_text(errors="replace")
            msg = (
                f"d2o did not become healthy: {problem}\n"
                f"command: {' '.join(command)}\n"
                f"--- config ---\n{config_path.read_text()}"
                f"--- server log ({log_path}) ---\n{log}"
            )
            print(msg, file=sys.stderr)
            # Stop the session: every test needs the server, one clear report beats N copies.
            pytest.exit(msg, returncode=1)

        profile_path = work / "profile.share"
        profile_path.write_text(
            json.dumps(
                {
                    "shareCredentialsVersion": 1,
                    "endpoint": base_url + PREFIX,
                    "bearerToken": token,
                }
            )
        )
        yield D2O(
            base_url=base_url,
            endpoint=base_url + PREFIX,
            token=token,
            profile=str(profile_path),
            log_path=log_path,
            config_path=config_path,
            fixtures=fx,
            mode=mode,
        )
    finally:
        stop(proc)
        log_fh.close()
        if database:
            drop_database(database)


def pytest_generate_tests(metafunc):
    """Runs the tests of a module that sets `D2O_MODES` once per mode of the `d2o` fixture."""
    modes = getattr(metafunc.module, "D2O_MODES", None)
    if modes and "d2o" in metafunc.fixturenames:
        metafunc.parametrize("d2o", modes, indirect=True, scope="session")


@pytest.fixture(scope="session", autouse=True)
def _connector_fails_fast():
    """The connector retries 429/5xx and connection errors 10 times with exponential backoff
    (~100 s per call). A server bug would then cost minutes per test, so retries are off
    unless D2O_CONNECTOR_RETRIES says otherwise. Nothing else in the connector is changed."""
    from delta_sharing import rest_client

    retries = int(os.environ.get("D2O_CONNECTOR_RETRIES", "0"))
    original = rest_client.DataSharingRestClient.__init__

    def init(self, profile, num_retries=10):
        original(self, profile, num_retries=retries)

    rest_client.DataSharingRestClient.__init__ = init
    try:
        yield
    finally:
        rest_client.DataSharingRestClient.__init__ = original


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of the server log to failing tests that used the server."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when == "call":
        server = item.funcargs.get("d2o") if hasattr(item, "funcargs") else None
        if isinstance(server, D2O):
            rep.sections.append(("d2o server log (last 40 lines)", server.log_tail(40)))


def pytest_report_header(config):
    return [
        f"d2o binary (D2O_BIN): {os.environ.get('D2O_BIN', '<unset>')}",
        f"fixture tables: {shared_tables_dir()}",
    ]


# Real-browser tests (headless Debian Chromium): the `chromium` fixture, see browser.py.
from browser import chromium  # noqa: E402,F401
