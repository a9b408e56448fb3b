//! Writing a stream of batches to a local file (Parquet, CSV or Arrow IPC), batch by batch, so
//! that a table larger than memory streams to disk; and writing a snapshot read to Parquet by
//! copying the data files' column chunks where they allow it
//! ([`TableQuery::load_to_file`](crate::TableQuery::load_to_file)).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::record_batch::RecordBatch;
use futures::StreamExt;

use crate::client::Client;
use crate::copy::{ParquetSink, Piece, plan_copy};
use crate::error::{ClientError, Result};
use crate::files::TableFiles;
use crate::profile::TableName;
use crate::reader::{LoadProgress, ReadPlan, RecordBatchStream, Requery, decode, spawn_reads};

/// An output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Parquet,
    Csv,
    /// Arrow IPC file (`.arrow`, `.feather`).
    Arrow,
}

impl OutputFormat {
    /// The format a file name's extension names.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet" | "pq") => Ok(OutputFormat::Parquet),
            Some("csv") => Ok(OutputFormat::Csv),
            Some("arrow" | "feather" | "ipc") => Ok(OutputFormat::Arrow),
            _ => Err(ClientError::invalid(format!(
                "cannot tell the output format of '{}': use a .parquet, .csv or .arrow file name",
                path.display()
            ))),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteSummary {
    pub rows: u64,
    /// Record batches encoded.
    pub batches: u64,
    /// Data files appended to a Parquet output by copying their column chunks without decoding
    /// (columns a file stores otherwise are re-encoded); the other files were decoded.
    pub files_copied: u64,
}

enum Sink {
    Parquet(ParquetSink),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Arrow(arrow::ipc::writer::FileWriter<BufWriter<File>>),
}

/// Writes every batch of `stream` to `path`. On error the partial file is removed.
pub async fn write_stream(stream: RecordBatchStream, path: &Path, format: OutputFormat) -> Result<WriteSummary> {
    removing_partial_file(path, write_inner(stream, path, format)).await
}

/// Runs a write to `path`; if it fails, removes what it left there.
async fn removing_partial_file<T>(path: &Path, write: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let result = write.await;
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn write_inner(mut stream: RecordBatchStream, path: &Path, format: OutputFormat) -> Result<WriteSummary> {
    let io = |source| ClientError::Io { path: PathBuf::from(path), source };
    let file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    let schema = stream.schema();
    let mut sink = match format {
        OutputFormat::Parquet => Sink::Parquet(ParquetSink::for_batches(file, schema.clone())?),
        OutputFormat::Csv => Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(file)),
        OutputFormat::Arrow => Sink::Arrow(arrow::ipc::writer::FileWriter::try_new(file, &schema)?),
    };
    let mut summary = WriteSummary::default();
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch?;
        summary.rows += batch.num_rows() as u64;
        summary.batches += 1;
        // Encoding is CPU work; it runs here, between polls, which also paces the downloads.
        let encode = || -> Result<()> {
            match &mut sink {
                Sink::Parquet(w) => w.write(&batch)?,
                Sink::Csv(w) => w.write(&batch)?,
                Sink::Arrow(w) => w.write(&batch)?,
            }
            Ok(())
        };
        run_cpu(encode)?;
    }
    match sink {
        Sink::Parquet(w) => w.close()?,
        Sink::Csv(w) => {
            w.into_inner().into_inner().map_err(|e| io(e.into_error()))?;
        }
        Sink::Arrow(mut w) => w.finish()?,
    }
    Ok(summary)
}

/// Runs CPU work from async code: in place on a multi-threaded runtime (telling it so), plainly
/// on a current-thread one.
fn run_cpu<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Writes a snapshot read to a Parquet file: the column chunks of files [`plan_copy`] accepts
/// are copied, the other files decoded and encoded. Files are written in the order their
/// downloads finish. On error the partial file is removed.
pub(crate) async fn write_parquet_copying(
    client: Client,
    table: TableName,
    list: TableFiles,
    plan: ReadPlan,
    requery: Requery,
    progress: Arc<LoadProgress>,
    path: &Path,
) -> Result<WriteSummary> {
    removing_partial_file(path, async move {
        let io = |source| ClientError::Io { path: PathBuf::from(path), source };
        let file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        let mut sink = ParquetSink::for_copies(file, plan.output_schema())?;
        let target = sink.copy_target();
        let mut pieces =
            spawn_reads(client, table, list, plan, requery, progress.clone(), move |plan, file, data, deleted, tx| {
                if deleted.is_none()
                    && let Some(copy) = plan_copy(&target, plan, file, &data)?
                {
                    // A closed channel means the writer failed; it reports why.
                    let _ = tx.blocking_send(Ok(Piece::Copy(copy)));
                    return Ok(());
                }
                decode(plan, file, data, deleted, &mut |batch| tx.blocking_send(Ok(Piece::Batch(batch))).is_ok())
            });
        let mut summary = WriteSummary::default();
        while let Some(piece) = pieces.recv().await {
            let rows = run_cpu(|| match piece? {
                Piece::Batch(batch) => {
                    sink.write(&batch)?;
                    summary.batches += 1;
                    Ok(batch.num_rows() as u64)
                }
                Piece::Copy(copy) => {
                    let rows = sink.copy(copy)?;
                    summary.files_copied += 1;
                    Ok(rows)
                }
            })?;
            summary.rows += rows;
            progress.rows.fetch_add(rows, Ordering::Relaxed);
        }
        run_cpu(|| sink.close())?;
        Ok(summary)
    })
    .await
}
