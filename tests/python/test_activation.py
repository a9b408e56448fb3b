"""Activation links and OAuth client credentials, black box, with the official connector.

The provider creates a recipient and gets a one-time link, never a token. The recipient opens
it in a real browser (headless Chromium), downloads `config.share` once and reads with the
official connector; a second visit says the link was used. OAuth client credentials are
exchanged at d2o's token endpoint for short-lived access tokens, which revocation and rotation
stop at once."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import secrets
import time
import urllib.parse
from pathlib import Path

import delta_sharing

from browser import save_screenshot, wait_for_download
from test_security import audit, cli, http, start, stop
from conftest import fixture_by_name

ADMIN_TOKEN = secrets.token_hex(24)  # never starts with "-", which the CLI would read as a flag
SECRET_PATTERN = re.compile(r"/activate/([A-Za-z0-9_-]{40,})")


def provider(work: Path, *extra: str):
    """A catalog with share `s` (table `sc.t`) served from it; returns (catalog, server, endpoint)."""
    catalog = work / "d2o.db"
    cli("share", "create", "s", catalog=catalog)
    cli("share", "add-table", "s", "sc.t", "--location", str(fixture_by_name("simple_table").delta_dir),
        catalog=catalog)
    server = start(work, ["--catalog", str(catalog), "--provider-contact", "data-team@example.com", *extra],
                   env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    return catalog, server, f"{server.base}/delta-sharing"


def create(catalog: Path, endpoint: str, name: str, *args: str) -> dict:
    """`d2o recipient create NAME` granted share `s`; its JSON answer (the activation link)."""
    out = cli("recipient", "create", name, "--endpoint", endpoint, "--json", *args, catalog=catalog).stdout
    cli("grant", "s", name, catalog=catalog)
    return json.loads(out)


def post(url: str, headers=None):
    return http("POST", url, headers=headers)


def rows(profile: Path) -> int:
    return len(delta_sharing.load_as_pandas(f"{profile}#s.sc.t"))


def test_a_recipient_activates_in_a_browser_once_and_reads(tmp_path, chromium):
    catalog, server, endpoint = provider(tmp_path)
    try:
        shown = cli("recipient", "create", "partner_co", "--endpoint", endpoint, catalog=catalog).stdout
        cli("grant", "s", "partner_co", catalog=catalog)
        url = re.search(r"http://\S+/activate/\S+", shown).group(0)
        assert "d2o_" not in shown, "the provider never sees a credential"
        driver, downloads = chromium
        driver.get(url)
        page = driver.find_element("tag name", "main").text
        assert "partner_co" in page and "s" in page and endpoint in page, page
        assert "data-team@example.com" in page
        save_screenshot(driver, "activation-page")
        driver.find_element("id", "download").click()
        profile = wait_for_download(downloads, "config.share")
        creds = json.loads(profile.read_text())
        assert creds["endpoint"].rstrip("/") == endpoint and creds["bearerToken"].startswith("d2o_"), creds.keys()
        assert rows(profile) > 0
        # The secret exists only in the recipient's file: not in the catalog, not in the log.
        assert creds["bearerToken"].encode() not in catalog.read_bytes()
        secret = SECRET_PATTERN.search(url).group(1)
        log = server.log.read_text(errors="replace")
        assert creds["bearerToken"] not in log and secret not in log
        driver.get(url)
        used = driver.find_element("tag name", "main").text
        assert "already been used" in used and "data-team@example.com" in used, used
        save_screenshot(driver, "activation-used")
        actions = [e["action"] for e in audit(catalog, recipient="partner_co")]
        assert actions.count("activation.view") == 2 and actions.count("activation.download") == 1, actions
        assert "list_tables" in actions or "query" in actions
        shown = json.loads(cli("recipient", "show", "partner_co", "--json", catalog=catalog).stdout)
        assert shown["activation"]["state"] == "used" and len(shown["tokens"]) == 1
    finally:
        stop(server.proc)


def test_a_link_works_once_expires_and_is_replaced(tmp_path):
    catalog, server, endpoint = provider(tmp_path)
    try:
        link = create(catalog, endpoint, "r")["url"]
        status, headers, body = http("GET", link)
        assert status == 200 and b"Download config.share" in body
        assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "unsafe" not in policy and "script-src" not in policy
        # Two downloads at once: exactly one gets the credential.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(link), range(4)))
        statuses = sorted(a[0] for a in answers)
        assert statuses == [200, 410, 410, 410], statuses
        won = next(a for a in answers if a[0] == 200)
        assert won[1]["content-disposition"] == 'attachment; filename="config.share"'
        profile = tmp_path / "r.share"
        profile.write_bytes(won[2])
        assert rows(profile) > 0

        # A new link withdraws the old one and leaves the live credential alone.
        fresh = json.loads(cli("recipient", "activation-link", "r", "--endpoint", endpoint, "--json",
                               catalog=catalog).stdout)["url"]
        again = json.loads(cli("recipient", "activation-link", "r", "--endpoint", endpoint, "--json",
                               catalog=catalog).stdout)["url"]
        status, _, body = http("GET", fresh)
        assert status == 410 and b"no longer valid" in body, body
        assert rows(profile) > 0, "issuing a link does not touch live credentials"
        assert http("GET", again)[0] == 200

        brief = create(catalog, endpoint, "brief", "--link-expires-in", "1s")["url"]
        time.sleep(1.2)
        status, _, body = http("GET", brief)
        assert status == 410 and b"expired" in body
        assert post(brief)[0] == 410

        for bad in [link.replace("/activate/", "/activate/x"), f"{endpoint}/activate/short",
                    f"{endpoint}/activate/{'A' * 43}"]:
            status, _, body = http("GET", bad)
            assert status == 404 and b"not valid" in body, (bad, status)
        # Revoking the recipient withdraws its unused link.
        cli("recipient", "revoke", "r", catalog=catalog)
        assert http("GET", again)[0] == 410
    finally:
        stop(server.proc)


def test_the_page_escapes_names_and_honours_the_ip_list(tmp_path):
    catalog, server, endpoint = provider(tmp_path)
    try:
        hostile = "<img src=x onerror=alert(1)>"
        cli("share", "create", hostile, catalog=catalog)
        link = create(catalog, endpoint, "r")["url"]
        cli("grant", hostile, "r", catalog=catalog)
        status, _, body = http("GET", link)
        assert status == 200 and b"&lt;img src=x onerror=alert(1)&gt;" in body and b"<img" not in body
        cli("recipient", "ip-access", "r", "--allow", "10.0.0.0/8", catalog=catalog)
        for method in ("GET", "POST"):
            status, _, body = http(method, link)
            assert status == 403 and json.loads(body)["errorCode"] == "PERMISSION_DENIED", body
        cli("recipient", "ip-access", "r", "--allow", "127.0.0.1", catalog=catalog)
        assert post(link)[0] == 200
        assert any(e["status"] == 403 and e["action"] == "activation.view" for e in audit(catalog, recipient="r"))
    finally:
        stop(server.proc)


def token_request(endpoint: str, client_id: str, secret: str, body: str = "grant_type=client_credentials"):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return http("POST", f"{endpoint}/oauth/token", headers={
        "Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded",
    }, body=None) if body is None else _form(f"{endpoint}/oauth/token", body, {"Authorization": f"Basic {basic}"})


def _form(url: str, body: str, headers: dict):
    import urllib.request

    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_oauth_client_credentials_with_the_official_connector(tmp_path):
    catalog, server, endpoint = provider(tmp_path)
    try:
        # Through an activation link that hands out OAuth client credentials.
        link = create(catalog, endpoint, "o", "--kind", "oauth_client_credentials")["url"]
        status, _, body = post(link)
        assert status == 200, body
        profile = tmp_path / "o.share"
        profile.write_bytes(body)
        creds = json.loads(body)
        assert creds["shareCredentialsVersion"] == 2 and creds["type"] == "oauth_client_credentials"
        assert creds["tokenEndpoint"] == f"{endpoint}/oauth/token"
        assert rows(profile) > 0, "the connector gets an access token and reads"

        client, secret = creds["clientId"], creds["clientSecret"]
        status, headers, body = token_request(endpoint, client, secret)
        assert status == 200 and headers["cache-control"] == "no-store", body
        answer = json.loads(body)
        assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
        access = answer["access_token"]
        shares = f"{endpoint}/shares"
        assert http("GET", shares, access)[0] == 200
        # Form authentication works too; a client may not use both at once.
        assert _form(f"{endpoint}/oauth/token",
                     f"grant_type=client_credentials&client_id={client}&client_secret={secret}", {})[0] == 200

        for what, (status, _, body), code in [
            ("wrong secret", token_request(endpoint, client, secret[:-1] + "x"), "invalid_client"),
            ("another client's id", token_request(endpoint, "not-" + client, secret), "invalid_client"),
            ("no grant type", token_request(endpoint, client, secret, "scope=x"), "invalid_request"),
            ("password grant", token_request(endpoint, client, secret, "grant_type=password"), "unsupported_grant_type"),
            ("repeated", token_request(endpoint, client, secret,
                                       "grant_type=client_credentials&grant_type=client_credentials"), "invalid_request"),
            ("no client", _form(f"{endpoint}/oauth/token", "grant_type=client_credentials", {}), "invalid_client"),
        ]:
            assert json.loads(body)["error"] == code, (what, status, body)
            assert status in (400, 401), (what, status)
        # The client secret is not a bearer token, and a bearer token is not a client secret.
        status, _, body = http("GET", shares, secret)
        assert status == 401 and b"token endpoint" in body, body
        bearer = json.loads(cli("recipient", "create", "b", "--profile-out", str(tmp_path / "b.share"), "--json",
                                catalog=catalog).stdout)
        b_token = json.loads((tmp_path / "b.share").read_text())["bearerToken"]
        assert token_request(endpoint, bearer.get("id", "b"), b_token)[0] == 401
        # A forged or altered access token is refused.
        assert http("GET", shares, access[:-2] + ("AA" if not access.endswith("AA") else "BB"))[0] == 401

        # The recipient's IP access list holds at the token endpoint and for its access tokens.
        cli("recipient", "ip-access", "o", "--allow", "10.0.0.0/8", catalog=catalog)
        status, _, body = token_request(endpoint, client, secret)
        assert status == 403 and json.loads(body)["errorCode"] == "PERMISSION_DENIED", body
        assert http("GET", shares, access)[0] == 403
        cli("recipient", "ip-access", "o", "--clear", catalog=catalog)
        # Rotation past its grace and revocation reject outstanding access tokens at once.
        cli("recipient", "rotate", "o", "--grace", "0", "--kind", "oauth_client_credentials",
            "--profile-out", str(tmp_path / "o2.share"), catalog=catalog)
        status, _, body = http("GET", shares, access)
        assert status == 401, body
        assert token_request(endpoint, client, secret)[0] == 401
        fresh = json.loads((tmp_path / "o2.share").read_text())
        status, _, body = token_request(endpoint, fresh["clientId"], fresh["clientSecret"])
        access = json.loads(body)["access_token"]
        assert http("GET", shares, access)[0] == 200
        cli("recipient", "revoke", "o", catalog=catalog)
        assert http("GET", shares, access)[0] == 401
        assert token_request(endpoint, fresh["clientId"], fresh["clientSecret"])[0] == 401
        events = audit(catalog, recipient="o", action="oauth.token")
        assert events and all(e["principal"] == "o" for e in events)
        log = server.log.read_text(errors="replace")
        assert secret not in log and access not in log
    finally:
        stop(server.proc)


def test_the_admin_api_issues_links(tmp_path):
    catalog, server, endpoint = provider(tmp_path)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    api = f"{server.base}/admin/v1"
    try:
        status, _, body = http("POST", f"{api}/recipients", body={
            "name": "api_r", "credential": {"type": "activation", "kind": "oauth_client_credentials",
                                            "lifetimeSecs": 600}}, headers=admin)
        assert status == 201, body
        created = json.loads(body)
        link = created["activation"]
        assert link["url"].startswith(f"{endpoint}/activate/") and link["kind"] == "oauth_client_credentials"
        assert "token" not in created and created["recipient"]["activation"]["state"] == "ready"
        status, _, body = http("POST", f"{api}/recipients/api_r/activation-link", body={"lifetimeSecs": 0},
                               headers=admin)
        assert status == 400, body
        status, _, body = http("POST", f"{api}/recipients/api_r/activation-link", body={}, headers=admin)
        assert status == 200 and json.loads(body)["activation"]["kind"] == "bearer_token"
        assert http("GET", link["url"])[0] == 410
        status, _, body = http("POST", f"{api}/recipients/api_r/rotate",
                               body={"graceSeconds": 0, "credential": {"type": "none"}}, headers=admin)
        assert status == 200 and json.loads(body) == {}, body
        # The remote CLI prints the link the server made.
        out = cli("recipient", "activation-link", "api_r", "--server", server.base, "--admin-token", ADMIN_TOKEN,
                  "--endpoint", endpoint, catalog=catalog).stdout
        assert SECRET_PATTERN.search(out), out
        assert f"{endpoint}/activate/" in out, out
    finally:
        stop(server.proc)


def key_pair(tmp_path: Path, kind: str):
    """(private key file, public key PEM) of a new RSA or EC P-256 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / f"{kind}.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def assertion(private: Path, alg: str, claims: dict) -> str:
    from jwcrypto import jwk, jwt

    token = jwt.JWT(header={"alg": alg, "kid": "k1"}, claims=claims)
    token.make_signed_token(jwk.JWK.from_pem(private.read_bytes()))
    return token.serialize()


def test_private_key_jwt_clients_with_the_official_connector(tmp_path):
    catalog, server, endpoint = provider(tmp_path)
    token_endpoint = f"{endpoint}/oauth/token"
    try:
        cli("recipient", "create", "k", "--no-credential", catalog=catalog)
        cli("grant", "s", "k", catalog=catalog)
        for alg in ("RS256", "ES256"):
            private, public = key_pair(tmp_path, alg)
            (tmp_path / f"{alg}.pub").write_text(public)
            added = json.loads(cli("recipient", "client-key", "k", "--public-key", str(tmp_path / f"{alg}.pub"),
                                   "--endpoint", endpoint, "--json", catalog=catalog).stdout)
            profile = added["profile"]
            profile["auth"]["privateKey"] = {"privateKeyFile": str(private), "keyId": "k1", "algorithm": alg}
            path = tmp_path / f"{alg}.share"
            path.write_text(json.dumps(profile))
            assert rows(path) > 0, alg
            # d2o's own client reads with the same profile.
            out = tmp_path / f"{alg}.csv"
            cli("client", "load", f"{path}#s.sc.t", "--out", str(out), "--quiet", catalog=catalog)
            assert len(out.read_text().splitlines()) == rows(path) + 1
        client = added["clientId"]
        # The same key twice, a private key, or no key at all is refused.
        again = cli("recipient", "client-key", "k", "--public-key", str(tmp_path / "ES256.pub"), catalog=catalog,
                    check=False)
        assert again.returncode != 0 and "exists" in again.stderr, again.stderr
        bad = cli("recipient", "client-key", "k", "--public-key", str(private), catalog=catalog, check=False)
        assert bad.returncode != 0 and "PEM public key" in bad.stderr, bad.stderr

        grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
        now = int(time.time())
        good = {"iss": client, "aud": token_endpoint, "iat": now, "exp": now + 120}

        def exchange(claims: dict, key: Path = private, alg: str = "ES256"):
            body = urllib.parse.urlencode({"grant_type": grant, "assertion": assertion(key, alg, claims)})
            return _form(token_endpoint, body, {})

        status, _, body = exchange({**good, "jti": "once"})
        assert status == 200, body
        assert http("GET", f"{endpoint}/shares", json.loads(body)["access_token"])[0] == 200
        for what, claims, key, code in [
            ("replayed", {**good, "jti": "once"}, private, "invalid_grant"),
            ("another key", {**good, "jti": "k"}, tmp_path / "RS256.pem", "invalid_grant"),
            ("wrong audience", {**good, "jti": "a", "aud": endpoint}, private, "invalid_grant"),
            ("expired", {**good, "jti": "e", "exp": now - 600}, private, "invalid_grant"),
            ("too long", {**good, "jti": "l", "exp": now + 3600}, private, "invalid_grant"),
            ("no jti", good, private, "invalid_grant"),
            ("unknown client", {**good, "jti": "u", "iss": "nobody"}, private, "invalid_client"),
        ]:
            alg = "RS256" if key.name.startswith("RS256") else "ES256"
            status, _, body = exchange(claims, key, alg)
            assert json.loads(body)["error"] == code, (what, status, body)
        cli("recipient", "revoke", "k", catalog=catalog)
        status, _, body = exchange({**good, "jti": "after-revoke"})
        assert status == 401 and json.loads(body)["error"] == "invalid_client", body
    finally:
        stop(server.proc)
