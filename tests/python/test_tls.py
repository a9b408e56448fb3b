"""TLS in the process (issue [9]): `d2o serve` terminates HTTPS itself, from `--tls-cert` and
`--tls-key` or the reference YAML's `ssl` section, and picks up a renewed certificate without
a restart.

Each test makes its own CA and server certificates (for 127.0.0.1 and localhost) with
`cryptography`. The official connector reads over HTTPS trusting only that CA: `requests`
(the protocol calls) through `REQUESTS_CA_BUNDLE`, and aiohttp (the file downloads, through
fsspec) through `SSL_CERT_FILE`, which it reads when it is imported; so the connector runs in a
process of its own, started with those variables. Its profile names 127.0.0.1: for a
`localhost` endpoint the connector switches certificate checks off.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import fixture_by_name, free_port, stop
from test_security import Server, cli, reader_catalog, wait_for

# --------------------------------------------------------------------------- certificates


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path  # the CA certificate, PEM


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(work: Path) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("d2o TLS test CA"))
        .issuer_name(_name("d2o TLS test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = work / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(key, cert, path)


def server_certificate(ca: CA, cn: str, serial: int, password: Optional[bytes] = None) -> Tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for 127.0.0.1, ::1 and localhost, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def install(cert_path: Path, key_path: Path, pair: Tuple[bytes, bytes]) -> None:
    """Writes a certificate and key in place, certificate first, as a renewal script would."""
    cert_path.write_bytes(pair[0])
    key_path.write_bytes(pair[1])
    key_path.chmod(0o600)


# --------------------------------------------------------------------------- the server over HTTPS


def https(method: str, url: str, ca: Path, token: Optional[str] = None, body: Optional[dict] = None,
          timeout: float = 30) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers, body) of one request that trusts only `ca`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start_https(work: Path, args: List[str], ca: Path, env: Optional[Dict[str, str]] = None) -> Server:
    """`d2o serve ARGS` on a free port, once `https://127.0.0.1:PORT/health` answers (trusting
    `ca`). `Server.base` is the https URL."""
    port = free_port()
    log = work / f"server-{port}.log"
    proc = subprocess.Popen(
        [os.environ["D2O_BIN"], "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=dict(os.environ, **(env or {})), cwd=str(work),
    )
    deadline = time.monotonic() + 30
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if https("GET", f"https://127.0.0.1:{port}/health", ca, timeout=2)[0] == 200:
                return HttpsServer(proc, port, log, work)
        except (urllib.error.URLError, OSError) as e:
            last = repr(e)
        time.sleep(0.1)
    stop(proc)
    pytest.fail(f"https health did not answer (last: {last}):\n{log.read_text(errors='replace')}")


class HttpsServer(Server):
    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def served_certificate(port: int, ca: Path) -> x509.Certificate:
    """The certificate the server presents in a handshake verified against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


# The process ends with os._exit once the answer is printed: the connector's native libraries
# once aborted in their own teardown at interpreter exit ("terminate called without an active
# exception", SIGABRT), after a complete read, in a CI run on a loaded machine. What this
# reads is the test; how a third-party library's threads unwind is not.
READ_TABLE = """
import json, os, sys
from delta_sharing import rest_client
original = rest_client.DataSharingRestClient.__init__
rest_client.DataSharingRestClient.__init__ = lambda self, profile, num_retries=10: original(self, profile, 0)
import delta_sharing
df = delta_sharing.load_as_pandas(sys.argv[1])
print(json.dumps({"rows": len(df), "columns": sorted(df.columns)}), flush=True)
os._exit(0)
"""


def connector_read(table_url: str, ca: Optional[Path]) -> subprocess.CompletedProcess:
    """The official connector's `load_as_pandas` in a process of its own, trusting `ca` only
    (or the system's roots when None)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")}
    if ca:
        env.update(REQUESTS_CA_BUNDLE=str(ca), SSL_CERT_FILE=str(ca))
    return subprocess.run([sys.executable, "-c", READ_TABLE, table_url], env=env, capture_output=True, text=True,
                          timeout=120)


def expected_rows(fixture: str) -> int:
    import pyarrow.parquet as pq

    f = fixture_by_name(fixture)
    return pq.read_metadata(f.expected_version(f.latest)).num_rows


# --------------------------------------------------------------------------- tests


def test_the_connector_reads_over_https_from_a_catalog_server(tmp_path):
    """Catalog mode with --tls-cert/--tls-key: the stdout line, the profile from an activation
    link, the file URLs and the downloads are all https, verified against the test CA."""
    ca = make_ca(tmp_path)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(cert, key, server_certificate(ca, "d2o server", 1001))
    catalog, _ = reader_catalog(tmp_path)
    server = start_https(tmp_path, ["--catalog", str(catalog), "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
                         ca.path)
    try:
        endpoint = f"{server.base}/delta-sharing"
        assert f"d2o serving Delta Sharing at {endpoint}\n" in server.log_text()

        # The config.share an activation link hands out names the https endpoint.
        link = json.loads(cli("recipient", "create", "r2", "--endpoint", endpoint, "--json",
                              catalog=catalog).stdout)["url"]
        cli("grant", "s", "r2", catalog=catalog)
        assert link.startswith(f"{endpoint}/activate/")
        status, _, body = https("POST", link, ca.path)
        assert status == 200, body
        profile_json = json.loads(body)
        assert profile_json["endpoint"].rstrip("/") == endpoint, profile_json["endpoint"]
        profile = tmp_path / "r2.share"
        profile.write_bytes(body)

        status, _, body = https("POST", f"{endpoint}/shares/s/schemas/sc/tables/t/query", ca.path,
                                token=profile_json["bearerToken"], body={})
        assert status == 200, body
        urls = [json.loads(line)["file"]["url"] for line in body.decode().splitlines()[2:]]
        assert urls and all(u.startswith(f"{endpoint}/files/") for u in urls), urls

        done = connector_read(f"{profile}#s.sc.t", ca.path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.splitlines()[-1])["rows"] == expected_rows("simple_table")

        # Without the CA the connector refuses the certificate: verification is really on.
        done = connector_read(f"{profile}#s.sc.t", None)
        assert done.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr[-3000:]
    finally:
        stop(server.proc)


def test_plain_http_to_the_tls_port_fails_cleanly(tmp_path):
    ca = make_ca(tmp_path)
    install(tmp_path / "cert.pem", tmp_path / "key.pem", server_certificate(ca, "d2o server", 7))
    catalog, _ = reader_catalog(tmp_path)
    config = tmp_path / "server.yaml"
    config.write_text("version: 1\nheaderReadTimeoutSeconds: 2\n")
    server = start_https(tmp_path, ["--catalog", str(catalog), "--config", str(config)], ca.path,
                         env={"D2O_TLS_CERT": "cert.pem", "D2O_TLS_KEY": "key.pem"})
    try:
        # A plain HTTP client gets a plain answer that says what to do.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10)
            pytest.fail("plain HTTP was served on the TLS port")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and b"https://" in e.read()
        # Bytes that are neither HTTP nor TLS: the connection is closed, promptly.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.sendall(b"\x00\x01\x02\x03 not a client hello\r\n\r\n")
            raw.settimeout(10)
            received = b""
            try:
                while chunk := raw.recv(4096):
                    received += chunk
            except ConnectionResetError:
                pass
            assert not received.startswith(b"HTTP/"), received
        # A client that never finishes its handshake is dropped, while real clients are served.
        stalled = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        started = time.monotonic()
        stalled.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00]))  # a record header, no record
        assert https("GET", f"{server.base}/health", ca.path)[0] == 200
        stalled.settimeout(30)
        try:
            while stalled.recv(4096):
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 6, "dropped after the header-read timeout (2 s)"
        stalled.close()
        assert server.proc.poll() is None
    finally:
        stop(server.proc)


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path):
    """YAML mode with the reference `ssl` section (paths relative to the file): new files are
    served at a handshake a few seconds later; a broken file keeps the current certificate and
    is logged."""
    ca = make_ca(tmp_path)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    cert, key = tls_dir / "server.crt", tls_dir / "server.key"
    install(cert, key, server_certificate(ca, "d2o server A", 1111))
    table = fixture_by_name("simple_table").delta_dir
    config = tmp_path / "server.yaml"
    config.write_text(
        "version: 1\n"
        "shares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n"
        f"    - name: t\n      location: {json.dumps(str(table))}\n"
        "authorization:\n  bearerToken: tls-test-token\n"
        "ssl:\n  selfSigned: false\n  certificateFile: tls/server.crt\n  certificateKeyFile: tls/server.key\n"
    )
    server = start_https(tmp_path, ["--config", str(config)], ca.path)
    try:
        pid = server.proc.pid
        assert f"at https://127.0.0.1:{server.port}/delta-sharing" in server.log_text()
        first = served_certificate(server.port, ca.path)
        assert first.serial_number == 1111

        profile = tmp_path / "yaml.share"
        profile.write_text(json.dumps({"shareCredentialsVersion": 1, "endpoint": f"{server.base}/delta-sharing",
                                       "bearerToken": "tls-test-token"}))
        done = connector_read(f"{profile}#s.sc.t", ca.path)
        assert done.returncode == 0, done.stderr[-3000:]

        install(cert, key, server_certificate(ca, "d2o server B", 2222))
        renewed = wait_for(lambda: (lambda c: c if c.serial_number == 2222 else None)(
            served_certificate(server.port, ca.path)), timeout=15, what="the renewed certificate")
        assert renewed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "d2o server B"
        assert server.proc.pid == pid and server.proc.poll() is None, "no restart"
        assert "TLS certificate reloaded" in server.log_text()
        done = connector_read(f"{profile}#s.sc.t", ca.path)
        assert done.returncode == 0, done.stderr[-3000:]

        # A broken certificate file: the server keeps B and says why.
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        wait_for(lambda: "still serving the previous certificate" in server.log_text(), timeout=15,
                 what="the error about the broken certificate")
        assert served_certificate(server.port, ca.path).serial_number == 2222
        assert https("GET", f"{server.base}/health", ca.path)[0] == 200
    finally:
        stop(server.proc)


def test_unusable_tls_settings_stop_the_start(tmp_path):
    ca = make_ca(tmp_path)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(cert, key, server_certificate(ca, "locked", 5, password=b"hunter2"))
    other_cert, _ = server_certificate(ca, "other", 6)
    (tmp_path / "other.pem").write_bytes(other_cert)
    plain_key = server_certificate(ca, "plain", 8)[1]
    (tmp_path / "plain.key").write_bytes(plain_key)

    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([os.environ["D2O_BIN"], "serve", "--catalog", str(tmp_path / "d2o.db"),
                               "--host", "127.0.0.1", "--port", "0", *args],
                              capture_output=True, text=True, timeout=30, cwd=str(tmp_path))

    done = serve("--tls-cert", "cert.pem", "--tls-key", "key.pem")
    assert done.returncode != 0 and "encrypted private key" in done.stderr and "openssl pkey" in done.stderr, done.stderr
    assert "hunter2" not in done.stderr and not done.stdout
    done = serve("--tls-cert", "other.pem", "--tls-key", "plain.key")
    assert done.returncode != 0 and "does not fit the certificate" in done.stderr, done.stderr
    done = serve("--tls-cert", "cert.pem")
    assert done.returncode != 0 and "--tls-key" in done.stderr, done.stderr

    config = tmp_path / "self-signed.yaml"
    config.write_text("version: 1\nssl:\n  selfSigned: true\n")
    done = serve("--config", str(config))
    assert done.returncode != 0 and "ssl.selfSigned" in done.stderr and str(config) in done.stderr, done.stderr
