//! Who is calling: the recipient extractor, and the credentials it accepts.
//!
//! A protocol request carries `Authorization: Bearer <token>`, where the token is one of:
//! - an OAuth access token issued by d2o's token endpoint ([`oauth`], prefix `d2o_at_`): sealed
//!   by the server's key, naming the OAuth client it was issued to, which must still be live;
//! - a JWT from a recipient's own identity provider, matched to a federation policy;
//! - a bearer token (the catalog's, or the YAML config's).
//!
//! Every way in then passes the recipient's IP access list and rate limit.

pub(crate) mod oauth;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use d2o_catalog::Principal;

use crate::audit::AuditSlot;
use crate::client_addr::ClientAddr;
use crate::federation::Federation;
use crate::{ApiError, AppState};

/// The authenticated caller of a protocol request.
#[derive(Debug, Clone)]
pub(crate) struct Recipient(pub(crate) Principal);

/// Refuses a request from outside the recipient's IP access list (403, recorded by the audit
/// layer with the recipient's name).
pub(crate) fn check_network(who: &Principal, client: Option<std::net::IpAddr>) -> Result<(), ApiError> {
    if who.allows(client) {
        return Ok(());
    }
    let from = client.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
    Err(ApiError::Forbidden(format!(
        "requests from {from} are not allowed for this recipient; ask the provider to add your network to its IP access list"
    )))
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub(crate) fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The principal a bearer token stands for, whatever kind of token it is.
async fn authenticate(state: &AppState, token: Option<&str>) -> Result<Principal, ApiError> {
    if let Some(sealed) = token.and_then(|t| t.strip_prefix(oauth::ACCESS_TOKEN_PREFIX)) {
        let credential = oauth::open_access_token(&state.key, sealed)?;
        return Ok(state.catalog.authenticate_credential(&credential).await?);
    }
    if let Some(jwt) = token.filter(|t| Federation::looks_like_jwt(t)) {
        let policies = state.catalog.federation_policies().await?;
        // Without policies a JWT-shaped token can only be a bearer token (a YAML config's). With
        // them it may still be one: a reference server's token kept by `catalog import`.
        if !policies.is_empty() {
            if let Ok(principal) = state.catalog.authenticate(Some(jwt)).await {
                return Ok(principal);
            }
            let policy = state.federation.verify(jwt, &policies).await.map_err(|e| {
                if e.is_idp_failure() {
                    tracing::warn!(error = %e, "cannot check a federated token");
                }
                ApiError::Unauthenticated(format!("the federated token was refused: {e}"))
            })?;
            return Ok(state.catalog.authenticate_credential(&policy.id).await?);
        }
    }
    Ok(state.catalog.authenticate(token).await?)
}

/// Marks the request's audit event with the caller, then checks its network and rate limit.
pub(crate) fn admit(parts: &Parts, state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    if let Some(slot) = parts.extensions.get::<AuditSlot>() {
        slot.update(|e| e.principal = principal.recipient.clone());
    }
    let client = parts.extensions.get::<ClientAddr>().and_then(|c| c.0);
    check_network(principal, client)?;
    state.limits.check(principal)
}

impl FromRequestParts<AppState> for Recipient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = authenticate(state, bearer_token(parts)).await?;
        admit(parts, state, &principal)?;
        Ok(Recipient(principal))
    }
}
