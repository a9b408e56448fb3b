"""Self-test of the local OpenID Connect provider (idp.py): what the federation tests rely on.

Runs without a d2o server.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
from jwcrypto import jwk, jws, jwt

from idp import LocalIdP


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json"
        return json.loads(r.read())


def post_form(url: str, body: str, auth=None):
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# jwcrypto, given a key set, reports every refused token as a key it cannot use.
REFUSED = jwt.JWTMissingKey


def verify(idp: LocalIdP, token: str) -> dict:
    """Verifies `token` with jwcrypto against the *published* JWKS, as a relying party would."""
    keys = jwk.JWKSet.from_json(json.dumps(get_json(idp.jwks_uri)))
    checked = jwt.JWT(jwt=token, key=keys, algs=["RS256", "ES256"], expected_type="JWS")
    return json.loads(checked.claims)


def header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture()
def idp():
    with LocalIdP(keys=("RS256", "ES256")) as provider:
        yield provider


def test_discovery_and_jwks(idp):
    assert idp.issuer.startswith("http://127.0.0.1:")
    document = get_json(idp.issuer + "/.well-known/openid-configuration")
    assert document["issuer"] == idp.issuer
    assert document["jwks_uri"] == idp.jwks_uri
    assert document["token_endpoint"] == idp.token_endpoint
    assert set(document["id_token_signing_alg_values_supported"]) == {"RS256", "ES256"}
    keys = get_json(idp.jwks_uri)["keys"]
    assert [(k["kty"], k["alg"], k["use"]) for k in keys] == [("RSA", "RS256", "sig"), ("EC", "ES256", "sig")]
    assert keys[1]["crv"] == "P-256"
    for key in keys:  # public halves only
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    assert (idp.discovery_requests, idp.jwks_requests) == (1, 1)
    assert idp.requests == ["GET /.well-known/openid-configuration", "GET /jwks"]


def test_minted_rs256_and_es256_tokens_verify(idp):
    rs_kid = idp.signing_kid
    es_kid = [k["kid"] for k in get_json(idp.jwks_uri)["keys"] if k["kty"] == "EC"][0]
    for kid, alg in [(rs_kid, "RS256"), (es_kid, "ES256")]:
        token = idp.mint({"aud": "d2o", "sub": "svc-1", "groups": ["partners"]}, kid=kid)
        assert header(token) == {"alg": alg, "typ": "JWT", "kid": kid}
        claims = verify(idp, token)
        assert claims["iss"] == idp.issuer and claims["sub"] == "svc-1" and claims["groups"] == ["partners"]
        assert claims["iat"] <= time.time() < claims["exp"] <= time.time() + 301


def test_negative_tokens_are_what_they_claim(idp):
    now = int(time.time())
    expired = idp.mint({"aud": "d2o"}, expires_in=-120)
    assert verify_claims_unchecked(expired)["exp"] < now
    later = idp.mint({"aud": "d2o"}, not_before=now + 600, issuer="https://elsewhere.example")
    assert verify_claims_unchecked(later)["nbf"] == now + 600
    assert verify_claims_unchecked(later)["iss"] == "https://elsewhere.example"
    assert "exp" not in verify_claims_unchecked(idp.mint({"aud": "d2o"}, expires_in=None))
    assert "jti" not in verify_claims_unchecked(idp.mint({"jti": None}))

    unsigned = idp.mint_unsigned({"sub": "svc-1"})
    assert header(unsigned)["alg"] == "none" and unsigned.endswith(".")
    with pytest.raises(REFUSED):
        verify(idp, unsigned)
    forged = idp.mint_hs256_with_public_key({"sub": "svc-1"})
    assert header(forged) == {"alg": "HS256", "typ": "JWT", "kid": idp.signing_kid}
    with pytest.raises(REFUSED):
        verify(idp, forged)
    # The forgery really is HMAC-SHA256 keyed with the public PEM (so a verifier that took the
    # key as an HMAC secret would accept it): check it with jwcrypto.
    pem = jwk.JWK.from_json(json.dumps(get_json(idp.jwks_uri)["keys"][0])).export_to_pem()
    check = jws.JWS()
    check.deserialize(forged)
    check.verify(jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(pem).rstrip(b"=").decode()), alg="HS256")


def verify_claims_unchecked(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_rotation_and_unpublished_keys(idp):
    old = idp.signing_kid
    new = idp.rotate("ES256")
    kids = [k["kid"] for k in get_json(idp.jwks_uri)["keys"]]
    assert new in kids and old not in kids and idp.signing_kid == new
    assert header(idp.mint({}))["kid"] == new
    verify(idp, idp.mint({"aud": "d2o"}))
    with pytest.raises(REFUSED):
        verify(idp, idp.mint({"aud": "d2o"}, kid=old))  # the old key still signs, unpublished
    hidden = idp.add_key("RS256", publish=False)
    assert hidden not in [k["kid"] for k in get_json(idp.jwks_uri)["keys"]]
    mixed = idp.mint({}, kid=new, header={"kid": kids[0]})
    assert header(mixed)["kid"] == kids[0] and header(mixed)["alg"] == "ES256"
    with pytest.raises(REFUSED):
        verify(idp, mixed)
    token = idp.mint({"sub": "svc-1"})
    head, _, signature = token.split(".")
    tampered = ".".join([head, idp.mint({"sub": "admin"}).split(".")[1], signature])
    with pytest.raises(REFUSED):
        verify(idp, tampered)


def test_token_endpoint_client_credentials_with_basic_auth(idp):
    idp.register_client("job-1", "s3cret:with colon", {"aud": "d2o", "groups": ["partners"]}, expires_in=900)
    status, body = post_form(idp.token_endpoint, "grant_type=client_credentials&scope=d2o/read", ("job-1", "s3cret:with colon"))
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = verify(idp, body["access_token"])
    assert claims["sub"] == "job-1" and claims["azp"] == "job-1" and claims["aud"] == "d2o"
    assert claims["scope"] == "d2o/read" and claims["groups"] == ["partners"]
    assert claims["exp"] - claims["iat"] == 900

    assert post_form(idp.token_endpoint, "grant_type=client_credentials", ("job-1", "wrong"))[0] == 401
    assert post_form(idp.token_endpoint, "grant_type=client_credentials", ("nobody", "x"))[0] == 401
    assert post_form(idp.token_endpoint, "grant_type=client_credentials")[0] == 401
    status, body = post_form(idp.token_endpoint, "grant_type=password", ("job-1", "s3cret:with colon"))
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    assert idp.token_requests == 5


def test_the_connectors_oauth_client_asks_for_tokens_this_way(idp):
    """The official connector's own client (delta_sharing._internal_auth) gets a token."""
    from delta_sharing._internal_auth import ClientSecretOAuthClient

    idp.register_client("job-2", "pw", {"aud": "d2o"})
    client = ClientSecretOAuthClient(idp.token_endpoint, "job-2", "pw", scope="all")
    credentials = client.client_credentials()
    assert credentials.expires_in == 3600
    claims = verify(idp, credentials.access_token)
    assert (claims["sub"], claims["scope"]) == ("job-2", "all")


def test_outage_and_lying_discovery(idp):
    idp.unavailable = True
    with pytest.raises(urllib.error.HTTPError) as e:
        get_json(idp.jwks_uri)
    assert e.value.code == 503
    idp.unavailable = False
    idp.discovery_overrides = {"issuer": "https://elsewhere.example"}
    assert get_json(idp.issuer + "/.well-known/openid-configuration")["issuer"] == "https://elsewhere.example"
