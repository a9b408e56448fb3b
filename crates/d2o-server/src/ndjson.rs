//! The lines of both response formats, and the signed URLs they carry.
//!
//! File lines are written by hand straight into the output buffer (the hot path of `/query`);
//! everything else uses serde.

use std::fmt::Write as _;

use d2o_catalog::{Principal, SharedTable};
use d2o_delta::{DeletionVector, deletion_vector_path};
use d2o_protocol::capabilities::ResponseFormat;
use serde_json::{Map, Value};
use url::Url;

use crate::ApiError;
use crate::signing::{FileGrant, UrlSigner};

/// Turns table-relative paths into signed URLs for one response: URLs for `who` to read
/// files of `table`, until the expiry.
pub(crate) struct FileUrls<'a> {
    signer: &'a UrlSigner,
    /// `http://host[:port]/{endpoint}`
    base: &'a str,
    root: &'a Url,
    /// The URL segment naming the table entry and the recipient.
    grant: String,
    expires_ms: i64,
}

impl<'a> FileUrls<'a> {
    pub(crate) fn new(
        signer: &'a UrlSigner,
        base: &'a str,
        who: &Principal,
        table: &'a SharedTable,
        expires_ms: i64,
    ) -> Self {
        let grant = FileGrant { table_id: table.id.clone(), recipient_id: who.id.clone() }.encode();
        FileUrls { signer, base, root: &table.location, grant, expires_ms }
    }

    /// Writes the signed URL of a path from the Delta log.
    pub(crate) fn write(&self, out: &mut String, log_path: &str) -> Result<(), ApiError> {
        let relative = self.relative(log_path)?;
        self.signer.write_file_url(out, self.base, &self.grant, relative, self.expires_ms);
        Ok(())
    }

    pub(crate) fn url(&self, log_path: &str) -> Result<String, ApiError> {
        let mut s = String::new();
        self.write(&mut s, log_path)?;
        Ok(s)
    }

    /// A log path relative to the root; absolute paths are accepted only inside the root.
    fn relative<'p>(&self, log_path: &'p str) -> Result<&'p str, ApiError> {
        let is_absolute =
            log_path.starts_with('/') || log_path.split_once(':').is_some_and(|(s, _)| s.len() > 1 && !s.contains('/'));
        let relative = if is_absolute { log_path.strip_prefix(self.root.as_str()) } else { Some(log_path) };
        let inside = relative.filter(|r| {
            r.split('/').all(|segment| {
                let segment = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
                segment != ".." && !segment.contains(['/', '\\'])
            })
        });
        inside.ok_or_else(|| {
            tracing::error!(table = %self.root, path = log_path, "the table's log names a file outside its root; it cannot be shared");
            ApiError::Unsupported(
                "the table's log names a file outside the table's directory, which d2o does not serve; ask the provider to repair or re-create the table".to_owned(),
            )
        })
    }

    /// The deletion vector descriptor with its file replaced by a signed URL (`storageType` `p`).
    pub(crate) fn deletion_vector(&self, dv: &DeletionVector<'_>) -> Result<Value, ApiError> {
        let mut out = Map::new();
        match deletion_vector_path(dv, self.root)? {
            None => {
                out.insert("storageType".into(), dv.storage_type.into());
                out.insert("pathOrInlineDv".into(), dv.path_or_inline_dv.into());
            }
            Some(path) => {
                out.insert("storageType".into(), "p".into());
                out.insert("pathOrInlineDv".into(), self.url(&path)?.into());
            }
        }
        if let Some(offset) = dv.offset {
            out.insert("offset".into(), offset.into());
        }
        out.insert("sizeInBytes".into(), dv.size_in_bytes.into());
        out.insert("cardinality".into(), dv.cardinality.into());
        Ok(Value::Object(out))
    }
}

/// The `protocol` line.
pub(crate) fn protocol_line(format: ResponseFormat, delta_protocol: &Value) -> Value {
    match format {
        ResponseFormat::Parquet => serde_json::json!({"protocol": {"minReaderVersion": 1}}),
        ResponseFormat::Delta => serde_json::json!({"protocol": {"deltaProtocol": delta_protocol}}),
    }
}

/// Fields shared by the file lines of one response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileLineContext {
    /// `version` and `timestamp` to put on each line (time travel and change queries).
    pub(crate) version: Option<(u64, i64)>,
    pub(crate) expires_ms: i64,
}

/// Writes the sharing-level fields after `id` in a parquet-format file line.
fn tail_fields(out: &mut String, ctx: &FileLineContext) {
    if let Some((version, timestamp)) = ctx.version {
        let _ = write!(out, ",\"version\":{version},\"timestamp\":{timestamp}");
    }
    let _ = write!(out, ",\"expirationTimestamp\":{}", ctx.expires_ms);
}

/// A data file of a snapshot, in either format.
pub(crate) struct SnapshotFile<'e> {
    pub(crate) entry: d2o_delta::FileEntry<'e>,
}

impl SnapshotFile<'_> {
    pub(crate) fn write(
        &self,
        out: &mut String,
        format: ResponseFormat,
        urls: &FileUrls<'_>,
        ctx: &FileLineContext,
    ) -> Result<(), ApiError> {
        let e = &self.entry;
        match format {
            ResponseFormat::Parquet => {
                out.push_str("{\"file\":{\"url\":\"");
                urls.write(out, e.path())?;
                out.push_str("\",\"id\":\"");
                out.push_str(e.id());
                out.push_str("\",\"partitionValues\":");
                out.push_str(e.partition_values_json());
                out.push_str(",\"size\":");
                let _ = write!(out, "{}", e.size());
                if let Some(stats) = e.stats_literal() {
                    out.push_str(",\"stats\":");
                    out.push_str(stats);
                }
                tail_fields(out, ctx);
                out.push_str("}}");
            }
            ResponseFormat::Delta => {
                out.push_str("{\"file\":{\"id\":\"");
                out.push_str(e.id());
                out.push('"');
                tail_fields(out, ctx);
                out.push_str(",\"deltaSingleAction\":{\"add\":{\"path\":\"");
                urls.write(out, e.path())?;
                out.push_str("\",\"partitionValues\":");
                out.push_str(e.partition_values_json());
                out.push_str(",\"size\":");
                let _ = write!(out, "{}", e.size());
                out.push_str(",\"modificationTime\":");
                let _ = write!(out, "{}", e.modification_time());
                out.push_str(",\"dataChange\":true");
                if let Some(stats) = e.stats_literal() {
                    out.push_str(",\"stats\":");
                    out.push_str(stats);
                }
                if let Some(dv) = e.deletion_vector() {
                    out.push_str(",\"deletionVector\":");
                    out.push_str(&urls.deletion_vector(&dv)?.to_string());
                }
                out.push_str("}}}}");
            }
        }
        Ok(())
    }
}

/// A file action of a commit (`add`, `remove` or `cdc`), in either format.
pub(crate) fn change_line(
    change: &d2o_delta::FileChange<'_>,
    format: ResponseFormat,
    urls: &FileUrls<'_>,
    ctx: &FileLineContext,
    id: &str,
) -> Result<Value, ApiError> {
    let action = change.action;
    let path = change.path().ok_or_else(|| ApiError::Internal("a file action has no path".into()))?;
    let url = urls.url(path)?;
    let (version, timestamp) = ctx.version.unwrap_or_default();
    match format {
        ResponseFormat::Parquet => {
            let key = match change.kind {
                d2o_delta::FileChangeKind::Add => "add",
                d2o_delta::FileChangeKind::Remove => "remove",
                d2o_delta::FileChangeKind::Cdc => "cdf",
            };
            let mut file = Map::new();
            file.insert("url".into(), url.into());
            file.insert("id".into(), id.into());
            file.insert(
                "partitionValues".into(),
                action.get("partitionValues").cloned().unwrap_or_else(|| Value::Object(Map::new())),
            );
            file.insert("size".into(), action.get("size").cloned().unwrap_or(Value::from(0)));
            if change.kind == d2o_delta::FileChangeKind::Add
                && let Some(stats) = action.get("stats").filter(|s| s.is_string())
            {
                file.insert("stats".into(), stats.clone());
            }
            file.insert("version".into(), version.into());
            file.insert("timestamp".into(), timestamp.into());
            file.insert("expirationTimestamp".into(), ctx.expires_ms.into());
            Ok(serde_json::json!({ key: file }))
        }
        ResponseFormat::Delta => {
            let mut raw = action.as_object().cloned().unwrap_or_default();
            raw.insert("path".into(), url.into());
            if let Some(dv) = raw.get("deletionVector").filter(|v| v.is_object()).cloned() {
                let descriptor = DeletionVector {
                    storage_type: dv.get("storageType").and_then(Value::as_str).unwrap_or_default(),
                    path_or_inline_dv: dv.get("pathOrInlineDv").and_then(Value::as_str).unwrap_or_default(),
                    offset: dv.get("offset").and_then(Value::as_i64).map(|o| o as i32),
                    size_in_bytes: dv.get("sizeInBytes").and_then(Value::as_i64).unwrap_or_default() as i32,
                    cardinality: dv.get("cardinality").and_then(Value::as_i64).unwrap_or_default(),
                };
                raw.insert("deletionVector".into(), urls.deletion_vector(&descriptor)?);
            }
            Ok(serde_json::json!({"file": {
                "id": id,
                "version": version,
                "timestamp": timestamp,
                "expirationTimestamp": ctx.expires_ms,
                "deltaSingleAction": { change.kind.log_key(): raw },
            }}))
        }
    }
}
