//! Writing a stream of batches to a local file (Parquet, CSV or Arrow IPC), batch by batch, so
//! that a table larger than memory streams to disk.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{ClientError, Result};
use crate::reader::RecordBatchStream;

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
    pub batches: u64,
}

enum Sink {
    Parquet(ArrowWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Arrow(arrow::ipc::writer::FileWriter<BufWriter<File>>),
}

/// Writes every batch of `stream` to `path`. On error the partial file is removed.
pub async fn write_stream(stream: RecordBatchStream, path: &Path, format: OutputFormat) -> Result<WriteSummary> {
    let result = write_inner(stream, path, format).await;
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
        OutputFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(1 << 18))
                .build();
            Sink::Parquet(ArrowWriter::try_new(file, schema.clone(), Some(props))?)
        }
        OutputFormat::Csv => Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(file)),
        OutputFormat::Arrow => Sink::Arrow(arrow::ipc::writer::FileWriter::try_new(file, &schema)?),
    };
    let mut summary = WriteSummary::default();
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch?;
        summary.rows += batch.num_rows() as u64;
        summary.batches += 1;
        // Encoding is CPU work; it runs here, between polls, which also paces the downloads.
        let mut encode = || -> Result<()> {
            match &mut sink {
                Sink::Parquet(w) => w.write(&batch)?,
                Sink::Csv(w) => w.write(&batch)?,
                Sink::Arrow(w) => w.write(&batch)?,
            }
            Ok(())
        };
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(encode)?;
        } else {
            encode()?;
        }
    }
    match sink {
        Sink::Parquet(w) => {
            w.close()?;
        }
        Sink::Csv(w) => {
            w.into_inner().into_inner().map_err(|e| io(e.into_error()))?;
        }
        Sink::Arrow(mut w) => w.finish()?,
    }
    Ok(summary)
}
