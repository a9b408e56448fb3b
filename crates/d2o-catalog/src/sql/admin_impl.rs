//! The provider-facing [`Admin`] over SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::storage_rows::{STORAGE_COLUMNS, storage_location, storage_locations};
use super::{SqlCatalog, db_err, get_i64, get_opt_i64, get_opt_str, get_str, is_unique_violation, new_id, now_ms};
use crate::share_config::validate_name;
use crate::{
    ActivationInfo, ActivationRequest, Admin, AuditEvent, AuditFilter, CatalogError, CredentialRequest, Issued,
    IssuedActivation, IssuedToken, NewFederationPolicy, NewRecipient, PartitionFilter, RateLimit, RecipientInfo,
    ShareInfo, StorageLocation, TableEntry, TokenInfo, UsageBy, UsagePoint, UsageQuery,
};

/// A table location as stored: resolved (relative paths against the working directory) and
/// one d2o can serve.
pub(super) fn servable_location(location: &str) -> Result<url::Url, CatalogError> {
    crate::share_config::resolve_location(location, &std::env::current_dir().unwrap_or_default())
        .and_then(|url| crate::share_config::check_servable(&url).map(|()| url))
        .map_err(CatalogError::InvalidArgument)
}

pub(super) fn check_name(kind: &str, name: &str) -> Result<(), CatalogError> {
    validate_name(name).map_err(|e| CatalogError::InvalidArgument(format!("invalid {kind} name: {e}")))
}

/// The columns [`table_entry`] reads.
pub(super) const TABLE_COLUMNS: &str =
    "id, schema_name, name, location, history_shared, start_version, cdf_enabled, partition_filter, comment";

pub(super) fn table_entry(row: &AnyRow) -> Result<TableEntry, CatalogError> {
    Ok(TableEntry {
        id: Some(get_str(row, "id")?),
        schema: get_str(row, "schema_name")?,
        name: get_str(row, "name")?,
        location: get_str(row, "location")?,
        history_shared: get_i64(row, "history_shared")? != 0,
        start_version: get_i64(row, "start_version")?.max(0) as u64,
        cdf_enabled: get_opt_i64(row, "cdf_enabled")?.map(|v| v != 0),
        partition_filter: get_opt_str(row, "partition_filter")?,
        comment: get_opt_str(row, "comment")?,
    })
}

impl SqlCatalog {
    /// After a statement that changes one row named `name`: the view is out of date, and no row
    /// changed means no such `kind`.
    fn changed_one(&self, rows: u64, kind: &'static str, name: impl Into<String>) -> Result<(), CatalogError> {
        self.views.changed();
        if rows == 0 {
            return Err(CatalogError::not_found(kind, name));
        }
        Ok(())
    }

    /// Sets one nullable text column of a recipient (a name from this file, never input).
    async fn update_recipient(
        &self,
        name: &str,
        column: &'static str,
        value: Option<String>,
    ) -> Result<RecipientInfo, CatalogError> {
        let sql = format!("UPDATE recipients SET {column} = ? WHERE name_key = ?");
        let done = sqlx::query(self.sql(&sql))
            .bind(value)
            .bind(name.to_lowercase())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        self.changed_one(done.rows_affected(), "recipient", name)?;
        self.show_recipient(name).await
    }

    async fn share_row(&self, name: &str) -> Result<AnyRow, CatalogError> {
        sqlx::query(self.sql("SELECT id, name, comment, created_at FROM shares WHERE name_key = ?"))
            .bind(name.to_lowercase())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| CatalogError::not_found("share", name))
    }

    async fn recipient_row(&self, name: &str) -> Result<AnyRow, CatalogError> {
        self.recipient_row_by("name_key", &name.to_lowercase()).await
    }

    /// The recipient whose `column` (`name_key` or `id`, never input) is `value`.
    pub(super) async fn recipient_row_by(&self, column: &'static str, value: &str) -> Result<AnyRow, CatalogError> {
        let sql = format!(
            "SELECT id, name, comment, properties, expires_at, created_at, ip_access_list, rate_limit
             FROM recipients WHERE {column} = ?"
        );
        sqlx::query(self.sql(&sql))
            .bind(value)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| CatalogError::not_found("recipient", value))
    }

    async fn share_info(&self, row: &AnyRow) -> Result<ShareInfo, CatalogError> {
        let id = get_str(row, "id")?;
        let tables = sqlx::query(self.sql(&format!(
            "SELECT {TABLE_COLUMNS} FROM shared_tables WHERE share_id = ? ORDER BY schema_key, name_key"
        )))
        .bind(&id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let recipients: Vec<String> = sqlx::query_scalar(self.sql(
            "SELECT r.name FROM grants g JOIN recipients r ON r.id = g.recipient_id WHERE g.share_id = ? ORDER BY r.name_key",
        ))
        .bind(&id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(ShareInfo {
            name: get_str(row, "name")?,
            comment: get_opt_str(row, "comment")?,
            created_at: get_i64(row, "created_at")?,
            tables: tables.iter().map(table_entry).collect::<Result<_, _>>()?,
            recipients,
            id,
        })
    }

    pub(super) async fn recipient_info(&self, row: &AnyRow) -> Result<RecipientInfo, CatalogError> {
        let id = get_str(row, "id")?;
        let tokens = sqlx::query(self.sql(
            "SELECT id, kind, created_at, expires_at, revoked_at FROM tokens WHERE recipient_id = ? ORDER BY created_at, id",
        ))
        .bind(&id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|t| {
            Ok(TokenInfo {
                id: get_str(t, "id")?,
                kind: crate::CredentialKind::from_stored(get_opt_str(t, "kind")?.as_deref())?,
                created_at: get_i64(t, "created_at")?,
                expires_at: get_opt_i64(t, "expires_at")?,
                revoked_at: get_opt_i64(t, "revoked_at")?,
            })
        })
        .collect::<Result<Vec<_>, CatalogError>>()?;
        let shares: Vec<String> = sqlx::query_scalar(self.sql(
            "SELECT s.name FROM grants g JOIN shares s ON s.id = g.share_id WHERE g.recipient_id = ? ORDER BY s.name_key",
        ))
        .bind(&id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let expires_at = get_opt_i64(row, "expires_at")?;
        let mut conn = self.pool().acquire().await.map_err(db_err)?;
        let federation_policies = self.federation_policies_in(&mut conn, Some(&id)).await?;
        drop(conn);
        Ok(RecipientInfo {
            name: get_str(row, "name")?,
            comment: get_opt_str(row, "comment")?,
            properties: serde_json::from_str(&get_str(row, "properties")?).unwrap_or_default(),
            activation: self.latest_activation(&id, expires_at).await?,
            federation_policies,
            expires_at,
            created_at: get_i64(row, "created_at")?,
            tokens,
            shares,
            ip_access_list: super::stored_networks(row)?.map(|n| n.iter().map(ToString::to_string).collect()),
            rate_limit: super::stored_rate_limit(row)?,
            id,
        })
    }

    /// Validates `table` and inserts it into the share; `false` when the name is taken.
    pub(super) async fn insert_table(
        &self,
        conn: &mut sqlx::AnyConnection,
        share_id: &str,
        table: &TableEntry,
    ) -> Result<bool, CatalogError> {
        check_name("schema", &table.schema)?;
        check_name("table", &table.name)?;
        if let Some(filter) = &table.partition_filter {
            PartitionFilter::parse(filter)?;
        }
        if let Some(id) = &table.id {
            crate::import::check_id(id)?;
        }
        let location = servable_location(&table.location)?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO shared_tables (id, share_id, schema_name, schema_key, name, name_key, location, history_shared,
             start_version, cdf_enabled, partition_filter, comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        ))
        .bind(table.id.clone().unwrap_or_else(new_id))
        .bind(share_id)
        .bind(&table.schema)
        .bind(table.schema.to_lowercase())
        .bind(&table.name)
        .bind(table.name.to_lowercase())
        .bind(location.as_str())
        .bind(i64::from(table.history_shared))
        .bind(table.start_version as i64)
        .bind(table.cdf_enabled.map(i64::from))
        .bind(&table.partition_filter)
        .bind(&table.comment)
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        Ok(inserted.rows_affected() > 0)
    }
}

#[async_trait]
impl Admin for SqlCatalog {
    async fn create_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError> {
        check_name("share", name)?;
        let result = sqlx::query(
            self.sql("INSERT INTO shares (id, name, name_key, comment, created_at) VALUES (?, ?, ?, ?, ?)"),
        )
        .bind(new_id())
        .bind(name)
        .bind(name.to_lowercase())
        .bind(comment)
        .bind(now_ms())
        .execute(self.pool())
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => {
                Err(CatalogError::AlreadyExists { kind: "share", name: name.to_owned() })
            }
            Err(e) => Err(db_err(e)),
            Ok(_) => {
                self.views.changed();
                self.show_share(name).await
            }
        }
    }

    async fn list_shares(&self) -> Result<Vec<ShareInfo>, CatalogError> {
        let rows = sqlx::query("SELECT id, name, comment, created_at FROM shares ORDER BY name_key")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in &rows {
            out.push(self.share_info(row).await?);
        }
        Ok(out)
    }

    async fn show_share(&self, name: &str) -> Result<ShareInfo, CatalogError> {
        let row = self.share_row(name).await?;
        self.share_info(&row).await
    }

    async fn comment_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError> {
        let done = sqlx::query(self.sql("UPDATE shares SET comment = ? WHERE name_key = ?"))
            .bind(comment)
            .bind(name.to_lowercase())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        self.changed_one(done.rows_affected(), "share", name)?;
        self.show_share(name).await
    }

    async fn drop_share(&self, name: &str) -> Result<(), CatalogError> {
        let id = get_str(&self.share_row(name).await?, "id")?;
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        for sql in [
            "DELETE FROM grants WHERE share_id = ?",
            "DELETE FROM shared_tables WHERE share_id = ?",
            "DELETE FROM shares WHERE id = ?",
        ] {
            sqlx::query(self.sql(sql)).bind(&id).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        Ok(())
    }

    async fn add_table(&self, share: &str, table: TableEntry) -> Result<ShareInfo, CatalogError> {
        let share_id = get_str(&self.share_row(share).await?, "id")?;
        let mut conn = self.pool().acquire().await.map_err(db_err)?;
        let added = self.insert_table(&mut conn, &share_id, &table).await?;
        drop(conn);
        self.views.changed();
        if !added {
            return Err(CatalogError::AlreadyExists {
                kind: "table",
                name: format!("{share}.{}.{}", table.schema, table.name),
            });
        }
        self.show_share(share).await
    }

    /// One transaction for the whole list, so a big import costs one commit and its bad input
    /// adds nothing.
    async fn import_tables(&self, share: &str, tables: Vec<TableEntry>) -> Result<usize, CatalogError> {
        let share_id = get_str(&self.share_row(share).await?, "id")?;
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let mut added = 0;
        for table in &tables {
            added += usize::from(self.insert_table(&mut tx, &share_id, table).await?);
        }
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        Ok(added)
    }

    async fn remove_table(&self, share: &str, schema: &str, table: &str) -> Result<ShareInfo, CatalogError> {
        let share_id = get_str(&self.share_row(share).await?, "id")?;
        let done =
            sqlx::query(self.sql("DELETE FROM shared_tables WHERE share_id = ? AND schema_key = ? AND name_key = ?"))
                .bind(&share_id)
                .bind(schema.to_lowercase())
                .bind(table.to_lowercase())
                .execute(self.pool())
                .await
                .map_err(db_err)?;
        self.changed_one(done.rows_affected(), "table", format!("{share}.{schema}.{table}"))?;
        self.show_share(share).await
    }

    async fn create_recipient(&self, r: NewRecipient) -> Result<(RecipientInfo, Issued), CatalogError> {
        check_name("recipient", &r.name)?;
        if let Some(e) = r.expires_at
            && e <= now_ms()
        {
            return Err(CatalogError::InvalidArgument("the expiry of a new recipient must be in the future".into()));
        }
        let id = new_id();
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO recipients (id, name, name_key, comment, properties, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&id)
        .bind(&r.name)
        .bind(r.name.to_lowercase())
        .bind(&r.comment)
        .bind(serde_json::to_string(&r.properties).unwrap_or_else(|_| "{}".into()))
        .bind(r.expires_at)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(CatalogError::AlreadyExists { kind: "recipient", name: r.name.clone() });
            }
            Err(e) => return Err(db_err(e)),
            Ok(_) => {}
        }
        let issued = self.issue(&mut tx, (&id, &r.name), r.expires_at, r.credential).await?;
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        Ok((self.show_recipient(&r.name).await?, issued))
    }

    async fn list_recipients(&self) -> Result<Vec<RecipientInfo>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, name, comment, properties, expires_at, created_at, ip_access_list, rate_limit FROM recipients ORDER BY name_key",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for row in &rows {
            out.push(self.recipient_info(row).await?);
        }
        Ok(out)
    }

    async fn show_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError> {
        let row = self.recipient_row(name).await?;
        self.recipient_info(&row).await
    }

    async fn rotate_credential(
        &self,
        name: &str,
        grace_seconds: u64,
        next: CredentialRequest,
    ) -> Result<Issued, CatalogError> {
        if let CredentialRequest::Activation(a) = &next {
            a.validate()?;
        }
        let row = self.recipient_row(name).await?;
        let id = get_str(&row, "id")?;
        let name = get_str(&row, "name")?;
        let recipient_expires = get_opt_i64(&row, "expires_at")?;
        let grace_end = now_ms().saturating_add(grace_seconds.min(i64::MAX as u64 / 1000) as i64 * 1000);
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // Shorten, never extend: an old credential keeps an earlier expiry if it has one.
        sqlx::query(self.sql(
            "UPDATE tokens SET expires_at = ? WHERE recipient_id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        ))
        .bind(grace_end)
        .bind(&id)
        .bind(grace_end)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // A link not yet redeemed is a credential to be: rotating ends it too.
        self.withdraw_activations(&mut tx, &id, now_ms()).await?;
        let issued = self.issue(&mut tx, (&id, &name), recipient_expires, next).await?;
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        Ok(issued)
    }

    async fn issue_activation(&self, name: &str, request: ActivationRequest) -> Result<IssuedActivation, CatalogError> {
        let row = self.recipient_row(name).await?;
        let (id, name) = (get_str(&row, "id")?, get_str(&row, "name")?);
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let issued = self.insert_activation(&mut tx, (&id, &name), request).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(issued)
    }

    async fn activation(&self, secret: &str) -> Result<ActivationInfo, CatalogError> {
        self.activation_info(secret).await
    }

    async fn redeem_activation(&self, secret: &str) -> Result<(ActivationInfo, IssuedToken), CatalogError> {
        self.redeem(secret).await
    }

    async fn add_client_key(&self, name: &str, public_key: &str) -> Result<TokenInfo, CatalogError> {
        let row = self.recipient_row(name).await?;
        let id = self.insert_client_key(&get_str(&row, "id")?, public_key, get_opt_i64(&row, "expires_at")?).await?;
        let info = self.recipient_info(&row).await?;
        info.tokens
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| CatalogError::internal("the client key just added is missing"))
    }

    async fn add_federation_policy(
        &self,
        name: &str,
        policy: NewFederationPolicy,
    ) -> Result<RecipientInfo, CatalogError> {
        let id = get_str(&self.recipient_row(name).await?, "id")?;
        self.insert_federation_policy(&id, &policy).await?;
        self.show_recipient(name).await
    }

    async fn remove_federation_policy(&self, name: &str, policy_id: &str) -> Result<RecipientInfo, CatalogError> {
        let id = get_str(&self.recipient_row(name).await?, "id")?;
        let done = sqlx::query(self.sql("DELETE FROM federation_policies WHERE id = ? AND recipient_id = ?"))
            .bind(policy_id)
            .bind(&id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        self.changed_one(done.rows_affected(), "federation policy", policy_id)?;
        self.show_recipient(name).await
    }

    async fn set_ip_access_list(
        &self,
        name: &str,
        networks: Option<Vec<String>>,
    ) -> Result<RecipientInfo, CatalogError> {
        let stored = networks
            .map(|list| {
                let parsed = crate::ip_access::parse_networks(&list).map_err(CatalogError::InvalidArgument)?;
                let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
                serde_json::to_string(&shown)
                    .map_err(|e| CatalogError::internal(format!("cannot encode the list: {e}")))
            })
            .transpose()?;
        self.update_recipient(name, "ip_access_list", stored).await
    }

    async fn set_properties(
        &self,
        name: &str,
        properties: std::collections::BTreeMap<String, String>,
    ) -> Result<RecipientInfo, CatalogError> {
        let stored = serde_json::to_string(&properties)
            .map_err(|e| CatalogError::internal(format!("cannot encode the properties: {e}")))?;
        self.update_recipient(name, "properties", Some(stored)).await
    }

    async fn set_rate_limit(&self, name: &str, limit: Option<RateLimit>) -> Result<RecipientInfo, CatalogError> {
        let stored = limit
            .map(|l| serde_json::to_string(&l))
            .transpose()
            .map_err(|e| CatalogError::internal(format!("cannot encode the limit: {e}")))?;
        self.update_recipient(name, "rate_limit", stored).await
    }

    async fn revoke_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError> {
        let id = get_str(&self.recipient_row(name).await?, "id")?;
        let now = now_ms();
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        for sql in [
            "UPDATE tokens SET revoked_at = ? WHERE recipient_id = ? AND revoked_at IS NULL",
            "UPDATE federation_policies SET revoked_at = ? WHERE recipient_id = ? AND revoked_at IS NULL",
        ] {
            sqlx::query(self.sql(sql)).bind(now).bind(&id).execute(&mut *tx).await.map_err(db_err)?;
        }
        self.withdraw_activations(&mut tx, &id, now).await?;
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        self.show_recipient(name).await
    }

    async fn drop_recipient(&self, name: &str) -> Result<(), CatalogError> {
        let id = get_str(&self.recipient_row(name).await?, "id")?;
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        for sql in [
            "DELETE FROM grants WHERE recipient_id = ?",
            "DELETE FROM tokens WHERE recipient_id = ?",
            "DELETE FROM activation_links WHERE recipient_id = ?",
            "DELETE FROM federation_policies WHERE recipient_id = ?",
            "DELETE FROM recipients WHERE id = ?",
        ] {
            sqlx::query(self.sql(sql)).bind(&id).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        self.views.changed();
        Ok(())
    }

    async fn grant(&self, share: &str, recipient: &str) -> Result<(), CatalogError> {
        let share_id = get_str(&self.share_row(share).await?, "id")?;
        let recipient_id = get_str(&self.recipient_row(recipient).await?, "id")?;
        sqlx::query(
            self.sql("INSERT INTO grants (share_id, recipient_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"),
        )
        .bind(share_id)
        .bind(recipient_id)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        self.views.changed();
        Ok(())
    }

    async fn revoke_grant(&self, share: &str, recipient: &str) -> Result<(), CatalogError> {
        let share_id = get_str(&self.share_row(share).await?, "id")?;
        let recipient_id = get_str(&self.recipient_row(recipient).await?, "id")?;
        let done = sqlx::query(self.sql("DELETE FROM grants WHERE share_id = ? AND recipient_id = ?"))
            .bind(share_id)
            .bind(recipient_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        self.changed_one(done.rows_affected(), "grant", format!("{share} to {recipient}"))?;
        Ok(())
    }

    async fn add_storage(&self, location: StorageLocation) -> Result<StorageLocation, CatalogError> {
        let options = serde_json::to_string(&location.options)
            .map_err(|e| CatalogError::internal(format!("cannot encode the options: {e}")))?;
        let result = sqlx::query(self.sql(
            "INSERT INTO storage_locations (name, name_key, url, url_mode, options, comment, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&location.name)
        .bind(location.name.to_lowercase())
        .bind(location.url.as_str())
        .bind(location.url_mode.as_str())
        .bind(options)
        .bind(&location.comment)
        .bind(now_ms())
        .execute(self.pool())
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => {
                Err(CatalogError::AlreadyExists { kind: "storage location", name: location.name })
            }
            Err(e) => Err(db_err(e)),
            Ok(_) => {
                self.views.changed();
                Ok(location)
            }
        }
    }

    async fn list_storage(&self) -> Result<Vec<StorageLocation>, CatalogError> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let locations = storage_locations(&mut tx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(locations)
    }

    async fn show_storage(&self, name: &str) -> Result<StorageLocation, CatalogError> {
        let sql = format!("SELECT {STORAGE_COLUMNS} WHERE name_key = ?");
        let row = sqlx::query(self.sql(&sql))
            .bind(name.to_lowercase())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .ok_or_else(|| CatalogError::not_found("storage location", name))?;
        storage_location(&row)
    }

    async fn drop_storage(&self, name: &str) -> Result<(), CatalogError> {
        let done = sqlx::query(self.sql("DELETE FROM storage_locations WHERE name_key = ?"))
            .bind(name.to_lowercase())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        self.changed_one(done.rows_affected(), "storage location", name)?;
        Ok(())
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, CatalogError> {
        let mut sql = String::from(
            "SELECT time_ms, principal, action, share_name, schema_name, table_name, version, files, bytes, status, client_ip,
             user_agent, request_id, detail FROM audit_events WHERE 1 = 1",
        );
        let mut text: Vec<String> = Vec::new();
        for (column, value) in [("principal", &f.principal), ("share_name", &f.share), ("action", &f.action)] {
            if let Some(v) = value {
                sql += &format!(" AND LOWER({column}) = ?");
                text.push(v.to_lowercase());
            }
        }
        if let Some(t) = &f.table {
            // `schema.table` or a bare table name.
            match t.split_once('.') {
                Some((schema, table)) => {
                    sql += " AND LOWER(schema_name) = ? AND LOWER(table_name) = ?";
                    text.push(schema.to_lowercase());
                    text.push(table.to_lowercase());
                }
                None => {
                    sql += " AND LOWER(table_name) = ?";
                    text.push(t.to_lowercase());
                }
            }
        }
        sql += " AND time_ms >= ? AND time_ms <= ? AND status >= ? AND status <= ?
                 ORDER BY time_ms DESC, id DESC LIMIT ? OFFSET ?";
        let mut query = sqlx::query(self.sql(&sql));
        for t in &text {
            query = query.bind(t.as_str());
        }
        let rows = query
            .bind(f.since_ms.unwrap_or(i64::MIN))
            .bind(f.until_ms.unwrap_or(i64::MAX))
            .bind(i64::from(f.min_status.unwrap_or(0)))
            .bind(i64::from(f.max_status.unwrap_or(u16::MAX)))
            .bind(i64::from(f.limit.unwrap_or(1000)))
            .bind(i64::from(f.offset.unwrap_or(0)))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    time_ms: get_i64(r, "time_ms")?,
                    principal: get_str(r, "principal")?,
                    action: get_str(r, "action")?,
                    share: get_opt_str(r, "share_name")?,
                    schema: get_opt_str(r, "schema_name")?,
                    table: get_opt_str(r, "table_name")?,
                    version: get_opt_i64(r, "version")?,
                    files: get_opt_i64(r, "files")?,
                    bytes: get_opt_i64(r, "bytes")?,
                    status: get_i64(r, "status")?.clamp(0, 999) as u16,
                    client_ip: get_opt_str(r, "client_ip")?,
                    user_agent: get_opt_str(r, "user_agent")?,
                    request_id: get_opt_str(r, "request_id")?,
                    detail: get_opt_str(r, "detail")?,
                })
            })
            .collect()
    }

    async fn prune_audit(&self, before_ms: i64, batch: u32) -> Result<u64, CatalogError> {
        let done = sqlx::query(self.sql(
            "DELETE FROM audit_events WHERE id IN
             (SELECT id FROM audit_events WHERE time_ms < ? ORDER BY time_ms LIMIT ?)",
        ))
        .bind(before_ms)
        .bind(i64::from(batch.max(1)))
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsagePoint>, CatalogError> {
        q.validate()?;
        let (key, only_tables) = match q.by {
            UsageBy::Recipient => ("principal", ""),
            UsageBy::Table => (
                "share_name || '.' || schema_name || '.' || table_name",
                " AND share_name IS NOT NULL AND schema_name IS NOT NULL AND table_name IS NOT NULL",
            ),
        };
        // Recipients' requests: admin actions and refused anonymous requests are not usage.
        let mut sql = format!(
            "SELECT (time_ms - ?) / ? AS bucket, {key} AS usage_key, COUNT(*) AS requests,
             CAST(COALESCE(SUM(files), 0) AS BIGINT) AS files, CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS bytes
             FROM audit_events
             WHERE time_ms >= ? AND time_ms < ? AND principal <> 'anonymous' AND action NOT LIKE 'admin.%'{only_tables}"
        );
        let mut text: Vec<String> = Vec::new();
        for (column, value) in [("principal", &q.principal), ("share_name", &q.share)] {
            if let Some(v) = value {
                sql += &format!(" AND LOWER({column}) = ?");
                text.push(v.to_lowercase());
            }
        }
        sql += " GROUP BY bucket, usage_key ORDER BY bucket, usage_key";
        let mut query =
            sqlx::query(self.sql(&sql)).bind(q.since_ms).bind(q.bucket_ms).bind(q.since_ms).bind(q.until_ms);
        for t in &text {
            query = query.bind(t.as_str());
        }
        let rows = query.fetch_all(self.pool()).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(UsagePoint {
                    bucket_ms: q.since_ms + get_i64(r, "bucket")? * q.bucket_ms,
                    key: get_str(r, "usage_key")?,
                    requests: get_i64(r, "requests")?,
                    files: get_i64(r, "files")?,
                    bytes: get_i64(r, "bytes")?,
                })
            })
            .collect()
    }

    async fn import(&self, spec: &crate::ImportSpec, dry_run: bool) -> Result<crate::ImportPlan, CatalogError> {
        self.import_shares(spec, dry_run).await
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<(), CatalogError> {
        let _queued = super::batch::QueuedAuditEvent::new();
        self.database.submit(super::batch::Io::Record(Box::new(e.clone()))).await.map(|_| ())
    }
}
