//! The active files of one table version, kept compactly.
//!
//! An [`ActiveFiles`] stores every string of its files in one arena and fixed-size records beside
//! it, so 100,000 files cost tens of megabytes and no per-file allocation. [`scan`] makes one per
//! batch of the kernel's scan metadata; [`crate::file_lists`] shares them between the requests
//! for a version and caches them.

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::ops::ControlFlow;

use delta_kernel::Engine;
use delta_kernel::arrow::array::{Array, AsArray, MapArray, RecordBatch, StructArray};
use delta_kernel::arrow::datatypes::{Int32Type, Int64Type};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use md5::{Digest, Md5};

use crate::{DeltaError, TableSnapshot};

#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// The hex digits of a file id (an MD5 digest).
const ID_LEN: usize = 32;

/// One file. Its strings lie together in the arena, in this order: the path, the id
/// ([`ID_LEN`] hex digits), the partition values and the statistics, so one offset and three
/// lengths find them all: 56 bytes a file besides its text, where separate spans and an inline
/// deletion vector took 120.
#[derive(Debug, Clone)]
struct Record {
    start: u32,
    path_len: u32,
    partition_values_len: u32,
    /// The statistics' length as a JSON string literal, which is never empty (it has its quotes).
    stats_len: Option<NonZeroU32>,
    size: i64,
    modification_time: i64,
    num_records: Option<i64>,
    /// The index of the file's deletion vector in [`ActiveFiles::dvs`]: few files have one.
    dv: Option<u32>,
}

#[derive(Debug, Clone)]
struct DvRecord {
    storage_type: Span,
    path_or_inline_dv: Span,
    offset: Option<i32>,
    size_in_bytes: i32,
    cardinality: i64,
}

/// The active files of one version, in scan order.
#[derive(Debug, Default)]
pub struct ActiveFiles {
    text: String,
    records: Vec<Record>,
    dvs: Vec<DvRecord>,
}

/// A deletion vector descriptor, as in the Delta log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionVectorDescriptor<'a> {
    pub storage_type: &'a str,
    pub path_or_inline_dv: &'a str,
    pub offset: Option<i32>,
    pub size_in_bytes: i32,
    pub cardinality: i64,
}

/// One active file.
#[derive(Debug, Clone, Copy)]
pub struct FileEntry<'a> {
    list: &'a ActiveFiles,
    record: &'a Record,
}

impl<'a> FileEntry<'a> {
    fn str(&self, s: Span) -> &'a str {
        self.list.text(s.start as usize, s.len as usize)
    }

    /// Where the id starts: right after the path.
    fn id_start(&self) -> usize {
        self.record.start as usize + self.record.path_len as usize
    }

    /// Where the partition values start: right after the id.
    fn partition_values_start(&self) -> usize {
        self.id_start() + ID_LEN
    }

    /// The path as written in the Delta log: relative to the table root and URL-encoded, or an
    /// absolute URI.
    pub fn path(&self) -> &'a str {
        self.list.text(self.record.start as usize, self.record.path_len as usize)
    }

    /// A stable id for the file: the MD5 hex digest of its path (as the reference server).
    pub fn id(&self) -> &'a str {
        self.list.text(self.id_start(), ID_LEN)
    }

    /// The partition values as a JSON object text (`{"date":"2021-04-28","x":null}`).
    pub fn partition_values_json(&self) -> &'a str {
        self.list.text(self.partition_values_start(), self.record.partition_values_len as usize)
    }

    /// The statistics JSON text, if the log has it.
    pub fn stats(&self) -> Option<String> {
        self.stats_literal().and_then(|s| serde_json::from_str(s).ok())
    }

    /// The statistics as a JSON string literal (quoted and escaped), ready to be written into
    /// a response.
    pub fn stats_literal(&self) -> Option<&'a str> {
        let start = self.partition_values_start() + self.record.partition_values_len as usize;
        self.record.stats_len.map(|len| self.list.text(start, len.get() as usize))
    }

    pub fn size(&self) -> i64 {
        self.record.size
    }

    pub fn modification_time(&self) -> i64 {
        self.record.modification_time
    }

    /// `numRecords` from the statistics, if present.
    pub fn num_records(&self) -> Option<i64> {
        self.record.num_records
    }

    pub fn deletion_vector(&self) -> Option<DeletionVectorDescriptor<'a>> {
        self.dv_record().map(|dv| DeletionVectorDescriptor {
            storage_type: self.str(dv.storage_type),
            path_or_inline_dv: self.str(dv.path_or_inline_dv),
            offset: dv.offset,
            size_in_bytes: dv.size_in_bytes,
            cardinality: dv.cardinality,
        })
    }

    /// Rows that remain visible: `numRecords` less the deletion vector's cardinality.
    pub fn live_rows(&self) -> Option<i64> {
        let deleted = self.dv_record().map_or(0, |dv| dv.cardinality);
        self.record.num_records.map(|n| (n - deleted).max(0))
    }

    fn dv_record(&self) -> Option<&'a DvRecord> {
        self.record.dv.and_then(|i| self.list.dvs.get(i as usize))
    }
}

impl ActiveFiles {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<FileEntry<'_>> {
        self.records.get(index).map(|record| FileEntry { list: self, record })
    }

    pub fn iter(&self) -> impl Iterator<Item = FileEntry<'_>> {
        self.records.iter().map(move |record| FileEntry { list: self, record })
    }

    /// Approximate heap bytes held, for cache accounting.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.records.capacity() * std::mem::size_of::<Record>()
            + self.dvs.capacity() * std::mem::size_of::<DvRecord>()
    }

    /// `len` bytes of the arena from `start`: a span that [`ActiveFiles::append_batch`] wrote.
    fn text(&self, start: usize, len: usize) -> &str {
        &self.text[start..start + len]
    }

    /// A list of files with these paths and nothing else, for tests of what holds lists.
    #[cfg(test)]
    pub(crate) fn with_paths<'p>(paths: impl IntoIterator<Item = &'p str>) -> Self {
        let mut list = ActiveFiles::default();
        for p in paths {
            let start = list.offset().expect("small");
            let path = list.push_str(p).expect("small");
            list.push_str(&file_id(p)).expect("small");
            let partition_values = list.push_str("{}").expect("small");
            list.records.push(Record {
                start,
                path_len: path.len,
                partition_values_len: partition_values.len,
                stats_len: None,
                size: 1,
                modification_time: 0,
                num_records: None,
                dv: None,
            });
        }
        list
    }

    pub(crate) fn shrink(&mut self) {
        self.text.shrink_to_fit();
        self.records.shrink_to_fit();
        self.dvs.shrink_to_fit();
    }

    /// The arena's length, where the next string starts.
    fn offset(&self) -> Result<u32, DeltaError> {
        u32::try_from(self.text.len()).map_err(|_| too_large())
    }

    fn push_str(&mut self, s: &str) -> Result<Span, DeltaError> {
        let start = u32::try_from(self.text.len()).map_err(|_| too_large())?;
        let len = u32::try_from(s.len()).map_err(|_| too_large())?;
        start.checked_add(len).ok_or_else(too_large)?;
        self.text.push_str(s);
        Ok(Span { start, len })
    }

    fn span_since(&self, start: usize) -> Result<Span, DeltaError> {
        let s = u32::try_from(start).map_err(|_| too_large())?;
        let len = u32::try_from(self.text.len() - start).map_err(|_| too_large())?;
        Ok(Span { start: s, len })
    }

    /// Appends the selected rows of one kernel scan-metadata batch.
    fn append_batch(&mut self, batch: &RecordBatch, selected: &[bool]) -> Result<(), DeltaError> {
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| DeltaError::internal(format!("scan metadata has no '{name}'")))
        };
        let paths = col("path")?.as_string_opt::<i32>().ok_or_else(|| bad("path"))?;
        let sizes = col("size")?.as_primitive_opt::<Int64Type>().ok_or_else(|| bad("size"))?;
        let mtimes = col("modificationTime")?.as_primitive_opt::<Int64Type>().ok_or_else(|| bad("modificationTime"))?;
        let stats = col("stats")?.as_string_opt::<i32>().ok_or_else(|| bad("stats"))?;
        let dvs = col("deletionVector")?.as_struct_opt().ok_or_else(|| bad("deletionVector"))?;
        let constants = col("fileConstantValues")?.as_struct_opt().ok_or_else(|| bad("fileConstantValues"))?;
        let partitions = constants
            .column_by_name("partitionValues")
            .and_then(|c| c.as_map_opt())
            .ok_or_else(|| bad("partitionValues"))?;
        let mut hasher = Md5::new();
        for row in 0..batch.num_rows() {
            if !selected.get(row).copied().unwrap_or(true) || paths.is_null(row) {
                continue;
            }
            let start = self.offset()?;
            let path = self.push_str(paths.value(row))?;
            hasher.update(paths.value(row).as_bytes());
            let digest = hasher.finalize_reset();
            d2o_protocol::hex::push_hex(&mut self.text, &digest);
            let pv_start = self.text.len();
            write_partition_values(&mut self.text, partitions, row);
            let partition_values = self.span_since(pv_start)?;
            let (stats_len, num_records) = if stats.is_null(row) {
                (None, None)
            } else {
                let s = stats.value(row);
                // Kept as a JSON string literal: every response writes it that way, and only
                // predicate evaluation needs it parsed.
                let start = self.text.len();
                push_json_string(&mut self.text, s);
                (NonZeroU32::new(self.span_since(start)?.len), num_records_of(s))
            };
            let dv = if dvs.is_null(row) {
                None
            } else {
                let record = self.dv_record(dvs, row)?;
                let index = u32::try_from(self.dvs.len()).map_err(|_| too_large())?;
                self.dvs.push(record);
                Some(index)
            };
            self.records.push(Record {
                start,
                path_len: path.len,
                partition_values_len: partition_values.len,
                stats_len,
                size: if sizes.is_null(row) { 0 } else { sizes.value(row) },
                modification_time: if mtimes.is_null(row) { 0 } else { mtimes.value(row) },
                num_records,
                dv,
            });
        }
        Ok(())
    }

    fn dv_record(&mut self, dvs: &StructArray, row: usize) -> Result<DvRecord, DeltaError> {
        let string =
            |name: &str| dvs.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(|| bad(name));
        let storage_type = string("storageType")?;
        let path = string("pathOrInlineDv")?;
        let offset = dvs
            .column_by_name("offset")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or_else(|| bad("offset"))?;
        let size = dvs
            .column_by_name("sizeInBytes")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or_else(|| bad("sizeInBytes"))?;
        let cardinality = dvs
            .column_by_name("cardinality")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| bad("cardinality"))?;
        Ok(DvRecord {
            storage_type: self.push_str(storage_type.value(row))?,
            path_or_inline_dv: self.push_str(path.value(row))?,
            offset: (!offset.is_null(row)).then(|| offset.value(row)),
            size_in_bytes: size.value(row),
            cardinality: cardinality.value(row),
        })
    }
}

/// The id of a data file in responses: the MD5 of its path as the log writes it, in hex (the
/// reference server's choice, so ids agree across servers).
pub fn file_id(path: &str) -> String {
    d2o_protocol::hex::to_hex(&Md5::digest(path.as_bytes()))
}

fn too_large() -> DeltaError {
    DeltaError::internal("file list larger than 4 GiB")
}

fn bad(column: &str) -> DeltaError {
    DeltaError::internal(format!("scan metadata column '{column}' has an unexpected type"))
}

/// Extracts the top-level `numRecords` without parsing the whole statistics object (a column
/// may be called `numRecords` too, inside `minValues` and friends).
fn num_records_of(stats: &str) -> Option<i64> {
    let bytes = stats.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && stats.get(start..i) == Some("numRecords") {
                    let rest = stats.get(i + 1..)?.trim_start().strip_prefix(':')?.trim_start();
                    let end = rest.find(|c: char| !c.is_ascii_digit() && c != '-').unwrap_or(rest.len());
                    return rest[..end].parse().ok();
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn write_partition_values(out: &mut String, map: &MapArray, row: usize) {
    out.push('{');
    if !map.is_null(row) {
        let entries = map.value(row);
        let keys = entries.column(0).as_string_opt::<i32>();
        let values = entries.column(1).as_string_opt::<i32>();
        if let (Some(keys), Some(values)) = (keys, values) {
            for i in 0..keys.len() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(out, keys.value(i));
                out.push(':');
                if values.is_null(i) {
                    out.push_str("null");
                } else {
                    push_json_string(out, values.value(i));
                }
            }
        }
    }
    out.push('}');
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Scans the active files of `snapshot`, handing each batch of the kernel's scan metadata to
/// `segment` as the [`ActiveFiles`] of its selected rows, in scan order, until `segment` breaks.
/// Batches that select no file are skipped.
pub(crate) fn scan(
    snapshot: &TableSnapshot,
    engine: &dyn Engine,
    segment: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>,
) -> Result<(), DeltaError> {
    let scan = snapshot.inner.clone().scan_builder().build()?;
    for metadata in scan.scan_metadata(engine)? {
        let metadata = metadata?;
        let (data, selected) = metadata.scan_files.into_parts();
        let data = ArrowEngineData::try_from_engine_data(data)?;
        let mut files = ActiveFiles::default();
        files.append_batch(data.record_batch(), &selected)?;
        if files.is_empty() {
            continue;
        }
        files.shrink();
        if segment(files).is_break() {
            break;
        }
    }
    Ok(())
}

/// The path, relative to the table root, of the file holding a deletion vector; `None` for an
/// inline vector. Fails for a vector stored outside the table root.
pub fn deletion_vector_path(
    dv: &DeletionVectorDescriptor<'_>,
    table_root: &url::Url,
) -> Result<Option<String>, DeltaError> {
    let descriptor: delta_kernel::actions::deletion_vector::DeletionVectorDescriptor =
        serde_json::from_value(serde_json::json!({
            "storageType": dv.storage_type,
            "pathOrInlineDv": dv.path_or_inline_dv,
            "offset": dv.offset,
            "sizeInBytes": dv.size_in_bytes,
            "cardinality": dv.cardinality,
        }))
        .map_err(|e| DeltaError::internal(format!("invalid deletion vector descriptor: {e}")))?;
    let Some(url) = descriptor.absolute_path(table_root)? else { return Ok(None) };
    url.as_str()
        .strip_prefix(table_root.as_str())
        .map(|p| Some(p.to_owned()))
        .ok_or_else(|| DeltaError::Unsupported("a deletion vector is stored outside the table root".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeltaTables, DeltaTablesOptions};

    /// What a test reads of one file, owned.
    type Fields = (String, String, String, Option<String>, i64, i64, Option<i64>, Option<i64>, Option<String>);

    /// Every accessor reads back what the log says of every file: with and without statistics,
    /// partition values or a deletion vector, each file's strings beside the others'.
    #[test]
    fn every_field_of_every_file_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("_delta_log")).expect("log dir");
        let schema = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}},{"name":"p","type":"string","nullable":true,"metadata":{}}]}"#;
        let dv = serde_json::json!({"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 4,
            "sizeInBytes": 40, "cardinality": 2});
        let lines = [
            serde_json::json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}}),
            serde_json::json!({"metaData": {"id": "t", "format": {"provider": "parquet", "options": {}},
                "schemaString": schema, "partitionColumns": ["p"],
                "configuration": {"delta.enableDeletionVectors": "true"}, "createdTime": 0}}),
            serde_json::json!({"add": {"path": "p=x/a.parquet", "partitionValues": {"p": "x"}, "size": 10,
                "modificationTime": 5, "dataChange": true, "stats": "{\"numRecords\":7,\"note\":\"a\\\"b\"}"}}),
            serde_json::json!({"add": {"path": "p=y/b%20c.parquet", "partitionValues": {"p": null}, "size": 20,
                "modificationTime": 6, "dataChange": true}}),
            serde_json::json!({"add": {"path": "p=x/c.parquet", "partitionValues": {"p": "x"}, "size": 30,
                "modificationTime": 7, "dataChange": true, "stats": "{\"numRecords\":9}", "deletionVector": dv}}),
            serde_json::json!({"commitInfo": {"timestamp": 1_700_000_000_000_i64}}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.path().join("_delta_log/00000000000000000000.json"), text).expect("commit");

        let tables = DeltaTables::new(DeltaTablesOptions::default()).expect("runtime");
        let url = url::Url::from_directory_path(dir.path()).expect("url");
        let latest = tables.latest(&url).expect("latest");
        let mut read: Vec<Fields> = Vec::new();
        tables
            .visit_files(&latest, &mut |e| {
                let dv = e.deletion_vector().map(|d| {
                    format!(
                        "{} {} {:?} {} {}",
                        d.storage_type, d.path_or_inline_dv, d.offset, d.size_in_bytes, d.cardinality
                    )
                });
                read.push((
                    e.path().to_owned(),
                    e.id().to_owned(),
                    e.partition_values_json().to_owned(),
                    e.stats_literal().map(str::to_owned),
                    e.size(),
                    e.modification_time(),
                    e.num_records(),
                    e.live_rows(),
                    dv,
                ));
                ControlFlow::Continue(())
            })
            .expect("files");
        read.sort();
        let expected: Vec<Fields> = vec![
            (
                "p=x/a.parquet".into(),
                file_id("p=x/a.parquet"),
                r#"{"p":"x"}"#.into(),
                Some(r#""{\"numRecords\":7,\"note\":\"a\\\"b\"}""#.into()),
                10,
                5,
                Some(7),
                Some(7),
                None,
            ),
            (
                "p=x/c.parquet".into(),
                file_id("p=x/c.parquet"),
                r#"{"p":"x"}"#.into(),
                Some(r#""{\"numRecords\":9}""#.into()),
                30,
                7,
                Some(9),
                Some(7),
                Some("u ab^-aqEH.-t@S}K{vb[*k^ Some(4) 40 2".into()),
            ),
            (
                "p=y/b%20c.parquet".into(),
                file_id("p=y/b%20c.parquet"),
                r#"{"p":null}"#.into(),
                None,
                20,
                6,
                None,
                None,
                None,
            ),
        ];
        assert_eq!(read, expected);
        assert_eq!(read[0].1.len(), ID_LEN);
    }

    /// What a file costs besides its text: this size is the cache's budget per file.
    #[test]
    fn a_file_record_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 56);
    }

    #[test]
    fn finds_num_records() {
        assert_eq!(num_records_of(r#"{"numRecords":42,"minValues":{}}"#), Some(42));
        assert_eq!(num_records_of(r#"{"minValues":{"numRecords":1,"a\"":"}"}, "numRecords" : 7}"#), Some(7));
        assert_eq!(num_records_of(r#"{"minValues":{}}"#), None);
    }

    #[test]
    fn escapes_json_strings() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
        assert_eq!(serde_json::from_str::<String>(&s).ok().as_deref(), Some("a\"b\\c\n\u{1}é"));
    }
}
