//! Versioned schema migrations, applied in order at connect. Never edit a released migration:
//! add a new one.

use super::{Backend, SqlCatalog, db_err, now_ms};
use crate::CatalogError;

/// `(version, statements)` for both backends. Portable SQL only (TEXT, BIGINT); what cannot be
/// portable is in [`backend_statements`].
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE IF NOT EXISTS shares (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            comment TEXT,
            created_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS shared_tables (
            id TEXT PRIMARY KEY,
            share_id TEXT NOT NULL REFERENCES shares(id) ON DELETE CASCADE,
            schema_name TEXT NOT NULL,
            schema_key TEXT NOT NULL,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            location TEXT NOT NULL,
            history_shared BIGINT NOT NULL,
            start_version BIGINT NOT NULL,
            cdf_enabled BIGINT,
            partition_filter TEXT,
            comment TEXT,
            created_at BIGINT NOT NULL,
            UNIQUE (share_id, schema_key, name_key))",
            "CREATE TABLE IF NOT EXISTS recipients (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            comment TEXT,
            properties TEXT NOT NULL,
            expires_at BIGINT,
            created_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS tokens (
            id TEXT PRIMARY KEY,
            recipient_id TEXT NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            revoked_at BIGINT)",
            "CREATE INDEX IF NOT EXISTS tokens_recipient ON tokens (recipient_id)",
            "CREATE TABLE IF NOT EXISTS grants (
            share_id TEXT NOT NULL REFERENCES shares(id) ON DELETE CASCADE,
            recipient_id TEXT NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (share_id, recipient_id))",
            "CREATE INDEX IF NOT EXISTS grants_recipient ON grants (recipient_id)",
            "CREATE TABLE IF NOT EXISTS audit_events (
            id TEXT PRIMARY KEY,
            time_ms BIGINT NOT NULL,
            principal TEXT NOT NULL,
            action TEXT NOT NULL,
            share_name TEXT,
            schema_name TEXT,
            table_name TEXT,
            version BIGINT,
            files BIGINT,
            bytes BIGINT,
            status BIGINT NOT NULL,
            client_ip TEXT,
            user_agent TEXT,
            request_id TEXT)",
            "CREATE INDEX IF NOT EXISTS audit_time ON audit_events (time_ms)",
        ],
    ),
    (
        2,
        &[
            // The catalog generation: bumped by triggers (see `backend_statements`) in every
            // transaction that changes what recipients can see, so that a server holding the
            // catalog in memory knows with one cheap query whether its copy is current.
            "CREATE TABLE IF NOT EXISTS catalog_generation (
            id BIGINT PRIMARY KEY,
            generation BIGINT NOT NULL,
            bumped_by BIGINT)",
            "INSERT INTO catalog_generation (id, generation)
             SELECT 1, 0 WHERE NOT EXISTS (SELECT 1 FROM catalog_generation WHERE id = 1)",
        ],
    ),
    (
        3,
        &[
            // What a status alone does not say: the byte range of a download, or how much of a
            // response had left when the client went away.
            "ALTER TABLE audit_events ADD COLUMN detail TEXT",
        ],
    ),
    (
        4,
        &[
            // Named storage locations: object-store options by URL prefix. Options are JSON;
            // secrets in them are environment references, never values.
            "CREATE TABLE IF NOT EXISTS storage_locations (
            name TEXT NOT NULL,
            name_key TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            url_mode TEXT NOT NULL,
            options TEXT NOT NULL,
            comment TEXT,
            created_at BIGINT NOT NULL)",
        ],
    ),
    (
        5,
        &[
            // A recipient's IP access list: a JSON array of CIDR ranges; NULL for none.
            "ALTER TABLE recipients ADD COLUMN ip_access_list TEXT",
        ],
    ),
    (
        6,
        &[
            // A recipient's rate limit: `{"rate": "10/s", "burst": 20}`; NULL for none.
            "ALTER TABLE recipients ADD COLUMN rate_limit TEXT",
        ],
    ),
    (
        7,
        &[
            // What a credential is: NULL or 'bearer_token' (the tokens before this migration),
            // 'oauth_client_credentials' (the row's id is the client id, its hash the client
            // secret's) or 'oauth_jwt_bearer_private_key_jwt' (the client's public key, PEM, is
            // in public_key; token_hash is 'key:' and the key's SHA-256, which no secret hashes
            // to, and which keeps one key from being registered twice).
            "ALTER TABLE tokens ADD COLUMN kind TEXT",
            "ALTER TABLE tokens ADD COLUMN public_key TEXT",
            // One-time activation links; the secret is stored hashed, like tokens.
            "CREATE TABLE IF NOT EXISTS activation_links (
            id TEXT PRIMARY KEY,
            recipient_id TEXT NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
            secret_hash TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_at BIGINT,
            replaced_at BIGINT)",
            "CREATE INDEX IF NOT EXISTS activation_links_recipient ON activation_links (recipient_id)",
            // OIDC federation policies; `audiences` is a JSON array.
            "CREATE TABLE IF NOT EXISTS federation_policies (
            id TEXT PRIMARY KEY,
            recipient_id TEXT NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
            issuer TEXT NOT NULL,
            audiences TEXT NOT NULL,
            subject_claim TEXT NOT NULL,
            subject TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT)",
            "CREATE INDEX IF NOT EXISTS federation_policies_recipient ON federation_policies (recipient_id)",
        ],
    ),
];

/// The tables whose changes bump the catalog generation: everything recipients' requests are
/// answered from (not the audit log, nor activation links, which are read from the database
/// when used), by the migration that created them.
const VERSIONED_TABLES: &[(i64, &[&str])] = &[
    (2, &["shares", "shared_tables", "recipients", "tokens", "grants"]),
    (4, &["storage_locations"]),
    (7, &["federation_policies"]),
];

/// The versioned tables migration `version` puts triggers on.
fn versioned_tables(version: i64) -> &'static [&'static str] {
    VERSIONED_TABLES.iter().find(|(v, _)| *v == version).map(|(_, t)| *t).unwrap_or_default()
}

/// Statements of migration `version` that differ between backends.
fn backend_statements(version: i64, backend: Backend) -> Vec<String> {
    let tables = versioned_tables(version);
    if tables.is_empty() {
        return Vec::new();
    }
    match backend {
        // SQLite has one writer at a time, so a row trigger that bumps at once is enough.
        Backend::Sqlite => ["insert", "update", "delete"]
            .iter()
            .flat_map(|op| {
                tables.iter().map(move |t| {
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS {t}_{op}_generation AFTER {op} ON {t}
                         BEGIN UPDATE catalog_generation SET generation = generation + 1; END"
                    )
                })
            })
            .collect(),
        // PostgreSQL: the bump is deferred to commit (so the generation row is locked last and
        // concurrent admin transactions cannot deadlock on it) and happens once per transaction.
        Backend::Postgres => (version == 2)
            .then(|| {
                "CREATE OR REPLACE FUNCTION d2o_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 UPDATE catalog_generation SET generation = generation + 1, bumped_by = txid_current()
                 WHERE bumped_by IS DISTINCT FROM txid_current();
                 RETURN NULL;
             END $$"
                    .to_owned()
            })
            .into_iter()
            .chain(tables.iter().map(|t| {
                format!(
                    "CREATE CONSTRAINT TRIGGER {t}_generation AFTER INSERT OR UPDATE OR DELETE ON {t}
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION d2o_bump_generation()"
                )
            }))
            .collect(),
    }
}

/// Whether the database has every migration this build applies (the readiness check): one
/// short statement. Its errors' messages are fit for unauthenticated callers; the database's own
/// error stays in the source chain, for logs.
pub(super) async fn check_applied(catalog: &SqlCatalog) -> Result<(), CatalogError> {
    let needed = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM d2o_schema_migrations")
        .fetch_one(catalog.pool())
        .await
        .map_err(|e| CatalogError::internal_from("the catalog database cannot be read", e))?;
    match applied {
        Some(applied) if applied >= needed => Ok(()),
        applied => Err(CatalogError::internal(format!(
            "the catalog's schema is at migration {} but this server needs {needed}; restarting it applies them",
            applied.unwrap_or(0)
        ))),
    }
}

/// The PostgreSQL advisory lock that serializes migrations between processes (any fixed
/// number; "d2o" in ASCII).
const MIGRATION_LOCK: i64 = 0x0064_326f;

/// A transaction that holds the migration lock until it ends (PostgreSQL only). Replicas that
/// start together on one database would otherwise run the same migration at once: concurrent
/// `CREATE TABLE IF NOT EXISTS` of one table fail with a unique violation in PostgreSQL's own
/// catalog (`pg_type_typname_nsp_index`), and `CREATE CONSTRAINT TRIGGER` has no `IF NOT
/// EXISTS`, so every replica but one stopped at start. SQLite has one writer at a time already.
async fn locked(pool: &sqlx::AnyPool) -> Result<sqlx::Transaction<'static, sqlx::Any>, CatalogError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await.map_err(db_err)?;
    Ok(tx)
}

/// Whether migration `version` is recorded as applied.
async fn applied<'e>(
    catalog: &SqlCatalog,
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    version: i64,
) -> Result<bool, CatalogError> {
    let found: Option<i64> =
        sqlx::query_scalar(catalog.sql("SELECT version FROM d2o_schema_migrations WHERE version = ?"))
            .bind(version)
            .fetch_optional(executor)
            .await
            .map_err(db_err)?;
    Ok(found.is_some())
}

pub(super) async fn apply(catalog: &SqlCatalog) -> Result<(), CatalogError> {
    let pool = catalog.pool();
    let postgres = catalog.backend() == Backend::Postgres;
    let create =
        "CREATE TABLE IF NOT EXISTS d2o_schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
    if postgres {
        let mut tx = locked(pool).await?;
        sqlx::query(create).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
    } else {
        sqlx::query(create).execute(pool).await.map_err(db_err)?;
    }
    for (version, statements) in MIGRATIONS {
        if applied(catalog, pool, *version).await? {
            continue;
        }
        let mut tx = if postgres { locked(pool).await? } else { pool.begin().await.map_err(db_err)? };
        // A replica that waited for the lock finds what the one that held it applied.
        if postgres && applied(catalog, &mut *tx, *version).await? {
            tx.rollback().await.map_err(db_err)?;
            continue;
        }
        for statement in *statements {
            sqlx::query(*statement).execute(&mut *tx).await.map_err(db_err)?;
        }
        for statement in backend_statements(*version, catalog.backend()) {
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.map_err(db_err)?;
        }
        let inserted =
            sqlx::query(catalog.sql("INSERT INTO d2o_schema_migrations (version, applied_at) VALUES (?, ?)"))
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => tx.commit().await.map_err(db_err)?,
            // Another process applied it first (SQLite: two processes on one file): its work
            // stands, ours is rolled back.
            Err(e) if super::is_unique_violation(&e) => tx.rollback().await.map_err(db_err)?,
            Err(e) => return Err(db_err(e)),
        }
        tracing::info!(version, "applied catalog migration");
    }
    Ok(())
}
