use axum::http::StatusCode;
use serde_json::Value;

use crate::support::*;

fn changes(q: &str) -> String {
    format!("{}?{q}", t("cdf_table", "/changes"))
}

#[tokio::test]
async fn change_data_feed_lines() {
    let app = app();
    let r = get(&app, &changes("startingVersion=0&endingVersion=3")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("delta-table-version"), Some("0"));
    let lines = r.lines();
    assert!(lines[0].get("protocol").is_some());
    assert!(lines[1]["metaData"]["version"].is_i64());
    let mut kinds = std::collections::BTreeMap::new();
    for l in &lines[2..] {
        let obj = l.as_object().expect("object");
        assert_eq!(obj.len(), 1);
        let (key, action) = obj.iter().next().expect("one key");
        assert!(["add", "cdf", "remove"].contains(&key.as_str()), "{l}");
        for field in ["url", "id", "partitionValues", "size", "version", "timestamp"] {
            assert!(action.get(field).is_some(), "{field} in {l}");
        }
        let v = action["version"].as_i64().expect("version");
        assert!((0..=3).contains(&v));
        *kinds.entry((key.clone(), v)).or_insert(0) += 1;
    }
    // Version 0 is an insert without cdc files; versions 1-3 have cdc files, so only those.
    assert!(kinds.keys().any(|(k, v)| k == "add" && *v == 0));
    assert!(kinds.keys().filter(|(_, v)| *v > 0).all(|(k, _)| k == "cdf"), "{kinds:?}");
    // Python sends booleans capitalised.
    let r = get(&app, &changes("startingVersion=0&includeHistoricalMetadata=True")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.lines()[1]["metaData"]["version"], 0);
}

#[tokio::test]
async fn change_data_feed_errors() {
    let app = app();
    for q in [
        "",
        "startingVersion=999999",
        "startingVersion=0&startingTimestamp=2020-01-01T00:00:00Z",
        "startingVersion=2&endingVersion=1",
        "startingVersion=0&endingVersion=99",
        "startingVersion=x",
        "startingTimestamp=2999-01-01T00:00:00Z",
        "startingVersion=0&maxFiles=0",
        "startingVersion=0&includeHistoricalMetadata=maybe",
    ] {
        assert_eq!(get(&app, &changes(q)).await.error(StatusCode::BAD_REQUEST), "INVALID_PARAMETER_VALUE", "{q}");
    }
    // Not history shared.
    get(&app, "/delta-sharing/shares/plain/schemas/sc/tables/t/changes?startingVersion=0")
        .await
        .error(StatusCode::BAD_REQUEST);
    // The feed was off at version 0 of this table.
    let r = get(&app, &format!("{}?startingVersion=0", t("cdf_column_mapping_id_mode", "/changes"))).await;
    assert!(r.json()["message"].as_str().is_some_and(|m| m.contains("change data was not recorded")));
}

#[tokio::test]
async fn change_data_feed_in_delta_format_and_pages() {
    let app = app();
    let caps = "responseformat=delta;readerfeatures=deletionvectors,columnmapping";
    let r = get_with(&app, &format!("{}?startingVersion=1", t("cdf_column_mapping_id_mode", "/changes")), caps).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let lines = r.lines();
    for l in &lines[2..] {
        let f = &l["file"];
        assert!(f["version"].is_i64() && f["timestamp"].is_i64(), "{l}");
        let action = f["deltaSingleAction"].as_object().expect("action");
        assert!(action.contains_key("add") || action.contains_key("remove") || action.contains_key("cdc"));
    }
    // Pages of one file each cover the whole feed.
    let all = get(&app, &changes("startingVersion=0")).await.lines().len() - 2;
    let mut seen = 0;
    let mut uri = changes("startingVersion=0&maxFiles=1");
    for _ in 0..100 {
        let lines = get(&app, &uri).await.lines();
        let end = lines.last().expect("lines")["endStreamAction"].clone();
        assert!(end.is_object());
        seen += lines.len() - 3;
        match end.get("nextPageToken").and_then(Value::as_str) {
            Some(token) => {
                uri = changes(&format!("startingVersion=0&maxFiles=1&pageToken={}", crate::table::urlencode(token)))
            }
            None => break,
        }
    }
    assert_eq!(seen, all);
}
