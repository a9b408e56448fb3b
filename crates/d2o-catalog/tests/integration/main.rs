//! The catalog contract: every backend runs the same suite. SQLite runs in a temporary
//! directory; PostgreSQL in a fresh database on `D2O_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`), created per test and dropped afterwards.

#![allow(unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

mod contract;
mod files;

use d2o_catalog::SqlCatalog;

pub struct Guard {
    _dir: Option<tempfile::TempDir>,
    drop_db: Option<(String, String)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((admin, db)) = self.drop_db.take() {
            // Best effort, on a runtime of its own (the test's runtime is shutting down).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    sqlx::any::install_default_drivers();
                    if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn sqlite() -> (SqlCatalog, Guard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d2o.db");
    let catalog = SqlCatalog::connect(path.to_str().expect("utf-8 path")).await.expect("SQLite catalog");
    (catalog, Guard { _dir: Some(dir), drop_db: None })
}

pub fn postgres_admin_url() -> String {
    std::env::var("D2O_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub async fn postgres() -> (SqlCatalog, Guard) {
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let db = format!("d2o_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL must run at {admin} for the catalog contract tests (.ci/run starts it): {e}")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("url");
    url.set_path(&db);
    let catalog = SqlCatalog::connect(url.as_str()).await.expect("PostgreSQL catalog");
    (catalog, Guard { _dir: None, drop_db: Some((admin, db)) })
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { let (c, _g) = super::sqlite().await; super::contract::$name(&c).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { let (c, _g) = super::postgres().await; super::contract::$name(&c).await; })*
        }
    };
}

contract!(
    shares_and_tables,
    bad_input_changes_nothing,
    tokens_authenticate_rotate_and_revoke,
    recipient_expiry,
    grants_decide_visibility,
    pagination_covers_everything_once,
    audit_events_filter,
    migrations_are_idempotent,
    concurrent_changes,
    changes_made_elsewhere_are_seen_by_the_next_request,
    concurrent_reads_see_committed_changes,
    concurrent_audit_events_are_all_stored,
    import_tables_is_atomic_and_idempotent,
    file_access_follows_grants_and_revocation,
);
