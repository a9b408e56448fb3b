//! The recipient-facing [`Catalog`] over SQL.

use std::collections::BTreeMap;

use async_trait::async_trait;
use d2o_protocol::model::{Page, Schema, Share, Table};
use sha2::{Digest, Sha256};
use url::Url;

use super::{SqlCatalog, db_err, get_i64, get_opt_i64, get_opt_str, get_str, now_ms};
use crate::page::PageToken;
use crate::{AuditEvent, Catalog, CatalogError, PageRequest, Principal, SharedTable};

/// The stored form of a token: its SHA-256, hex. Tokens are 256 random bits, so a fast hash
/// is enough (a slow password hash would only slow down every request).
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves a keyset page: the page size and the last key of the previous page.
fn keyset(page: &PageRequest, listing: &str) -> Result<(usize, Option<String>), CatalogError> {
    let size = page.size()?;
    let after = match page.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(PageToken::decode(t, listing)?.position),
    };
    Ok((size, after))
}

/// Trims a fetched page of `size + 1` rows to `size`, with the next token if there was more.
fn finish<T>(mut items: Vec<T>, size: usize, listing: &str, key: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > size;
    items.truncate(size);
    let next_page_token = match (more, items.last()) {
        (true, Some(last)) => Some(PageToken { listing: listing.to_owned(), position: key(last) }.encode()),
        // maxResults=0 with items remaining: a token that starts from the beginning.
        (true, None) => Some(PageToken { listing: listing.to_owned(), position: String::new() }.encode()),
        _ => None,
    };
    Page { items, next_page_token }
}

/// A listed table from a `shared_tables` row.
fn table_item(row: &sqlx::any::AnyRow, share_name: &str, share_id: &str) -> Result<Table, CatalogError> {
    Ok(Table {
        name: get_str(row, "name")?,
        schema: get_str(row, "schema_name")?,
        share: share_name.to_owned(),
        share_id: Some(share_id.to_owned()),
        id: Some(get_str(row, "id")?),
    })
}

impl SqlCatalog {
    /// The id of a share the principal was granted, or `NotFound`.
    async fn granted_share(&self, who: &Principal, share: &str) -> Result<(String, String), CatalogError> {
        let row = sqlx::query(self.sql(
            "SELECT s.id, s.name FROM shares s JOIN grants g ON g.share_id = s.id JOIN recipients r ON r.id = g.recipient_id
             WHERE s.name_key = ? AND r.name_key = ?",
        ))
        .bind(share.to_lowercase())
        .bind(who.recipient.to_lowercase())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .ok_or_else(|| CatalogError::not_found("share", share))?;
        Ok((get_str(&row, "id")?, get_str(&row, "name")?))
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn authenticate(&self, bearer_token: Option<&str>) -> Result<Principal, CatalogError> {
        let token = bearer_token.ok_or_else(|| CatalogError::Unauthenticated("a bearer token is required".into()))?;
        let invalid = || CatalogError::Unauthenticated("the bearer token is not valid".into());
        let row = sqlx::query(self.sql(
            "SELECT r.name, r.properties, r.expires_at AS recipient_expires, t.expires_at, t.revoked_at
             FROM tokens t JOIN recipients r ON r.id = t.recipient_id WHERE t.token_hash = ?",
        ))
        .bind(token_hash(token))
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .ok_or_else(invalid)?;
        let now = now_ms();
        if get_opt_i64(&row, "revoked_at")?.is_some() {
            return Err(CatalogError::Unauthenticated("the bearer token has been revoked".into()));
        }
        let expired = |e: Option<i64>| e.is_some_and(|e| e <= now);
        if expired(get_opt_i64(&row, "expires_at")?) || expired(get_opt_i64(&row, "recipient_expires")?) {
            return Err(CatalogError::Unauthenticated("the bearer token has expired".into()));
        }
        let properties: BTreeMap<String, String> =
            serde_json::from_str(&get_str(&row, "properties")?).unwrap_or_default();
        Ok(Principal { recipient: get_str(&row, "name")?, properties })
    }

    async fn list_shares(&self, who: &Principal, page: &PageRequest) -> Result<Page<Share>, CatalogError> {
        let listing = "shares";
        let (size, after) = keyset(page, listing)?;
        let rows = sqlx::query(self.sql(
            "SELECT s.id, s.name, s.name_key, s.comment FROM shares s JOIN grants g ON g.share_id = s.id
             JOIN recipients r ON r.id = g.recipient_id WHERE r.name_key = ? AND s.name_key > ? ORDER BY s.name_key LIMIT ?",
        ))
        .bind(who.recipient.to_lowercase())
        .bind(after.unwrap_or_default())
        .bind(size as i64 + 1)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut items = Vec::new();
        for row in &rows {
            items.push((
                get_str(row, "name_key")?,
                Share {
                    name: get_str(row, "name")?,
                    id: Some(get_str(row, "id")?),
                    display_name: None,
                    comment: get_opt_str(row, "comment")?,
                    properties: BTreeMap::new(),
                },
            ));
        }
        let page = finish(items, size, listing, |(k, _)| k.clone());
        Ok(Page { items: page.items.into_iter().map(|(_, s)| s).collect(), next_page_token: page.next_page_token })
    }

    async fn get_share(&self, who: &Principal, share: &str) -> Result<Share, CatalogError> {
        let (id, name) = self.granted_share(who, share).await?;
        Ok(Share { name, id: Some(id), display_name: None, comment: None, properties: BTreeMap::new() })
    }

    async fn list_schemas(
        &self,
        who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Schema>, CatalogError> {
        let (share_id, share_name) = self.granted_share(who, share).await?;
        let listing = format!("schemas/{}", share.to_lowercase());
        let (size, after) = keyset(page, &listing)?;
        let rows = sqlx::query(self.sql(
            "SELECT schema_key, MIN(schema_name) AS schema_name FROM shared_tables WHERE share_id = ? AND schema_key > ?
             GROUP BY schema_key ORDER BY schema_key LIMIT ?",
        ))
        .bind(&share_id)
        .bind(after.unwrap_or_default())
        .bind(size as i64 + 1)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut items = Vec::new();
        for row in &rows {
            items.push((
                get_str(row, "schema_key")?,
                Schema { name: get_str(row, "schema_name")?, share: share_name.clone() },
            ));
        }
        let page = finish(items, size, &listing, |(k, _)| k.clone());
        Ok(Page { items: page.items.into_iter().map(|(_, s)| s).collect(), next_page_token: page.next_page_token })
    }

    async fn list_tables(
        &self,
        who: &Principal,
        share: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError> {
        let (share_id, share_name) = self.granted_share(who, share).await?;
        let listing = format!("tables/{}/{}", share.to_lowercase(), schema.to_lowercase());
        let (size, after) = keyset(page, &listing)?;
        let rows = sqlx::query(self.sql(
            "SELECT id, name, name_key, schema_name FROM shared_tables WHERE share_id = ? AND schema_key = ? AND name_key > ?
             ORDER BY name_key LIMIT ?",
        ))
        .bind(&share_id)
        .bind(schema.to_lowercase())
        .bind(after.clone().unwrap_or_default())
        .bind(size as i64 + 1)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        if rows.is_empty() && after.is_none() {
            return Err(CatalogError::not_found("schema", format!("{share}.{schema}")));
        }
        let mut items = Vec::new();
        for row in &rows {
            items.push((get_str(row, "name_key")?, table_item(row, &share_name, &share_id)?));
        }
        let page = finish(items, size, &listing, |(k, _)| k.clone());
        Ok(Page { items: page.items.into_iter().map(|(_, t)| t).collect(), next_page_token: page.next_page_token })
    }

    async fn list_all_tables(
        &self,
        who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError> {
        let (share_id, share_name) = self.granted_share(who, share).await?;
        let listing = format!("all-tables/{}", share.to_lowercase());
        let (size, after) = keyset(page, &listing)?;
        // The position is "schema_key/name_key"; names cannot contain '/'.
        let (after_schema, after_name) = match &after {
            Some(p) => p
                .split_once('/')
                .map(|(s, n)| (s.to_owned(), n.to_owned()))
                .ok_or_else(|| CatalogError::InvalidArgument("invalid 'nextPageToken'".into()))?,
            None => (String::new(), String::new()),
        };
        let rows = sqlx::query(self.sql(
            "SELECT id, name, name_key, schema_name, schema_key FROM shared_tables
             WHERE share_id = ? AND (schema_key > ? OR (schema_key = ? AND name_key > ?))
             ORDER BY schema_key, name_key LIMIT ?",
        ))
        .bind(&share_id)
        .bind(&after_schema)
        .bind(&after_schema)
        .bind(&after_name)
        .bind(size as i64 + 1)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut items = Vec::new();
        for row in &rows {
            items.push((
                format!("{}/{}", get_str(row, "schema_key")?, get_str(row, "name_key")?),
                table_item(row, &share_name, &share_id)?,
            ));
        }
        let page = finish(items, size, &listing, |(k, _)| k.clone());
        Ok(Page { items: page.items.into_iter().map(|(_, t)| t).collect(), next_page_token: page.next_page_token })
    }

    async fn get_table(
        &self,
        who: &Principal,
        share: &str,
        schema: &str,
        table: &str,
    ) -> Result<SharedTable, CatalogError> {
        let (share_id, share_name) = self.granted_share(who, share).await?;
        let row = sqlx::query(self.sql(
            "SELECT id, name, schema_name, location, history_shared, start_version, cdf_enabled, partition_filter
             FROM shared_tables WHERE share_id = ? AND schema_key = ? AND name_key = ?",
        ))
        .bind(&share_id)
        .bind(schema.to_lowercase())
        .bind(table.to_lowercase())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            let schema_exists: Option<String> = sqlx::query_scalar(
                self.sql("SELECT id FROM shared_tables WHERE share_id = ? AND schema_key = ? LIMIT 1"),
            )
            .bind(&share_id)
            .bind(schema.to_lowercase())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
            return Err(match schema_exists {
                None => CatalogError::not_found("schema", format!("{share}.{schema}")),
                Some(_) => CatalogError::not_found("table", format!("{share}.{schema}.{table}")),
            });
        };
        let location = get_str(&row, "location")?;
        Ok(SharedTable {
            share: share_name,
            schema: get_str(&row, "schema_name")?,
            name: get_str(&row, "name")?,
            share_id: Some(share_id),
            id: Some(get_str(&row, "id")?),
            location: Url::parse(&location)
                .map_err(|e| CatalogError::Internal(format!("stored location '{location}': {e}")))?,
            history_shared: get_i64(&row, "history_shared")? != 0,
            start_version: get_i64(&row, "start_version")?.max(0) as u64,
            cdf_enabled: get_opt_i64(&row, "cdf_enabled")?.map(|v| v != 0),
            partition_filter: get_opt_str(&row, "partition_filter")?,
        })
    }

    async fn table_locations(&self) -> Result<Vec<Url>, CatalogError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT DISTINCT location FROM shared_tables")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows.iter().filter_map(|l| Url::parse(l).ok()).collect())
    }

    async fn record(&self, event: &AuditEvent) -> Result<(), CatalogError> {
        crate::Admin::append_audit(self, event).await
    }
}
