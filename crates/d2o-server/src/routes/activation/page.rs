//! The activation page: server-rendered HTML with no external assets, no script, and a strict
//! Content-Security-Policy. Every value from the catalog is escaped.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f6f8;color:#1d2733;margin:0}\
main{max-width:40rem;margin:3rem auto;background:#fff;border-radius:10px;padding:2rem 2.5rem;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1.2rem}\
dt{color:#5a6877}dd{margin:0;word-break:break-all}button{font-size:1rem;padding:.7rem 1.4rem;border:0;border-radius:6px;\
background:#0b63ce;color:#fff;cursor:pointer}button:hover{background:#094fa4}.note{color:#5a6877;font-size:.9rem}\
.status{font-weight:600}@media(max-width:600px){main{margin:0;border-radius:0;padding:1.2rem}dl{grid-template-columns:1fr}}";

/// The page's Content-Security-Policy: nothing but its own inline style, and forms posting
/// back to this server.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// `text` with the characters that mean something in HTML escaped.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time (ms since the epoch) as people read it.
pub(super) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// A page: `title` and `body` (already escaped HTML) with `status`.
pub(super) fn render(status: StatusCode, title: &str, body: &str) -> Response {
    let mut html = String::with_capacity(2048 + body.len());
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{STYLE}</style></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        escape(title)
    );
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    no_store(h);
    if let Ok(v) = HeaderValue::from_str(&POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Headers for answers that hold or reveal a secret: not cached, and the URL (which is the
/// secret) not sent on as a referrer.
pub(super) fn no_store(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_render_as_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        let policy = POLICY.as_str();
        assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
    }
}
