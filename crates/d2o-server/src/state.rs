//! What every handler shares.

use std::sync::Arc;

use d2o_catalog::{Admin, Catalog};
use d2o_delta::DeltaTables;

use crate::settings::Settings;
use crate::signing::SigningKey;
use crate::storage::Storage;

/// The shared state: catalog, tables, keys, storage and settings.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub tables: Arc<DeltaTables>,
    /// Signs file URLs of local tables and page and refresh tokens.
    pub key: Arc<SigningKey>,
    /// How recipients reach each table's files.
    pub storage: Arc<Storage>,
    pub settings: Arc<Settings>,
    /// The provider's side of the catalog, when it has one (not for a YAML config).
    pub admin: Option<Arc<dyn Admin>>,
    /// Request rate limits, server-wide and per recipient.
    pub(crate) limits: Arc<crate::limits::RateLimiter>,
    /// Private-key clients' assertions already redeemed (each works once).
    pub(crate) assertions: Arc<crate::auth::oauth::SeenAssertions>,
    /// Verifies JWTs of recipients' identity providers (OIDC federation).
    pub(crate) federation: Arc<crate::federation::Federation>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}
