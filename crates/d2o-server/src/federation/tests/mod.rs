//! `Federation::verify` against a real (local) identity provider.

mod idp;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use d2o_catalog::{FederationPolicy, SubjectClaim};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{Federation, FederationError, FederationOptions};
use idp::{TestIdp, keys, policy};

fn federation() -> Federation {
    federation_with(FederationOptions::default())
}

fn federation_with(options: FederationOptions) -> Federation {
    let options =
        FederationOptions { connect_timeout: Duration::from_secs(2), timeout: Duration::from_secs(5), ..options };
    Federation::with_options(options).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims that satisfy `TestIdp::policy(_, Sub, "svc-1")`, with `extra` merged in (a `null`
/// removes a claim).
fn claims(issuer: &str, extra: Value) -> Value {
    let mut claims = json!({"iss": issuer, "aud": "d2o", "sub": "svc-1", "iat": now(), "exp": now() + 300});
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// Verifies a token that must be refused, and checks that the error does not echo it.
async fn refused(federation: &Federation, token: &str, policies: &[FederationPolicy]) -> FederationError {
    let error = federation.verify(token, policies).await.unwrap_err();
    let message = error.to_string();
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!message.contains(part), "the message echoes the token: {message}");
    }
    error
}

#[test]
fn verification_can_run_in_an_extractor() {
    fn send_and_sync<T: Send + Sync>(_: &T) {}
    let federation = federation();
    send_and_sync(&federation);
    let future = federation.verify("", &[]);
    fn send<T: Send>(_: &T) {}
    send(&future);
}

#[tokio::test]
async fn rs256_and_es256_tokens_pass() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1, &k.ec1]).await;
    let federation = federation();
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    for key in [&k.rsa1, &k.ec1] {
        let token = key.sign(&claims(&idp.issuer, json!({})));
        assert!(Federation::looks_like_jwt(&token));
        assert_eq!(federation.verify(&token, &policies).await.unwrap().id, "p1");
        // Without a kid, any key of the header's algorithm may verify it.
        let token = key.sign_as(key.alg, None, &claims(&idp.issuer, json!({})));
        assert_eq!(federation.verify(&token, &policies).await.unwrap().id, "p1");
    }
}

#[tokio::test]
async fn keys_are_fetched_once_for_many_tokens() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1, &k.ec1]).await;
    let federation = federation();
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    for i in 0..40 {
        let key = if i % 2 == 0 { &k.rsa1 } else { &k.ec1 };
        let token = key.sign(&claims(&idp.issuer, json!({"jti": i})));
        federation.verify(&token, &policies).await.unwrap();
    }
    assert_eq!((idp.requests(), idp.jwks_requests()), (2, 1), "one discovery document, one JWKS");
}

#[tokio::test]
async fn issuers_without_a_policy_are_never_contacted() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1]).await;
    let federation = federation();
    let elsewhere = [policy("https://idp.example", "p1", SubjectClaim::Sub, "svc-1")];
    let token = k.rsa1.sign(&claims(&idp.issuer, json!({})));
    assert_eq!(refused(&federation, &token, &elsewhere).await, FederationError::UnknownIssuer);

    let mut revoked = idp.policy("p1", SubjectClaim::Sub, "svc-1");
    revoked.revoked_at = Some(now());
    assert_eq!(refused(&federation, &token, &[revoked]).await, FederationError::UnknownIssuer);

    // Issuers are compared exactly: a trailing slash, or an attacker's own address.
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    for iss in [format!("{}/", idp.issuer), "http://127.0.0.1:1".to_owned(), "http://169.254.169.254".to_owned()] {
        let token = k.rsa1.sign(&claims(&iss, json!({})));
        let error = refused(&federation, &token, &policies).await;
        assert_eq!(error.to_string(), "the token's issuer has no federation policy here");
    }
    assert_eq!(idp.requests(), 0, "nothing may be fetched for an issuer without a policy");
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1]).await;
    idp.claim_issuer("https://idp.example");
    let federation = federation();
    let token = k.rsa1.sign(&claims(&idp.issuer, json!({})));
    let error = refused(&federation, &token, &[idp.policy("p1", SubjectClaim::Sub, "svc-1")]).await;
    assert!(error.is_idp_failure(), "{error}");
    assert!(error.to_string().contains("is for issuer 'https://idp.example'"), "{error}");
    assert_eq!(idp.jwks_requests(), 0);
}

#[tokio::test]
async fn audience_and_subject_are_the_policy_s() {
    let k = keys();
    let idp = TestIdp::start(&[&k.ec1]).await;
    let federation = federation();
    let by_sub = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    let wrong_aud = k.ec1.sign(&claims(&idp.issuer, json!({"aud": ["other", "api://x"]})));
    let error = refused(&federation, &wrong_aud, &by_sub).await;
    assert_eq!(error.to_string(), "the token's audience is not allowed");
    let no_aud = k.ec1.sign(&claims(&idp.issuer, json!({"aud": null})));
    assert_eq!(refused(&federation, &no_aud, &by_sub).await, FederationError::Audience);
    let wrong_sub = k.ec1.sign(&claims(&idp.issuer, json!({"sub": "svc-2"})));
    let error = refused(&federation, &wrong_sub, &by_sub).await;
    assert_eq!(error.to_string(), "the token's sub claim does not match");

    let by_group = [idp.policy("g1", SubjectClaim::Groups, "partners")];
    let member = k.ec1.sign(&claims(&idp.issuer, json!({"groups": ["staff", "partners"]})));
    assert_eq!(federation.verify(&member, &by_group).await.unwrap().id, "g1");
    let outsider = k.ec1.sign(&claims(&idp.issuer, json!({"groups": ["staff"]})));
    assert_eq!(refused(&federation, &outsider, &by_group).await, FederationError::Subject(SubjectClaim::Groups));
}

#[tokio::test]
async fn the_first_matching_policy_of_the_issuer_wins() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1]).await;
    let federation = federation();
    let mut other_audience = idp.policy("p1", SubjectClaim::Sub, "svc-1");
    other_audience.audiences = vec!["other".to_owned()];
    let mut revoked = idp.policy("p2", SubjectClaim::Sub, "svc-1");
    revoked.revoked_at = Some(now());
    let policies = [
        policy("https://idp.example", "p0", SubjectClaim::Sub, "svc-1"),
        other_audience,
        revoked,
        idp.policy("p3", SubjectClaim::Azp, "wrong"),
        idp.policy("p4", SubjectClaim::Groups, "partners"),
        idp.policy("p5", SubjectClaim::Sub, "svc-1"),
    ];
    let token = k.rsa1.sign(&claims(&idp.issuer, json!({"groups": ["partners"]})));
    assert_eq!(federation.verify(&token, &policies).await.unwrap().id, "p4");
    let token = k.rsa1.sign(&claims(&idp.issuer, json!({})));
    assert_eq!(federation.verify(&token, &policies).await.unwrap().id, "p5");
    // Some policy allowed the audience, so the subject is what is wrong.
    let token = k.rsa1.sign(&claims(&idp.issuer, json!({"sub": "svc-9"})));
    assert_eq!(refused(&federation, &token, &policies).await, FederationError::Subject(SubjectClaim::Azp));
}

#[tokio::test]
async fn expiry_and_not_before_are_checked_with_a_minute_of_leeway() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1]).await;
    let federation = federation();
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    let cases = [
        (json!({"exp": now() - 120}), Err(FederationError::Expired)),
        (json!({"exp": now() - 20}), Ok(())),
        (json!({"nbf": now() + 600}), Err(FederationError::NotYetValid)),
        (json!({"nbf": now() + 20}), Ok(())),
        (json!({"exp": null}), Err(FederationError::MissingClaim("exp".to_owned()))),
        (json!({"exp": "tomorrow"}), Err(FederationError::MissingClaim("exp".to_owned()))),
        (json!({"nbf": "now"}), Err(FederationError::MalformedClaim("nbf".to_owned()))),
    ];
    for (extra, expected) in cases {
        let token = k.rsa1.sign(&claims(&idp.issuer, extra.clone()));
        let result = federation.verify(&token, &policies).await.map(|_| ());
        assert_eq!(result, expected, "{extra}");
    }
    let expired = k.rsa1.sign(&claims(&idp.issuer, json!({"exp": now() - 120})));
    assert_eq!(refused(&federation, &expired, &policies).await.to_string(), "the token has expired");
}

#[tokio::test]
async fn forged_algorithms_and_signatures_are_refused() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1, &k.ec1]).await;
    let federation = federation();
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    let payload = URL_SAFE_NO_PAD.encode(claims(&idp.issuer, json!({})).to_string());

    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
    assert!(Federation::looks_like_jwt(&none));
    let error = refused(&federation, &none, &policies).await;
    assert_eq!(error.to_string(), "algorithm none is not accepted; use RS256 or ES256");

    // The classic confusion: HS256 with the RSA public key (as JWK, as modulus) as the secret.
    let modulus = URL_SAFE_NO_PAD.decode(k.rsa1.jwk["n"].as_str().unwrap()).unwrap();
    for secret in [k.rsa1.jwk.to_string().into_bytes(), modulus] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(k.rsa1.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims(&idp.issuer, json!({})), &EncodingKey::from_secret(&secret)).unwrap();
        let error = refused(&federation, &token, &policies).await;
        assert_eq!(error.to_string(), "algorithm HS256 is not accepted; use RS256 or ES256");
    }
    assert_eq!(idp.requests(), 0, "refused algorithms are refused before any fetch");

    // An EC signature under the RSA key's kid: the header's alg must fit the key.
    let mixed = k.ec1.sign_as(Algorithm::ES256, Some(&k.rsa1.kid), &claims(&idp.issuer, json!({})));
    let error = refused(&federation, &mixed, &policies).await;
    assert_eq!(error, FederationError::KeyAlgorithm { alg: "ES256", key_alg: "RS256" });

    // Signed by an unpublished key under a published kid.
    let impostor = k.rsa2.sign_as(Algorithm::RS256, Some(&k.rsa1.kid), &claims(&idp.issuer, json!({})));
    assert_eq!(refused(&federation, &impostor, &policies).await, FederationError::Signature);

    // A genuine token whose payload was changed.
    let genuine = k.rsa1.sign(&claims(&idp.issuer, json!({"sub": "svc-2"})));
    let [header, _, signature] = genuine.split('.').collect::<Vec<_>>()[..] else { unreachable!() };
    let tampered = format!("{header}.{payload}.{signature}");
    assert_eq!(refused(&federation, &tampered, &policies).await, FederationError::Signature);
    assert_eq!(idp.jwks_requests(), 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_a_second() {
    let k = keys();
    let idp = TestIdp::start(&[&k.rsa1]).await;
    let federation = federation();
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    let old = k.rsa1.sign(&claims(&idp.issuer, json!({})));
    let new = k.rsa2.sign(&claims(&idp.issuer, json!({})));
    federation.verify(&old, &policies).await.unwrap();
    assert_eq!(idp.jwks_requests(), 1);

    // A flood of made-up kids right after a fetch fetches nothing.
    for i in 0..30 {
        let bogus = k.rsa1.sign_as(Algorithm::RS256, Some(&format!("bogus-{i}")), &claims(&idp.issuer, json!({})));
        let error = refused(&federation, &bogus, &policies).await;
        assert_eq!(error.to_string(), "the token was signed with an unknown key");
    }
    assert_eq!(idp.jwks_requests(), 1);

    // The provider rotates: the new key appears, the old one goes. Once a second has passed,
    // the new key's first token fetches the set again, once for all concurrent requests.
    idp.publish(&[&k.rsa2]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let results = futures::future::join_all((0..20).map(|_| federation.verify(&new, &policies))).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|p| p.id == "p1")), "{results:?}");
    assert_eq!(idp.jwks_requests(), 2);
    assert_eq!(idp.requests(), 3, "the discovery document is not fetched again for a new kid");

    // The old key is gone; asking again within the second changes nothing.
    assert_eq!(refused(&federation, &old, &policies).await, FederationError::UnknownKey);
    assert_eq!(idp.jwks_requests(), 2);
}

#[tokio::test]
async fn stale_keys_are_refreshed_and_kept_while_the_provider_is_down() {
    let k = keys();
    let idp = TestIdp::start(&[&k.ec1]).await;
    let options = FederationOptions {
        max_key_age: Duration::from_millis(200),
        min_refetch_interval: Duration::ZERO,
        ..FederationOptions::default()
    };
    let federation = federation_with(options);
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    let token = k.ec1.sign(&claims(&idp.issuer, json!({})));
    federation.verify(&token, &policies).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    federation.verify(&token, &policies).await.unwrap();
    assert_eq!((idp.requests(), idp.jwks_requests()), (4, 2), "discovery and JWKS again, once stale");

    idp.fail();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(federation.verify(&token, &policies).await.unwrap().id, "p1");
    // A key it never saw cannot be fetched now: that is the provider's failure.
    let unknown = k.rsa1.sign(&claims(&idp.issuer, json!({})));
    assert!(refused(&federation, &unknown, &policies).await.is_idp_failure());
}

#[tokio::test]
async fn unreachable_or_misbehaving_providers_are_idp_failures() {
    let k = keys();
    let federation = federation_with(FederationOptions { max_body_bytes: 4096, ..FederationOptions::default() });

    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    // Plain http elsewhere than loopback is never fetched (policies are checked when written;
    // this checks again).
    for issuer in [closed, "http://idp.example".to_owned()] {
        let token = k.rsa1.sign(&claims(&issuer, json!({})));
        let error = refused(&federation, &token, &[policy(&issuer, "p1", SubjectClaim::Sub, "svc-1")]).await;
        assert!(error.is_idp_failure(), "{error}");
        assert!(error.to_string().starts_with("the identity provider's keys could not be fetched: "), "{error}");
    }

    let idp = TestIdp::start(&[&k.rsa1]).await;
    let policies = [idp.policy("p1", SubjectClaim::Sub, "svc-1")];
    idp.publish_raw(json!({"keys": [k.rsa1.jwk], "padding": "x".repeat(8192)}));
    let token = k.rsa1.sign(&claims(&idp.issuer, json!({})));
    let error = refused(&federation, &token, &policies).await;
    assert!(error.is_idp_failure() && error.to_string().contains("more than 4096 bytes"), "{error}");
    assert!(!FederationError::Expired.is_idp_failure());
}
