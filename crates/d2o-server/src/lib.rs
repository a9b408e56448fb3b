//! The d2o Delta Sharing server.
//!
//! [`router`] builds the whole HTTP surface from an [`AppState`]; [`serve`] runs it on a
//! listener until a shutdown future resolves. Tests call [`router`] with `oneshot` or bind
//! `127.0.0.1:0`; nothing here picks a port or reads the environment.
//!
//! # Layout
//! - [`state`]: [`AppState`] (catalog, Delta tables, URL signer) and [`Settings`].
//! - [`error`]: [`ApiError`], the one place errors become `{"errorCode","message"}` responses.
//! - `auth`: the bearer-token extractor.
//! - `routes`: discovery (shares, schemas, tables), table (version, metadata, query, changes)
//!   and file serving.
//! - `ndjson`: streaming NDJSON bodies and the lines of both response formats.
//! - [`signing`]: HMAC-signed file URLs and opaque page and refresh tokens.
//! - `admin`: the admin REST API (`/admin/v1`), guarded by its own token.
//! - `audit`: the middleware that records one audit event per request.

pub mod error;
pub mod signing;
pub mod state;

mod admin;
mod audit;
mod auth;
mod ndjson;
mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::routing::{get, head};
use d2o_catalog::{Catalog, ServerConfig};
use d2o_delta::{DeltaTables, DeltaTablesOptions};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use signing::UrlSigner;
pub use state::{AppState, Settings};

/// The largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Builds the router: the protocol under `settings.endpoint`, plus `GET /health`.
pub fn router(state: AppState) -> Router {
    let table = "/shares/{share}/schemas/{schema}/tables/{table}";
    let protocol = Router::new()
        .route("/shares", get(routes::discovery::list_shares))
        .route("/shares/{share}", get(routes::discovery::get_share))
        .route("/shares/{share}/schemas", get(routes::discovery::list_schemas))
        .route("/shares/{share}/schemas/{schema}/tables", get(routes::discovery::list_tables))
        .route("/shares/{share}/all-tables", get(routes::discovery::list_all_tables))
        .route(table, head(routes::table::version))
        .route(&format!("{table}/version"), get(routes::table::version))
        .route(&format!("{table}/metadata"), get(routes::table::metadata))
        .route(&format!("{table}/query"), axum::routing::post(routes::table::query))
        .route(&format!("{table}/changes"), get(routes::table::changes))
        .route("/files/{root}/{*path}", get(routes::files::serve_file))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
        .method_not_allowed_fallback(method_not_allowed);
    let admin = admin::routes()
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
        .method_not_allowed_fallback(method_not_allowed);
    let endpoint = state.settings.endpoint.trim_end_matches('/').to_owned();
    let app = if endpoint.is_empty() { protocol } else { Router::new().nest(&endpoint, protocol) };
    app.nest("/admin/v1", admin)
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

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

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // No Nagle delay: a response's last bytes (often a small final chunk written after the
    // audit event is stored) must not wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

impl AppState {
    /// The state for a reference-format config: its settings and a catalog over its shares.
    pub fn from_config(config: &ServerConfig, catalog: Arc<dyn Catalog>) -> Result<AppState, ApiError> {
        let signer = match &config.url_signing_key {
            Some(key) => UrlSigner::from_base64(key)?,
            None => UrlSigner::random()?,
        };
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
        };
        let tables = DeltaTables::new(DeltaTablesOptions {
            snapshot_cache_tables: config.delta_table_cache_size.max(1),
            file_list_cache_bytes: config.file_list_cache_mib << 20,
            staleness: config.staleness_acceptable.then(|| std::time::Duration::from_secs(5)),
        });
        Ok(AppState {
            catalog,
            tables: Arc::new(tables),
            signer: Arc::new(signer),
            settings: Arc::new(settings),
            admin: None,
        })
    }
}
