//! The engine [`crate::DeltaTables`] reads tables with: the kernel's default engine, except that
//! Parquet files on the local disk are read a page at a time.
//!
//! The default engine reads a Parquet file through its object store, which fetches every column
//! chunk of a row group before it decodes the first row. A checkpoint written as one row group
//! (as `deltalake` writes them) is then held whole while the scan walks it: 42 MB for a table of
//! 100,000 files, 420 MB for 1,000,000. A checkpoint on the local disk is read here with the
//! Parquet crate's synchronous reader instead, which reads each page as it decodes it, so a scan
//! holds a page and a batch of rows whatever the checkpoint's size. The file is projected,
//! filtered by row group and shaped to the requested schema by the same kernel functions the
//! default engine uses. Files elsewhere, and every other handler, are the default engine's.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use delta_kernel::arrow::array::RecordBatch;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::engine::arrow_utils::{
    RowIndexBuilder, fixup_parquet_read, ordering_needs_row_indexes, parquet_read_plan,
};
use delta_kernel::engine::parquet_row_group_skipping::ParquetRowGroupSkipping as _;
use delta_kernel::engine::reader_options;
use delta_kernel::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use delta_kernel::schema::SchemaRef;
use delta_kernel::{
    CancellationTokenRef, Engine, EngineData, EvaluationHandler, FileDataReadResultIterator, FileMeta, FileSize,
    JsonHandler, KernelError, KernelResult, KernelResultIteratorStatic, ParquetFooter, ParquetHandler, PredicateRef,
    StorageHandler,
};

/// Rows per batch of a local Parquet read: the default engine's.
const BATCH_ROWS: usize = 1000;

/// An engine that delegates to `inner` but for reads of local Parquet files.
pub(crate) struct PagedEngine<E> {
    inner: E,
    parquet: Arc<PagedParquet>,
}

impl<E: Engine> PagedEngine<E> {
    pub(crate) fn new(inner: E) -> PagedEngine<E> {
        let parquet = Arc::new(PagedParquet { fallback: inner.parquet_handler() });
        PagedEngine { inner, parquet }
    }
}

impl<E: Engine> Engine for PagedEngine<E> {
    fn evaluation_handler(&self) -> Arc<dyn EvaluationHandler> {
        self.inner.evaluation_handler()
    }

    fn storage_handler(&self) -> Arc<dyn StorageHandler> {
        self.inner.storage_handler()
    }

    fn json_handler(&self) -> Arc<dyn JsonHandler> {
        self.inner.json_handler()
    }

    fn parquet_handler(&self) -> Arc<dyn ParquetHandler> {
        self.parquet.clone()
    }
}

/// Reads `file://` Parquet files page by page; hands everything else to `fallback`.
struct PagedParquet {
    fallback: Arc<dyn ParquetHandler>,
}

/// Whether every file is on the local disk (the kernel reads the parts of one checkpoint, all
/// from one store, in one call).
fn all_local(files: &[FileMeta]) -> bool {
    !files.is_empty() && files.iter().all(|f| f.location.scheme() == "file")
}

impl ParquetHandler for PagedParquet {
    fn read_parquet_files(
        &self,
        files: &[FileMeta],
        physical_schema: SchemaRef,
        predicate: Option<PredicateRef>,
    ) -> KernelResult<FileDataReadResultIterator> {
        if !all_local(files) {
            return self.fallback.read_parquet_files(files, physical_schema, predicate);
        }
        Ok(Box::new(LocalBatches {
            files: files.iter().cloned().collect(),
            schema: physical_schema,
            predicate,
            current: None,
        }))
    }

    fn read_parquet_files_with_cancellation(
        &self,
        files: &[FileMeta],
        physical_schema: SchemaRef,
        predicate: Option<PredicateRef>,
        cancellation_token: Option<CancellationTokenRef>,
    ) -> KernelResult<FileDataReadResultIterator> {
        if !all_local(files) {
            return self.fallback.read_parquet_files_with_cancellation(
                files,
                physical_schema,
                predicate,
                cancellation_token,
            );
        }
        if let Some(token) = &cancellation_token
            && token.is_cancelled()
        {
            return Err(KernelError::Cancelled);
        }
        let batches = self.read_parquet_files(files, physical_schema, predicate)?;
        Ok(match cancellation_token {
            Some(token) => Box::new(Cancellable { batches, token, done: false }),
            None => batches,
        })
    }

    fn write_parquet_file(
        &self,
        location: url::Url,
        data: KernelResultIteratorStatic<Box<dyn EngineData>>,
    ) -> KernelResult<FileSize> {
        self.fallback.write_parquet_file(location, data)
    }

    fn read_parquet_footer(&self, file: &FileMeta) -> KernelResult<ParquetFooter> {
        self.fallback.read_parquet_footer(file)
    }
}

/// The batches of one local Parquet file, shaped to the requested schema.
type FileBatches = Box<dyn Iterator<Item = KernelResult<Box<dyn EngineData>>> + Send>;

/// The batches of local Parquet files, in order; each file is opened when the one before it is
/// done.
struct LocalBatches {
    files: VecDeque<FileMeta>,
    schema: SchemaRef,
    predicate: Option<PredicateRef>,
    current: Option<FileBatches>,
}

impl Iterator for LocalBatches {
    type Item = KernelResult<Box<dyn EngineData>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.current.as_mut().and_then(Iterator::next) {
                return Some(batch);
            }
            let file = self.files.pop_front()?;
            match open(&file, &self.schema, self.predicate.clone()) {
                Ok(batches) => self.current = Some(batches),
                Err(e) => {
                    // One error ends the read.
                    self.files.clear();
                    self.current = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Opens one local Parquet file for a read of `schema`, pruning row groups by `predicate`.
fn open(file: &FileMeta, schema: &SchemaRef, predicate: Option<PredicateRef>) -> KernelResult<FileBatches> {
    let location = file.location.to_string();
    let path = file
        .location
        .to_file_path()
        .map_err(|()| KernelError::generic(format!("not a local file path: {location}")))?;
    let handle = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KernelError::file_not_found(&location),
        _ => KernelError::from(e),
    })?;
    let metadata = ArrowReaderMetadata::load(&handle, reader_options())?;
    let (ordering, mask) = parquet_read_plan(schema, &metadata)?;
    let mut row_indexes =
        ordering_needs_row_indexes(&ordering).then(|| RowIndexBuilder::new(metadata.metadata().row_groups()));
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, metadata).with_batch_size(BATCH_ROWS);
    if let Some(mask) = mask {
        builder = builder.with_projection(mask);
    }
    if let Some(predicate) = predicate {
        builder = builder.with_row_group_filter(predicate.as_ref(), row_indexes.as_mut());
    }
    let mut row_indexes = row_indexes.map(RowIndexBuilder::build).transpose()?;
    let reader = builder.build()?;
    let schema = schema.clone();
    Ok(Box::new(reader.map(move |batch| {
        let batch: RecordBatch = batch?;
        let data: ArrowEngineData =
            fixup_parquet_read(batch, &ordering, row_indexes.as_mut(), Some(&location), Some(&schema))?;
        Ok(Box::new(data) as Box<dyn EngineData>)
    })))
}

/// Stops a read with [`KernelError::Cancelled`] once its token is cancelled.
struct Cancellable {
    batches: FileDataReadResultIterator,
    token: CancellationTokenRef,
    done: bool,
}

impl Iterator for Cancellable {
    type Item = KernelResult<Box<dyn EngineData>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.token.is_cancelled() {
            self.done = true;
            return Some(Err(KernelError::Cancelled));
        }
        self.batches.next()
    }
}
