//! Importing a reference server's share tree: what to import ([`ImportSpec`]) and what an
//! import changes ([`ImportPlan`]), so that a catalog can take over from a YAML file, and be
//! brought up to date with it again, without recipients noticing.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::validate_name;
use crate::{CatalogError, TableEntry};

/// The name of the recipient that holds an imported bearer token, unless one is given.
pub const DEFAULT_LEGACY_RECIPIENT: &str = "legacy";

/// Shares to make the catalog hold, as a reference server's YAML file names them. Every table
/// has its id (`TableEntry::id`), the one the YAML gave it or the one YAML mode derives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    pub shares: Vec<ImportShare>,
    /// The file's bearer token, kept as a recipient's credential (stored hashed) with every
    /// imported share granted, so that existing profile files keep working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<LegacyToken>,
    /// Drop the shares, and the tables of imported shares, that the spec does not name; and
    /// revoke the legacy recipient's other bearer tokens (the file's token changed).
    #[serde(default)]
    pub prune: bool,
}

/// One share of an [`ImportSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportShare {
    pub name: String,
    /// The share's id, when the file gives one (kept for a new share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub tables: Vec<TableEntry>,
}

/// A bearer token to keep, and the recipient that holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LegacyToken {
    pub recipient: String,
    pub token: String,
}

impl fmt::Debug for LegacyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyToken").field("recipient", &self.recipient).field("token", &"<redacted>").finish()
    }
}

/// The longest id or token accepted.
const MAX_ID_LEN: usize = 255;
const MAX_TOKEN_LEN: usize = 4096;

/// A table or share id: what a YAML file may give (the reference server takes any string).
pub fn check_id(id: &str) -> Result<(), CatalogError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(CatalogError::InvalidArgument(format!(
            "id {id:?} must be 1 to {MAX_ID_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

impl ImportSpec {
    /// Checks names, ids and the token, and that no name or id is given twice; bad input is
    /// refused before anything is changed.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let bad = |e: String| CatalogError::InvalidArgument(e);
        let mut shares = HashSet::new();
        let mut ids = HashSet::new();
        for share in &self.shares {
            validate_name(&share.name).map_err(|e| bad(format!("share: {e}")))?;
            if !shares.insert(share.name.to_lowercase()) {
                return Err(bad(format!("share '{}' is given twice", share.name)));
            }
            if let Some(id) = &share.id {
                check_id(id)?;
            }
            let mut tables = HashSet::new();
            for t in &share.tables {
                validate_name(&t.schema).map_err(|e| bad(format!("schema in share '{}': {e}", share.name)))?;
                validate_name(&t.name).map_err(|e| bad(format!("table in share '{}': {e}", share.name)))?;
                if !tables.insert((t.schema.to_lowercase(), t.name.to_lowercase())) {
                    return Err(bad(format!("table '{}.{}.{}' is given twice", share.name, t.schema, t.name)));
                }
                let id =
                    t.id.as_deref()
                        .ok_or_else(|| bad(format!("table '{}.{}.{}' has no id", share.name, t.schema, t.name)))?;
                check_id(id)?;
                if !ids.insert(id.to_owned()) {
                    return Err(bad(format!("table id '{id}' is given to two tables")));
                }
            }
        }
        if let Some(legacy) = &self.legacy {
            validate_name(&legacy.recipient).map_err(|e| bad(format!("recipient: {e}")))?;
            let t = &legacy.token;
            if t.is_empty() || t.len() > MAX_TOKEN_LEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(format!(
                    "the bearer token must be 1 to {MAX_TOKEN_LEN} bytes without spaces or control characters"
                )));
            }
        }
        Ok(())
    }
}

/// One change an import makes (or, in a dry run, would make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", tag = "change")]
pub enum ImportChange {
    CreateShare {
        share: String,
    },
    DropShare {
        share: String,
    },
    AddTable {
        share: String,
        schema: String,
        table: String,
        id: String,
    },
    /// A table whose id, location or settings changed; `fields` names them.
    UpdateTable {
        share: String,
        schema: String,
        table: String,
        fields: Vec<String>,
    },
    RemoveTable {
        share: String,
        schema: String,
        table: String,
    },
    CreateRecipient {
        recipient: String,
    },
    AddToken {
        recipient: String,
    },
    RevokeToken {
        recipient: String,
        id: String,
    },
    Grant {
        share: String,
        recipient: String,
    },
}

impl fmt::Display for ImportChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportChange::CreateShare { share } => write!(f, "create share {share}"),
            ImportChange::DropShare { share } => write!(f, "drop share {share} (not in the file)"),
            ImportChange::AddTable { share, schema, table, id } => {
                write!(f, "add table {share}.{schema}.{table} (id {id})")
            }
            ImportChange::UpdateTable { share, schema, table, fields } => {
                write!(f, "update table {share}.{schema}.{table}: {}", fields.join(", "))
            }
            ImportChange::RemoveTable { share, schema, table } => {
                write!(f, "remove table {share}.{schema}.{table} (not in the file)")
            }
            ImportChange::CreateRecipient { recipient } => write!(f, "create recipient {recipient}"),
            ImportChange::AddToken { recipient } => {
                write!(f, "keep the file's bearer token as a credential of {recipient}")
            }
            ImportChange::RevokeToken { recipient, id } => write!(f, "revoke {recipient}'s other bearer token {id}"),
            ImportChange::Grant { share, recipient } => write!(f, "grant share {share} to {recipient}"),
        }
    }
}

/// What an import changed, in order; empty when the catalog already matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportPlan {
    pub changes: Vec<ImportChange>,
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str, id: Option<&str>) -> TableEntry {
        TableEntry {
            id: id.map(str::to_owned),
            schema: schema.into(),
            name: name.into(),
            location: "/data/t".into(),
            history_shared: false,
            start_version: 0,
            cdf_enabled: None,
            partition_filter: None,
            comment: None,
        }
    }

    fn spec(tables: Vec<TableEntry>) -> ImportSpec {
        ImportSpec { shares: vec![ImportShare { name: "s".into(), id: None, tables }], ..ImportSpec::default() }
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(spec(vec![table("a", "t", Some("1")), table("A", "T", Some("2"))]).validate().is_err(), "names twice");
        assert!(spec(vec![table("a", "t", Some("1")), table("a", "u", Some("1"))]).validate().is_err(), "ids twice");
        assert!(spec(vec![table("a", "t", None)]).validate().is_err(), "no id");
        assert!(spec(vec![table("a/b", "t", Some("1"))]).validate().is_err(), "bad name");
        assert!(spec(vec![table("a", "t", Some("bad\nid"))]).validate().is_err(), "bad id");
        let mut with_token = spec(vec![table("a", "t", Some("1"))]);
        with_token.legacy = Some(LegacyToken { recipient: "legacy".into(), token: "has space".into() });
        assert!(with_token.validate().is_err());
        with_token.legacy = Some(LegacyToken { recipient: "legacy".into(), token: "dapi123".into() });
        with_token.validate().expect("valid");
        assert!(!format!("{with_token:?}").contains("dapi123"), "tokens are not in debug output");
    }
}
