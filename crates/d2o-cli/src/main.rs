//! `d2o`: serve, administer and read Delta Sharing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use d2o_catalog::{ServerConfig, YamlCatalog};
use d2o_server::AppState;

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
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A server configuration in the reference server's YAML format.
    #[arg(long, short = 'c', env = "D2O_CONFIG")]
    config: PathBuf,
    /// Override `host` from the config.
    #[arg(long)]
    host: Option<String>,
    /// Override `port` from the config (0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("D2O_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (config, report) = ServerConfig::load(&args.config)?;
    for warning in &report.warnings {
        tracing::warn!(file = %args.config.display(), "{warning}");
    }
    let base_dir = std::path::absolute(&args.config)?.parent().map(PathBuf::from).unwrap_or_default();
    let catalog = YamlCatalog::new(&config, &base_dir).context("cannot build the catalog from the config")?;
    if config.url_signing_key.is_none() {
        tracing::info!(
            "no urlSigningKey configured: file URLs are signed with a key generated now and stop working on restart"
        );
    }
    let state = AppState::from_config(&config, Arc::new(catalog)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = args.host.unwrap_or(config.host.clone());
    let port = args.port.unwrap_or(config.port);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} (is another server using the port?)"))?;
    let addr = listener.local_addr()?;
    // The one line on stdout: scripts read the address from it.
    println!("d2o serving Delta Sharing at http://{addr}{}", config.endpoint);
    d2o_server::serve(listener, state, shutdown_signal()).await.context("server failed")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
