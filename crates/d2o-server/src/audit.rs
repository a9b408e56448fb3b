//! The audit log: one event per protocol request and admin action.
//!
//! A middleware puts an [`AuditSlot`] into each request; the authentication extractor and the
//! handlers fill it in (who, what, which table, version, files and bytes), and the middleware
//! records it once the response is complete. For a streamed body (NDJSON lines, a file) that is
//! when the last bytes have been produced: the body's end waits for the record, and if the event
//! cannot be stored the body fails instead of ending cleanly — a request is never served without
//! its event. Tokens never reach the event.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use d2o_catalog::{AuditEvent, Catalog};
use futures::future::BoxFuture;
use http_body::Frame;
use parking_lot::Mutex;

use crate::{ApiError, AppState};

/// The event of the current request, shared between the middleware and the handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot(Arc<Mutex<AuditEvent>>);

impl AuditSlot {
    pub(crate) fn update(&self, f: impl FnOnce(&mut AuditEvent)) {
        f(&mut self.0.lock());
    }

    fn snapshot(&self) -> AuditEvent {
        self.0.lock().clone()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditSlot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Outside the middleware (never in the real router) a detached slot is harmless.
        Ok(parts.extensions.get::<AuditSlot>().cloned().unwrap_or_default())
    }
}

const REQUEST_ID: &str = "x-request-id";

/// The audited action of a route (by its pattern), or `None` for routes that are not audited.
fn action_of(method: &axum::http::Method, route: &str) -> Option<&'static str> {
    if route.starts_with("/admin/v1") {
        return crate::admin::action_of(method, route);
    }
    let action = if route.ends_with("/files/{root}/{*path}") || route == "/health" {
        return None;
    } else if route.ends_with("/all-tables") {
        "list_all_tables"
    } else if route.ends_with("/tables/{table}/version") || route.ends_with("/tables/{table}") {
        "version"
    } else if route.ends_with("/metadata") {
        "metadata"
    } else if route.ends_with("/query") {
        "query"
    } else if route.ends_with("/changes") {
        "changes"
    } else if route.ends_with("/tables") {
        "list_tables"
    } else if route.ends_with("/schemas") {
        "list_schemas"
    } else if route.ends_with("/shares/{share}") {
        "get_share"
    } else if route.ends_with("/shares") {
        "list_shares"
    } else {
        return None;
    };
    Some(action)
}

/// Middleware (a route layer, so the matched route is known): creates the slot, runs the
/// request, records the event.
pub(crate) async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let Some(action) = action_of(req.method(), &route) else { return next.run(req).await };
    let slot = AuditSlot::default();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let names = path_names(&route, &path);
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let client_ip = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .or_else(|| req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()));
    let user_agent =
        req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(512).collect());
    slot.update(|e| {
        e.action = action.to_owned();
        e.share = names.0;
        e.schema = names.1;
        e.table = names.2;
        e.principal = "anonymous".to_owned();
        e.request_id = Some(request_id.clone());
        e.client_ip = client_ip;
        e.user_agent = user_agent;
    });
    req.extensions_mut().insert(slot.clone());
    let mut response = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let status = response.status().as_u16();
    slot.update(|e| e.status = status);
    // A body of unknown length is streamed: its event is recorded before its end. A body that
    // is complete already is answered once its event is stored.
    let streamed = http_body::Body::size_hint(response.body()).exact().is_none();
    if streamed {
        let (parts, body) = response.into_parts();
        let body = AuditedBody { inner: body, slot, catalog: state.catalog.clone(), pending: None, done: false };
        return Response::from_parts(parts, Body::new(body));
    }
    let mut event = slot.snapshot();
    event.time_ms = chrono::Utc::now().timestamp_millis();
    match state.catalog.record(&event).await {
        Ok(()) => response,
        Err(e) => ApiError::Internal(format!("the audit event could not be written: {e}")).into_response(),
    }
}

/// The share, schema and table named by a request path, matched against its route pattern.
fn path_names(route: &str, path: &str) -> (Option<String>, Option<String>, Option<String>) {
    let mut names = (None, None, None);
    for (pattern, value) in route.split('/').zip(path.split('/')) {
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
        match pattern {
            "{share}" => names.0 = Some(value),
            "{schema}" => names.1 = Some(value),
            "{table}" => names.2 = Some(value),
            _ => {}
        }
    }
    names
}

/// A streamed body that records its request's event before it ends.
struct AuditedBody {
    inner: Body,
    slot: AuditSlot,
    catalog: Arc<dyn Catalog>,
    pending: Option<BoxFuture<'static, Result<(), d2o_catalog::CatalogError>>>,
    done: bool,
}

impl http_body::Body for AuditedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.pending.is_none() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    let mut event = this.slot.snapshot();
                    event.time_ms = chrono::Utc::now().timestamp_millis();
                    let catalog = this.catalog.clone();
                    this.pending = Some(Box::pin(async move { catalog.record(&event).await }));
                }
                Poll::Ready(Some(Err(e))) => {
                    // The stream failed: the event records a failed request.
                    this.slot.update(|ev| ev.status = 500);
                    let mut event = this.slot.snapshot();
                    event.time_ms = chrono::Utc::now().timestamp_millis();
                    let catalog = this.catalog.clone();
                    tokio::spawn(async move {
                        if let Err(err) = catalog.record(&event).await {
                            tracing::error!(error = %err, "audit event of a failed stream could not be written");
                        }
                    });
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                other => return other,
            }
        }
        let Some(pending) = this.pending.as_mut() else { return Poll::Ready(None) };
        match pending.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.done = true;
                this.pending = None;
                match result {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => {
                        tracing::error!(error = %e, "audit event could not be written; failing the response");
                        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                            "the audit event could not be written",
                        )))))
                    }
                }
            }
        }
    }
}
