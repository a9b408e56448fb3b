//! `d2o audit export`: the audit log as a Parquet file or a new Delta table, which the
//! provider can query, or share with d2o itself.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use d2o_catalog::{Admin, AuditEvent, AuditFilter};

/// Events read from the catalog per page (and per Parquet row group or Delta file).
const PAGE: u32 = 50_000;

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One Parquet file.
    Parquet,
    /// A new Delta table (a directory).
    Delta,
}

/// The export's columns: one per field of an event, times as UTC timestamps.
fn schema() -> Arc<Schema> {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let long = |name: &str| Field::new(name, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        text("principal"),
        text("action"),
        text("share"),
        text("schema"),
        text("table"),
        long("version"),
        long("files"),
        long("bytes"),
        Field::new("status", DataType::Int32, true),
        text("client_ip"),
        text("user_agent"),
        text("request_id"),
        text("detail"),
    ]))
}

fn batch(events: &[AuditEvent]) -> Result<RecordBatch> {
    let text =
        |f: fn(&AuditEvent) -> Option<&str>| -> ArrayRef { Arc::new(StringArray::from_iter(events.iter().map(f))) };
    let long =
        |f: fn(&AuditEvent) -> Option<i64>| -> ArrayRef { Arc::new(Int64Array::from_iter(events.iter().map(f))) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.time_ms.saturating_mul(1000)))
                .with_timezone("UTC"),
        ),
        text(|e| Some(e.principal.as_str())),
        text(|e| Some(e.action.as_str())),
        text(|e| e.share.as_deref()),
        text(|e| e.schema.as_deref()),
        text(|e| e.table.as_deref()),
        long(|e| e.version),
        long(|e| e.files),
        long(|e| e.bytes),
        Arc::new(Int32Array::from_iter_values(events.iter().map(|e| i32::from(e.status)))),
        text(|e| e.client_ip.as_deref()),
        text(|e| e.user_agent.as_deref()),
        text(|e| e.request_id.as_deref()),
        text(|e| e.detail.as_deref()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Every event `filter` selects (its limit and offset aside), newest first, a page at a time,
/// with the end of the range fixed so that events recorded meanwhile do not shift the pages.
async fn batches(admin: &dyn Admin, filter: &AuditFilter) -> Result<(Vec<RecordBatch>, usize)> {
    let until = filter.until_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let (mut out, mut rows, mut offset) = (Vec::new(), 0usize, 0u32);
    loop {
        let page = AuditFilter { until_ms: Some(until), limit: Some(PAGE), offset: Some(offset), ..filter.clone() };
        let events = admin.audit(&page).await?;
        if events.is_empty() {
            break;
        }
        rows += events.len();
        out.push(batch(&events)?);
        if events.len() < PAGE as usize {
            break;
        }
        offset = offset
            .checked_add(PAGE)
            .context("the audit log is too long to export in one go; narrow it with --since/--until")?;
    }
    Ok((out, rows))
}

/// Writes the events `filter` selects to `out`; returns how many.
pub(crate) async fn export(admin: &dyn Admin, filter: &AuditFilter, out: &Path, format: Format) -> Result<usize> {
    let (batches, rows) = batches(admin, filter).await?;
    match format {
        Format::Parquet => {
            anyhow::ensure!(!out.exists(), "{} exists; choose a new file", out.display());
            let file = std::fs::File::create_new(out).with_context(|| format!("cannot create {}", out.display()))?;
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema(), Some(props))?;
            for b in &batches {
                writer.write(b)?;
            }
            writer.close()?;
        }
        Format::Delta => {
            anyhow::ensure!(rows > 0, "no audit events match; a Delta table needs at least one");
            anyhow::ensure!(
                !out.exists() || std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false),
                "{} exists and is not empty; choose a new directory",
                out.display()
            );
            let (dir, rt) = (out.to_path_buf(), tokio::runtime::Handle::current());
            tokio::task::spawn_blocking(move || d2o_demo::delta_writer::write_new_table(&dir, batches, &rt))
                .await
                .context("the export did not finish")??;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_rows() {
        let e = AuditEvent {
            time_ms: 1_700_000_000_123,
            principal: "partner_co".into(),
            action: "query".into(),
            share: Some("s".into()),
            bytes: Some(42),
            status: 200,
            ..AuditEvent::default()
        };
        let b = batch(&[e.clone(), AuditEvent { status: 404, ..e }]).expect("batch");
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), schema());
        let times = b.column(0).as_any().downcast_ref::<TimestampMicrosecondArray>().expect("times");
        assert_eq!(times.value(0), 1_700_000_000_123_000);
        assert!(b.column_by_name("schema").expect("column").is_null(0));
    }
}
