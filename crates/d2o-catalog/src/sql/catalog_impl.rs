//! The recipient-facing [`Catalog`] over SQL.

use async_trait::async_trait;
use d2o_protocol::model::{Page, Schema, Share, Table};
use sha2::{Digest, Sha256};

use super::view::SchemaEntry;
use super::{SqlCatalog, now_ms};
use crate::page::PageToken;
use crate::{
    AuditEvent, Catalog, CatalogError, FederationPolicy, PageRequest, Principal, SharedTable, StorageLocation,
};

/// The stored form of a token: its SHA-256, hex. Tokens are 256 random bits, so a fast hash
/// is enough (a slow password hash would only slow down every request).
pub(crate) fn token_hash(token: &str) -> String {
    d2o_protocol::hex::to_hex(&Sha256::digest(token.as_bytes()))
}

/// One page of a listing sorted by key: the items after the page token's key, with a token
/// for the next page if there are more. `make` builds only the items returned.
fn keyset_page<K: AsRef<str>, S, T>(
    items: impl Iterator<Item = (K, S)>,
    make: impl Fn(S) -> T,
    page: &PageRequest,
    listing: &str,
) -> Result<Page<T>, CatalogError> {
    let size = page.size()?;
    let after = match page.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(PageToken::decode(t, listing)?.position),
    };
    let mut items: Vec<(K, S)> =
        items.skip_while(|(k, _)| after.as_deref().is_some_and(|a| k.as_ref() <= a)).take(size + 1).collect();
    let more = items.len() > size;
    items.truncate(size);
    let next_page_token = more.then(|| {
        // maxResults=0 with items remaining: a token that starts from the beginning.
        let position = items.last().map(|(k, _)| k.as_ref().to_owned()).unwrap_or_default();
        PageToken { listing: listing.to_owned(), position }.encode()
    });
    Ok(Page { items: items.into_iter().map(|(_, s)| make(s)).collect(), next_page_token })
}

/// Reads are served from the in-memory [`super::view::RecipientView`]; `authenticate`, which
/// starts every request, makes sure it is current (see that module's freshness contract).
#[async_trait]
impl Catalog for SqlCatalog {
    async fn authenticate(&self, bearer_token: Option<&str>) -> Result<Principal, CatalogError> {
        let token = bearer_token.ok_or_else(|| CatalogError::Unauthenticated("a bearer token is required".into()))?;
        self.fresh_view().await?.authenticate(&token_hash(token), now_ms())
    }

    async fn authenticate_client(&self, client_id: &str, secret: &str) -> Result<Principal, CatalogError> {
        self.fresh_view().await?.authenticate_client(client_id, &token_hash(secret), now_ms())
    }

    async fn client_key(&self, client_id: &str) -> Result<(Principal, String), CatalogError> {
        let (principal, key) = self.fresh_view().await?.client_key(client_id, now_ms())?;
        Ok((principal, key.to_string()))
    }

    async fn authenticate_credential(&self, credential_id: &str) -> Result<Principal, CatalogError> {
        self.fresh_view().await?.authenticate_credential(credential_id, now_ms())
    }

    async fn federation_policies(&self) -> Result<std::sync::Arc<Vec<FederationPolicy>>, CatalogError> {
        Ok(std::sync::Arc::new(self.fresh_view().await?.federation_policies()))
    }

    async fn list_shares(&self, who: &Principal, page: &PageRequest) -> Result<Page<Share>, CatalogError> {
        let view = self.view().await?;
        keyset_page(view.granted(who).map(|s| (&s.key, s)), |s| s.share.clone(), page, "shares")
    }

    async fn get_share(&self, who: &Principal, share: &str) -> Result<Share, CatalogError> {
        Ok(self.view().await?.granted_share(who, share)?.share.clone())
    }

    async fn list_schemas(
        &self,
        who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Schema>, CatalogError> {
        let view = self.view().await?;
        let s = view.granted_share(who, share)?;
        let make = |sc: &SchemaEntry| Schema { name: sc.name.clone(), share: s.share.name.clone() };
        keyset_page(s.schemas.iter().map(|sc| (&sc.key, sc)), make, page, &format!("schemas/{}", share.to_lowercase()))
    }

    async fn list_tables(
        &self,
        who: &Principal,
        share: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError> {
        let view = self.view().await?;
        let schema_entry = view
            .granted_share(who, share)?
            .schema(&schema.to_lowercase())
            .ok_or_else(|| CatalogError::not_found("schema", format!("{share}.{schema}")))?;
        let listing = format!("tables/{}/{}", share.to_lowercase(), schema.to_lowercase());
        keyset_page(schema_entry.tables.iter().map(|(k, t)| (k, t)), SharedTable::listed, page, &listing)
    }

    async fn list_all_tables(
        &self,
        who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError> {
        let view = self.view().await?;
        let s = view.granted_share(who, share)?;
        // The key is "schema_key/name_key": names cannot contain '/', so it sorts as the pair.
        let items = s.schemas.iter().flat_map(|sc| sc.tables.iter().map(move |(k, t)| (format!("{}/{k}", sc.key), t)));
        keyset_page(items, SharedTable::listed, page, &format!("all-tables/{}", share.to_lowercase()))
    }

    async fn get_table(
        &self,
        who: &Principal,
        share: &str,
        schema: &str,
        table: &str,
    ) -> Result<SharedTable, CatalogError> {
        let view = self.view().await?;
        view.granted_share(who, share)?
            .schema(&schema.to_lowercase())
            .ok_or_else(|| CatalogError::not_found("schema", format!("{share}.{schema}")))?
            .table(&table.to_lowercase())
            .cloned()
            .ok_or_else(|| CatalogError::not_found("table", format!("{share}.{schema}.{table}")))
    }

    async fn file_access(&self, recipient_id: &str, table_id: &str) -> Result<(Principal, SharedTable), CatalogError> {
        self.fresh_view().await?.file_access(recipient_id, table_id, now_ms())
    }

    fn storage_locations(&self) -> std::sync::Arc<Vec<StorageLocation>> {
        self.views.storage()
    }

    async fn record(&self, event: &AuditEvent) -> Result<(), CatalogError> {
        crate::Admin::append_audit(self, event).await
    }

    /// Ready when the migrations are applied and the catalog's database task reads the
    /// generation (as every request's authentication does), within [`READY_WITHIN`].
    async fn ready(&self) -> Result<(), CatalogError> {
        let check = async {
            super::migrations::check_applied(self).await?;
            self.fresh_view().await.map_err(|e| {
                tracing::warn!(error = %e, "the readiness check could not read the catalog");
                CatalogError::internal("the catalog cannot be read")
            })?;
            Ok(())
        };
        match tokio::time::timeout(READY_WITHIN, check).await {
            Ok(result) => result,
            Err(_) => {
                Err(CatalogError::internal(format!("the catalog did not answer within {} s", READY_WITHIN.as_secs())))
            }
        }
    }
}

/// How long the readiness check waits for the database.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
