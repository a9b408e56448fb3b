//! Writes the [`Dataset`] as Delta tables: `delta_kernel`'s write support where it reaches, by
//! hand only what it lacks.
//!
//! - `customers` v0 and `sales` v0 (create table with data, change data feed on, `sales`
//!   partitioned by `region`) and `sales` v1 (a blind append): kernel transactions, Parquet
//!   written by the default engine.
//! - `customers` v1 (the segment moves) is an update: it removes the old data file and adds a
//!   rewritten one. With `delta.enableChangeDataFeed` the kernel refuses add + remove in one
//!   commit (it cannot write change data yet), so that commit is written here: the data file,
//!   a `_change_data/` file with `update_preimage`/`update_postimage` rows, and the JSON commit
//!   with `remove`, `add`, `cdc` and `commitInfo` actions, as Delta's protocol specifies.
//!
//! All functions are synchronous (the kernel is); the async Parquet writes are driven on the
//! given runtime handle, so call them from a blocking thread.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema};
use delta_kernel::Snapshot;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::expressions::Scalar;
use delta_kernel::schema::{DataType, SchemaRef, StructField, StructType};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::data_layout::DataLayout;
use delta_kernel::transaction::{Transaction, UpdateTableOperation};
use delta_kernel_default_engine::executor::tokio::TokioBackgroundExecutor;
use delta_kernel_default_engine::{DefaultEngine, DefaultEngineBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;
use url::Url;

use crate::DemoError;
use crate::dataset::{Customer, Dataset, Sale};

/// What the commits say wrote them.
const ENGINE_INFO: &str = concat!("d2o-demo/", env!("CARGO_PKG_VERSION"));
/// The change-type column of change-data files.
const CHANGE_TYPE: &str = "_change_type";

/// Where the two tables were written.
#[derive(Debug, Clone)]
pub struct TablePaths {
    pub customers: PathBuf,
    pub sales: PathBuf,
}

type Engine = DefaultEngine<TokioBackgroundExecutor>;

fn kernel<E: std::fmt::Display>(context: &str) -> impl Fn(E) -> DemoError + '_ {
    move |e| DemoError::Delta(format!("{context}: {e}"))
}

/// Writes both tables under `root` (`root/customers`, `root/sales`), which must not hold them yet.
pub fn write_tables(root: &Path, data: &Dataset, rt: &Handle) -> Result<TablePaths, DemoError> {
    let paths = TablePaths { customers: root.join("customers"), sales: root.join("sales") };
    for dir in [&paths.customers, &paths.sales] {
        std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    }

    // customers v0: the initial load, one file.
    let url = table_url(&paths.customers)?;
    let engine = engine_for(&url)?;
    let rows: Vec<&Customer> = data.customers_v0.iter().collect();
    let files = vec![(None, customers_batch(&rows, None)?)];
    create_with_data(&engine, rt, &url, customers_schema()?, None, files)?;
    // customers v1: the segment moves, by hand (see the module docs).
    write_segment_update(&paths.customers, data)?;

    // sales v0: the initial load, one file per region.
    let url = table_url(&paths.sales)?;
    let engine = engine_for(&url)?;
    create_with_data(&engine, rt, &url, sales_schema()?, Some("region"), sales_by_region(&data.sales_initial)?)?;
    // sales v1: the later batch, a blind append.
    append(&engine, rt, &url, Some("region"), sales_by_region(&data.sales_later)?)?;
    Ok(paths)
}

/// Writes `batches` (one data file each, one schema) as a new Delta table at `dir`, in one
/// commit; `dir` must not hold a table yet. Its schema is the batches' Arrow schema. For the
/// audit log's export (`d2o audit export --format delta`); call from a blocking thread.
pub fn write_new_table(dir: &Path, batches: Vec<RecordBatch>, rt: &Handle) -> Result<(), DemoError> {
    use delta_kernel::engine::arrow_conversion::TryFromArrow as _;
    let first = batches.first().ok_or_else(|| DemoError::Delta("there are no rows to write".into()))?;
    let schema = Arc::new(StructType::try_from_arrow(first.schema().as_ref()).map_err(kernel("the table's schema"))?);
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    let url = table_url(dir)?;
    let engine = engine_for(&url)?;
    create_with_data(&engine, rt, &url, schema, None, batches.into_iter().map(|b| (None, b)).collect())
}

fn table_url(path: &Path) -> Result<Url, DemoError> {
    let abs = std::path::absolute(path).map_err(|e| DemoError::io(path, e))?;
    Url::from_directory_path(&abs).map_err(|()| DemoError::Delta(format!("not a usable table path: {}", abs.display())))
}

fn engine_for(url: &Url) -> Result<Engine, DemoError> {
    let store =
        delta_kernel_default_engine::storage::store_from_url(url).map_err(kernel("cannot open the table store"))?;
    Ok(DefaultEngineBuilder::new(store).build())
}

/// The `customers` schema (all columns nullable: no `invariants` feature needed).
pub fn customers_schema() -> Result<SchemaRef, DemoError> {
    Ok(Arc::new(
        StructType::try_new([
            StructField::nullable("id", DataType::LONG),
            StructField::nullable("name", DataType::STRING),
            StructField::nullable("email", DataType::STRING),
            StructField::nullable("segment", DataType::STRING),
            StructField::nullable("region", DataType::STRING),
            StructField::nullable("age", DataType::INTEGER),
            StructField::nullable("signup_date", DataType::DATE),
        ])
        .map_err(kernel("customers schema"))?,
    ))
}

/// The `sales` schema; `region` is the partition column.
pub fn sales_schema() -> Result<SchemaRef, DemoError> {
    Ok(Arc::new(
        StructType::try_new([
            StructField::nullable("transaction_id", DataType::LONG),
            StructField::nullable("customer_id", DataType::LONG),
            StructField::nullable("date", DataType::DATE),
            StructField::nullable("product_category", DataType::STRING),
            StructField::nullable("quantity", DataType::INTEGER),
            StructField::nullable("unit_price", DataType::DOUBLE),
            StructField::nullable("amount", DataType::DOUBLE),
            StructField::nullable("region", DataType::STRING),
        ])
        .map_err(kernel("sales schema"))?,
    ))
}

fn arrow_err(context: &str) -> impl Fn(arrow::error::ArrowError) -> DemoError + '_ {
    move |e| DemoError::Delta(format!("{context}: {e}"))
}

/// `customers` rows as a batch; with `change_type`, a change-data batch (`_change_type` last).
fn customers_batch(rows: &[&Customer], change_type: Option<&[&str]>) -> Result<RecordBatch, DemoError> {
    let mut fields = vec![
        Field::new("id", ArrowType::Int64, true),
        Field::new("name", ArrowType::Utf8, true),
        Field::new("email", ArrowType::Utf8, true),
        Field::new("segment", ArrowType::Utf8, true),
        Field::new("region", ArrowType::Utf8, true),
        Field::new("age", ArrowType::Int32, true),
        Field::new("signup_date", ArrowType::Date32, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|c| c.id))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|c| c.name.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|c| c.email.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|c| c.segment.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|c| c.region.as_str()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|c| c.age))),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|c| c.signup_date))),
    ];
    if let Some(types) = change_type {
        fields.push(Field::new(CHANGE_TYPE, ArrowType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter_values(types.iter().copied())));
    }
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).map_err(arrow_err("customers batch"))
}

/// `sales` rows without the partition column, as the kernel's writer wants them.
fn sales_batch(rows: &[&Sale]) -> Result<RecordBatch, DemoError> {
    let fields = vec![
        Field::new("transaction_id", ArrowType::Int64, true),
        Field::new("customer_id", ArrowType::Int64, true),
        Field::new("date", ArrowType::Date32, true),
        Field::new("product_category", ArrowType::Utf8, true),
        Field::new("quantity", ArrowType::Int32, true),
        Field::new("unit_price", ArrowType::Float64, true),
        Field::new("amount", ArrowType::Float64, true),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|s| s.transaction_id))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|s| s.customer_id))),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|s| s.date))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|s| s.product_category.as_str()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|s| s.quantity))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|s| s.unit_price))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|s| s.amount))),
    ];
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).map_err(arrow_err("sales batch"))
}

/// One batch per region, regions in a fixed order.
fn sales_by_region(rows: &[Sale]) -> Result<Vec<(Option<String>, RecordBatch)>, DemoError> {
    let mut by_region: std::collections::BTreeMap<&str, Vec<&Sale>> = Default::default();
    for s in rows {
        by_region.entry(s.region.as_str()).or_default().push(s);
    }
    by_region.into_iter().map(|(region, rows)| Ok((Some(region.to_owned()), sales_batch(&rows)?))).collect()
}

type Files = Vec<(Option<String>, RecordBatch)>;

/// Version 0: creates the table (change data feed on) with its first files in one commit.
fn create_with_data(
    engine: &Engine,
    rt: &Handle,
    url: &Url,
    schema: SchemaRef,
    partition_column: Option<&str>,
    files: Files,
) -> Result<(), DemoError> {
    let mut builder = create_table(url.as_str(), schema, ENGINE_INFO, true)
        .with_table_properties([("delta.enableChangeDataFeed", "true")]);
    if let Some(column) = partition_column {
        builder = builder.with_data_layout(DataLayout::partitioned([column]));
    }
    let txn = builder.build(engine, Box::new(FileSystemCommitter::new())).map_err(kernel("create table"))?;
    write_and_commit(txn, engine, rt, url, partition_column, files, "version 0")
}

/// A blind append of `files` as the next version.
fn append(
    engine: &Engine,
    rt: &Handle,
    url: &Url,
    partition_column: Option<&str>,
    files: Files,
) -> Result<(), DemoError> {
    let snapshot = Snapshot::builder_for(url.as_str()).build(engine).map_err(kernel("load the table"))?;
    let txn = snapshot
        .update_table(UpdateTableOperation::Write, ENGINE_INFO, true)
        .with_blind_append()
        .build(engine, Box::new(FileSystemCommitter::new()))
        .map_err(kernel("append"))?;
    write_and_commit(txn, engine, rt, url, partition_column, files, "the append")
}

/// Writes `files` (one per partition value) as Parquet through the engine, adds them to the
/// transaction and commits it.
fn write_and_commit<S: std::fmt::Debug>(
    mut txn: Transaction<S>,
    engine: &Engine,
    rt: &Handle,
    url: &Url,
    partition_column: Option<&str>,
    files: Files,
    what: &str,
) -> Result<(), DemoError> {
    let state = txn.write_state().map_err(kernel("write state"))?;
    for (value, batch) in files {
        let mut context = state.write_context_builder();
        if let (Some(column), Some(value)) = (partition_column, value) {
            context = context.with_partition_values(HashMap::from([(column.to_owned(), Scalar::String(value))]));
        }
        let context = context.build().map_err(kernel("write context"))?;
        let adds =
            rt.block_on(engine.write_parquet(&ArrowEngineData::new(batch), &context)).map_err(kernel("write data"))?;
        txn.add_files(adds);
    }
    let result = txn.commit(engine).map_err(kernel("commit"))?;
    if !result.is_committed() {
        return Err(DemoError::Delta(format!("{url}: {what} conflicted with another writer")));
    }
    Ok(())
}

/// A file written by hand: its path relative to the table root and its size.
struct WrittenFile {
    path: String,
    size: u64,
}

fn write_parquet_file(root: &Path, relative: &str, batch: &RecordBatch) -> Result<WrittenFile, DemoError> {
    let path = root.join(relative);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    }
    let file =
        std::fs::File::options().write(true).create_new(true).open(&path).map_err(|e| DemoError::io(&path, e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| DemoError::Delta(format!("{}: {e}", path.display())))?;
    writer.write(batch).map_err(|e| DemoError::Delta(format!("{}: {e}", path.display())))?;
    writer.close().map_err(|e| DemoError::Delta(format!("{}: {e}", path.display())))?;
    let size = std::fs::metadata(&path).map_err(|e| DemoError::io(&path, e))?.len();
    Ok(WrittenFile { path: relative.to_owned(), size })
}

/// The `add` actions of a JSON commit.
fn adds_of_commit(commit: &Path) -> Result<Vec<serde_json::Value>, DemoError> {
    let text = std::fs::read_to_string(commit).map_err(|e| DemoError::io(commit, e))?;
    let mut adds = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: serde_json::Value =
            serde_json::from_str(line).map_err(|e| DemoError::Delta(format!("{}: {e}", commit.display())))?;
        if let Some(add) = action.get("add") {
            adds.push(add.clone());
        }
    }
    Ok(adds)
}

fn date_string(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Data-skipping statistics of a customers file (the numeric and date columns; string columns
/// are left out, which only means no skipping on them).
fn customer_stats(rows: &[&Customer]) -> String {
    let min_max = |f: &dyn Fn(&Customer) -> i64| {
        let it = rows.iter().map(|c| f(c));
        (it.clone().min().unwrap_or_default(), it.max().unwrap_or_default())
    };
    let (id_min, id_max) = min_max(&|c| c.id);
    let (age_min, age_max) = min_max(&|c| i64::from(c.age));
    let (d_min, d_max) = min_max(&|c| i64::from(c.signup_date));
    serde_json::json!({
        "numRecords": rows.len(),
        "minValues": {"id": id_min, "age": age_min, "signup_date": date_string(d_min as i32)},
        "maxValues": {"id": id_max, "age": age_max, "signup_date": date_string(d_max as i32)},
        "nullCount": {"id": 0, "name": 0, "email": 0, "segment": 0, "region": 0, "age": 0, "signup_date": 0},
    })
    .to_string()
}

/// `customers` version 1: rewrites the table's file with the moved segments, with change data.
fn write_segment_update(root: &Path, data: &Dataset) -> Result<(), DemoError> {
    let log = root.join("_delta_log");
    let previous = adds_of_commit(&log.join(format!("{:020}.json", 0)))?;
    let now = chrono::Utc::now().timestamp_millis();

    let rows: Vec<&Customer> = data.customers_v1.iter().collect();
    let data_file = write_parquet_file(
        root,
        &format!("part-00000-{}-c000.snappy.parquet", uuid::Uuid::new_v4()),
        &customers_batch(&rows, None)?,
    )?;

    // Change data: for each moved customer its row before and after, in id order.
    let mut change_rows = Vec::new();
    let mut change_types = Vec::new();
    for id in &data.moved {
        let index = (*id - 1) as usize;
        if let (Some(before), Some(after)) = (data.customers_v0.get(index), data.customers_v1.get(index)) {
            change_rows.extend([before, after]);
            change_types.extend(["update_preimage", "update_postimage"]);
        }
    }
    let cdc_file = write_parquet_file(
        root,
        &format!("_change_data/cdc-00000-{}.c000.snappy.parquet", uuid::Uuid::new_v4()),
        &customers_batch(&change_rows, Some(&change_types))?,
    )?;

    let moved: Vec<String> = data.moved.iter().map(i64::to_string).collect();
    let mut actions = vec![serde_json::json!({"commitInfo": {
        "timestamp": now,
        "operation": "UPDATE",
        "operationParameters": {"predicate": format!("[\"id IN ({})\"]", moved.join(", "))},
        "readVersion": 0,
        "isolationLevel": "Serializable",
        "isBlindAppend": false,
        "engineInfo": ENGINE_INFO,
        "operationMetrics": {
            "numUpdatedRows": data.moved.len().to_string(),
            "numCopiedRows": (rows.len() - data.moved.len()).to_string(),
            "numAddedFiles": "1",
            "numRemovedFiles": previous.len().to_string(),
            "numAddedChangeFiles": "1",
        },
    }})];
    for add in &previous {
        actions.push(serde_json::json!({"remove": {
            "path": add["path"],
            "deletionTimestamp": now,
            "dataChange": true,
            "extendedFileMetadata": true,
            "partitionValues": add["partitionValues"],
            "size": add["size"],
        }}));
    }
    actions.push(serde_json::json!({"add": {
        "path": data_file.path,
        "partitionValues": {},
        "size": data_file.size,
        "modificationTime": now,
        "dataChange": true,
        "stats": customer_stats(&rows),
    }}));
    actions.push(serde_json::json!({"cdc": {
        "path": cdc_file.path,
        "partitionValues": {},
        "size": cdc_file.size,
        "dataChange": false,
    }}));

    let commit = log.join(format!("{:020}.json", 1));
    // create_new: a commit file is never overwritten (Delta's mutual exclusion on local disks).
    let mut file =
        std::fs::File::options().write(true).create_new(true).open(&commit).map_err(|e| DemoError::io(&commit, e))?;
    let mut text = String::new();
    for action in actions {
        text.push_str(&action.to_string());
        text.push('\n');
    }
    file.write_all(text.as_bytes()).map_err(|e| DemoError::io(&commit, e))?;
    file.sync_all().map_err(|e| DemoError::io(&commit, e))?;
    Ok(())
}
