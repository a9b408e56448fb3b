//! [`crate::Admin::import`] over SQL: the whole import in one transaction, rolled back for a
//! dry run.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::admin_impl::{TABLE_COLUMNS, servable_location, table_entry};
use super::catalog_impl::token_hash;
use super::{SqlCatalog, db_err, get_opt_i64, get_str, is_unique_violation, new_id, now_ms};
use crate::{CatalogError, CredentialKind, ImportChange, ImportPlan, ImportSpec, PartitionFilter, TableEntry};

/// The fields of `stored` that `wanted` (with its resolved location) changes.
fn changed_fields(stored: &TableEntry, wanted: &TableEntry, location: &str) -> Vec<String> {
    let mut fields = Vec::new();
    if wanted.id != stored.id {
        let id = |t: &TableEntry| t.id.clone().unwrap_or_default();
        fields.push(format!("id {} -> {}", id(stored), id(wanted)));
    }
    if stored.location != location {
        fields.push(format!("location {} -> {location}", stored.location));
    }
    if stored.history_shared != wanted.history_shared {
        fields.push(format!("historyShared {}", wanted.history_shared));
    }
    if stored.start_version != wanted.start_version {
        fields.push(format!("startVersion {}", wanted.start_version));
    }
    if stored.cdf_enabled != wanted.cdf_enabled {
        fields.push(format!("cdfEnabled {:?}", wanted.cdf_enabled));
    }
    fields
}

impl SqlCatalog {
    pub(super) async fn import_shares(&self, spec: &ImportSpec, dry_run: bool) -> Result<ImportPlan, CatalogError> {
        spec.validate()?;
        // Locations and filters are checked before anything is written.
        let mut locations: HashMap<(usize, usize), String> = HashMap::new();
        for (s, share) in spec.shares.iter().enumerate() {
            for (t, table) in share.tables.iter().enumerate() {
                if let Some(filter) = &table.partition_filter {
                    PartitionFilter::parse(filter)?;
                }
                let at = |e: CatalogError| {
                    CatalogError::InvalidArgument(format!("table {}.{}.{}: {e}", share.name, table.schema, table.name))
                };
                locations.insert((s, t), servable_location(&table.location).map_err(at)?.to_string());
            }
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let mut changes = Vec::new();
        let existing: HashMap<String, (String, String)> =
            sqlx::query(self.sql("SELECT id, name, name_key FROM shares"))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
                .iter()
                .map(|r| Ok((get_str(r, "name_key")?, (get_str(r, "id")?, get_str(r, "name")?))))
                .collect::<Result<_, CatalogError>>()?;
        let mut share_ids = Vec::with_capacity(spec.shares.len());
        for (s, share) in spec.shares.iter().enumerate() {
            let share_id = match existing.get(&share.name.to_lowercase()) {
                Some((id, _)) => id.clone(),
                None => {
                    let id = share.id.clone().unwrap_or_else(new_id);
                    self.insert_share(&mut tx, &id, &share.name).await?;
                    changes.push(ImportChange::CreateShare { share: share.name.clone() });
                    id
                }
            };
            let stored = self.stored_tables(&mut tx, &share_id).await?;
            let mut named = HashSet::new();
            for (t, table) in share.tables.iter().enumerate() {
                let key = (table.schema.to_lowercase(), table.name.to_lowercase());
                let location = &locations[&(s, t)];
                let id = table.id.clone().unwrap_or_default();
                match stored.get(&key) {
                    None => {
                        let entry = TableEntry { location: location.clone(), ..table.clone() };
                        if !self.insert_table(&mut tx, &share_id, &entry).await? {
                            return Err(CatalogError::InvalidArgument(format!(
                                "table id '{id}' of {}.{}.{} is already another table's",
                                share.name, table.schema, table.name
                            )));
                        }
                        let (schema, name) = (table.schema.clone(), table.name.clone());
                        changes.push(ImportChange::AddTable { share: share.name.clone(), schema, table: name, id });
                    }
                    Some(old) => {
                        let fields = changed_fields(old, table, location);
                        if !fields.is_empty() {
                            self.update_table(&mut tx, old.id.as_deref().unwrap_or_default(), table, location).await?;
                            changes.push(ImportChange::UpdateTable {
                                share: share.name.clone(),
                                schema: old.schema.clone(),
                                table: old.name.clone(),
                                fields,
                            });
                        }
                    }
                }
                named.insert(key);
            }
            if spec.prune {
                let mut gone: Vec<&TableEntry> =
                    stored.iter().filter(|(k, _)| !named.contains(*k)).map(|(_, v)| v).collect();
                gone.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
                for old in gone {
                    sqlx::query(self.sql("DELETE FROM shared_tables WHERE id = ?"))
                        .bind(old.id.as_deref())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    let (schema, table) = (old.schema.clone(), old.name.clone());
                    changes.push(ImportChange::RemoveTable { share: share.name.clone(), schema, table });
                }
            }
            share_ids.push((share.name.clone(), share_id));
        }
        if spec.prune {
            let wanted: HashSet<String> = spec.shares.iter().map(|s| s.name.to_lowercase()).collect();
            let mut gone: Vec<&(String, String)> =
                existing.iter().filter(|(k, _)| !wanted.contains(*k)).map(|(_, v)| v).collect();
            gone.sort_by(|a, b| a.1.cmp(&b.1));
            for (id, name) in gone {
                for sql in [
                    "DELETE FROM grants WHERE share_id = ?",
                    "DELETE FROM shared_tables WHERE share_id = ?",
                    "DELETE FROM shares WHERE id = ?",
                ] {
                    sqlx::query(self.sql(sql)).bind(id).execute(&mut *tx).await.map_err(db_err)?;
                }
                changes.push(ImportChange::DropShare { share: name.clone() });
            }
        }
        if let Some(legacy) = &spec.legacy {
            self.import_legacy(&mut tx, legacy, &share_ids, spec.prune, &mut changes).await?;
        }
        if dry_run || changes.is_empty() {
            tx.rollback().await.map_err(db_err)?;
        } else {
            tx.commit().await.map_err(db_err)?;
            self.views.changed();
        }
        Ok(ImportPlan { changes })
    }

    async fn insert_share(&self, tx: &mut AnyConnection, id: &str, name: &str) -> Result<(), CatalogError> {
        let done = sqlx::query(
            self.sql("INSERT INTO shares (id, name, name_key, comment, created_at) VALUES (?, ?, ?, NULL, ?)"),
        )
        .bind(id)
        .bind(name)
        .bind(name.to_lowercase())
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match done {
            Err(e) if is_unique_violation(&e) => Err(CatalogError::InvalidArgument(format!(
                "share id '{id}' of share {name} is already another share's"
            ))),
            Err(e) => Err(db_err(e)),
            Ok(_) => Ok(()),
        }
    }

    /// The share's tables by (schema, table) in lower case, with their ids.
    async fn stored_tables(
        &self,
        tx: &mut AnyConnection,
        share_id: &str,
    ) -> Result<HashMap<(String, String), TableEntry>, CatalogError> {
        let sql = format!("SELECT {TABLE_COLUMNS} FROM shared_tables WHERE share_id = ?");
        let rows = sqlx::query(self.sql(&sql)).bind(share_id).fetch_all(&mut *tx).await.map_err(db_err)?;
        rows.iter().map(|r| table_entry(r).map(|t| ((t.schema.to_lowercase(), t.name.to_lowercase()), t))).collect()
    }

    async fn update_table(
        &self,
        tx: &mut AnyConnection,
        old_id: &str,
        table: &TableEntry,
        location: &str,
    ) -> Result<(), CatalogError> {
        let id = table.id.clone().unwrap_or_else(|| old_id.to_owned());
        let done = sqlx::query(self.sql(
            "UPDATE shared_tables SET id = ?, location = ?, history_shared = ?, start_version = ?, cdf_enabled = ?
             WHERE id = ?",
        ))
        .bind(&id)
        .bind(location)
        .bind(i64::from(table.history_shared))
        .bind(table.start_version as i64)
        .bind(table.cdf_enabled.map(i64::from))
        .bind(old_id)
        .execute(&mut *tx)
        .await;
        match done {
            Err(e) if is_unique_violation(&e) => Err(CatalogError::InvalidArgument(format!(
                "table id '{id}' of {}.{} is already another table's",
                table.schema, table.name
            ))),
            Err(e) => Err(db_err(e)),
            Ok(_) => Ok(()),
        }
    }

    /// The legacy recipient, its token and its grants of every imported share.
    async fn import_legacy(
        &self,
        tx: &mut AnyConnection,
        legacy: &crate::LegacyToken,
        shares: &[(String, String)],
        prune: bool,
        changes: &mut Vec<ImportChange>,
    ) -> Result<(), CatalogError> {
        let name = &legacy.recipient;
        let found = sqlx::query(self.sql("SELECT id FROM recipients WHERE name_key = ?"))
            .bind(name.to_lowercase())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let recipient_id = match found {
            Some(row) => get_str(&row, "id")?,
            None => {
                let id = new_id();
                sqlx::query(self.sql(
                    "INSERT INTO recipients (id, name, name_key, comment, properties, expires_at, created_at)
                     VALUES (?, ?, ?, ?, '{}', NULL, ?)",
                ))
                .bind(&id)
                .bind(name)
                .bind(name.to_lowercase())
                .bind("the bearer token of the reference server's configuration")
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                changes.push(ImportChange::CreateRecipient { recipient: name.clone() });
                id
            }
        };
        let hash = token_hash(&legacy.token);
        let holder = sqlx::query(self.sql("SELECT recipient_id, revoked_at FROM tokens WHERE token_hash = ?"))
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        match holder {
            Some(row) if get_str(&row, "recipient_id")? != recipient_id => {
                return Err(CatalogError::InvalidArgument(
                    "the file's bearer token is already another recipient's credential".into(),
                ));
            }
            Some(row) if get_opt_i64(&row, "revoked_at")?.is_some() => {
                return Err(CatalogError::InvalidArgument(format!(
                    "the file's bearer token was revoked in the catalog; {name} cannot use it again"
                )));
            }
            Some(_) => {}
            None => {
                sqlx::query(self.sql(
                    "INSERT INTO tokens (id, recipient_id, token_hash, created_at, expires_at, kind) VALUES (?, ?, ?, ?, NULL, ?)",
                ))
                .bind(new_id())
                .bind(&recipient_id)
                .bind(&hash)
                .bind(now_ms())
                .bind(CredentialKind::BearerToken.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                changes.push(ImportChange::AddToken { recipient: name.clone() });
            }
        }
        if prune {
            let others = sqlx::query(self.sql(
                "SELECT id FROM tokens WHERE recipient_id = ? AND token_hash <> ? AND kind = ? AND revoked_at IS NULL
                 ORDER BY created_at",
            ))
            .bind(&recipient_id)
            .bind(&hash)
            .bind(CredentialKind::BearerToken.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            for row in others {
                let id = get_str(&row, "id")?;
                sqlx::query(self.sql("UPDATE tokens SET revoked_at = ? WHERE id = ?"))
                    .bind(now_ms())
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                changes.push(ImportChange::RevokeToken { recipient: name.clone(), id });
            }
        }
        for (share, share_id) in shares {
            let done = sqlx::query(self.sql(
                "INSERT INTO grants (share_id, recipient_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            ))
            .bind(share_id)
            .bind(&recipient_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() > 0 {
                changes.push(ImportChange::Grant { share: share.clone(), recipient: name.clone() });
            }
        }
        Ok(())
    }
}
