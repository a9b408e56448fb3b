//! The reference Delta Sharing server's YAML configuration, read unchanged.
//!
//! An existing deployment switches to d2o by swapping the binary: every key of the reference
//! format is read, the ones d2o does not use are accepted with a warning, and d2o's own
//! additions are optional. A bad file is refused with a message naming the file and the key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

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
    /// Most threads the kernel's storage I/O may block at once.
    #[serde(default = "default_storage_io_threads")]
    pub storage_io_threads: usize,
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

    // Reference keys d2o reads but does not act on; a warning says so.
    pub ssl: Option<serde_yaml_ng::Value>,
    pub temporary_credential_validity_seconds: Option<serde_yaml_ng::Value>,
    pub request_timeout_seconds: Option<serde_yaml_ng::Value>,
}

/// `authorization:` of the reference format.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationConfig {
    pub bearer_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShareConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub schemas: Vec<SchemaConfig>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchemaConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableConfig {
    pub name: Option<String>,
    pub location: Option<String>,
    pub id: Option<String>,
    #[serde(default)]
    pub history_shared: bool,
    #[serde(default)]
    pub start_version: u64,
    pub cdf_enabled: Option<bool>,
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
    256
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
        check_flow_depth(text)?;
        let mut report = LoadReport::default();
        let mut unknown = Vec::new();
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
        let mut config: ServerConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            if key == "." || key.is_empty() { format!("{inner}") } else { format!("key '{key}': {inner}") }
        })?;
        for key in unknown {
            report.warnings.push(format!("unknown key '{key}' is ignored"));
        }
        for (key, set) in [
            ("ssl", config.ssl.is_some()),
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
        if self.query_table_page_size_limit == 0 {
            return Err("key 'queryTablePageSizeLimit': must be greater than 0".into());
        }
        // Hash sets, not lists: a file of many thousand shares is checked in linear time.
        let mut share_names = HashSet::new();
        let mut table_ids = HashSet::new();
        for (si, share) in self.shares.iter().enumerate() {
            let share_name = check_name(share.name.as_deref(), &format!("shares[{si}]"), "share")?;
            if !share_names.insert(share_name.to_lowercase()) {
                return Err(format!("key 'shares[{si}].name': share '{share_name}' appears twice"));
            }
            let mut schema_names = HashSet::new();
            for (ci, schema) in share.schemas.iter().enumerate() {
                let at = format!("shares[{si}].schemas[{ci}]");
                let schema_name = check_name(schema.name.as_deref(), &at, "schema")?;
                if !schema_names.insert(schema_name.to_lowercase()) {
                    return Err(format!(
                        "key '{at}.name': schema '{schema_name}' appears twice in share '{share_name}'"
                    ));
                }
                let mut table_names = HashSet::new();
                for (ti, table) in schema.tables.iter().enumerate() {
                    let at = format!("{at}.tables[{ti}]");
                    let table_name = check_name(table.name.as_deref(), &at, "table")?;
                    if !table_names.insert(table_name.to_lowercase()) {
                        return Err(format!(
                            "key '{at}.name': table '{table_name}' appears twice in schema '{schema_name}'"
                        ));
                    }
                    // File URLs and page tokens name a table by its id: two entries with one id
                    // would be one table to them.
                    if let Some(id) = &table.id
                        && !table_ids.insert(id.clone())
                    {
                        return Err(format!("key '{at}.id': table id '{id}' appears twice"));
                    }
                    match table.location.as_deref() {
                        None | Some("") => {
                            return Err(format!("key '{at}.location': 'location' in a table must be provided"));
                        }
                        Some(loc) => {
                            resolve_location(loc, base_dir)
                                .and_then(|url| check_servable(&url))
                                .map_err(|e| format!("key '{at}.location': {e}"))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The deepest nesting of YAML flow collections (`[...]`, `{...}`) a configuration may use.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses text whose flow collections may nest deeper than [`MAX_FLOW_DEPTH`], before the YAML
/// parser reads it.
///
/// libyaml's scanner does work proportional to the current flow depth for every token, so
/// `[[[[...` takes quadratic time (10,000 levels took over a second in a debug build; 1 MB would
/// take hours), all of it before serde_yaml_ng's own depth limit applies. Bounding the depth
/// makes parsing linear.
fn check_flow_depth(text: &str) -> Result<(), String> {
    match flow_depth_bound(text, MAX_FLOW_DEPTH) {
        Some(line) => {
            Err(format!("line {line}: flow collections ([...] or {{...}}) are nested more than {MAX_FLOW_DEPTH} deep"))
        }
        None => Ok(()),
    }
}

/// The line at which flow collections may first nest deeper than `limit`, or `None`.
///
/// The bound must hold however quotes, comments or tags hide brackets, so this follows every
/// reading libyaml could have of the text at once, keeping the deepest nesting of the readings
/// in each lexical state (one pass, ten states: linear time). Outside flow collections every
/// `[` or `{` is taken as a possible start of one, since telling a plain scalar's continuation
/// line or a block scalar from new tokens takes the indentation rules: so a file with more
/// than `limit` unclosed brackets in its comments or quoted strings is refused too. Inside flow
/// collections, quoted and plain scalars, comments, anchors and tags are read as libyaml's
/// scanner reads them (no indentation matters there), with both readings kept where it would
/// skip a byte-order mark.
pub(crate) fn flow_depth_bound(text: &str, limit: usize) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum Lex {
        Start,
        Plain,
        Single,
        SingleSkip,
        Double,
        DoubleSkip,
        Comment,
        Anchor,
        Tag,
        Verbatim,
    }
    #[rustfmt::skip]
    const STATES: [Lex; 10] = [
        Lex::Start, Lex::Plain, Lex::Single, Lex::SingleSkip, Lex::Double, Lex::DoubleSkip, Lex::Comment, Lex::Anchor,
        Lex::Tag, Lex::Verbatim,
    ];
    type Moves = [Option<(Lex, i8)>; 2];
    let is_break = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let is_blank = |c: char| c == ' ' || c == '\t' || is_break(c);
    let is_blankz = |c: Option<char>| c.is_none_or(|c| is_blank(c) || c == '\0');
    let one = |lex: Lex, delta: i8| -> Moves { [Some((lex, delta)), None] };
    // Between tokens inside a flow collection (libyaml's `fetch_next_token`).
    let start = |c: char, next: Option<char>| -> Moves {
        match c {
            '#' => one(Lex::Comment, 0),
            '\'' => one(Lex::Single, 0),
            '"' => one(Lex::Double, 0),
            '[' | '{' => one(Lex::Start, 1),
            ']' | '}' => one(Lex::Start, -1),
            '!' if next == Some('<') => one(Lex::Verbatim, 0),
            '!' => one(Lex::Tag, 0),
            '&' | '*' => one(Lex::Anchor, 0),
            '-' if !is_blankz(next) => one(Lex::Plain, 0),
            '\u{feff}' => [Some((Lex::Start, 0)), Some((Lex::Plain, 0))],
            c if is_blank(c) || matches!(c, ',' | '-' | '?' | ':') => one(Lex::Start, 0),
            _ => one(Lex::Plain, 0),
        }
    };
    // reach[i]: the deepest nesting among the readings in state STATES[i]; 0 when there is none.
    let mut reach = [0usize; STATES.len()];
    let (mut line, mut after_blank) = (1, true);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let mut moved = [0usize; STATES.len()];
        let mut apply = |moves: Moves, depth: usize| {
            for (lex, delta) in moves.into_iter().flatten() {
                // A reading whose depth falls to 0 is back in block context, which is always
                // followed anyway.
                let depth = depth.saturating_add_signed(delta.into());
                let slot = &mut moved[lex as usize];
                *slot = (*slot).max(depth);
            }
        };
        if c == '[' || c == '{' {
            apply(one(Lex::Start, 1), 0);
        }
        for (lex, &depth) in STATES.iter().zip(&reach) {
            if depth == 0 {
                continue;
            }
            let moves = match lex {
                Lex::Start => start(c, next),
                Lex::Plain => match c {
                    ',' | '[' | ']' | '{' | '}' => start(c, next),
                    ':' if is_blankz(next) || next.is_some_and(|n| ",?[]{}".contains(n)) => one(Lex::Start, 0),
                    '#' if after_blank => one(Lex::Comment, 0),
                    _ => one(Lex::Plain, 0),
                },
                Lex::Single => match c {
                    '\'' if next == Some('\'') => one(Lex::SingleSkip, 0),
                    '\'' => one(Lex::Start, 0),
                    _ => one(Lex::Single, 0),
                },
                Lex::SingleSkip => one(Lex::Single, 0),
                Lex::Double => match c {
                    '\\' => one(Lex::DoubleSkip, 0),
                    '"' => one(Lex::Start, 0),
                    _ => one(Lex::Double, 0),
                },
                Lex::DoubleSkip => one(Lex::Double, 0),
                Lex::Comment if is_break(c) => one(Lex::Start, 0),
                Lex::Comment => one(Lex::Comment, 0),
                Lex::Anchor if c.is_ascii_alphanumeric() || c == '_' || c == '-' => one(Lex::Anchor, 0),
                Lex::Anchor => start(c, next),
                Lex::Tag if is_blank(c) || matches!(c, ',' | '[' | ']' | '{' | '}') => start(c, next),
                Lex::Tag => one(Lex::Tag, 0),
                Lex::Verbatim if c == '>' => one(Lex::Start, 0),
                Lex::Verbatim => one(Lex::Verbatim, 0),
            };
            apply(moves, depth);
        }
        if moved.iter().any(|&d| d > limit) {
            return Some(line);
        }
        reach = moved;
        after_blank = is_blank(c);
        line += usize::from(c == '\n');
    }
    None
}

/// The absolute directory of a configuration file, whatever form its path takes: a bare
/// `server.yaml` lives in the current directory (its `parent()` is the empty path, which
/// cannot be made absolute).
pub fn config_dir(path: &Path) -> PathBuf {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn check_name<'a>(name: Option<&'a str>, at: &str, kind: &str) -> Result<&'a str, String> {
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("key '{at}.name': 'name' in a {kind} must be provided"))?;
    validate_name(name).map_err(|e| format!("key '{at}.name': {e}"))?;
    Ok(name)
}

/// The protocol's rules for share, schema and table names: not empty, at most 255 characters,
/// no `/`, no control characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.chars().count() > 255 {
        return Err(format!("'{}…' is longer than 255 characters", name.chars().take(20).collect::<String>()));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains '/' or a control character"));
    }
    Ok(())
}

/// Resolves a table `location`: an absolute path, a path relative to `base_dir`, or a URI
/// (`file://`, `s3://`, `s3a://`, `gs://`, `abfss://`, ...). The result ends with `/`.
pub fn resolve_location(location: &str, base_dir: &Path) -> Result<Url, String> {
    let location = location.trim();
    let looks_like_uri = location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
    });
    let mut url = if looks_like_uri {
        Url::parse(location).map_err(|e| format!("'{location}' is not a valid URI: {e}"))?
    } else {
        let path = Path::new(location);
        let path = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
        let path = normalize(&path);
        Url::from_directory_path(&path).map_err(|()| format!("'{}' is not a usable directory path", path.display()))?
    };
    if url.scheme() == "file" && url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(format!("'{location}': file URIs on another host are not supported"));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Refuses a location d2o cannot serve: only tables on the server's file system are served so
/// far, and a table on object storage is refused when it is added rather than failing (or
/// waiting on a credential lookup) at every request.
pub fn check_servable(location: &Url) -> Result<(), String> {
    if location.scheme() == "file" {
        return Ok(());
    }
    Err(format!(
        "'{location}': tables on object storage ({}://) are not supported yet; share a table on the server's file system (a path or a file:// URI)",
        location.scheme()
    ))
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
  selfSigned: true
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
        assert!(report.warnings.iter().any(|w| w.contains("'ssl'")), "{:?}", report.warnings);
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
                "version: 1\nshares:\n- name: s\n  schemas:\n  - name: x\n    tables:\n    - {name: a, location: 's3a://bucket/a'}",
                "key 'shares[0].schemas[0].tables[0].location': 's3a://bucket/a/': tables on object storage",
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

    #[test]
    fn locations_resolve() {
        let base = Path::new("/etc/ds");
        assert_eq!(resolve_location("/data/t", base).map(|u| u.to_string()), Ok("file:///data/t/".into()));
        assert_eq!(resolve_location("t/../u", base).map(|u| u.to_string()), Ok("file:///etc/ds/u/".into()));
        assert_eq!(resolve_location("file:///data/t/", base).map(|u| u.to_string()), Ok("file:///data/t/".into()));
        assert_eq!(resolve_location("s3://b/t", base).map(|u| u.to_string()), Ok("s3://b/t/".into()));
        let refused = resolve_location("s3://b/t", base).and_then(|u| check_servable(&u)).expect_err("not servable");
        assert!(refused.contains("object storage"), "{refused}");
        assert!(resolve_location("file://otherhost/x", base).is_err());
    }
}
