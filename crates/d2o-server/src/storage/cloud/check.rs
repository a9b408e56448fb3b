//! Checks a provider runs before sharing: is a Delta log at a location, does a storage
//! location answer.

use std::time::Duration;

use d2o_catalog::StorageLocation;
use object_store::path::Path;
use url::Url;

use super::build::build;

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
/// location of `locations` that covers it): lists `_delta_log/` until it finds a commit or a
/// checkpoint.
pub async fn check_delta_log(location: &Url, locations: &[StorageLocation]) -> Result<(), String> {
    use futures::StreamExt as _;
    // A table root, as the catalog stores it: ending with `/`.
    let mut location = location.clone();
    if !location.path().ends_with('/') {
        let path = format!("{}/", location.path());
        location.set_path(&path);
    }
    let location = &location;
    let config = d2o_catalog::storage_location::covering(locations, location);
    let store = build(location, config)?.store;
    let root = Path::from_url_path(location.path()).map_err(|e| format!("'{location}' is not a usable path: {e}"))?;
    let log = root.join("_delta_log");
    let first_entry = async {
        let mut listing = store.list(Some(&log));
        while let Some(meta) = listing.next().await {
            if meta?.location.extension().is_some_and(|e| e == "json" || e == "parquet") {
                return Ok(true);
            }
        }
        Ok::<_, object_store::Error>(false)
    };
    let found = tokio::time::timeout(Duration::from_secs(60), first_entry)
        .await
        .map_err(|_| format!("listing {location}_delta_log/ took longer than 60 s"))?
        .map_err(|e| format!("cannot list {location}_delta_log/: {}", explain(&e)))?;
    if !found {
        return Err(format!("no Delta log at {location} (no commit or checkpoint under _delta_log/)"));
    }
    Ok(())
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
