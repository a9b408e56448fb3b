//! The recipient-facing catalog held in memory: a [`RecipientView`] of one generation.
//!
//! Serving a request needs a token lookup, a grant check and a table lookup; doing those in the
//! database costs several round trips per request. Instead, [`SqlCatalog`] keeps a [`RecipientView`] of
//! everything recipients can see (tokens, recipients, grants, shares and tables), labelled with
//! the catalog generation it was read at. Triggers bump the generation in every transaction that
//! changes those tables (migration 2), whoever makes the change: this process, the CLI working on
//! the catalog directly, or another replica.
//!
//! Freshness contract:
//! - [`SqlCatalog::fresh_view`] (used by `authenticate`, which starts every request) uses the
//!   generation read by a statement that started at most [`GENERATION_MAX_AGE`] (1 ms) before
//!   the call, or else waits for a new one; concurrent callers share one such statement, which
//!   also stores queued audit events (see [`super::batch`]). So a request sees every change
//!   committed more than 1 ms before it began, and the database answers no more than one short
//!   statement per batch of requests.
//! - [`SqlCatalog::view`] (the other reads of a request) returns the newest view without
//!   asking the database, unless this process changed the catalog since it was read.
//! - Expiry is evaluated at each call against the clock, never cached.
//!
//! A change reloads the whole view (a handful of `SELECT`s; tens of milliseconds for 10,000
//! tables), so admin writes are cheap to make and reads stay at memory speed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use d2o_protocol::model::Share;
use url::Url;

use super::{Backend, SqlCatalog, db_err, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::{CatalogError, CredentialKind, FederationPolicy, PartitionFilter, Principal, SharedTable, StorageLocation};

/// How old a generation read may be for [`SqlCatalog::fresh_view`]: the statement that read
/// it started at most this long before the call. Under load the audit inserts, which read the
/// generation too, keep it this fresh without a query of their own.
pub(crate) const GENERATION_MAX_AGE: Duration = Duration::from_millis(1);

/// Everything recipients can see, as of one catalog generation.
#[derive(Debug, Default)]
pub(crate) struct RecipientView {
    /// The generation this was read at (its data is at least this new).
    pub(crate) generation: i64,
    /// The local change counter when loading began (see [`ViewCache`]).
    local_changes: u64,
    /// By token hash (bearer tokens and OAuth client secrets).
    tokens: HashMap<String, TokenEntry>,
    /// Token id (an OAuth client id) to token hash; federation policy id to policy index.
    credential_by_id: HashMap<String, CredentialRef>,
    /// Every federation policy, revoked ones included.
    federation: Vec<FederationPolicy>,
    recipients: Vec<RecipientEntry>,
    /// Recipient name key to index in `recipients`.
    recipient_index: HashMap<String, usize>,
    /// Recipient id to index in `recipients`.
    recipient_by_id: HashMap<String, usize>,
    /// Table id to (share, schema, table) indexes.
    table_by_id: HashMap<String, (usize, usize, usize)>,
    /// Sorted by name key.
    pub(crate) shares: Vec<ShareEntry>,
    /// The named storage locations, by name.
    pub(crate) storage: Arc<Vec<StorageLocation>>,
}

#[derive(Debug)]
struct TokenEntry {
    id: String,
    kind: CredentialKind,
    /// A private-key client's public key (PEM).
    public_key: Option<Arc<str>>,
    recipient: usize,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

#[derive(Debug)]
enum CredentialRef {
    Token(String),
    Policy(usize),
}

#[derive(Debug)]
struct RecipientEntry {
    principal: Principal,
    expires_at: Option<i64>,
    /// `(expires_at, revoked_at)` of each of the recipient's credentials (tokens, OAuth
    /// clients, federation policies): whether it still has one, for file URLs it was given.
    token_lifetimes: Vec<(Option<i64>, Option<i64>)>,
    /// Share name key to index in `shares`: the shares granted to the recipient.
    granted: BTreeMap<String, usize>,
}

/// A share and its tables.
#[derive(Debug)]
pub(crate) struct ShareEntry {
    pub(crate) key: String,
    pub(crate) share: Share,
    /// Sorted by schema key.
    pub(crate) schemas: Vec<SchemaEntry>,
}

/// A schema: the tables of a share under one schema name.
#[derive(Debug)]
pub(crate) struct SchemaEntry {
    pub(crate) key: String,
    /// The name as stored (the smallest spelling, if tables disagree on case).
    pub(crate) name: String,
    /// `(name key, table)`, sorted by name key.
    pub(crate) tables: Vec<(String, SharedTable)>,
}

impl RecipientView {
    /// The principal a bearer token belongs to, if the token is known, not revoked and not
    /// expired (token or recipient) at `now_ms`.
    pub(crate) fn authenticate(&self, token_hash: &str, now_ms: i64) -> Result<Principal, CatalogError> {
        let token = self
            .tokens
            .get(token_hash)
            .ok_or_else(|| CatalogError::Unauthenticated("the bearer token is not valid".into()))?;
        if token.kind != CredentialKind::BearerToken {
            return Err(CatalogError::Unauthenticated(
                "this is an OAuth client secret: exchange it for an access token at the token endpoint".into(),
            ));
        }
        self.token_principal(token, now_ms)
    }

    /// The principal of the OAuth client `client_id` whose secret hashes to `secret_hash`.
    pub(crate) fn authenticate_client(
        &self,
        client_id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<Principal, CatalogError> {
        let invalid = || CatalogError::Unauthenticated("the client id or secret is not valid".into());
        let token = self.tokens.get(secret_hash).ok_or_else(invalid)?;
        let same_id: bool = subtle::ConstantTimeEq::ct_eq(token.id.as_bytes(), client_id.as_bytes()).into();
        if !same_id || token.kind != CredentialKind::OauthClientCredentials {
            return Err(invalid());
        }
        self.token_principal(token, now_ms)
    }

    /// The principal and public key (PEM) of the private-key OAuth client `client_id`.
    pub(crate) fn client_key(&self, client_id: &str, now_ms: i64) -> Result<(Principal, Arc<str>), CatalogError> {
        let invalid = || CatalogError::Unauthenticated("the client id is not valid".into());
        let Some(CredentialRef::Token(hash)) = self.credential_by_id.get(client_id) else { return Err(invalid()) };
        let token = self.tokens.get(hash).ok_or_else(invalid)?;
        let key = token.public_key.clone().filter(|_| token.kind == CredentialKind::OauthPrivateKeyJwt);
        let key = key.ok_or_else(invalid)?;
        Ok((self.token_principal(token, now_ms)?, key))
    }

    /// The principal of an OAuth client or federation policy, by id, if it can authenticate
    /// at `now_ms`.
    pub(crate) fn authenticate_credential(&self, id: &str, now_ms: i64) -> Result<Principal, CatalogError> {
        let gone = || CatalogError::Unauthenticated("the credential this token was issued for no longer exists".into());
        match self.credential_by_id.get(id).ok_or_else(gone)? {
            CredentialRef::Token(hash) => {
                let token = self.tokens.get(hash).ok_or_else(gone)?;
                self.token_principal(token, now_ms)
            }
            CredentialRef::Policy(p) => {
                let policy = &self.federation[*p];
                if policy.revoked_at.is_some() {
                    return Err(CatalogError::Unauthenticated("the federation policy has been revoked".into()));
                }
                let recipient = self.recipient_by_id.get(&policy.recipient_id).ok_or_else(gone)?;
                self.live_principal(&self.recipients[*recipient], None, now_ms)
            }
        }
    }

    /// The federation policies that are not revoked. A policy of an expired recipient is
    /// among them, so that its token is refused as expired rather than as unmatched.
    pub(crate) fn federation_policies(&self) -> Vec<FederationPolicy> {
        self.federation.iter().filter(|p| p.revoked_at.is_none()).cloned().collect()
    }

    fn token_principal(&self, token: &TokenEntry, now_ms: i64) -> Result<Principal, CatalogError> {
        if token.revoked_at.is_some() {
            return Err(CatalogError::Unauthenticated("the credential has been revoked".into()));
        }
        self.live_principal(&self.recipients[token.recipient], token.expires_at, now_ms)
    }

    /// The recipient's principal unless it, or its credential (expiring at `expires_at`), has
    /// expired at `now_ms`.
    fn live_principal(
        &self,
        recipient: &RecipientEntry,
        expires_at: Option<i64>,
        now_ms: i64,
    ) -> Result<Principal, CatalogError> {
        let expired = |e: Option<i64>| e.is_some_and(|e| e <= now_ms);
        if expired(expires_at) || expired(recipient.expires_at) {
            return Err(CatalogError::Unauthenticated("the credential has expired".into()));
        }
        Ok(recipient.principal.clone())
    }

    /// The recipient with this id and the table with that id in one of its granted shares, if
    /// the recipient still has a credential that authenticates at `now_ms`.
    pub(crate) fn file_access(
        &self,
        recipient_id: &str,
        table_id: &str,
        now_ms: i64,
    ) -> Result<(Principal, SharedTable), CatalogError> {
        let not_found = || CatalogError::not_found("table", table_id);
        let recipient = self.recipient_by_id.get(recipient_id).map(|&r| &self.recipients[r]).ok_or_else(not_found)?;
        let live = |e: Option<i64>| e.is_none_or(|e| e > now_ms);
        let active = live(recipient.expires_at)
            && recipient.token_lifetimes.iter().any(|&(expires, revoked)| revoked.is_none() && live(expires));
        if !active {
            return Err(not_found());
        }
        let &(s, sc, t) = self.table_by_id.get(table_id).ok_or_else(not_found)?;
        let share = &self.shares[s];
        if !recipient.granted.contains_key(&share.key) {
            return Err(not_found());
        }
        Ok((recipient.principal.clone(), share.schemas[sc].tables[t].1.clone()))
    }

    /// The shares granted to `who`, in name-key order (empty for an unknown recipient).
    pub(crate) fn granted<'a>(&'a self, who: &Principal) -> impl Iterator<Item = &'a ShareEntry> + 'a {
        self.recipient_index
            .get(&who.recipient.to_lowercase())
            .into_iter()
            .flat_map(move |&r| self.recipients[r].granted.values().map(move |&s| &self.shares[s]))
    }

    /// A share granted to `who`, or `NotFound` (the same for a share that does not exist).
    pub(crate) fn granted_share(&self, who: &Principal, share: &str) -> Result<&ShareEntry, CatalogError> {
        self.recipient_index
            .get(&who.recipient.to_lowercase())
            .and_then(|&r| self.recipients[r].granted.get(&share.to_lowercase()))
            .map(|&s| &self.shares[s])
            .ok_or_else(|| CatalogError::not_found("share", share))
    }
}

impl ShareEntry {
    pub(crate) fn schema(&self, schema_key: &str) -> Option<&SchemaEntry> {
        self.schemas.binary_search_by(|s| s.key.as_str().cmp(schema_key)).ok().map(|i| &self.schemas[i])
    }
}

impl SchemaEntry {
    pub(crate) fn table(&self, name_key: &str) -> Option<&SharedTable> {
        self.tables.binary_search_by(|(k, _)| k.as_str().cmp(name_key)).ok().map(|i| &self.tables[i].1)
    }
}

/// The current view of one catalog, shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct ViewCache {
    current: RwLock<Option<Arc<RecipientView>>>,
    /// Counts changes made through this process; a view whose loading began before the
    /// latest one is out of date even if the generation check has not run yet.
    local_changes: AtomicU64,
    /// One reload at a time.
    reload: tokio::sync::Mutex<()>,
}

impl ViewCache {
    /// Marks the view out of date after a change made through this process.
    pub(crate) fn changed(&self) {
        self.local_changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The storage locations of the latest view loaded (none before the first).
    pub(crate) fn storage(&self) -> Arc<Vec<StorageLocation>> {
        self.current.read().ok().and_then(|c| c.as_ref().map(|v| v.storage.clone())).unwrap_or_default()
    }

    /// The current view if it is at least `generation` and has every local change.
    fn current_if(&self, generation: Option<i64>) -> Option<Arc<RecipientView>> {
        let current = self.current.read().ok()?.clone()?;
        let local = self.local_changes.load(Ordering::SeqCst);
        (current.local_changes == local && generation.is_none_or(|g| current.generation >= g)).then_some(current)
    }
}

impl SqlCatalog {
    /// A view with every change committed more than [`GENERATION_MAX_AGE`] before this
    /// call (a reload only if the generation moved).
    pub(crate) async fn fresh_view(&self) -> Result<Arc<RecipientView>, CatalogError> {
        let generation = match self.recent_generation.within(GENERATION_MAX_AGE) {
            Some(generation) => generation,
            None => self.database.submit(super::batch::Io::Generation).await?,
        };
        self.view_at_least(Some(generation)).await
    }

    /// The newest view, without a generation check (see the module's freshness contract).
    pub(crate) async fn view(&self) -> Result<Arc<RecipientView>, CatalogError> {
        self.view_at_least(None).await
    }

    async fn view_at_least(&self, generation: Option<i64>) -> Result<Arc<RecipientView>, CatalogError> {
        let cache = &self.views;
        if let Some(s) = cache.current_if(generation) {
            return Ok(s);
        }
        let _one_at_a_time = cache.reload.lock().await;
        // Another caller may have reloaded while this one waited.
        if let Some(s) = cache.current_if(generation) {
            return Ok(s);
        }
        let local_changes = cache.local_changes.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let loaded = self.load(local_changes).await;
        let result = if loaded.is_ok() { "ok" } else { "error" };
        metrics::counter!("d2o_catalog_reloads_total", "result" => result).increment(1);
        metrics::histogram!("d2o_catalog_reload_seconds").record(started.elapsed().as_secs_f64());
        let view = Arc::new(loaded?);
        tracing::debug!(generation = view.generation, "catalog view loaded");
        if let Ok(mut current) = cache.current.write() {
            *current = Some(view.clone());
        }
        Ok(view)
    }

    /// Reads the whole recipient-facing catalog in one consistent transaction.
    async fn load(&self, local_changes: u64) -> Result<RecipientView, CatalogError> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        if self.backend() == Backend::Postgres {
            // One view of the database for every statement below.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let generation: i64 = sqlx::query_scalar("SELECT generation FROM catalog_generation WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let share_rows =
            sqlx::query("SELECT id, name, name_key, comment FROM shares").fetch_all(&mut *tx).await.map_err(db_err)?;
        let table_rows = sqlx::query(
            "SELECT share_id, id, name, name_key, schema_name, schema_key, location, history_shared, start_version,
             cdf_enabled, partition_filter FROM shared_tables",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let recipient_rows = sqlx::query(
            "SELECT id, name, name_key, properties, expires_at, ip_access_list, rate_limit FROM recipients",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let grant_rows =
            sqlx::query("SELECT share_id, recipient_id FROM grants").fetch_all(&mut *tx).await.map_err(db_err)?;
        let token_rows =
            sqlx::query("SELECT id, kind, token_hash, recipient_id, expires_at, revoked_at, public_key FROM tokens")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        let federation = self.federation_policies_in(&mut tx, None).await?;
        let storage = super::storage_rows::storage_locations(&mut tx).await?;
        tx.commit().await.map_err(db_err)?;

        // Sorted here rather than by the database, whose collation may not be byte order.
        let mut shares = share_rows
            .iter()
            .map(|row| {
                Ok(ShareEntry {
                    key: get_str(row, "name_key")?,
                    share: Share {
                        name: get_str(row, "name")?,
                        id: Some(get_str(row, "id")?),
                        display_name: None,
                        comment: get_opt_str(row, "comment")?,
                        properties: BTreeMap::new(),
                    },
                    schemas: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        shares.sort_by(|a, b| a.key.cmp(&b.key));
        let share_by_id: HashMap<String, usize> =
            shares.iter().enumerate().filter_map(|(i, s)| Some((s.share.id.clone()?, i))).collect();
        // Share index -> schema key -> (schema name, name key -> table).
        type Tables = BTreeMap<String, (String, BTreeMap<String, SharedTable>)>;
        let mut tables: HashMap<usize, Tables> = HashMap::new();
        for row in &table_rows {
            let Some(&s) = share_by_id.get(&get_str(row, "share_id")?) else { continue };
            let share = &shares[s].share;
            let schema_name = get_str(row, "schema_name")?;
            let location = get_str(row, "location")?;
            let partition_filter = get_opt_str(row, "partition_filter")?
                .map(|f| PartitionFilter::parse(&f))
                .transpose()
                .map_err(|e| CatalogError::internal(format!("stored partition filter: {e}")))?;
            let table = SharedTable {
                share: share.name.clone(),
                schema: schema_name.clone(),
                name: get_str(row, "name")?,
                share_id: share.id.clone(),
                id: get_str(row, "id")?,
                location: Url::parse(&location)
                    .map_err(|e| CatalogError::internal(format!("stored location '{location}': {e}")))?,
                history_shared: get_i64(row, "history_shared")? != 0,
                start_version: get_i64(row, "start_version")?.max(0) as u64,
                cdf_enabled: get_opt_i64(row, "cdf_enabled")?.map(|v| v != 0),
                partition_filter,
            };
            let schema = tables
                .entry(s)
                .or_default()
                .entry(get_str(row, "schema_key")?)
                .or_insert_with(|| (schema_name.clone(), BTreeMap::new()));
            if schema_name < schema.0 {
                schema.0 = schema_name;
            }
            schema.1.insert(get_str(row, "name_key")?, table);
        }
        let mut table_by_id = HashMap::with_capacity(table_rows.len());
        for (s, schemas) in tables {
            shares[s].schemas = schemas
                .into_iter()
                .map(|(key, (name, tables))| SchemaEntry { key, name, tables: tables.into_iter().collect() })
                .collect();
            for (sc, schema) in shares[s].schemas.iter().enumerate() {
                for (t, (_, table)) in schema.tables.iter().enumerate() {
                    table_by_id.insert(table.id.clone(), (s, sc, t));
                }
            }
        }

        let mut recipients = Vec::with_capacity(recipient_rows.len());
        let mut recipient_index = HashMap::with_capacity(recipient_rows.len());
        let mut recipient_by_id = HashMap::with_capacity(recipient_rows.len());
        for row in &recipient_rows {
            let id = get_str(row, "id")?;
            recipient_by_id.insert(id.clone(), recipients.len());
            recipient_index.insert(get_str(row, "name_key")?, recipients.len());
            recipients.push(RecipientEntry {
                principal: Principal {
                    allowed_networks: super::stored_networks(row)?.map(Arc::from),
                    rate_limit: super::stored_rate_limit(row)?,
                    id,
                    recipient: get_str(row, "name")?,
                    properties: serde_json::from_str(&get_str(row, "properties")?).unwrap_or_default(),
                },
                expires_at: get_opt_i64(row, "expires_at")?,
                token_lifetimes: Vec::new(),
                granted: BTreeMap::new(),
            });
        }
        for row in &grant_rows {
            let share = share_by_id.get(&get_str(row, "share_id")?);
            let recipient = recipient_by_id.get(&get_str(row, "recipient_id")?);
            if let (Some(&s), Some(&r)) = (share, recipient) {
                recipients[r].granted.insert(shares[s].key.clone(), s);
            }
        }
        let mut tokens = HashMap::with_capacity(token_rows.len());
        let mut credential_by_id = HashMap::new();
        for row in &token_rows {
            if let Some(&recipient) = recipient_by_id.get(&get_str(row, "recipient_id")?) {
                let (expires_at, revoked_at) = (get_opt_i64(row, "expires_at")?, get_opt_i64(row, "revoked_at")?);
                recipients[recipient].token_lifetimes.push((expires_at, revoked_at));
                let (id, hash) = (get_str(row, "id")?, get_str(row, "token_hash")?);
                let kind = CredentialKind::from_stored(get_opt_str(row, "kind")?.as_deref())?;
                if kind != CredentialKind::BearerToken {
                    credential_by_id.insert(id.clone(), CredentialRef::Token(hash.clone()));
                }
                let public_key = get_opt_str(row, "public_key")?.map(Arc::from);
                tokens.insert(hash, TokenEntry { id, kind, public_key, recipient, expires_at, revoked_at });
            }
        }
        for (i, policy) in federation.iter().enumerate() {
            if let Some(&recipient) = recipient_by_id.get(&policy.recipient_id) {
                recipients[recipient].token_lifetimes.push((None, policy.revoked_at));
                credential_by_id.insert(policy.id.clone(), CredentialRef::Policy(i));
            }
        }
        Ok(RecipientView {
            generation,
            local_changes,
            tokens,
            credential_by_id,
            federation,
            recipients,
            recipient_index,
            recipient_by_id,
            table_by_id,
            shares,
            storage: Arc::new(storage),
        })
    }
}
