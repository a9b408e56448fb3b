//! Storage locations as rows of the `storage_locations` table.

use sqlx::any::AnyRow;

use super::{db_err, get_opt_str, get_str};
use crate::{CatalogError, StorageLocation};

pub(super) const STORAGE_COLUMNS: &str = "name, url, url_mode, options, comment FROM storage_locations";

pub(super) fn storage_location(row: &AnyRow) -> Result<StorageLocation, CatalogError> {
    let name = get_str(row, "name")?;
    let stored = |e: String| CatalogError::internal(format!("stored storage location '{name}': {e}"));
    let options = serde_json::from_str(&get_str(row, "options")?).map_err(|e| stored(e.to_string()))?;
    let mode = get_str(row, "url_mode")?.parse().map_err(stored)?;
    StorageLocation::new(&name, &get_str(row, "url")?, mode, options, get_opt_str(row, "comment")?).map_err(stored)
}

/// Every storage location, by name, read in `tx`.
pub(super) async fn storage_locations(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<Vec<StorageLocation>, CatalogError> {
    let sql = format!("SELECT {STORAGE_COLUMNS} ORDER BY name_key");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut **tx).await.map_err(db_err)?;
    rows.iter().map(storage_location).collect()
}
