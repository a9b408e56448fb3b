//! The floor of the client benchmark: read a table's Parquet files from local disk with arrow-rs
//! (no server, no HTTP, no protocol) and, unless `--no-write`, write them to one Parquet file
//! with the same writer settings as `d2o client load`.
//!
//! ```text
//! cargo run --release -p d2o-client --example local_floor -- <table-dir> [out.parquet | --no-write] [threads]
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: local_floor <table-dir> [out.parquet|--no-write] [threads]"));
    let out = args.get(2).filter(|a| *a != "--no-write").map(PathBuf::from);
    let threads: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(4);
    let mut files = Vec::new();
    parquet_files(&dir, &mut files);
    files.sort();
    let start = Instant::now();
    let queue = Arc::new(Mutex::new(files));
    let (tx, rx) = sync_channel(threads.max(2));
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (queue, tx) = (queue.clone(), tx.clone());
        workers.push(std::thread::spawn(move || {
            loop {
                let Some(path) = queue.lock().unwrap().pop() else { break };
                let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
                    .expect("parquet")
                    .with_batch_size(32_768)
                    .build()
                    .expect("reader");
                for batch in reader {
                    if tx.send(batch.expect("batch")).is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut rows = 0usize;
    let mut writer: Option<ArrowWriter<BufWriter<File>>> = None;
    for batch in rx {
        rows += batch.num_rows();
        if let Some(path) = &out {
            let w = writer.get_or_insert_with(|| {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(1 << 18))
                    .build();
                let file = BufWriter::with_capacity(1 << 20, File::create(path).expect("create"));
                ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer")
            });
            w.write(&batch).expect("write");
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
