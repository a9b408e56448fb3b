//! The server's error type and the one place errors become HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use d2o_catalog::CatalogError;
use d2o_delta::DeltaError;
use d2o_protocol::{ErrorBody, ErrorCode};

/// Every way a request can fail. Client mistakes are 4xx; only [`ApiError::Internal`] is a 5xx,
/// and its message is logged, never sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unsupported(String),
    /// Storage files of a table are missing or unreadable (400, as the reference server).
    #[error("{0}")]
    TableFiles(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    RangeNotSatisfiable(u64),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A rate limit was reached; the client may retry after this many seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// A refusal of the OAuth token endpoint, answered in RFC 6749's format
    /// (`{"error", "error_description"}`) rather than the protocol's.
    #[error("{description}")]
    OAuth { status: StatusCode, error: &'static str, description: String },
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Why the server cannot start: a setting with a bad value, or a part that would not start.
/// (Not an [`ApiError`]: nothing here is answered over HTTP.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// A setting (named as in the configuration file) has a bad value.
    #[error("{setting}: {message}")]
    Setting { setting: &'static str, message: String },
    /// A part of the server failed to start.
    #[error("{what}")]
    Start {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ApiError {
    /// An internal failure with no underlying error.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::Internal { message: message.into(), source: None }
    }

    /// An internal failure caused by `source`, which stays in the error chain for the log.
    pub fn internal_from(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal { message: message.into(), source: Some(Box::new(source)) }
    }

    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::ResourceDoesNotExist),
            ApiError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidParameterValue),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, ErrorCode::MalformedRequest),
            ApiError::Unsupported(_) => (StatusCode::BAD_REQUEST, ErrorCode::UnsupportedOperation),
            ApiError::TableFiles(_) => (StatusCode::BAD_REQUEST, ErrorCode::ResourceDoesNotExist),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::ResourceAlreadyExists),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::PermissionDenied),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::InvalidParameterValue),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::InvalidParameterValue),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::InvalidParameterValue),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::ResourceExhausted),
            ApiError::OAuth { status, .. } if *status == StatusCode::UNAUTHORIZED => {
                (*status, ErrorCode::Unauthenticated)
            }
            ApiError::OAuth { status, .. } => (*status, ErrorCode::InvalidParameterValue),
            ApiError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The message a client sees: internals are replaced by a generic sentence.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal { .. } => "the server failed to handle the request; see the server log".to_owned(),
            ApiError::RangeNotSatisfiable(size) => {
                format!("the requested range is not satisfiable (the file has {size} bytes)")
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %error_chain(&self), "request failed");
        } else {
            tracing::debug!(%status, error = %self, "request refused");
        }
        let body = match &self {
            ApiError::OAuth { error, description, .. } => {
                serde_json::json!({ "error": error, "error_description": description }).to_string()
            }
            _ => serde_json::to_string(&ErrorBody::new(code, self.public_message())).unwrap_or_default(),
        };
        let mut response = (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response();
        match self {
            ApiError::Unauthenticated(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::OAuth { status, .. } => {
                let h = response.headers_mut();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if status == StatusCode::UNAUTHORIZED {
                    h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"d2o\""));
                }
            }
            ApiError::RangeNotSatisfiable(size) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::TooManyRequests { retry_after_secs, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound { kind, name } => {
                let mut kind = kind.to_owned();
                if let Some(first) = kind.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                ApiError::NotFound(format!(
                    "{kind} '{name}' does not exist, please contact your share provider for further information."
                ))
            }
            e @ CatalogError::AlreadyExists { .. } => ApiError::Conflict(e.to_string()),
            CatalogError::Unauthenticated(m) => ApiError::Unauthenticated(m),
            CatalogError::InvalidArgument(m) => ApiError::InvalidParameter(m),
            other => ApiError::internal_from("the catalog failed", other),
        }
    }
}

impl From<DeltaError> for ApiError {
    fn from(e: DeltaError) -> Self {
        match e {
            DeltaError::TableNotFound(m) => {
                tracing::warn!(detail = %m, "table files missing");
                ApiError::TableFiles("table files missing".to_owned())
            }
            e @ DeltaError::Storage { .. } => {
                // Store errors name request URLs, whose queries may carry signatures.
                let chain = without_url_queries(&error_chain(&e));
                tracing::error!(
                    error = %chain,
                    "cannot read a table's storage: check the storage location's endpoint, bucket and credentials"
                );
                ApiError::TableFiles(
                    "the table's storage cannot be read at the moment; the provider can see why in the server log"
                        .to_owned(),
                )
            }
            DeltaError::VersionNotFound(m) | DeltaError::TimestampOutOfRange(m) | DeltaError::InvalidArgument(m) => {
                ApiError::InvalidParameter(m)
            }
            DeltaError::Unsupported(m) => ApiError::Unsupported(m),
            other => ApiError::internal_from("reading the table failed", other),
        }
    }
}

/// `text` with the query of every URL in it replaced by `?…`.
pub(crate) fn without_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut skipping = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ',') {
            in_url = false;
            skipping = false;
        } else if !in_url && text[i..].starts_with("://") {
            in_url = true;
        } else if in_url && c == '?' && !skipping {
            skipping = true;
            out.push_str("?…");
            continue;
        }
        if !skipping {
            out.push(c);
        }
    }
    out
}

/// An error and its sources, `: `-separated, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_queries_are_left_out_of_logs() {
        let text =
            "error sending request for url (http://127.0.0.1:1/c/t?sig=SECRET&se=1): refused, see https://x.y/?a=b";
        assert_eq!(
            super::without_url_queries(text),
            "error sending request for url (http://127.0.0.1:1/c/t?…): refused, see https://x.y/?…"
        );
    }
}
