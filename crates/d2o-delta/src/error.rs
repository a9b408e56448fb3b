use delta_kernel::{Error as KernelErrorWrapper, KernelError};

/// What went wrong reading a Delta table, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// No Delta table at the location (no `_delta_log`, or it is empty), or a file the log
    /// names is gone.
    #[error("table files missing: {0}")]
    TableNotFound(String),
    /// The version does not exist (any more) or cannot be reconstructed.
    #[error("{0}")]
    VersionNotFound(String),
    /// A timestamp falls outside the table's history.
    #[error("{0}")]
    TimestampOutOfRange(String),
    /// The table uses a feature this server cannot read.
    #[error("{0}")]
    Unsupported(String),
    /// The caller asked for something that does not make sense for this table.
    #[error("{0}")]
    InvalidArgument(String),
    /// The table's storage could not be opened or read (refused access, unreachable,
    /// misconfigured, timed out). `message` says what failed; the source, for the provider's log, may name
    /// endpoints and paths.
    #[error("{message}")]
    Storage {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Anything else: a bug, a corrupt log, an I/O failure. For logs, not for clients.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl DeltaError {
    /// An internal failure with no underlying error.
    pub fn internal(message: impl Into<String>) -> Self {
        DeltaError::Internal { message: message.into(), source: None }
    }

    /// The error with the table it happened at named in a storage failure, for the log.
    pub fn at(self, location: &url::Url) -> Self {
        match self {
            DeltaError::Storage { message, source } => {
                DeltaError::Storage { message: format!("{message} (table at {location})"), source }
            }
            other => other,
        }
    }

    /// The same error for another caller: same kind and message, without the source (which
    /// the first caller's log reports). Callers that shared one scan each get one.
    pub(crate) fn for_another_caller(&self) -> Self {
        match self {
            DeltaError::TableNotFound(m) => DeltaError::TableNotFound(m.clone()),
            DeltaError::VersionNotFound(m) => DeltaError::VersionNotFound(m.clone()),
            DeltaError::TimestampOutOfRange(m) => DeltaError::TimestampOutOfRange(m.clone()),
            DeltaError::Unsupported(m) => DeltaError::Unsupported(m.clone()),
            DeltaError::InvalidArgument(m) => DeltaError::InvalidArgument(m.clone()),
            DeltaError::Storage { message, .. } => DeltaError::Storage { message: message.clone(), source: None },
            DeltaError::Internal { message, .. } => DeltaError::internal(message.clone()),
        }
    }

    /// An internal failure caused by `source`, which stays in the error chain for logs.
    pub fn internal_from(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        DeltaError::Internal { message: message.into(), source: Some(Box::new(source)) }
    }
}

impl From<KernelErrorWrapper> for DeltaError {
    fn from(e: KernelErrorWrapper) -> Self {
        match e {
            KernelErrorWrapper::Kernel(k) => k.into(),
            other => DeltaError::internal_from("the Delta kernel failed", other),
        }
    }
}

impl From<KernelError> for DeltaError {
    fn from(e: KernelError) -> Self {
        use object_store::Error as OsError;
        match e {
            KernelError::FileNotFound(p) => DeltaError::TableNotFound(p),
            KernelError::EmptyLog
            | KernelError::MissingMetadataAndProtocol
            | KernelError::MissingMetadata
            | KernelError::MissingProtocol => DeltaError::TableNotFound("no Delta log found".into()),
            KernelError::InvalidTableLocation(l) => DeltaError::TableNotFound(l),
            KernelError::MissingVersion(v) => {
                DeltaError::VersionNotFound(format!("version {v} of the table is missing or unavailable"))
            }
            KernelError::Unsupported(m) => DeltaError::Unsupported(m),
            KernelError::ObjectStore(OsError::NotFound { path, .. }) => DeltaError::TableNotFound(path),
            KernelError::ObjectStore(e @ (OsError::PermissionDenied { .. } | OsError::Unauthenticated { .. })) => {
                let message = "the table's storage refused access: check the credentials".to_owned();
                DeltaError::Storage { message, source: Some(Box::new(e)) }
            }
            KernelError::ObjectStore(e) => {
                DeltaError::Storage { message: "the table's storage failed".to_owned(), source: Some(Box::new(e)) }
            }
            KernelError::Backtraced { source, .. } => (*source).into(),
            KernelError::LogHistory(h) => {
                use delta_kernel::history_manager::error::LogHistoryError as H;
                match *h {
                    e @ (H::TimestampOutOfRange { .. }
                    | H::EmptyTimestampRange { .. }
                    | H::InvalidTimestampRange { .. }) => DeltaError::TimestampOutOfRange(e.to_string()),
                    H::NoCommitsFound { .. } => DeltaError::TableNotFound("no commits found".into()),
                    other => DeltaError::internal_from("reading the table's history failed", other),
                }
            }
            other => {
                let message = other.to_string();
                // The kernel reports a version beyond the log as a generic error.
                if message.contains("Requested snapshot version") || message.contains("is newer than") {
                    DeltaError::VersionNotFound(message)
                } else if message.contains("Unsupported") || message.contains("not supported") {
                    DeltaError::Unsupported(message)
                } else {
                    DeltaError::internal_from("the Delta kernel failed", other)
                }
            }
        }
    }
}
