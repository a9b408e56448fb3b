//! The floors of the client benchmark, from a table's Parquet files on local disk (no server,
//! no HTTP, no protocol):
//! - by default, read them with arrow-rs and, unless `--no-write`, write them to one Parquet file
//!   with the settings `d2o client load` encodes with (the floor of decoding and re-encoding).
//!   An output named `*.csv` is written as CSV with arrow-rs's writer instead (the floor of
//!   `d2o client load --out x.csv`). `--filter-ge COLUMN=VALUE` keeps only the rows whose
//!   floating-point COLUMN is at least VALUE, filtered in the reading threads as the client's
//!   download tasks filter (the floor of `d2o client load --where "COLUMN >= VALUE"`);
//! - with `--copy`, read them whole and append their column chunks to one Parquet file without
//!   decoding (the floor of the chunk copy `d2o client load` does for Parquet output).
//!
//! The reading threads decode in parallel; the writer, as arrow-rs's writers do, encodes on one
//! thread.
//!
//! ```text
//! cargo run --release -p d2o-client --example local_floor -- <table-dir> [out.parquet | out.csv | --no-write] [threads] [--copy | --filter-ge COLUMN=VALUE]
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::Float64Array;
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::gt_eq;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if p.is_dir() && !name.starts_with('_') {
            parquet_files(&p, out);
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
}

enum Writer {
    Parquet(ArrowWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect(
        "usage: local_floor <table-dir> [out.parquet|out.csv|--no-write] [threads] [--copy|--filter-ge COLUMN=VALUE]",
    ));
    let out = args.get(2).filter(|a| *a != "--no-write").map(PathBuf::from);
    let threads: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(4);
    let mut files = Vec::new();
    parquet_files(&dir, &mut files);
    files.sort();
    if args.get(4).map(String::as_str) == Some("--copy") {
        let out = out.expect("--copy needs an output file");
        copy_floor(files, &out, threads);
        return;
    }
    let filter: Option<(String, f64)> = (args.get(4).map(String::as_str) == Some("--filter-ge")).then(|| {
        let (column, value) = args.get(5).and_then(|f| f.split_once('=')).expect("--filter-ge COLUMN=VALUE");
        (column.to_owned(), value.parse().expect("a number"))
    });
    let start = Instant::now();
    let queue = Arc::new(Mutex::new(files));
    let (tx, rx) = sync_channel(threads.max(2));
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (queue, tx, filter) = (queue.clone(), tx.clone(), filter.clone());
        workers.push(std::thread::spawn(move || {
            loop {
                let Some(path) = queue.lock().unwrap().pop() else { break };
                let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
                    .expect("parquet")
                    .with_batch_size(32_768)
                    .build()
                    .expect("reader");
                for batch in reader {
                    let mut batch = batch.expect("batch");
                    if let Some((column, value)) = &filter {
                        let values = batch.column_by_name(column).expect("the filter's column");
                        let keep = gt_eq(values, &Float64Array::new_scalar(*value)).expect("a float column");
                        batch = filter_record_batch(&batch, &keep).expect("filtered");
                    }
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut rows = 0usize;
    let mut writer: Option<Writer> = None;
    for batch in rx {
        rows += batch.num_rows();
        if let Some(path) = &out {
            let w = writer.get_or_insert_with(|| {
                let file = BufWriter::with_capacity(1 << 20, File::create(path).expect("create"));
                if path.extension().is_some_and(|e| e == "csv") {
                    return Writer::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(file));
                }
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(1 << 18))
                    .build();
                Writer::Parquet(ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer"))
            });
            match w {
                Writer::Parquet(w) => w.write(&batch).expect("write"),
                Writer::Csv(w) => w.write(&batch).expect("write"),
            }
        }
    }
    match writer {
        Some(Writer::Parquet(w)) => {
            w.close().expect("close");
        }
        Some(Writer::Csv(w)) => {
            w.into_inner().into_inner().expect("flush");
        }
        None => {}
    }
    for w in workers {
        w.join().expect("worker");
    }
    println!("rows={rows} seconds={:.3}", start.elapsed().as_secs_f64());
}

/// Reads the files whole on `threads` threads and appends their column chunks to `out` (all
/// files must have the same Parquet schema).
fn copy_floor(files: Vec<PathBuf>, out: &Path, threads: usize) {
    let start = Instant::now();
    let queue = Arc::new(Mutex::new(files));
    let (tx, rx) = sync_channel::<Bytes>(threads.max(2));
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (queue, tx) = (queue.clone(), tx.clone());
        workers.push(std::thread::spawn(move || {
            loop {
                let Some(path) = queue.lock().unwrap().pop() else { break };
                if tx.send(Bytes::from(std::fs::read(&path).expect("read"))).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let props = Arc::new(
        WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .build(),
    );
    let mut rows = 0i64;
    let mut writer: Option<SerializedFileWriter<BufWriter<File>>> = None;
    for data in rx {
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&data).expect("footer");
        let w = writer.get_or_insert_with(|| {
            let file = BufWriter::with_capacity(1 << 20, File::create(out).expect("create"));
            let schema = metadata.file_metadata().schema_descr().root_schema_ptr();
            SerializedFileWriter::new(file, schema, props.clone()).expect("writer")
        });
        for rg in metadata.row_groups() {
            let mut group = w.next_row_group().expect("row group");
            for chunk in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: chunk.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: chunk.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                group.append_column(&data, close).expect("append");
            }
            group.close().expect("close row group");
            rows += rg.num_rows();
        }
    }
    if let Some(w) = writer {
        w.close().expect("close");
    }
    for w in workers {
        w.join().expect("worker");
    }
    println!("rows={rows} seconds={:.3}", start.elapsed().as_secs_f64());
}
