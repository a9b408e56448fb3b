"""A local OpenID Connect provider for the end-to-end tests of OIDC federation.

It plays a recipient's own identity provider (Entra ID, Okta, Keycloak...) on 127.0.0.1 with an
ephemeral port: a discovery document, a JWKS, and a token endpoint for the client-credentials
grant, the way the official delta-sharing connector's ``oauth_client_credentials`` profile
asks for a token (``POST`` form ``grant_type=client_credentials[&scope=...]`` with
``Authorization: Basic base64(id:secret)``). It also mints any token a negative test needs:
expired, from another issuer, signed with an unpublished key, ``alg: none``, HS256 signed
with the public key...

Only the standard library, ``cryptography`` and ``jwcrypto`` (both pinned in
requirements.txt). Usage::

    with LocalIdP() as idp:                       # one RS256 key to start with
        idp.register_client("job", "s3cret", {"aud": "d2o", "sub": "svc-1"})
        token = idp.mint({"aud": "d2o", "sub": "svc-1"})
        kid = idp.rotate("ES256")                 # new signing key; the old one leaves the JWKS
        assert idp.jwks_requests == 0

Paths: ``/.well-known/openid-configuration``, ``/jwks``, ``/token``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs

from jwcrypto import jwk, jws

ALGS = ("RS256", "ES256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class _Client:
    def __init__(self, secret: str, claims: Dict[str, Any], expires_in: int):
        self.secret = secret
        self.claims = dict(claims)
        self.expires_in = expires_in


class LocalIdP:
    """An OpenID Connect provider on ``http://127.0.0.1:PORT``; a context manager.

    Attributes the tests read: ``issuer``, ``jwks_uri``, ``token_endpoint``, ``signing_kid``
    (the key the token endpoint and ``mint`` sign with), and the request counters
    ``discovery_requests``, ``jwks_requests``, ``token_requests`` and ``requests`` (every
    request, as ``"METHOD /path"``).

    Knobs for failure tests: ``unavailable = True`` answers 503 to discovery and JWKS (an
    outage); ``discovery_overrides`` is merged into the discovery document (e.g. another
    ``issuer``).
    """

    def __init__(self, keys: tuple = ("RS256",)):
        self._lock = threading.Lock()
        self._keys: Dict[str, jwk.JWK] = {}  # every key ever made, by kid (for negative tests)
        self._published: List[str] = []  # kids in the JWKS, in order
        self._clients: Dict[str, _Client] = {}
        self.signing_kid: Optional[str] = None
        self.discovery_requests = 0
        self.jwks_requests = 0
        self.token_requests = 0
        self.requests: List[str] = []
        self.unavailable = False
        self.discovery_overrides: Dict[str, Any] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None
        port = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{port}"
        self.jwks_uri = f"{self.issuer}/jwks"
        self.token_endpoint = f"{self.issuer}/token"
        for alg in keys:
            self.add_key(alg)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalIdP":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="local-idp", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "LocalIdP":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ keys
    def add_key(self, alg: str = "RS256", *, publish: bool = True) -> str:
        """A new key for ``alg`` (RS256: RSA 2048; ES256: P-256) and its kid. Published in the
        JWKS unless ``publish=False`` (a key the verifier cannot know). The first key made
        becomes the signing key."""
        if alg not in ALGS:
            raise ValueError(f"alg must be one of {ALGS}, not {alg!r}")
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:12]}"
        if alg == "RS256":
            key = jwk.JWK.generate(kty="RSA", size=2048, kid=kid, use="sig", alg=alg)
        else:
            key = jwk.JWK.generate(kty="EC", crv="P-256", kid=kid, use="sig", alg=alg)
        with self._lock:
            self._keys[kid] = key
            if publish:
                self._published.append(kid)
            if self.signing_kid is None:
                self.signing_kid = kid
        return kid

    def rotate(self, alg: str = "RS256") -> str:
        """A new signing key (published); the previous signing key leaves the JWKS but can
        still sign through ``mint(kid=...)``. Returns the new kid."""
        kid = self.add_key(alg)
        with self._lock:
            old = self.signing_kid
            if old is not None and old != kid and old in self._published:
                self._published.remove(old)
            self.signing_kid = kid
        return kid

    def unpublish(self, kid: str) -> None:
        with self._lock:
            if kid in self._published:
                self._published.remove(kid)

    def jwks(self) -> Dict[str, Any]:
        """The published JSON Web Key Set (public keys only)."""
        with self._lock:
            return {"keys": [self._keys[kid].export_public(as_dict=True) for kid in self._published]}

    def key_alg(self, kid: str) -> str:
        return "RS256" if self._keys[kid]["kty"] == "RSA" else "ES256"

    # ------------------------------------------------------------------ clients
    def register_client(
        self, client_id: str, client_secret: str, claims: Dict[str, Any], *, expires_in: int = 3600
    ) -> None:
        """Tokens issued to this client at the token endpoint carry ``claims`` (``sub``,
        ``aud``, ``groups``...) over the defaults (``sub`` and ``azp`` = client id)."""
        with self._lock:
            self._clients[client_id] = _Client(client_secret, claims, expires_in)

    # ------------------------------------------------------------------ tokens
    def mint(
        self,
        claims: Dict[str, Any],
        *,
        kid: Optional[str] = None,
        alg: Optional[str] = None,
        expires_in: Optional[int] = 300,
        not_before: Optional[int] = None,
        issuer: Optional[str] = None,
        header: Optional[Dict[str, Any]] = None,
    ) -> str:
        """A signed JWT. Defaults: ``iss`` = this provider (or ``issuer``), ``iat`` = now,
        ``exp`` = now + ``expires_in`` (none if ``None``, in the past if negative), ``nbf`` =
        ``not_before`` (an absolute Unix time) if given, signed by ``kid`` (default: the signing
        key, published or not) with its algorithm. ``claims`` override the defaults; a claim
        set to ``None`` is left out. ``header`` overrides header fields (``{"kid": other}``
        to sign with one key and name another)."""
        kid = kid or self.signing_kid
        if kid is None or kid not in self._keys:
            raise ValueError(f"no key {kid!r}")
        key = self._keys[kid]
        alg = alg or self.key_alg(kid)
        now = int(time.time())
        payload: Dict[str, Any] = {"iss": issuer or self.issuer, "iat": now, "jti": uuid.uuid4().hex}
        if expires_in is not None:
            payload["exp"] = now + expires_in
        if not_before is not None:
            payload["nbf"] = not_before
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        protected = {"alg": alg, "typ": "JWT", "kid": kid}
        protected.update(header or {})
        token = jws.JWS(_json_bytes(payload))
        token.add_signature(key, alg=alg, protected=json.dumps(protected))
        return token.serialize(compact=True)

    def mint_unsigned(self, claims: Dict[str, Any], *, expires_in: int = 300) -> str:
        """An ``alg: none`` token (empty signature): must always be refused."""
        payload = {"iss": self.issuer, "iat": int(time.time()), "exp": int(time.time()) + expires_in}
        payload.update(claims)
        header = {"alg": "none", "typ": "JWT"}
        return f"{b64url(_json_bytes(header))}.{b64url(_json_bytes(payload))}."

    def mint_hs256_with_public_key(
        self, claims: Dict[str, Any], *, kid: Optional[str] = None, secret: str = "pem"
    ) -> str:
        """The algorithm-confusion forgery: HS256 with the signing key's *public* key as the
        HMAC secret (``secret="pem"``: its SubjectPublicKeyInfo PEM, the classic attack;
        ``"jwk"``: its public JWK as JSON), naming the real kid. Must always be refused."""
        kid = kid or self.signing_kid
        key = self._keys[kid]
        if secret == "pem":
            material = key.export_to_pem(private_key=False)
        else:
            material = key.export_public().encode("utf-8")
        payload = {"iss": self.issuer, "iat": int(time.time()), "exp": int(time.time()) + 300}
        payload.update(claims)
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = f"{b64url(_json_bytes(header))}.{b64url(_json_bytes(payload))}"
        mac = hmac.new(material, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"

    # ------------------------------------------------------------------ HTTP
    def discovery(self) -> Dict[str, Any]:
        document = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": self.token_endpoint,
            "id_token_signing_alg_values_supported": list(ALGS),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        }
        document.update(self.discovery_overrides)
        return document

    def _issue(self, headers, body: bytes):
        """The token endpoint: (status, JSON body, extra headers)."""
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        client_id, secret = _basic_credentials(headers.get("Authorization"))
        if client_id is None:  # client_secret_post
            client_id, secret = form.get("client_id"), form.get("client_secret")
        with self._lock:
            client = self._clients.get(client_id or "")
        if client is None or secret is None or not hmac.compare_digest(client.secret, secret):
            return 401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="local-idp"'}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        claims = {"sub": client_id, "azp": client_id, "client_id": client_id}
        if form.get("scope"):
            claims["scope"] = form["scope"]
        claims.update(client.claims)
        token = self.mint(claims, expires_in=client.expires_in)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": client.expires_in}, {}


def _basic_credentials(value: Optional[str]):
    if not value or not value[:6].lower() == "basic ":
        return None, None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    if ":" not in decoded:
        return None, None
    client_id, secret = decoded.split(":", 1)
    return client_id, secret


def _handler(idp: LocalIdP):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

        def _send(self, status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> None:
            data = _json_bytes(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _count(self) -> str:
            path = self.path.split("?", 1)[0]
            with idp._lock:
                idp.requests.append(f"{self.command} {path}")
                if path == "/.well-known/openid-configuration":
                    idp.discovery_requests += 1
                elif path == "/jwks":
                    idp.jwks_requests += 1
                elif path == "/token":
                    idp.token_requests += 1
            return path

        def do_GET(self):
            path = self._count()
            if path in ("/.well-known/openid-configuration", "/jwks") and idp.unavailable:
                self._send(503, {"error": "temporarily_unavailable"})
            elif path == "/.well-known/openid-configuration":
                self._send(200, idp.discovery())
            elif path == "/jwks":
                self._send(200, idp.jwks())
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self):
            path = self._count()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 16))
            if path != "/token":
                self._send(404, {"error": "not_found"})
                return
            status, answer, headers = idp._issue(self.headers, body)
            self._send(status, answer, headers)

    return Handler
