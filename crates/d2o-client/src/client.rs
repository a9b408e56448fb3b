//! [`Client`]: the REST calls of the protocol, with authentication, retries and clear errors.

use std::sync::Arc;
use std::time::Duration;

use d2o_protocol::ErrorBody;
use d2o_protocol::capabilities::{self, Capabilities, ResponseFormat};
use d2o_protocol::model::{GetShareResponse, Page, Schema, Share, Table};
use d2o_protocol::profile::Profile;
use d2o_protocol::request::{ChangesRequest, QueryRequest};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{ClientError, Result};
use crate::files::{TableFiles, TableMetadata, parse_response};
use crate::profile::{Authenticator, TableName};

/// What this client can read, sent on `/metadata`, `/query` and `/changes`.
fn capabilities_header(only: Option<ResponseFormat>) -> String {
    let formats = match only {
        None => "delta,parquet",
        Some(f) => f.as_str(),
    };
    format!(
        "responseformat={formats};readerfeatures=deletionvectors,columnmapping,timestampntz;includeendstreamaction=true"
    )
}

/// Path-segment encoding: everything but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A Delta Sharing client for one profile. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Client").field("endpoint", &self.inner.profile.endpoint).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) profile: Profile,
    pub(crate) auth: Authenticator,
    pub(crate) max_retries: u32,
    pub(crate) retry_base: Duration,
    pub(crate) concurrency: usize,
    pub(crate) capabilities: String,
}

/// Options of a [`Client`]: `Client::builder(profile).max_retries(3).concurrency(8).build()`.
pub struct ClientBuilder {
    profile: Profile,
    max_retries: u32,
    retry_base: Duration,
    concurrency: usize,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    format: Option<ResponseFormat>,
}

impl ClientBuilder {
    /// Ask for one response format only (by default the client asks for `delta,parquet` and
    /// reads whichever the server chooses).
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// Retries of a request on 429, 5xx and connection errors (default 5, with exponential
    /// backoff from 100 ms).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The first backoff delay; each retry doubles it.
    pub fn retry_backoff(mut self, first: Duration) -> Self {
        self.retry_base = first;
        self
    }

    /// How many data files are downloaded and decoded at once (default 4: enough to keep a
    /// file writer busy on a small machine; raise it for distant servers).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// A limit on each whole request, body included (default none: large files take time).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn build(self) -> Result<Client> {
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("d2o-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(t) = self.timeout {
            http = http.timeout(t);
        }
        let http = http.build().map_err(|e| ClientError::invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                auth: Authenticator::new(&self.profile),
                http,
                profile: self.profile,
                max_retries: self.max_retries,
                retry_base: self.retry_base,
                concurrency: self.concurrency,
                capabilities: capabilities_header(self.format),
            }),
        })
    }
}

/// Which resource a request is about, for error messages.
#[derive(Debug, Clone)]
pub(crate) enum Resource<'a> {
    Shares,
    Share(&'a str),
    Schema(&'a str, &'a str),
    Table(&'a TableName),
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Shares => write!(f, "shares"),
            Resource::Share(s) => write!(f, "share '{s}'"),
            Resource::Schema(s, sc) => write!(f, "schema '{s}.{sc}'"),
            Resource::Table(t) => write!(f, "table '{t}'"),
        }
    }
}

impl Client {
    /// A client with default options.
    pub fn new(profile: Profile) -> Result<Client> {
        Client::builder(profile).build()
    }

    pub fn builder(profile: Profile) -> ClientBuilder {
        ClientBuilder {
            profile,
            max_retries: 5,
            retry_base: Duration::from_millis(100),
            concurrency: 4,
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            format: None,
        }
    }

    /// A client for the profile at a path (or given as JSON text).
    pub fn from_profile(path_or_json: &str) -> Result<Client> {
        Client::new(crate::profile::load_profile(path_or_json)?)
    }

    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }

    // ---------------------------------------------------------------- discovery

    /// Every share, following pages.
    pub async fn list_shares(&self) -> Result<Vec<Share>> {
        self.paged("/shares".into(), &Resource::Shares).await
    }

    pub async fn get_share(&self, share: &str) -> Result<Share> {
        let url = self.url(&format!("/shares/{}", seg(share)));
        let r = self.send(Method::GET, &url, None, None, &Resource::Share(share)).await?;
        Ok(json::<GetShareResponse>(r, &url).await?.share)
    }

    pub async fn list_schemas(&self, share: &str) -> Result<Vec<Schema>> {
        self.paged(format!("/shares/{}/schemas", seg(share)), &Resource::Share(share)).await
    }

    pub async fn list_tables(&self, share: &str, schema: &str) -> Result<Vec<Table>> {
        self.paged(format!("/shares/{}/schemas/{}/tables", seg(share), seg(schema)), &Resource::Schema(share, schema))
            .await
    }

    /// Every table of a share; falls back to schemas and tables when `/all-tables` is missing.
    pub async fn list_all_tables(&self, share: &str) -> Result<Vec<Table>> {
        match self.paged(format!("/shares/{}/all-tables", seg(share)), &Resource::Share(share)).await {
            Err(ClientError::NotFound { .. }) => {
                let mut out = Vec::new();
                for schema in self.list_schemas(share).await? {
                    out.extend(self.list_tables(share, &schema.name).await?);
                }
                Ok(out)
            }
            other => other,
        }
    }

    /// Every table of every share.
    pub async fn list_every_table(&self) -> Result<Vec<Table>> {
        let mut out = Vec::new();
        for share in self.list_shares().await? {
            out.extend(self.list_all_tables(&share.name).await?);
        }
        Ok(out)
    }

    async fn paged<T: DeserializeOwned>(&self, path: String, what: &Resource<'_>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(&path);
            if let Some(t) = &token {
                url = format!("{url}?pageToken={}", utf8_percent_encode(t, SEGMENT));
            }
            let r = self.send(Method::GET, &url, None, None, what).await?;
            let page: Page<T> = json(r, &url).await?;
            out.extend(page.items);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => return Ok(out),
            }
        }
    }

    // ---------------------------------------------------------------- table calls

    /// The latest version, or the first version committed at or after `starting_timestamp`.
    pub async fn table_version(&self, table: &TableName, starting_timestamp: Option<&str>) -> Result<i64> {
        let mut url = self.table_url(table, "/version");
        if let Some(ts) = starting_timestamp {
            url = format!("{url}?startingTimestamp={}", utf8_percent_encode(ts, SEGMENT));
        }
        let r = self.send(Method::GET, &url, None, None, &Resource::Table(table)).await?;
        table_version_header(&r, &url)
    }

    /// The metadata (schema, partition columns, ...) at the latest or a given version.
    pub async fn metadata(&self, table: &TableName, version: Option<i64>) -> Result<TableMetadata> {
        let mut url = self.table_url(table, "/metadata");
        if let Some(v) = version {
            url = format!("{url}?version={v}");
        }
        let r = self.send(Method::GET, &url, None, Some(&self.inner.capabilities), &Resource::Table(table)).await?;
        Ok(self.read_ndjson(r, &url).await?.metadata)
    }

    /// `POST .../query`, following pages; the raw file list of a snapshot.
    pub(crate) async fn query(&self, table: &TableName, body: &QueryRequest) -> Result<TableFiles> {
        let url = self.table_url(table, "/query");
        let mut body = body.clone();
        let mut all: Option<TableFiles> = None;
        loop {
            let text = serde_json::to_string(&body).map_err(|e| ClientError::protocol(e.to_string()))?;
            let r = self
                .send(Method::POST, &url, Some(text), Some(&self.inner.capabilities), &Resource::Table(table))
                .await?;
            let page = self.read_ndjson(r, &url).await?;
            let next = page.next_page_token.clone();
            all = Some(match all {
                None => page,
                Some(mut acc) => {
                    acc.files.extend(page.files);
                    acc.refresh_token = page.refresh_token.or(acc.refresh_token);
                    acc
                }
            });
            match next {
                Some(t) if body.page_token.as_ref() != Some(&t) => body.page_token = Some(t),
                _ => break,
            }
        }
        all.ok_or_else(|| ClientError::protocol("empty query response"))
    }

    /// `GET .../changes`: the files of a change data feed.
    pub(crate) async fn changes(&self, table: &TableName, range: &ChangesRequest) -> Result<TableFiles> {
        let params: Vec<String> = range
            .to_query_pairs()
            .iter()
            .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, SEGMENT)))
            .collect();
        let base = format!("{}?{}", self.table_url(table, "/changes"), params.join("&"));
        let mut url = base.clone();
        let mut all: Option<TableFiles> = None;
        loop {
            let r = self.send(Method::GET, &url, None, Some(&self.inner.capabilities), &Resource::Table(table)).await?;
            let page = self.read_ndjson(r, &url).await?;
            let next = page.next_page_token.clone();
            all = Some(match all {
                None => page,
                Some(mut acc) => {
                    acc.files.extend(page.files);
                    acc
                }
            });
            match next {
                Some(t) => url = format!("{base}&pageToken={}", utf8_percent_encode(&t, SEGMENT)),
                None => break,
            }
        }
        all.ok_or_else(|| ClientError::protocol("empty changes response"))
    }

    async fn read_ndjson(&self, r: reqwest::Response, url: &str) -> Result<TableFiles> {
        let version = table_version_header(&r, url)?;
        let caps = Capabilities::parse(r.headers().get(capabilities::HEADER).and_then(|v| v.to_str().ok()));
        let format = if caps.response_formats.contains(&ResponseFormat::Delta) {
            ResponseFormat::Delta
        } else {
            ResponseFormat::Parquet
        };
        let body = r.text().await.map_err(|e| ClientError::Connection {
            url: url.to_owned(),
            message: format!("the connection broke while reading the response: {e}"),
        })?;
        parse_response(&body, format, version, caps.include_end_stream_action)
    }

    // ---------------------------------------------------------------- plumbing

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.profile.endpoint, path)
    }

    fn table_url(&self, t: &TableName, suffix: &str) -> String {
        self.url(&format!("/shares/{}/schemas/{}/tables/{}{suffix}", seg(&t.share), seg(&t.schema), seg(&t.table)))
    }

    /// Sends a protocol request, retrying 429, 5xx and connection errors with backoff, and
    /// turning any other failure into a [`ClientError`] that names the resource.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        capabilities: Option<&str>,
        what: &Resource<'_>,
    ) -> Result<reqwest::Response> {
        let inner = &self.inner;
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            let mut req = inner
                .http
                .request(method.clone(), url)
                .header(reqwest::header::AUTHORIZATION, inner.auth.header(&inner.http).await?);
            if let Some(c) = capabilities {
                req = req.header(capabilities::HEADER, c);
            }
            if let Some(b) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8").body(b.clone());
            }
            let outcome = req.send().await;
            let retryable = match &outcome {
                Ok(r) => r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error(),
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
            };
            if retryable && attempt < inner.max_retries {
                let delay = inner.retry_base * 2u32.saturating_pow(attempt);
                tracing::debug!(url, attempt, ?delay, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            let response = match outcome {
                Ok(r) => r,
                Err(e) => {
                    return Err(ClientError::Connection {
                        url: url.to_owned(),
                        message: format!("{} (after {} attempts)", error_chain(&e), attempt + 1),
                    });
                }
            };
            if response.status() == StatusCode::UNAUTHORIZED && !reauthenticated {
                // An OAuth token may have been revoked early: fetch a new one once.
                inner.auth.invalidate().await;
                reauthenticated = true;
                if matches!(
                    inner.profile.credentials,
                    d2o_protocol::profile::Credentials::OAuthClientCredentials { .. }
                        | d2o_protocol::profile::Credentials::OAuthPrivateKey { .. }
                ) {
                    continue;
                }
            }
            if response.status().is_success() {
                return Ok(response);
            }
            return Err(self.error_from(response, url, what).await);
        }
    }

    async fn error_from(&self, response: reqwest::Response, url: &str, what: &Resource<'_>) -> ClientError {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let message = match &body {
            Some(b) if !b.message.is_empty() => b.message.clone(),
            _ if text.trim().is_empty() => status.canonical_reason().unwrap_or("no message").to_owned(),
            _ => text.chars().take(500).collect(),
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                if let Some(expiration_time) = self.inner.auth.expired_token() {
                    return ClientError::TokenExpired { expiration_time };
                }
                ClientError::Unauthenticated {
                    endpoint: self.inner.profile.endpoint.clone(),
                    status: status.as_u16(),
                    message,
                }
            }
            StatusCode::NOT_FOUND => ClientError::NotFound { resource: what.to_string(), message },
            _ => ClientError::Http {
                status: status.as_u16(),
                error_code: body.map(|b| b.error_code).filter(|c| !c.is_empty()),
                message,
                url: url.to_owned(),
            },
        }
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn table_version_header(r: &reqwest::Response, url: &str) -> Result<i64> {
    r.headers()
        .get("delta-table-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ClientError::protocol(format!("no Delta-Table-Version header in the answer from {url}")))
}

async fn json<T: DeserializeOwned>(r: reqwest::Response, url: &str) -> Result<T> {
    let text = r.text().await.map_err(|e| ClientError::Connection { url: url.to_owned(), message: e.to_string() })?;
    let first = text.lines().next().unwrap_or_default();
    serde_json::from_str(first).map_err(|e| ClientError::protocol(format!("invalid JSON from {url}: {e}")))
}

/// An error with its sources, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s = format!("{s}: {m}");
        }
        cur = c.source();
    }
    s
}
