//! The lines of both response formats, built from `d2o-protocol`'s types; data-file lines of
//! snapshots with its fast writers.

use std::collections::BTreeMap;

use d2o_catalog::SharedTable;
use d2o_delta::{DeletionVectorDescriptor, FileChange, FileChangeKind, FileEntry, TableSnapshot};
use d2o_protocol::action::write::{FileFields, LineContext, write_delta_file, write_parquet_file};
use d2o_protocol::action::{
    DeltaFile, DeltaLine, DeltaMetadata, DeltaProtocol, EndStreamAction, FileAction, Format, Metadata, ParquetLine,
    Protocol,
};
use d2o_protocol::capabilities::ResponseFormat;
use serde_json::{Map, Value};

use crate::ApiError;
use crate::storage::TableUrls;

/// A line of either format, ready to be written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Line {
    Parquet(ParquetLine),
    Delta(DeltaLine),
}

/// The `protocol` line.
pub(crate) fn protocol(format: ResponseFormat, snapshot: &TableSnapshot) -> Line {
    match format {
        ResponseFormat::Parquet => Line::Parquet(ParquetLine::Protocol(Protocol { min_reader_version: 1 })),
        ResponseFormat::Delta => Line::Delta(DeltaLine::Protocol(DeltaProtocol {
            delta_protocol: snapshot.protocol_action().clone(),
            version: None,
        })),
    }
}

/// The `metaData` line of a snapshot; `version` is set on versioned reads.
pub(crate) fn metadata(
    format: ResponseFormat,
    snapshot: &TableSnapshot,
    t: &SharedTable,
    version: Option<u64>,
) -> Line {
    match format {
        ResponseFormat::Parquet => {
            let text = |key: &str| snapshot.metadata_action().get(key).and_then(Value::as_str).map(str::to_owned);
            let mut configuration = BTreeMap::new();
            if t.history_shared && t.cdf_enabled != Some(false) && snapshot.change_data_feed_enabled() {
                configuration.insert("enableChangeDataFeed".to_owned(), "true".to_owned());
            }
            Line::Parquet(ParquetLine::MetaData(Metadata {
                id: snapshot.table_id().to_owned(),
                name: text("name"),
                description: text("description"),
                format: Format::default(),
                schema_string: snapshot.parquet_schema_string(),
                partition_columns: snapshot.partition_columns(),
                configuration,
                version: version.map(|v| v as i64),
                size: None,
                num_files: None,
            }))
        }
        ResponseFormat::Delta => Line::Delta(DeltaLine::MetaData(DeltaMetadata {
            delta_metadata: snapshot.metadata_action().clone(),
            version: version.map(|v| v as i64),
            size: None,
            num_files: None,
        })),
    }
}

/// The `metaData` line of a commit that changed the table's metadata, in a change feed.
pub(crate) fn commit_metadata(format: ResponseFormat, md: &Value, version: u64) -> Line {
    match format {
        ResponseFormat::Delta => Line::Delta(DeltaLine::MetaData(DeltaMetadata {
            delta_metadata: md.clone(),
            version: Some(version as i64),
            size: None,
            num_files: None,
        })),
        ResponseFormat::Parquet => {
            let strings = |key: &str| -> Vec<String> {
                md.get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            };
            let configuration = md
                .get("configuration")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            Line::Parquet(ParquetLine::MetaData(Metadata {
                id: md.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: None,
                description: None,
                format: Format::default(),
                schema_string: md.get("schemaString").and_then(Value::as_str).unwrap_or_default().to_owned(),
                partition_columns: strings("partitionColumns"),
                configuration,
                version: Some(version as i64),
                size: None,
                num_files: None,
            }))
        }
    }
}

/// The `endStreamAction` line.
pub(crate) fn end_stream(format: ResponseFormat, action: EndStreamAction) -> Line {
    match format {
        ResponseFormat::Parquet => Line::Parquet(ParquetLine::EndStreamAction(action)),
        ResponseFormat::Delta => Line::Delta(DeltaLine::EndStreamAction(action)),
    }
}

/// Writes the `file` line of a data file of a snapshot, in either format.
pub(crate) fn write_snapshot_file(
    out: &mut String,
    format: ResponseFormat,
    entry: &FileEntry<'_>,
    urls: &TableUrls<'_>,
    ctx: &LineContext,
) -> Result<(), ApiError> {
    let deletion_vector = match (format, entry.deletion_vector()) {
        (ResponseFormat::Delta, Some(dv)) => Some(urls.deletion_vector(&dv)?.to_string()),
        _ => None,
    };
    let file = FileFields {
        id: entry.id(),
        partition_values: entry.partition_values_json(),
        size: entry.size(),
        stats: entry.stats_literal(),
        modification_time: entry.modification_time(),
        deletion_vector: deletion_vector.as_deref(),
    };
    let url = |out: &mut String| urls.write(out, entry.path());
    match format {
        ResponseFormat::Parquet => write_parquet_file(out, &file, ctx, url),
        ResponseFormat::Delta => write_delta_file(out, &file, ctx, url),
    }
}

/// The line of a file action of a commit (`add`, `remove` or `cdc`), in either format.
pub(crate) fn change(
    change: &FileChange<'_>,
    format: ResponseFormat,
    urls: &TableUrls<'_>,
    ctx: &LineContext,
    id: &str,
) -> Result<Line, ApiError> {
    let action = change.action;
    let path = change.path().ok_or_else(|| ApiError::internal("a file action has no path"))?;
    let url = urls.url(path)?;
    let (version, timestamp) = ctx.version.map(|(v, t)| (v as i64, t)).unzip();
    match format {
        ResponseFormat::Parquet => {
            let partition_values = action
                .get("partitionValues")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
                .collect();
            let file = FileAction {
                url,
                id: id.to_owned(),
                partition_values,
                size: action.get("size").and_then(Value::as_i64).unwrap_or(0),
                stats: (change.kind == FileChangeKind::Add)
                    .then(|| action.get("stats").and_then(Value::as_str).map(str::to_owned))
                    .flatten(),
                version,
                timestamp,
                expiration_timestamp: Some(ctx.expiration_timestamp),
            };
            Ok(Line::Parquet(match change.kind {
                FileChangeKind::Add => ParquetLine::Add(file),
                FileChangeKind::Remove => ParquetLine::Remove(file),
                FileChangeKind::Cdc => ParquetLine::Cdf(file),
            }))
        }
        ResponseFormat::Delta => {
            let mut raw = action.as_object().cloned().unwrap_or_default();
            raw.insert("path".into(), url.into());
            if let Some(dv) = raw.get("deletionVector").filter(|v| v.is_object()).cloned() {
                let descriptor = DeletionVectorDescriptor {
                    storage_type: dv.get("storageType").and_then(Value::as_str).unwrap_or_default(),
                    path_or_inline_dv: dv.get("pathOrInlineDv").and_then(Value::as_str).unwrap_or_default(),
                    offset: dv.get("offset").and_then(Value::as_i64).map(|o| o as i32),
                    size_in_bytes: dv.get("sizeInBytes").and_then(Value::as_i64).unwrap_or_default() as i32,
                    cardinality: dv.get("cardinality").and_then(Value::as_i64).unwrap_or_default(),
                };
                raw.insert("deletionVector".into(), urls.deletion_vector(&descriptor)?);
            }
            let mut single = Map::new();
            single.insert(change.kind.log_key().to_owned(), Value::Object(raw));
            Ok(Line::Delta(DeltaLine::File(DeltaFile {
                id: id.to_owned(),
                deletion_vector_file_id: None,
                version,
                timestamp,
                expiration_timestamp: Some(ctx.expiration_timestamp),
                delta_single_action: Value::Object(single),
            })))
        }
    }
}
