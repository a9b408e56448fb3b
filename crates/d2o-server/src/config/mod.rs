//! The reference Delta Sharing server's YAML configuration, read unchanged.
//!
//! An existing deployment switches to d2o by swapping the binary: every key of the reference
//! format is read, the ones d2o does not use are accepted with a warning, and d2o's own
//! additions are optional. A bad file is refused with a message naming the file and the key.
//! The share tree is the catalog crate's ([`ShareConfig`]); the settings are the server's.

pub(crate) mod yaml_depth;

use std::path::{Path, PathBuf};

use d2o_catalog::share_config::{ShareConfig, validate_shares};
use d2o_catalog::{CatalogError, RateLimit, StorageLocation, YamlCatalog};
use serde::Deserialize;

pub use yaml_depth::MAX_FLOW_DEPTH;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

/// The reference server's `version` this reader understands.
pub const CONFIG_VERSION: u32 = 1;

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    pub version: Option<u32>,
    #[serde(default)]
    pub shares: Vec<ShareConfig>,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_url_timeout")]
    pub pre_signed_url_timeout_seconds: u64,
    pub authorization: Option<AuthorizationConfig>,
    /// Evaluate the SQL `predicateHints` (reference default: off).
    #[serde(default)]
    pub evaluate_predicate_hints: bool,
    #[serde(default = "yes")]
    pub evaluate_json_predicate_hints: bool,
    #[serde(default = "yes")]
    pub evaluate_json_predicate_hints_v2: bool,
    /// The largest `maxFiles` honoured; larger requests are capped to it.
    #[serde(default = "default_page_size_limit")]
    pub query_table_page_size_limit: u32,
    #[serde(default = "default_page_token_ttl")]
    pub query_table_page_token_ttl_ms: u64,
    #[serde(default = "default_refresh_token_ttl")]
    pub refresh_token_ttl_ms: u64,
    /// Serve a snapshot up to a few seconds old instead of listing the log on every request.
    #[serde(default)]
    pub staleness_acceptable: bool,
    /// How many tables keep their latest snapshot cached.
    #[serde(default = "default_table_cache_size")]
    pub delta_table_cache_size: usize,

    // d2o's own keys, all optional.
    /// Base64 key for signing file URLs. Without it a key is generated at start, and URLs
    /// signed before a restart stop working.
    pub url_signing_key: Option<String>,
    /// The externally visible base URL (`https://sharing.example.com`) used in file URLs;
    /// without it the request's `Host` header is used.
    pub public_url: Option<String>,
    /// Memory budget, in MiB, of the per-version file-list cache.
    #[serde(default = "default_file_list_cache_mib")]
    pub file_list_cache_mib: usize,
    /// Proxies (CIDR ranges or addresses) whose `Forwarded`/`X-Forwarded-For` headers name the
    /// client; without them the socket's peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Origins whose web pages may call the API (CORS); none by default.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    /// The server-wide request rate limit (`{rate: 100/s, burst: 200}`); none by default.
    pub rate_limit: Option<RateLimit>,
    /// Named storage locations: `object_store` options for the tables under a URL prefix.
    #[serde(default)]
    pub storage: Vec<StorageLocation>,
    /// Most threads the kernel's storage I/O may block at once.
    #[serde(default = "default_storage_io_threads")]
    pub storage_io_threads: usize,
    /// Delete audit events older than this many days (catalog mode; default: keep them all).
    pub audit_retention_days: Option<u32>,
    /// Compress JSON and NDJSON answers (gzip or zstd) for clients that accept it (default on).
    #[serde(default = "yes")]
    pub compress_responses: bool,
    /// Most connections open at once (default 4096, lowered to fit the open-file limit).
    pub max_connections: Option<usize>,
    /// Seconds a client may take to send a request's headers.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Seconds a response may wait for the client to read more of it.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_seconds: u64,

    /// TLS in the process: the certificate and key files (re-read when they change).
    pub ssl: Option<SslConfig>,

    // Reference keys d2o reads but does not act on; a warning says so.
    pub temporary_credential_validity_seconds: Option<serde_yaml_ng::Value>,
    pub request_timeout_seconds: Option<serde_yaml_ng::Value>,
}

/// `authorization:` of the reference format.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationConfig {
    pub bearer_token: Option<String>,
}

/// `ssl:` of the reference format. Relative paths are resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SslConfig {
    /// The reference server makes a self-signed certificate at start; d2o refuses this.
    #[serde(default)]
    pub self_signed: bool,
    /// PEM certificates: the server's first, then intermediates.
    pub certificate_file: Option<PathBuf>,
    /// The certificate's private key, unencrypted PEM.
    pub certificate_key_file: Option<PathBuf>,
    /// The password of an encrypted key; d2o reads unencrypted keys only, and warns.
    pub certificate_password_file: Option<PathBuf>,
}

impl SslConfig {
    /// The certificate and key files, when both are given (always, once the file is validated).
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            certificate: self.certificate_file.clone()?,
            key: self.certificate_key_file.clone()?,
        })
    }

    fn validate(&mut self, base_dir: &Path) -> Result<(), String> {
        if self.self_signed {
            return Err("key 'ssl.selfSigned': d2o does not make self-signed certificates; give 'certificateFile' and 'certificateKeyFile' (for a test certificate: `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout key.pem -out cert.pem`)".into());
        }
        for (key, file) in
            [("certificateFile", &mut self.certificate_file), ("certificateKeyFile", &mut self.certificate_key_file)]
        {
            match file {
                None => return Err(format!("key 'ssl.{key}': '{key}' in a SSL config must be provided")),
                Some(path) if path.as_os_str().is_empty() => return Err(format!("key 'ssl.{key}': must not be empty")),
                Some(path) => *path = base_dir.join(&*path),
            }
        }
        Ok(())
    }
}

fn default_host() -> String {
    "localhost".to_owned()
}
fn default_port() -> u16 {
    8080
}
fn default_endpoint() -> String {
    "/delta-sharing".to_owned()
}
fn default_url_timeout() -> u64 {
    3600
}
fn yes() -> bool {
    true
}
fn default_page_size_limit() -> u32 {
    10_000
}
fn default_page_token_ttl() -> u64 {
    259_200_000
}
fn default_refresh_token_ttl() -> u64 {
    3_600_000
}
fn default_table_cache_size() -> usize {
    10
}
fn default_file_list_cache_mib() -> usize {
    // The library's budget (a version of about 150,000 files; larger ones are streamed).
    d2o_delta::DeltaTablesOptions::default().file_list_cache_bytes >> 20
}
fn default_storage_io_threads() -> usize {
    16
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_write_timeout() -> u64 {
    60
}

/// What loading a file produced besides the config: warnings for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub warnings: Vec<String>,
}

impl ServerConfig {
    /// Reads and validates a configuration file. Relative table locations are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<(ServerConfig, LoadReport), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { file: path.to_owned(), message: format!("cannot read the file: {e}") })?;
        Self::parse(&text, &config_dir(path)).map_err(|message| ConfigError { file: path.to_owned(), message })
    }

    /// Parses configuration text; `base_dir` anchors relative table locations.
    pub fn parse(text: &str, base_dir: &Path) -> Result<(ServerConfig, LoadReport), String> {
        yaml_depth::check_flow_depth(text)?;
        let mut report = LoadReport::default();
        let mut unknown = Vec::new();
        let de = serde_yaml_ng::Deserializer::from_str(text);
        // serde_ignored writes an `Option`'s content as `?` (`ssl.?.key`); the file has no such level.
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string().replace(".?", ""));
        let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
        let mut config: ServerConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            if key == "." || key.is_empty() { format!("{inner}") } else { format!("key '{key}': {inner}") }
        })?;
        for key in unknown {
            report.warnings.push(format!("unknown key '{key}' is ignored"));
        }
        if config.ssl.as_ref().is_some_and(|ssl| ssl.certificate_password_file.is_some()) {
            report.warnings.push(
                "key 'ssl.certificatePasswordFile' is not used: d2o reads unencrypted keys only (an encrypted one is refused at start)".into(),
            );
        }
        for (key, set) in [
            ("temporaryCredentialValiditySeconds", config.temporary_credential_validity_seconds.is_some()),
            ("requestTimeoutSeconds", config.request_timeout_seconds.is_some()),
        ] {
            if set {
                report.warnings.push(format!("key '{key}' is accepted but not used by d2o"));
            }
        }
        config.validate(base_dir)?;
        Ok((config, report))
    }

    fn validate(&mut self, base_dir: &Path) -> Result<(), String> {
        match self.version {
            None => return Err("'version' must be provided".into()),
            Some(0) => return Err("key 'version': 'version' must be greater than 0".into()),
            Some(v) if v > CONFIG_VERSION => {
                return Err(format!(
                    "key 'version': the 'version' in the server config is {v} which is too new; d2o reads version {CONFIG_VERSION}"
                ));
            }
            Some(_) => {}
        }
        if !self.endpoint.starts_with('/') {
            self.endpoint = format!("/{}", self.endpoint);
        }
        while self.endpoint.len() > 1 && self.endpoint.ends_with('/') {
            self.endpoint.pop();
        }
        if let Some(auth) = &self.authorization {
            match auth.bearer_token.as_deref() {
                None | Some("") => {
                    return Err(
                        "key 'authorization.bearerToken': 'bearerToken' in 'authorization' must be provided".into()
                    );
                }
                Some(_) => {}
            }
        }
        for (key, value) in [
            ("headerReadTimeoutSeconds", self.header_read_timeout_seconds),
            ("idleTimeoutSeconds", self.idle_timeout_seconds),
            ("writeTimeoutSeconds", self.write_timeout_seconds),
        ] {
            if value == 0 {
                return Err(format!("key '{key}': must be greater than 0"));
            }
        }
        if self.max_connections == Some(0) {
            return Err("key 'maxConnections': must be greater than 0".into());
        }
        if self.audit_retention_days.is_some_and(|d| !(1..=36_500).contains(&d)) {
            return Err("key 'auditRetentionDays': must be between 1 and 36500".into());
        }
        if let Some(ssl) = &mut self.ssl {
            ssl.validate(base_dir)?;
        }
        if self.query_table_page_size_limit == 0 {
            return Err("key 'queryTablePageSizeLimit': must be greater than 0".into());
        }
        let mut names = std::collections::HashSet::new();
        if let Some((i, l)) = self.storage.iter().enumerate().find(|(_, l)| !names.insert(l.name.to_lowercase())) {
            return Err(format!("key 'storage[{i}].name': storage location '{}' appears twice", l.name));
        }
        validate_shares(&self.shares, base_dir)
    }

    /// The read-only catalog over this file's shares and its one bearer token.
    pub fn yaml_catalog(&self, base_dir: &Path) -> Result<YamlCatalog, CatalogError> {
        let token = self.authorization.as_ref().and_then(|a| a.bearer_token.as_deref());
        Ok(YamlCatalog::new(&self.shares, token, base_dir)?.with_storage(self.storage.clone()))
    }
}

/// The absolute directory of a configuration file, whatever form its path takes: a bare
/// `server.yaml` lives in the current directory (its `parent()` is the empty path, which
/// cannot be made absolute).
pub fn config_dir(path: &Path) -> PathBuf {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// What `d2o catalog import` makes the catalog hold for this file (see
/// [`d2o_catalog::share_config::import_spec`]). The file's bearer token goes with it, held by
/// recipient `legacy_recipient`, unless that is `None`.
pub fn import_spec(
    config: &ServerConfig,
    base_dir: &Path,
    legacy_recipient: Option<&str>,
    prune: bool,
) -> Result<d2o_catalog::ImportSpec, String> {
    let legacy = config
        .authorization
        .as_ref()
        .and_then(|a| a.bearer_token.clone())
        .zip(legacy_recipient)
        .map(|(token, recipient)| d2o_catalog::LegacyToken { recipient: recipient.to_owned(), token });
    d2o_catalog::share_config::import_spec(&config.shares, base_dir, legacy, prune)
}

/// The catalog's shares as a reference-format file: `version`, the shares with their table
/// ids, no secrets. Partition filters, which that format has no key for, are listed in a
/// comment.
pub fn export_yaml(shares: &[d2o_catalog::ShareInfo]) -> Result<String, serde_yaml_ng::Error> {
    #[derive(serde::Serialize)]
    struct File {
        version: u32,
        shares: Vec<ShareConfig>,
    }
    let mut out = String::from(
        "# Written by `d2o catalog export`: the catalog's shares in the reference server's format.\n\
         # It holds no secret: add `authorization: {bearerToken: ...}` before serving it.\n",
    );
    for share in shares {
        for t in share.tables.iter().filter(|t| t.partition_filter.is_some()) {
            out += &format!(
                "# not exported: the partition filter of {}.{}.{}: {}\n",
                share.name,
                t.schema,
                t.name,
                t.partition_filter.as_deref().unwrap_or_default().replace('\n', " ")
            );
        }
    }
    let file = File { version: CONFIG_VERSION, shares: d2o_catalog::share_config::export_shares(shares) };
    out += &serde_yaml_ng::to_string(&file)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use d2o_catalog::share_config::resolve_location;
    use url::Url;

    use super::*;

    const REFERENCE: &str = r#"
version: 1
shares:
- name: "share1"
  schemas:
  - name: "schema1"
    tables:
    - name: "table1"
      location: "/data/table1"
      id: "00000000-0000-0000-0000-000000000000"
      historyShared: true
      startVersion: 2
    - name: "table2"
      location: "relative/t2"
      cdfEnabled: true
authorization:
  bearerToken: "secret"
ssl:
  selfSigned: false
  certificateFile: "tls/cert.pem"
  certificateKeyFile: "/etc/tls/key.pem"
  certificatePasswordFile: "/etc/tls/password"
host: "localhost"
port: 8080
endpoint: "/delta-sharing/"
preSignedUrlTimeoutSeconds: 900
temporaryCredentialValiditySeconds: 3600
deltaTableCacheSize: 10
stalenessAcceptable: false
evaluatePredicateHints: false
evaluateJsonPredicateHints: true
evaluateJsonPredicateHintsV2: true
requestTimeoutSeconds: 30
queryTablePageSizeLimit: 10000
queryTablePageTokenTtlMs: 259200000
refreshTokenTtlMs: 3600000
someFutureKey: 1
"#;

    #[test]
    fn reads_the_reference_template() {
        let (config, report) = ServerConfig::parse(REFERENCE, Path::new("/etc/ds")).expect("valid config");
        assert_eq!(config.endpoint, "/delta-sharing");
        assert_eq!(config.pre_signed_url_timeout_seconds, 900);
        let t1 = &config.shares[0].schemas[0].tables[0];
        assert!(t1.history_shared);
        assert_eq!(t1.start_version, 2);
        assert_eq!(config.shares[0].schemas[0].tables[1].cdf_enabled, Some(true));
        assert!(report.warnings.iter().any(|w| w.contains("someFutureKey")), "{:?}", report.warnings);
        assert!(report.warnings.iter().any(|w| w.contains("certificatePasswordFile")), "{:?}", report.warnings);
        let tls = config.ssl.as_ref().and_then(SslConfig::tls_files).expect("TLS files");
        assert_eq!(tls.certificate, Path::new("/etc/ds/tls/cert.pem"), "relative to the file's directory");
        assert_eq!(tls.key, Path::new("/etc/tls/key.pem"));
    }

    #[test]
    fn ssl_needs_both_files_and_no_self_signing() {
        for (ssl, expected) in [
            ("{selfSigned: true}", "key 'ssl.selfSigned': d2o does not make self-signed certificates"),
            ("{}", "key 'ssl.certificateFile': 'certificateFile' in a SSL config must be provided"),
            ("{certificateFile: c.pem}", "key 'ssl.certificateKeyFile'"),
            ("{certificateFile: '', certificateKeyFile: k.pem}", "key 'ssl.certificateFile': must not be empty"),
            ("{certificateFile: [c.pem], certificateKeyFile: k.pem}", "key 'ssl.certificateFile'"),
        ] {
            let err = ServerConfig::parse(&format!("version: 1\nssl: {ssl}"), Path::new("/")).expect_err(ssl);
            assert!(err.contains(expected), "{ssl}: {err}");
        }
        let (config, report) = ServerConfig::parse(
            "version: 1\nssl: {certificateFile: c.pem, certificateKeyFile: k.pem, future: 1}",
            Path::new("/d"),
        )
        .expect("valid");
        assert_eq!(config.ssl.and_then(|s| s.tls_files()).map(|f| f.key), Some(PathBuf::from("/d/k.pem")));
        assert_eq!(report.warnings, ["unknown key 'ssl.future' is ignored"]);
    }

    #[test]
    fn storage_locations_are_read_and_checked() {
        let yaml = "version: 1\nstorage:\n- name: lake\n  url: s3://b/t\n  urlMode: proxy\n  options:\n    allow_http: true\n    secret_access_key: ${AWS_S}\n";
        let (config, _) = ServerConfig::parse(yaml, Path::new("/")).expect("valid");
        assert_eq!(config.storage[0].url.as_str(), "s3://b/t/");
        assert_eq!(config.storage[0].options["allow_http"], "true");
        let catalog = config.yaml_catalog(Path::new("/")).expect("catalog");
        assert_eq!(d2o_catalog::Catalog::storage_locations(&catalog).len(), 1);
        for (yaml, expected) in [
            (
                "version: 1\nstorage:\n- {name: l, url: 's3://b', options: {secret_access_key: hunter2}}",
                "key 'storage[0]'",
            ),
            ("version: 1\nstorage:\n- {name: l, url: 's3://b'}\n- {name: L, url: 'gs://c'}", "appears twice"),
            ("version: 1\nstorage:\n- {name: l, url: 's3://b', mode: x}", "unknown field"),
        ] {
            let err = ServerConfig::parse(yaml, Path::new("/")).expect_err(yaml);
            assert!(err.contains(expected) && !err.contains("hunter2"), "{yaml}: {err}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("shares: []", "'version' must be provided"),
            ("version: 2", "too new"),
            ("version: 1\nport: lots", "key 'port'"),
            ("version: 1\nshares:\n- schemas: []", "key 'shares[0].name'"),
            (
                "version: 1\nshares:\n- name: s\n  schemas:\n  - name: x\n    tables:\n    - name: t",
                "key 'shares[0].schemas[0].tables[0].location'",
            ),
            ("version: 1\nauthorization: {}", "bearerToken"),
            ("version: 1\nshares:\n- name: a/b", "key 'shares[0].name'"),
            ("version: 1\nshares:\n- name: a\n- name: A", "appears twice"),
            (
                "version: 1\nshares:\n- name: s\n  schemas:\n  - name: x\n    tables:\n    - {name: a, location: 'hdfs://node/a'}",
                "key 'shares[0].schemas[0].tables[0].location': 'hdfs://node/a/': tables at hdfs:// locations are not served",
            ),
            (
                "version: 1\nshares:\n- name: s\n  schemas:\n  - name: x\n    tables:\n    - {name: a, location: /a, id: i}\n    - {name: b, location: /b, id: i}",
                "key 'shares[0].schemas[0].tables[1].id'",
            ),
            ("version: [", "line"),
        ];
        for (text, expected) in cases {
            let err = ServerConfig::parse(text, Path::new("/")).expect_err(text);
            assert!(err.contains(expected), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        let cwd = std::env::current_dir().expect("a current directory");
        assert_eq!(config_dir(Path::new("server.yaml")), cwd);
        assert_eq!(config_dir(Path::new("./conf/server.yaml")), cwd.join("conf"));
        assert_eq!(config_dir(Path::new("/etc/ds/server.yaml")), Path::new("/etc/ds"));
        let url = resolve_location("tables/sales", &config_dir(Path::new("server.yaml"))).expect("resolves");
        assert_eq!(url, Url::from_directory_path(cwd.join("tables/sales")).expect("absolute"));
    }
}
