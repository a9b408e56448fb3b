//! `d2o client ...`: read shared tables from a terminal.
//!
//! The profile comes from the table URL (`config.share#share.schema.table`), `--profile`, or
//! `DELTA_SHARING_PROFILE` (a path or the JSON itself), so credentials need not be typed into
//! scripts. Errors name the profile, the table and the cause.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use arrow::record_batch::RecordBatch;
use d2o_client::write::{OutputFormat, WriteSummary, write_stream};
use d2o_client::{Client, LoadProgress, PROFILE_ENV, Profile, RecordBatchStream, ResponseFormat, TableName};
use futures::StreamExt;

/// Read tables shared with you: list them, load them to files, query them with SQL.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// The profile file (`config.share`) or its JSON. Defaults to $DELTA_SHARING_PROFILE.
    #[arg(long, short = 'p', global = true)]
    profile: Option<String>,
    /// Files downloaded at once.
    #[arg(long, global = true, default_value_t = 4)]
    concurrency: usize,
    /// Ask the server for this response format only (default: whichever it prefers).
    #[arg(long, global = true, value_parser = ["parquet", "delta"])]
    response_format: Option<String>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClientCommand {
    /// List the shares.
    Shares,
    /// List the schemas of a share (of every share by default).
    Schemas { share: Option<String> },
    /// List tables: all, those of `share`, or those of `share.schema`.
    Tables { within: Option<String> },
    /// Show a table's version, partition columns and schema.
    Describe {
        /// `share.schema.table` or `profile#share.schema.table`.
        table: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Load a table into a Parquet, CSV or Arrow file (or print it).
    Load(LoadArgs),
    /// Load a table's change data feed.
    Changes(ChangesArgs),
    /// Run SQL over the profile's tables, named `share.schema.table`.
    Sql {
        /// The query, e.g. "SELECT count(*) FROM share.schema.table".
        query: String,
        /// Write the result to a file instead of printing it.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// `.parquet`, `.csv` or `.arrow`. Without it, rows are printed (20 unless --limit).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    columns: Option<Vec<String>>,
    /// Only rows matching, e.g. "date >= '2024-01-01' AND region = 'eu'" (or a JSON predicate).
    #[arg(long = "where", short = 'w')]
    filter: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u64>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// `share.schema.table` or `profile#share.schema.table`.
    table: String,
    #[command(flatten)]
    output: OutputArgs,
    /// Read this version (needs history sharing).
    #[arg(long, conflicts_with = "timestamp")]
    version: Option<i64>,
    /// Read the version current at this ISO-8601 time (2024-01-01T00:00:00Z).
    #[arg(long)]
    timestamp: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ChangesArgs {
    /// `share.schema.table` or `profile#share.schema.table`.
    table: String,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long, required_unless_present = "from_timestamp")]
    from_version: Option<i64>,
    #[arg(long)]
    to_version: Option<i64>,
    #[arg(long, conflicts_with = "from_version")]
    from_timestamp: Option<String>,
    #[arg(long)]
    to_timestamp: Option<String>,
}

/// Where the profile came from, for messages.
struct ProfileSource {
    profile: Profile,
    label: String,
}

fn resolve_profile(explicit: Option<&str>, from_url: Option<&str>) -> Result<ProfileSource> {
    let describe = |s: &str| if s.trim_start().starts_with('{') { "(inline JSON)".to_owned() } else { s.to_owned() };
    if let Some(p) = from_url.filter(|p| !p.is_empty()).or(explicit) {
        return Ok(ProfileSource { profile: d2o_client::load_profile(p)?, label: describe(p) });
    }
    match std::env::var(PROFILE_ENV) {
        Ok(v) if !v.trim().is_empty() => Ok(ProfileSource {
            profile: d2o_client::load_profile(&v)?,
            label: format!("{} (from ${PROFILE_ENV})", describe(&v)),
        }),
        _ => {
            bail!("no profile: pass --profile config.share, use config.share#share.schema.table, or set ${PROFILE_ENV}")
        }
    }
}

/// Splits `profile#share.schema.table` or takes `share.schema.table`.
fn table_arg(arg: &str) -> Result<(Option<String>, TableName)> {
    if arg.contains('#') {
        let (p, t) = d2o_client::parse_table_url(arg)?;
        Ok((Some(p), t))
    } else {
        Ok((None, TableName::parse(arg)?))
    }
}

struct Session {
    client: Client,
    label: String,
}

fn session(args: &ClientArgs, profile_from_url: Option<&str>) -> Result<Session> {
    let source = resolve_profile(args.profile.as_deref(), profile_from_url)?;
    let mut builder = Client::builder(source.profile).concurrency(args.concurrency);
    match args.response_format.as_deref() {
        Some("parquet") => builder = builder.response_format(ResponseFormat::Parquet),
        Some("delta") => builder = builder.response_format(ResponseFormat::Delta),
        _ => {}
    }
    Ok(Session { client: builder.build()?, label: source.label })
}

pub(crate) async fn run(args: ClientArgs) -> Result<()> {
    match &args.command {
        ClientCommand::Shares => {
            let s = session(&args, None)?;
            let shares =
                s.client.list_shares().await.with_context(|| format!("listing shares with profile {}", s.label))?;
            for share in shares {
                println!("{}", share.name);
            }
        }
        ClientCommand::Schemas { share } => {
            let s = session(&args, None)?;
            let shares = match share {
                Some(x) => vec![x.clone()],
                None => s
                    .client
                    .list_shares()
                    .await
                    .with_context(|| format!("listing shares with profile {}", s.label))?
                    .into_iter()
                    .map(|x| x.name)
                    .collect(),
            };
            for share in shares {
                let schemas = s
                    .client
                    .list_schemas(&share)
                    .await
                    .with_context(|| format!("listing the schemas of share '{share}' with profile {}", s.label))?;
                for schema in schemas {
                    println!("{}.{}", schema.share, schema.name);
                }
            }
        }
        ClientCommand::Tables { within } => {
            let s = session(&args, None)?;
            let ctx = || format!("listing tables with profile {}", s.label);
            let tables = match within.as_deref().map(|w| w.split_once('.').map_or((w, None), |(a, b)| (a, Some(b)))) {
                None => s.client.list_every_table().await.with_context(ctx)?,
                Some((share, None)) => s.client.list_all_tables(share).await.with_context(ctx)?,
                Some((share, Some(schema))) => s.client.list_tables(share, schema).await.with_context(ctx)?,
            };
            for t in tables {
                println!("{}.{}.{}", t.share, t.schema, t.name);
            }
        }
        ClientCommand::Describe { table, version } => {
            let (p, name) = table_arg(table)?;
            let s = session(&args, p.as_deref())?;
            let ctx = || format!("describing table {name} with profile {}", s.label);
            let mut q = s.client.table_named(name.clone());
            if let Some(v) = version {
                q = q.version(*v);
            }
            let files = q.list_files().await.with_context(ctx)?;
            let md = &files.metadata;
            println!("table:       {name}");
            println!("version:     {}", files.version);
            if let Some(d) = &md.description {
                println!("description: {d}");
            }
            println!(
                "format:      {} (reader version {}{})",
                md.format.as_str(),
                md.min_reader_version,
                if md.reader_features.is_empty() {
                    String::new()
                } else {
                    format!(", features {}", md.reader_features.join(", "))
                }
            );
            println!(
                "partitions:  {}",
                if md.partition_columns.is_empty() { "-".to_owned() } else { md.partition_columns.join(", ") }
            );
            let rows: Option<i64> = files.files.iter().map(|f| f.num_records()).sum();
            let bytes: i64 = files.files.iter().map(|f| f.size).sum();
            println!(
                "files:       {} ({}, {} rows)",
                files.files.len(),
                human_bytes(bytes.max(0) as u64),
                rows.map_or("unknown".to_owned(), |r| r.to_string())
            );
            println!("columns:");
            let schema = md.schema.arrow_schema().with_context(ctx)?;
            for f in schema.fields() {
                println!("  {:<24} {}", f.name(), f.data_type());
            }
        }
        ClientCommand::Load(load) => {
            let (p, name) = table_arg(&load.table)?;
            let s = session(&args, p.as_deref())?;
            let ctx = || format!("loading table {name} with profile {}", s.label);
            let progress = Arc::new(LoadProgress::default());
            let mut q = s.client.table_named(name.clone()).progress(progress.clone());
            if let Some(v) = load.version {
                q = q.version(v);
            }
            if let Some(t) = &load.timestamp {
                q = q.timestamp(t.clone());
            }
            if let Some(c) = &load.output.columns {
                q = q.columns(c.iter().map(|c| c.trim().to_owned()));
            }
            if let Some(f) = &load.output.filter {
                q = q.filter_text(f.clone());
            }
            let limit = load.output.limit.or(if load.output.out.is_none() { Some(20) } else { None });
            if let Some(l) = limit {
                q = q.limit(l);
            }
            match &load.output.out {
                // Parquet output may copy the data files' column chunks instead of decoding them.
                Some(path) => {
                    let format = OutputFormat::from_path(path)?;
                    write_reporting(q.load_to_file(path, format), path, &load.output, progress)
                        .await
                        .with_context(ctx)?;
                }
                None => {
                    let stream = q.load_stream().await.with_context(ctx)?;
                    output(stream, &load.output, progress).await.with_context(ctx)?;
                }
            }
        }
        ClientCommand::Changes(ch) => {
            let (p, name) = table_arg(&ch.table)?;
            let s = session(&args, p.as_deref())?;
            let ctx = || format!("loading the change data feed of table {name} with profile {}", s.label);
            let progress = Arc::new(LoadProgress::default());
            let mut q = s.client.table_named(name.clone()).changes().progress(progress.clone());
            if let Some(v) = ch.from_version {
                q = q.from_version(v);
            }
            if let Some(v) = ch.to_version {
                q = q.to_version(v);
            }
            if let Some(t) = &ch.from_timestamp {
                q = q.from_timestamp(t.clone());
            }
            if let Some(t) = &ch.to_timestamp {
                q = q.to_timestamp(t.clone());
            }
            if let Some(c) = &ch.output.columns {
                q = q.columns(c.iter().map(|c| c.trim().to_owned()));
            }
            if let Some(f) = &ch.output.filter {
                q = q.filter_text(f.clone());
            }
            let limit = ch.output.limit.or(if ch.output.out.is_none() { Some(20) } else { None });
            if let Some(l) = limit {
                q = q.limit(l);
            }
            let stream = q.load_stream().await.with_context(ctx)?;
            output(stream, &ch.output, progress).await.with_context(ctx)?;
        }
        ClientCommand::Sql { query, out } => {
            let s = session(&args, None)?;
            let ctx = datafusion::prelude::SessionContext::new();
            d2o_client::sql::register_profile(&ctx, &s.client)
                .await
                .with_context(|| format!("listing the tables of profile {}", s.label))?;
            let df = ctx.sql(query).await.map_err(|e| anyhow!("{e}")).with_context(|| format!("planning: {query}"))?;
            match out {
                Some(path) => {
                    let format = OutputFormat::from_path(path)?;
                    let schema = Arc::new(df.schema().as_arrow().clone());
                    let stream = df.execute_stream().await.map_err(|e| anyhow!("{e}"))?;
                    let stream = stream.map(|b| b.map_err(|e| d2o_client::ClientError::Protocol(e.to_string())));
                    let summary = write_stream(RecordBatchStream::from_stream(schema, stream), path, format).await?;
                    eprintln!("wrote {} rows to {}", summary.rows, path.display());
                }
                None => {
                    let batches =
                        df.collect().await.map_err(|e| anyhow!("{e}")).with_context(|| format!("running: {query}"))?;
                    print_batches(&batches)?;
                }
            }
        }
    }
    Ok(())
}

async fn output(stream: RecordBatchStream, args: &OutputArgs, progress: Arc<LoadProgress>) -> Result<()> {
    match &args.out {
        Some(path) => {
            let format = OutputFormat::from_path(path)?;
            write_reporting(write_stream(stream, path, format), path, args, progress).await
        }
        None => print_batches(&stream.collect().await?),
    }
}

/// Runs `write` (writing `path`) under a progress bar (on a terminal, unless --quiet), then
/// reports what it wrote.
async fn write_reporting(
    write: impl Future<Output = d2o_client::Result<WriteSummary>>,
    path: &Path,
    args: &OutputArgs,
    progress: Arc<LoadProgress>,
) -> Result<()> {
    let started = Instant::now();
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| spawn_bar(progress.clone()));
    let result = write.await;
    if let Some((bar, task)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    let summary = result?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} rows to {} in {secs:.1} s ({} downloaded)",
        summary.rows,
        path.display(),
        human_bytes(progress.bytes_done.load(Ordering::Relaxed))
    );
    Ok(())
}

fn spawn_bar(progress: Arc<LoadProgress>) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            b.set_length(progress.bytes_total.load(Ordering::Relaxed));
            b.set_position(progress.bytes_done.load(Ordering::Relaxed));
            b.set_message(format!(
                "{}/{} files, {} rows",
                progress.files_done.load(Ordering::Relaxed),
                progress.files_total.load(Ordering::Relaxed),
                progress.rows.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (bar, task)
}

fn print_batches(batches: &[RecordBatch]) -> Result<()> {
    let text = arrow::util::pretty::pretty_format_batches(batches)?;
    println!("{text}");
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[i]) }
}
