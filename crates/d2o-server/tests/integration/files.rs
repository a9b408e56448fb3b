use axum::http::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::*;

/// Serves the state on a real socket; returns the base URL.
async fn serve(extra: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = state_with(extra);
    tokio::spawn(d2o_server::serve(listener, state, std::future::pending()));
    format!("http://{addr}")
}

async fn file_urls(base: &str, table: &str) -> Vec<(String, i64)> {
    let client = reqwest_like::Client::new();
    let body = client.post(&format!("{base}{}", t(table, "/query")), "{}").await;
    body.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| {
            l.get("file").map(|f| (f["url"].as_str().unwrap_or_default().to_owned(), f["size"].as_i64().unwrap_or(-1)))
        })
        .collect()
}

/// A small blocking-free HTTP helper over reqwest.
mod reqwest_like {
    pub struct Client(reqwest::Client);

    pub struct Response {
        pub status: u16,
        pub headers: reqwest::header::HeaderMap,
        pub body: Vec<u8>,
    }

    impl Client {
        pub fn new() -> Self {
            Client(reqwest::Client::new())
        }

        pub async fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Response {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = self.0.request(method, url).bearer_auth(crate::support::TOKEN).body(body.to_owned());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.expect("response");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Response { status, headers, body }
        }

        pub async fn post(&self, url: &str, body: &str) -> String {
            String::from_utf8_lossy(&self.request("POST", url, &[], body).await.body).into_owned()
        }
    }
}

#[tokio::test]
async fn signed_urls_serve_whole_files_ranges_and_heads() {
    let base = serve("").await;
    let urls = file_urls(&base, "basic_partitioned").await;
    assert_eq!(urls.len(), 6);
    let client = reqwest_like::Client::new();
    for (url, size) in &urls {
        assert!(url.starts_with(&base), "{url}");
        let r = client.request("GET", url, &[], "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len() as i64, *size);
        assert_eq!(&r.body[..4], b"PAR1");
        let h = client.request("HEAD", url, &[], "").await;
        assert_eq!(h.status, 200);
        assert_eq!(h.headers.get("content-length").and_then(|v| v.to_str().ok()), Some(size.to_string().as_str()));
        let part = client.request("GET", url, &[("range", "bytes=4-9")], "").await;
        assert_eq!(part.status, 206);
        assert_eq!(part.body, r.body[4..10]);
        assert_eq!(
            part.headers.get("content-range").and_then(|v| v.to_str().ok()),
            Some(format!("bytes 4-9/{size}").as_str())
        );
        let tail = client.request("GET", url, &[("range", "bytes=-4")], "").await;
        assert_eq!(tail.body, b"PAR1");
        let bad = client.request("GET", url, &[("range", &format!("bytes={size}-"))], "").await;
        assert_eq!(bad.status, 416);
    }
}

fn with_query(url: &str, f: impl Fn(&str, &str) -> Option<String>) -> String {
    let (path, query) = url.split_once('?').expect("signed URL has a query");
    let q: Vec<String> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            format!("{k}={}", f(k, v).unwrap_or_else(|| v.to_owned()))
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}

#[tokio::test]
async fn tampered_expired_and_escaping_urls_are_refused() {
    let base = serve("").await;
    let (url, _) = file_urls(&base, "basic_partitioned").await.into_iter().next().expect("a file");
    let client = reqwest_like::Client::new();
    let check_403 = |r: reqwest_like::Response| {
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        let body: Value = serde_json::from_slice(&r.body).expect("JSON error");
        assert_eq!(body["errorCode"], "PERMISSION_DENIED");
    };
    // Another expiry, another signature, no signature, another path, another root.
    check_403(
        client
            .request(
                "GET",
                &with_query(&url, |k, v| (k == "se").then(|| format!("{}", v.parse::<i64>().unwrap_or(0) + 1))),
                &[],
                "",
            )
            .await,
    );
    check_403(client.request("GET", &with_query(&url, |k, _| (k == "sig").then(|| "AAAA".to_owned())), &[], "").await);
    check_403(client.request("GET", url.split('?').next().unwrap_or_default(), &[], "").await);
    let other_path = url.replacen("part-00000", "part-00001", 1);
    check_403(client.request("GET", &other_path, &[], "").await);
    let traversal = url.replacen("/letter%3D", "/..%2F..%2Fletter%3D", 1);
    check_403(client.request("GET", &traversal, &[], "").await);

    // Expired: a server whose URLs live zero seconds.
    let base = serve("preSignedUrlTimeoutSeconds: 0\n").await;
    let (url, _) = file_urls(&base, "basic_partitioned").await.into_iter().next().expect("a file");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = client.request("GET", &url, &[], "").await;
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("expired"));
}

#[cfg(unix)]
#[tokio::test]
async fn signed_paths_cannot_leave_the_table_root() {
    use d2o_server::SigningKey;
    use d2o_server::config::ServerConfig;
    use d2o_server::storage::local::{FileGrant, write_url};
    // A table whose directory holds a symlink to a file outside it.
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("t");
    std::fs::create_dir_all(table.join("_delta_log")).expect("mkdir");
    std::fs::write(dir.path().join("secret.txt"), "secret").expect("write");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), table.join("link.parquet")).expect("symlink");
    std::fs::write(table.join("inside.parquet"), "PAR1").expect("write");
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let yaml = format!(
        "version: 1\nurlSigningKey: {key}\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n    - name: t\n      location: {}\n",
        table.display()
    );
    let (config, _) = ServerConfig::parse(&yaml, std::path::Path::new("/")).expect("valid");
    let catalog = config.yaml_catalog(std::path::Path::new("/")).expect("valid");
    let state = d2o_server::AppState::from_config(&config, std::sync::Arc::new(catalog)).expect("state");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(d2o_server::serve(listener, state, std::future::pending()));
    // Sign URLs with the same key, as the server would, for paths of our choosing.
    let signer = SigningKey::from_base64(key).expect("key");
    let grant =
        FileGrant { table_id: d2o_catalog::derived_table_id("s", "sc", "t"), recipient_id: "bearer-token".into() };
    let id = grant.encode();
    let url_for = |path: &str| {
        let mut s = String::new();
        write_url(
            &signer,
            &mut s,
            &format!("{base}/delta-sharing"),
            &id,
            path,
            chrono::Utc::now().timestamp_millis() + 60_000,
        );
        s
    };
    let client = reqwest_like::Client::new();
    assert_eq!(
        client.request("GET", &url_for("inside.parquet"), &[], "").await.status,
        200,
        "a signed URL for a file of a known root works after restart"
    );
    assert_eq!(client.request("GET", &url_for("link.parquet"), &[], "").await.status, 403, "symlink out of the root");
    // HTTP clients resolve a literal `..` before sending, so the request misses the route.
    let status = client.request("GET", &url_for("../secret.txt"), &[], "").await.status;
    assert!(status == 403 || status == 404, "dot-dot gave {status}");
    assert_eq!(client.request("GET", &url_for("%2E%2E/secret.txt"), &[], "").await.status, 403, "encoded dot-dot");
    assert_eq!(client.request("GET", &url_for("a%2F..%2F..%2Fsecret.txt"), &[], "").await.status, 403, "encoded slash");
    assert_eq!(client.request("GET", &url_for("missing.parquet"), &[], "").await.status, 404);
    assert_eq!(client.request("GET", &url_for("_delta_log"), &[], "").await.status, 404, "directories are not files");
    let _ = StatusCode::OK;
}
