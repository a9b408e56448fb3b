//! How recipients reach a table's files: the URLs a response hands out.
//!
//! A table's location decides its [`Backend`], which both opens the table's object store (for
//! `d2o-delta`, as its [`StoreOpener`]) and gives out URLs for its files. The query path asks
//! [`Storage::urls`] for the URLs of one response and never asks which kind of storage it is. What every backend shares
//! is here: log paths are checked to stay inside the table (the Delta log may name absolute
//! paths, or paths that climb out with `..`), and deletion-vector descriptors get URLs too.
//!
//! Backends:
//! - [`local`]: tables on the server's own disk. Files are served by d2o itself, at URLs it
//!   signs with its own key (the `/files` route), checked against the catalog at every
//!   download.
//! - [`cloud`]: tables on S3, GCS and Azure, at URLs pre-signed by `object_store`, or (for a
//!   storage location with `urlMode: proxy`) at the server's own URLs, streamed from the store.
//!
//! [`files`] is the route behind the server's own URLs: it checks them, then reads from disk or
//! from a proxied store.

pub mod cloud;
pub(crate) mod files;
pub mod local;

use std::sync::Arc;

use d2o_catalog::{Catalog, Principal, SharedTable};
use d2o_delta::{DeletionVectorDescriptor, DeltaError, StoreOpener, deletion_vector_path};
use object_store::DynObjectStore;
use serde_json::{Map, Value};
use url::Url;

use crate::ApiError;

/// What a response's URLs are for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlRequest<'a> {
    /// `http://host[:port]/{endpoint}`: how the client reached the server.
    pub(crate) base: &'a str,
    pub(crate) who: &'a Principal,
    pub(crate) table: &'a SharedTable,
    /// When the URLs expire (ms since the epoch).
    pub(crate) expires_ms: i64,
}

/// One kind of storage: the tables it serves, how their data is read, and the URLs it gives
/// out for their files.
pub(crate) trait Backend: Send + Sync {
    /// Whether this backend serves tables at `location`.
    fn serves(&self, location: &Url) -> bool;

    /// See [`StoreOpener::store_key`].
    fn store_key(&self, location: &Url) -> String {
        format!("{}://{}", location.scheme(), location.authority())
    }

    /// The object store holding the table at `location` (one this backend serves).
    fn open(&self, location: &Url) -> Result<Arc<DynObjectStore>, DeltaError>;

    /// A signer of URLs for the files of `request.table`, for `request.who`, valid until
    /// `request.expires_ms`. Must not do I/O per file: a response may list a million files.
    fn signer<'a>(&'a self, request: &UrlRequest<'a>) -> Result<Box<dyn FileSigner + 'a>, ApiError>;
}

/// Gives out URLs for the files of one table in one response.
pub(crate) trait FileSigner {
    /// Writes a URL from which `path` (relative to the table root, as the Delta log writes it,
    /// already checked to stay inside the table) can be read. The URL must be a valid JSON
    /// string's content: percent-encoded, no quotes or backslashes.
    fn write_url(&self, out: &mut String, path: &str) -> Result<(), ApiError>;
}

/// Every backend of the server, in the order they are asked.
pub struct Storage {
    backends: Vec<Box<dyn Backend>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("backends", &self.backends.len()).finish()
    }
}

impl Storage {
    /// Storage for tables on the server's disk, served at URLs signed with `key`, and on
    /// object storage, configured by the catalog's storage locations.
    pub fn new(key: Arc<crate::SigningKey>, catalog: Arc<dyn Catalog>) -> Storage {
        let cloud = cloud::ObjectStores::new(catalog, local::LocalFiles::new(key.clone()));
        Storage { backends: vec![Box::new(local::LocalFiles::new(key)), Box::new(cloud)] }
    }

    fn backend(&self, location: &Url) -> Result<&dyn Backend, DeltaError> {
        self.backends.iter().find(|b| b.serves(location)).map(|b| b.as_ref()).ok_or_else(|| {
            DeltaError::Unsupported(format!("tables at {}:// locations are not served", location.scheme()))
        })
    }

    /// The URLs for the files of one response.
    pub(crate) fn urls<'a>(&'a self, request: &UrlRequest<'a>) -> Result<TableUrls<'a>, ApiError> {
        self.urls_timed(request, crate::telemetry::SigningTime::new(request.table.location.scheme()))
    }

    /// The URLs for the files of one response, signed on several threads: each thread's signer
    /// shares the response's `timing`.
    pub(crate) fn urls_timed<'a>(
        &'a self,
        request: &UrlRequest<'a>,
        timing: crate::telemetry::SigningTime,
    ) -> Result<TableUrls<'a>, ApiError> {
        let root = &request.table.location;
        let signer = self.backend(root)?.signer(request)?;
        Ok(TableUrls { root, signer, timing })
    }
}

impl StoreOpener for Storage {
    fn open(&self, location: &Url) -> Result<Arc<DynObjectStore>, DeltaError> {
        self.backend(location)?.open(location)
    }

    fn store_key(&self, location: &Url) -> String {
        match self.backend(location) {
            Ok(backend) => backend.store_key(location),
            // `open` refuses it.
            Err(_) => location.scheme().to_owned(),
        }
    }
}

/// URLs for the files of one table in one response.
pub(crate) struct TableUrls<'a> {
    root: &'a Url,
    signer: Box<dyn FileSigner + 'a>,
    /// The time spent signing, reported to the metrics when the response is done with these.
    timing: crate::telemetry::SigningTime,
}

impl TableUrls<'_> {
    /// Writes the URL of a path from the Delta log.
    pub(crate) fn write(&self, out: &mut String, log_path: &str) -> Result<(), ApiError> {
        let relative = self.relative(log_path)?;
        self.timing.time(|| self.signer.write_url(out, relative))
    }

    pub(crate) fn url(&self, log_path: &str) -> Result<String, ApiError> {
        let mut s = String::new();
        self.write(&mut s, log_path)?;
        Ok(s)
    }

    /// A log path relative to the root; absolute paths are accepted only inside the root, and
    /// no path may climb out of it.
    fn relative<'p>(&self, log_path: &'p str) -> Result<&'p str, ApiError> {
        let is_absolute =
            log_path.starts_with('/') || log_path.split_once(':').is_some_and(|(s, _)| s.len() > 1 && !s.contains('/'));
        let relative = if is_absolute { log_path.strip_prefix(self.root.as_str()) } else { Some(log_path) };
        let inside = relative.filter(|r| {
            // Nearly every path has no escapes and no dots to climb with: no decoding needed.
            let plain = !r.contains(['%', '\\']) && !r.contains("..");
            plain
                || r.split('/').all(|segment| {
                    let segment = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
                    segment != ".." && !segment.contains(['/', '\\'])
                })
        });
        inside.ok_or_else(|| {
            tracing::error!(table = %self.root, path = log_path, "the table's log names a file outside its root; it cannot be shared");
            ApiError::Unsupported(
                "the table's log names a file outside the table's directory, which d2o does not serve; ask the provider to repair or re-create the table".to_owned(),
            )
        })
    }

    /// The deletion vector descriptor with its file replaced by a URL (`storageType` `p`).
    pub(crate) fn deletion_vector(&self, dv: &DeletionVectorDescriptor<'_>) -> Result<Value, ApiError> {
        let mut out = Map::new();
        match deletion_vector_path(dv, self.root)? {
            None => {
                out.insert("storageType".into(), dv.storage_type.into());
                out.insert("pathOrInlineDv".into(), dv.path_or_inline_dv.into());
            }
            Some(path) => {
                out.insert("storageType".into(), "p".into());
                out.insert("pathOrInlineDv".into(), self.url(&path)?.into());
            }
        }
        if let Some(offset) = dv.offset {
            out.insert("offset".into(), offset.into());
        }
        out.insert("sizeInBytes".into(), dv.size_in_bytes.into());
        out.insert("cardinality".into(), dv.cardinality.into());
        Ok(Value::Object(out))
    }
}
