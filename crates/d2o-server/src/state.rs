//! What every handler shares.

use std::sync::Arc;

use d2o_catalog::{Admin, Catalog};
use d2o_delta::DeltaTables;

use crate::signing::UrlSigner;

/// Settings of the protocol server (the reference YAML's keys, plus d2o's).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The protocol's path prefix, e.g. `/delta-sharing` (no trailing `/`).
    pub endpoint: String,
    /// How long file URLs stay valid.
    pub url_timeout_secs: u64,
    /// Externally visible base URL for file URLs; the `Host` header is used when `None`.
    pub public_url: Option<String>,
    pub evaluate_sql_hints: bool,
    pub evaluate_json_hints: bool,
    /// The largest `maxFiles` honoured.
    pub page_size_limit: u32,
    pub page_token_ttl_ms: u64,
    pub refresh_token_ttl_ms: u64,
    /// The token that guards the admin API; the API is off without it.
    pub admin_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoint: "/delta-sharing".to_owned(),
            url_timeout_secs: 3600,
            public_url: None,
            evaluate_sql_hints: false,
            evaluate_json_hints: true,
            page_size_limit: 10_000,
            page_token_ttl_ms: 259_200_000,
            refresh_token_ttl_ms: 3_600_000,
            admin_token: None,
        }
    }
}

/// The shared state: catalog, tables, signer and settings.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub tables: Arc<DeltaTables>,
    pub signer: Arc<UrlSigner>,
    pub settings: Arc<Settings>,
    /// The provider's side of the catalog, when it has one (not for a YAML config).
    pub admin: Option<Arc<dyn Admin>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}
