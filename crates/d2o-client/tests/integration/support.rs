//! A real d2o server over the shared fixture tables, on 127.0.0.1:0, and row comparison.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{can_cast_types, cast};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use d2o_client::{Client, Profile, ResponseFormat};
use d2o_server::AppState;
use d2o_server::config::ServerConfig;
use serde_json::Value;
use tokio::sync::oneshot;

pub const TOKEN: &str = "client-test-token";

/// This crate's directory, read when the tests run (cargo sets it then too), so that a test
/// binary reused from another checkout's build (one build directory shared by several checkouts)
/// reads this checkout's files; at compile time otherwise.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("D2O_SHARED_TABLES") {
        return PathBuf::from(dir);
    }
    crate_dir().join("../../tests/data/delta-tables")
}

/// One fixture table and what its `expected/meta.json` says.
pub struct Fixture {
    pub name: String,
    pub meta: Value,
}

impl Fixture {
    pub fn table(&self) -> String {
        format!("s1.sc1.{}", self.name.replace('-', "_"))
    }

    pub fn versions(&self) -> Vec<i64> {
        let mut v: Vec<i64> =
            self.meta["versions"].as_object().expect("versions").keys().map(|k| k.parse().expect("int")).collect();
        v.sort_unstable();
        v
    }

    pub fn feature(&self, name: &str) -> &Value {
        &self.meta["features"][name]
    }

    /// Deletion vectors or column mapping: only the delta format can carry them.
    pub fn needs_delta_format(&self) -> bool {
        self.feature("deletionVectors").as_bool() == Some(true)
            || self.feature("columnMapping").as_str() != Some("none")
    }

    pub fn expected(&self, file: &str) -> Expected {
        read_parquet(&fixtures_dir().join(&self.name).join("expected").join(file))
    }
}

pub fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(fixtures_dir()).expect("the shared fixture tables exist") {
        let e = e.expect("dir entry");
        let meta = e.path().join("expected/meta.json");
        if e.path().join("delta/_delta_log").is_dir() && meta.is_file() {
            let meta: Value = serde_json::from_str(&std::fs::read_to_string(meta).expect("meta")).expect("json");
            out.push(Fixture { name: e.file_name().to_string_lossy().into_owned(), meta });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn fixture(name: &str) -> Fixture {
    fixtures().into_iter().find(|f| f.name == name).expect("fixture exists")
}

/// An expected result file.
pub struct Expected {
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Expected {
    pub fn columns(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    pub fn num_rows(&self) -> usize {
        num_rows(&self.batches)
    }
}

pub fn read_parquet(path: &Path) -> Expected {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    let schema = builder.schema().clone();
    let batches = builder.build().expect("reader").collect::<Result<Vec<_>, _>>().expect("batches");
    Expected { schema, batches }
}

/// The fixtures as `s1.sc1.<name>`, basic_partitioned as `plain.sc.t`, and `tables` as
/// `plain.sc.<name>`.
fn config_yaml(extra: &str, tables: &[(&str, &Path)]) -> String {
    let mut y = String::from("version: 1\nshares:\n- name: s1\n  schemas:\n  - name: sc1\n    tables:\n");
    for f in fixtures() {
        y += &format!(
            "    - name: {}\n      location: {}\n      historyShared: true\n",
            f.name.replace('-', "_"),
            fixtures_dir().join(&f.name).join("delta").display()
        );
    }
    y += &format!(
        "- name: plain\n  schemas:\n  - name: sc\n    tables:\n    - name: t\n      location: {}\n",
        fixtures_dir().join("basic_partitioned/delta").display()
    );
    for (name, location) in tables {
        y += &format!("    - name: {name}\n      location: {}\n", location.display());
    }
    y += &format!("authorization:\n  bearerToken: {TOKEN}\n{extra}");
    y
}

/// A d2o server running in this process until dropped (or [`Server::stop`]ped).
pub struct Server {
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with("").await
    }

    /// `extra` is appended to the YAML config (e.g. `preSignedUrlTimeoutSeconds: 1`).
    pub async fn start_with(extra: &str) -> Server {
        Server::start_full(extra, &[]).await
    }

    /// Also serves the Delta tables at these locations, as `plain.sc.<name>`.
    pub async fn start_with_tables(tables: &[(&str, &Path)]) -> Server {
        Server::start_full("", tables).await
    }

    async fn start_full(extra: &str, tables: &[(&str, &Path)]) -> Server {
        let (config, _) = ServerConfig::parse(&config_yaml(extra, tables), Path::new("/")).expect("valid config");
        let catalog = config.yaml_catalog(Path::new("/")).expect("valid catalog");
        let state = AppState::from_config(&config, Arc::new(catalog)).expect("valid state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = d2o_server::serve(listener, state, async move {
                let _ = rx.await;
            })
            .await;
        });
        Server { endpoint: format!("http://{addr}/delta-sharing"), stop: Some(tx), handle: Some(handle) }
    }

    pub fn profile(&self) -> Profile {
        Profile::bearer(self.endpoint.clone(), TOKEN, None)
    }

    pub fn client(&self) -> Client {
        Client::builder(self.profile()).max_retries(1).build().expect("client")
    }

    pub fn client_for(&self, format: ResponseFormat) -> Client {
        Client::builder(self.profile()).max_retries(1).response_format(format).build().expect("client")
    }

    /// Stops the server and waits until its socket is closed.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// The rows of `actual` as sorted strings, columns in `expected`'s order and cast to its
/// types (names matched case-insensitively), so both sides print alike.
pub fn rows_like(actual: &[RecordBatch], expected: &Expected, columns: &[&str]) -> (Vec<String>, Vec<String>) {
    let schema = &expected.schema;
    let mut want = Vec::new();
    for b in &expected.batches {
        want.extend(render(b, columns, schema));
    }
    let mut got = Vec::new();
    for b in actual {
        got.extend(render(b, columns, schema));
    }
    want.sort();
    got.sort();
    (got, want)
}

fn render(batch: &RecordBatch, columns: &[&str], schema: &arrow::datatypes::Schema) -> Vec<String> {
    let opts = FormatOptions::default().with_null("∅");
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|c| {
            let target = schema.field_with_name(c).expect("expected column").data_type().clone();
            let i = batch
                .schema()
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(c))
                .unwrap_or_else(|| panic!("column {c} missing from {:?}", batch.schema()));
            let a = batch.column(i).clone();
            if a.data_type() == &target || !can_cast_types(a.data_type(), &target) {
                a
            } else {
                cast(&a, &target).unwrap_or_else(|e| panic!("cast {c} {} -> {target}: {e}", a.data_type()))
            }
        })
        .collect();
    let formatters: Vec<ArrayFormatter> =
        arrays.iter().map(|a| ArrayFormatter::try_new(a.as_ref(), &opts).expect("formatter")).collect();
    (0..batch.num_rows())
        .map(|r| {
            formatters
                .iter()
                .zip(&arrays)
                .map(|(f, a)| if a.is_null(r) { "∅".to_owned() } else { f.value(r).to_string() })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

pub fn column_names(batches: &[RecordBatch]) -> Vec<String> {
    batches.first().map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect()).unwrap_or_default()
}

pub fn num_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Asserts equal multisets, printing the first differences.
pub fn assert_same_rows(label: &str, got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(10).collect();
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(10).collect();
    panic!(
        "{label}: rows differ: got {} rows, expected {}\nmissing: {missing:#?}\nunexpected: {extra:#?}",
        got.len(),
        want.len()
    );
}
