//! Access policy: what a principal may read of a table, decided once per request.
//!
//! The catalog decides whether the principal sees the table at all (a table outside its grants
//! is `NotFound`, exactly like one that does not exist). This module decides which of its files
//! it may read, as an [`Access`] that handlers act on and never re-derive. IP access lists,
//! rate limits and row filters belong here too.

use d2o_catalog::{Principal, SharedTable};
use d2o_delta::TableSnapshot;
use serde_json::{Map, Value};

use crate::{ApiError, AppState};

/// Which files of a table a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Every file: the table has no partition filter.
    All,
    /// Only files whose partition values equal these `(column, value)` pairs.
    Partitions(Vec<(String, String)>),
    /// No file: the table's partition filter needs a recipient property the principal lacks.
    Nothing,
}

/// A table the principal may see, and what it may read of it.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) table: SharedTable,
    pub(crate) access: Access,
}

/// Decides what `who` may read of `share.schema.table`. `NotFound` when it may not see the
/// table at all.
pub(crate) async fn decide(
    state: &AppState,
    who: &Principal,
    (share, schema, table): &(String, String, String),
) -> Result<Decision, ApiError> {
    let table = state.catalog.get_table(who, share, schema, table).await?;
    let access = Access::of(&table, who);
    Ok(Decision { table, access })
}

impl Access {
    /// The access `who` has to `table`'s files.
    pub(crate) fn of(table: &SharedTable, who: &Principal) -> Access {
        match &table.partition_filter {
            None => Access::All,
            Some(filter) => match filter.resolve(&who.properties) {
                Some(required) => Access::Partitions(required),
                None => Access::Nothing,
            },
        }
    }

    /// Whether some files may be withheld (so partition values must be looked at).
    pub(crate) fn is_restricted(&self) -> bool {
        *self != Access::All
    }

    /// Whether a file with these partition values (physical column names, as in the log) may
    /// be read.
    pub(crate) fn permits(&self, snapshot: &TableSnapshot, partition_values: &Map<String, Value>) -> bool {
        match self {
            Access::All => true,
            Access::Nothing => false,
            Access::Partitions(required) => required.iter().all(|(column, value)| {
                let physical = snapshot.physical_name(column);
                partition_values
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(physical))
                    .is_some_and(|(_, v)| v.as_str() == Some(value.as_str()))
            }),
        }
    }
}
