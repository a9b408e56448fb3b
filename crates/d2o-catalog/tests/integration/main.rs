//! The catalog contract: every backend runs the same suite, on `&dyn Catalog` and `&dyn Admin`.
//! SQLite runs in a temporary directory; PostgreSQL in a fresh database on `D2O_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`), created per test and dropped
//! afterwards; the YAML catalog runs the recipient side. (The admin API's client, `d2o`'s
//! remote admin, runs the suite through a live server in the `d2o-cli` crate.)
//!
//! Without a reachable PostgreSQL the PostgreSQL cases say so and pass, unless
//! `D2O_REQUIRE_POSTGRES=1` (CI sets it) makes that a failure.

#![allow(unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

pub mod contract;
mod files;

use std::sync::Arc;

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

/// A fresh PostgreSQL database, or `None` (with a message) when none is reachable and
/// `D2O_REQUIRE_POSTGRES` is not `1`.
pub async fn postgres() -> Option<(SqlCatalog, Guard)> {
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let db = format!("d2o_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = match <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) if std::env::var("D2O_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
            eprintln!(
                "skipped: PostgreSQL is not reachable at {admin} ({e}); set D2O_REQUIRE_POSTGRES=1 to make this a failure"
            );
            return None;
        }
        Err(e) => panic!("PostgreSQL must run at {admin} for the catalog contract tests (.ci/run starts it): {e}"),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("url");
    url.set_path(&db);
    let catalog = SqlCatalog::connect(url.as_str()).await.expect("PostgreSQL catalog");
    Some((catalog, Guard { _dir: None, drop_db: Some((admin, db)) }))
}

/// The contract's subject for a SQL catalog: itself on both sides, and a second connection.
pub async fn subject(c: &SqlCatalog) -> contract::Subject {
    let elsewhere = SqlCatalog::connect(c.display()).await.expect("a second handle shares no memory with the first");
    contract::Subject { catalog: Arc::new(c.clone()), admin: Arc::new(c.clone()), elsewhere: Arc::new(elsewhere) }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() {
                let (c, _g) = super::sqlite().await;
                super::contract::$name(&super::subject(&c).await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                let Some((c, _g)) = super::postgres().await else { return };
                super::contract::$name(&super::subject(&c).await).await;
            })*
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
    concurrent_changes,
    changes_made_elsewhere_are_seen_by_the_next_request,
    concurrent_reads_see_committed_changes,
    concurrent_audit_events_are_all_stored,
    import_tables_is_atomic_and_idempotent,
    file_access_follows_grants_and_revocation,
    storage_locations,
    ip_access_lists,
    rate_limits,
    recipient_properties,
    import_keeps_ids_and_tokens_and_is_repeatable,
    activation_links_create_the_credential_once,
    concurrent_redemptions_succeed_once,
    concurrent_activation_links_leave_one_usable,
    new_activation_links_replace_unused_ones,
    rotation_covers_every_kind_of_credential,
    federation_policies_act_for_their_recipient,
    unknown_activation_links_are_not_found,
    private_key_clients_hold_only_a_public_key,
);

mod sql {
    #[tokio::test]
    async fn sqlite_migrations_are_idempotent() {
        let (c, _g) = super::sqlite().await;
        super::contract::migrations_are_idempotent(&c).await;
    }

    #[tokio::test]
    async fn postgres_migrations_are_idempotent() {
        let Some((c, _g)) = super::postgres().await else { return };
        super::contract::migrations_are_idempotent(&c).await;
    }

    #[tokio::test]
    async fn sqlite_ready_follows_the_database() {
        let (c, _g) = super::sqlite().await;
        super::ready_follows_the_database(&c).await;
    }

    #[tokio::test]
    async fn postgres_ready_follows_the_database() {
        let Some((c, _g)) = super::postgres().await else { return };
        super::ready_follows_the_database(&c).await;
    }
}

/// SQL catalogs only: ready once migrated; not ready, with a reason, when a migration is
/// missing or the database cannot be read; ready again once repaired.
async fn ready_follows_the_database(c: &SqlCatalog) {
    use d2o_catalog::Catalog;
    c.ready().await.expect("a migrated catalog is ready");
    let latest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM d2o_schema_migrations")
        .fetch_one(c.pool())
        .await
        .expect("read the migrations");
    let run = |sql: String| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(c.pool()).await.expect("statement");
    };
    run(format!("DELETE FROM d2o_schema_migrations WHERE version = {latest}")).await;
    let message = c.ready().await.expect_err("a migration is missing").to_string();
    assert!(message.contains(&format!("needs {latest}")), "{message}");
    run("ALTER TABLE d2o_schema_migrations RENAME TO d2o_schema_migrations_moved".to_owned()).await;
    let message = c.ready().await.expect_err("the table is gone").to_string();
    assert!(message.contains("cannot be read") && !message.contains("no such"), "no database error: {message}");
    run("ALTER TABLE d2o_schema_migrations_moved RENAME TO d2o_schema_migrations".to_owned()).await;
    run(format!("INSERT INTO d2o_schema_migrations (version, applied_at) VALUES ({latest}, 0)")).await;
    c.ready().await.expect("ready again");
}

/// The recipient side of the contract on every backend.
mod reads {
    use std::path::Path;

    use d2o_catalog::YamlCatalog;
    use d2o_catalog::share_config::{ShareConfig, validate_shares};

    use super::contract::{READ_TREE_YAML, build_read_tree, reads_follow_the_contract};

    #[tokio::test]
    async fn sqlite() {
        let (c, _g) = super::sqlite().await;
        let token = build_read_tree(&c).await;
        reads_follow_the_contract(&c, &token).await;
    }

    #[tokio::test]
    async fn postgres() {
        let Some((c, _g)) = super::postgres().await else { return };
        let token = build_read_tree(&c).await;
        reads_follow_the_contract(&c, &token).await;
    }

    #[tokio::test]
    async fn yaml() {
        let shares: Vec<ShareConfig> = serde_yaml_ng::from_str(READ_TREE_YAML).expect("a share tree");
        validate_shares(&shares, Path::new("/")).expect("valid");
        let c = YamlCatalog::new(&shares, Some("the-yaml-token"), Path::new("/")).expect("catalog");
        reads_follow_the_contract(&c, "the-yaml-token").await;
    }
}
