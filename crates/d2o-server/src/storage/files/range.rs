//! `Range` requests and the headers of a file response.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use crate::audit::AuditSlot;

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
