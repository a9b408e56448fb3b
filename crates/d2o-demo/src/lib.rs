//! The one-command d2o demo (`d2o demo`): a provider shares a retail data set, a recipient reads
//! it over HTTP and analyses it.
//!
//! [`run`] does, in a directory of the caller's choice:
//! 1. writes a deterministic retail data set as Delta tables (`tables/customers`,
//!    `tables/sales`, change data feed on, several versions);
//! 2. creates the SQLite catalog `d2o.db` with the share `external_retail` (schema `retail`),
//!    the recipient `partner_co` with a one-time activation link, and the grant;
//! 3. starts the protocol server on `127.0.0.1`; as the recipient, redeems the link (the
//!    download that writes `.creds/config.share`, mode 0600) and reads through `d2o-client`:
//!    discovery, loads, time travel, the change feed;
//! 4. computes the figures, draws six charts (`charts/*.png`, `charts/*.svg`), writes
//!    `report.html` (self-contained) and `figures.json`;
//! 5. stops the server, or keeps serving until Ctrl-C when asked.
//!
//! It is not a library for anything else: its modules are public so the tests can check the
//! figures independently.
//!
//! # Layout
//! - [`dataset`]: the deterministic generator and the documented row counts.
//! - [`delta_writer`]: the Delta tables (kernel transactions; the update commit by hand).
//! - [`provider`]: catalog, share, recipient and activation link, grant, server; redeeming the link.
//! - [`analysis`]: [`Figures`], computed from the client's record batches.
//! - [`charts`]: the six charts (plotters, bundled font).
//! - [`report`]: the page `report.html`.

pub mod analysis;
pub mod charts;
pub mod dataset;
pub mod delta_writer;
pub mod provider;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use d2o_client::Client;

pub use analysis::Figures;
pub use dataset::Dataset;

/// What went wrong, by stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The directory holds something the demo did not write.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("writing the Delta tables: {0}")]
    Delta(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("server: {0}")]
    Server(String),
    #[error("reading as the recipient: {0}")]
    Client(#[from] d2o_client::ClientError),
    #[error("analysis: {0}")]
    Analysis(String),
    #[error("chart: {0}")]
    Chart(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl DemoError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DemoError {
        DemoError::Io { path: path.to_owned(), source }
    }
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where everything is written (created if missing). Outputs of an earlier run there are
    /// replaced.
    pub dir: PathBuf,
    /// The server's port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Keep serving after the report (for the notebook) until Ctrl-C.
    pub serve: bool,
    /// Print progress and the summary on stdout.
    pub verbose: bool,
}

impl DemoOptions {
    /// `dir`, a free port, no serving, quiet.
    pub fn new(dir: impl Into<PathBuf>) -> DemoOptions {
        DemoOptions { dir: dir.into(), port: 0, serve: false, verbose: false }
    }
}

/// What the demo did and where it put it.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub dir: PathBuf,
    pub tables: delta_writer::TablePaths,
    pub catalog: PathBuf,
    pub creds: PathBuf,
    pub report: PathBuf,
    pub figures_json: PathBuf,
    pub charts: Vec<charts::Chart>,
    /// The endpoint the server answered on (stopped unless serving was asked for).
    pub endpoint: String,
    pub figures: Figures,
    /// Wall time per stage.
    pub timings: Vec<(&'static str, Duration)>,
}

impl DemoReport {
    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let f = &self.figures;
        let versions = |v: &[analysis::VersionRows]| {
            v.iter().map(|r| format!("v{}: {} rows", r.version, r.rows)).collect::<Vec<_>>().join(", ")
        };
        let mut s = String::new();
        s.push_str(&format!("customers  {}\n", versions(&f.customers_versions)));
        s.push_str(&format!("sales      {}\n", versions(&f.sales_versions)));
        s.push_str(&format!("revenue    ${:.2} from {} sales\n", f.total_revenue, f.sales_amounts.count));
        for r in &f.revenue_by_segment {
            s.push_str(&format!("  {:<15} ${:>12.2}  ({:.1}%)\n", r.segment, r.revenue, r.share_pct));
        }
        if let Some(top) = f.top_customers.first() {
            s.push_str(&format!("top        {} (#{}): ${:.2}\n", top.name, top.id, top.revenue));
        }
        s.push_str(&format!(
            "changes    customers v{}..v{}: {}\n",
            f.changes.customers_from_version,
            f.changes.customers_to_version,
            f.changes.customers_change_types.iter().map(|(t, n)| format!("{n} {t}")).collect::<Vec<_>>().join(", ")
        ));
        s.push_str(&format!("report     {}\n", self.report.display()));
        s.push_str(&format!("charts     {}\n", self.report.with_file_name("charts").display()));
        s.push_str(&format!("profile    {}\n", self.creds.display()));
        s
    }
}

/// What the demo writes in its directory; an earlier run's copies are removed first.
const OUTPUTS: [&str; 8] =
    ["tables", "charts", ".creds", "d2o.db", "d2o.db-shm", "d2o.db-wal", "report.html", "figures.json"];

fn prepare_dir(dir: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    for name in OUTPUTS {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path).map_err(|e| DemoError::io(&path, e))?,
            Ok(_) => std::fs::remove_file(&path).map_err(|e| DemoError::io(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DemoError::io(&path, e)),
        }
    }
    Ok(())
}

/// Keeps the recipient's credentials out of git when the demo directory is inside a
/// repository (an existing `.gitignore` is left alone).
fn write_gitignore(dir: &Path) -> Result<(), DemoError> {
    let path = dir.join(".gitignore");
    if path.exists() {
        return Ok(());
    }
    std::fs::write(&path, "# Written by `d2o demo`: the recipient's bearer token stays out of git.\n.creds/\n")
        .map_err(|e| DemoError::io(&path, e))
}

struct Clock {
    last: Instant,
    timings: Vec<(&'static str, Duration)>,
    verbose: bool,
}

impl Clock {
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        if self.verbose {
            println!("  {stage:<34} {:>6} ms", took.as_millis());
        }
        self.timings.push((stage, took));
    }
}

/// Runs the demo (see the crate docs).
pub async fn run(opts: DemoOptions) -> Result<DemoReport, DemoError> {
    let mut clock = Clock { last: Instant::now(), timings: Vec::new(), verbose: opts.verbose };
    let dir = std::path::absolute(&opts.dir).map_err(|e| DemoError::io(&opts.dir, e))?;
    prepare_dir(&dir)?;

    let data = Dataset::generate();
    let tables_root = dir.join("tables");
    let rt = tokio::runtime::Handle::current();
    let tables = {
        let (root, data) = (tables_root.clone(), data.clone());
        tokio::task::spawn_blocking(move || delta_writer::write_tables(&root, &data, &rt))
            .await
            .map_err(|e| DemoError::Internal(format!("the table writer failed: {e}")))??
    };
    clock.lap("Delta tables written");

    let catalog_path = dir.join("d2o.db");
    let (catalog, link) = provider::provision(&catalog_path, &tables).await?;
    let server = provider::RunningServer::start(catalog, opts.port, &dir).await?;
    // The provider sends the link; the recipient opens it and downloads its credential file.
    let creds = provider::creds_path(&dir);
    provider::activate(&provider::activation_url(&server.endpoint, &link), &creds).await?;
    write_gitignore(&dir)?;
    clock.lap("share, recipient, grant, server");

    let read = read_as_recipient(&creds).await;
    let (inputs, table_names) = match read {
        Ok(r) => r,
        Err(e) => {
            let _ = server.stop().await;
            return Err(e);
        }
    };
    clock.lap("recipient reads over HTTP");

    let figures = Figures::compute(inputs);
    clock.lap("analysis");
    let chart_files = {
        let (charts_dir, f) = (dir.join("charts"), figures.clone());
        tokio::task::spawn_blocking(move || charts::write_charts(&charts_dir, &f))
            .await
            .map_err(|e| DemoError::Internal(format!("chart drawing failed: {e}")))??
    };
    clock.lap("charts");

    let context = report::ReportContext {
        endpoint: &server.endpoint,
        share: provider::SHARE,
        recipient: provider::RECIPIENT,
        tables: &table_names,
    };
    let html = report::render(&context, &figures, &chart_files)?;
    let report_path = dir.join("report.html");
    std::fs::write(&report_path, html).map_err(|e| DemoError::io(&report_path, e))?;
    let figures_json = dir.join("figures.json");
    let json = serde_json::to_string_pretty(&figures).map_err(|e| DemoError::Internal(e.to_string()))?;
    std::fs::write(&figures_json, json).map_err(|e| DemoError::io(&figures_json, e))?;
    clock.lap("report");

    let endpoint = server.endpoint.clone();
    let report = DemoReport {
        dir: dir.clone(),
        tables,
        catalog: catalog_path,
        creds,
        report: report_path,
        figures_json,
        charts: chart_files,
        endpoint: endpoint.clone(),
        figures,
        timings: clock.timings,
    };
    if opts.verbose {
        print!("{}", report.summary());
    }
    if opts.serve {
        if opts.verbose {
            println!("serving {endpoint} for the notebook (profile {}); Ctrl-C stops", report.creds.display());
        }
        d2o_server::shutdown_signal().await;
    }
    server.stop().await?;
    Ok(report)
}

/// Table names as the recipient addresses them.
fn table_name(table: &str) -> String {
    format!("{}.{}.{table}", provider::SHARE, provider::SCHEMA)
}

async fn read_as_recipient(creds: &Path) -> Result<(analysis::Inputs, Vec<String>), DemoError> {
    let client = Client::from_profile(&creds.to_string_lossy())?;

    // Discovery.
    let shares = client.list_shares().await?;
    if !shares.iter().any(|s| s.name == provider::SHARE) {
        return Err(DemoError::Analysis(format!("the share {} is not visible to the recipient", provider::SHARE)));
    }
    let _schemas = client.list_schemas(provider::SHARE).await?;
    let mut table_names: Vec<String> = client
        .list_all_tables(provider::SHARE)
        .await?
        .into_iter()
        .map(|t| format!("{}.{}.{}", t.share, t.schema, t.name))
        .collect();
    table_names.sort();

    let customers_name = table_name("customers");
    let sales_name = table_name("sales");

    // Every version (time travel), then the latest.
    let mut customers_versions = Vec::new();
    let latest_customers = client.table(&customers_name).table_version().await?;
    for v in 0..=latest_customers {
        let batches = client.table(&customers_name).version(v).load().await?;
        customers_versions.push(analysis::VersionRows { version: v, rows: batches.iter().map(|b| b.num_rows()).sum() });
    }
    let mut sales_versions = Vec::new();
    let latest_sales = client.table(&sales_name).table_version().await?;
    for v in 0..=latest_sales {
        let batches = client.table(&sales_name).version(v).load().await?;
        sales_versions.push(analysis::VersionRows { version: v, rows: batches.iter().map(|b| b.num_rows()).sum() });
    }
    let customers = analysis::customers_from_batches(&client.table(&customers_name).load().await?)?;
    let sales = analysis::sales_from_batches(&client.table(&sales_name).load().await?)?;

    // The change feed of the last version of each table.
    let customer_changes = client
        .table(&customers_name)
        .changes()
        .from_version(latest_customers)
        .to_version(latest_customers)
        .load()
        .await?;
    let change_types = analysis::change_types(&customer_changes, "customers")?;
    let change_rows = analysis::customers_from_batches_unsorted(&customer_changes)?;
    let mut before = std::collections::BTreeMap::new();
    let mut after = std::collections::BTreeMap::new();
    for (row, kind) in change_rows.iter().zip(&change_types) {
        match kind.as_str() {
            "update_preimage" => {
                before.insert(row.id, row);
            }
            "update_postimage" => {
                after.insert(row.id, row);
            }
            _ => {}
        }
    }
    let segment_moves = after
        .iter()
        .filter_map(|(id, post)| {
            before.get(id).map(|pre| analysis::SegmentMove {
                id: *id,
                name: post.name.clone(),
                from: pre.segment.clone(),
                to: post.segment.clone(),
            })
        })
        .collect();
    let sales_changes =
        client.table(&sales_name).changes().from_version(latest_sales).to_version(latest_sales).load().await?;
    let sales_change_types = analysis::change_types(&sales_changes, "sales")?;
    let sales_change_rows = analysis::sales_from_batches_unsorted(&sales_changes)?;
    let inserted_cents: i64 = sales_change_rows
        .iter()
        .zip(&sales_change_types)
        .filter(|(_, t)| t.as_str() == "insert")
        .map(|(s, _)| analysis::cents(s.amount))
        .sum();

    let changes = analysis::ChangeFigures {
        customers_from_version: latest_customers,
        customers_to_version: latest_customers,
        customers_change_types: analysis::count_values(&change_types),
        segment_moves,
        sales_from_version: latest_sales,
        sales_to_version: latest_sales,
        sales_change_types: analysis::count_values(&sales_change_types),
        sales_inserted_revenue: inserted_cents as f64 / 100.0,
    };
    Ok((analysis::Inputs { customers, sales, customers_versions, sales_versions, changes }, table_names))
}
