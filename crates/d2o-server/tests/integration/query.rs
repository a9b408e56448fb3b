use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;
use crate::table::commit_timestamp;

fn ids(files: &[Value]) -> BTreeSet<String> {
    files.iter().map(|f| f["id"].as_str().expect("id").to_owned()).collect()
}

fn letter_hint(letter: &str) -> String {
    json!({"op": "equal", "children": [
        {"op": "column", "name": "letter", "valueType": "string"},
        {"op": "literal", "value": letter, "valueType": "string"}]})
    .to_string()
}

#[tokio::test]
async fn snapshot_query_parquet_lines() {
    let app = app();
    let r = post(&app, &t("basic_partitioned", "/query"), "{}").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("delta-table-version"), Some("1"));
    assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=parquet"));
    let lines = r.lines();
    assert!(lines[0].get("protocol").is_some());
    assert!(lines[1].get("metaData").is_some());
    let files = files(&lines);
    assert_eq!(files.len(), lines.len() - 2, "only file lines follow, no endStreamAction");
    assert_eq!(files.len(), 6);
    let now = chrono::Utc::now().timestamp_millis();
    for f in &files {
        assert!(f["url"].is_string() && f["id"].is_string() && f["size"].is_i64(), "{f}");
        assert!(f["partitionValues"].is_object());
        assert!(f["expirationTimestamp"].as_i64() > Some(now));
        assert!(f.get("version").is_none());
        let stats: Value =
            serde_json::from_str(f["stats"].as_str().expect("stats is a JSON string")).expect("stats JSON");
        assert_eq!(stats["numRecords"], 1);
    }
    assert_eq!(ids(&files).len(), files.len(), "ids are unique");
    // The null partition is a JSON null.
    assert!(files.iter().any(|f| f["partitionValues"]["letter"].is_null()));
    // Stable ids across requests.
    let again = post(&app, &t("basic_partitioned", "/query"), "{}").await.lines();
    assert_eq!(ids(&crate::support::files(&again)), ids(&files));
}

#[tokio::test]
async fn json_predicate_hints_skip_files_conservatively() {
    let app = app();
    let all = files(&post(&app, &t("basic_partitioned", "/query"), "{}").await.lines());
    let body = json!({"jsonPredicateHints": letter_hint("a")}).to_string();
    let some = files(&post(&app, &t("basic_partitioned", "/query"), &body).await.lines());
    let expected: BTreeSet<String> = all
        .iter()
        .filter(|f| f["partitionValues"]["letter"] == "a")
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(ids(&some), expected);
    // Statistics prune too: `number` ranges 1..6 with one row per file.
    let gt = json!({"jsonPredicateHints": json!({"op": "greaterThan", "children": [
        {"op": "column", "name": "number", "valueType": "long"},
        {"op": "literal", "value": "4", "valueType": "long"}]}).to_string()})
    .to_string();
    let pruned = files(&post(&app, &t("basic_partitioned", "/query"), &gt).await.lines());
    assert!(!pruned.is_empty() && pruned.len() < all.len(), "{} of {}", pruned.len(), all.len());
    for f in &pruned {
        let stats: Value = serde_json::from_str(f["stats"].as_str().unwrap_or("{}")).unwrap_or_default();
        assert!(stats["maxValues"]["number"].as_i64() > Some(4));
    }
    // Hints that do not parse are ignored: every file comes back.
    for bad in [json!({"jsonPredicateHints": "bad-predicates"}), json!({"jsonPredicateHints": "{\"op\":\"like\"}"})] {
        let r = post(&app, &t("basic_partitioned", "/query"), &bad.to_string()).await;
        assert_eq!(ids(&files(&r.lines())), ids(&all));
    }
}

#[tokio::test]
async fn sql_hints_only_when_enabled() {
    let body = json!({"predicateHints": ["letter = 'b'"]}).to_string();
    let off = files(&post(&app(), &t("basic_partitioned", "/query"), &body).await.lines());
    assert_eq!(off.len(), 6, "evaluatePredicateHints defaults to false");
    let on = d2o_server::router(state_with("evaluatePredicateHints: true\n"));
    let files = files(&post(&on, &t("basic_partitioned", "/query"), &body).await.lines());
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["partitionValues"]["letter"], "b");
}

#[tokio::test]
async fn limit_hint_stops_early() {
    let app = app();
    let r = post(&app, &t("basic_partitioned", "/query"), r#"{"limitHint":1}"#).await;
    assert_eq!(files(&r.lines()).len(), 1);
    let r = post(&app, &t("basic_partitioned", "/query"), r#"{"limitHint":0}"#).await;
    assert_eq!(files(&r.lines()).len(), 0);
    // Files without statistics count as zero rows: all of simple_table comes back.
    let all = files(&post(&app, &t("simple_table", "/query"), "{}").await.lines()).len();
    assert_eq!(files(&post(&app, &t("simple_table", "/query"), r#"{"limitHint":1}"#).await.lines()).len(), all);
}

#[tokio::test]
async fn time_travel_by_version_and_timestamp() {
    let app = app();
    let r = post(&app, &t("basic_partitioned", "/query"), r#"{"version":0}"#).await;
    assert_eq!(r.header("delta-table-version"), Some("0"));
    let lines = r.lines();
    assert_eq!(lines[1]["metaData"]["version"], 0);
    let v0 = files(&lines);
    assert_eq!(v0.len(), 3);
    for f in &v0 {
        assert_eq!(f["version"], 0);
        assert!(f["timestamp"].is_i64());
    }
    let ts = d2o_protocol::timestamp::format_timestamp_millis(commit_timestamp("basic_partitioned", 0));
    let r = post(&app, &t("basic_partitioned", "/query"), &json!({"timestamp": ts}).to_string()).await;
    assert_eq!(r.header("delta-table-version"), Some("0"));
    for bad in [
        json!({"version": 0, "timestamp": ts}),
        json!({"version": -1}),
        json!({"version": 9}),
        json!({"timestamp": "1990-01-01T00:00:00Z"}),
        json!({"timestamp": "2999-01-01T00:00:00Z"}),
        json!({"timestamp": "not a time"}),
        json!({"version": 0, "startingVersion": 0}),
    ] {
        let r = post(&app, &t("basic_partitioned", "/query"), &bad.to_string()).await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "INVALID_PARAMETER_VALUE", "{bad}");
    }
    post(&app, "/delta-sharing/shares/plain/schemas/sc/tables/t/query", r#"{"version":0}"#)
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_huge_ones_413() {
    let app = app();
    for body in ["not json", "", r#"{"predicateHints":{}}"#, r#"{"limitHint":"x"}"#, "[]"] {
        let r = post(&app, &t("simple_table", "/query"), body).await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "MALFORMED_REQUEST", "{body:?}");
    }
    let huge = format!(r#"{{"jsonPredicateHints":"{}"}}"#, "x".repeat(2 << 20));
    post(&app, &t("simple_table", "/query"), &huge).await.error(StatusCode::PAYLOAD_TOO_LARGE);
    post(&app, &t("nope", "/query"), "{}").await.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn parquet_format_refuses_tables_that_need_delta() {
    let app = app();
    let r = post(&app, &t("table_with_dv_small", "/query"), "{}").await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST), "UNSUPPORTED_OPERATION");
}

#[tokio::test]
async fn delta_format_carries_raw_actions_and_deletion_vectors() {
    let app = app();
    let r = post_with(
        &app,
        &t("table_with_dv_small", "/query"),
        "{}",
        "responseformat=delta;readerfeatures=deletionvectors",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=delta"));
    let lines = r.lines();
    assert_eq!(lines[0]["protocol"]["deltaProtocol"]["minReaderVersion"], 3);
    let files: Vec<&Value> = lines.iter().skip(2).map(|l| &l["file"]).collect();
    assert_eq!(files.len(), 1);
    let add = &files[0]["deltaSingleAction"]["add"];
    assert!(add["path"].as_str().is_some_and(|p| p.starts_with("http://localhost:8080/delta-sharing/files/")));
    assert_eq!(add["dataChange"], true);
    assert!(add["modificationTime"].is_i64());
    let dv = &add["deletionVector"];
    assert_eq!(dv["storageType"], "p", "{dv}");
    assert!(dv["pathOrInlineDv"].as_str().is_some_and(|p| p.contains("deletion_vector_")));
    assert_eq!(dv["cardinality"], 2);
}

#[tokio::test]
async fn end_stream_action_only_when_asked() {
    let app = app();
    let r = post_with(&app, &t("simple_table", "/query"), "{}", "includeendstreamaction=true").await;
    assert_eq!(r.header("delta-sharing-capabilities"), Some("responseformat=parquet;includeendstreamaction=true"));
    let lines = r.lines();
    let last = lines.last().expect("lines");
    assert!(last["endStreamAction"]["minUrlExpirationTimestamp"].is_i64(), "{last}");
    assert!(last["endStreamAction"].get("nextPageToken").is_none());
}

async fn page_through(app: &axum::Router, table: &str, body: Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut body = body;
    for _ in 0..100 {
        let r = post(app, &t(table, "/query"), &body.to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let lines = r.lines();
        let end =
            lines.last().and_then(|l| l.get("endStreamAction")).cloned().expect("each page ends with endStreamAction");
        let page = files(&lines);
        assert!(page.len() <= body["maxFiles"].as_u64().unwrap_or(0) as usize);
        out.extend(page);
        match end.get("nextPageToken").and_then(Value::as_str) {
            Some(token) => body["pageToken"] = token.into(),
            None => return out,
        }
    }
    panic!("paging did not end")
}

#[tokio::test]
async fn max_files_pages_through_every_file_once() {
    let app = app();
    let all = files(&post(&app, &t("basic_with_inserts_deletes_checkpoint", "/query"), "{}").await.lines());
    let paged = page_through(&app, "basic_with_inserts_deletes_checkpoint", json!({"maxFiles": 2})).await;
    assert_eq!(paged.len(), all.len());
    assert_eq!(ids(&paged), ids(&all));
    // With a predicate, pages cover exactly the filtered files.
    let filtered = files(
        &post(&app, &t("basic_partitioned", "/query"), &json!({"jsonPredicateHints": letter_hint("a")}).to_string())
            .await
            .lines(),
    );
    let paged =
        page_through(&app, "basic_partitioned", json!({"maxFiles": 1, "jsonPredicateHints": letter_hint("a")})).await;
    assert_eq!(ids(&paged), ids(&filtered));
}

#[tokio::test]
async fn page_tokens_are_checked() {
    let app = app();
    let r = post(&app, &t("simple_table", "/query"), r#"{"maxFiles":1}"#).await;
    let token = r
        .lines()
        .last()
        .and_then(|l| l["endStreamAction"]["nextPageToken"].as_str().map(str::to_owned))
        .expect("token");
    for (table, body) in [
        ("simple_table", json!({"maxFiles": 0})),
        ("simple_table", json!({"pageToken": "x", "maxFiles": 1})),
        ("simple_table", json!({"pageToken": format!("{token}x"), "maxFiles": 1})),
        // Same token, other parameters.
        ("simple_table", json!({"pageToken": token, "maxFiles": 1, "limitHint": 3})),
        // Same token, other table.
        ("basic_partitioned", json!({"pageToken": token, "maxFiles": 1})),
        ("simple_table", json!({"includeRefreshToken": true, "version": 1})),
    ] {
        let r = post(&app, &t(table, "/query"), &body.to_string()).await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "INVALID_PARAMETER_VALUE", "{body}");
    }
}

#[tokio::test]
async fn refresh_tokens_return_the_same_version_with_fresh_urls() {
    let app = app();
    let r = post(&app, &t("simple_table", "/query"), r#"{"includeRefreshToken":true}"#).await;
    let lines = r.lines();
    let token = lines
        .last()
        .and_then(|l| l["endStreamAction"]["refreshToken"].as_str().map(str::to_owned))
        .expect("refresh token");
    let first = files(&lines);
    let r = post(&app, &t("simple_table", "/query"), &json!({"refreshToken": token}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("delta-table-version"), Some("4"));
    assert_eq!(ids(&files(&r.lines())), ids(&first));
    post(&app, &t("basic_partitioned", "/query"), &json!({"refreshToken": token}).to_string())
        .await
        .error(StatusCode::BAD_REQUEST);
    post(&app, &t("simple_table", "/query"), r#"{"refreshToken":"forged"}"#).await.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn streaming_query_from_a_starting_version() {
    let app = app();
    let r = post(&app, &t("cdf_table", "/query"), r#"{"startingVersion":1,"endingVersion":2}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("delta-table-version"), Some("1"));
    let lines = r.lines();
    assert_eq!(lines[1]["metaData"]["version"], 1);
    for l in &lines[2..] {
        let (key, action) = l.as_object().and_then(|o| o.iter().next()).expect("one key");
        assert!(key == "add" || key == "remove" || key == "metaData", "{l}");
        if key != "metaData" {
            assert!((1..=2).contains(&action["version"].as_i64().unwrap_or(-1)));
            assert!(action["timestamp"].is_i64());
        }
    }
    post(&app, &t("cdf_table", "/query"), r#"{"startingVersion":2,"endingVersion":1}"#)
        .await
        .error(StatusCode::BAD_REQUEST);
    post(&app, &t("cdf_table", "/query"), r#"{"startingVersion":99}"#).await.error(StatusCode::BAD_REQUEST);
}

/// A table of `files` files in one commit, each file of 10 rows.
fn write_long_table(root: &std::path::Path, files: usize) {
    let log = root.join("_delta_log");
    std::fs::create_dir_all(&log).expect("mkdir");
    let schema = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}"#;
    let mut text = json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}).to_string() + "\n";
    text += &(json!({"metaData": {"id": "long", "format": {"provider": "parquet", "options": {}},
        "schemaString": schema, "partitionColumns": [], "configuration": {}, "createdTime": 0}})
    .to_string()
        + "\n");
    for i in 0..files {
        text += &(json!({"add": {"path": format!("part-{i:05}.parquet"), "partitionValues": {}, "size": 100 + i,
            "modificationTime": 0, "dataChange": true, "stats": "{\"numRecords\":10}"}})
        .to_string()
            + "\n");
    }
    text += &(json!({"commitInfo": {"timestamp": 1_700_000_000_000_i64}}).to_string() + "\n");
    std::fs::write(log.join(format!("{:020}.json", 0)), text).expect("write commit");
}

/// A listing long enough to be rendered on two threads (slices of 1,024 files) comes out whole,
/// in the file list's order, the same in pages, and cut at the same file by a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_listing_is_rendered_whole_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_long_table(dir.path(), 5000);
    let yaml = format!(
        "version: 1\nshares:\n- name: big\n  schemas:\n  - name: s\n    tables:\n    - name: t\n      location: {}\nauthorization:\n  bearerToken: {TOKEN}\n",
        dir.path().display()
    );
    let (config, _) = d2o_server::config::ServerConfig::parse(&yaml, std::path::Path::new("/")).expect("config");
    let catalog = config.yaml_catalog(std::path::Path::new("/")).expect("catalog");
    let state = d2o_server::AppState::from_config(&config, std::sync::Arc::new(catalog)).expect("state");
    // The order of the file list, read directly.
    let url = url::Url::from_directory_path(dir.path()).expect("url");
    let snapshot = state.tables.latest(&url).expect("snapshot");
    let mut expected = Vec::new();
    state
        .tables
        .visit_files(&snapshot, &mut |e| {
            expected.push(e.path().to_owned());
            std::ops::ControlFlow::Continue(())
        })
        .expect("files");
    assert_eq!(expected.len(), 5000);
    let app = d2o_server::router(state);
    let uri = "/delta-sharing/shares/big/schemas/s/tables/t/query";
    let path_of = |f: &Value| {
        let url = f["url"].as_str().expect("url");
        url.split('/').next_back().and_then(|p| p.split('?').next()).expect("path").to_owned()
    };
    let whole = files(&post(&app, uri, "{}").await.lines());
    assert_eq!(whole.iter().map(path_of).collect::<Vec<_>>(), expected);
    assert!(
        whole.iter().zip(&expected).all(|(f, p)| f["size"].as_u64() == p[5..10].parse::<u64>().ok().map(|i| 100 + i))
    );

    let mut paged = Vec::new();
    let mut body = json!({"maxFiles": 1500});
    loop {
        let lines = post(&app, uri, &body.to_string()).await.lines();
        paged.extend(files(&lines).iter().map(path_of));
        match lines.last().and_then(|l| l["endStreamAction"]["nextPageToken"].as_str()) {
            Some(token) => body["pageToken"] = token.into(),
            None => break,
        }
    }
    assert_eq!(paged, expected);

    // 10 rows a file: a limit of 25,001 rows needs 2,501 files.
    let limited = files(&post(&app, uri, r#"{"limitHint": 25001}"#).await.lines());
    assert_eq!(limited.iter().map(path_of).collect::<Vec<_>>(), expected[..2501]);
}
