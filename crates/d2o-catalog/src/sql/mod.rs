//! [`SqlCatalog`]: the catalog in SQLite (embedded, the default) or PostgreSQL.
//!
//! One implementation serves both databases through sqlx's `Any` driver: the SQL is written once
//! with `?` placeholders (rewritten to `$n` for PostgreSQL) and portable types only (`TEXT`,
//! `BIGINT`; booleans as 0/1, times as milliseconds since the epoch, maps as JSON text).
//! Migrations are versioned and applied at connect. Recipient requests are answered from an
//! in-memory view of the catalog that a generation counter keeps current (see
//! [`view`]); audit events are group-committed (see [`batch`]).

mod admin_impl;
mod batch;
mod catalog_impl;
mod credentials;
mod import;
mod migrations;
mod storage_rows;
mod view;

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::CatalogError;

/// Which database a [`SqlCatalog`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The catalog in a SQL database. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    backend: Backend,
    /// Where the catalog lives, password removed (for messages).
    display: String,
    /// Audit events and generation checks, batched.
    database: batch::Batcher<batch::Io, i64>,
    recent_generation: Arc<batch::RecentGeneration>,
    views: Arc<view::ViewCache>,
}

impl SqlCatalog {
    /// Connects and migrates. `target` is a `postgres://` URL, a `sqlite:` URL, or a path to a
    /// SQLite file (created if missing).
    pub async fn connect(target: &str) -> Result<SqlCatalog, CatalogError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            (target.to_owned(), Backend::Postgres)
        } else if target.starts_with("sqlite:") {
            (target.to_owned(), Backend::Sqlite)
        } else {
            make_private(std::path::Path::new(target))?;
            (format!("sqlite://{target}?mode=rwc"), Backend::Sqlite)
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            // An embedded database has no connection to lose: skip the ping before each use.
            .test_before_acquire(backend == Backend::Postgres);
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; the busy timeout makes writers
                    // queue instead of failing under concurrent admin changes.
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| CatalogError::internal_from(format!("cannot open the catalog {}", redact(target)), e))?;
        let recent_generation = Arc::new(batch::RecentGeneration::default());
        let catalog = SqlCatalog {
            database: batch::database_task(pool.clone(), backend, recent_generation.clone()),
            recent_generation,
            views: Arc::default(),
            pool,
            backend,
            display: redact(target),
        };
        migrations::apply(&catalog).await?;
        Ok(catalog)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the catalog lives (a path or a URL with any password masked).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// `sql` with `?` placeholders rewritten for the backend.
    ///
    /// Every statement of this crate is a constant (values are always bound), so it is safe to
    /// hand to sqlx as such.
    pub(crate) fn sql(&self, sql: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(placeholders(sql, self.backend))
    }

    /// The connection pool (for maintenance and tests; the catalog's own statements are
    /// the contract).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Creates the SQLite file readable by its owner only (0600), or makes an existing one (and its
/// `-wal` and `-shm` files) so: they hold token hashes and the audit log. SQLite gives new
/// `-wal` and `-shm` files the mode of the database file.
fn make_private(path: &std::path::Path) -> Result<(), CatalogError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let failed =
            |e: std::io::Error| CatalogError::internal_from(format!("cannot create the catalog {}", path.display()), e);
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            let Ok(meta) = std::fs::metadata(&file) else { continue };
            let mode = meta.permissions().mode();
            if meta.is_file() && mode & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)).map_err(failed)?;
                tracing::warn!(file = %file.display(), "was readable by other users; its mode is now {:o}", mode & 0o700);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn placeholders(sql: &str, backend: Backend) -> String {
    if backend == Backend::Sqlite {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quoted = false;
    for c in sql.chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A connection string without its password, for messages.
fn redact(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => target.to_owned(),
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> CatalogError {
    CatalogError::internal_from("catalog database error", e)
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A new row id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn get_str(row: &AnyRow, col: &str) -> Result<String, CatalogError> {
    row.try_get::<String, _>(col).map_err(db_err)
}

pub(crate) fn get_opt_str(row: &AnyRow, col: &str) -> Result<Option<String>, CatalogError> {
    row.try_get::<Option<String>, _>(col).map_err(db_err)
}

/// A recipient row's IP access list (`ip_access_list`, a JSON array), parsed.
pub(crate) fn stored_networks(row: &AnyRow) -> Result<Option<Vec<ipnet::IpNet>>, CatalogError> {
    let Some(text) = get_opt_str(row, "ip_access_list")? else { return Ok(None) };
    let list: Vec<String> =
        serde_json::from_str(&text).map_err(|e| CatalogError::internal(format!("stored IP access list: {e}")))?;
    crate::ip_access::parse_networks(&list)
        .map(Some)
        .map_err(|e| CatalogError::internal(format!("stored IP access list: {e}")))
}

/// A recipient row's rate limit (`rate_limit`, JSON), parsed.
pub(crate) fn stored_rate_limit(row: &AnyRow) -> Result<Option<crate::RateLimit>, CatalogError> {
    get_opt_str(row, "rate_limit")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| CatalogError::internal(format!("stored rate limit: {e}")))
}

pub(crate) fn get_i64(row: &AnyRow, col: &str) -> Result<i64, CatalogError> {
    row.try_get::<i64, _>(col).map_err(db_err)
}

pub(crate) fn get_opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>, CatalogError> {
    row.try_get::<Option<i64>, _>(col).map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes() {
        let q = "SELECT '?' FROM t WHERE a = ? AND b = ?";
        assert_eq!(placeholders(q, Backend::Postgres), "SELECT '?' FROM t WHERE a = $1 AND b = $2");
        assert_eq!(placeholders(q, Backend::Sqlite), q);
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
