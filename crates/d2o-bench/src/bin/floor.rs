//! `floor`: what listing and serializing a Delta table's active files costs with the bare
//! `delta_kernel` and a hand-written NDJSON writer, measured as in `perf-floors.md` (a) and (c).
//!
//! ```text
//! floor <table-dir-or-url> [--reps N]
//! ```
//!
//! One process run does:
//! * **cold scan** (a): `try_parse_uri` → `store_from_url` → `DefaultEngineBuilder` →
//!   `Snapshot::builder_for().build()` → `scan_builder().build()` → iterate `scan_metadata()`,
//!   reading path, size, stats and every partition key/value of every selected row from the raw
//!   Arrow batch; batches are dropped as they are consumed. `VmHWM` is read right after.
//! * a second scan on the same snapshot whose batches are kept (reported as `warm_scan_ms`);
//! * **serialize** (c): from those batches, one Delta Sharing `{"file":…}` line per file into a
//!   `Vec<u8>` (url with hex HMAC-SHA256 of the path, MD5 hex id, stats escaped as a JSON
//!   string), `--reps` times (default 5), median. The last body is then checked.
//!
//! Prints one JSON object on stdout:
//! `{"files":N,"scan_ms":..,"serialize_ms":..,"floor_ms":..,"peak_rss_mb":..,…}` where
//! `floor_ms = scan_ms + serialize_ms` and `peak_rss_mb` is the streaming (cold) peak.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use delta_kernel::Snapshot;
use delta_kernel::arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray};
use delta_kernel::arrow::datatypes::Int64Type;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::storage::store_from_url;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// URL prefix of the fake pre-signed URLs: with a ~78-char path and a 64-char hex signature
/// the URL is ~150 chars, as in `perf-floors.md`.
const URL_PREFIX: &str = "https://b.example/";
const SIG_PARAM: &str = "?s=";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut table: Option<String> = None;
    let mut reps = 5usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reps" => reps = args.next().context("--reps needs a value")?.parse().context("--reps")?,
            "-h" | "--help" => {
                println!("usage: floor <table-dir-or-url> [--reps N]");
                return Ok(());
            }
            _ if table.is_none() => table = Some(arg),
            _ => bail!("unexpected argument {arg}"),
        }
    }
    let table = table.context("usage: floor <table-dir-or-url> [--reps N]")?;
    let reps = reps.max(1);

    // (a) cold: engine + snapshot + streaming scan.
    let t0 = Instant::now();
    let url = delta_kernel::try_parse_uri(&table)?;
    let store = store_from_url(&url)?;
    let engine = DefaultEngineBuilder::new(store).build();
    let engine_ms = ms(t0);
    let t1 = Instant::now();
    let snapshot = Snapshot::builder_for(url.as_str()).build(&engine)?;
    let snapshot_ms = ms(t1);
    let t2 = Instant::now();
    let mut files = 0usize;
    let mut checksum = 0usize;
    let scan = snapshot.clone().scan_builder().build()?;
    for metadata in scan.scan_metadata(&engine)? {
        let (data, selected) = metadata?.scan_files.into_parts();
        let data = ArrowEngineData::try_from_engine_data(data)?;
        let cols = Columns::of(data.record_batch())?;
        for row in 0..data.record_batch().num_rows() {
            if !selected.get(row).copied().unwrap_or(true) || cols.paths.is_null(row) {
                continue;
            }
            files += 1;
            checksum += cols.paths.value(row).len();
            checksum += usize::try_from(cols.sizes.value(row)).unwrap_or(0) & 0xff;
            if !cols.stats.is_null(row) {
                checksum += cols.stats.value(row).len();
            }
            let (start, end) = cols.partition_range(row);
            for i in start..end {
                checksum += cols.pkeys.value(i).len();
                if !cols.pvalues.is_null(i) {
                    checksum += cols.pvalues.value(i).len();
                }
            }
        }
    }
    let scan_iter_ms = ms(t2);
    let scan_ms = ms(t0);
    let peak_rss_mb = vm_hwm_mb();

    // A second scan on the built snapshot, keeping the batches for the serializer.
    let t3 = Instant::now();
    let mut batches: Vec<(RecordBatch, Vec<bool>)> = Vec::new();
    let scan = snapshot.clone().scan_builder().build()?;
    for metadata in scan.scan_metadata(&engine)? {
        let (data, selected) = metadata?.scan_files.into_parts();
        let data = ArrowEngineData::try_from_engine_data(data)?;
        batches.push((data.record_batch().clone(), selected));
    }
    let warm_scan_ms = ms(t3);

    // (c) serialize, median of `reps`.
    let mac = <HmacSha256 as KeyInit>::new_from_slice(b"d2o-bench floor signing key, 32+ bytes")
        .map_err(|e| anyhow::anyhow!("hmac key: {e}"))?;
    let expiration = 1_900_000_000_000i64;
    let mut times = Vec::with_capacity(reps);
    let mut body = Vec::new();
    for _ in 0..reps {
        drop(std::mem::take(&mut body));
        let t = Instant::now();
        body = serialize(&batches, &mac, expiration)?;
        times.push(ms(t));
    }
    let serialize_ms = median(&mut times);
    let peak_rss_end_mb = vm_hwm_mb();
    let lines = check(&body, files)?;

    let out = serde_json::json!({
        "table": table,
        "version": snapshot.version(),
        "files": files,
        "scan_ms": round(scan_ms),
        "serialize_ms": round(serialize_ms),
        "floor_ms": round(scan_ms + serialize_ms),
        "peak_rss_mb": round(peak_rss_mb),
        "engine_ms": round(engine_ms),
        "snapshot_ms": round(snapshot_ms),
        "scan_iter_ms": round(scan_iter_ms),
        "warm_scan_ms": round(warm_scan_ms),
        "serialize_reps_ms": times.iter().map(|t| round(*t)).collect::<Vec<_>>(),
        "ndjson_bytes": body.len(),
        "ndjson_lines": lines,
        "peak_rss_end_mb": round(peak_rss_end_mb),
        "checksum": checksum,
    });
    println!("{out}");
    Ok(())
}

/// The columns of a kernel scan-metadata batch that a `/query` needs.
struct Columns<'a> {
    paths: &'a StringArray,
    sizes: &'a delta_kernel::arrow::array::PrimitiveArray<Int64Type>,
    stats: &'a StringArray,
    partitions: &'a MapArray,
    pkeys: &'a StringArray,
    pvalues: &'a StringArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        let col = |name: &str| batch.column_by_name(name).with_context(|| format!("scan metadata has no '{name}'"));
        let paths = col("path")?.as_string_opt::<i32>().context("path")?;
        let sizes = col("size")?.as_primitive_opt::<Int64Type>().context("size")?;
        let stats = col("stats")?.as_string_opt::<i32>().context("stats")?;
        let partitions = col("fileConstantValues")?
            .as_struct_opt()
            .and_then(|s| s.column_by_name("partitionValues"))
            .and_then(|c| c.as_map_opt())
            .context("fileConstantValues.partitionValues")?;
        let pkeys = partitions.keys().as_string_opt::<i32>().context("partition keys")?;
        let pvalues = partitions.values().as_string_opt::<i32>().context("partition values")?;
        Ok(Columns { paths, sizes, stats, partitions, pkeys, pvalues })
    }

    /// The entries of row `row` in the (unsliced) key/value arrays, via the map's offsets.
    fn partition_range(&self, row: usize) -> (usize, usize) {
        if self.partitions.is_null(row) {
            return (0, 0);
        }
        let offsets = self.partitions.value_offsets();
        (usize::try_from(offsets[row]).unwrap_or(0), usize::try_from(offsets[row + 1]).unwrap_or(0))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, s)?;
    Ok(())
}

/// One Delta Sharing `{"file":…}` line per selected row.
fn serialize(batches: &[(RecordBatch, Vec<bool>)], mac: &HmacSha256, expiration: i64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut md5 = Md5::new();
    for (batch, selected) in batches {
        let cols = Columns::of(batch)?;
        for row in 0..batch.num_rows() {
            if !selected.get(row).copied().unwrap_or(true) || cols.paths.is_null(row) {
                continue;
            }
            let path = cols.paths.value(row);
            let mut m = mac.clone();
            m.update(path.as_bytes());
            let sig = m.finalize().into_bytes();
            md5.update(path.as_bytes());
            let id = md5.finalize_reset();

            out.extend_from_slice(b"{\"file\":{\"url\":\"");
            out.extend_from_slice(URL_PREFIX.as_bytes());
            // A real writer must escape the path; this table's paths need none, but check.
            if path.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
                let escaped = serde_json::to_string(path)?;
                out.extend_from_slice(&escaped.as_bytes()[1..escaped.len() - 1]);
            } else {
                out.extend_from_slice(path.as_bytes());
            }
            out.extend_from_slice(SIG_PARAM.as_bytes());
            push_hex(&mut out, &sig);
            out.extend_from_slice(b"\",\"id\":\"");
            push_hex(&mut out, &id);
            out.extend_from_slice(b"\",\"partitionValues\":{");
            let (start, end) = cols.partition_range(row);
            for i in start..end {
                if i > start {
                    out.push(b',');
                }
                push_json_str(&mut out, cols.pkeys.value(i))?;
                out.push(b':');
                if cols.pvalues.is_null(i) {
                    out.extend_from_slice(b"null");
                } else {
                    push_json_str(&mut out, cols.pvalues.value(i))?;
                }
            }
            out.extend_from_slice(b"},\"size\":");
            write!(out, "{}", if cols.sizes.is_null(row) { 0 } else { cols.sizes.value(row) })?;
            if !cols.stats.is_null(row) {
                out.extend_from_slice(b",\"stats\":");
                push_json_str(&mut out, cols.stats.value(row))?;
            }
            writeln!(out, ",\"expirationTimestamp\":{expiration}}}}}")?;
        }
    }
    Ok(out)
}

/// Checks the body: one line per file, every line parses, ids unique, stats re-parse.
fn check(body: &[u8], files: usize) -> Result<usize> {
    let mut ids = HashSet::with_capacity(files);
    let mut lines = 0usize;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        let v: serde_json::Value = serde_json::from_slice(line).context("line does not parse")?;
        let file = &v["file"];
        let url = file["url"].as_str().context("no url")?;
        if !url.starts_with(URL_PREFIX) {
            bail!("bad url {url}");
        }
        if !ids.insert(file["id"].as_str().context("no id")?.to_owned()) {
            bail!("duplicate id");
        }
        if let Some(stats) = file["stats"].as_str() {
            serde_json::from_str::<serde_json::Value>(stats).context("stats do not re-parse")?;
        }
    }
    if lines != files {
        bail!("{lines} lines for {files} files");
    }
    Ok(lines)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `VmHWM` of this process in MB (10^6 bytes), 0 where /proc is missing.
fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}
