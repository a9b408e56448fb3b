//! The HTTP routes.

pub(crate) mod activation;
pub(crate) mod discovery;
pub(crate) mod params;
pub(crate) mod table;

use axum::http::{HeaderMap, header};

use crate::{ApiError, AppState};

/// The sharing endpoint's public URL (file URLs, `config.share`, the token endpoint): the
/// server's [`public_origin`] followed by the endpoint's path.
pub(crate) fn public_endpoint(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(format!("{}{}", public_origin(state, headers)?, state.settings.endpoint.trim_end_matches('/')))
}

/// The server's public root (`scheme://host[:port]`, plus any path of the public URL): the
/// configured public URL, or the request's host. Without a public URL the scheme is `https`
/// when the server terminates TLS itself, else what a proxy forwarded in `X-Forwarded-Proto`.
pub(crate) fn public_origin(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(match &state.settings.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            if !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c)) {
                return Err(ApiError::InvalidParameter("the Host header is not a valid host".into()));
            }
            let forwarded = || {
                headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .filter(|p| *p == "https" || *p == "http")
                    .unwrap_or("http")
            };
            let proto = if state.settings.tls.is_some() { "https" } else { forwarded() };
            format!("{proto}://{host}")
        }
    })
}
