//! Golden tests of the wire format: every line the server writes, for every fixture table, in
//! both response formats, reads back as one of `d2o-protocol`'s typed lines and serializes to
//! the same JSON. A field the server writes that the protocol crate does not know, or spells
//! differently, fails here: the two cannot drift apart.

use axum::http::StatusCode;
use d2o_protocol::action::{DeltaLine, ParquetLine};
use serde_json::Value;

use crate::support::*;

fn check_lines(what: &str, reply: &Reply) -> usize {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text());
    let delta = reply.header("delta-sharing-capabilities").is_some_and(|c| c.contains("responseformat=delta"));
    let text = reply.text();
    for line in text.lines() {
        let raw: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
        let typed = if delta {
            let l: DeltaLine =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not a delta line ({e}): {line}"));
            serde_json::to_value(l)
        } else {
            let l: ParquetLine =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not a parquet line ({e}): {line}"));
            serde_json::to_value(l)
        };
        assert_eq!(typed.expect("serializes"), raw, "{what}: the typed line differs from what was written");
    }
    text.lines().count()
}

fn fixture_tables() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("the fixture tables exist")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("delta").is_dir())
        .map(|e| e.file_name().to_string_lossy().replace('-', "_"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_line_of_every_table_reads_back_as_a_typed_line() {
    let app = app();
    let mut lines = 0;
    for table in fixture_tables() {
        for caps in ["responseformat=parquet", "responseformat=delta"] {
            let what = |endpoint: &str| format!("{table} {endpoint} ({caps})");
            let metadata = get_with(&app, &t(&table, "/metadata"), caps).await;
            if metadata.status == StatusCode::BAD_REQUEST {
                // A table the parquet format cannot express: refused, nothing to check.
                continue;
            }
            lines += check_lines(&what("metadata"), &metadata);
            let caps_end = format!("{caps};includeendstreamaction=true");
            for body in [
                r#"{}"#,
                r#"{"version":0}"#,
                r#"{"maxFiles":1}"#,
                r#"{"includeRefreshToken":true}"#,
                r#"{"startingVersion":0}"#,
            ] {
                let reply = post_with(&app, &t(&table, "/query"), body, &caps_end).await;
                if reply.status == StatusCode::OK {
                    lines += check_lines(&what(&format!("query {body}")), &reply);
                }
            }
            let changes =
                get_with(&app, &t(&table, "/changes?startingVersion=0&includeHistoricalMetadata=true"), &caps_end)
                    .await;
            if changes.status == StatusCode::OK {
                lines += check_lines(&what("changes"), &changes);
            }
        }
    }
    assert!(lines > 500, "{lines} lines checked");
}
