//! The protocol server's settings: the reference YAML's keys, plus d2o's own.

use crate::client_addr::TrustedProxies;
use crate::conn::ConnectionLimits;
use crate::tls::Tls;

/// Settings of the protocol server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The protocol's path prefix, e.g. `/delta-sharing` (no trailing `/`).
    pub endpoint: String,
    /// How long file URLs stay valid.
    pub url_timeout_secs: u64,
    /// Externally visible base URL for file URLs; the `Host` header is used when `None`.
    pub public_url: Option<String>,
    pub evaluate_sql_hints: bool,
    pub evaluate_json_hints: bool,
    /// The largest `maxFiles` honoured.
    pub page_size_limit: u32,
    pub page_token_ttl_ms: u64,
    pub refresh_token_ttl_ms: u64,
    /// The token that guards the admin API; the API is off without it.
    pub admin_token: Option<Secret>,
    /// Proxies whose `Forwarded`/`X-Forwarded-For` headers name the client.
    pub trusted_proxies: TrustedProxies,
    /// Origins whose web pages may call the API (CORS); none by default.
    pub cors_allowed_origins: Vec<String>,
    /// Connection limits and timeouts.
    pub connections: ConnectionLimits,
    /// How long the OAuth access tokens of the token endpoint live.
    pub access_token_ttl_secs: u64,
    /// Whom recipients ask about their access (a name, an e-mail address), shown on the
    /// activation page.
    pub provider_contact: Option<String>,
    /// TLS in the process; `None` serves plain HTTP. With it, URLs the server hands out are
    /// `https://` when `public_url` is not set.
    pub tls: Option<Tls>,
    /// Compress JSON and NDJSON answers (gzip or zstd) for clients that accept it.
    pub compression: bool,
    /// Delete audit events older than this (with a catalog); `None` keeps them all.
    pub audit_retention: Option<std::time::Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoint: "/delta-sharing".to_owned(),
            url_timeout_secs: 3600,
            public_url: None,
            evaluate_sql_hints: false,
            evaluate_json_hints: true,
            page_size_limit: 10_000,
            page_token_ttl_ms: 259_200_000,
            refresh_token_ttl_ms: 3_600_000,
            admin_token: None,
            trusted_proxies: TrustedProxies::default(),
            cors_allowed_origins: Vec::new(),
            connections: ConnectionLimits::default(),
            access_token_ttl_secs: 3600,
            provider_contact: None,
            tls: None,
            compression: true,
            audit_retention: None,
        }
    }
}

/// A secret setting: compared and used, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
