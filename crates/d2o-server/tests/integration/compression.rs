//! Compressed answers: gzip and zstd for JSON and NDJSON when the client accepts them, the
//! same lines once decoded, nothing for clients that do not ask, for small answers, for data
//! files or when the provider turns it off.

use std::io::Read;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::support::*;

async fn query(app: &Router, encoding: Option<&str>) -> Reply {
    let mut req = request(Method::POST, &t("basic_partitioned", "/query")).header("content-type", "application/json");
    if let Some(e) = encoding {
        req = req.header("accept-encoding", e);
    }
    send(app, req.body(Body::from("{}")).expect("request")).await
}

fn decoded(reply: &Reply) -> String {
    let mut out = Vec::new();
    match reply.header("content-encoding") {
        Some("gzip") => flate2::read::GzDecoder::new(&reply.body[..]).read_to_end(&mut out).map(drop),
        Some("zstd") => {
            zstd::stream::read::Decoder::new(&reply.body[..]).and_then(|mut d| d.read_to_end(&mut out)).map(drop)
        }
        None => return reply.text(),
        Some(other) => panic!("unexpected encoding {other}"),
    }
    .expect("decodes");
    String::from_utf8(out).expect("utf-8")
}

/// The lines of an answer without the parts that change per request (signed URLs, expiries).
fn stable(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            if let Some(f) = v.get_mut("file") {
                f["url"] = serde_json::Value::Null;
                f["expirationTimestamp"] = serde_json::Value::Null;
            }
            v
        })
        .collect()
}

#[tokio::test]
async fn json_lines_are_compressed_for_clients_that_accept_it() {
    let app = app();
    let plain = query(&app, None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header("content-encoding"), None, "no Accept-Encoding, no compression");
    for (accept, expected) in
        [("gzip", "gzip"), ("zstd", "zstd"), ("gzip, deflate, br, zstd", "zstd"), ("gzip;q=1, zstd;q=0.5", "gzip")]
    {
        let r = query(&app, Some(accept)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-encoding"), Some(expected), "{accept}");
        assert!(r.body.len() < plain.body.len(), "{accept}: {} vs {}", r.body.len(), plain.body.len());
        assert_eq!(stable(&decoded(&r)), stable(&plain.text()), "{accept}: the same lines");
        assert_eq!(r.header("delta-table-version"), plain.header("delta-table-version"));
    }
    // Brotli and deflate are not offered: the answer is plain.
    assert_eq!(query(&app, Some("br, deflate")).await.header("content-encoding"), None);
}

#[tokio::test]
async fn small_answers_and_data_files_are_not_compressed() {
    let app = app();
    let version = send(
        &app,
        request(Method::GET, &t("basic_partitioned", "/version"))
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(version.header("content-encoding"), None);
    let r = query(&app, Some("gzip")).await;
    let url = decoded(&r)
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["file"]["url"].as_str().map(str::to_owned))
        .expect("a file URL");
    let path =
        url.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map(|(_, p)| format!("/{p}")).expect("a path");
    let file = send(
        &app,
        request(Method::GET, &path).header("accept-encoding", "gzip, zstd").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text());
    assert_eq!(file.header("content-encoding"), None, "parquet files are sent as they are");
}

#[tokio::test]
async fn the_provider_can_turn_it_off() {
    let app = d2o_server::router(state_with("compressResponses: false\n"));
    assert_eq!(query(&app, Some("gzip")).await.header("content-encoding"), None);
}
