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
//! Stores are built once per bucket and storage location, and rebuilt when the location
//! changes. Instance metadata is a network endpoint outside the deployment's control:
//! `AWS_EC2_METADATA_DISABLED=true` (S3), `NO_GCE_CHECK=true` (GCS) or
//! `D2O_INSTANCE_METADATA=off` (all three) make a location without other credentials an error
//! instead of a lookup there.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use d2o_catalog::{Catalog, StorageLocation, StoreKind, UrlMode};
use d2o_delta::DeltaError;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientConfigKey, DynObjectStore, RetryConfig};
use parking_lot::Mutex;
use url::Url;

use super::local::LocalFiles;
use super::{Backend, FileSigner, UrlRequest};
use crate::ApiError;

/// How long a store request may take, and how long connecting may.
const REQUEST_TIMEOUT: &str = "30 seconds";
const CONNECT_TIMEOUT: &str = "5 seconds";

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
        let store = Arc::new(build(location, config).map_err(|message| {
            tracing::error!(table = %location, storage = config.map(|c| c.name.as_str()), "{message}");
            DeltaError::Storage { message, source: None }
        })?);
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
        if store.url_mode == UrlMode::Proxy {
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

/// Whether instance metadata may be asked for credentials of `kind`.
fn metadata_allowed(kind: StoreKind) -> bool {
    let set = |var: &str, value: &str| std::env::var(var).is_ok_and(|v| v.eq_ignore_ascii_case(value));
    let blocked = set("D2O_INSTANCE_METADATA", "off")
        || match kind {
            StoreKind::S3 => set("AWS_EC2_METADATA_DISABLED", "true"),
            StoreKind::Gcs => set("NO_GCE_CHECK", "true"),
            StoreKind::Azure => false,
        };
    !blocked
}

/// Builds the store of a bucket; the error is a sentence for the provider's log, with no
/// option values in it.
fn build(location: &Url, config: Option<&StorageLocation>) -> Result<CloudStore, String> {
    let kind = StoreKind::of(location).ok_or_else(|| format!("'{location}' is not on object storage"))?;
    let name = config.map_or_else(|| "(no storage location: defaults)".to_owned(), |c| format!("'{}'", c.name));
    let options = config.map(StorageLocation::resolved_options).transpose()?.unwrap_or_default();
    let bucket = format!("{}://{}", location.scheme(), location.authority());
    let retry = RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..RetryConfig::default() };
    let no_credentials = || {
        format!(
            "storage location {name}: no credentials for {} {bucket}, and instance metadata is switched off; set the store's credential variables or options",
            kind.name()
        )
    };
    let bad = |key: &str| format!("storage location {name}: '{key}' is not an option of {} storage", kind.name());
    let failed = |e: object_store::Error| format!("storage location {name}: cannot open {bucket}: {e}");
    let (store, signer): (Arc<DynObjectStore>, Arc<dyn Signer>) = match kind {
        StoreKind::S3 => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(&bucket)
                .with_retry(retry)
                .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), REQUEST_TIMEOUT)
                .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), CONNECT_TIMEOUT);
            for (key, value) in options {
                b = b.with_config(AmazonS3ConfigKey::from_str(&key).map_err(|_| bad(&key))?, value);
            }
            let has = |k: AmazonS3ConfigKey| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
            let explicit = has(AmazonS3ConfigKey::AccessKeyId)
                || has(AmazonS3ConfigKey::WebIdentityTokenFile)
                || has(AmazonS3ConfigKey::ContainerCredentialsRelativeUri)
                || has(AmazonS3ConfigKey::ContainerCredentialsFullUri)
                || b.get_config_value(&AmazonS3ConfigKey::SkipSignature).is_some_and(|v| v == "true");
            if !explicit && !metadata_allowed(kind) {
                return Err(no_credentials());
            }
            let s3 = Arc::new(b.build().map_err(failed)?);
            (s3.clone(), s3)
        }
        StoreKind::Gcs => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(&bucket)
                .with_retry(retry)
                .with_config(GoogleConfigKey::Client(ClientConfigKey::Timeout), REQUEST_TIMEOUT)
                .with_config(GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout), CONNECT_TIMEOUT);
            for (key, value) in options {
                b = b.with_config(GoogleConfigKey::from_str(&key).map_err(|_| bad(&key))?, value);
            }
            let has = |k: GoogleConfigKey| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
            let explicit = has(GoogleConfigKey::ServiceAccount)
                || has(GoogleConfigKey::ServiceAccountKey)
                || has(GoogleConfigKey::ApplicationCredentials)
                || b.get_config_value(&GoogleConfigKey::SkipSignature).is_some_and(|v| v == "true");
            if !explicit && !metadata_allowed(kind) {
                return Err(no_credentials());
            }
            let gcs = Arc::new(b.build().map_err(failed)?);
            (gcs.clone(), gcs)
        }
        StoreKind::Azure => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(location.as_str())
                .with_retry(retry)
                .with_config(AzureConfigKey::Client(ClientConfigKey::Timeout), REQUEST_TIMEOUT)
                .with_config(AzureConfigKey::Client(ClientConfigKey::ConnectTimeout), CONNECT_TIMEOUT);
            for (key, value) in options {
                b = b.with_config(AzureConfigKey::from_str(&key).map_err(|_| bad(&key))?, value);
            }
            let has = |k: AzureConfigKey| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
            let explicit = has(AzureConfigKey::AccessKey)
                || has(AzureConfigKey::SasKey)
                || has(AzureConfigKey::Token)
                || has(AzureConfigKey::ClientSecret)
                || has(AzureConfigKey::FederatedTokenFile)
                || b.get_config_value(&AzureConfigKey::UseEmulator).is_some_and(|v| v == "true")
                || b.get_config_value(&AzureConfigKey::SkipSignature).is_some_and(|v| v == "true")
                || b.get_config_value(&AzureConfigKey::UseAzureCli).is_some_and(|v| v == "true");
            if !explicit && !metadata_allowed(kind) {
                return Err(no_credentials());
            }
            let azure = Arc::new(b.build().map_err(failed)?);
            (azure.clone(), azure)
        }
    };
    let url_mode = config.map(|c| c.url_mode).unwrap_or_default();
    Ok(CloudStore { store, signer, url_mode })
}

/// `GET|HEAD` of a proxied table's file: `segments` (decoded, checked) under the table root,
/// streamed from the store with the requested range.
pub(crate) async fn send_object(
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
    let (status, start, len) = super::local::serve::requested_part(method, headers, meta.size, audit)?;
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
    Ok(super::local::serve::file_response(body, status, start, len, meta.size))
}

/// What a store failure means for the provider, without secrets: the error with URL queries
/// left out.
fn explain(e: &object_store::Error) -> String {
    let hint = match e {
        object_store::Error::NotFound { .. } => "not found: check the bucket and the path",
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            "access refused: check the credentials"
        }
        _ => "the store failed or cannot be reached: check the endpoint and the network",
    };
    format!("{hint} ({})", crate::error::without_url_queries(&crate::error::error_chain(e)))
}

/// Checks that a Delta log is at the object-store table `location` (read with the storage
/// location of `locations` that covers it): lists `_delta_log/` and finds a commit or a
/// checkpoint. Returns how many log files it saw.
pub async fn check_delta_log(location: &Url, locations: &[StorageLocation]) -> Result<usize, String> {
    use futures::TryStreamExt as _;
    let config = d2o_catalog::storage_location::covering(locations, location);
    let store = build(location, config)?.store;
    let root = Path::from_url_path(location.path()).map_err(|e| format!("'{location}' is not a usable path: {e}"))?;
    let log = root.join("_delta_log");
    let listing = tokio::time::timeout(Duration::from_secs(60), store.list(Some(&log)).try_collect::<Vec<_>>())
        .await
        .map_err(|_| format!("listing {location}_delta_log/ took longer than 60 s"))?
        .map_err(|e| format!("cannot list {location}_delta_log/: {}", explain(&e)))?;
    let log_files = listing
        .iter()
        .filter(|m| m.location.extension().is_some_and(|e| e == "json" || e == "parquet" || e == "crc"))
        .count();
    if log_files == 0 {
        return Err(format!("no Delta log at {location} (nothing under _delta_log/)"));
    }
    Ok(log_files)
}

/// What `d2o storage check` found.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageCheck {
    pub name: String,
    pub url: String,
    /// Objects seen in the first page of the listing.
    pub listed: usize,
    /// The object read (its first byte), if there was one.
    pub read: Option<String>,
}

/// Tries a storage location: builds its store, lists under its prefix and reads one byte of
/// the first object listed. The error says what to fix.
pub async fn check_location(location: &StorageLocation) -> Result<StorageCheck, String> {
    use futures::StreamExt as _;
    use object_store::ObjectStoreExt as _;
    let store = build(&location.url, Some(location))?.store;
    let prefix = Path::from_url_path(location.url.path()).map_err(|e| format!("'{}': {e}", location.url))?;
    let first_page = async {
        let mut listing = store.list(Some(&prefix)).take(100);
        let mut seen = Vec::new();
        while let Some(item) = listing.next().await {
            seen.push(item?);
        }
        Ok::<_, object_store::Error>(seen)
    };
    let seen = tokio::time::timeout(Duration::from_secs(60), first_page)
        .await
        .map_err(|_| format!("listing {} took longer than 60 s", location.url))?
        .map_err(|e| format!("cannot list {}: {}", location.url, explain(&e)))?;
    let mut read = None;
    if let Some(first) = seen.iter().find(|m| m.size > 0) {
        let range = 0..1;
        store
            .get_range(&first.location, range)
            .await
            .map_err(|e| format!("listed, but cannot read {}: {}", first.location, explain(&e)))?;
        read = Some(first.location.to_string());
    }
    Ok(StorageCheck { name: location.name.clone(), url: location.url.to_string(), listed: seen.len(), read })
}
