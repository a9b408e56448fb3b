/// Errors of a [`crate::Catalog`], each one a thing the caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The share, schema or table does not exist, or the caller may not see it (the two are
    /// indistinguishable on purpose).
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: &'static str, name: String },
    /// Something of that name exists already.
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// No credential, or one that is wrong, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// A parameter has a bad value (for example a page token that does not fit the request).
    #[error("{0}")]
    InvalidArgument(String),
    /// The catalog itself failed; the message is for logs, not for clients.
    #[error("catalog failure: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl CatalogError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        CatalogError::NotFound { kind, name: name.into() }
    }

    /// An internal failure with no underlying error.
    pub fn internal(message: impl Into<String>) -> Self {
        CatalogError::Internal { message: message.into(), source: None }
    }

    /// An internal failure caused by `source`, which stays in the error chain for logs.
    pub fn internal_from(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        CatalogError::Internal { message: message.into(), source: Some(std::sync::Arc::new(source)) }
    }
}
