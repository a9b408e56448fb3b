//! The SQLite catalog's files: token hashes and the audit log are for its owner only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::contract::with_token;
use d2o_catalog::{Admin, NewRecipient, SqlCatalog};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

async fn write_something(c: &SqlCatalog) {
    c.create_share("s", None).await.expect("created");
    c.create_recipient(NewRecipient { name: "r".into(), ..Default::default() }).await.map(with_token).expect("created");
}

#[tokio::test]
async fn a_new_catalog_and_its_journal_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("d2o.db");
    let c = SqlCatalog::connect(db.to_str().expect("utf-8")).await.expect("catalog");
    write_something(&c).await;
    for file in ["d2o.db", "d2o.db-wal", "d2o.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn an_existing_catalog_readable_by_others_is_made_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("d2o.db");
    {
        let c = SqlCatalog::connect(db.to_str().expect("utf-8")).await.expect("catalog");
        write_something(&c).await;
    }
    for file in ["d2o.db", "d2o.db-wal", "d2o.db-shm"] {
        let path = dir.path().join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    let _c = SqlCatalog::connect(db.to_str().expect("utf-8")).await.expect("catalog");
    for file in ["d2o.db", "d2o.db-wal", "d2o.db-shm"] {
        let path = dir.path().join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
}

/// Regression: the batch statement that stores audit events was read only to its first row, so
/// SQLite never finished it and never ran its automatic checkpoint: the `-wal` file grew by
/// every event forever (107 MB after 36,000 events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_checkpointed_while_events_are_recorded() {
    use d2o_catalog::{AuditEvent, Catalog};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("d2o.db");
    let c = std::sync::Arc::new(SqlCatalog::connect(db.to_str().expect("utf-8")).await.expect("catalog"));
    let event = AuditEvent {
        time_ms: 1,
        principal: "r".into(),
        action: "query".into(),
        status: 200,
        detail: Some("x".repeat(200)),
        ..Default::default()
    };
    // Concurrent callers, so that events are stored many to a statement.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (c, event) = (c.clone(), event.clone());
            tokio::spawn(async move {
                for _ in 0..500 {
                    c.record(&event).await.expect("recorded");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let wal = std::fs::metadata(dir.path().join("d2o.db-wal")).map(|m| m.len()).unwrap_or(0);
    // SQLite checkpoints at 1,000 pages (4 MB); 16,000 events of ~300 bytes are 5 MB of rows
    // (and more in index pages) when nothing is ever checkpointed.
    assert!(wal < 6 << 20, "the journal holds {wal} bytes after 16,000 events: it is never checkpointed");
}
