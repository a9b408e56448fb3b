//! Where a table's data is read from: the seam between a table location and the object store
//! that holds it.
//!
//! [`DeltaTables`](crate::DeltaTables) asks a [`StoreOpener`] for the store of each location it
//! reads. [`LocalStores`] opens tables on the local file system and nothing else; a server
//! with other storage (object stores with their options and credentials) passes its own opener.

use std::sync::Arc;

use delta_kernel_default_engine::storage::store_from_url;
use object_store::DynObjectStore;
use url::Url;

use crate::DeltaError;

/// Opens the object store behind a table location.
pub trait StoreOpener: Send + Sync + 'static {
    /// The store holding the table at `location` (its root URL, ending with `/`). Must return
    /// [`DeltaError::Unsupported`] for a location it does not serve, at once: no I/O and no
    /// credential lookup happens for such a location.
    fn open(&self, location: &Url) -> Result<Arc<DynObjectStore>, DeltaError>;

    /// Which store holds `location`: two locations with one key share a store (and an
    /// engine). A key must change when the store's configuration does. Must not do I/O.
    fn store_key(&self, location: &Url) -> String {
        format!("{}://{}", location.scheme(), location.authority())
    }
}

/// Tables on the local file system (`file://`) only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStores;

impl StoreOpener for LocalStores {
    fn open(&self, location: &Url) -> Result<Arc<DynObjectStore>, DeltaError> {
        // A cloud store would look for credentials (environment, profile files, instance
        // metadata) on the request's time.
        if location.scheme() != "file" {
            return Err(DeltaError::Unsupported(format!(
                "tables on object storage ({}://) are read through the server's storage, not this opener",
                location.scheme()
            )));
        }
        store_from_url(location).map_err(|e| DeltaError::Unsupported(format!("cannot open storage: {e}")))
    }
}
