use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

/// `commitInfo.timestamp` of a fixture's commit, read straight from the log.
pub fn commit_timestamp(fixture: &str, version: u64) -> i64 {
    let text = std::fs::read_to_string(table_dir(fixture).join(format!("_delta_log/{version:020}.json")))
        .expect("commit exists");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v.get("commitInfo").and_then(|c| c.get("timestamp")).and_then(Value::as_i64))
        .expect("commitInfo.timestamp")
}

fn iso(ms: i64) -> String {
    d2o_protocol::timestamp::format_timestamp_millis(ms)
}

#[tokio::test]
async fn version_get_and_head() {
    let app = app();
    let r = get(&app, &t("simple_table", "/version")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("delta-table-version"), Some("4"));
    assert!(r.body.is_empty());
    let r = send(&app, request(Method::HEAD, &t("basic_partitioned", "")).body(Body::empty()).expect("valid")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("delta-table-version"), Some("1"));
    let r = send(&app, request(Method::HEAD, &t("nope", "")).body(Body::empty()).expect("valid")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    get(&app, &t("nope", "/version")).await.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn version_at_starting_timestamp() {
    let app = app();
    let v1 = commit_timestamp("cdf-table", 1);
    let at = |ts: &str| format!("{}?startingTimestamp={}", t("cdf_table", "/version"), urlencode(ts));
    assert_eq!(get(&app, &at("2000-01-01T00:00:00Z")).await.header("delta-table-version"), Some("0"));
    assert_eq!(get(&app, &at(&iso(v1))).await.header("delta-table-version"), Some("1"));
    assert_eq!(get(&app, &at(&iso(v1 - 1))).await.header("delta-table-version"), Some("1"));
    get(&app, &at("2999-01-01T00:00:00Z")).await.error(StatusCode::BAD_REQUEST);
    get(&app, &at("abc")).await.error(StatusCode::BAD_REQUEST);
    // Needs history sharing.
    get(&app, "/delta-sharing/shares/plain/schemas/sc/tables/t/version?startingTimestamp=2000-01-01T00:00:00Z")
        .await
        .error(StatusCode::BAD_REQUEST);
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn metadata_parquet_format() {
    let r = get(&app(), &t("basic_partitioned", "/metadata")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/x-ndjson")));
    assert_eq!(r.header("delta-table-version"), Some("1"));
    assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=parquet"));
    let lines = r.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["protocol"]["minReaderVersion"], 1);
    let md = &lines[1]["metaData"];
    assert_eq!(md["format"]["provider"], "parquet");
    assert_eq!(md["partitionColumns"], serde_json::json!(["letter"]));
    let schema: Value = serde_json::from_str(md["schemaString"].as_str().expect("string")).expect("schema JSON");
    assert_eq!(schema["type"], "struct");
    assert_eq!(schema["fields"].as_array().map(Vec::len), Some(3));
    assert!(md["id"].is_string());
    assert!(md.get("version").is_none(), "no version without time travel");
}

#[tokio::test]
async fn metadata_format_negotiation() {
    let app = app();
    // Both formats offered, plain table: parquet.
    let r = get_with(&app, &t("basic_partitioned", "/metadata"), "responseformat=delta,parquet").await;
    assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=parquet"));
    assert!(r.lines()[0]["protocol"]["minReaderVersion"].is_number());
    // Only delta: delta, even for a plain table.
    let r = get_with(&app, &t("basic_partitioned", "/metadata"), "responseformat=delta").await;
    assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=delta"));
    let lines = r.lines();
    assert!(lines[0]["protocol"]["deltaProtocol"]["minWriterVersion"].is_number());
    assert!(lines[1]["metaData"]["deltaMetadata"]["schemaString"].is_string());
    // Deletion vectors and column mapping need delta; offered both, delta is chosen.
    for table in ["table_with_dv_small", "table_with_columnmapping_mode_name", "data_reader_timestamp_ntz"] {
        let caps = "responseformat=delta,parquet;readerfeatures=deletionvectors,columnmapping,timestampntz";
        let r = get_with(&app, &t(table, "/metadata"), caps).await;
        assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=delta"), "{table}");
        assert!(r.lines()[0]["protocol"]["deltaProtocol"]["minReaderVersion"].as_i64() >= Some(2));
        // Parquet only: refused, with a hint.
        let err = get(&app, &t(table, "/metadata")).await.error(StatusCode::BAD_REQUEST);
        assert_eq!(err, "UNSUPPORTED_OPERATION", "{table}");
    }
    // A client that names reader features must name the ones the table needs.
    get_with(&app, &t("table_with_dv_small", "/metadata"), "responseformat=delta;readerfeatures=columnmapping")
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metadata_time_travel() {
    let app = app();
    let r = get(&app, &format!("{}?version=0", t("simple_table", "/metadata"))).await;
    assert_eq!(r.header("delta-table-version"), Some("0"));
    assert_eq!(r.lines()[1]["metaData"]["version"], 0);
    let ts = iso(commit_timestamp("simple_table", 2));
    let r = get(&app, &format!("{}?timestamp={}", t("simple_table", "/metadata"), urlencode(&ts))).await;
    assert_eq!(r.header("delta-table-version"), Some("2"));
    for bad in [
        "?version=0&timestamp=2020-01-01T00:00:00Z",
        "?version=-1",
        "?version=99",
        "?version=x",
        "?timestamp=yesterday",
        "?timestamp=1999-01-01T00:00:00Z",
    ] {
        get(&app, &format!("{}{bad}", t("simple_table", "/metadata"))).await.error(StatusCode::BAD_REQUEST);
    }
    get(&app, "/delta-sharing/shares/plain/schemas/sc/tables/t/metadata?version=0")
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn start_version_limits_history() {
    let yaml = format!(
        "version: 1\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n    - name: t\n      location: {}\n      historyShared: true\n      startVersion: 2\n",
        table_dir("simple_table").display()
    );
    let (config, _) = d2o_server::config::ServerConfig::parse(&yaml, std::path::Path::new("/")).expect("valid");
    let catalog = config.yaml_catalog(std::path::Path::new("/")).expect("valid");
    let app =
        d2o_server::router(d2o_server::AppState::from_config(&config, std::sync::Arc::new(catalog)).expect("state"));
    let r = send(
        &app,
        axum::http::Request::get("/delta-sharing/shares/s/schemas/sc/tables/t/metadata?version=1")
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    let msg = r.json()["message"].as_str().map(str::to_owned).unwrap_or_default();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("since version 2"), "{msg}");
    let r = send(
        &app,
        axum::http::Request::get("/delta-sharing/shares/s/schemas/sc/tables/t/metadata?version=3")
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_table_files_are_400_not_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "version: 1\nshares:\n- name: s\n  schemas:\n  - name: sc\n    tables:\n    - name: t\n      location: {}\n",
        dir.path().display()
    );
    let (config, _) = d2o_server::config::ServerConfig::parse(&yaml, std::path::Path::new("/")).expect("valid");
    let catalog = config.yaml_catalog(std::path::Path::new("/")).expect("valid");
    let app =
        d2o_server::router(d2o_server::AppState::from_config(&config, std::sync::Arc::new(catalog)).expect("state"));
    for uri in ["/version", "/metadata"] {
        let r = send(
            &app,
            axum::http::Request::get(format!("/delta-sharing/shares/s/schemas/sc/tables/t{uri}"))
                .body(Body::empty())
                .expect("valid"),
        )
        .await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "RESOURCE_DOES_NOT_EXIST");
    }
}
