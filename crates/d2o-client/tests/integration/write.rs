//! `load_to_file`: a Parquet file written by copying column chunks reads back to the same
//! schema and rows as one written by decoding, for every fixture and version, and equals the
//! fixture's expected result; files that need row-level work are decoded.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use d2o_client::write::{OutputFormat, WriteSummary, write_stream};
use d2o_client::{Client, ClientError, ResponseFormat, TableQuery};

use crate::support::*;

/// Writes `query` with `load_to_file` and with the decoding path; returns both summaries and
/// both files read back.
async fn both_ways(query: TableQuery, dir: &Path) -> Option<(WriteSummary, Expected, Expected)> {
    let copied = dir.join("copied.parquet");
    let decoded = dir.join("decoded.parquet");
    let summary = match query.clone().load_to_file(&copied, OutputFormat::Parquet).await {
        Ok(s) => s,
        // A parquet-only request for a table the parquet format cannot carry.
        Err(ClientError::Http { status: 400, .. }) => return None,
        Err(e) => panic!("load_to_file: {e}"),
    };
    let stream = query.load_stream().await.expect("loads");
    let reference = write_stream(stream, &decoded, OutputFormat::Parquet).await.expect("writes");
    assert_eq!(reference.files_copied, 0);
    assert_eq!(summary.rows, reference.rows);
    Some((summary, read_parquet(&copied), read_parquet(&decoded)))
}

fn assert_same_output(label: &str, copied: &Expected, decoded: &Expected) {
    assert_eq!(copied.schema, decoded.schema, "{label}: schema");
    let columns = decoded.columns();
    let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
    let (got, want) = rows_like(&copied.batches, decoded, &cols);
    assert_same_rows(label, &got, &want);
}

async fn check_every_fixture(client: Client, format: &str) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut copied_files = 0;
    let mut checked = 0;
    for fx in fixtures() {
        for v in fx.versions() {
            let label = format!("{}@v{v} [{format}]", fx.name);
            let Some((summary, copied, decoded)) = both_ways(client.table(&fx.table()).version(v), dir.path()).await
            else {
                continue;
            };
            assert_same_output(&label, &copied, &decoded);
            let expected = fx.expected(&format!("v{v}.parquet"));
            let columns = expected.columns();
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            let (got, want) = rows_like(&copied.batches, &expected, &cols);
            assert_same_rows(&label, &got, &want);
            copied_files += summary.files_copied;
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} snapshots checked");
    copied_files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_equals_decoding_for_every_fixture() {
    let server = Server::start().await;
    let auto = check_every_fixture(server.client(), "auto").await;
    let delta = check_every_fixture(server.client_for(ResponseFormat::Delta), "delta").await;
    let parquet = check_every_fixture(server.client_for(ResponseFormat::Parquet), "parquet").await;
    assert!(auto > 0 && delta > 0 && parquet > 0, "files copied: {auto}, {delta}, {parquet}");
}

/// Partitioned and column-mapped tables are copied (in the column-mapped Spark table, the INT96
/// timestamps, small integers and renamed struct fields are decoded, the other columns copied),
/// and give the same file as decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_and_column_mapped_tables_are_copied() {
    let server = Server::start().await;
    let client = server.client();
    let dir = tempfile::tempdir().expect("tempdir");
    let copyable = ["IntegerType", "LongType", "decimal", "StringType", "DateType", "DoubleType"];
    let cases = [
        ("basic_partitioned", None),
        ("simple_table", None),
        ("table-with-columnmapping-mode-name", None),
        ("table-with-columnmapping-mode-name", Some(&copyable[..])),
        ("cdf-column-mapping-id-mode", None),
        ("parquet-all-types", None),
    ];
    for (name, columns) in cases {
        let fx = fixture(name);
        let mut query = client.table(&fx.table());
        if let Some(c) = columns {
            query = query.columns(c.iter().copied());
        }
        let (summary, copied, decoded) = both_ways(query, dir.path()).await.expect("the table is readable");
        assert!(summary.files_copied > 0, "{name}: {summary:?}");
        assert_same_output(name, &copied, &decoded);
    }
}

/// A projection copies only the selected chunks, in the asked order, with partition columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_are_copied() {
    let server = Server::start().await;
    let client = server.client();
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixture("basic_partitioned");
    let all = client.table(&fx.table()).metadata().await.expect("metadata");
    let mut names: Vec<String> = all.schema.fields.iter().map(|f| f.name.clone()).collect();
    names.reverse();
    for columns in [names.clone(), names[..1].to_vec(), names[1..].to_vec()] {
        let (summary, copied, decoded) =
            both_ways(client.table(&fx.table()).columns(columns.clone()), dir.path()).await.expect("readable");
        assert!(summary.files_copied > 0, "{columns:?}: {summary:?}");
        assert_eq!(copied.columns(), columns);
        assert_same_output(&format!("{columns:?}"), &copied, &decoded);
    }
}

/// Files with deletion vectors, filters and limits take the decoding path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_work_is_decoded() {
    let server = Server::start().await;
    let client = server.client();
    let dir = tempfile::tempdir().expect("tempdir");

    let dv = fixture("table-with-dv-small");
    let list = client.table(&dv.table()).list_files().await.expect("lists");
    let with_dv = list.files.iter().filter(|f| f.deletion_vector.is_some()).count() as u64;
    assert!(with_dv > 0, "the fixture has a DV");
    let (summary, copied, decoded) = both_ways(client.table(&dv.table()), dir.path()).await.expect("readable");
    assert!(summary.files_copied <= list.files.len() as u64 - with_dv, "{summary:?}");
    assert_eq!(summary.rows, 8);
    assert_same_output("dv", &copied, &decoded);

    let fx = fixture("basic_partitioned");
    let out = dir.path().join("filtered.parquet");
    let s = client
        .table(&fx.table())
        .filter_text("letter = 'a'")
        .load_to_file(&out, OutputFormat::Parquet)
        .await
        .expect("writes");
    assert_eq!(s.files_copied, 0);
    assert!(read_parquet(&out).num_rows() > 0);
    let s = client.table(&fx.table()).limit(2).load_to_file(&out, OutputFormat::Parquet).await.expect("writes");
    assert_eq!((s.files_copied, s.rows, read_parquet(&out).num_rows()), (0, 2, 2));
    let csv = dir.path().join("t.csv");
    let s = client.table(&fx.table()).load_to_file(&csv, OutputFormat::Csv).await.expect("writes");
    assert_eq!(s.files_copied, 0);
    assert_eq!(
        s.rows as usize,
        fx.expected(&format!("v{}.parquet", fx.versions().last().expect("a version"))).num_rows()
    );
}

/// A table written by hand: one file of three row groups whose `id` is stored REQUIRED and
/// `ts` in nanoseconds (both decoded and re-encoded per row group), `s` as the output stores it
/// (copied), and a partition column.
fn write_mixed_table(dir: &Path) {
    let part = dir.join("p=x");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::create_dir_all(dir.join("_delta_log")).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
    ]));
    let rows = 250i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows)),
        Arc::new(StringArray::from_iter((0..rows).map(|i| (i % 7 != 0).then(|| format!("s{i}"))))),
        Arc::new(TimestampNanosecondArray::from_iter((0..rows).map(|i| Some(i * 1_000_000_123))).with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(100)).build();
    let path = part.join("part-0.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    assert_eq!(w.close().unwrap().num_row_groups(), 3);
    let size = std::fs::metadata(&path).unwrap().len();
    let schema_string = serde_json::json!({"type": "struct", "fields": [
        {"name": "id", "type": "long", "nullable": false, "metadata": {}},
        {"name": "s", "type": "string", "nullable": true, "metadata": {}},
        {"name": "ts", "type": "timestamp", "nullable": true, "metadata": {}},
        {"name": "p", "type": "string", "nullable": true, "metadata": {}},
    ]})
    .to_string();
    let log = [
        serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        serde_json::json!({"metaData": {"id": "mixed", "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string, "partitionColumns": ["p"], "configuration": {}, "createdTime": 0}}),
        serde_json::json!({"add": {"path": "p=x/part-0.parquet", "partitionValues": {"p": "x"}, "size": size,
            "modificationTime": 0, "dataChange": true}}),
    ];
    let text: String = log.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("_delta_log/00000000000000000000.json"), text).unwrap();
}

/// Copied and decoded columns of a file with several row groups line up row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_and_decoded_columns_line_up_across_row_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("mixed");
    write_mixed_table(&table);
    let server = Server::start_with_tables(&[("mixed", &table)]).await;
    let client = server.client();
    let (summary, copied, decoded) = both_ways(client.table("plain.sc.mixed"), dir.path()).await.expect("readable");
    assert_eq!((summary.files_copied, summary.rows), (1, 250));
    assert_same_output("mixed", &copied, &decoded);
    // Row order within the one file is kept: every row's columns belong together.
    let file = std::fs::File::open(dir.path().join("copied.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    assert_eq!(parquet::file::reader::FileReader::metadata(&reader).num_row_groups(), 3);
    let (got, _) = rows_like(&copied.batches, &copied, &["id", "s", "ts", "p"]);
    let (want, _) = rows_like(&decoded.batches, &decoded, &["id", "s", "ts", "p"]);
    assert_eq!(got, want);
    assert!(got.iter().any(|r| r.starts_with("249 | s249 | ") && r.ends_with(" | x")), "{:?}", &got[..3]);
}
