//! The share tree of a reference-format configuration: shares, schemas and tables, as the
//! YAML file (and `d2o catalog import`) gives them, and the rules every table location and name
//! must follow. The server's own settings in the same file are read by the server crate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

pub use crate::names::validate_name;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareConfig {
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub schemas: Vec<SchemaConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableConfig {
    pub name: Option<String>,
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub history_shared: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdf_enabled: Option<bool>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What `d2o catalog import` makes the catalog hold for `shares` (checked, see
/// [`validate_shares`]): their tables with locations resolved against `base_dir` and the ids
/// YAML mode gives them (the file's, else [`crate::derived_table_id`]).
pub fn import_spec(
    shares: &[ShareConfig],
    base_dir: &Path,
    legacy: Option<crate::LegacyToken>,
    prune: bool,
) -> Result<crate::ImportSpec, String> {
    validate_shares(shares, base_dir)?;
    let mut spec = crate::ImportSpec { shares: Vec::with_capacity(shares.len()), legacy, prune };
    for share in shares {
        let name = share.name.clone().unwrap_or_default();
        let mut tables = Vec::new();
        for schema in &share.schemas {
            let schema_name = schema.name.clone().unwrap_or_default();
            for t in &schema.tables {
                let table = t.name.clone().unwrap_or_default();
                let location = resolve_location(t.location.as_deref().unwrap_or_default(), base_dir)?;
                tables.push(crate::TableEntry {
                    id: Some(t.id.clone().unwrap_or_else(|| crate::derived_table_id(&name, &schema_name, &table))),
                    schema: schema_name.clone(),
                    name: table,
                    location: location.to_string(),
                    history_shared: t.history_shared,
                    start_version: t.start_version,
                    cdf_enabled: t.cdf_enabled,
                    partition_filter: None,
                    comment: None,
                });
            }
        }
        spec.shares.push(crate::ImportShare { name, id: share.id.clone(), tables });
    }
    Ok(spec)
}

/// The catalog's shares as a reference-format share tree, with their ids (the inverse of
/// [`import_spec`]). Partition filters and comments have no place in that format.
pub fn export_shares(shares: &[crate::ShareInfo]) -> Vec<ShareConfig> {
    shares
        .iter()
        .map(|share| {
            let mut schemas: Vec<SchemaConfig> = Vec::new();
            for t in &share.tables {
                let table = TableConfig {
                    name: Some(t.name.clone()),
                    location: Some(t.location.clone()),
                    id: t.id.clone(),
                    history_shared: t.history_shared,
                    start_version: t.start_version,
                    cdf_enabled: t.cdf_enabled,
                };
                match schemas.iter_mut().find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&t.schema)))
                {
                    Some(schema) => schema.tables.push(table),
                    None => schemas.push(SchemaConfig { name: Some(t.schema.clone()), tables: vec![table] }),
                }
            }
            ShareConfig { name: Some(share.name.clone()), schemas, id: Some(share.id.clone()) }
        })
        .collect()
}

/// Checks a share tree: names present, valid and unique (case-insensitively) at each level,
/// table ids unique, locations that resolve against `base_dir` and can be served. Errors name
/// the key (`shares[0].schemas[1].tables[2].location`).
pub fn validate_shares(shares: &[ShareConfig], base_dir: &Path) -> Result<(), String> {
    // Hash sets, not lists: a file of many thousand shares is checked in linear time.
    let mut share_names = HashSet::new();
    let mut table_ids = HashSet::new();
    for (si, share) in shares.iter().enumerate() {
        let share_name = check_name(share.name.as_deref(), &format!("shares[{si}]"), "share")?;
        if !share_names.insert(share_name.to_lowercase()) {
            return Err(format!("key 'shares[{si}].name': share '{share_name}' appears twice"));
        }
        let mut schema_names = HashSet::new();
        for (ci, schema) in share.schemas.iter().enumerate() {
            let at = format!("shares[{si}].schemas[{ci}]");
            let schema_name = check_name(schema.name.as_deref(), &at, "schema")?;
            if !schema_names.insert(schema_name.to_lowercase()) {
                return Err(format!("key '{at}.name': schema '{schema_name}' appears twice in share '{share_name}'"));
            }
            let mut table_names = HashSet::new();
            for (ti, table) in schema.tables.iter().enumerate() {
                let at = format!("{at}.tables[{ti}]");
                let table_name = check_name(table.name.as_deref(), &at, "table")?;
                if !table_names.insert(table_name.to_lowercase()) {
                    return Err(format!(
                        "key '{at}.name': table '{table_name}' appears twice in schema '{schema_name}'"
                    ));
                }
                // File URLs and page tokens name a table by its id: two entries with one id
                // would be one table to them.
                if let Some(id) = &table.id
                    && !table_ids.insert(id.clone())
                {
                    return Err(format!("key '{at}.id': table id '{id}' appears twice"));
                }
                match table.location.as_deref() {
                    None | Some("") => {
                        return Err(format!("key '{at}.location': 'location' in a table must be provided"));
                    }
                    Some(loc) => {
                        resolve_location(loc, base_dir)
                            .and_then(|url| check_servable(&url))
                            .map_err(|e| format!("key '{at}.location': {e}"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_name<'a>(name: Option<&'a str>, at: &str, kind: &str) -> Result<&'a str, String> {
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("key '{at}.name': 'name' in a {kind} must be provided"))?;
    validate_name(name).map_err(|e| format!("key '{at}.name': {e}"))?;
    Ok(name)
}

/// Resolves a table `location`: an absolute path, a path relative to `base_dir`, or a URI
/// (`file://`, `s3://`, `s3a://`, `gs://`, `abfss://`, ...). The result ends with `/`.
pub fn resolve_location(location: &str, base_dir: &Path) -> Result<Url, String> {
    let location = location.trim();
    let looks_like_uri = location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
    });
    let mut url = if looks_like_uri {
        Url::parse(location).map_err(|e| format!("'{location}' is not a valid URI: {e}"))?
    } else {
        let path = Path::new(location);
        let path = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
        let path = normalize(&path);
        Url::from_directory_path(&path).map_err(|()| format!("'{}' is not a usable directory path", path.display()))?
    };
    if url.scheme() == "file" && url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(format!("'{location}': file URIs on another host are not supported"));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Refuses a location d2o cannot serve: the server's file system, S3, GCS and Azure are
/// served; anything else is refused when it is added rather than failing at every request.
pub fn check_servable(location: &Url) -> Result<(), String> {
    if location.scheme() == "file" || crate::storage_location::StoreKind::of(location).is_some() {
        return Ok(());
    }
    Err(format!(
        "'{location}': tables at {}:// locations are not served; use a path, a file:// URI, or an s3://, s3a://, gs://, abfss://, az:// or azure:// URL",
        location.scheme()
    ))
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Vec<ShareConfig> {
        serde_yaml_ng::from_str(yaml).expect("a share tree")
    }

    #[test]
    fn share_trees_are_checked_key_by_key() {
        let cases = [
            ("- schemas: []", "key 'shares[0].name'"),
            (
                "- name: s\n  schemas:\n  - name: x\n    tables:\n    - name: t",
                "key 'shares[0].schemas[0].tables[0].location'",
            ),
            ("- name: a/b", "key 'shares[0].name'"),
            ("- name: a\n- name: A", "appears twice"),
            (
                "- name: s\n  schemas:\n  - name: x\n    tables:\n    - {name: a, location: /a, id: i}\n    - {name: b, location: /b, id: i}",
                "key 'shares[0].schemas[0].tables[1].id'",
            ),
            (
                "- name: s\n  schemas:\n  - name: x\n    tables:\n    - {name: a, location: 'hdfs://node/a'}",
                "key 'shares[0].schemas[0].tables[0].location': 'hdfs://node/a/': tables at hdfs:// locations are not served",
            ),
        ];
        for (yaml, expected) in cases {
            let err = validate_shares(&tree(yaml), Path::new("/")).expect_err(yaml);
            assert!(err.contains(expected), "{yaml:?} gave {err:?}");
        }
        assert!(
            validate_shares(
                &tree("- name: s\n  schemas:\n  - name: x\n    tables:\n    - {name: a, location: rel}"),
                Path::new("/")
            )
            .is_ok()
        );
    }

    #[test]
    fn locations_resolve() {
        let base = Path::new("/etc/ds");
        assert_eq!(resolve_location("/data/t", base).map(|u| u.to_string()), Ok("file:///data/t/".into()));
        assert_eq!(resolve_location("t/../u", base).map(|u| u.to_string()), Ok("file:///etc/ds/u/".into()));
        assert_eq!(resolve_location("file:///data/t/", base).map(|u| u.to_string()), Ok("file:///data/t/".into()));
        assert_eq!(resolve_location("s3://b/t", base).map(|u| u.to_string()), Ok("s3://b/t/".into()));
        assert!(resolve_location("s3a://b/t", base).and_then(|u| check_servable(&u)).is_ok());
        let refused = resolve_location("ftp://b/t", base).and_then(|u| check_servable(&u)).expect_err("not servable");
        assert!(refused.contains("not served"), "{refused}");
        assert!(resolve_location("file://otherhost/x", base).is_err());
    }
}
