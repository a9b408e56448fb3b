//! [`ClientError`]: what went wrong, in terms a caller can act on.

use std::path::PathBuf;

/// Every error of the client.
///
/// Variants carry the resource and the server's own words (`errorCode` and `message`) so that a
/// person reading the message knows what to fix: the profile, the table name, the credentials,
/// or nothing (retry later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile file could not be found or parsed.
    #[error("invalid profile {source_name}: {message}")]
    Profile { source_name: String, message: String },

    /// The server refused the credentials (401/403 on a protocol call).
    #[error("the server at {endpoint} refused the credentials (HTTP {status}): {message}")]
    Unauthenticated { endpoint: String, status: u16, message: String },

    /// The bearer token of the profile has passed its `expirationTime`.
    #[error("the profile's bearer token expired at {expiration_time}; ask the data provider for a new profile")]
    TokenExpired { expiration_time: String },

    /// A share, schema or table does not exist (or is not shared with this recipient).
    #[error("{resource} not found: {message}")]
    NotFound { resource: String, message: String },

    /// Any other HTTP error answer, with the server's `errorCode` and message.
    #[error("HTTP {status} from {url}: {}{message}", error_code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Http { status: u16, error_code: Option<String>, message: String, url: String },

    /// The server could not be reached, or the connection broke, even after retries.
    #[error("cannot reach {url}: {message}")]
    Connection { url: String, message: String },

    /// A pre-signed file URL expired and could not be refreshed.
    #[error("the pre-signed URL of file {file_id} expired and could not be refreshed: {message}")]
    UrlExpired { file_id: String, message: String },

    /// The server's answer does not follow the protocol (or it stopped in the middle).
    #[error("unexpected response from the server: {0}")]
    Protocol(String),

    /// The caller asked for something impossible (unknown column, bad table name, ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// A table feature this client cannot read.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Reading or writing a local file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// Decoding or converting Arrow data.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// Decoding or writing Parquet data.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

impl ClientError {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        ClientError::Protocol(msg.into())
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ClientError::InvalidArgument(msg.into())
    }

    /// The HTTP status the server answered with, when the error came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } | ClientError::Unauthenticated { status, .. } => Some(*status),
            ClientError::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    /// The server's `errorCode`, when it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ClientError::Http { error_code, .. } => error_code.as_deref(),
            ClientError::NotFound { .. } => Some("RESOURCE_DOES_NOT_EXIST"),
            _ => None,
        }
    }
}

/// The client's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
