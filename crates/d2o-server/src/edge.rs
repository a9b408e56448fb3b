//! What every request and response goes through at the edge, in one middleware: the client's
//! address is decided ([`crate::client_addr`]), cross-origin requests are answered (closed
//! unless configured), and every answer, whatever produced it, gets the headers that keep
//! browsers and caches from doing anything unexpected with it. Plus the request's log span,
//! with URL signatures redacted, and the compression of JSON and NDJSON answers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::client_addr::{ClientAddr, TrustedProxies};
use crate::{ApiError, AppState, Settings};

/// Wraps `app` in the layers of this module.
pub(crate) fn layers(app: Router<AppState>, settings: &Settings) -> Router<AppState> {
    let app =
        if settings.cors_allowed_origins.is_empty() { app } else { app.layer(cors(&settings.cors_allowed_origins)) };
    let edge = Arc::new(Edge {
        proxies: settings.trusted_proxies.clone(),
        cors_closed: settings.cors_allowed_origins.is_empty(),
    });
    let app = if settings.compression { app.layer(compression()) } else { app };
    app.layer(from_fn_with_state(edge, edge_middleware)).layer(TraceLayer::new_for_http().make_span_with(
        |req: &Request<Body>| tracing::debug_span!("request", method = %req.method(), uri = %redacted(req.uri())),
    ))
}

struct Edge {
    proxies: TrustedProxies,
    /// No origins configured: preflights are answered here.
    cors_closed: bool,
}

async fn edge_middleware(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let client = peer.map(|peer| edge.proxies.client_of(peer, req.headers()));
    req.extensions_mut().insert(ClientAddr(client));
    let mut response =
        if edge.cors_closed && req.method() == Method::OPTIONS { preflight(&req) } else { next.run(req).await };
    secure(&mut response);
    response
}

/// `no-store`: answers carry signed URLs, credentials or data that no cache should keep.
/// `nosniff` and a policy that allows nothing: no answer is a page a browser should run.
fn secure(response: &mut Response) {
    let h = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
}

/// Without configured origins: a preflight from a web page is refused with a clear message; a
/// plain `OPTIONS` says which methods exist.
fn preflight(req: &Request) -> Response {
    if req.headers().contains_key(header::ORIGIN) {
        return ApiError::Forbidden(
            "cross-origin requests are not enabled on this server (the provider can allow origins with corsAllowedOrigins)"
                .to_owned(),
        )
        .into_response();
    }
    (StatusCode::NO_CONTENT, [(header::ALLOW, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")]).into_response()
}

/// CORS for the configured origins: the protocol's methods and headers, nothing more.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o.trim()).ok()).collect();
    let name = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, name("delta-sharing-capabilities")])
        .expose_headers([name("delta-table-version"), name("delta-sharing-capabilities")])
        .max_age(std::time::Duration::from_secs(600))
}

/// gzip or zstd, as the client's `Accept-Encoding` prefers, for JSON and NDJSON answers of
/// more than 1 KiB: the protocol's listings and the file lists of `/query` and `/changes`
/// (a 100,000-file list is 74 MB of NDJSON, and compresses about 4x). At the fastest levels,
/// which keep the server's CPU close to the cost of writing the lines. The body streams: each
/// chunk is compressed as it comes. Data files (`/files`, byte ranges) are never compressed.
fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .no_br()
        .no_deflate()
        .quality(CompressionLevel::Fastest)
        .compress_when(SizeAbove::new(1024).and(JsonLines))
}

/// Whether an answer is JSON or NDJSON (and not a range of a file).
#[derive(Clone, Copy)]
struct JsonLines;

impl Predicate for JsonLines {
    fn should_compress<B: http_body::Body>(&self, response: &axum::http::Response<B>) -> bool {
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        (essence == "application/json" || essence == "application/x-ndjson")
            && !response.headers().contains_key(header::CONTENT_RANGE)
    }
}

/// A URI for logs: the value of a `sig` parameter (a URL signature, which would make a logged
/// URL usable) is replaced, and so is the secret of an activation link (`.../activate/{secret}`).
pub(crate) fn redacted(uri: &Uri) -> String {
    let path = match uri.path().split_once("/activate/") {
        Some((before, _)) => format!("{before}/activate/REDACTED"),
        None => uri.path().to_owned(),
    };
    let Some(query) = uri.query() else { return path };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("sig") => format!("{k}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_redacted() {
        let uri: Uri = "/delta-sharing/files/g/a.parquet?sp=r&se=123&sig=c2VjcmV0".parse().expect("uri");
        assert_eq!(redacted(&uri), "/delta-sharing/files/g/a.parquet?sp=r&se=123&sig=REDACTED");
        let uri: Uri = "/shares?maxResults=1".parse().expect("uri");
        assert_eq!(redacted(&uri), "/shares?maxResults=1");
        let uri: Uri = "/delta-sharing/activate/c2VjcmV0c2VjcmV0?x=1".parse().expect("uri");
        assert_eq!(redacted(&uri), "/delta-sharing/activate/REDACTED?x=1");
    }
}
