//! Bearer-token authentication as an extractor.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use d2o_catalog::Principal;

use crate::audit::AuditSlot;
use crate::client_addr::ClientAddr;
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

impl FromRequestParts<AppState> for Recipient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = state.catalog.authenticate(bearer_token(parts)).await?;
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.update(|e| e.principal = principal.recipient.clone());
        }
        let client = parts.extensions.get::<ClientAddr>().and_then(|c| c.0);
        check_network(&principal, client)?;
        state.limits.check(&principal)?;
        Ok(Recipient(principal))
    }
}
