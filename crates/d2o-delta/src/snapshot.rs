//! [`TableSnapshot`]: one version of a table, with what the protocol needs of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use delta_kernel::snapshot::SnapshotRef;
use serde_json::Value;
use url::Url;

use crate::DeltaError;

/// One version of a table: its kernel snapshot plus metadata facts computed once.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub(crate) inner: SnapshotRef,
    facts: Arc<Facts>,
}

#[derive(Debug)]
struct Facts {
    protocol: Value,
    metadata: Value,
    min_reader_version: i32,
    reader_features: Vec<String>,
    column_mapping: bool,
    has_timestamp_ntz: bool,
    /// Logical column path (dotted) -> physical path; empty without column mapping.
    physical_names: HashMap<String, String>,
    /// Logical column path (dotted) -> Delta primitive type name.
    column_types: HashMap<String, String>,
    /// An estimate of the memory this version holds (see [`TableSnapshot::estimated_bytes`]).
    estimated_bytes: usize,
    /// The size of the version's checkpoint files (0 without a checkpoint).
    checkpoint_bytes: usize,
}

impl TableSnapshot {
    pub(crate) fn new(inner: SnapshotRef) -> Result<Self, DeltaError> {
        let config = inner.table_configuration();
        let protocol =
            serde_json::to_value(config.protocol()).map_err(|e| DeltaError::internal_from("protocol action", e))?;
        let metadata =
            serde_json::to_value(config.metadata()).map_err(|e| DeltaError::internal_from("metaData action", e))?;
        let min_reader_version = protocol.get("minReaderVersion").and_then(Value::as_i64).unwrap_or(1) as i32;
        let reader_features = protocol
            .get("readerFeatures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let configuration = metadata.get("configuration").and_then(Value::as_object);
        let mode =
            configuration.and_then(|c| c.get("delta.columnMapping.mode")).and_then(Value::as_str).unwrap_or("none");
        let column_mapping = !mode.eq_ignore_ascii_case("none");
        let schema: Value = metadata
            .get("schemaString")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        // The kernel keeps the log files of the segment (commits since the last checkpoint and the
        // checkpoint's parts) and its own copy of protocol and metadata; this process keeps them
        // parsed once more.
        let segment = inner.log_segment();
        let log_files = segment.end_version.saturating_sub(segment.checkpoint_version.unwrap_or(0)) + 1;
        let json_bytes = protocol.to_string().len() + metadata.to_string().len();
        let estimated_bytes = 4 * json_bytes + 512 * usize::try_from(log_files).unwrap_or(usize::MAX / 1024);
        let checkpoint_bytes = segment.listed.checkpoint_parts.iter().map(|part| part.location.size).sum::<u64>();
        let mut facts = Facts {
            protocol,
            metadata,
            min_reader_version,
            reader_features,
            column_mapping,
            has_timestamp_ntz: false,
            physical_names: HashMap::new(),
            column_types: HashMap::new(),
            estimated_bytes,
            checkpoint_bytes: usize::try_from(checkpoint_bytes).unwrap_or(usize::MAX),
        };
        walk_schema(&schema, "", "", &mut facts);
        Ok(TableSnapshot { inner, facts: Arc::new(facts) })
    }

    /// An estimate of the memory this version holds, for caches bounded by bytes.
    pub fn estimated_bytes(&self) -> usize {
        self.facts.estimated_bytes
    }

    /// The size of the version's checkpoint files on storage (0 without a checkpoint; a V2
    /// checkpoint's sidecars are not counted).
    pub(crate) fn checkpoint_bytes(&self) -> usize {
        self.facts.checkpoint_bytes
    }

    /// The version of this snapshot.
    pub fn version(&self) -> u64 {
        self.inner.version()
    }

    /// The table root URL (ends with `/`).
    pub fn table_root(&self) -> &Url {
        self.inner.table_root()
    }

    /// The raw Delta `protocol` action of this version.
    pub fn protocol_action(&self) -> &Value {
        &self.facts.protocol
    }

    /// The raw Delta `metaData` action of this version.
    pub fn metadata_action(&self) -> &Value {
        &self.facts.metadata
    }

    pub fn min_reader_version(&self) -> i32 {
        self.facts.min_reader_version
    }

    /// The Delta table id (`metaData.id`).
    pub fn table_id(&self) -> &str {
        self.facts.metadata.get("id").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn schema_string(&self) -> &str {
        self.facts.metadata.get("schemaString").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn partition_columns(&self) -> Vec<String> {
        self.facts
            .metadata
            .get("partitionColumns")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The table's `configuration` map.
    pub fn configuration(&self) -> BTreeMap<String, String> {
        self.facts
            .metadata
            .get("configuration")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default()
    }

    /// Whether `delta.enableChangeDataFeed` is on at this version.
    pub fn change_data_feed_enabled(&self) -> bool {
        self.configuration().get("delta.enableChangeDataFeed").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn has_reader_feature(&self, feature: &str) -> bool {
        self.facts.reader_features.iter().any(|f| f.eq_ignore_ascii_case(feature))
    }

    pub fn column_mapping(&self) -> bool {
        self.facts.column_mapping
    }

    /// Why this version cannot be described in the parquet response format, if it cannot:
    /// column mapping (files hold physical names), deletion vectors (rows must be masked), or
    /// `timestamp_ntz` columns (a type the parquet format does not define).
    pub fn parquet_format_obstacle(&self) -> Option<&'static str> {
        if self.facts.column_mapping {
            Some("column mapping")
        } else if self.has_reader_feature("deletionVectors") {
            Some("deletion vectors")
        } else if self.facts.has_timestamp_ntz || self.has_reader_feature("timestampNtz") {
            Some("timestamp without time zone")
        } else {
            None
        }
    }

    /// The Delta reader features (lower-cased) a delta-format client must understand.
    pub fn required_reader_features(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.facts.column_mapping {
            out.push("columnmapping".into());
        }
        if self.has_reader_feature("deletionVectors") {
            out.push("deletionvectors".into());
        }
        if self.facts.has_timestamp_ntz || self.has_reader_feature("timestampNtz") {
            out.push("timestampntz".into());
        }
        out
    }

    /// The physical column path for a logical one (dotted), or the name itself without mapping.
    pub fn physical_name<'a>(&'a self, logical: &'a str) -> &'a str {
        if !self.facts.column_mapping {
            return logical;
        }
        self.facts.physical_names.get(&logical.to_lowercase()).map(String::as_str).unwrap_or(logical)
    }

    /// The Delta type name of a (dotted, case-insensitive) column, for primitive columns.
    pub fn column_type(&self, column: &str) -> Option<&str> {
        self.facts.column_types.get(&column.to_lowercase()).map(String::as_str)
    }

    /// The metadata for the parquet response format: column metadata other than `comment`
    /// stripped from the schema, as the reference server does.
    pub fn parquet_schema_string(&self) -> String {
        let Ok(mut schema) = serde_json::from_str::<Value>(self.schema_string()) else {
            return self.schema_string().to_owned();
        };
        strip_metadata(&mut schema);
        schema.to_string()
    }
}

fn strip_metadata(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(md)) = o.get_mut("metadata") {
                md.retain(|k, _| k == "comment");
            }
            for (_, child) in o.iter_mut() {
                strip_metadata(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_metadata),
        _ => {}
    }
}

fn walk_schema(v: &Value, logical_prefix: &str, physical_prefix: &str, facts: &mut Facts) {
    let Some(fields) = v.get("fields").and_then(Value::as_array) else { return };
    for f in fields {
        let Some(name) = f.get("name").and_then(Value::as_str) else { continue };
        let physical = f
            .get("metadata")
            .and_then(|m| m.get("delta.columnMapping.physicalName"))
            .and_then(Value::as_str)
            .unwrap_or(name);
        let logical_path = format!("{logical_prefix}{name}");
        let physical_path = format!("{physical_prefix}{physical}");
        facts.physical_names.insert(logical_path.to_lowercase(), physical_path.clone());
        let ty = f.get("type").unwrap_or(&Value::Null);
        if contains_ntz(ty) {
            facts.has_timestamp_ntz = true;
        }
        match ty {
            Value::String(t) => {
                facts.column_types.insert(logical_path.to_lowercase(), t.clone());
            }
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("struct") => {
                walk_schema(ty, &format!("{logical_path}."), &format!("{physical_path}."), facts);
            }
            _ => {}
        }
    }
}

fn contains_ntz(ty: &Value) -> bool {
    match ty {
        Value::String(t) => t == "timestamp_ntz",
        Value::Object(o) => o.values().any(contains_ntz),
        Value::Array(a) => a.iter().any(contains_ntz),
        _ => false,
    }
}
