//! The provider's side of the catalog: shares, tables, recipients, tokens, grants, audit.

use std::collections::BTreeMap;

use crate::{
    ActivationInfo, ActivationRequest, CredentialKind, CredentialRequest, FederationPolicy, Issued, IssuedActivation,
    IssuedToken, NewFederationPolicy, RateLimit, StorageLocation,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// A share with its tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ShareInfo {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub tables: Vec<TableEntry>,
    /// Recipients the share is granted to.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// A table in a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TableEntry {
    /// The table's id, as recipients see it (`Table.id`): kept from the file on import, else
    /// generated when the table is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub schema: String,
    pub name: String,
    /// The Delta table root (a path or URI).
    pub location: String,
    #[serde(default)]
    pub history_shared: bool,
    #[serde(default)]
    pub start_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdf_enabled: Option<bool>,
    /// A partition filter every recipient's reads are restricted to, e.g. `region = 'EU'` or
    /// `region = CURRENT_RECIPIENT('region')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What a provider gives to create a recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NewRecipient {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// When the recipient's access ends (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Its first credential: by default a bearer token returned at once.
    #[serde(default)]
    pub credential: CredentialRequest,
}

/// A recipient, its tokens (never the secrets) and the shares granted to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecipientInfo {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub created_at: i64,
    #[serde(default)]
    pub tokens: Vec<TokenInfo>,
    #[serde(default)]
    pub shares: Vec<String>,
    /// The networks its requests must come from; `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_access_list: Option<Vec<String>>,
    /// Its request rate limit; `None`: only the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The OIDC federation policies that let its identity provider's tokens act for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federation_policies: Vec<FederationPolicy>,
    /// Its latest activation link, if one was issued (without the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationLinkInfo>,
}

/// A recipient's latest activation link, as the provider sees it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ActivationLinkInfo {
    pub kind: CredentialKind,
    pub state: crate::ActivationState,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
}

/// A bearer token's lifecycle, without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    #[serde(default)]
    pub kind: CredentialKind,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl TokenInfo {
    /// Whether the token authenticates at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now_ms)
    }
}

/// One audited request or admin action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub time_ms: i64,
    /// The recipient's name, or `admin`.
    pub principal: String,
    /// What was done: `list_shares`, `query`, `changes`, `download`, `admin.share.create`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What the status alone does not say: the range of a file download (`bytes=0-1023`), or
    /// how much of a response was sent before the client went away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which audit events to return; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// Only events whose status is at least this (`400` with `max_status: 499` is the 4xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_status: Option<u16>,
    /// Only events whose status is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_status: Option<u16>,
    /// At most this many events (default 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Skips this many of the newest matching events (paging; keep `until_ms` fixed across
    /// pages so that new events do not shift them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

impl AuditFilter {
    /// The status range a name stands for: `404`, `4xx`, `ok` (below 400) or `error` (400
    /// and above), as the CLI, the admin API and the console take it.
    pub fn status_range(text: &str) -> Result<(u16, u16), CatalogError> {
        let text = text.trim().to_ascii_lowercase();
        let bad = || {
            CatalogError::InvalidArgument(format!("status '{text}' is not a code, a class such as 4xx, ok or error"))
        };
        match text.as_str() {
            "ok" => return Ok((0, 399)),
            "error" => return Ok((400, 999)),
            _ => {}
        }
        if let Some(class) = text.strip_suffix("xx") {
            let digit: u16 = class.parse().ok().filter(|d| (1..=5).contains(d)).ok_or_else(bad)?;
            return Ok((digit * 100, digit * 100 + 99));
        }
        let code: u16 = text.parse().ok().filter(|c| (100..=599).contains(c)).ok_or_else(bad)?;
        Ok((code, code))
    }
}

/// What recipients' usage is grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum UsageBy {
    /// One series per recipient.
    #[default]
    Recipient,
    /// One series per table (`share.schema.table`).
    Table,
}

/// Which usage to sum: recipients' requests (not admin actions, not refused anonymous ones)
/// in `[since_ms, until_ms)`, per `bucket_ms` and per recipient or table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageQuery {
    pub by: UsageBy,
    pub since_ms: i64,
    pub until_ms: i64,
    /// The width of a time bucket (ms, at least 1,000; at most 1,000 buckets per query).
    pub bucket_ms: i64,
    /// Only this recipient's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Only this share's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
}

impl UsageQuery {
    /// The most buckets one query may ask for.
    pub const MAX_BUCKETS: i64 = 1_000;

    /// Refuses an empty or reversed range, buckets under a second, and more than
    /// [`UsageQuery::MAX_BUCKETS`] buckets.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.until_ms <= self.since_ms {
            return Err(CatalogError::InvalidArgument("the usage range ends before it starts".into()));
        }
        if self.bucket_ms < 1_000 {
            return Err(CatalogError::InvalidArgument("usage buckets are at least a second wide".into()));
        }
        let span = self.until_ms.saturating_sub(self.since_ms);
        let buckets = span / self.bucket_ms + i64::from(span % self.bucket_ms != 0);
        if buckets > Self::MAX_BUCKETS {
            return Err(CatalogError::InvalidArgument(format!(
                "{buckets} usage buckets asked for; at most {} per query",
                Self::MAX_BUCKETS
            )));
        }
        Ok(())
    }
}

/// Requests, files and bytes of one recipient or table in one time bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsagePoint {
    /// The bucket's start (ms since the epoch): `since_ms` plus a multiple of `bucket_ms`.
    pub bucket_ms: i64,
    /// The recipient's name, or `share.schema.table`.
    pub key: String,
    pub requests: i64,
    pub files: i64,
    pub bytes: i64,
}

/// Administration of the catalog. Names are matched case-insensitively and validated as in
/// the protocol (no `/`, no control characters, at most 255 characters). Every operation is
/// atomic: on error nothing has changed.
#[async_trait]
pub trait Admin: Send + Sync + 'static {
    /// Fails with `AlreadyExists` when a share of that name exists.
    async fn create_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError>;
    async fn list_shares(&self) -> Result<Vec<ShareInfo>, CatalogError>;
    async fn show_share(&self, name: &str) -> Result<ShareInfo, CatalogError>;
    async fn comment_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError>;
    /// Drops the share, its tables and its grants.
    async fn drop_share(&self, name: &str) -> Result<(), CatalogError>;
    /// Adds a table under `table.schema` / `table.name`. Fails with `AlreadyExists` when the
    /// name is taken in the share, `InvalidArgument` for a bad partition filter.
    async fn add_table(&self, share: &str, table: TableEntry) -> Result<ShareInfo, CatalogError>;
    /// Adds many tables to a share at once, skipping names already taken; returns how many
    /// were added. Atomic: bad input (a bad name, location or partition filter) is an error and
    /// adds nothing.
    async fn import_tables(&self, share: &str, tables: Vec<TableEntry>) -> Result<usize, CatalogError>;
    async fn remove_table(&self, share: &str, schema: &str, table: &str) -> Result<ShareInfo, CatalogError>;

    /// Creates a recipient and its first credential, as `recipient.credential` asks: a
    /// credential now, an activation link, or nothing.
    async fn create_recipient(&self, recipient: NewRecipient) -> Result<(RecipientInfo, Issued), CatalogError>;
    async fn list_recipients(&self) -> Result<Vec<RecipientInfo>, CatalogError>;
    async fn show_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError>;
    /// Cuts every active credential's lifetime to at most `grace_seconds` from now (0 ends them
    /// now; a lifetime is never extended), then issues what `next` asks for. Federation
    /// policies are not credentials with secrets and are left alone.
    async fn rotate_credential(
        &self,
        name: &str,
        grace_seconds: u64,
        next: CredentialRequest,
    ) -> Result<Issued, CatalogError>;
    /// Issues a new activation link for the recipient and makes its older links unusable.
    /// Live credentials are not touched.
    async fn issue_activation(&self, name: &str, request: ActivationRequest) -> Result<IssuedActivation, CatalogError>;
    /// The activation link with this secret, as its page shows it (nothing changes). Unknown
    /// secrets are `NotFound`; secrets are compared by hash, in constant time.
    async fn activation(&self, secret: &str) -> Result<ActivationInfo, CatalogError>;
    /// Redeems an activation link: marks it used and creates its credential, atomically, so
    /// that of two concurrent redemptions exactly one succeeds. A link that is not
    /// [`crate::ActivationState::Ready`] is `InvalidArgument` naming its state.
    async fn redeem_activation(&self, secret: &str) -> Result<(ActivationInfo, IssuedToken), CatalogError>;
    /// Registers a private-key OAuth client for the recipient (RFC 7523): its PEM public key
    /// (checked by [`crate::credential::check_public_key`]). Returns the credential; its id is
    /// the client id. The client lives as long as the recipient, like its other credentials.
    async fn add_client_key(&self, name: &str, public_key: &str) -> Result<TokenInfo, CatalogError>;
    /// Adds an OIDC federation policy (checked by [`NewFederationPolicy::validate`]).
    async fn add_federation_policy(
        &self,
        name: &str,
        policy: NewFederationPolicy,
    ) -> Result<RecipientInfo, CatalogError>;
    /// Removes one of the recipient's federation policies, by id.
    async fn remove_federation_policy(&self, name: &str, policy_id: &str) -> Result<RecipientInfo, CatalogError>;
    /// Sets (with `Some`) or clears the recipient's IP access list, checked by
    /// [`crate::ip_access::parse_networks`]. Takes effect at the recipient's next request, and
    /// for the URLs already issued to it.
    async fn set_ip_access_list(
        &self,
        name: &str,
        networks: Option<Vec<String>>,
    ) -> Result<RecipientInfo, CatalogError>;
    /// Replaces the recipient's properties (what partition filters compare with, such as
    /// `region=EU`). Takes effect at its next request.
    async fn set_properties(
        &self,
        name: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<RecipientInfo, CatalogError>;
    /// Sets (with `Some`) or clears the recipient's request rate limit. Takes effect at its
    /// next request.
    async fn set_rate_limit(&self, name: &str, limit: Option<RateLimit>) -> Result<RecipientInfo, CatalogError>;
    /// Revokes every credential of the recipient at once: tokens, OAuth clients (and the access
    /// tokens issued to them), federation policies and unused activation links.
    async fn revoke_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError>;
    async fn drop_recipient(&self, name: &str) -> Result<(), CatalogError>;

    async fn grant(&self, share: &str, recipient: &str) -> Result<(), CatalogError>;
    async fn revoke_grant(&self, share: &str, recipient: &str) -> Result<(), CatalogError>;

    /// Adds a named storage location (already checked: [`StorageLocation::new`]). Fails with
    /// `AlreadyExists` when the name is taken.
    async fn add_storage(&self, location: StorageLocation) -> Result<StorageLocation, CatalogError>;
    /// The storage locations, by name.
    async fn list_storage(&self) -> Result<Vec<StorageLocation>, CatalogError>;
    async fn show_storage(&self, name: &str) -> Result<StorageLocation, CatalogError>;
    /// Drops a storage location; its tables stay, read with the store's defaults.
    async fn drop_storage(&self, name: &str) -> Result<(), CatalogError>;

    /// Audit events, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, CatalogError>;
    /// Deletes at most `batch` audit events older than `before_ms`, oldest first, and returns
    /// how many it deleted: callers repeat until fewer than `batch` go, so that no single
    /// statement holds the log (and the requests recording into it) for long.
    async fn prune_audit(&self, before_ms: i64, batch: u32) -> Result<u64, CatalogError>;
    /// Recipients' usage over time, from the audit log, ordered by bucket then key. Only
    /// buckets with requests appear.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsagePoint>, CatalogError>;
    /// Makes the catalog hold the spec's shares, atomically: creates what is missing, updates
    /// tables whose id, location or settings changed, keeps the legacy token (see
    /// [`crate::ImportSpec`]), and with `prune` drops what the spec does not name. A dry run
    /// returns the same plan and changes nothing; bad input is refused and changes nothing.
    async fn import(&self, spec: &crate::ImportSpec, dry_run: bool) -> Result<crate::ImportPlan, CatalogError>;
    /// Appends an event; an event that cannot be written is an error, never dropped silently.
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), CatalogError>;
}

/// Properties from `key=value` pairs, as the CLI and the admin API take them.
pub fn parse_properties<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, CatalogError> {
    pairs
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CatalogError::InvalidArgument(format!("property '{p}' is not key=value")))
        })
        .collect()
}
