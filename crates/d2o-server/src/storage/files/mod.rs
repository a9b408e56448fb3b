//! The `/files` route: table files at the server's own signed URLs, with `Range` support,
//! from the server's disk or (for a storage location with `urlMode: proxy`) streamed from the
//! table's object store.
//!
//! A URL is checked twice: its signature and expiry (nothing in it was changed), then the
//! grant it names against the catalog as it stands now (the recipient still exists, still has
//! a live credential and still has the table's share), so that revoking a recipient or a grant
//! stops downloads at once, not when the URLs expire. The path must stay inside the table.

mod disk;
mod object;
mod range;

use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use d2o_delta::StoreOpener as _;

#[cfg(test)]
pub(crate) use self::range::parse_range;
use super::local::{FileGrant, check_url};
use crate::audit::AuditSlot;
use crate::client_addr::ClientAddr;
use crate::openapi::Errors;
use crate::routes::params::Params;
use crate::{ApiError, AppState};

/// `GET|HEAD {endpoint}/files/{grant}/{*path}?sp=r&se=<expiry ms>&sig=<signature>`
///
/// No bearer token: the signature is the credential. Refused with 403 when the signature does
/// not match or has expired, when the recipient of the URL no longer has access to the table,
/// and whenever the path would leave the table root (`..`, encoded separators, symlinks
/// pointing outside).
#[utoipa::path(
    get,
    path = "/files/{grant}/{*path}",
    tag = "files",
    operation_id = "getFile",
    summary = "A table file at a URL the server signed",
    description = "The URLs of `file` lines for tables on disk and storage locations with `urlMode: proxy`. \
                   The signature is the credential (no bearer token); `HEAD` and `Range` are supported. \
                   Not rate limited (a table's files are fetched in parallel after one query).",
    params(
        ("grant" = String, Path, description = "The grant the URL was signed for (table entry and recipient)"),
        ("path" = String, Path, description = "The file's path inside the table (may contain `/`)"),
        ("sp" = String, Query, description = "The permission: `r`"),
        ("se" = i64, Query, description = "The expiry, in ms since the epoch"),
        ("sig" = String, Query, description = "The signature"),
        ("Range" = Option<String>, Header, description = "A byte range, e.g. `bytes=0-1023`"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        Errors
    )
)]
pub(crate) async fn serve_file(
    State(state): State<AppState>,
    Path((grant, path)): Path<(String, String)>,
    params: Params,
    method: Method,
    headers: HeaderMap,
    client: ClientAddr,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let (Some("r"), Some(expires), Some(signature)) = (params.get("sp"), params.get("se"), params.get("sig")) else {
        return Err(ApiError::Forbidden("the URL is not signed".to_owned()));
    };
    let now = chrono::Utc::now().timestamp_millis();
    check_url(&state.key, &grant, &path, expires, signature, now)?;
    // Signed by this server, so it decodes; anything else is refused the same way.
    let grant = FileGrant::decode(&grant).ok_or_else(|| ApiError::Forbidden("the URL is not valid".to_owned()))?;
    let (who, table) = state.catalog.file_access(&grant.recipient_id, &grant.table_id).await.map_err(|e| match e {
        d2o_catalog::CatalogError::NotFound { .. } => ApiError::Forbidden(
            "the recipient of this URL no longer has access to the table; ask the provider".to_owned(),
        ),
        other => other.into(),
    })?;
    audit.update(|e| {
        e.principal = who.recipient.clone();
        e.share = Some(table.share.clone());
        e.schema = Some(table.schema.clone());
        e.table = Some(table.name.clone());
    });
    // A URL works only from the networks of the recipient it was issued to.
    crate::auth::check_network(&who, client.0)?;
    let segments = segments_inside(&path)?;
    if table.location.scheme() != "file" {
        // A proxied object-store table: the same checks, then the store's bytes.
        let store = state.storage.open(&table.location)?;
        return object::send_object(store, &table.location, &segments, &method, &headers, &audit).await;
    }
    let file = disk::resolve_inside(&table.location, &segments).await?;
    disk::send_file(file, &method, &headers, &audit).await
}

fn outside() -> ApiError {
    ApiError::Forbidden("the path leaves the table root".to_owned())
}

/// The segments of a signed relative path, decoded. The log path is URL-encoded; it is decoded
/// once, segment by segment, and a segment that is empty, a dot segment, or hides a separator
/// is refused.
pub(crate) fn segments_inside(path: &str) -> Result<Vec<Cow<'_, str>>, ApiError> {
    path.split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().map_err(|_| outside())?;
            if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains(['/', '\\', '\0']) {
                return Err(outside());
            }
            Ok(decoded)
        })
        .collect()
}
