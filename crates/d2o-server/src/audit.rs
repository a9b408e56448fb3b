//! The audit log: one event per protocol request, file download and admin action.
//!
//! Each audited route names its action in the route table ([`audited`]). The middleware puts an
//! [`AuditSlot`] into the request; the authentication extractor and the handlers fill it in
//! (who, which table, version, files and bytes), and the middleware records it once the
//! response is complete. For a streamed body (NDJSON lines, a file) that is when the last bytes
//! have been produced: the body's end waits for the record, and if the event cannot be stored
//! the body fails instead of ending cleanly, so a request is never served without its event.
//! A body the client drops before its end is recorded too, with status 499 and how much of it
//! had been sent. Tokens never reach the event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use bytes::Bytes;
use d2o_catalog::{AuditEvent, Catalog, CatalogError};
use http_body::Frame;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::client_addr::ClientAddr;
use crate::{ApiError, AppState};

/// The status recorded for a response the client stopped reading (nginx's convention).
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// The event of the current request, shared between the middleware and the handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot(Arc<Mutex<AuditEvent>>);

impl AuditSlot {
    pub(crate) fn update(&self, f: impl FnOnce(&mut AuditEvent)) {
        f(&mut self.0.lock());
    }

    /// The event as it stands, stamped with the current time.
    fn event(&self) -> AuditEvent {
        let mut event = self.0.lock().clone();
        event.time_ms = chrono::Utc::now().timestamp_millis();
        event
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditSlot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Outside the middleware (never in the real router) a detached slot is harmless.
        Ok(parts.extensions.get::<AuditSlot>().cloned().unwrap_or_default())
    }
}

use crate::telemetry::REQUEST_ID;

/// A route whose requests are audited as `action`.
pub(crate) fn audited(state: &AppState, action: &'static str, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.layer(axum::middleware::from_fn_with_state((state.clone(), action), record))
}

/// Middleware: creates the slot, runs the request, records the event.
async fn record(
    State((state, action)): State<(AppState, &'static str)>,
    ClientAddr(client): ClientAddr,
    path: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let slot = AuditSlot::default();
    let request_id = crate::telemetry::request_id(req.headers());
    let user_agent =
        req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(512).collect());
    slot.update(|e| {
        for (name, value) in path.iter().flat_map(|p| p.iter()) {
            let value = Some(value.to_owned());
            match name {
                "share" => e.share = value,
                "schema" => e.schema = value,
                "table" => e.table = value,
                _ => {}
            }
        }
        e.action = action.to_owned();
        e.principal = "anonymous".to_owned();
        e.request_id = Some(request_id.clone());
        e.client_ip = client.map(|ip| ip.to_string());
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
        let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        let body = AuditedBody {
            inner: body,
            slot,
            catalog: state.catalog.clone(),
            length,
            sent: 0,
            pending: None,
            done: false,
            started,
        };
        return Response::from_parts(parts, Body::new(body));
    }
    let event = slot.event();
    crate::telemetry::request_finished(&event, started.elapsed());
    match state.catalog.record(&event).await {
        Ok(()) => response,
        Err(e) => ApiError::internal_from("the audit event could not be written", e).into_response(),
    }
}

/// A streamed body that records its request's event before it ends, or when it is dropped.
struct AuditedBody {
    inner: Body,
    slot: AuditSlot,
    catalog: Arc<dyn Catalog>,
    /// The `Content-Length` of the response, if it has one: the connection stops reading the
    /// body once it has that many bytes, without waiting for its end.
    length: Option<u64>,
    /// Bytes handed to the connection so far.
    sent: u64,
    /// The event being recorded at the end of the body.
    pending: Option<JoinHandle<Result<(), CatalogError>>>,
    done: bool,
    /// When the request arrived (for its duration in the metrics and the access log).
    started: Instant,
}

impl AuditedBody {
    fn spawn_record(&self) -> JoinHandle<Result<(), CatalogError>> {
        let (event, catalog) = (self.slot.event(), self.catalog.clone());
        crate::telemetry::request_finished(&event, self.started.elapsed());
        tokio::spawn(async move { catalog.record(&event).await })
    }
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
                Poll::Ready(None) => this.pending = Some(this.spawn_record()),
                Poll::Ready(Some(Err(e))) => {
                    // The stream failed: the event records a failed request.
                    let sent = this.sent;
                    this.slot.update(|ev| {
                        ev.status = 500;
                        ev.detail.get_or_insert_with(|| format!("the response failed after {sent} bytes"));
                    });
                    let record = this.spawn_record();
                    tokio::spawn(async move {
                        if !matches!(record.await, Ok(Ok(()))) {
                            tracing::error!("the audit event of a failed stream could not be written");
                        }
                    });
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.sent += data.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let Some(pending) = this.pending.as_mut() else { return Poll::Ready(None) };
        match Pin::new(pending).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.done = true;
                this.pending = None;
                match result {
                    Ok(Ok(())) => Poll::Ready(None),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "audit event could not be written; failing the response");
                        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                            "the audit event could not be written",
                        )))))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit task failed; failing the response");
                        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                            "the audit event could not be written",
                        )))))
                    }
                }
            }
        }
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        // Ended, failed, or already being recorded: nothing to add.
        if self.done || self.pending.is_some() {
            return;
        }
        let sent = self.sent;
        // All of a body of known length was sent: complete, though never polled to its end.
        if self.length != Some(sent) {
            self.slot.update(|e| {
                e.status = CLIENT_CLOSED;
                e.detail = Some(format!("the client closed the connection after {sent} bytes of the response"));
            });
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("the audit event of an interrupted response could not be written: no runtime");
            return;
        };
        let (event, catalog) = (self.slot.event(), self.catalog.clone());
        crate::telemetry::request_finished(&event, self.started.elapsed());
        runtime.spawn(async move {
            if let Err(e) = catalog.record(&event).await {
                tracing::error!(error = %e, "the audit event of an interrupted response could not be written");
            }
        });
    }
}
