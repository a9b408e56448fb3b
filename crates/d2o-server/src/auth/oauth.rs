//! OAuth 2.0 client credentials (RFC 6749 §4.4) on d2o itself: `POST {endpoint}/oauth/token`.
//!
//! A recipient with an OAuth client credential exchanges its client id and secret, or a JWT
//! signed by its own private key (RFC 7523 §2.1, `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`:
//! the connector's `oauth_jwt_bearer_private_key_jwt` profile), for an access token that lives [`crate::Settings::access_token_ttl_secs`] (an hour by default).
//! The official connector's `oauth_client_credentials` profile does this by itself and renews
//! the token before it expires.
//!
//! Access tokens are sealed by the server's signing key (so every replica with the same key
//! accepts them) and name only the client they were issued to. Each use checks that client in
//! the catalog: revoking the recipient, or rotating its credential past its grace, rejects
//! outstanding access tokens at once.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use d2o_catalog::{CatalogError, Principal};
use serde::{Deserialize, Serialize};

use crate::openapi::Errors;
use crate::signing::SigningKey;
use crate::{ApiError, AppState};

/// What every access token starts with, so that it is told apart from bearer tokens and JWTs.
pub(crate) const ACCESS_TOKEN_PREFIX: &str = "d2o_at_";
const PURPOSE: &str = "oauth-access-token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest an assertion may be valid (from now to its `exp`).
const MAX_ASSERTION_SECS: i64 = 600;
/// The most assertions remembered against replay; beyond it new ones are refused until old
/// ones expire.
const MAX_REMEMBERED_ASSERTIONS: usize = 100_000;

/// The `(client, jti)` of assertions already redeemed, until they expire: an assertion works
/// once (per server process).
#[derive(Debug, Default)]
pub(crate) struct SeenAssertions(parking_lot::Mutex<std::collections::HashMap<(String, String), i64>>);

impl SeenAssertions {
    /// Records the assertion `jti` of `client`, valid until `exp` (seconds); false if it was
    /// seen before, or if too many live assertions are remembered.
    fn first_use(&self, client: &str, jti: &str, exp: i64) -> bool {
        let now = now_ms() / 1000;
        let mut seen = self.0.lock();
        if seen.len() >= MAX_REMEMBERED_ASSERTIONS / 2 {
            seen.retain(|_, e| *e + 60 >= now);
        }
        if seen.len() >= MAX_REMEMBERED_ASSERTIONS {
            return false;
        }
        seen.insert((client.to_owned(), jti.to_owned()), exp).is_none()
    }
}

/// The sealed content of an access token.
#[derive(Debug, Serialize, Deserialize)]
struct AccessToken {
    /// The OAuth client (credential) id.
    c: String,
    /// Expiry, ms since the epoch.
    x: i64,
}

/// Issues an access token for the OAuth client `client_id`, valid for `ttl_secs`.
pub(crate) fn issue_access_token(key: &SigningKey, client_id: &str, ttl_secs: u64) -> String {
    let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let sealed = AccessToken { c: client_id.to_owned(), x: now_ms().saturating_add(ttl_ms) };
    format!("{ACCESS_TOKEN_PREFIX}{}", key.seal(PURPOSE, &sealed))
}

/// The client id of an access token (without its prefix) that this server sealed and that
/// has not expired.
pub(crate) fn open_access_token(key: &SigningKey, sealed: &str) -> Result<String, ApiError> {
    let token: AccessToken =
        key.open(PURPOSE, sealed).ok_or_else(|| ApiError::Unauthenticated("the access token is not valid".into()))?;
    if token.x <= now_ms() {
        return Err(ApiError::Unauthenticated(
            "the access token has expired; get a new one from the token endpoint".into(),
        ));
    }
    Ok(token.c)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn refused(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
    ApiError::OAuth { status, error, description: description.into() }
}

/// The form parameters of a token request. A parameter sent twice is refused (RFC 6749 §3.2).
fn form(body: &[u8]) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut params = std::collections::BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if params.insert(name.to_string(), value.to_string()).is_some() {
            return Err(refused(StatusCode::BAD_REQUEST, "invalid_request", format!("parameter '{name}' is repeated")));
        }
    }
    Ok(params)
}

/// The client id and secret of HTTP Basic authentication, each form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(parts: &Parts) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || {
        refused(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the Authorization header is not valid Basic authentication",
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("v={s}").as_bytes()).map(|(_, v)| v.into_owned()).next();
    Ok(Some((decode(id).unwrap_or_default(), decode(secret).unwrap_or_default())))
}

#[derive(Serialize, utoipa::ToSchema)]
struct TokenResponse {
    access_token: String,
    /// `Bearer`.
    #[schema(value_type = String)]
    token_type: &'static str,
    expires_in: u64,
}

/// `POST {endpoint}/oauth/token`: `grant_type=client_credentials`, the client authenticated
/// by HTTP Basic or by `client_id` and `client_secret` in the form (not both); or
/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an `assertion` signed by a
/// private-key client.
// The path is `d2o_catalog::credential::TOKEN_ENDPOINT_PATH` (profiles name it); the
// OpenAPI tests check that the router serves it there.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "recipient",
    operation_id = "oauthToken",
    summary = "The OAuth 2.0 token endpoint of recipients' OAuth clients",
    request_body(
        content = String,
        content_type = "application/x-www-form-urlencoded",
        description = "`grant_type=client_credentials` (the client by HTTP Basic, or `client_id` and `client_secret`), \
                       or `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>` of a private-key client"
    ),
    responses(
        (status = 200, description = "An access token for the protocol's bearer authentication", body = TokenResponse),
        (status = 400, description = "An OAuth error (`invalid_request`, `unsupported_grant_type`, ...)", body = Object),
        (status = 401, description = "`invalid_client`", body = Object),
        Errors
    ),
    security((), ("oauthClient" = []))
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut params = form(&body)?;
    let (client_id, principal) = match params.get("grant_type").map(String::as_str) {
        Some("client_credentials") => by_secret(&state, &parts, &mut params).await?,
        Some(JWT_BEARER) => by_assertion(&state, &parts, &params).await?,
        Some(other) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant type '{other}' is not supported; use client_credentials or {JWT_BEARER}"),
            ));
        }
        None => return Err(refused(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required")),
    };
    super::admit(&parts, &state, &principal)?;
    let ttl = state.settings.access_token_ttl_secs;
    let body = TokenResponse {
        access_token: issue_access_token(&state.key, &client_id, ttl),
        token_type: "Bearer",
        expires_in: ttl,
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The catalog's refusal of a client as `invalid_client`.
fn client_refused(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Unauthenticated(m) => refused(StatusCode::UNAUTHORIZED, "invalid_client", m),
        e => e.into(),
    }
}

/// A client id and secret, by HTTP Basic or in the form.
async fn by_secret(
    state: &AppState,
    parts: &Parts,
    params: &mut std::collections::BTreeMap<String, String>,
) -> Result<(String, Principal), ApiError> {
    let in_form = (params.remove("client_id"), params.remove("client_secret"));
    let (client_id, secret) = match (basic_credentials(parts)?, in_form) {
        (Some(basic), (None, None)) => basic,
        (None, (Some(id), Some(secret))) => (id, secret),
        (Some(_), _) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "authenticate the client one way: HTTP Basic or form parameters",
            ));
        }
        (None, _) => {
            return Err(refused(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required"));
        }
    };
    let principal = state.catalog.authenticate_client(&client_id, &secret).await.map_err(client_refused)?;
    Ok((client_id, principal))
}

/// A JWT the client signed with its private key (RFC 7523 §3): `iss` (and `sub`, if present)
/// is the client id, `aud` this token endpoint's URL, `exp` at most 10 minutes away, and a
/// `jti` not seen before.
async fn by_assertion(
    state: &AppState,
    parts: &Parts,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<(String, Principal), ApiError> {
    let invalid = |m: String| refused(StatusCode::BAD_REQUEST, "invalid_grant", m);
    let assertion = params.get("assertion").ok_or_else(|| {
        refused(StatusCode::BAD_REQUEST, "invalid_request", "the jwt-bearer grant needs an assertion")
    })?;
    // The client id is the assertion's issuer; its key is then the only one it is checked with.
    let client_id = crate::federation::unverified_issuer(assertion)
        .map_err(|e| invalid(format!("the assertion was refused: {e}")))?;
    let (principal, key) = state.catalog.client_key(&client_id).await.map_err(client_refused)?;
    let claims = crate::federation::verify_with_public_key(assertion, &key, &client_id)
        .map_err(|e| invalid(format!("the assertion was refused: {e}")))?;
    let audience = format!(
        "{}{}",
        crate::routes::public_endpoint(state, &parts.headers)?,
        d2o_catalog::credential::TOKEN_ENDPOINT_PATH
    );
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.as_str()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&audience.as_str()) {
        return Err(invalid(format!("the assertion's aud must be this token endpoint, {audience}")));
    }
    if claims.get("sub").is_some_and(|s| s.as_str() != Some(client_id.as_str())) {
        return Err(invalid("the assertion's sub must be the client id".into()));
    }
    let exp = claims.get("exp").and_then(serde_json::Value::as_i64).unwrap_or(i64::MAX);
    if exp - now_ms() / 1000 > MAX_ASSERTION_SECS {
        return Err(invalid(format!("an assertion may be valid for at most {MAX_ASSERTION_SECS} seconds")));
    }
    let jti = claims.get("jti").and_then(serde_json::Value::as_str).filter(|j| !j.is_empty() && j.len() <= 256);
    let jti = jti.ok_or_else(|| invalid("the assertion needs a jti".into()))?;
    if !state.assertions.first_use(&client_id, jti, exp) {
        return Err(invalid("this assertion was used before; sign a new one for each request".into()));
    }
    Ok((client_id, principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_are_sealed_and_expire() {
        let key = SigningKey::random().expect("key");
        let token = issue_access_token(&key, "client-1", 60);
        let sealed = token.strip_prefix(ACCESS_TOKEN_PREFIX).expect("prefix");
        assert_eq!(open_access_token(&key, sealed).ok().as_deref(), Some("client-1"));
        let other = SigningKey::random().expect("key");
        assert!(open_access_token(&other, sealed).is_err(), "another server's key");
        let expired = issue_access_token(&key, "client-1", 0);
        let message = open_access_token(&key, expired.strip_prefix(ACCESS_TOKEN_PREFIX).expect("prefix"))
            .expect_err("expired")
            .to_string();
        assert!(message.contains("expired"), "{message}");
        // A page token sealed by the same key is not an access token.
        let page = key.seal("query-page", &serde_json::json!({"c": "client-1", "x": i64::MAX}));
        assert!(open_access_token(&key, &page).is_err());
    }

    #[test]
    fn an_assertion_works_once() {
        let seen = SeenAssertions::default();
        let exp = now_ms() / 1000 + 60;
        assert!(seen.first_use("c1", "j1", exp));
        assert!(!seen.first_use("c1", "j1", exp), "a replay");
        assert!(seen.first_use("c2", "j1", exp), "another client's jti is its own");
    }

    #[test]
    fn form_parameters_may_not_repeat() {
        assert!(form(b"grant_type=client_credentials&scope=a").is_ok());
        assert!(form(b"grant_type=client_credentials&grant_type=password").is_err());
    }
}
