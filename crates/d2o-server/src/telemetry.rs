//! What operators watch: Prometheus metrics (`/metrics`), readiness (`/ready`), and one access
//! log line per request.
//!
//! Metrics are recorded through the `metrics` facade, here and in `d2o-delta` and
//! `d2o-catalog` (whose calls cost next to nothing until a recorder is installed). The first
//! [`crate::router`] of a process installs a Prometheus recorder ([`install`]); `/metrics`
//! renders it in the text format. On the protocol listener it is served only to the admin token
//! (compared in constant time, as the admin API does); [`crate::metrics_router`] serves it
//! without a token, for a listener of its own on an internal address.
//!
//! Requests are observed where their audit event is recorded (for a streamed body: at its
//! end), so the metrics and the log line carry what the audit event does: the route (the
//! audit action the route table names, never the raw path), the recipient, the status, files
//! and bytes. The access log line holds no token, no URL and no signature.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use d2o_catalog::{AuditEvent, CatalogError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{ApiError, AppState};

/// Histogram buckets (seconds), for request latency and the other timings: from 100 µs (a
/// cached discovery call, one response's URL signing) to a minute (a large streamed listing).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes (each
/// scrape folds them too): keeps the samples held in memory bounded by this much traffic.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The client's `X-Request-Id`, if it sent one of at most 128 characters.
pub(crate) fn given_request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| v.len() <= 128).map(str::to_owned)
}

/// The request's id: the client's `X-Request-Id`, or a new one.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> String {
    given_request_id(headers).unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The process's Prometheus recorder, once installed; `None` when another recorder was
/// installed first (by a program embedding the server).
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once; later calls
/// return the same handle.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let recorder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
                Ok(builder) => builder.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "metrics are off: the histogram buckets were refused");
                    return None;
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed in this process; /metrics is off");
                return None;
            }
            describe();
            let upkeep = handle.clone();
            let started = std::thread::Builder::new().name("d2o-metrics".to_owned()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
            if let Err(e) = started {
                // Scrapes still fold the samples in; only an unscraped server accumulates them.
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            metrics::gauge!("d2o_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .as_ref()
}

/// The `# HELP` texts; every metric of d2o is listed here (the docs' list follows this one).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "d2o_requests_total",
        "Requests answered, by route (the audit action or admin route template), status and recipient"
    );
    describe_histogram!(
        "d2o_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to the end of its response body, by route"
    );
    describe_counter!(
        "d2o_files_served_total",
        "Data files listed in query and changes responses, by route and recipient"
    );
    describe_counter!(
        "d2o_bytes_served_total",
        Unit::Bytes,
        "Bytes of the data files listed (query, changes) or sent (download), by route and recipient"
    );
    describe_counter!("d2o_cache_hits_total", "Lookups answered from a cache of Delta table state, by cache");
    describe_counter!("d2o_cache_misses_total", "Lookups a cache of Delta table state could not answer, by cache");
    describe_gauge!("d2o_file_list_cache_bytes", Unit::Bytes, "Memory held by the per-version file-list cache");
    describe_counter!(
        "d2o_file_list_scans_joined_total",
        "Requests that joined a running scan of the same table version instead of scanning its log"
    );
    describe_counter!("d2o_catalog_reloads_total", "Reloads of the SQL catalog's in-memory view, by result");
    describe_histogram!("d2o_catalog_reload_seconds", Unit::Seconds, "Time to reload the SQL catalog's in-memory view");
    describe_gauge!(
        "d2o_audit_queue_depth",
        "Audit events submitted to the SQL catalog's database task and not yet stored"
    );
    describe_counter!("d2o_urls_signed_total", "File URLs signed, by the table location's scheme");
    describe_histogram!(
        "d2o_url_signing_seconds",
        Unit::Seconds,
        "Time spent signing the file URLs of one response, by the table location's scheme"
    );
    describe_gauge!("d2o_build_info", "Always 1; the version label is the server's version");
}

/// Counts a finished request and writes its access log line. `event` is the request's audit
/// event (route = its action, recipient = its principal).
pub(crate) fn request_finished(event: &AuditEvent, elapsed: Duration) {
    let route = event.action.as_str();
    let recipient = event.principal.as_str();
    let labels =
        [("route", route.to_owned()), ("status", event.status.to_string()), ("recipient", recipient.to_owned())];
    metrics::counter!("d2o_requests_total", &labels).increment(1);
    metrics::histogram!("d2o_request_duration_seconds", "route" => route.to_owned()).record(elapsed.as_secs_f64());
    let served = [("route", route.to_owned()), ("recipient", recipient.to_owned())];
    if let Some(files) = event.files.filter(|f| *f > 0) {
        metrics::counter!("d2o_files_served_total", &served).increment(files as u64);
    }
    if let Some(bytes) = event.bytes.filter(|b| *b > 0) {
        metrics::counter!("d2o_bytes_served_total", &served).increment(bytes as u64);
    }
    tracing::info!(
        target: "d2o::access",
        request_id = event.request_id.as_deref().unwrap_or_default(),
        recipient,
        route,
        status = event.status,
        // Milliseconds with microseconds as decimals.
        duration_ms = elapsed.as_micros() as f64 / 1000.0,
        files = event.files,
        bytes = event.bytes,
        "request"
    );
}

/// Signing time of one response's URLs, recorded when the last of the response's signers is
/// dropped. A clone is the same response's timing, for a signer on another thread.
#[derive(Debug, Clone)]
pub(crate) struct SigningTime(std::sync::Arc<SigningTotals>);

/// What one response's signers spent, recorded once when the last of them is dropped.
#[derive(Debug)]
struct SigningTotals {
    scheme: String,
    urls: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
}

impl SigningTime {
    pub(crate) fn new(scheme: &str) -> SigningTime {
        SigningTime(std::sync::Arc::new(SigningTotals {
            scheme: scheme.to_owned(),
            urls: Default::default(),
            nanos: Default::default(),
        }))
    }

    /// Runs `sign`, adding its time to the response's.
    pub(crate) fn time<T>(&self, sign: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::Relaxed;
        let started = Instant::now();
        let out = sign();
        self.0.nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        self.0.urls.fetch_add(1, Relaxed);
        out
    }
}

impl Drop for SigningTotals {
    fn drop(&mut self) {
        let urls = *self.urls.get_mut();
        if urls == 0 {
            return;
        }
        // One sample per response, not per URL: a listing may sign a million URLs.
        metrics::counter!("d2o_urls_signed_total", "scheme" => self.scheme.clone()).increment(urls);
        metrics::histogram!("d2o_url_signing_seconds", "scheme" => self.scheme.clone())
            .record(Duration::from_nanos(*self.nanos.get_mut()).as_secs_f64());
    }
}

/// Middleware for routes without an audit action of their own (the admin API): counts and
/// logs the request under its method and route template, as the admin (or `anonymous` when
/// the admin token was refused). Gives the request an id (kept from `x-request-id` if the
/// client sent one) that the admin API's audit events carry too.
pub(crate) async fn observe_unaudited(matched: Option<MatchedPath>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match &matched {
        Some(path) => format!("{} {}", req.method(), path.as_str()),
        None => req.method().to_string(),
    };
    let request_id = request_id(req.headers());
    let id_header = HeaderValue::from_str(&request_id).ok();
    if let Some(v) = &id_header {
        req.headers_mut().insert(REQUEST_ID, v.clone());
    }
    let mut response = next.run(req).await;
    if let Some(v) = id_header {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let status = response.status().as_u16();
    let principal = if status == StatusCode::UNAUTHORIZED.as_u16() { "anonymous" } else { "admin" };
    let event = AuditEvent {
        action: route,
        principal: principal.to_owned(),
        status,
        request_id: Some(request_id),
        ..AuditEvent::default()
    };
    request_finished(&event, started.elapsed());
    response
}

/// The text format of every metric.
fn render(handle: &PrometheusHandle) -> Response {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], handle.render()).into_response()
}

fn recorder() -> Result<&'static PrometheusHandle, ApiError> {
    install().ok_or_else(|| ApiError::NotFound("metrics are not recorded by this server".to_owned()))
}

/// `GET /metrics` on the metrics listener: no token (its address is the guard). The protocol
/// listener's, for the admin token only, is the admin module's.
pub(crate) async fn metrics_open() -> Result<Response, ApiError> {
    Ok(render(recorder()?))
}

/// `GET /ready`: 200 when the catalog can serve requests, else 503 with the reason.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    operation_id = "ready",
    summary = "Readiness: whether the catalog can serve requests",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "`{\"status\": \"unavailable\", \"reason\": ...}`", body = Object)
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.catalog.ready().await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response(),
        Err(e) => {
            let reason = match &e {
                CatalogError::Internal { message, .. } => message.clone(),
                other => other.to_string(),
            };
            tracing::warn!(error = %crate::error::error_chain(&e), "not ready");
            let body = serde_json::json!({"status": "unavailable", "reason": reason});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}
