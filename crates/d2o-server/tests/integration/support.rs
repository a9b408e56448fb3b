//! Shared set-up: a server over the repository's fixture tables, and request helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use d2o_server::AppState;
use d2o_server::config::ServerConfig;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const TOKEN: &str = "test-token";

/// The fixture tables: the repository's copy in `tests/data/delta-tables`, or `D2O_SHARED_TABLES`.
/// This crate's directory, read when the tests run (cargo sets it then too), so that a test
/// binary reused from another checkout's build (one build directory shared by several checkouts)
/// reads this checkout's files; at compile time otherwise.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub fn fixtures() -> PathBuf {
    if let Ok(dir) = std::env::var("D2O_SHARED_TABLES") {
        return PathBuf::from(dir);
    }
    crate_dir().join("../../tests/data/delta-tables")
}

/// A fixture's table root.
pub fn table_dir(name: &str) -> PathBuf {
    fixtures().join(name).join("delta")
}

/// YAML for share `s1` (history shared) over every fixture, and share `plain` with one table
/// without history; `extra` is appended verbatim.
pub fn config_yaml(extra: &str) -> String {
    let mut y = String::from("version: 1\nshares:\n- name: s1\n  schemas:\n  - name: sc1\n    tables:\n");
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("the fixture tables exist (tests/data/delta-tables)")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("delta").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        y += &format!(
            "    - name: {}\n      location: {}\n      historyShared: true\n",
            n.replace('-', "_"),
            table_dir(n).display()
        );
    }
    y += &format!(
        "- name: plain\n  schemas:\n  - name: sc\n    tables:\n    - name: t\n      location: {}\n",
        table_dir("basic_partitioned").display()
    );
    y += &format!("authorization:\n  bearerToken: {TOKEN}\n{extra}");
    y
}

pub fn state_with(extra: &str) -> AppState {
    let (config, _) = ServerConfig::parse(&config_yaml(extra), Path::new("/")).expect("valid config");
    let catalog = config.yaml_catalog(Path::new("/")).expect("valid catalog");
    AppState::from_config(&config, Arc::new(catalog)).expect("valid state")
}

pub fn app() -> Router {
    d2o_server::router(state_with(""))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The NDJSON lines of the body, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let text = self.text();
        assert!(text.ends_with('\n'), "NDJSON ends with a newline: {text:?}");
        text.lines()
            .map(|l| {
                assert!(!l.is_empty(), "no blank lines in NDJSON");
                serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error status with the protocol's JSON error body; returns the errorCode.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert!(self.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{:?}", self.headers);
        let body = self.json();
        assert!(body["message"].is_string(), "{body}");
        body["errorCode"].as_str().expect("errorCode is a string").to_owned()
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.expect("router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    Reply { status, headers, body }
}

pub fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost:8080")
        .header("authorization", format!("Bearer {TOKEN}"))
}

pub async fn get(app: &Router, uri: &str) -> Reply {
    send(app, request(Method::GET, uri).body(Body::empty()).expect("valid request")).await
}

pub async fn post(app: &Router, uri: &str, body: &str) -> Reply {
    send(
        app,
        request(Method::POST, uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("valid request"),
    )
    .await
}

pub async fn post_with(app: &Router, uri: &str, body: &str, capabilities: &str) -> Reply {
    send(
        app,
        request(Method::POST, uri)
            .header("delta-sharing-capabilities", capabilities)
            .body(Body::from(body.to_owned()))
            .expect("valid request"),
    )
    .await
}

pub async fn get_with(app: &Router, uri: &str, capabilities: &str) -> Reply {
    send(
        app,
        request(Method::GET, uri)
            .header("delta-sharing-capabilities", capabilities)
            .body(Body::empty())
            .expect("valid request"),
    )
    .await
}

/// `/delta-sharing/shares/s1/schemas/sc1/tables/{table}{suffix}`
pub fn t(table: &str, suffix: &str) -> String {
    format!("/delta-sharing/shares/s1/schemas/sc1/tables/{table}{suffix}")
}

/// The file lines (3rd line on) of a parquet-format response.
pub fn files(lines: &[Value]) -> Vec<Value> {
    lines.iter().skip(2).filter_map(|l| l.get("file").cloned()).collect()
}

/// A created recipient with the bearer token it was given directly.
pub(crate) fn with_token(
    (info, issued): (d2o_catalog::RecipientInfo, d2o_catalog::Issued),
) -> (d2o_catalog::RecipientInfo, d2o_catalog::IssuedToken) {
    (info, token_of(issued))
}

/// The credential of an [`d2o_catalog::Issued`] that must be one.
pub(crate) fn token_of(issued: d2o_catalog::Issued) -> d2o_catalog::IssuedToken {
    issued.into_token().expect("a credential issued directly")
}
