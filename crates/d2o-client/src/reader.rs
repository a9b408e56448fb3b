//! Reading data files into Arrow: parallel downloads, decoding, deletion vectors, partition
//! columns, column mapping, client-side filtering, and a row limit.
//!
//! [`read_files`] spawns one task per file (at most `concurrency` at once). Each downloads its
//! file (refreshing the pre-signed URL when it has expired), decodes it on a blocking thread and
//! sends batches into a bounded channel, so memory stays bounded by the concurrency and the
//! channel, whatever the table's size: a slow consumer (a file writer) slows the downloads.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use bytes::Bytes;
use d2o_protocol::predicate::Predicate;
use futures::Stream;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reqwest::StatusCode;
use roaring::RoaringTreemap;
use tokio::sync::{Semaphore, mpsc};

use d2o_protocol::request::{ChangesRequest, QueryRequest};

use crate::client::{Client, error_chain};
use crate::convert::{conform, find_field, partition_column};
use crate::error::{ClientError, Result};
use crate::files::{DataFile, FileKind, TableFiles, TableMetadata};
use crate::filter::filter_batch;
use crate::profile::TableName;
use crate::schema::DeltaField;
use crate::{dv, schema};

/// Rows per decoded batch.
pub(crate) const BATCH_ROWS: usize = 32_768;
/// Refresh a URL that expires within this margin instead of starting a download with it.
const EXPIRY_MARGIN_MS: i64 = 2_000;
/// How often one file's URL may be refreshed before the read gives up.
const MAX_URL_REFRESHES: u32 = 3;

/// The change-feed columns added to every row of a change data feed.
pub const CHANGE_TYPE: &str = "_change_type";
pub const COMMIT_VERSION: &str = "_commit_version";
pub const COMMIT_TIMESTAMP: &str = "_commit_timestamp";

/// Counters of a read in progress, for progress bars. Share one with
/// [`TableQuery::progress`](crate::TableQuery::progress) and poll it.
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub rows: AtomicU64,
}

/// What to read from each file and how to shape the result.
#[derive(Debug, Clone)]
pub(crate) struct ReadPlan {
    /// Logical fields materialised from each file (the projection plus the filter's columns).
    read_fields: Vec<DeltaField>,
    read_schema: SchemaRef,
    /// Positions in `read_schema` of the output columns.
    output_indices: Vec<usize>,
    output_schema: SchemaRef,
    partition_columns: Vec<String>,
    filter: Option<Predicate>,
    change_feed: bool,
}

impl ReadPlan {
    pub(crate) fn new(
        metadata: &TableMetadata,
        columns: Option<&[String]>,
        filter: Option<Predicate>,
        change_feed: bool,
    ) -> Result<Self> {
        let all = &metadata.schema.fields;
        let wanted: Vec<&DeltaField> = match columns {
            None => all.iter().collect(),
            Some(cols) => cols
                .iter()
                .filter(|c| !(change_feed && is_change_column(c)))
                .map(|c| {
                    metadata.schema.field(c).ok_or_else(|| {
                        ClientError::invalid(format!(
                            "unknown column '{c}'; the table has {}",
                            all.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let mut read: Vec<&DeltaField> = wanted.clone();
        if let Some(p) = &filter {
            for c in p.columns() {
                let top = c.split('.').next().unwrap_or(c);
                let f = metadata
                    .schema
                    .field(top)
                    .ok_or_else(|| ClientError::invalid(format!("unknown column '{c}' in the filter")))?;
                if !read.iter().any(|r| r.name == f.name) {
                    read.push(f);
                }
            }
        }
        let mut read_arrow: Vec<Field> = read.iter().map(|f| f.arrow_field()).collect::<Result<_>>()?;
        let mut output_indices: Vec<usize> = (0..wanted.len()).collect();
        if change_feed {
            let n = read_arrow.len();
            read_arrow.extend(change_fields());
            output_indices.extend(n..n + 3);
        }
        let read_schema = Arc::new(Schema::new(read_arrow));
        let output_schema = Arc::new(read_schema.project(&output_indices)?);
        Ok(ReadPlan {
            read_fields: read.into_iter().cloned().collect(),
            read_schema,
            output_indices,
            output_schema,
            partition_columns: metadata.partition_columns.clone(),
            filter,
            change_feed,
        })
    }

    pub(crate) fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// The output's logical fields, in order, when the plan keeps every row of a snapshot as it
    /// is (no filter to apply, no change-feed columns); `None` otherwise.
    pub(crate) fn plain_fields(&self) -> Option<&[DeltaField]> {
        (self.filter.is_none() && !self.change_feed).then_some(self.read_fields.as_slice())
    }

    pub(crate) fn is_partition(&self, f: &DeltaField) -> bool {
        self.partition_columns
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&f.name) || p.eq_ignore_ascii_case(&f.physical_name))
    }
}

fn is_change_column(c: &str) -> bool {
    [CHANGE_TYPE, COMMIT_VERSION, COMMIT_TIMESTAMP].iter().any(|n| n.eq_ignore_ascii_case(c))
}

fn change_fields() -> Vec<Field> {
    vec![
        Field::new(CHANGE_TYPE, DataType::Utf8, true),
        Field::new(COMMIT_VERSION, DataType::Int64, true),
        Field::new(COMMIT_TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
    ]
}

/// How to get fresh URLs for the files of a response.
#[derive(Debug, Clone)]
pub(crate) enum Requery {
    /// Re-run the snapshot query (with the refresh token when there is one).
    Version(QueryRequest),
    /// Re-run the change-feed query.
    Changes(ChangesRequest),
}

/// The current URLs of a read's files, refreshed together when one expires.
struct UrlBook {
    client: Client,
    table: TableName,
    requery: Requery,
    state: parking_lot::Mutex<UrlState>,
    refreshing: tokio::sync::Mutex<()>,
}

struct UrlState {
    generation: u64,
    refresh_token: Option<String>,
    /// file id -> (url, expiry, DV url)
    urls: HashMap<String, (String, Option<i64>, Option<String>)>,
}

impl UrlBook {
    fn current(&self, file: &DataFile) -> (String, Option<i64>, Option<String>, u64) {
        let s = self.state.lock();
        match s.urls.get(&file.id) {
            Some((u, e, d)) => (u.clone(), *e, d.clone(), s.generation),
            None => (
                file.url.clone(),
                file.expiration_timestamp,
                file.deletion_vector.as_ref().map(|d| d.path_or_inline_dv.clone()),
                s.generation,
            ),
        }
    }

    /// Fetches fresh URLs unless another task already did since `seen`.
    async fn refresh(&self, seen: u64) -> Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.state.lock().generation != seen {
            return Ok(());
        }
        tracing::info!(table = %self.table, "pre-signed URLs expired; asking the server for fresh ones");
        let list = match &self.requery {
            Requery::Version(body) => {
                let mut body = body.clone();
                if let Some(t) = self.state.lock().refresh_token.clone() {
                    body.refresh_token = Some(t);
                    body.include_refresh_token = Some(true);
                }
                self.client.query(&self.table, &body).await?
            }
            Requery::Changes(range) => self.client.changes(&self.table, range).await?,
        };
        let mut s = self.state.lock();
        s.generation += 1;
        if list.refresh_token.is_some() {
            s.refresh_token = list.refresh_token;
        }
        for f in list.files {
            let dv = f.deletion_vector.as_ref().map(|d| d.path_or_inline_dv.clone());
            s.urls.insert(f.id, (f.url, f.expiration_timestamp, dv));
        }
        Ok(())
    }
}

/// A stream of record batches with a known schema.
pub struct RecordBatchStream {
    schema: SchemaRef,
    inner: Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>,
}

impl RecordBatchStream {
    pub(crate) fn new(schema: SchemaRef, inner: Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>) -> Self {
        RecordBatchStream { schema, inner }
    }

    /// Wraps any stream of batches (for example a DataFusion result) to write it out.
    pub fn from_stream<S>(schema: SchemaRef, stream: S) -> Self
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        RecordBatchStream { schema, inner: Box::pin(stream) }
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Collects every batch.
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        use futures::StreamExt;
        let mut out = Vec::new();
        while let Some(b) = self.next().await {
            out.push(b?);
        }
        Ok(out)
    }
}

impl Stream for RecordBatchStream {
    type Item = Result<RecordBatch>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Reads `list`'s files with `plan`, at most `concurrency` at once, stopping after `limit` rows.
pub(crate) fn read_files(
    client: Client,
    table: TableName,
    list: TableFiles,
    plan: ReadPlan,
    requery: Requery,
    limit: Option<u64>,
    progress: Arc<LoadProgress>,
) -> RecordBatchStream {
    let schema = plan.output_schema();
    let mut rx = spawn_reads(client, table, list, plan, requery, progress.clone(), |plan, file, data, deleted, tx| {
        decode(plan, file, data, deleted, &mut |batch| tx.blocking_send(Ok(batch)).is_ok())
    });
    let mut remaining = limit;
    let mut failed = false;
    let stream = futures::stream::poll_fn(move |cx| {
        if remaining == Some(0) || failed {
            rx.close();
            return Poll::Ready(None);
        }
        match rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                let batch = match &mut remaining {
                    Some(r) => {
                        let take = (*r).min(batch.num_rows() as u64);
                        *r -= take;
                        batch.slice(0, take as usize)
                    }
                    None => batch,
                };
                progress.rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                failed = true;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    });
    RecordBatchStream::new(schema, Box::pin(stream))
}

/// Downloads `list`'s files (at most the client's concurrency at once, refreshing expired
/// URLs) and hands each, with its deleted row indexes, to `per_file` on a blocking thread,
/// which sends what it makes of the file into the returned channel.
///
/// The channel is bounded, so a slow consumer slows the downloads; when the consumer drops the
/// receiver, no further file is started. An error of a download or of `per_file` is sent into
/// the channel.
pub(crate) fn spawn_reads<T, F>(
    client: Client,
    table: TableName,
    list: TableFiles,
    plan: ReadPlan,
    requery: Requery,
    progress: Arc<LoadProgress>,
    per_file: F,
) -> mpsc::Receiver<Result<T>>
where
    T: Send + 'static,
    F: Fn(&ReadPlan, &DataFile, Bytes, Option<Vec<u64>>, &mpsc::Sender<Result<T>>) -> Result<()>
        + Send
        + Sync
        + 'static,
{
    let concurrency = client.inner.concurrency;
    let (tx, rx) = mpsc::channel::<Result<T>>(concurrency.max(2));
    progress.files_total.fetch_add(list.files.len() as u64, Ordering::Relaxed);
    progress.bytes_total.fetch_add(list.files.iter().map(|f| f.size.max(0) as u64).sum(), Ordering::Relaxed);
    let book = Arc::new(UrlBook {
        client: client.clone(),
        table,
        requery,
        state: parking_lot::Mutex::new(UrlState {
            generation: 0,
            refresh_token: list.refresh_token.clone(),
            urls: HashMap::new(),
        }),
        refreshing: tokio::sync::Mutex::new(()),
    });
    let plan = Arc::new(plan);
    let per_file = Arc::new(per_file);
    let files = list.files;
    tokio::spawn(async move {
        let semaphore = Arc::new(Semaphore::new(concurrency));
        for file in files {
            let permit = tokio::select! {
                p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = tx.closed() => break,
            };
            let (tx, book, plan, progress, per_file) =
                (tx.clone(), book.clone(), plan.clone(), progress.clone(), per_file.clone());
            tokio::spawn(async move {
                if let Err(e) = read_one(&book, plan, file, &tx, &progress, per_file).await {
                    let _ = tx.send(Err(e)).await;
                }
                drop(permit);
            });
        }
    });
    rx
}

async fn read_one<T, F>(
    book: &UrlBook,
    plan: Arc<ReadPlan>,
    file: DataFile,
    tx: &mpsc::Sender<Result<T>>,
    progress: &LoadProgress,
    per_file: Arc<F>,
) -> Result<()>
where
    T: Send + 'static,
    F: Fn(&ReadPlan, &DataFile, Bytes, Option<Vec<u64>>, &mpsc::Sender<Result<T>>) -> Result<()>
        + Send
        + Sync
        + 'static,
{
    let (data, deleted) = fetch_file(book, &file).await?;
    progress.bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
    let tx2 = tx.clone();
    let done = tokio::task::spawn_blocking(move || per_file(&plan, &file, data, deleted, &tx2))
        .await
        .map_err(|e| ClientError::protocol(format!("decoding task failed: {e}")))?;
    progress.files_done.fetch_add(1, Ordering::Relaxed);
    done
}

/// Downloads a file and its deletion vector, refreshing URLs that expired.
async fn fetch_file(book: &UrlBook, file: &DataFile) -> Result<(Bytes, Option<Vec<u64>>)> {
    let mut refreshes = 0;
    loop {
        let (url, expiry, dv_url, generation) = book.current(file);
        let now = chrono::Utc::now().timestamp_millis();
        // Refresh ahead of an expiry we know about, once; after that, let the server judge the URL.
        let outcome = if refreshes == 0 && expiry.is_some_and(|e| e < now + EXPIRY_MARGIN_MS) {
            Err(FetchError::Expired("the URL's expirationTimestamp has passed".into()))
        } else {
            try_fetch(&book.client, file, &url, dv_url.as_deref()).await
        };
        match outcome {
            Ok(done) => return Ok(done),
            Err(FetchError::Expired(why)) => {
                if refreshes >= MAX_URL_REFRESHES {
                    return Err(ClientError::UrlExpired { file_id: file.id.clone(), message: why });
                }
                refreshes += 1;
                book.refresh(generation).await.map_err(|e| ClientError::UrlExpired {
                    file_id: file.id.clone(),
                    message: format!("{why}; refreshing failed: {e}"),
                })?;
            }
            Err(FetchError::Other(e)) => return Err(e),
        }
    }
}

async fn try_fetch(
    client: &Client,
    file: &DataFile,
    url: &str,
    dv_url: Option<&str>,
) -> std::result::Result<(Bytes, Option<Vec<u64>>), FetchError> {
    let data = get_bytes(client, url).await?;
    let deleted = match (&file.deletion_vector, dv_url) {
        (None, _) => None,
        (Some(dv), Some(dv_url)) if dv.storage_type == "p" => {
            let dv_bytes = get_bytes(client, dv_url).await?;
            Some(dv::parse_file(&dv_bytes, dv.offset, dv.size_in_bytes)?)
        }
        (Some(dv), _) if dv.storage_type == "i" => Some(dv::parse_inline(&dv.path_or_inline_dv)?),
        (Some(dv), _) => {
            return Err(FetchError::Other(ClientError::Unsupported(format!(
                "deletion vector storage type '{}' of file {} (the server should send 'p' with a URL)",
                dv.storage_type, file.id
            ))));
        }
    };
    Ok((data, deleted.map(|b: RoaringTreemap| b.into_iter().collect())))
}

enum FetchError {
    /// The URL was refused as expired or unauthorised: worth refreshing.
    Expired(String),
    Other(ClientError),
}

impl From<ClientError> for FetchError {
    fn from(e: ClientError) -> Self {
        FetchError::Other(e)
    }
}

/// A URL without its query (which holds the signature), for messages.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// GETs a whole file, retrying 429, 5xx and broken connections.
async fn get_bytes(client: &Client, url: &str) -> std::result::Result<Bytes, FetchError> {
    let inner = &client.inner;
    let mut attempt = 0u32;
    loop {
        let result = match inner.http.get(url).send().await {
            Ok(r) => {
                let status = r.status();
                if status.is_success() {
                    r.bytes()
                        .await
                        .map_err(|e| (true, format!("the download broke: {}", error_chain(&e.without_url()))))
                } else if matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED | StatusCode::GONE)
                    || (status == StatusCode::BAD_REQUEST && url.contains('?'))
                {
                    let body = r.text().await.unwrap_or_default();
                    return Err(FetchError::Expired(format!("HTTP {status} for {}: {}", redact(url), body.trim())));
                } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    Err((true, format!("HTTP {status}")))
                } else {
                    let body = r.text().await.unwrap_or_default();
                    Err((false, format!("HTTP {status}: {}", body.trim())))
                }
            }
            Err(e) => Err((true, error_chain(&e.without_url()))),
        };
        match result {
            Ok(b) => return Ok(b),
            Err((retryable, msg)) => {
                if retryable && attempt < inner.max_retries {
                    tokio::time::sleep(inner.retry_base * 2u32.saturating_pow(attempt)).await;
                    attempt += 1;
                    continue;
                }
                return Err(FetchError::Other(ClientError::Connection {
                    url: redact(url).to_owned(),
                    message: format!("{msg} (after {} attempts)", attempt + 1),
                }));
            }
        }
    }
}

/// Decodes one file into batches of the plan's shape (deleted rows dropped, the filter
/// applied) and hands them to `emit` (on a blocking thread). Stops quietly when `emit` returns
/// false (the consumer is gone).
pub(crate) fn decode(
    plan: &ReadPlan,
    file: &DataFile,
    data: Bytes,
    deleted: Option<Vec<u64>>,
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)?;
    let file_schema = builder.schema().clone();
    let file_fields = file_schema.fields();
    // Root columns to read: those of the plan's data fields, plus `_change_type` of CDF files.
    let mut roots: Vec<usize> =
        plan.read_fields.iter().filter(|f| !plan.is_partition(f)).filter_map(|f| find_field(file_fields, f)).collect();
    if file.kind == FileKind::Cdf
        && let Some(i) = file_fields.iter().position(|f| f.name() == CHANGE_TYPE)
    {
        roots.push(i);
    }
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).with_batch_size(BATCH_ROWS).build()?;
    let partition_values = partition_values(plan, file);
    let mut deleted = deleted.unwrap_or_default().into_iter().peekable();
    let mut row_offset: u64 = 0;
    for batch in reader {
        let batch = batch?;
        let n = batch.num_rows() as u64;
        let mut batch = shape(plan, file, &batch, &partition_values)?;
        // Deletion vector: drop the rows whose file-wide index it lists.
        if deleted.peek().is_some_and(|&d| d < row_offset + n) {
            let mut keep = vec![true; n as usize];
            while let Some(&d) = deleted.peek() {
                if d >= row_offset + n {
                    break;
                }
                if d >= row_offset {
                    keep[(d - row_offset) as usize] = false;
                }
                deleted.next();
            }
            batch = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        }
        row_offset += n;
        if let Some(p) = &plan.filter {
            batch = filter_batch(&batch, p)?;
        }
        if batch.num_rows() == 0 {
            continue;
        }
        let batch = batch.project(&plan.output_indices)?;
        if !emit(batch) {
            // The consumer is gone (limit reached, or it failed): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

/// The file's partition values by lower-cased logical name.
pub(crate) fn partition_values(plan: &ReadPlan, file: &DataFile) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for f in &plan.read_fields {
        if !plan.is_partition(f) {
            continue;
        }
        let lookup = |name: &str| {
            file.partition_values
                .get(name)
                .or_else(|| file.partition_values.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
                .cloned()
        };
        let v = lookup(&f.physical_name).or_else(|| lookup(&f.name)).flatten();
        out.insert(f.name.to_ascii_lowercase(), v);
    }
    out
}

/// One decoded batch in the plan's read shape (logical columns, partition and change columns).
fn shape(
    plan: &ReadPlan,
    file: &DataFile,
    batch: &RecordBatch,
    partition_values: &BTreeMap<String, Option<String>>,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.read_schema.fields().len());
    for f in &plan.read_fields {
        let column = if plan.is_partition(f) {
            let v = partition_values.get(&f.name.to_ascii_lowercase()).cloned().flatten();
            partition_column(v.as_deref(), &f.data_type, rows)?
        } else {
            match find_field(batch.schema().fields(), f) {
                Some(i) => conform(batch.column(i), &f.data_type)?,
                // A column added after this file was written.
                None => arrow::array::new_null_array(&schema::arrow_type(&f.data_type)?, rows),
            }
        };
        columns.push(column);
    }
    if plan.change_feed {
        let change_type: ArrayRef = match file.kind {
            FileKind::Add => Arc::new(StringArray::from(vec!["insert"; rows])),
            FileKind::Remove => Arc::new(StringArray::from(vec!["delete"; rows])),
            FileKind::Cdf => match batch.schema().fields().iter().position(|f| f.name() == CHANGE_TYPE) {
                Some(i) => arrow::compute::cast(batch.column(i), &DataType::Utf8)?,
                None => return Err(ClientError::protocol(format!("change data file {} has no _change_type", file.id))),
            },
        };
        columns.push(change_type);
        columns.push(Arc::new(Int64Array::from(vec![file.version; rows])));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![file.timestamp.map(|t| t * 1000); rows]).with_timezone("UTC"),
        ));
    }
    Ok(RecordBatch::try_new_with_options(
        plan.read_schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}
