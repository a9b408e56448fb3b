//! HTTP for identity providers: discovery documents and JWKS.
//!
//! The addresses come from federation policies (the issuer) and from the issuer's discovery
//! document (its `jwks_uri`), never from a token. Even so every request is guarded: `https`
//! only (plain `http` on a loopback address, for tests and local providers), no redirects, no
//! proxy from the environment, short timeouts, and bodies cut off at a size limit.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// An HTTP client for identity providers, and the limits it applies.
#[derive(Debug, Clone)]
pub(super) struct Fetcher {
    http: reqwest::Client,
    max_body_bytes: usize,
}

/// The part of an OpenID Connect discovery document d2o reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl Fetcher {
    pub(super) fn new(connect_timeout: Duration, timeout: Duration, max_body_bytes: usize) -> reqwest::Result<Fetcher> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("d2o/", env!("CARGO_PKG_VERSION"), " (OIDC federation)"))
            .build()?;
        Ok(Fetcher { http, max_body_bytes })
    }

    /// The `jwks_uri` of `issuer`, from `{issuer}/.well-known/openid-configuration` (OpenID
    /// Connect Discovery 1.0, section 4), after checking that the document names `issuer`
    /// itself (section 4.3) and that its `jwks_uri` may be fetched.
    pub(super) async fn discover(&self, issuer: &str) -> Result<Url, String> {
        let address = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let url = Url::parse(&address).map_err(|e| format!("issuer '{issuer}' is not a URL: {e}"))?;
        let document: Discovery = serde_json::from_value(self.get_json(&url).await?)
            .map_err(|e| format!("the discovery document at {url} is not valid: {e}"))?;
        if document.issuer != issuer {
            return Err(format!(
                "the discovery document at {url} is for issuer '{}', not '{issuer}'",
                printable(&document.issuer)
            ));
        }
        let jwks_uri = Url::parse(&document.jwks_uri)
            .map_err(|e| format!("the jwks_uri of the discovery document at {url} is not a URL: {e}"))?;
        // An https provider must not send d2o to a plain-http address (on loopback, that is the
        // server's own machine).
        if jwks_uri.scheme() == "http" && url.scheme() != "http" {
            return Err(format!("the jwks_uri {jwks_uri} of an https issuer must be https"));
        }
        Ok(jwks_uri)
    }

    /// The JSON Web Key Set at `uri`.
    pub(super) async fn jwks(&self, uri: &Url) -> Result<Value, String> {
        self.get_json(uri).await
    }

    async fn get_json(&self, url: &Url) -> Result<Value, String> {
        if !fetchable(url) {
            return Err(format!("{url} must be an https URL (http only on a loopback address)"));
        }
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url} failed: {}", reqwest_cause(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        let too_large = || format!("GET {url} answered more than {} bytes", self.max_body_bytes);
        if response.content_length().is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| format!("GET {url} failed: {}", reqwest_cause(&e)))?
        {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url} answered invalid JSON: {e}"))
    }
}

/// Whether d2o may fetch `url`: `https`, or plain `http` on a loopback address, and no user
/// info. Federation policies are checked the same way when written; this checks again, and
/// checks the `jwks_uri` that a discovery document names.
pub(super) fn fetchable(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    scheme_ok && url.host().is_some() && url.username().is_empty() && url.password().is_none()
}

/// The innermost cause of a reqwest error: "connection refused" rather than "error sending
/// request".
fn reqwest_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_timeout() { "timed out".to_owned() } else { cause.to_string() }
}

/// A value from the provider, shortened for an error message.
fn printable(value: &str) -> String {
    value.chars().take(200).filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        for ok in ["https://idp.example/keys", "http://127.0.0.1:8080/x", "http://[::1]/x", "http://localhost:1/x"] {
            assert!(fetchable(&Url::parse(ok).unwrap()), "{ok}");
        }
        for bad in ["http://idp.example/keys", "http://10.0.0.1/", "file:///etc/passwd", "https://u:p@idp.example/"] {
            assert!(!fetchable(&Url::parse(bad).unwrap()), "{bad}");
        }
    }
}
