//! What `/metadata`, `/query` and `/changes` return, in one shape for both response formats.
//!
//! The server answers in the parquet format or the delta format (it chooses when the client
//! says `delta,parquet`); [`parse_response`] reads either into a [`TableMetadata`] and a list of
//! [`DataFile`]s, so nothing downstream cares which format arrived.

use std::collections::BTreeMap;

use d2o_protocol::action::{DeltaLine, EndStreamAction, FileAction, ParquetLine};
use d2o_protocol::capabilities::ResponseFormat;
use serde_json::Value;

use crate::error::{ClientError, Result};
use crate::schema::TableSchema;

/// A table's metadata (as of the version that was read).
#[derive(Debug, Clone)]
pub struct TableMetadata {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub schema_string: String,
    /// The parsed schema, with column-mapping names.
    pub schema: TableSchema,
    pub partition_columns: Vec<String>,
    pub configuration: BTreeMap<String, String>,
    /// The version the metadata belongs to, when the server said.
    pub version: Option<i64>,
    pub min_reader_version: i32,
    /// Delta reader features (delta format only).
    pub reader_features: Vec<String>,
    /// The format the server answered in.
    pub format: ResponseFormat,
    pub num_files: Option<i64>,
    pub size: Option<i64>,
}

/// What a file line says about its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A file of the snapshot (`file`), or an added file in a change feed (`add`).
    Add,
    /// A change data file (`cdf`/`cdc`): its rows carry `_change_type`.
    Cdf,
    /// A removed file in a change feed: its rows were deleted.
    Remove,
}

/// A deletion vector as the sharing server sends it (`storageType` `p` with a URL, or inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionVector {
    pub storage_type: String,
    pub path_or_inline_dv: String,
    pub offset: Option<i64>,
    pub size_in_bytes: i64,
    pub cardinality: i64,
}

/// One data file to read.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Stable across requests: used to match refreshed URLs.
    pub id: String,
    pub url: String,
    pub size: i64,
    /// Partition values as sent (`None` = null). In the delta format with column mapping,
    /// keys are physical names.
    pub partition_values: BTreeMap<String, Option<String>>,
    pub stats: Option<String>,
    pub version: Option<i64>,
    pub timestamp: Option<i64>,
    pub expiration_timestamp: Option<i64>,
    pub kind: FileKind,
    pub deletion_vector: Option<DeletionVector>,
}

impl DataFile {
    /// `numRecords` from the statistics, minus deleted rows, when known.
    pub fn num_records(&self) -> Option<i64> {
        let stats: Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        let n = stats.get("numRecords")?.as_i64()?;
        Some(n - self.deletion_vector.as_ref().map_or(0, |dv| dv.cardinality))
    }
}

/// A parsed `/metadata`, `/query` or `/changes` response.
#[derive(Debug, Clone)]
pub struct TableFiles {
    /// `Delta-Table-Version` of the response.
    pub version: i64,
    pub metadata: TableMetadata,
    pub files: Vec<DataFile>,
    /// `endStreamAction.refreshToken`, when asked for and given.
    pub refresh_token: Option<String>,
    /// `endStreamAction.nextPageToken`, when the server paged the answer.
    pub next_page_token: Option<String>,
    /// Metadata lines after the second (`includeHistoricalMetadata`), with their versions.
    pub later_metadata: Vec<TableMetadata>,
}

/// Parses an NDJSON body.
///
/// `end_stream_required` is set when the server promised an `endStreamAction` line
/// (`includeendstreamaction=true` echoed): a body without it was cut off.
pub(crate) fn parse_response(
    body: &str,
    format: ResponseFormat,
    version: i64,
    end_stream_required: bool,
) -> Result<TableFiles> {
    let mut lines = body.lines().filter(|l| !l.trim().is_empty());
    let mut protocol_line = None;
    let mut metadata: Option<TableMetadata> = None;
    let mut later_metadata = Vec::new();
    let mut files = Vec::new();
    let mut end: Option<EndStreamAction> = None;
    for line in &mut lines {
        if end.is_some() {
            return Err(ClientError::protocol("a line follows the endStreamAction"));
        }
        match format {
            ResponseFormat::Parquet => {
                let parsed: ParquetLine = serde_json::from_str(line)
                    .map_err(|e| ClientError::protocol(format!("invalid line ({e}): {}", short(line))))?;
                match parsed {
                    ParquetLine::Protocol(p) => protocol_line = Some((p.min_reader_version, Vec::new())),
                    ParquetLine::MetaData(m) => {
                        let (min_reader_version, _) = protocol_line.clone().unwrap_or((1, Vec::new()));
                        let md = TableMetadata {
                            schema: TableSchema::parse(&m.schema_string)?,
                            id: m.id,
                            name: m.name,
                            description: m.description,
                            schema_string: m.schema_string,
                            partition_columns: m.partition_columns,
                            configuration: m.configuration,
                            version: m.version,
                            min_reader_version,
                            reader_features: Vec::new(),
                            format,
                            num_files: m.num_files,
                            size: m.size,
                        };
                        if metadata.is_none() { metadata = Some(md) } else { later_metadata.push(md) }
                    }
                    ParquetLine::File(f) | ParquetLine::Add(f) => files.push(parquet_file(f, FileKind::Add)),
                    ParquetLine::Cdf(f) => files.push(parquet_file(f, FileKind::Cdf)),
                    ParquetLine::Remove(f) => files.push(parquet_file(f, FileKind::Remove)),
                    ParquetLine::EndStreamAction(e) => end = Some(e),
                }
            }
            ResponseFormat::Delta => {
                let parsed: DeltaLine = serde_json::from_str(line)
                    .map_err(|e| ClientError::protocol(format!("invalid line ({e}): {}", short(line))))?;
                match parsed {
                    DeltaLine::Protocol(p) => {
                        let min = p.delta_protocol.get("minReaderVersion").and_then(Value::as_i64).unwrap_or(1);
                        let features = p
                            .delta_protocol
                            .get("readerFeatures")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                            .unwrap_or_default();
                        protocol_line = Some((i32::try_from(min).unwrap_or(1), features));
                    }
                    DeltaLine::MetaData(m) => {
                        let (min_reader_version, reader_features) = protocol_line.clone().unwrap_or((1, Vec::new()));
                        let md = delta_metadata(&m.delta_metadata, m.version, min_reader_version, reader_features)?;
                        let md = TableMetadata { num_files: m.num_files, size: m.size, ..md };
                        if metadata.is_none() { metadata = Some(md) } else { later_metadata.push(md) }
                    }
                    DeltaLine::File(f) => files.push(delta_file(f)?),
                    DeltaLine::EndStreamAction(e) => end = Some(e),
                }
            }
        }
    }
    if let Some(msg) = end.as_ref().and_then(|e| e.error_message.clone()) {
        return Err(ClientError::protocol(format!("the server failed while streaming the response: {msg}")));
    }
    if end_stream_required && end.is_none() {
        return Err(ClientError::protocol(
            "the response ended before its endStreamAction line: the server stopped in the middle of the answer",
        ));
    }
    let metadata = metadata.ok_or_else(|| ClientError::protocol("the response has no metaData line"))?;
    let end = end.unwrap_or_default();
    Ok(TableFiles {
        version,
        metadata,
        files,
        refresh_token: end.refresh_token,
        next_page_token: end.next_page_token.filter(|t| !t.is_empty()),
        later_metadata,
    })
}

fn short(line: &str) -> String {
    line.chars().take(200).collect()
}

fn parquet_file(f: FileAction, kind: FileKind) -> DataFile {
    DataFile {
        id: f.id,
        url: f.url,
        size: f.size,
        partition_values: f.partition_values,
        stats: f.stats,
        version: f.version,
        timestamp: f.timestamp,
        expiration_timestamp: f.expiration_timestamp,
        kind,
        deletion_vector: None,
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, Option<String>> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn delta_metadata(
    m: &Value,
    version: Option<i64>,
    min_reader_version: i32,
    reader_features: Vec<String>,
) -> Result<TableMetadata> {
    let schema_string = m
        .get("schemaString")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::protocol("deltaMetadata has no schemaString"))?
        .to_owned();
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(TableMetadata {
        schema: TableSchema::parse(&schema_string)?,
        id: s("id").unwrap_or_default(),
        name: s("name"),
        description: s("description"),
        schema_string,
        partition_columns: m
            .get("partitionColumns")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        configuration: string_map(m.get("configuration")).into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
        version,
        min_reader_version,
        reader_features,
        format: ResponseFormat::Delta,
        num_files: None,
        size: None,
    })
}

fn delta_file(f: d2o_protocol::action::DeltaFile) -> Result<DataFile> {
    let action =
        f.delta_single_action.as_object().ok_or_else(|| ClientError::protocol("deltaSingleAction is not an object"))?;
    let (kind, a) = if let Some(a) = action.get("add") {
        (FileKind::Add, a)
    } else if let Some(a) = action.get("cdc") {
        (FileKind::Cdf, a)
    } else if let Some(a) = action.get("remove") {
        (FileKind::Remove, a)
    } else {
        return Err(ClientError::protocol(format!("unknown deltaSingleAction for file {}", f.id)));
    };
    let url = a
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::protocol(format!("file {} has no path", f.id)))?
        .to_owned();
    let deletion_vector = match a.get("deletionVector") {
        Some(dv) if !dv.is_null() => Some(DeletionVector {
            storage_type: dv.get("storageType").and_then(Value::as_str).unwrap_or_default().to_owned(),
            path_or_inline_dv: dv.get("pathOrInlineDv").and_then(Value::as_str).unwrap_or_default().to_owned(),
            offset: dv.get("offset").and_then(Value::as_i64),
            size_in_bytes: dv.get("sizeInBytes").and_then(Value::as_i64).unwrap_or_default(),
            cardinality: dv.get("cardinality").and_then(Value::as_i64).unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(DataFile {
        id: f.id,
        url,
        size: a.get("size").and_then(Value::as_i64).unwrap_or_default(),
        partition_values: string_map(a.get("partitionValues")),
        stats: a.get("stats").and_then(Value::as_str).map(str::to_owned),
        version: f.version,
        timestamp: f.timestamp,
        expiration_timestamp: f.expiration_timestamp,
        kind,
        deletion_vector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str =
        r#"{\"type\":\"struct\",\"fields\":[{\"name\":\"a\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}}]}"#;

    #[test]
    fn parquet_format() {
        let body = format!(
            "{{\"protocol\":{{\"minReaderVersion\":1}}}}\n{{\"metaData\":{{\"id\":\"x\",\"format\":{{\"provider\":\"parquet\"}},\"schemaString\":\"{SCHEMA}\",\"partitionColumns\":[]}}}}\n{{\"file\":{{\"url\":\"http://f\",\"id\":\"1\",\"partitionValues\":{{}},\"size\":3,\"stats\":\"{{\\\"numRecords\\\":7}}\"}}}}\n"
        );
        let list = parse_response(&body, ResponseFormat::Parquet, 4, false).expect("parses");
        assert_eq!(list.files.len(), 1);
        assert_eq!(list.files[0].num_records(), Some(7));
        assert!(parse_response(&body, ResponseFormat::Parquet, 4, true).is_err(), "no endStreamAction");
    }

    #[test]
    fn delta_format_with_dv() {
        let body = format!(
            "{{\"protocol\":{{\"deltaProtocol\":{{\"minReaderVersion\":3,\"minWriterVersion\":7,\"readerFeatures\":[\"deletionVectors\"]}}}}}}\n{{\"metaData\":{{\"deltaMetadata\":{{\"id\":\"x\",\"format\":{{\"provider\":\"parquet\"}},\"schemaString\":\"{SCHEMA}\",\"partitionColumns\":[],\"configuration\":{{}}}}}}}}\n{{\"file\":{{\"id\":\"1\",\"deltaSingleAction\":{{\"add\":{{\"path\":\"http://f\",\"size\":3,\"partitionValues\":{{}},\"modificationTime\":1,\"dataChange\":true,\"deletionVector\":{{\"storageType\":\"p\",\"pathOrInlineDv\":\"http://dv\",\"offset\":1,\"sizeInBytes\":34,\"cardinality\":2}}}}}}}}}}\n{{\"endStreamAction\":{{\"refreshToken\":\"r\"}}}}\n"
        );
        let list = parse_response(&body, ResponseFormat::Delta, 1, true).expect("parses");
        assert_eq!(list.metadata.reader_features, vec!["deletionVectors"]);
        assert_eq!(list.files[0].deletion_vector.as_ref().map(|d| d.cardinality), Some(2));
        assert_eq!(list.refresh_token.as_deref(), Some("r"));
    }
}
