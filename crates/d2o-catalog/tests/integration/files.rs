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
