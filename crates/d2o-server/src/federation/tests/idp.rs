//! A tiny identity provider for the tests: a discovery document and a JWKS served on
//! 127.0.0.1, keys generated once per test binary, and counters of the requests it got.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use aws_lc_rs::encoding::AsDer;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use d2o_catalog::{FederationPolicy, SubjectClaim};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key and its public JWK.
pub(super) struct TestKey {
    pub(super) kid: String,
    pub(super) alg: Algorithm,
    pub(super) encoding: EncodingKey,
    pub(super) jwk: Value,
}

/// The keys of the tests: generating RSA keys is slow, so once.
pub(super) struct Keys {
    pub(super) rsa1: TestKey,
    pub(super) rsa2: TestKey,
    pub(super) ec1: TestKey,
}

pub(super) fn keys() -> &'static Keys {
    static KEYS: LazyLock<Keys> =
        LazyLock::new(|| Keys { rsa1: TestKey::rsa("rsa-1"), rsa2: TestKey::rsa("rsa-2"), ec1: TestKey::ec("ec-1") });
    &KEYS
}

impl TestKey {
    fn rsa(kid: &str) -> TestKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        TestKey::new(kid, Algorithm::RS256, EncodingKey::from_rsa_der(pkcs1_from_pkcs8(pkcs8.as_ref())))
    }

    fn ec(kid: &str) -> TestKey {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(alg).unwrap();
        TestKey::new(kid, Algorithm::ES256, EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()))
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        let mut jwk = serde_json::to_value(jwk).unwrap();
        jwk["use"] = json!("sig");
        TestKey { kid: kid.to_owned(), alg, encoding, jwk }
    }

    /// A token with these claims, signed by this key, naming it by `kid`.
    pub(super) fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    /// A token signed by this key whose header says `alg` and `kid`.
    pub(super) fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 document: aws-lc-rs exports PKCS#8, and
/// jsonwebtoken's RSA signer reads PKCS#1. PKCS#8 is
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }`.
fn pkcs1_from_pkcs8(der: &[u8]) -> &[u8] {
    /// One DER element: its tag, its content, and what follows it.
    fn element(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, start) = match input[1] {
            short if short < 0x80 => (usize::from(short), 2),
            long => {
                let n = usize::from(long & 0x7f);
                (input[2..2 + n].iter().fold(0, |len, b| len << 8 | usize::from(*b)), 2 + n)
            }
        };
        (input[0], &input[start..start + len], &input[start + len..])
    }
    let (_, info, _) = element(der);
    let (_, _, rest) = element(info);
    let (_, _, rest) = element(rest);
    let (tag, key, _) = element(rest);
    assert_eq!(tag, 0x04, "an OCTET STRING");
    key
}

/// An identity provider on `127.0.0.1:0`; stops when dropped.
pub(super) struct TestIdp {
    /// `http://127.0.0.1:PORT`, as in its tokens and its discovery document.
    pub(super) issuer: String,
    state: Arc<IdpState>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct IdpState {
    issuer: String,
    /// What the discovery document says the issuer is, when a test makes it lie.
    claimed_issuer: parking_lot::Mutex<Option<String>>,
    jwks: parking_lot::Mutex<Value>,
    /// Answer every request with 503.
    failing: AtomicBool,
    requests: AtomicUsize,
    jwks_requests: AtomicUsize,
}

impl TestIdp {
    /// Starts a provider publishing `keys`.
    pub(super) async fn start(keys: &[&TestKey]) -> TestIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState { issuer: issuer.clone(), ..IdpState::default() });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .fallback(not_found)
            .with_state(state.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let idp = TestIdp { issuer, state, server };
        idp.publish(keys);
        idp
    }

    /// Replaces the published keys (a key rotation).
    pub(super) fn publish(&self, keys: &[&TestKey]) {
        *self.state.jwks.lock() = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    /// Publishes any JWKS document.
    pub(super) fn publish_raw(&self, jwks: Value) {
        *self.state.jwks.lock() = jwks;
    }

    /// Makes the discovery document name another issuer.
    pub(super) fn claim_issuer(&self, issuer: &str) {
        *self.state.claimed_issuer.lock() = Some(issuer.to_owned());
    }

    /// Every request received, on any path.
    pub(super) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub(super) fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    /// A policy for this provider: audience `d2o`, and `claim` equal to (or for groups,
    /// containing) `subject`.
    pub(super) fn policy(&self, id: &str, claim: SubjectClaim, subject: &str) -> FederationPolicy {
        policy(&self.issuer, id, claim, subject)
    }

    /// Makes the provider answer 503 to everything (an outage; stopping the server would not
    /// close the connections the client keeps alive).
    pub(super) fn fail(&self) {
        self.state.failing.store(true, Ordering::SeqCst);
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(super) fn policy(issuer: &str, id: &str, claim: SubjectClaim, subject: &str) -> FederationPolicy {
    FederationPolicy {
        id: id.to_owned(),
        recipient_id: format!("recipient-{id}"),
        issuer: issuer.to_owned(),
        audiences: vec!["d2o".to_owned()],
        subject_claim: claim,
        subject: subject.to_owned(),
        created_at: 0,
        revoked_at: None,
    }
}

/// Counts a request; refuses it during an outage.
fn received(state: &IdpState) -> Result<(), StatusCode> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) { Err(StatusCode::SERVICE_UNAVAILABLE) } else { Ok(()) }
}

async fn discovery(State(state): State<Arc<IdpState>>) -> Result<axum::Json<Value>, StatusCode> {
    received(&state)?;
    let issuer = state.claimed_issuer.lock().clone().unwrap_or_else(|| state.issuer.clone());
    Ok(axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", state.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    })))
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Result<axum::Json<Value>, StatusCode> {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    received(&state)?;
    Ok(axum::Json(state.jwks.lock().clone()))
}

async fn not_found(State(state): State<Arc<IdpState>>) -> StatusCode {
    state.requests.fetch_add(1, Ordering::SeqCst);
    StatusCode::NOT_FOUND
}
