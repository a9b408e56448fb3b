//! `GET .../version` and the deprecated `HEAD .../tables/{t}`: the table's version, or the
//! first version at or after `startingTimestamp`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use d2o_delta::TimestampBound;

use super::{TABLE_VERSION_HEADER, TablePath, blocking, history_required, timestamp_param};
use crate::audit::AuditSlot;
use crate::auth::Recipient;
use crate::openapi::{Errors, TablePath as TablePathParams};
use crate::routes::params::Params;
use crate::{ApiError, AppState, policy};

#[utoipa::path(
    get,
    path = "/shares/{share}/schemas/{schema}/tables/{table}/version",
    tag = "table",
    operation_id = "getTableVersion",
    summary = "The table's current version, or the first at or after a timestamp",
    params(
        TablePathParams,
        ("startingTimestamp" = Option<String>, Query, description = "An ISO 8601 timestamp (needs the table's history shared)"),
    ),
    responses((status = 200, description = "The version, in the `delta-table-version` header; no body", headers(("delta-table-version" = i64, description = "The table version the answer is about"))), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn version(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(path): TablePath,
    params: Params,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let t = policy::decide(&state, &who, &path).await?.table;
    let starting = params.get("startingTimestamp").map(|v| timestamp_param("startingTimestamp", v)).transpose()?;
    if starting.is_some() {
        history_required(&t)?;
    }
    let version = blocking(move || {
        let latest = state.tables.latest(&t.location)?;
        match starting {
            None => Ok(latest.version()),
            Some(ts) => {
                let v = state.tables.version_at(&latest, ts, TimestampBound::AtOrAfter)?;
                Ok(v.max(t.start_version))
            }
        }
    })
    .await?;
    audit.update(|e| e.version = Some(version as i64));
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(TABLE_VERSION_HEADER, HeaderValue::from(version));
    Ok(response)
}

/// `HEAD .../tables/{table}`: the deprecated form of [`version`].
#[utoipa::path(
    head,
    path = "/shares/{share}/schemas/{schema}/tables/{table}",
    tag = "table",
    operation_id = "headTableVersion",
    summary = "The table's current version (deprecated form of `GET .../version`)",
    params(TablePathParams),
    responses((status = 200, description = "The version, in the `delta-table-version` header", headers(("delta-table-version" = i64, description = "The table version the answer is about"))), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn version_head(
    state: State<AppState>,
    who: Recipient,
    path: TablePath,
    params: Params,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    version(state, who, path, params, audit).await
}
