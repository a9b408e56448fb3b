//! Tables on S3, GCS and Azure, read through `object_store` and shared at URLs the store
//! itself accepts: pre-signed by `object_store`'s [`Signer`], in memory, with no request to the
//! store per file.
//!
//! Each table's options come from the named storage location whose URL prefix covers it (see
//! [`d2o_catalog::storage_location`]); credentials come from the store's usual chain
//! (environment variables, token and credential files, workload or managed identity, instance
//! metadata). A location with `urlMode: proxy` is shared at the server's own signed URLs
//! instead, and the `/files` route streams its files from the store.
//!
//! Stores are built once per bucket and storage location ([`build`]), and rebuilt when the
//! location changes. Instance metadata is a network endpoint outside the deployment's control:
//! `AWS_EC2_METADATA_DISABLED=true` (S3), `NO_GCE_CHECK=true` (GCS) or
//! `D2O_INSTANCE_METADATA=off` (all three) make a location without other credentials an error
//! instead of a lookup there. A pre-signing location must sign in memory: GCS needs a service
//! account's private key and Azure the account key; other credentials work with `proxy`.
//!
//! Also here: [`check`] (`d2o storage check`, `share add-table`'s log check). The files of a
//! proxied location are streamed by the `/files` route ([`crate::storage::files`]).

mod aws_profile;
mod build;
mod check;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use d2o_catalog::{Catalog, StorageLocation, StoreKind, UrlMode};
use d2o_delta::DeltaError;
use object_store::DynObjectStore;
use object_store::path::Path;
use object_store::signer::Signer;
use parking_lot::Mutex;
use url::Url;

use self::build::build;
pub use self::check::{StorageCheck, check_delta_log, check_location};
use super::local::LocalFiles;
use super::{Backend, FileSigner, UrlRequest};
use crate::ApiError;

/// One bucket's store, as one storage location configures it.
struct CloudStore {
    store: Arc<DynObjectStore>,
    signer: Arc<dyn Signer>,
    url_mode: UrlMode,
}

/// The backend of `s3://`, `s3a://`, `gs://`, `abfss://`, `az://` and `azure://` tables.
pub(crate) struct ObjectStores {
    catalog: Arc<dyn Catalog>,
    /// Signs the URLs of proxied locations.
    proxy: LocalFiles,
    stores: Mutex<HashMap<String, Arc<CloudStore>>>,
}

impl ObjectStores {
    pub(crate) fn new(catalog: Arc<dyn Catalog>, proxy: LocalFiles) -> ObjectStores {
        ObjectStores { catalog, proxy, stores: Mutex::new(HashMap::new()) }
    }

    /// The store of the table at `location`, built on first use.
    fn store(&self, location: &Url) -> Result<Arc<CloudStore>, DeltaError> {
        let locations = self.catalog.storage_locations();
        let config = d2o_catalog::storage_location::covering(&locations, location);
        let key = store_key(location, config);
        if let Some(store) = self.stores.lock().get(&key) {
            return Ok(store.clone());
        }
        // The message names the location and what to fix; it is logged where errors are
        // answered.
        let store = Arc::new(
            build(location, config).map_err(|message| DeltaError::Storage { message, source: None }.at(location))?,
        );
        self.stores.lock().insert(key, store.clone());
        Ok(store)
    }
}

impl Backend for ObjectStores {
    fn serves(&self, location: &Url) -> bool {
        StoreKind::of(location).is_some()
    }

    fn store_key(&self, location: &Url) -> String {
        let locations = self.catalog.storage_locations();
        store_key(location, d2o_catalog::storage_location::covering(&locations, location))
    }

    fn open(&self, location: &Url) -> Result<Arc<DynObjectStore>, DeltaError> {
        Ok(self.store(location)?.store.clone())
    }

    fn signer<'a>(&'a self, request: &UrlRequest<'a>) -> Result<Box<dyn FileSigner + 'a>, ApiError> {
        let store = self.store(&request.table.location)?;
        // A store's URL works from anywhere: a recipient held to an IP access list gets the
        // server's own URLs, which check the client's address at every download.
        if store.url_mode == UrlMode::Proxy || request.who.allowed_networks.is_some() {
            return self.proxy.signer(request);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| ApiError::internal_from("URLs are signed on the server's runtime", e))?;
        Ok(Box::new(PresignSigner {
            store,
            root: request.table.location.path().to_owned(),
            expires_s: request.expires_ms.div_euclid(1000),
            runtime,
        }))
    }
}

/// The cache key of a bucket's store: the bucket and the storage location (all of it, so that
/// a changed location builds a new store).
fn store_key(location: &Url, config: Option<&StorageLocation>) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    config.hash(&mut hasher);
    format!("{}://{}#{:016x}", location.scheme(), location.authority(), hasher.finish())
}

/// Signs URLs for one response, each valid until the response's expiry.
struct PresignSigner {
    store: Arc<CloudStore>,
    /// The table root's path in the bucket (URL-encoded, ending with `/`).
    root: String,
    /// The expiry, in whole seconds since the epoch.
    expires_s: i64,
    runtime: tokio::runtime::Handle,
}

impl FileSigner for PresignSigner {
    fn write_url(&self, out: &mut String, path: &str) -> Result<(), ApiError> {
        let object = Path::from_url_path(format!("{}{path}", self.root))
            .map_err(|e| ApiError::internal_from(format!("the log names a file '{path}' with a bad path"), e))?;
        // The store stamps the URL with the time it signs at, to the second; the lifetime
        // counts from the same second, so the URL expires when the response says.
        let now_s = chrono::Utc::now().timestamp();
        let lifetime = Duration::from_secs(self.expires_s.saturating_sub(now_s).max(1) as u64);
        let signed = self
            .runtime
            .block_on(self.store.signer.signed_url(axum::http::Method::GET, &object, lifetime))
            .map_err(|e| storage_error("cannot sign a URL for a file of the table", e))?;
        out.push_str(signed.as_str());
        Ok(())
    }
}

/// A store failure as the recipient sees it, with the cause logged for the provider.
pub(crate) fn storage_error(what: &str, e: object_store::Error) -> ApiError {
    ApiError::from(DeltaError::Storage { message: what.to_owned(), source: Some(Box::new(e)) })
}
