use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use d2o_protocol::model::{Page, Schema, Share, Table};
use ipnet::IpNet;
use url::Url;

use crate::{AuditEvent, CatalogError, FederationPolicy, PageRequest, PartitionFilter, RateLimit, StorageLocation};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The recipient's stable id: unlike the name, never reused by another recipient.
    pub id: String,
    /// The recipient's name (for the YAML catalog, the one holder of the bearer token).
    pub recipient: String,
    /// The recipient's properties, which partition filters may refer to.
    pub properties: BTreeMap<String, String>,
    /// When set, the networks the recipient's requests (and downloads of the URLs issued to
    /// it) must come from.
    pub allowed_networks: Option<Arc<[IpNet]>>,
    /// When set, the most requests it may make (per server process).
    pub rate_limit: Option<RateLimit>,
}

impl Principal {
    /// A principal with no IP restriction.
    pub fn new(id: impl Into<String>, recipient: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        Principal { id: id.into(), recipient: recipient.into(), properties, allowed_networks: None, rate_limit: None }
    }

    /// Whether a request from `client` (`None`: unknown) may act for this principal.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        match (&self.allowed_networks, client) {
            (None, _) => true,
            (Some(networks), Some(ip)) => {
                // An IPv4 client seen on an IPv6 socket is matched as IPv4.
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                networks.iter().any(|n| n.contains(&ip))
            }
            (Some(_), None) => false,
        }
    }
}

/// A table as shared: its names in the share, and where and how its data may be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTable {
    /// Names as stored in the catalog (not as the caller spelled them).
    pub share: String,
    pub schema: String,
    pub name: String,
    pub share_id: Option<String>,
    /// The table entry's id, unique in the catalog and stable (two entries over one Delta
    /// table have different ids).
    pub id: String,
    /// The Delta table root, with a trailing `/`.
    pub location: Url,
    /// Whether time travel and the change data feed are shared.
    pub history_shared: bool,
    /// The earliest version recipients may read.
    pub start_version: u64,
    /// `Some(false)` when the provider turned the change data feed off for this table; `None`
    /// when the table's own `delta.enableChangeDataFeed` decides.
    pub cdf_enabled: Option<bool>,
    /// The provider's partition filter, parsed; `None` shares every partition.
    pub partition_filter: Option<PartitionFilter>,
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
            id: Some(self.id.clone()),
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

    /// Resolves an OAuth client's id and secret (at the token endpoint). Must return
    /// [`CatalogError::Unauthenticated`] unless `client_id` names an OAuth client credential
    /// whose secret is `secret` and that would authenticate now, comparing in constant time.
    /// A bearer token is not an OAuth client secret, nor the reverse.
    async fn authenticate_client(&self, client_id: &str, secret: &str) -> Result<Principal, CatalogError>;

    /// The principal and public key (PEM) of the private-key OAuth client `client_id`, for
    /// checking its signed assertion. Must return [`CatalogError::Unauthenticated`] unless it
    /// is such a client and would authenticate now.
    async fn client_key(&self, client_id: &str) -> Result<(Principal, String), CatalogError>;

    /// Resolves a credential the server verified itself, by id: the OAuth client an access
    /// token was issued to, or the federation policy a JWT satisfied. Must return
    /// [`CatalogError::Unauthenticated`] when that credential is gone, revoked or expired, or
    /// its recipient is, seeing changes as fresh as [`Catalog::authenticate`] does: a
    /// revocation rejects outstanding access tokens at once.
    async fn authenticate_credential(&self, credential_id: &str) -> Result<Principal, CatalogError>;

    /// The federation policies that are not revoked (an expired recipient's included: its
    /// tokens are then refused by [`Catalog::authenticate_credential`] as expired), as fresh as
    /// [`Catalog::authenticate`] sees the catalog.
    async fn federation_policies(&self) -> Result<Arc<Vec<FederationPolicy>>, CatalogError>;

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

    /// The recipient with id `recipient_id` and the table with id `table_id`, as that recipient
    /// may read it now: the check behind a file URL signed earlier, made when it is used.
    ///
    /// Must return [`CatalogError::NotFound`] when the recipient no longer exists or has no
    /// credential that would authenticate now (all revoked or expired), and when no share
    /// granted to it holds a table with that id. Must see changes as fresh as
    /// [`Catalog::authenticate`] does, so that a revocation stops downloads as it stops requests.
    async fn file_access(&self, recipient_id: &str, table_id: &str) -> Result<(Principal, SharedTable), CatalogError>;

    /// The named storage locations, as of the catalog's latest refresh (which every request
    /// makes when it authenticates). Must not do I/O: it is asked at every table read.
    fn storage_locations(&self) -> Arc<Vec<StorageLocation>>;

    /// Records one protocol request. Must not return before the event is stored (or logged, for
    /// catalogs without storage); an error means the event was not recorded.
    async fn record(&self, event: &AuditEvent) -> Result<(), CatalogError>;

    /// Whether the catalog can serve requests now (the server's `/ready`): its storage answers
    /// and its schema is migrated. Must be cheap (load balancers ask every few seconds) and
    /// must not hang: an error's message says why, in words fit for an unauthenticated caller
    /// (no host names, paths or database errors). A catalog held in memory is always ready.
    async fn ready(&self) -> Result<(), CatalogError> {
        Ok(())
    }
}
