//! The d2o Delta Sharing server.
//!
//! [`router`] builds the whole HTTP surface from an [`AppState`]; [`serve`] runs it on a
//! listener until a shutdown future resolves. Tests call [`router`] with `oneshot` or bind
//! `127.0.0.1:0`; nothing here picks a port or reads the environment.
//!
//! # Layout
//! - [`config`]: the reference server's YAML file ([`config::ServerConfig`]), read unchanged.
//! - [`state`]: [`AppState`] (catalog, Delta tables, keys, storage); [`settings`]: [`Settings`].
//! - [`error`]: [`ApiError`], the one place errors become `{"errorCode","message"}` responses.
//! - `conn`: the accept loop, with connection limits and timeouts.
//! - [`tls`]: TLS in the process (rustls), its certificate re-read when the files change.
//! - [`client_addr`]: the client's address, decided once (trusted proxies).
//! - `edge`: what every request and response goes through (client address, CORS, the
//!   headers every answer carries, the log span).
//! - `auth`: the recipient extractor (bearer tokens, OAuth access tokens, federated JWTs), with
//!   the recipient's IP access list and rate limit, and the OAuth token endpoint;
//!   `limits`: the rate limits' token buckets; `policy`: what a principal may read of a table.
//! - `federation`: OIDC federation, verifying JWTs from a recipient's own identity provider
//!   against its federation policies (discovery, cached JWKS, RS256/ES256).
//! - `routes`: discovery (shares, schemas, tables), table (version, metadata, query, changes),
//!   and activation links (the page and the one-time `config.share` download).
//! - `tokens`: page and refresh tokens, bound to a table entry and a recipient.
//! - `stream`: streamed NDJSON bodies; `lines`: the lines of both response formats, from
//!   `d2o-protocol`'s types.
//! - [`storage`]: how recipients reach a table's files (URLs per storage backend: local disk,
//!   S3, GCS, Azure; the `/files` route behind the server's own URLs).
//! - [`signing`]: the server's signing key (file URLs, sealed tokens).
//! - [`admin`]: the admin REST API (`/admin/v1`), guarded by its own token, and
//!   [`AuditedAdmin`], which records every admin action (the API's and the CLI's).
//! - `audit`: the middleware that records one audit event per request.
//! - `console`: the web console (`/console`): server-rendered pages over the same admin
//!   operations, with a session cookie, CSRF tokens and a strict CSP.
//! - `openapi`: the OpenAPI 3 document (`/openapi.json`), from the handlers' annotations.
//! - [`retention`]: the audit log's retention (events older than N days pruned in batches).
//! - `telemetry`: Prometheus metrics (`/metrics`), readiness (`/ready`), the access log line of
//!   each request; [`metrics_router`] serves the first two on an address of their own.

pub mod client_addr;
pub mod config;
pub mod error;
pub mod retention;
pub mod settings;
pub mod signing;
pub mod state;
pub mod storage;
pub mod tls;

pub mod admin;
mod audit;
mod auth;
mod conn;
mod console;
mod edge;
mod federation;
mod limits;
mod lines;
mod openapi;
mod policy;
mod render;
mod routes;
mod stream;
mod telemetry;
mod tokens;

#[cfg(test)]
mod fuzz;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode};
use axum::routing::get;
use d2o_catalog::Catalog;

use crate::config::ServerConfig;
use d2o_delta::{DeltaTables, DeltaTablesOptions};
use tokio::net::TcpListener;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

pub use admin::{AdminContext, AuditedAdmin};
pub use client_addr::{ClientAddr, TrustedProxies};
pub use conn::ConnectionLimits;
pub use error::{ApiError, StartupError};
pub use settings::{Secret, Settings};
pub use signing::SigningKey;
pub use state::AppState;
pub use storage::Storage;
pub use tls::{Tls, TlsFiles};

use crate::audit::audited;
use crate::routes::{activation, discovery, table};

/// The largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Builds the router: the protocol under `settings.endpoint`, the admin API under `/admin/v1`,
/// the web console under `/console` (HTML, not in the OpenAPI document), `GET /health`, `GET /ready`, `GET /metrics` (for the admin token), and `GET /openapi.json`,
/// the OpenAPI document of all of them. Every route is registered with `routes!`, from its
/// handler's `#[utoipa::path]`, so the document lists exactly the routes served. Each audited
/// route names its audit action here. The first router of a process installs its metrics
/// recorder.
pub fn router(state: AppState) -> Router {
    telemetry::install();
    let a = |action, (schemas, paths, route): UtoipaMethodRouter<AppState>| -> UtoipaMethodRouter<AppState> {
        (schemas, paths, audited(&state, action, route))
    };
    let (protocol, protocol_api) = OpenApiRouter::new()
        .routes(a("list_shares", routes!(discovery::list_shares)))
        .routes(a("get_share", routes!(discovery::get_share)))
        .routes(a("list_schemas", routes!(discovery::list_schemas)))
        .routes(a("list_tables", routes!(discovery::list_tables)))
        .routes(a("list_all_tables", routes!(discovery::list_all_tables)))
        .routes(a("version", routes!(table::version::version_head)))
        .routes(a("version", routes!(table::version::version)))
        .routes(a("metadata", routes!(table::metadata::metadata)))
        .routes(a("query", routes!(table::query::query)))
        .routes(a("changes", routes!(table::changes::changes)))
        .routes(a("oauth.token", routes!(auth::oauth::token)))
        .routes(a("activation.view", routes!(activation::show)))
        .routes(a("activation.download", routes!(activation::redeem)))
        // Rate limits count API calls; file downloads are bounded by the connection limits
        // (a 1,000-file table is downloaded in parallel right after one `/query`).
        .layer(axum::middleware::from_fn_with_state(state.clone(), server_rate_limit))
        .routes(a("download", routes!(storage::files::serve_file)))
        .split_for_parts();
    let protocol = protocol.method_not_allowed_fallback(method_not_allowed);
    let (admin, admin_api) = admin::routes().split_for_parts();
    let admin = admin
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(telemetry::observe_unaudited));
    let (root, root_api) = OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(telemetry::ready))
        .routes(routes!(admin::metrics))
        .routes(routes!(openapi::openapi_json))
        .split_for_parts();
    let console = console::routes()
        .layer(axum::middleware::from_fn_with_state(state.clone(), server_rate_limit))
        .layer(axum::middleware::from_fn(telemetry::observe_unaudited));
    let endpoint = state.settings.endpoint.trim_end_matches('/').to_owned();
    let document = openapi::document(&endpoint, protocol_api, admin_api, root_api);
    let app = if endpoint.is_empty() { protocol } else { Router::new().nest(&endpoint, protocol) };
    let app = app
        .nest("/admin/v1", admin)
        .nest("/console", console)
        .merge(root.layer(axum::Extension(openapi::Document::new(&document))))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    edge::layers(app, &state.settings).with_state(state)
}

/// The router of a separate metrics listener (`d2o serve --metrics-addr`): `GET /metrics`
/// without a token (the address it listens on is its guard), `GET /health` and `GET /ready`.
pub fn metrics_router(state: AppState) -> Router {
    telemetry::install();
    let app = Router::new()
        .route("/metrics", get(telemetry::metrics_open))
        .route("/health", get(health))
        .route("/ready", get(telemetry::ready))
        .fallback(not_found);
    edge::layers(app, &state.settings).with_state(state)
}

/// Serves [`metrics_router`] on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings.connections.clone();
    conn::serve(listener, metrics_router(state), limits, shutdown).await
}

/// The server-wide rate limit, before anything else of a protocol request.
async fn server_rate_limit(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    state.limits.check_server()?;
    Ok(next.run(request).await)
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "health",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String))
)]
async fn health() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok")
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("method {method} is not allowed here"))
}

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix. Pass it to
/// [`serve`] as the shutdown future.
pub async fn shutdown_signal() {
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
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, within the connection limits
/// of `state.settings` (see [`ConnectionLimits`]), over TLS when `state.settings.tls` is set,
/// pruning the audit log meanwhile when `state.settings.audit_retention` is set.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings.connections.clone();
    let tls = state.settings.tls.clone();
    // Aborted when serving ends.
    let _retention = match (&state.admin, state.settings.audit_retention) {
        (Some(admin), Some(keep)) => Some(AbortOnDrop(tokio::spawn(retention::run(admin.clone(), keep)))),
        _ => None,
    };
    conn::serve_tls(listener, router(state), limits, tls, shutdown).await
}

/// A task that stops when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AppState {
    /// The state for a reference-format config: its settings and a catalog over its shares.
    pub fn from_config(config: &ServerConfig, catalog: Arc<dyn Catalog>) -> Result<AppState, StartupError> {
        let key = Arc::new(match &config.url_signing_key {
            Some(key) => SigningKey::from_base64(key)?,
            None => SigningKey::random()?,
        });
        let trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|message| StartupError::Setting { setting: "trustedProxies", message })?;
        if let Some(bad) =
            config.cors_allowed_origins.iter().find(|o| axum::http::HeaderValue::from_str(o.trim()).is_err())
        {
            let message = format!("'{bad}' is not an origin");
            return Err(StartupError::Setting { setting: "corsAllowedOrigins", message });
        }
        let defaults = ConnectionLimits::default();
        let settings = Settings {
            endpoint: config.endpoint.clone(),
            url_timeout_secs: config.pre_signed_url_timeout_seconds,
            public_url: config.public_url.clone(),
            evaluate_sql_hints: config.evaluate_predicate_hints,
            evaluate_json_hints: config.evaluate_json_predicate_hints || config.evaluate_json_predicate_hints_v2,
            page_size_limit: config.query_table_page_size_limit,
            page_token_ttl_ms: config.query_table_page_token_ttl_ms,
            refresh_token_ttl_ms: config.refresh_token_ttl_ms,
            admin_token: None,
            trusted_proxies,
            cors_allowed_origins: config.cors_allowed_origins.clone(),
            connections: ConnectionLimits {
                max_connections: config.max_connections.unwrap_or(defaults.max_connections),
                header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
                idle_timeout: Duration::from_secs(config.idle_timeout_seconds),
                write_timeout: Duration::from_secs(config.write_timeout_seconds),
            },
            tls: config.ssl.as_ref().and_then(|ssl| ssl.tls_files()).map(Tls::load).transpose()?,
            compression: config.compress_responses,
            audit_retention: config.audit_retention_days.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            ..Settings::default()
        };
        let storage = Arc::new(Storage::new(key.clone(), catalog.clone()));
        let options = DeltaTablesOptions {
            snapshot_cache_tables: config.delta_table_cache_size.max(1),
            file_list_cache_bytes: config.file_list_cache_mib << 20,
            staleness: config.staleness_acceptable.then(|| std::time::Duration::from_secs(5)),
            io_threads: config.storage_io_threads.max(1),
            ..DeltaTablesOptions::default()
        };
        let tables = DeltaTables::with_stores(options, storage.clone())
            .map_err(|e| StartupError::Start { what: "the Delta table reader".into(), source: Box::new(e) })?;
        let limits = Arc::new(limits::RateLimiter::new(config.rate_limit));
        Ok(AppState {
            catalog,
            tables: Arc::new(tables),
            storage,
            key,
            settings: Arc::new(settings),
            admin: None,
            limits,
            federation: Arc::new(federation::Federation::new()?),
            assertions: Arc::default(),
        })
    }
}
