//! `d2o`: serve, administer and read Delta Sharing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use d2o_catalog::{Admin, Catalog, SqlCatalog};
use d2o_server::AppState;
use d2o_server::config::{ServerConfig, config_dir};

mod admin_cmd;
mod audit_export;
/// The catalog crate's contract suite, run here through a live server's admin API.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, unreachable_pub, dead_code)]
#[path = "../../d2o-catalog/tests/integration/contract.rs"]
mod catalog_contract;
mod client_cmd;
mod output;
mod remote_admin;

#[derive(Debug, Parser)]
#[command(name = "d2o", version, about = "An open, self-hosted Delta Sharing server and client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Delta Sharing protocol server.
    Serve(ServeArgs),
    /// The one-command demo: share a retail data set, read it back as a recipient, write a report.
    Demo(DemoArgs),
    /// Read tables shared with you (recipient client).
    Client(client_cmd::ClientArgs),
    /// Shares and their tables.
    Share {
        #[command(flatten)]
        target: admin_cmd::Target,
        #[command(subcommand)]
        command: admin_cmd::ShareCommand,
    },
    /// Recipients and their tokens.
    Recipient {
        #[command(flatten)]
        target: admin_cmd::Target,
        #[command(subcommand)]
        command: admin_cmd::RecipientCommand,
    },
    /// Named storage locations: options for tables on S3, GCS and Azure.
    Storage {
        #[command(flatten)]
        target: admin_cmd::Target,
        #[command(subcommand)]
        command: admin_cmd::StorageCommand,
    },
    /// Grant a share to a recipient.
    Grant {
        share: String,
        recipient: String,
        #[command(flatten)]
        target: admin_cmd::Target,
    },
    /// Revoke a share from a recipient.
    Revoke {
        share: String,
        recipient: String,
        #[command(flatten)]
        target: admin_cmd::Target,
    },
    /// Read the audit log; export or prune it.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<Box<admin_cmd::AuditCommand>>,
        #[command(flatten)]
        target: admin_cmd::Target,
        #[command(flatten)]
        args: admin_cmd::AuditArgs,
    },
    /// Catalog maintenance.
    Catalog {
        #[command(flatten)]
        target: admin_cmd::Target,
        #[command(subcommand)]
        command: admin_cmd::CatalogCommand,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Settings (and, without --catalog, the shares) in the reference server's YAML format.
    #[arg(long, short = 'c', env = "D2O_CONFIG")]
    config: Option<PathBuf>,
    /// Serve the shares of a catalog: a SQLite file or a postgres:// URL (default d2o.db when
    /// no --config is given).
    #[arg(long, env = "D2O_CATALOG")]
    catalog: Option<String>,
    /// Enables the admin API (/admin/v1) with this token. Prefer D2O_ADMIN_TOKEN or
    /// --admin-token-file: a command-line argument is visible to every user of the machine.
    #[arg(long, env = "D2O_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Enables the admin API with the token in this file (its first line).
    #[arg(long, env = "D2O_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Most threads for blocking work (table scans, file listings); requests beyond wait.
    #[arg(long, env = "D2O_MAX_BLOCKING_THREADS", default_value_t = 64)]
    max_blocking_threads: usize,
    /// Override `host` from the config.
    #[arg(long)]
    host: Option<String>,
    /// Override `port` from the config (0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
    /// How long the OAuth access tokens of the token endpoint live (1h, 15m, ...).
    #[arg(long, env = "D2O_ACCESS_TOKEN_TTL", default_value = "1h")]
    access_token_ttl: String,
    /// Delete audit events older than this many days (checked at start and every hour).
    /// Overrides the config's auditRetentionDays; without either the log is kept whole.
    #[arg(long, env = "D2O_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    audit_retention_days: Option<u32>,
    /// Do not compress JSON and NDJSON answers (by default gzip or zstd, when the client accepts it).
    #[arg(long)]
    no_compression: bool,
    /// Whom recipients should ask about their access (a name or an e-mail address), shown on
    /// activation pages.
    #[arg(long, env = "D2O_PROVIDER_CONTACT")]
    provider_contact: Option<String>,
    /// Serve HTTPS with the PEM certificate (chain) in this file, re-read when it changes.
    /// Overrides the config's `ssl`.
    #[arg(long, env = "D2O_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key: an unencrypted PEM file.
    #[arg(long, env = "D2O_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve /metrics (without a token), /health and /ready on this address, e.g.
    /// 127.0.0.1:9100. Without it, /metrics is served on the main address to the admin token.
    #[arg(long, env = "D2O_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// How log lines are written to stderr: text, or json (one object per line, with one line
    /// per request: request id, recipient, route, status, duration).
    #[arg(long, env = "D2O_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Where the tables, catalog, credentials and report go.
    #[arg(long, default_value = "d2o-demo")]
    dir: PathBuf,
    /// The server's port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Stop after the report instead of serving on for the notebook.
    #[arg(long)]
    no_serve: bool,
}

async fn demo(args: DemoArgs) -> Result<()> {
    println!("d2o demo in {}", args.dir.display());
    let opts = d2o_demo::DemoOptions { dir: args.dir, port: args.port, serve: !args.no_serve, verbose: true };
    let report = d2o_demo::run(opts).await.context("the demo failed")?;
    let took: std::time::Duration = report.timings.iter().map(|(_, t)| *t).sum();
    println!("done: the demo took {:.1} s", took.as_secs_f64());
    Ok(())
}

/// jemalloc: memory freed by one thread is reused by the others and returned to the system, so a
/// server that scans many uncached versions does not grow (glibc's per-thread arenas kept their
/// peaks; measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs what it does; a one-shot command only what went wrong. Kernel errors are
    // logged by d2o, once, with what to fix (`D2O_LOG=delta_kernel=debug` shows its own).
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "info,tower_http=warn,delta_kernel=off"
    } else {
        "warn,delta_kernel=off"
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("D2O_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr);
    match &cli.command {
        // One JSON object per line, the event's fields at the top level (a log shipper's input).
        Command::Serve(args) if args.log_format == LogFormat::Json => {
            logs.json().flatten_event(true).with_span_list(false).init()
        }
        _ => logs.init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        // A bounded pool: a burst of uncached reads queues instead of starting hundreds of threads.
        runtime.max_blocking_threads(args.max_blocking_threads.max(1));
    }
    let runtime = runtime.enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => demo(args).await,
            Command::Client(args) => client_cmd::run(args).await,
            Command::Share { target, command } => admin_cmd::share(&target, command).await,
            Command::Recipient { target, command } => admin_cmd::recipient(&target, command).await,
            Command::Storage { target, command } => admin_cmd::storage(&target, command).await,
            Command::Grant { share, recipient, target } => admin_cmd::grant(&target, &share, &recipient, true).await,
            Command::Revoke { share, recipient, target } => admin_cmd::grant(&target, &share, &recipient, false).await,
            Command::Audit { command: Some(command), .. } => admin_cmd::audit_command(*command).await,
            Command::Audit { command: None, target, args } => admin_cmd::audit(&target, args).await,
            Command::Catalog { target, command } => admin_cmd::catalog(&target, command).await,
        }
    })
}

/// Warns when a secret was given as a command-line argument, which every user of the machine
/// can read (`ps`, `/proc/PID/cmdline`).
pub(crate) fn warn_if_secret_argument(flag: &str, instead: &str) {
    let given = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if given {
        tracing::warn!(
            "{flag} on the command line is visible to every user of this machine (ps, /proc/PID/cmdline); use {instead} instead"
        );
    }
}

/// The admin token from the flag, the environment or a file.
fn admin_token(args: &ServeArgs) -> Result<Option<String>> {
    warn_if_secret_argument("--admin-token", "D2O_ADMIN_TOKEN or --admin-token-file");
    match (&args.admin_token, &args.admin_token_file) {
        (_, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the admin token file {}", file.display()))?;
            let token = text.lines().next().unwrap_or_default().trim().to_owned();
            anyhow::ensure!(!token.is_empty(), "the admin token file {} is empty", file.display());
            Ok(Some(token))
        }
        (token, None) => Ok(token.clone()),
    }
}

/// The certificate and key of `--tls-cert` and `--tls-key` (clap requires both or neither),
/// made absolute.
fn tls_files(args: &ServeArgs, cwd: &std::path::Path) -> Option<d2o_server::TlsFiles> {
    let (certificate, key) = (args.tls_cert.as_ref()?, args.tls_key.as_ref()?);
    Some(d2o_server::TlsFiles { certificate: cwd.join(certificate), key: cwd.join(key) })
}

/// Raises the soft limit on open files to the hard limit, and keeps the connection cap below
/// what is left of it, so that many connections cannot starve the server of file descriptors.
fn fit_connections_to_file_limit(limits: &mut d2o_server::ConnectionLimits) {
    const RESERVED: u64 = 256;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            let room = usize::try_from(soft.saturating_sub(RESERVED)).unwrap_or(usize::MAX).max(16);
            if limits.max_connections > room {
                tracing::warn!(
                    open_file_limit = soft,
                    "maxConnections lowered from {} to {room} to fit the open-file limit",
                    limits.max_connections
                );
                limits.max_connections = room;
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not read or raise the open-file limit"),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let cwd = std::env::current_dir()?;
    let admin_token = admin_token(&args)?;
    let tls_flags = tls_files(&args, &cwd);
    let (mut config, base_dir) = match &args.config {
        Some(path) => {
            let (config, report) = ServerConfig::load(path)?;
            for warning in &report.warnings {
                tracing::warn!(file = %path.display(), "{warning}");
            }
            (config, config_dir(path))
        }
        None => (ServerConfig::parse("version: 1", &cwd).map_err(anyhow::Error::msg)?.0, cwd),
    };
    let (catalog, admin): (Arc<dyn Catalog>, Option<Arc<dyn Admin>>) = match (&args.catalog, &args.config) {
        (None, Some(_)) => {
            (Arc::new(config.yaml_catalog(&base_dir).context("cannot build the catalog from the config")?), None)
        }
        (target, _) => {
            let target = target.clone().unwrap_or_else(|| "d2o.db".to_owned());
            if !config.shares.is_empty() {
                tracing::warn!(
                    "the shares of the config file are ignored when serving from a catalog; load them with `d2o catalog import`"
                );
            }
            if !config.storage.is_empty() {
                tracing::warn!(
                    "the storage locations of the config file are ignored when serving from a catalog; add them with `d2o storage add`"
                );
            }
            let catalog = Arc::new(
                SqlCatalog::connect(&target).await.with_context(|| format!("cannot open the catalog '{target}'"))?,
            );
            tracing::info!(catalog = %catalog.display(), "serving from the catalog");
            (catalog.clone(), Some(catalog))
        }
    };
    if config.url_signing_key.is_none() {
        tracing::info!(
            "no urlSigningKey configured: file URLs are signed with a key generated now and stop working on restart"
        );
    }
    if tls_flags.is_some() && config.ssl.take().is_some() {
        tracing::info!("--tls-cert and --tls-key replace the config file's ssl section");
    }
    let mut state = AppState::from_config(&config, catalog).map_err(anyhow::Error::new)?;
    let settings = Arc::make_mut(&mut state.settings);
    fit_connections_to_file_limit(&mut settings.connections);
    let ttl = output::parse_duration(&args.access_token_ttl).map_err(anyhow::Error::msg)?;
    anyhow::ensure!((60..=86_400).contains(&ttl), "--access-token-ttl must be between 1 minute and 1 day");
    settings.access_token_ttl_secs = ttl;
    settings.provider_contact = args.provider_contact.clone();
    if let Some(days) = args.audit_retention_days {
        settings.audit_retention = Some(std::time::Duration::from_secs(u64::from(days) * 86_400));
    }
    if args.no_compression {
        settings.compression = false;
    }
    if let Some(files) = tls_flags {
        settings.tls = Some(d2o_server::Tls::load(files)?);
    }
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    match (admin_token, &admin) {
        (Some(token), Some(_)) => {
            anyhow::ensure!(token.len() >= 16, "the admin token must have at least 16 characters");
            settings.admin_token = Some(d2o_server::Secret::new(token));
        }
        (Some(_), None) => tracing::warn!("--admin-token is ignored: a YAML config has no catalog to administer"),
        (None, _) => {}
    }
    // The catalog's own operations serve activation links; the admin API also needs its token.
    state.admin = admin;
    let host = args.host.unwrap_or(config.host.clone());
    let port = args.port.unwrap_or(config.port);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} (is another server using the port?)"))?;
    let addr = listener.local_addr()?;
    let metrics = match &args.metrics_addr {
        Some(metrics_addr) => {
            let listener = tokio::net::TcpListener::bind(metrics_addr.as_str())
                .await
                .with_context(|| format!("cannot listen for metrics on {metrics_addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "serving /metrics, /health and /ready");
            Some(tokio::spawn(d2o_server::serve_metrics(listener, state.clone(), d2o_server::shutdown_signal())))
        }
        None => None,
    };
    // The one line on stdout: scripts read the address from it.
    println!("d2o serving Delta Sharing at {scheme}://{addr}{}", config.endpoint);
    d2o_server::serve(listener, state, async {
        d2o_server::shutdown_signal().await;
        tracing::info!("shutting down");
    })
    .await
    .context("server failed")?;
    if let Some(metrics) = metrics {
        metrics.await.context("the metrics listener stopped")?.context("the metrics listener failed")?;
    }
    Ok(())
}
