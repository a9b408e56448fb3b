"""OIDC federation, black box, with the official connector.

A recipient's own identity provider (idp.LocalIdP on loopback) issues JWTs; the provider adds a
federation policy (issuer, audience, subject claim) to a recipient that holds no d2o credential
at all, and the recipient reads with an `oauth_client_credentials` profile whose token endpoint
is its identity provider's. Every refusal is a 401 that names the check that failed and never
echoes the token; only the issuers of policies are ever contacted; keys are fetched once and
refetched when the provider rotates; revocation, removal and the IP access list apply at once."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import List, Optional

import delta_sharing
import pytest

from conftest import fixture_by_name
from idp import LocalIdP
from test_security import audit, cli, http, start, stop, wait_for

ADMIN_TOKEN = secrets.token_hex(24)  # never starts with "-", which the CLI would read as a flag
SUBJECT = "svc-acme"
CLAIMS = {"aud": "d2o", "sub": SUBJECT}


# --------------------------------------------------------------------------- helpers


def add_policy(catalog: Path, issuer: str, *, claim: str = "sub", subject: str = SUBJECT,
               recipient: str = "acme", remote: Optional[List[str]] = None) -> dict:
    """`d2o recipient federation add`; the new policy (as `recipient show --json` lists it)."""
    before = {p["id"] for p in policies(catalog, recipient)}
    out = cli("recipient", "federation", "add", recipient, "--issuer", issuer, "--audience", "d2o",
              "--claim", claim, "--subject", subject, "--json", *(remote or []), catalog=catalog).stdout
    added = [p for p in json.loads(out)["federationPolicies"] if p["id"] not in before]
    assert len(added) == 1, out
    return added[0]


def policies(catalog: Path, recipient: str = "acme") -> List[dict]:
    shown = json.loads(cli("recipient", "show", recipient, "--json", catalog=catalog).stdout)
    return shown.get("federationPolicies", [])


def provider(work: Path, idp: Optional[LocalIdP], **policy):
    """Share `s` (table `sc.t`) granted to `acme`, a recipient without a d2o credential, with one
    federation policy for `idp` (unless None); served. Returns (catalog, server, endpoint)."""
    catalog = work / "d2o.db"
    cli("share", "create", "s", catalog=catalog)
    cli("share", "add-table", "s", "sc.t", "--location", str(fixture_by_name("simple_table").delta_dir),
        catalog=catalog)
    shown = cli("recipient", "create", "acme", "--no-credential", catalog=catalog).stdout
    assert "d2o_" not in shown
    cli("grant", "s", "acme", catalog=catalog)
    if idp is not None:
        add_policy(catalog, idp.issuer, **policy)
    server = start(work, ["--catalog", str(catalog)], env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    return catalog, server, f"{server.base}/delta-sharing"


def profile_for(work: Path, endpoint: str, idp: LocalIdP, client_id: str, claims: Optional[dict] = None) -> Path:
    """An `oauth_client_credentials` profile whose token endpoint is the recipient's own IdP;
    the client is registered there with `claims` (default: those d2o's policy expects)."""
    secret = secrets.token_urlsafe(16)
    idp.register_client(client_id, secret, dict(claims or CLAIMS), expires_in=3600)
    path = work / f"{client_id}.share"
    path.write_text(json.dumps({
        "shareCredentialsVersion": 2,
        "type": "oauth_client_credentials",
        "endpoint": endpoint,
        "tokenEndpoint": idp.token_endpoint,
        "clientId": client_id,
        "clientSecret": secret,
    }))
    return path


def shares(server, token: str):
    return http("GET", f"{server.base}/delta-sharing/shares", token)


def refused(server, token: str, *words: str) -> str:
    """Asserts a 401 JSON answer whose message names the failed check; returns the message."""
    status, headers, body = shares(server, token)
    assert status == 401, (words, status, body)
    answer = json.loads(body)
    assert answer["errorCode"] == "UNAUTHENTICATED", answer
    message = answer["message"]
    for word in words:
        assert word in message, (word, message)
    signature = token.split(".")[2]
    assert token not in body.decode() and (not signature or signature[:16] not in message), message
    assert token not in json.dumps(dict(headers))
    return message


def tamper(token: str) -> str:
    """The same token with its payload changed (subject unchanged) and the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = claims["exp"] + 86400
    forged = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.fixture()
def idp():
    with LocalIdP(keys=("RS256", "ES256")) as provider_idp:
        yield provider_idp


# --------------------------------------------------------------------------- tests


def test_the_connector_reads_with_rs256_and_es256_tokens_of_the_recipients_idp(tmp_path, idp):
    catalog, server, endpoint = provider(tmp_path, idp)
    try:
        rs_kid, es_kid = idp.signing_kid, next(k for k in idp.jwks()["keys"] if k["kty"] == "EC")["kid"]
        profile = profile_for(tmp_path, endpoint, idp, "acme-rs")
        tables = delta_sharing.SharingClient(str(profile)).list_all_tables()
        assert [(t.share, t.schema, t.name) for t in tables] == [("s", "sc", "t")], tables
        df = delta_sharing.load_as_pandas(f"{profile}#s.sc.t")
        assert len(df) > 0
        assert idp.token_requests == 1, "the connector reuses its token (valid for an hour)"

        # A second client of the provider whose tokens are signed with its P-256 key.
        idp.signing_kid = es_kid
        es_profile = profile_for(tmp_path, endpoint, idp, "acme-es")
        assert len(delta_sharing.load_as_pandas(f"{es_profile}#s.sc.t")) == len(df)
        assert [t.name for t in delta_sharing.SharingClient(str(es_profile)).list_all_tables()] == ["t"]
        assert idp.token_requests == 2
        assert idp.jwks_requests == 1, "both keys were in the one JWKS fetched"
        token = idp.mint(CLAIMS)
        assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["alg"] == "ES256"
        assert shares(server, token)[0] == 200
        assert shares(server, idp.mint(CLAIMS, kid=rs_kid))[0] == 200

        events = wait_for(lambda: [e for e in audit(catalog, recipient="acme") if e["action"] == "query"],
                          what="audited queries of acme")
        assert len(events) >= 2 and all(e["principal"] == "acme" and e["status"] == 200 for e in events), events
        listed = [e for e in audit(catalog, recipient="acme") if e["action"] in ("list_shares", "list_all_tables")]
        assert listed and all(e["principal"] == "acme" for e in listed), listed
        log = server.log_text()
        assert token not in log and token.split(".")[2] not in log
    finally:
        stop(server.proc)


def test_each_refusal_is_401_naming_the_check_and_never_the_token(tmp_path, idp):
    catalog, server, _ = provider(tmp_path, idp)
    other = LocalIdP().start()
    try:
        assert shares(server, idp.mint(CLAIMS))[0] == 200
        # Another provider, whatever its token claims, is refused without being contacted.
        foreign = other.mint(CLAIMS)
        refused(server, foreign, "issuer", "no federation policy")
        # Nor does a header's jku send d2o anywhere: only the policy's issuer is asked.
        refused(server, other.mint(CLAIMS, issuer=idp.issuer, header={"jku": other.jwks_uri}), "unknown key")
        refused(server, idp.mint({**CLAIMS, "aud": "someone-else"}), "audience")
        refused(server, idp.mint({**CLAIMS, "aud": ["x", "y"]}), "audience")
        refused(server, idp.mint({**CLAIMS, "sub": "svc-other"}), "sub claim does not match")
        refused(server, idp.mint(CLAIMS, expires_in=-300), "expired")
        refused(server, idp.mint(CLAIMS, expires_in=None), "exp")
        refused(server, idp.mint(CLAIMS, not_before=int(time.time()) + 600), "not valid yet", "nbf")
        refused(server, tamper(idp.mint(CLAIMS)), "signature")
        refused(server, tamper(idp.mint(CLAIMS, kid=next(k["kid"] for k in idp.jwks()["keys"]
                                                         if k["kty"] == "EC"))), "signature")
        refused(server, idp.mint_unsigned(CLAIMS), "algorithm none", "RS256 or ES256")
        refused(server, idp.mint_hs256_with_public_key(CLAIMS), "algorithm HS256")
        refused(server, idp.mint_hs256_with_public_key(CLAIMS, secret="jwk"), "algorithm HS256")
        hidden = idp.add_key("RS256", publish=False)
        refused(server, idp.mint(CLAIMS, kid=hidden), "unknown key")
        es_kid = next(k["kid"] for k in idp.jwks()["keys"] if k["kty"] == "EC")
        refused(server, idp.mint(CLAIMS, kid=es_kid, header={"kid": idp.signing_kid}), "says ES256", "RS256 key")
        # A published key named for a token signed with another one.
        refused(server, idp.mint(CLAIMS, kid=hidden, header={"kid": idp.signing_kid}), "signature")
        assert other.requests == [], other.requests
        assert shares(server, idp.mint(CLAIMS))[0] == 200, "refusals leave the policy working"
        log = server.log_text()
        assert foreign not in log and foreign.split(".")[2] not in log
        events = wait_for(lambda: [e for e in audit(catalog) if e["status"] == 401] or None,
                          what="audited refusals")
        assert events and all(e.get("principal") != "acme" for e in events), events
        assert foreign.split(".")[2] not in json.dumps(events)
    finally:
        other.stop()
        stop(server.proc)


def test_a_groups_policy_needs_the_group_in_the_tokens_groups(tmp_path, idp):
    _, server, endpoint = provider(tmp_path, idp, claim="groups", subject="partners")
    try:
        assert shares(server, idp.mint({"aud": "d2o", "sub": "anyone", "groups": ["staff", "partners"]}))[0] == 200
        refused(server, idp.mint({"aud": "d2o", "sub": "anyone"}), "groups claim does not match")
        refused(server, idp.mint({"aud": "d2o", "sub": "anyone", "groups": ["staff"]}), "groups claim")
        # The connector too: the IdP's client carries the group.
        profile = profile_for(tmp_path, endpoint, idp, "acme-group", {"aud": "d2o", "groups": ["partners"]})
        assert len(delta_sharing.load_as_pandas(f"{profile}#s.sc.t")) > 0
    finally:
        stop(server.proc)


def test_a_groups_policy_takes_one_group_as_a_string(tmp_path, idp):
    # Some providers (AD FS) send a single group as a string rather than a list.
    _, server, _ = provider(tmp_path, idp, claim="groups", subject="partners")
    try:
        assert shares(server, idp.mint({"aud": "d2o", "sub": "anyone", "groups": "partners"}))[0] == 200
        refused(server, idp.mint({"aud": "d2o", "sub": "anyone", "groups": "partners-not"}), "groups claim")
    finally:
        stop(server.proc)


def test_keys_are_fetched_once_and_again_after_the_idp_rotates(tmp_path):
    with LocalIdP() as idp:
        _, server, _ = provider(tmp_path, idp)
        try:
            old = idp.signing_kid
            token = idp.mint(CLAIMS)
            assert [shares(server, token)[0] for _ in range(10)] == [200] * 10
            assert [shares(server, idp.mint(CLAIMS))[0] for _ in range(5)] == [200] * 5
            assert (idp.discovery_requests, idp.jwks_requests) == (1, 1), idp.requests
            # At most one refetch a second per provider: rotate after that.
            time.sleep(1.2)
            new = idp.rotate("ES256")
            assert new != old and [k["kid"] for k in idp.jwks()["keys"]] == [new]
            assert shares(server, idp.mint(CLAIMS))[0] == 200, "the new key is fetched"
            assert idp.jwks_requests == 2, idp.requests
            assert [shares(server, idp.mint(CLAIMS))[0] for _ in range(10)] == [200] * 10
            assert idp.jwks_requests == 2, idp.requests
            # The old key left the JWKS: its tokens are refused now.
            refused(server, idp.mint(CLAIMS, kid=old), "unknown key")
            refused(server, token, "unknown key")
            assert idp.jwks_requests <= 3, idp.requests
        finally:
            stop(server.proc)


def test_revocation_and_removal_apply_at_once_and_issuers_must_be_https(tmp_path, idp):
    catalog, server, _ = provider(tmp_path, idp)
    remote = ["--server", server.base, "--admin-token", ADMIN_TOKEN]
    try:
        # A second policy, through the admin API: another service of the same company.
        status, _, body = http("POST", f"{server.base}/admin/v1/recipients/acme/federation-policies",
                               ADMIN_TOKEN, {"issuer": idp.issuer, "audiences": ["d2o"],
                                             "subjectClaim": "sub", "subject": "svc-batch"})
        assert status in (200, 201), body
        batch = next(p for p in policies(catalog) if p["subject"] == "svc-batch")
        main_token, batch_token = idp.mint(CLAIMS), idp.mint({**CLAIMS, "sub": "svc-batch"})
        assert shares(server, main_token)[0] == 200 and shares(server, batch_token)[0] == 200

        cli("recipient", "federation", "remove", "acme", batch["id"], *remote, catalog=catalog)
        assert [p["subject"] for p in policies(catalog)] == [SUBJECT]
        refused(server, batch_token, "sub claim does not match")
        assert shares(server, main_token)[0] == 200

        # The same through the CLI on the catalog and the admin API's DELETE.
        third = add_policy(catalog, idp.issuer, subject="svc-third")
        third_token = idp.mint({**CLAIMS, "sub": "svc-third"})
        assert shares(server, third_token)[0] == 200
        status, _, body = http("DELETE", f"{server.base}/admin/v1/recipients/acme/federation-policies/{third['id']}",
                               ADMIN_TOKEN)
        assert status in (200, 204), body
        assert shares(server, third_token)[0] == 401
        status, _, _ = http("DELETE", f"{server.base}/admin/v1/recipients/acme/federation-policies/{third['id']}",
                            ADMIN_TOKEN)
        assert status == 404

        # Only https issuers (plain http on loopback alone), by the CLI and the admin API.
        for issuer in ("http://idp.example.com", "http://10.0.0.1:8080"):
            done = cli("recipient", "federation", "add", "acme", "--issuer", issuer, "--audience", "d2o",
                       "--subject", SUBJECT, catalog=catalog, check=False)
            assert done.returncode != 0 and "must be an https URL" in done.stderr, done.stderr
        status, _, body = http("POST", f"{server.base}/admin/v1/recipients/acme/federation-policies", ADMIN_TOKEN,
                               {"issuer": "http://idp.example.com", "audiences": ["d2o"], "subjectClaim": "sub",
                                "subject": SUBJECT})
        assert status == 400 and "https" in json.loads(body)["message"], body
        assert len(policies(catalog)) == 1

        # A recipient's expiry ends its federated access too.
        created = time.monotonic()
        cli("recipient", "create", "brief", "--no-credential", "--expires-in", "2s", catalog=catalog)
        cli("grant", "s", "brief", catalog=catalog)
        add_policy(catalog, idp.issuer, subject="svc-brief", recipient="brief")
        brief_token = idp.mint({**CLAIMS, "sub": "svc-brief"})
        assert shares(server, brief_token)[0] == 200
        time.sleep(max(0.0, created + 2.2 - time.monotonic()))
        refused(server, brief_token, "expired")

        cli("recipient", "revoke", "acme", catalog=catalog)
        status, _, body = shares(server, main_token)
        assert status == 401 and main_token not in body.decode(), body
        assert all(p.get("revokedAt") for p in policies(catalog)), policies(catalog)
        assert shares(server, idp.mint(CLAIMS))[0] == 401
    finally:
        stop(server.proc)


def test_the_ip_access_list_applies_to_federated_recipients(tmp_path, idp):
    catalog, server, _ = provider(tmp_path, idp)
    try:
        token = idp.mint(CLAIMS)
        assert shares(server, token)[0] == 200
        cli("recipient", "ip-access", "acme", "--allow", "10.0.0.0/8", catalog=catalog)
        status, _, body = shares(server, token)
        assert status == 403 and json.loads(body)["errorCode"] == "PERMISSION_DENIED", body
        status, _, body = http("GET", f"{server.base}/delta-sharing/shares/s/schemas/sc/tables/t/version", token)
        assert status == 403 and json.loads(body)["errorCode"] == "PERMISSION_DENIED", body
        wait_for(lambda: [e for e in audit(catalog, recipient="acme") if e["status"] == 403],
                 what="the refusal audited under acme")
        cli("recipient", "ip-access", "acme", "--allow", "127.0.0.0/8", catalog=catalog)
        assert shares(server, token)[0] == 200
    finally:
        stop(server.proc)


def test_an_idp_that_is_down_means_401_and_a_warning_without_the_token(tmp_path, idp):
    _, server, _ = provider(tmp_path, idp)
    try:
        idp.unavailable = True
        token = idp.mint(CLAIMS)
        message = refused(server, token, "could not be fetched")
        assert "503" in message, message
        warnings = wait_for(lambda: [line for line in server.log_text().splitlines()
                                     if "WARN" in line and "federated token" in line],
                            what="a warning in the server log")
        assert idp.issuer in "\n".join(warnings), warnings
        log = server.log_text()
        assert token not in log and token.split(".")[2] not in log and token.split(".")[1] not in log
        # Once the provider answers again (and a second has passed), tokens pass.
        idp.unavailable = False
        time.sleep(1.2)
        assert shares(server, token)[0] == 200
    finally:
        stop(server.proc)
