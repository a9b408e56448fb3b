use serde::{Deserialize, Serialize};

/// The `errorCode` values that Delta Sharing servers send (protocol.md §2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A parameter has a bad value (400).
    InvalidParameterValue,
    /// The request body or a parameter is malformed (400).
    MalformedRequest,
    /// The table or request needs something the server does not support (400).
    UnsupportedOperation,
    /// A share, schema, table or file does not exist (404, or 400 for missing storage files).
    ResourceDoesNotExist,
    /// The bearer token is missing, wrong or expired (401).
    Unauthenticated,
    /// The caller is known but may not do this (403).
    PermissionDenied,
    /// The object to create exists already (409).
    ResourceAlreadyExists,
    /// Too many requests (429).
    ResourceExhausted,
    /// A server fault (500); the message never carries internals.
    InternalError,
}

impl ErrorCode {
    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::MalformedRequest => "MALFORMED_REQUEST",
            ErrorCode::UnsupportedOperation => "UNSUPPORTED_OPERATION",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error response: `{"errorCode": "...", "message": "..."}`.
///
/// `error_code` is kept as a string so that a client can carry codes this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "errorCode", default)]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error_code: code.as_str().to_owned(), message: message.into() }
    }
}
