//! The change data feed equals `expected/cdf.parquet`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use d2o_client::ResponseFormat;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdf_table_matches_expected_in_both_formats() {
    let server = Server::start().await;
    let fx = fixture("cdf-table");
    let expected = fx.expected("cdf.parquet");
    let cols = ["id", "name", "birthday", "_change_type", "_commit_version"];
    for format in [None, Some(ResponseFormat::Parquet), Some(ResponseFormat::Delta)] {
        let client = match format {
            None => server.client(),
            Some(f) => server.client_for(f),
        };
        let batches = client.table(&fx.table()).changes().from_version(0).load().await.expect("changes load");
        assert_eq!(
            column_names(&batches),
            vec!["id", "name", "birthday", "_change_type", "_commit_version", "_commit_timestamp"]
        );
        let (got, want) = rows_like(&batches, &expected, &cols);
        assert_same_rows(&format!("cdf [{format:?}]"), &got, &want);
        // One commit timestamp per version, increasing with the version.
        let (ts, _) = rows_like(&batches, &expected, &["_commit_version", "_commit_timestamp"]);
        let mut per_version = std::collections::BTreeMap::new();
        for row in ts {
            let (v, t) = row.split_once(" | ").expect("two cells");
            per_version.entry(v.to_owned()).or_insert_with(std::collections::BTreeSet::new).insert(t.to_owned());
        }
        assert!(per_version.values().all(|s| s.len() == 1), "{per_version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_range_and_filter() {
    let server = Server::start().await;
    let client = server.client();
    let fx = fixture("cdf-table");
    let batches = client.table(&fx.table()).changes().from_version(1).to_version(2).load().await.expect("changes load");
    assert_eq!(num_rows(&batches), 12);
    let batches =
        client.table(&fx.table()).changes().from_version(0).filter_text("_change_type = 'delete'").load().await;
    // `_change_type` is not a table column: filters name table columns only.
    assert!(batches.is_err());
    let batches =
        client.table(&fx.table()).changes().from_version(0).filter_text("id = 2").load().await.expect("loads");
    assert!(num_rows(&batches) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_mapping_change_feed_replays_to_the_snapshot() {
    let server = Server::start().await;
    let client = server.client();
    let fx = fixture("cdf-column-mapping-id-mode");
    // The feed starts where the table enabled it: the first start version the server accepts.
    let mut start = 0;
    let batches = loop {
        match client.table(&fx.table()).changes().from_version(start).load().await {
            Ok(b) => break b,
            Err(e) if e.status() == Some(400) && start < 4 => start += 1,
            Err(e) => panic!("changes load: {e}"),
        }
    };
    let latest = *fx.versions().last().expect("versions");
    let expected = fx.expected(&format!("v{latest}.parquet"));
    let columns = expected.columns();
    let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut with_kind = cols.clone();
    with_kind.push("_change_type");
    // Replay inserts/postimages minus deletes/preimages: the latest snapshot.
    let mut state: std::collections::BTreeMap<String, i64> = Default::default();
    if start > 0 {
        let before = fx.expected(&format!("v{}.parquet", start - 1));
        let (_, rows) = rows_like(&[], &before, &cols);
        for r in rows {
            *state.entry(r).or_default() += 1;
        }
    }
    let mut fields: Vec<Field> = expected.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_change_type", DataType::Utf8, true));
    let shape = Expected { schema: Arc::new(Schema::new(fields)), batches: Vec::new() };
    let (rows, _) = rows_like(&batches, &shape, &with_kind);
    for r in rows {
        let (data, kind) = r.rsplit_once(" | ").expect("kind");
        let delta = match kind {
            "insert" | "update_postimage" => 1,
            _ => -1,
        };
        *state.entry(data.to_owned()).or_default() += delta;
    }
    let got: Vec<String> =
        state.into_iter().flat_map(|(k, n)| std::iter::repeat_n(k, usize::try_from(n).unwrap_or(0))).collect();
    let (_, want) = rows_like(&[], &expected, &cols);
    assert_same_rows("column-mapping cdf replay", &got, &want);
}
