//! Files of a proxied object-store table (`urlMode: proxy`), streamed from its store.

use std::sync::Arc;

use object_store::DynObjectStore;
use object_store::path::Path;
use url::Url;

use super::range::{file_response, requested_part};
use crate::ApiError;
use crate::storage::cloud::storage_error;

/// `GET|HEAD` of a proxied table's file: `segments` (decoded, checked) under the table root,
/// streamed from the store with the requested range.
pub(super) async fn send_object(
    store: Arc<DynObjectStore>,
    root: &Url,
    segments: &[std::borrow::Cow<'_, str>],
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    audit: &crate::audit::AuditSlot,
) -> Result<axum::response::Response, ApiError> {
    use futures::TryStreamExt as _;
    use object_store::ObjectStoreExt as _;
    let root =
        Path::from_url_path(root.path()).map_err(|e| ApiError::internal_from(format!("bad table root {root}"), e))?;
    let object = segments.iter().fold(root, |path, segment| path.join(segment.as_ref()));
    let missing = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => ApiError::NotFound("the file does not exist".to_owned()),
        other => storage_error("cannot read a file of the table", other),
    };
    let meta = store.head(&object).await.map_err(missing)?;
    let (status, start, len) = requested_part(method, headers, meta.size, audit)?;
    let body = if method == axum::http::Method::HEAD || len == 0 {
        axum::body::Body::empty()
    } else {
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(start..start + len)),
            ..object_store::GetOptions::default()
        };
        let stream = store.get_opts(&object, options).await.map_err(missing)?.into_stream();
        axum::body::Body::from_stream(stream.map_err(std::io::Error::other))
    };
    Ok(file_response(body, status, start, len, meta.size))
}
