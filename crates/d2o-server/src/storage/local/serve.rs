//! The `/files` route: table files at signed URLs, with `Range` support, straight from disk.
//!
//! A URL is checked twice: its signature and expiry (nothing in it was changed), then the
//! grant it names against the catalog as it stands now (the recipient still exists, still has
//! a live credential and still has the table's share), so that revoking a recipient or a grant
//! stops downloads at once, not when the URLs expire.

use std::io::SeekFrom;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{FileGrant, check_url};
use crate::audit::AuditSlot;
use crate::routes::params::Params;
use crate::{ApiError, AppState};
use d2o_delta::StoreOpener as _;

/// `GET|HEAD {endpoint}/files/{grant}/{*path}?sp=r&se=<expiry ms>&sig=<signature>`
///
/// No bearer token: the signature is the credential. Refused with 403 when the signature does
/// not match or has expired, when the recipient of the URL no longer has access to the table,
/// and whenever the path would leave the table root (`..`, encoded separators, symlinks
/// pointing outside).
pub(crate) async fn serve_file(
    State(state): State<AppState>,
    Path((grant, path)): Path<(String, String)>,
    params: Params,
    method: Method,
    headers: HeaderMap,
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
    let segments = segments_inside(&path)?;
    if table.location.scheme() != "file" {
        // A proxied object-store table: the same checks, then the store's bytes.
        let store = state.storage.open(&table.location)?;
        return crate::storage::cloud::send_object(store, &table.location, &segments, &method, &headers, &audit).await;
    }
    let file = resolve_inside(&table.location, &segments).await?;
    send_file(file, &method, &headers, &audit).await
}

fn outside() -> ApiError {
    ApiError::Forbidden("the path leaves the table root".to_owned())
}

/// The segments of a signed relative path, decoded. The log path is URL-encoded; it is decoded
/// once, segment by segment, and a segment that is empty, a dot segment, or hides a separator
/// is refused.
pub(crate) fn segments_inside(path: &str) -> Result<Vec<std::borrow::Cow<'_, str>>, ApiError> {
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

/// The file a signed relative path names, refusing anything outside the root (symbolic links
/// included).
async fn resolve_inside(root: &url::Url, segments: &[std::borrow::Cow<'_, str>]) -> Result<PathBuf, ApiError> {
    let mut file = root.to_file_path().map_err(|()| ApiError::internal(format!("bad table root {root}")))?;
    let root_dir = file.clone();
    for segment in segments {
        file.push(segment.as_ref());
    }
    let (real_root, real_file) = tokio::try_join!(tokio::fs::canonicalize(&root_dir), tokio::fs::canonicalize(&file))
        .map_err(|_| ApiError::NotFound("the file does not exist".to_owned()))?;
    if !real_file.starts_with(&real_root) {
        return Err(outside());
    }
    Ok(real_file)
}

/// A single byte range from a `Range` header, resolved against the file size.
pub(crate) fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    // Several ranges: answer with the whole file, which HTTP allows.
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(ApiError::RangeNotSatisfiable(size))?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ApiError::RangeNotSatisfiable(size))?;
        if n == 0 {
            return Err(ApiError::RangeNotSatisfiable(size));
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let s: u64 = start.parse().map_err(|_| ApiError::RangeNotSatisfiable(size))?;
        let e: u64 = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse().map_err(|_| ApiError::RangeNotSatisfiable(size))?
        };
        (s, e.min(size.saturating_sub(1)))
    };
    if range.0 >= size || range.0 > range.1 {
        return Err(ApiError::RangeNotSatisfiable(size));
    }
    Ok(Some(range))
}

/// The response headers of a file, or a part of it.
pub(crate) fn file_response(body: Body, status: StatusCode, start: u64, len: u64, size: u64) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// The part of a file of `size` bytes a request asks for: status, start and length, recorded
/// in the audit event.
pub(crate) fn requested_part(
    method: &Method,
    headers: &HeaderMap,
    size: u64,
    audit: &AuditSlot,
) -> Result<(StatusCode, u64, u64), ApiError> {
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_range(v, size)?,
        None => None,
    };
    audit.update(|e| {
        e.bytes = Some(if method == Method::HEAD { 0 } else { range.map_or(size, |(s, e)| e - s + 1) as i64 });
        e.detail = match (method == Method::HEAD, range) {
            (true, _) => Some("HEAD".to_owned()),
            (false, Some((s, e))) => Some(format!("bytes={s}-{e}/{size}")),
            (false, None) => None,
        };
    });
    Ok(match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    })
}

async fn send_file(
    path: PathBuf,
    method: &Method,
    headers: &HeaderMap,
    audit: &AuditSlot,
) -> Result<Response, ApiError> {
    let mut file =
        tokio::fs::File::open(&path).await.map_err(|_| ApiError::NotFound("the file does not exist".to_owned()))?;
    let meta = file.metadata().await.map_err(|e| ApiError::internal_from("cannot read the file's metadata", e))?;
    if !meta.is_file() {
        return Err(ApiError::NotFound("the file does not exist".to_owned()));
    }
    let size = meta.len();
    let (status, start, len) = requested_part(method, headers, size, audit)?;
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        file.seek(SeekFrom::Start(start)).await.map_err(|e| ApiError::internal_from("cannot seek in the file", e))?;
        Body::from_stream(ReaderStream::with_capacity(file.take(len), 64 * 1024))
    };
    Ok(file_response(body, status, start, len, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).ok(), Some(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100).ok(), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100).ok(), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100).ok(), Some(Some((50, 99))));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).ok(), Some(None));
        assert_eq!(parse_range("items=1-2", 100).ok(), Some(None));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-2", 100).is_err());
        assert!(parse_range("bytes=x-2", 100).is_err());
        assert!(parse_range("bytes=-0", 100).is_err());
    }
}
