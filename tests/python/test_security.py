"""What an outside probe found, pinned as tests against the real binary (issue [5]).

Each test names the hole it keeps closed: idle and slow connections, audit events of
interrupted responses and of downloads, the client address, object-storage locations, file
permissions, secrets in arguments and logs, response headers, relative config paths, and the
broken-table and revocation cases of file URLs.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import stat
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import _wait_healthy, fixture_by_name, free_port, stop

ADMIN_TOKEN = "admin-token-for-security-tests-0123"


# --------------------------------------------------------------------------- helpers


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path
    work: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start(work: Path, args: List[str], env: Optional[Dict[str, str]] = None, preexec=None, cwd=None) -> Server:
    """Starts `d2o serve ARGS` on a free port and waits for /health."""
    binary = os.environ["D2O_BIN"]
    port = free_port()
    log = work / f"server-{port}.log"
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=full_env, preexec_fn=preexec, cwd=str(cwd or work),
    )
    failure = _wait_healthy(proc, f"http://127.0.0.1:{port}/health", 30)
    if failure:
        stop(proc)
        pytest.fail(f"server did not start: {failure}\n{log.read_text(errors='replace')}")
    return Server(proc, port, log, work)


def cli(*args: str, catalog: Path, check: bool = True, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, D2O_CATALOG=str(catalog), **(env or {}))
    done = subprocess.run([os.environ["D2O_BIN"], *args], env=full_env, capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, f"d2o {' '.join(args)}: {done.stderr}"
    return done


def reader_catalog(work: Path) -> tuple:
    """(catalog, profile path): share `s` with table `sc.t` (the simple_table fixture), granted
    to recipient `r`, whose credential file is the profile."""
    catalog = work / "d2o.db"
    cli("share", "create", "s", catalog=catalog)
    cli("share", "add-table", "s", "sc.t", "--location", str(fixture_by_name("simple_table").delta_dir),
        catalog=catalog)
    profile = work / "r.share"
    cli("recipient", "create", "r", "--profile-out", str(profile), catalog=catalog)
    cli("grant", "s", "r", catalog=catalog)
    return catalog, profile


def http(method: str, url: str, token: Optional[str] = None, body: Optional[dict] = None,
         headers: Optional[Dict[str, str]] = None, timeout: float = 30):
    """(status, headers, body bytes) of one request; HTTP errors are answers, not exceptions."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def write_log_only_table(root: Path, files: int, outside: Optional[str] = None) -> Path:
    """A Delta table whose log lists `files` data files (absent; listing reads only the log).
    With `outside`, one more file is named by that absolute path."""
    log = root / "_delta_log"
    log.mkdir(parents=True)
    schema = {"type": "struct", "fields": [
        {"name": "id", "type": "long", "nullable": True, "metadata": {}},
        {"name": "region", "type": "string", "nullable": True, "metadata": {}}]}
    now = int(time.time() * 1000)
    v0 = [
        {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
        {"metaData": {"id": str(uuid.uuid4()), "format": {"provider": "parquet", "options": {}},
                      "schemaString": json.dumps(schema), "partitionColumns": ["region"],
                      "configuration": {}, "createdTime": now}},
        {"commitInfo": {"timestamp": now, "operation": "CREATE TABLE"}},
    ]
    (log / f"{0:020}.json").write_text("\n".join(json.dumps(a) for a in v0) + "\n")
    adds = []
    for i in range(files):
        stats = {"numRecords": 10, "minValues": {"id": i}, "maxValues": {"id": i + 9}, "nullCount": {"id": 0}}
        adds.append({"add": {"path": f"region=r{i % 8}/part-{i:05d}-{uuid.uuid4()}-c000.snappy.parquet",
                             "partitionValues": {"region": f"r{i % 8}"}, "size": 1000 + i,
                             "modificationTime": now, "dataChange": True, "stats": json.dumps(stats)}})
    if outside:
        adds.append({"add": {"path": outside, "partitionValues": {"region": "r0"}, "size": 7,
                             "modificationTime": now, "dataChange": True}})
    adds.append({"commitInfo": {"timestamp": now + 1, "operation": "WRITE"}})
    (log / f"{1:020}.json").write_text("\n".join(json.dumps(a) for a in adds) + "\n")
    return root


def audit(catalog: Path, **filters: str) -> List[dict]:
    args = ["audit", "--json", "--limit", "10000"]
    for k, v in filters.items():
        args += [f"--{k}", v]
    out = cli(*args, catalog=catalog).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """A catalog with share `s` (tables `small`, `mid` with 3,000 files and `big` with 30,000)
    granted to `r`, served with short connection timeouts."""
    work = tmp_path_factory.mktemp("security")
    catalog = work / "d2o.db"
    big = write_log_only_table(work / "big", 30000)
    mid = write_log_only_table(work / "mid", 3000)
    cli("share", "create", "s", catalog=catalog)
    cli("share", "add-table", "s", "sc.small", "--location", str(fixture_by_name("basic_partitioned").delta_dir),
        "--history", catalog=catalog)
    cli("share", "add-table", "s", "sc.big", "--location", str(big), catalog=catalog)
    cli("share", "add-table", "s", "sc.mid", "--location", str(mid), catalog=catalog)
    profile = work / "r.share"
    cli("recipient", "create", "r", "--profile-out", str(profile), catalog=catalog)
    cli("grant", "s", "r", catalog=catalog)
    config = work / "server.yaml"
    config.write_text("version: 1\nheaderReadTimeoutSeconds: 1\nidleTimeoutSeconds: 2\nmaxConnections: 40\n")
    server = start(work, ["--catalog", str(catalog), "--config", str(config)],
                   env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    token = json.loads(profile.read_text())["bearerToken"]
    yield {"server": server, "catalog": catalog, "token": token, "work": work, "profile": profile}
    stop(server.proc)


def table_url(server: Server, table: str, suffix: str = "") -> str:
    return f"{server.base}/delta-sharing/shares/s/schemas/sc/tables/{table}{suffix}"


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading until EOF or reset)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# --------------------------------------------------------------------------- 2. connections


def test_idle_and_slow_clients_are_dropped_while_a_real_request_succeeds(provider):
    server: Server = provider["server"]
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
    stop_dripping = threading.Event()

    def drip(sock: socket.socket):
        # One header byte every 0.2 s: never a complete request.
        for byte in b"GET /delta-sharing/shares HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
            if stop_dripping.is_set():
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    threads = [threading.Thread(target=drip, args=(s,), daemon=True) for s in slow]
    for t in threads:
        t.start()
    try:
        started = time.monotonic()
        status, _, body = http("GET", f"{server.base}/delta-sharing/shares", provider["token"], timeout=20)
        assert status == 200, body
        assert time.monotonic() - started < 10, "a real request is not starved by 110 idle or slow sockets"
        # Slow-header clients go after the header timeout (1 s), though they keep sending.
        assert all(closed_within(s, 5) for s in slow), "slow-header connections are closed"
        # Idle ones after the idle timeout (2 s) at most.
        assert all(closed_within(s, 6) for s in idle), "idle connections are closed"
    finally:
        stop_dripping.set()
        for s in idle + slow:
            s.close()


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(provider):
    server: Server = provider["server"]
    sock = socket.create_connection(("127.0.0.1", server.port))
    request = (f"GET /delta-sharing/shares HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {provider['token']}\r\n\r\n")
    sock.sendall(request.encode())
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert closed_within(sock, 8)
    assert 1.0 < time.monotonic() - started < 6.0
    sock.close()


def test_the_open_file_limit_is_raised_and_idle_sockets_do_not_lock_out_clients(tmp_path, provider):
    """The probe: with a soft limit of 256 open files, 300 idle sockets blocked every request."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open-file limit here is {hard}; the test needs room above 256")

    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = start(tmp_path, ["--catalog", str(provider["catalog"])], preexec=low_soft_limit)
    try:
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        soft = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3]
        assert int(soft) > 256, f"the soft limit was raised: {soft}"
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        try:
            status, _, body = http("GET", f"{server.base}/delta-sharing/shares", provider["token"], timeout=20)
            assert status == 200, body
        finally:
            for s in idle:
                s.close()
    finally:
        stop(server.proc)
    assert "Too many open files" not in server.log_text()


def test_past_the_connection_cap_the_idlest_connection_makes_room(tmp_path, provider):
    config = tmp_path / "server.yaml"
    config.write_text("version: 1\nmaxConnections: 8\nidleTimeoutSeconds: 600\nheaderReadTimeoutSeconds: 600\n")
    server = start(tmp_path, ["--catalog", str(provider["catalog"]), "--config", str(config)])
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(30)]
        try:
            for _ in range(3):
                started = time.monotonic()
                status, _, _ = http("GET", f"{server.base}/delta-sharing/shares", provider["token"], timeout=20)
                assert status == 200
                assert time.monotonic() - started < 5, "no wait for the (10 minute) idle timeout"
        finally:
            for s in idle:
                s.close()
    finally:
        stop(server.proc)


# --------------------------------------------------------------------------- 3. audit


def test_a_response_the_client_abandons_is_audited_with_what_was_sent(provider):
    server: Server = provider["server"]
    request_id = f"abandon-{uuid.uuid4()}"
    body = b"{}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window, so the server cannot park the whole response in socket buffers.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        (f"POST /delta-sharing/shares/s/schemas/sc/tables/big/query HTTP/1.1\r\nHost: x\r\n"
         f"Authorization: Bearer {provider['token']}\r\nContent-Type: application/json\r\n"
         f"X-Request-Id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    received = b""
    while len(received) < 64 * 1024:
        chunk = sock.recv(65536)
        assert chunk, "the response is long enough to abandon"
        received += chunk
    # Reset, as the probe did: SO_LINGER 0 makes close() send RST.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    event = wait_for(
        lambda: next((e for e in audit(provider["catalog"], action="query") if e.get("requestId") == request_id), None),
        what="the audit event of the abandoned response",
    )
    assert event["principal"] == "r" and event["table"] == "big"
    assert event["status"] == 499, event
    assert "closed the connection" in event.get("detail", ""), event
    assert 0 < event.get("files", 0) < 30000, json.dumps(event)


def test_file_downloads_are_audited(provider):
    server: Server = provider["server"]
    status, _, body = http("POST", table_url(server, "small", "/query"), provider["token"], {})
    assert status == 200
    files = [json.loads(line)["file"] for line in body.decode().splitlines()[2:]]
    url = files[0]["url"]
    status, _, data = http("GET", url, headers={"Range": "bytes=0-9", "X-Request-Id": "dl-range"})
    assert status == 206 and len(data) == 10
    status, _, data = http("GET", url, headers={"X-Request-Id": "dl-whole"})
    assert status == 200
    events = wait_for(
        lambda: [e for e in audit(provider["catalog"], action="download") if e.get("requestId", "").startswith("dl-")]
        if len([e for e in audit(provider["catalog"], action="download") if e.get("requestId", "").startswith("dl-")]) == 2
        else None,
        what="two download events",
    )
    by_id = {e["requestId"]: e for e in events}
    assert by_id["dl-range"]["principal"] == "r" and by_id["dl-range"]["table"] == "small"
    assert by_id["dl-range"]["bytes"] == 10 and by_id["dl-range"]["detail"].startswith("bytes=0-9/")
    assert by_id["dl-whole"]["bytes"] == len(data) and by_id["dl-whole"]["status"] == 200


def test_the_client_address_comes_from_the_socket_unless_the_proxy_is_trusted(tmp_path, provider):
    server: Server = provider["server"]
    http("GET", f"{server.base}/delta-sharing/shares", provider["token"],
         headers={"X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.8.8.8", "X-Request-Id": "xff-direct"})
    config = tmp_path / "trusted.yaml"
    config.write_text("version: 1\ntrustedProxies: ['127.0.0.1/32', '::1']\n")
    behind = start(tmp_path, ["--catalog", str(provider["catalog"]), "--config", str(config)])
    try:
        http("GET", f"{behind.base}/delta-sharing/shares", provider["token"],
             headers={"X-Forwarded-For": "1.1.1.1, 10.9.9.9", "X-Request-Id": "xff-trusted"})
    finally:
        stop(behind.proc)
    events = wait_for(
        lambda: (lambda es: es if len(es) == 2 else None)(
            [e for e in audit(provider["catalog"], action="list_shares") if e.get("requestId", "").startswith("xff-")]),
        what="two list_shares events",
    )
    ip = {e["requestId"]: e["clientIp"] for e in events}
    assert ip["xff-direct"] == "127.0.0.1", "a direct client cannot choose its address"
    assert ip["xff-trusted"] == "10.9.9.9", "the address a trusted proxy appended"


# --------------------------------------------------------------------------- 4. object storage


def test_unservable_locations_are_refused_when_added(tmp_path):
    """A scheme no backend serves, and a cloud location without credentials while instance
    metadata is off, are refused when added: at once, and without a request anywhere."""
    catalog = tmp_path / "d2o.db"
    cli("share", "create", "s", catalog=catalog)
    no_credentials = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                      "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    started = time.monotonic()
    done = cli("share", "add-table", "s", "sc.t", "--location", "s3://bucket/sales", catalog=catalog, check=False,
               env=no_credentials)
    assert done.returncode != 0 and "instance metadata is switched off" in done.stderr, done.stderr
    done = cli("share", "add-table", "s", "sc.u", "--location", "hdfs://node/sales", catalog=catalog, check=False)
    assert done.returncode != 0 and "not served" in done.stderr, done.stderr
    assert time.monotonic() - started < 10
    config = tmp_path / "server.yaml"
    config.write_text("version: 1\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n"
                      "    - name: t\n      location: hdfs://node/sales\n")
    done = subprocess.run([os.environ["D2O_BIN"], "serve", "--config", str(config), "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "shares[0].schemas[0].tables[0].location" in done.stderr and "not served" in done.stderr, done.stderr


# --------------------------------------------------------------------------- 5. file permissions


def test_the_catalog_and_its_journal_are_private(provider):
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{provider['catalog']}{suffix}")
        if suffix == "" or path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_profile_out_refuses_a_planted_symlink(provider, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / "config.share"
    planted.symlink_to(victim)
    done = cli("recipient", "rotate", "r", "--grace", "1h", "--profile-out", str(planted),
               catalog=provider["catalog"], check=False)
    assert done.returncode != 0 and "symbolic link" in done.stderr, done.stderr
    assert victim.read_text() == "precious"
    fresh = tmp_path / "fresh" / "config.share"
    cli("recipient", "rotate", "r", "--grace", "1h", "--profile-out", str(fresh), catalog=provider["catalog"])
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert [p.name for p in fresh.parent.iterdir()] == ["config.share"], "no temporary file is left"


# --------------------------------------------------------------------------- 6. secrets


def test_the_admin_token_flag_warns_and_a_token_file_keeps_it_out_of_the_process_list(tmp_path, provider):
    flagged = start(tmp_path, ["--catalog", str(provider["catalog"]), "--admin-token", ADMIN_TOKEN])
    stop(flagged.proc)
    assert "visible to every user" in flagged.log_text()
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    token_file.chmod(0o600)
    server = start(tmp_path, ["--catalog", str(provider["catalog"]), "--admin-token-file", str(token_file)])
    try:
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert ADMIN_TOKEN.encode() not in cmdline
        status, _, _ = http("GET", f"{server.base}/admin/v1/shares", ADMIN_TOKEN)
        assert status == 200
    finally:
        stop(server.proc)
    assert "visible to every user" not in server.log_text()


def test_debug_logs_never_show_url_signatures_or_tokens(tmp_path, provider):
    server = start(tmp_path, ["--catalog", str(provider["catalog"])], env={"D2O_LOG": "trace"})
    try:
        status, _, body = http("POST", table_url(server, "small", "/query"), provider["token"], {})
        assert status == 200
        url = json.loads(body.decode().splitlines()[2])["file"]["url"]
        assert http("GET", url)[0] == 200
    finally:
        stop(server.proc)
    signature = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["sig"][0]
    log = server.log_text()
    assert "sig=REDACTED" in log, "the request was logged, redacted"
    assert signature not in log
    assert provider["token"] not in log


# --------------------------------------------------------------------------- 7. headers


def test_every_answer_carries_the_security_headers(provider):
    server: Server = provider["server"]
    status, _, body = http("POST", table_url(server, "small", "/query"), provider["token"], {})
    url = json.loads(body.decode().splitlines()[2])["file"]["url"]
    answers = [
        http("GET", f"{server.base}/delta-sharing/shares", provider["token"]),
        http("POST", table_url(server, "small", "/query"), provider["token"], {}),
        http("GET", table_url(server, "small", "/metadata"), provider["token"]),
        http("GET", f"{server.base}/delta-sharing/shares", "wrong-token"),
        http("GET", f"{server.base}/nowhere"),
        http("GET", url),
        http("POST", f"{server.base}/admin/v1/recipients", ADMIN_TOKEN, {"name": f"h{uuid.uuid4().hex[:8]}"}),
    ]
    for status, headers, _ in answers:
        lower = {k.lower(): v for k, v in headers.items()}
        assert lower.get("cache-control") == "no-store", (status, headers)
        assert lower.get("x-content-type-options") == "nosniff", (status, headers)
        assert "default-src 'none'" in lower.get("content-security-policy", ""), (status, headers)


def test_preflights_get_a_clear_answer_and_cors_is_closed_unless_configured(tmp_path, provider):
    server: Server = provider["server"]
    status, headers, body = http("OPTIONS", f"{server.base}/delta-sharing/shares",
                                 headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert status == 403 and b"corsAllowedOrigins" in body
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    status, headers, _ = http("OPTIONS", f"{server.base}/delta-sharing/shares")
    assert status == 204 and "GET" in {k.lower(): v for k, v in headers.items()}.get("allow", "")
    config = tmp_path / "cors.yaml"
    config.write_text("version: 1\ncorsAllowedOrigins: ['https://app.example']\n")
    open_server = start(tmp_path, ["--catalog", str(provider["catalog"]), "--config", str(config)])
    try:
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"}
        status, headers, _ = http("OPTIONS", f"{open_server.base}/delta-sharing/shares", headers=preflight)
        lower = {k.lower(): v for k, v in headers.items()}
        assert status in (200, 204) and lower.get("access-control-allow-origin") == "https://app.example"
        preflight["Origin"] = "https://evil.example"
        _, headers, _ = http("OPTIONS", f"{open_server.base}/delta-sharing/shares", headers=preflight)
        assert "access-control-allow-origin" not in {k.lower() for k in headers}
    finally:
        stop(open_server.proc)


# --------------------------------------------------------------------------- 8. config paths


def test_a_bare_config_file_name_resolves_relative_locations(tmp_path):
    table = tmp_path / "tables" / "sales"
    table.parent.mkdir()
    os.symlink(fixture_by_name("basic_partitioned").delta_dir, table)
    (tmp_path / "server.yaml").write_text(
        "version: 1\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n"
        "    - name: sales\n      location: tables/sales\nauthorization:\n  bearerToken: bare-config-token\n")
    server = start(tmp_path, ["--config", "server.yaml"], cwd=tmp_path)
    try:
        status, _, body = http("POST", table_url(server, "sales", "/query"), "bare-config-token", {})
        assert status == 200 and len(body.decode().splitlines()) == 8, body
    finally:
        stop(server.proc)


# --------------------------------------------------------------------------- 9. reliability


def test_a_table_naming_a_file_outside_its_root_gets_a_protocol_error(tmp_path):
    outside = tmp_path / "elsewhere" / "secret.parquet"
    outside.parent.mkdir()
    outside.write_bytes(b"secret!")
    broken = write_log_only_table(tmp_path / "broken", 3, outside=str(outside))
    (tmp_path / "server.yaml").write_text(
        "version: 1\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n"
        f"    - name: broken\n      location: {broken}\nauthorization:\n  bearerToken: broken-table-token\n")
    server = start(tmp_path, ["--config", "server.yaml"])
    try:
        status, headers, body = http("POST", table_url(server, "broken", "/query"), "broken-table-token", {})
    finally:
        stop(server.proc)
    assert status == 400, body
    error = json.loads(body)
    assert error["errorCode"] == "UNSUPPORTED_OPERATION" and "outside the table" in error["message"]
    assert str(broken) in server.log_text(), "the log names the broken table"


def test_revocation_stops_downloads_at_once(provider, tmp_path):
    server: Server = provider["server"]
    catalog = provider["catalog"]
    profile = tmp_path / "victim.share"
    cli("recipient", "create", "leaver", "--profile-out", str(profile), catalog=catalog)
    cli("grant", "s", "leaver", catalog=catalog)
    token = json.loads(profile.read_text())["bearerToken"]
    _, _, body = http("POST", table_url(server, "small", "/query"), token, {})
    url = json.loads(body.decode().splitlines()[2])["file"]["url"]
    assert http("GET", url)[0] == 200
    cli("revoke", "s", "leaver", catalog=catalog)
    time.sleep(0.05)
    status, _, body = http("GET", url)
    assert status == 403 and b"no longer has access" in body, "a removed grant stops the URL"
    cli("grant", "s", "leaver", catalog=catalog)
    time.sleep(0.05)
    assert http("GET", url)[0] == 200
    cli("recipient", "revoke", "leaver", catalog=catalog)
    time.sleep(0.05)
    assert http("GET", url)[0] == 403, "a revoked recipient's URLs stop"


def test_uncached_concurrent_reads_use_a_bounded_number_of_threads(tmp_path, provider):
    config = tmp_path / "nocache.yaml"
    config.write_text("version: 1\nfileListCacheMib: 0\nstorageIoThreads: 4\n")
    server = start(tmp_path, ["--catalog", str(provider["catalog"]), "--config", str(config),
                              "--max-blocking-threads", "8"])
    peak = 0
    try:
        done = threading.Event()

        def sample():
            nonlocal peak
            status = Path(f"/proc/{server.proc.pid}/status")
            while not done.is_set():
                threads = int(next(l for l in status.read_text().splitlines() if l.startswith("Threads:")).split()[1])
                peak = max(peak, threads)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results = []

        def read():
            results.append(http("POST", table_url(server, "mid", "/query"), provider["token"], {}, timeout=120)[0])

        readers = [threading.Thread(target=read) for _ in range(48)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        done.set()
        sampler.join()
    finally:
        stop(server.proc)
    assert results == [200] * 48
    # main, the async workers, 8 blocking threads, the storage runtime (2 workers and 4
    # blocking), SQLite's connection threads, and at most one second line renderer per core:
    # not one per request.
    assert peak <= 1 + os.cpu_count() + 8 + 6 + 4 + 2 + os.cpu_count(), f"{peak} threads"


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1]) / 1024


def test_memory_stays_flat_while_a_writer_commits_1000_versions(tmp_path):
    """The probe: RSS grew about 1 MB per committed version under a steady writer."""
    from deltalake import DeltaTable

    table = write_log_only_table(tmp_path / "growing", 200)
    log = table / "_delta_log"
    (tmp_path / "server.yaml").write_text(
        "version: 1\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n"
        f"    - name: growing\n      location: {table}\nauthorization:\n  bearerToken: growing-token\n")
    server = start(tmp_path, ["--config", "server.yaml"])
    rss = {}
    try:
        now = int(time.time() * 1000)
        for version in range(2, 1001):
            add = {"add": {"path": f"region=r0/extra-{version:05d}.parquet", "partitionValues": {"region": "r0"},
                           "size": 10, "modificationTime": now, "dataChange": True}}
            info = {"commitInfo": {"timestamp": now + version, "operation": "WRITE"}}
            (log / f"{version:020}.json").write_text(json.dumps(add) + "\n" + json.dumps(info) + "\n")
            if version % 50 == 0:
                DeltaTable(str(table)).create_checkpoint()
            status, headers, _ = http("POST", table_url(server, "growing", "/query"), "growing-token", {})
            assert status == 200 and headers.get("delta-table-version", headers.get("Delta-Table-Version")) == str(version)
            if version in (300, 600, 1000):
                rss[version] = _rss_mb(server.proc.pid)
    finally:
        stop(server.proc)
    print(f"RSS in MB by version: {rss}")
    assert rss[1000] - rss[300] < 24, f"RSS in MB by version: {rss}"
