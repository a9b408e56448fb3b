use std::collections::BTreeMap;

use async_trait::async_trait;
use d2o_protocol::model::{Page, Schema, Share, Table};
use url::Url;

use crate::{AuditEvent, CatalogError, PageRequest};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The recipient's name (for the YAML catalog, the one holder of the bearer token).
    pub recipient: String,
    /// The recipient's properties, which partition filters may refer to.
    pub properties: BTreeMap<String, String>,
}

/// A table as shared: its names in the share, and where and how its data may be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTable {
    /// Names as stored in the catalog (not as the caller spelled them).
    pub share: String,
    pub schema: String,
    pub name: String,
    pub share_id: Option<String>,
    pub id: Option<String>,
    /// The Delta table root, with a trailing `/`.
    pub location: Url,
    /// Whether time travel and the change data feed are shared.
    pub history_shared: bool,
    /// The earliest version recipients may read.
    pub start_version: u64,
    /// `Some(false)` when the provider turned the change data feed off for this table; `None`
    /// when the table's own `delta.enableChangeDataFeed` decides.
    pub cdf_enabled: Option<bool>,
    /// The provider's partition filter (see [`crate::PartitionFilter`]); `None` shares every
    /// partition.
    pub partition_filter: Option<String>,
}

impl SharedTable {
    /// `share.schema.table`, for messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}.{}", self.share, self.schema, self.name)
    }

    /// The table as listed to recipients.
    pub fn listed(&self) -> Table {
        Table {
            name: self.name.clone(),
            schema: self.schema.clone(),
            share: self.share.clone(),
            share_id: self.share_id.clone(),
            id: self.id.clone(),
        }
    }
}

/// The source of truth for shares and recipients.
///
/// Contract, for every implementation:
/// - Names are matched case-insensitively; results carry the names as stored.
/// - A share the principal may not see answers exactly as one that does not exist:
///   [`CatalogError::NotFound`], never a different error or a different message.
/// - Lists are in a stable order; a page never repeats an item of an earlier page of the same
///   listing, and `next_page_token` is `None` on the last page.
/// - Page tokens are opaque; a token that does not decode, or belongs to another listing, is
///   [`CatalogError::InvalidArgument`].
/// - Changes made through the catalog are visible to the next call (no restart).
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Resolves a bearer token (`None` when the request had none).
    ///
    /// Must return [`CatalogError::Unauthenticated`] for a missing, wrong, expired or revoked
    /// token, and must compare secrets in constant time.
    async fn authenticate(&self, bearer_token: Option<&str>) -> Result<Principal, CatalogError>;

    async fn list_shares(&self, who: &Principal, page: &PageRequest) -> Result<Page<Share>, CatalogError>;

    async fn get_share(&self, who: &Principal, share: &str) -> Result<Share, CatalogError>;

    async fn list_schemas(
        &self,
        who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Schema>, CatalogError>;

    async fn list_tables(
        &self,
        who: &Principal,
        share: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError>;

    async fn list_all_tables(
        &self,
        who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError>;

    /// The table the principal asks for. `NotFound` names the first missing level.
    async fn get_table(
        &self,
        who: &Principal,
        share: &str,
        schema: &str,
        table: &str,
    ) -> Result<SharedTable, CatalogError>;

    /// Every table location the catalog shares, so that file URLs signed before a restart can
    /// be resolved again. May be expensive; called rarely.
    async fn table_locations(&self) -> Result<Vec<Url>, CatalogError>;

    /// Records one protocol request. Must not return before the event is stored (or logged, for
    /// catalogs without storage); an error means the event was not recorded.
    async fn record(&self, event: &AuditEvent) -> Result<(), CatalogError>;
}
