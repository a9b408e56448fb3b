//! The admin REST API: the same operations as the `d2o` admin commands, under `/admin/v1`,
//! guarded by an admin token that is separate from recipient tokens.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use d2o_catalog::{Admin, AuditFilter, NewRecipient, RecipientInfo, ShareInfo, TableEntry};
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::audit::{AuditSlot, audited};
use crate::routes::params::Params;
use crate::{ApiError, AppState};

/// The admin routes (nested under `/admin/v1` by the router), each with its audit action.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let a = |action, route| audited(state, action, route);
    Router::new()
        .route("/shares", a("admin.share.list", get(list_shares)).merge(a("admin.share.create", post(create_share))))
        .route(
            "/shares/{share}",
            a("admin.share.show", get(show_share))
                .merge(a("admin.share.comment", patch(comment_share)))
                .merge(a("admin.share.drop", delete(drop_share))),
        )
        .route("/shares/{share}/tables", a("admin.share.add_table", post(add_table)))
        .route("/shares/{share}/tables/{schema}/{table}", a("admin.share.remove_table", delete(remove_table)))
        .route(
            "/shares/{share}/recipients/{recipient}",
            a("admin.grant", put(grant)).merge(a("admin.revoke_grant", delete(revoke_grant))),
        )
        .route(
            "/recipients",
            a("admin.recipient.list", get(list_recipients)).merge(a("admin.recipient.create", post(create_recipient))),
        )
        .route(
            "/recipients/{recipient}",
            a("admin.recipient.show", get(show_recipient)).merge(a("admin.recipient.drop", delete(drop_recipient))),
        )
        .route("/recipients/{recipient}/rotate", a("admin.recipient.rotate", post(rotate)))
        .route("/recipients/{recipient}/revoke", a("admin.recipient.revoke", post(revoke)))
        .route("/audit", a("admin.audit", get(audit)))
}

/// The admin, once the admin token checked out.
pub(crate) struct AdminCaller(Arc<dyn Admin>);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (Some(admin), Some(expected)) = (&state.admin, &state.settings.admin_token) else {
            return Err(ApiError::NotFound(
                "the admin API is not enabled (serve from a catalog with an admin token)".to_owned(),
            ));
        };
        let given = crate::auth::bearer_token(parts).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Err(ApiError::Unauthenticated("a valid admin token is required".to_owned()));
        }
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.update(|e| e.principal = "admin".to_owned());
        }
        Ok(AdminCaller(admin.clone()))
    }
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| ApiError::Malformed(format!("a JSON body is required: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::Malformed(format!("invalid request body: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateShare {
    name: String,
    #[serde(default)]
    comment: Option<String>,
}

async fn list_shares(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<ShareInfo>>, ApiError> {
    Ok(Json(admin.list_shares().await?))
}

async fn create_share(AdminCaller(admin): AdminCaller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: CreateShare = json_body(&body)?;
    let share = admin.create_share(&req.name, req.comment.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(share)).into_response())
}

async fn show_share(AdminCaller(admin): AdminCaller, Path(share): Path<String>) -> Result<Json<ShareInfo>, ApiError> {
    Ok(Json(admin.show_share(&share).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Comment {
    comment: Option<String>,
}

async fn comment_share(
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ShareInfo>, ApiError> {
    let req: Comment = json_body(&body)?;
    Ok(Json(admin.comment_share(&share, req.comment.as_deref()).await?))
}

async fn drop_share(AdminCaller(admin): AdminCaller, Path(share): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_share(&share).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_table(
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ShareInfo>, ApiError> {
    let table: TableEntry = json_body(&body)?;
    Ok(Json(admin.add_table(&share, table).await?))
}

async fn remove_table(
    AdminCaller(admin): AdminCaller,
    State(state): State<AppState>,
    Path((share, schema, table)): Path<(String, String, String)>,
) -> Result<Json<ShareInfo>, ApiError> {
    let before = admin.show_share(&share).await?;
    let info = admin.remove_table(&share, &schema, &table).await?;
    // Forget cached state of a table no longer shared from this location.
    for t in
        before.tables.iter().filter(|t| t.schema.eq_ignore_ascii_case(&schema) && t.name.eq_ignore_ascii_case(&table))
    {
        if let Ok(url) = url::Url::parse(&t.location) {
            state.tables.forget(&url);
        }
    }
    Ok(Json(info))
}

async fn grant(
    AdminCaller(admin): AdminCaller,
    Path((share, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.grant(&share, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_grant(
    AdminCaller(admin): AdminCaller,
    Path((share, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.revoke_grant(&share, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_recipients(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<RecipientInfo>>, ApiError> {
    Ok(Json(admin.list_recipients().await?))
}

async fn create_recipient(AdminCaller(admin): AdminCaller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: NewRecipient = json_body(&body)?;
    let (recipient, token) = admin.create_recipient(req).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"recipient": recipient, "token": token}))).into_response())
}

async fn show_recipient(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.show_recipient(&name).await?))
}

async fn drop_recipient(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_recipient(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    grace_seconds: u64,
}

async fn rotate(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<d2o_catalog::IssuedToken>, ApiError> {
    let req: Rotate = json_body(&body)?;
    Ok(Json(admin.rotate_token(&name, req.grace_seconds).await?))
}

async fn revoke(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.revoke_recipient(&name).await?))
}

async fn audit(
    AdminCaller(admin): AdminCaller,
    params: Params,
) -> Result<Json<Vec<d2o_catalog::AuditEvent>>, ApiError> {
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                d2o_protocol::timestamp::parse_timestamp_millis(v)
                    .or_else(|_| v.parse::<i64>().map_err(|_| format!("'{v}' is neither a timestamp nor milliseconds")))
                    .map_err(|e| ApiError::InvalidParameter(format!("invalid '{name}': {e}")))
            })
            .transpose()
    };
    let filter = AuditFilter {
        principal: params.get("recipient").map(str::to_owned),
        share: params.get("share").map(str::to_owned),
        table: params.get("table").map(str::to_owned),
        action: params.get("action").map(str::to_owned),
        since_ms: time("since")?,
        until_ms: time("until")?,
        limit: params.i64("limit")?.map(|l| l.clamp(1, 100_000) as u32),
    };
    Ok(Json(admin.audit(&filter).await?))
}
