//! A scan holds a page of a local checkpoint at a time, not the whole checkpoint.
//!
//! The checkpoint here is one row group of about 30 MB (30,000 files with 1 kB of statistics
//! each), written by the kernel itself. The test scans it twice, measuring the bytes the
//! process has allocated after each batch: through the kernel's default engine, which holds the
//! row group's column chunks for the whole scan, and through [`DeltaTables`], which must not.
//! Its own binary, so that no other test allocates while it measures.

#![allow(clippy::expect_used)]

use std::ops::ControlFlow;
use std::sync::Arc;

use d2o_delta::{DeltaTables, DeltaTablesOptions};
use delta_kernel::Snapshot;
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::storage::store_from_url;
use url::Url;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const FILES: usize = 30_000;
const STATS_BYTES: usize = 1_000;
const MIB: usize = 1 << 20;

/// Bytes the process has allocated now.
fn allocated() -> usize {
    tikv_jemalloc_ctl::epoch::advance().expect("epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("stats.allocated")
}

/// Statistics that do not compress: a hex string of `STATS_BYTES` from a simple generator.
fn stats(seed: usize) -> String {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut hex = String::with_capacity(STATS_BYTES);
    while hex.len() < STATS_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hex.push_str(&format!("{x:016x}"));
    }
    hex.truncate(STATS_BYTES - 40);
    format!(r#"{{"numRecords":1,"minValues":{{"s":"{hex}"}}}}"#)
}

fn write_commit(root: &std::path::Path, version: u64, lines: &[serde_json::Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(root.join("_delta_log").join(format!("{version:020}.json")), text).expect("write commit");
}

fn add(i: usize) -> serde_json::Value {
    serde_json::json!({"add": {"path": format!("part-{i:06}.parquet"), "partitionValues": {}, "size": 100,
        "modificationTime": 0, "dataChange": true, "stats": stats(i)}})
}

/// Version 0 creates the table, version 1 adds `FILES` files and is checkpointed, version 2 adds
/// one more.
fn write_table(root: &std::path::Path, url: &Url) {
    std::fs::create_dir_all(root.join("_delta_log")).expect("mkdir");
    let schema = r#"{"type":"struct","fields":[{"name":"s","type":"string","nullable":true,"metadata":{}}]}"#;
    write_commit(
        root,
        0,
        &[
            serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
            serde_json::json!({"metaData": {"id": "t", "format": {"provider": "parquet", "options": {}},
            "schemaString": schema, "partitionColumns": [], "configuration": {}, "createdTime": 0}}),
        ],
    );
    write_commit(root, 1, &(0..FILES).map(add).collect::<Vec<_>>());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let store = store_from_url(url).expect("store");
    let executor = Arc::new(TokioMultiThreadExecutor::new(runtime.handle().clone()));
    let engine = DefaultEngineBuilder::new(store).with_task_executor(executor).build();
    let snapshot = Snapshot::builder_for(url.as_str()).build(&engine).expect("snapshot");
    snapshot.checkpoint(&engine, None).expect("checkpoint");
    write_commit(root, 2, &[add(FILES)]);
}

/// The most bytes allocated beyond `base` at any batch of the default engine's scan.
fn default_engine_peak(url: &Url, base: usize) -> usize {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let store = store_from_url(url).expect("store");
    let executor = Arc::new(TokioMultiThreadExecutor::new(runtime.handle().clone()));
    let engine = DefaultEngineBuilder::new(store).with_task_executor(executor).build();
    let snapshot = Snapshot::builder_for(url.as_str()).build(&engine).expect("snapshot");
    let scan = snapshot.scan_builder().build().expect("scan");
    let mut peak = 0;
    for batch in scan.scan_metadata(&engine).expect("scan metadata") {
        let batch = batch.expect("batch");
        peak = peak.max(allocated().saturating_sub(base));
        drop(batch);
    }
    peak
}

#[test]
fn a_scan_holds_a_page_of_a_local_checkpoint_not_all_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = Url::from_directory_path(dir.path()).expect("url");
    write_table(dir.path(), &url);
    let checkpoint = dir.path().join("_delta_log").join(format!("{:020}.checkpoint.parquet", 1));
    let checkpoint_bytes = std::fs::metadata(&checkpoint).expect("the kernel wrote a checkpoint").len() as usize;
    assert!(checkpoint_bytes > FILES * STATS_BYTES, "the statistics do not compress: {checkpoint_bytes} bytes");

    let base = allocated();
    let default_peak = default_engine_peak(&url, base);

    // No file-list cache: the list is streamed, so what stays allocated is the scan's own.
    let options = DeltaTablesOptions { file_list_cache_bytes: 0, ..DeltaTablesOptions::default() };
    let tables = DeltaTables::new(options).expect("tables");
    let base = allocated();
    let latest = tables.latest(&url).expect("latest");
    let (mut files, mut peak) = (0, 0);
    tables
        .visit_segments(&latest, &mut |segment| {
            files += segment.len();
            peak = peak.max(allocated().saturating_sub(base));
            ControlFlow::Continue(())
        })
        .expect("files");
    assert_eq!(files, FILES + 1);

    // The default engine holds the checkpoint's column chunks through the scan: the shape of
    // the problem, measured here so that the bound below is known to discriminate.
    assert!(default_peak > checkpoint_bytes * 9 / 10, "default engine: {} MiB", default_peak / MIB);
    // Through `DeltaTables`, a few batches are in flight at a time (about 7 MiB here, however
    // large the checkpoint).
    assert!(
        peak < checkpoint_bytes / 3,
        "{} MiB allocated at a batch, checkpoint {} MiB",
        peak / MIB,
        checkpoint_bytes / MIB
    );
}
