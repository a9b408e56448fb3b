//! NDJSON lines of `/metadata`, `/query` and `/changes`.
//!
//! Every line is a JSON object with exactly one key. [`ParquetLine`] covers the parquet response
//! format, [`DeltaLine`] the delta format, whose payloads are raw Delta log actions and are kept
//! as [`serde_json::Value`] so that nothing a Delta reader needs is lost on the way. The server
//! writes every line from these types, except data-file lines, which [`write`] writes faster
//! (and a test reads back with these types).

pub mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `protocol` in the parquet format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i32,
}

/// `format` of a `metaData` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

impl Default for Format {
    fn default() -> Self {
        Format { provider: "parquet".to_owned(), options: None }
    }
}

/// `metaData` in the parquet format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub format: Format,
    pub schema_string: String,
    #[serde(default)]
    pub partition_columns: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configuration: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_files: Option<i64>,
}

/// A data file in the parquet format: the payload of `file`, `add`, `cdf` and `remove` lines.
///
/// `partitionValues` maps partition columns to their serialized values (`None` = null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAction {
    pub url: String,
    pub id: String,
    #[serde(default)]
    pub partition_values: BTreeMap<String, Option<String>>,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<i64>,
}

/// The last line of a stream when the client asked for it (or paged with `maxFiles`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndStreamAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_url_expiration_timestamp: Option<i64>,
    /// When set, the stream failed after the 200 was sent and the client must fail the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status_error_code: Option<i32>,
}

/// One line of a parquet-format response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParquetLine {
    Protocol(Protocol),
    MetaData(Metadata),
    File(FileAction),
    Add(FileAction),
    Cdf(FileAction),
    Remove(FileAction),
    EndStreamAction(EndStreamAction),
}

/// `protocol` in the delta format: the raw Delta protocol action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaProtocol {
    pub delta_protocol: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `metaData` in the delta format: the raw Delta metaData action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaMetadata {
    pub delta_metadata: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_files: Option<i64>,
}

/// `file` in the delta format: one raw Delta action (`add`, `remove` or `cdc`) whose `path` is a
/// pre-signed URL, plus the sharing-level fields around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaFile {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_vector_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<i64>,
    pub delta_single_action: Value,
}

/// One line of a delta-format response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeltaLine {
    Protocol(DeltaProtocol),
    MetaData(DeltaMetadata),
    File(DeltaFile),
    EndStreamAction(EndStreamAction),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_lines_have_one_key() {
        let line = ParquetLine::Protocol(Protocol { min_reader_version: 1 });
        assert_eq!(serde_json::to_string(&line).ok().as_deref(), Some(r#"{"protocol":{"minReaderVersion":1}}"#));
        let parsed: ParquetLine = serde_json::from_str(
            r#"{"file":{"url":"https://x/y","id":"a","partitionValues":{"d":null},"size":3,"extra":1}}"#,
        )
        .expect("valid line");
        let ParquetLine::File(f) = parsed else { panic!("not a file line") };
        assert_eq!(f.partition_values.get("d"), Some(&None));
    }

    #[test]
    fn delta_file_line_round_trips() {
        let raw = r#"{"file":{"id":"a","version":3,"deltaSingleAction":{"add":{"path":"https://x","size":1}}}}"#;
        let parsed: DeltaLine = serde_json::from_str(raw).expect("valid line");
        assert_eq!(serde_json::to_string(&parsed).ok().as_deref(), Some(raw));
    }
}
