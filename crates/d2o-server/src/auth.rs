//! Bearer-token authentication as an extractor.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use d2o_catalog::Principal;

use crate::audit::AuditSlot;
use crate::{ApiError, AppState};

/// The authenticated caller of a protocol request.
#[derive(Debug, Clone)]
pub(crate) struct Recipient(pub(crate) Principal);

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
        Ok(Recipient(principal))
    }
}
