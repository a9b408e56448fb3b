//! Files on the server's disk.

use std::borrow::Cow;
use std::io::SeekFrom;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::outside;
use super::range::{file_response, requested_part};
use crate::ApiError;
use crate::audit::AuditSlot;

/// The file a signed relative path names, refusing anything outside the root (symbolic links
/// included).
pub(super) async fn resolve_inside(root: &url::Url, segments: &[Cow<'_, str>]) -> Result<PathBuf, ApiError> {
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

pub(super) async fn send_file(
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
