//! Writing Parquet output: [`ParquetSink`] encodes record batches and, for data files whose
//! columns are stored as the output stores them, copies their column chunks byte for byte (no
//! decoding, no re-encoding).
//!
//! A copied file reads back exactly as the decoding path would have written it:
//! [`plan_copy`] accepts a data file only when the read keeps every row as it is (no filter,
//! no change-feed columns) and the file has no deletion vector. Then each output column of
//! each of the file's row groups is
//! - copied, when the file stores the column with the Parquet type the output schema gives
//!   it: the same physical type, annotation, repetition and, for nested columns, the same tree
//!   with the same child names. Only the top-level name may differ (column mapping: the file's
//!   physical name, the output's logical name; the column is found as the decoding path finds
//!   it). Column chunks carry no names, so the bytes are valid under the output's names; their
//!   metadata is rebuilt for the output's column descriptors. Every chunk of the column must
//!   lie inside the file and use a compression this build reads;
//! - decoded and converted exactly as the decoding path does (INT96 timestamps, small integers,
//!   renamed struct fields...) and encoded, otherwise;
//! - encoded from its value when it is constant in the file: partition columns, and columns
//!   added after the file was written (null).
//!
//! A file with no column to copy is decoded whole instead. Encoding happens in the caller of
//! [`plan_copy`] (one of the parallel download tasks); the writer only appends. Copied row
//! groups keep the file's row count, compression, encodings and column statistics; they get no
//! page index (which is optional).

use std::fs::File;
use std::io::BufWriter;
use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ConvertedType, LogicalType, Type as PhysicalType};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{BasicTypeInfo, ColumnDescPtr, SchemaDescriptor, Type};

use crate::convert::{conform, find_field, partition_column};
use crate::error::{ClientError, Result};
use crate::files::{DataFile, FileKind};
use crate::reader::{BATCH_ROWS, ReadPlan, partition_values};
use crate::schema::DeltaType;

/// Rows per encoded row group (copied row groups keep the data file's size).
const MAX_ROW_GROUP_ROWS: usize = 1 << 18;

/// The writer settings of every Parquet output. A file either has a page index (page
/// statistics and offsets) for every column chunk or for none; copied chunks have none.
fn writer_properties(page_index: bool) -> WriterProperties {
    let builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS));
    if page_index {
        builder.build()
    } else {
        builder.set_statistics_enabled(EnabledStatistics::Chunk).set_offset_index_disabled(true).build()
    }
}

/// What a data file contributes to a Parquet output.
pub(crate) enum Piece {
    /// Rows decoded from a file that is not copied.
    Batch(RecordBatch),
    /// A file whose row groups are copied.
    Copy(CopyFile),
}

/// A data file [`plan_copy`] accepted: its bytes, and its row groups ready to append.
pub(crate) struct CopyFile {
    data: Bytes,
    row_groups: Vec<CopyRowGroup>,
}

/// One output row group: a piece for every leaf column of the output, in order.
struct CopyRowGroup {
    rows: u64,
    leaves: Vec<Leaf>,
}

enum Leaf {
    /// A chunk of the data file, with its metadata for the output column.
    Copied(ColumnCloseResult),
    /// A chunk encoded here.
    Encoded(ArrowColumnChunk),
}

/// Where an output column comes from, in one data file.
enum ColumnSource {
    /// Copied: the file's leaf columns in this range, one for each of the output column's leaves.
    Copied(Range<usize>),
    /// Decoded from the file's root column at this index, converted to this type, and encoded.
    Decoded(usize, DeltaType),
    /// The same value in every row (`None`: null), of this type, encoded.
    Constant(Option<String>, DeltaType),
}

/// The output's schemas and column writers, which [`plan_copy`] builds row groups for.
pub(crate) struct CopyTarget {
    schema: SchemaRef,
    descr: SchemaDescriptor,
    /// For every top-level output column, its leaf columns.
    root_leaves: Vec<Range<usize>>,
    factory: ArrowRowGroupWriterFactory,
}

/// Prepares `file` for the output (see the module docs): `None` when it must be decoded whole
/// instead. Errors when the file is not readable Parquet, or a value cannot be converted.
pub(crate) fn plan_copy(
    target: &CopyTarget,
    plan: &ReadPlan,
    file: &DataFile,
    data: &Bytes,
) -> Result<Option<CopyFile>> {
    let Some(fields) = plan.plain_fields() else { return Ok(None) };
    if file.deletion_vector.is_some() || file.kind != FileKind::Add {
        return Ok(None);
    }
    let metadata = Arc::new(ParquetMetaDataReader::new().parse_and_finish(data)?);
    // The decoding path's view of the file: Arrow fields (one per root column), read with the
    // file's embedded Arrow schema.
    let reader_metadata = ArrowReaderMetadata::try_new(metadata.clone(), Default::default())?;
    let source = metadata.file_metadata().schema_descr();
    let source_roots = source.root_schema().get_fields();
    let source_fields = reader_metadata.schema().fields();
    let output_roots = target.descr.root_schema().get_fields();
    if source_fields.len() != source_roots.len() || output_roots.len() != fields.len() {
        return Ok(None);
    }
    let source_leaves = leaf_ranges(source);
    let partitions = partition_values(plan, file);
    let len = data.len() as i64;
    let copyable = |root: usize| {
        let leaves = source_leaves[root].clone();
        metadata.row_groups().iter().all(|rg| leaves.clone().all(|leaf| chunk_copyable(rg.column(leaf), len)))
    };
    let mut columns = Vec::with_capacity(fields.len());
    for (field, output_root) in fields.iter().zip(output_roots) {
        let column = if plan.is_partition(field) {
            let value = partitions.get(&field.name.to_ascii_lowercase()).cloned().flatten();
            ColumnSource::Constant(value, field.data_type.clone())
        } else {
            match find_field(source_fields, field) {
                Some(i) if same_type(&source_roots[i], output_root, true) && copyable(i) => {
                    ColumnSource::Copied(source_leaves[i].clone())
                }
                Some(i) => ColumnSource::Decoded(i, field.data_type.clone()),
                None => ColumnSource::Constant(None, field.data_type.clone()),
            }
        };
        columns.push(column);
    }
    let copied = |c: &ColumnSource| matches!(c, ColumnSource::Copied(_));
    let decoded = |c: &ColumnSource| matches!(c, ColumnSource::Decoded(..));
    if !columns.iter().any(copied) && columns.iter().any(decoded) {
        return Ok(None);
    }
    let mut decoded_roots: Vec<usize> =
        columns.iter().filter_map(|c| if let ColumnSource::Decoded(i, _) = c { Some(*i) } else { None }).collect();
    decoded_roots.sort_unstable();
    decoded_roots.dedup();
    let file = SourceFile { data, reader_metadata, decoded_roots };
    let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
    for (index, row_group) in metadata.row_groups().iter().enumerate() {
        let rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
        if rows > 0 {
            row_groups.push(row_group_pieces(target, &columns, &file, index, row_group, rows)?);
        }
    }
    Ok(Some(CopyFile { data: data.clone(), row_groups }))
}

/// A data file being prepared, and the root columns of it that are decoded.
struct SourceFile<'a> {
    data: &'a Bytes,
    reader_metadata: ArrowReaderMetadata,
    decoded_roots: Vec<usize>,
}

/// The leaves of the output row group made from the file's row group `index`: copied chunks'
/// metadata, and encoded chunks. Decoded columns stream through their writers batch by batch.
fn row_group_pieces(
    target: &CopyTarget,
    columns: &[ColumnSource],
    file: &SourceFile<'_>,
    index: usize,
    row_group: &RowGroupMetaData,
    rows: usize,
) -> Result<CopyRowGroup> {
    let encodes = columns.iter().any(|c| !matches!(c, ColumnSource::Copied(_)));
    let mut writers: Vec<Option<ArrowColumnWriter>> =
        if encodes { target.factory.create_column_writers(0)?.into_iter().map(Some).collect() } else { Vec::new() };
    let missing_writer = || internal("no column writer for an encoded column");
    if !file.decoded_roots.is_empty() {
        let mask = ProjectionMask::roots(file.reader_metadata.parquet_schema(), file.decoded_roots.iter().copied());
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.data.clone(), file.reader_metadata.clone())
                .with_projection(mask)
                .with_row_groups(vec![index])
                .with_batch_size(BATCH_ROWS)
                .build()?;
        for batch in reader {
            let batch = batch?;
            for (j, column) in columns.iter().enumerate() {
                let ColumnSource::Decoded(root, data_type) = column else { continue };
                let position = file
                    .decoded_roots
                    .iter()
                    .position(|r| r == root)
                    .ok_or_else(|| internal("a decoded column was not read"))?;
                let array = conform(batch.column(position), data_type)?;
                for (leaf, l) in
                    compute_leaves(target.schema.field(j), &array)?.iter().zip(target.root_leaves[j].clone())
                {
                    writers.get_mut(l).and_then(Option::as_mut).ok_or_else(missing_writer)?.write(leaf)?;
                }
            }
        }
    }
    let mut leaves = Vec::with_capacity(target.descr.num_columns());
    for (j, (column, output_leaves)) in columns.iter().zip(&target.root_leaves).enumerate() {
        match column {
            ColumnSource::Copied(source_leaves) => {
                for (leaf, output_leaf) in source_leaves.clone().zip(output_leaves.clone()) {
                    let chunk = row_group.column(leaf);
                    leaves.push(Leaf::Copied(ColumnCloseResult {
                        bytes_written: u64::try_from(chunk.compressed_size()).unwrap_or(0),
                        rows_written: rows as u64,
                        metadata: chunk_metadata(chunk, target.descr.column(output_leaf))?,
                        bloom_filter: None,
                        column_index: None,
                        offset_index: None,
                    }));
                }
            }
            ColumnSource::Constant(value, data_type) => {
                let array = partition_column(value.as_deref(), data_type, rows)?;
                for (leaf, l) in compute_leaves(target.schema.field(j), &array)?.iter().zip(output_leaves.clone()) {
                    let mut w = writers.get_mut(l).and_then(Option::take).ok_or_else(missing_writer)?;
                    w.write(leaf)?;
                    leaves.push(Leaf::Encoded(w.close()?));
                }
            }
            ColumnSource::Decoded(..) => {
                for l in output_leaves.clone() {
                    let w = writers.get_mut(l).and_then(Option::take).ok_or_else(missing_writer)?;
                    leaves.push(Leaf::Encoded(w.close()?));
                }
            }
        }
    }
    Ok(CopyRowGroup { rows: rows as u64, leaves })
}

/// The chunk is in this file, after the magic and before the footer, its dictionary page (if
/// it says it has one) comes first, and its compression is one this build reads (so that the
/// output stays readable where the decoding path would have read the file).
fn chunk_copyable(chunk: &ColumnChunkMetaData, file_len: i64) -> bool {
    let data_page = chunk.data_page_offset();
    let start = chunk.dictionary_page_offset().unwrap_or(data_page);
    let readable = matches!(
        chunk.compression(),
        Compression::UNCOMPRESSED
            | Compression::SNAPPY
            | Compression::GZIP(_)
            | Compression::LZ4
            | Compression::LZ4_RAW
            | Compression::ZSTD(_)
    );
    readable
        && chunk.file_path().is_none()
        && start >= 4
        && start <= data_page
        && chunk.compressed_size() > 0
        && start.checked_add(chunk.compressed_size()).is_some_and(|end| end <= file_len - 8)
}

/// For every root column of `descr`, the range of its leaf columns.
fn leaf_ranges(descr: &SchemaDescriptor) -> Vec<Range<usize>> {
    let mut ranges: Vec<Option<Range<usize>>> = vec![None; descr.root_schema().get_fields().len()];
    for leaf in 0..descr.num_columns() {
        let root = descr.get_column_root_idx(leaf);
        if let Some(r) = ranges.get_mut(root) {
            match r {
                Some(r) => r.end = leaf + 1,
                None => *r = Some(leaf..leaf + 1),
            }
        }
    }
    ranges.into_iter().map(Option::unwrap_or_default).collect()
}

/// Whether the bytes of a column stored as `source` decode, under `output`, to the same values:
/// the same tree of physical types, annotations and repetitions. Names must match below the
/// top level (`top` is the root column, whose name the caller has matched).
fn same_type(source: &Type, output: &Type, top: bool) -> bool {
    let (a, b) = (source.get_basic_info(), output.get_basic_info());
    if (!top && a.name() != b.name())
        || a.has_repetition() != b.has_repetition()
        || (a.has_repetition() && a.repetition() != b.repetition())
    {
        return false;
    }
    match (source, output) {
        (
            Type::PrimitiveType { physical_type: pa, type_length: la, scale: sa, precision: qa, .. },
            Type::PrimitiveType { physical_type: pb, type_length: lb, scale: sb, precision: qb, .. },
        ) => {
            let decimal = matches!(b.logical_type_ref(), Some(LogicalType::Decimal(_)))
                || b.converted_type() == ConvertedType::DECIMAL;
            pa == pb
                && (*pa != PhysicalType::FIXED_LEN_BYTE_ARRAY || la == lb)
                && (!decimal || (sa == sb && qa == qb))
                && annotation(a, *pa) == annotation(b, *pb)
        }
        (Type::GroupType { fields: fa, .. }, Type::GroupType { fields: fb, .. }) => {
            a.logical_type_ref() == b.logical_type_ref()
                && a.converted_type() == b.converted_type()
                && fa.len() == fb.len()
                && fa.iter().zip(fb).all(|(x, y)| same_type(x, y, false))
        }
        _ => false,
    }
}

/// A primitive's annotation as readers interpret it: the logical type when there is one (the
/// converted type is derived from it), otherwise the converted type; a signed integer of the
/// physical width is the same as no annotation.
fn annotation(info: &BasicTypeInfo, physical: PhysicalType) -> (Option<LogicalType>, ConvertedType) {
    let plain_int = |bits: i8| {
        matches!(physical, PhysicalType::INT32 if bits == 32) || matches!(physical, PhysicalType::INT64 if bits == 64)
    };
    match info.logical_type_ref() {
        Some(LogicalType::Integer(t)) if t.is_signed && plain_int(t.bit_width) => (None, ConvertedType::NONE),
        Some(l) => (Some(l.clone()), ConvertedType::NONE),
        None => match info.converted_type() {
            ConvertedType::INT_32 if plain_int(32) => (None, ConvertedType::NONE),
            ConvertedType::INT_64 if plain_int(64) => (None, ConvertedType::NONE),
            c => (None, c),
        },
    }
}

/// A Parquet output file being written: encoded batches and copied files.
///
/// The file has the Parquet schema and embedded Arrow schema an [`ArrowWriter`] gives the output
/// schema, Snappy compression and row groups of at most 2^18 encoded rows. Column statistics
/// are written per chunk; a page index only when the sink is made for batches alone
/// ([`ParquetSink::for_batches`]), since copied chunks come without one.
pub(crate) struct ParquetSink {
    writer: SerializedFileWriter<BufWriter<File>>,
    target: Arc<CopyTarget>,
    /// The row group being encoded, and its rows so far.
    in_progress: Option<(Vec<ArrowColumnWriter>, usize)>,
}

impl ParquetSink {
    /// A sink that only encodes batches ([`ParquetSink::copy`] must not be used): with a page
    /// index.
    pub(crate) fn for_batches(file: BufWriter<File>, schema: SchemaRef) -> Result<Self> {
        Self::try_new(file, schema, true)
    }

    /// A sink for batches and copied files: without a page index.
    pub(crate) fn for_copies(file: BufWriter<File>, schema: SchemaRef) -> Result<Self> {
        Self::try_new(file, schema, false)
    }

    fn try_new(file: BufWriter<File>, schema: SchemaRef, page_index: bool) -> Result<Self> {
        let props = writer_properties(page_index);
        let (writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))?.into_serialized_writer()?;
        let descr = writer.schema_descr().clone();
        let root_leaves = leaf_ranges(&descr);
        let target = Arc::new(CopyTarget { schema, descr, root_leaves, factory });
        Ok(ParquetSink { writer, target, in_progress: None })
    }

    /// The output's schemas and column writers, for [`plan_copy`].
    pub(crate) fn copy_target(&self) -> Arc<CopyTarget> {
        self.target.clone()
    }

    /// Encodes `batch` (of the output schema) into the current row group, starting a new one
    /// every 2^18 rows.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let (mut writers, rows) = match self.in_progress.take() {
                Some(p) => p,
                None => (self.target.factory.create_column_writers(self.writer.flushed_row_groups().len())?, 0),
            };
            let n = (MAX_ROW_GROUP_ROWS - rows).min(batch.num_rows() - offset);
            let part = batch.slice(offset, n);
            let mut leaves = writers.iter_mut();
            for (field, column) in self.target.schema.fields().iter().zip(part.columns()) {
                for leaf in compute_leaves(field, column)? {
                    leaves.next().ok_or_else(|| internal("more leaf columns than column writers"))?.write(&leaf)?;
                }
            }
            offset += n;
            if rows + n >= MAX_ROW_GROUP_ROWS {
                self.flush_row_group(writers)?;
            } else {
                self.in_progress = Some((writers, rows + n));
            }
        }
        Ok(())
    }

    fn flush_row_group(&mut self, writers: Vec<ArrowColumnWriter>) -> Result<()> {
        let mut row_group = self.writer.next_row_group()?;
        for w in writers {
            w.close()?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Appends the row groups of a file [`plan_copy`] prepared; returns the number of rows.
    pub(crate) fn copy(&mut self, file: CopyFile) -> Result<u64> {
        let mut total = 0;
        for group in file.row_groups {
            let mut row_group = self.writer.next_row_group()?;
            for leaf in group.leaves {
                match leaf {
                    Leaf::Copied(close) => row_group.append_column(&file.data, close)?,
                    Leaf::Encoded(chunk) => chunk.append_to_row_group(&mut row_group)?,
                }
            }
            row_group.close()?;
            total += group.rows;
        }
        Ok(total)
    }

    /// Writes the last row group and the footer, and flushes the file.
    pub(crate) fn close(mut self) -> Result<()> {
        if let Some((writers, _)) = self.in_progress.take() {
            self.flush_row_group(writers)?;
        }
        self.writer.close()?;
        Ok(())
    }
}

/// `chunk`'s metadata for the output column `descr` (the row group writer moves its offsets).
fn chunk_metadata(chunk: &ColumnChunkMetaData, descr: ColumnDescPtr) -> Result<ColumnChunkMetaData> {
    let mut builder = ColumnChunkMetaData::builder(descr)
        .set_compression_codec(chunk.compression_codec())
        .set_encodings_mask(*chunk.encodings_mask())
        .set_total_compressed_size(chunk.compressed_size())
        .set_total_uncompressed_size(chunk.uncompressed_size())
        .set_num_values(chunk.num_values())
        .set_data_page_offset(chunk.data_page_offset())
        .set_dictionary_page_offset(chunk.dictionary_page_offset())
        .set_unencoded_byte_array_data_bytes(chunk.unencoded_byte_array_data_bytes())
        .set_repetition_level_histogram(chunk.repetition_level_histogram().cloned())
        .set_definition_level_histogram(chunk.definition_level_histogram().cloned());
    if let Some(statistics) = chunk.statistics() {
        builder = builder.set_statistics(statistics.clone());
    }
    if let Some(stats) = chunk.page_encoding_stats() {
        builder = builder.set_page_encoding_stats(stats.clone());
    }
    Ok(builder.build()?)
}

fn internal(what: &str) -> ClientError {
    ClientError::Parquet(parquet::errors::ParquetError::General(format!("writing the output: {what}")))
}

#[cfg(test)]
mod tests {
    use parquet::schema::parser::parse_message_type;

    use super::*;

    fn roots(message: &str) -> Vec<Arc<Type>> {
        parse_message_type(message).expect("valid schema").get_fields().to_vec()
    }

    #[test]
    fn same_type_ignores_only_top_level_names_and_plain_int_annotations() {
        let source = roots(
            "message s {
               optional int32 col_1;
               optional int32 col_2 (INTEGER(32, true));
               optional int32 col_3 (INTEGER(8, true));
               required int64 col_4;
               optional int96 col_5;
               optional group col_6 { optional binary x (UTF8); }
               optional int64 col_7 (DECIMAL(10, 2));
             }",
        );
        let output = roots(
            "message o {
               optional int32 a (INTEGER(32, true));
               optional int32 b;
               optional int32 c (INTEGER(8, true));
               optional int64 d;
               optional int64 e (TIMESTAMP(MICROS, true));
               optional group f { optional binary y (UTF8); }
               optional int64 g (DECIMAL(10, 2));
               optional int64 h (DECIMAL(11, 2));
             }",
        );
        let same = |i: usize, j: usize| same_type(&source[i], &output[j], true);
        assert!(same(0, 0), "a plain INT32 is a signed 32-bit integer");
        assert!(same(1, 1));
        assert!(same(2, 2));
        assert!(!same(0, 2), "an 8-bit annotation changes the Arrow type");
        assert!(!same(3, 3), "required and optional columns have other definition levels");
        assert!(!same(4, 4), "INT96 is not INT64");
        assert!(!same(5, 5), "nested names must match");
        assert!(same(6, 6));
        assert!(!same(6, 7), "decimal precision must match");
    }

    #[test]
    fn leaf_ranges_follow_the_roots() {
        let message = "message m { optional int32 a; optional group b { optional int32 x; optional int32 y; } optional int64 c; }";
        let descr = SchemaDescriptor::new(Arc::new(parse_message_type(message).expect("valid")));
        assert_eq!(leaf_ranges(&descr), vec![0..1, 1..3, 3..4]);
    }
}
