//! Filters: sent as hints, applied again on the client, so results are exact.

use arrow::array::{Array, Date32Array, Int32Array, StringArray};
use arrow::record_batch::RecordBatch;
use d2o_client::Predicate;
use d2o_protocol::predicate::{CmpOp, Leaf, ValueType};

use crate::support::*;

fn strings(batches: &[RecordBatch], col: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(col).expect("column");
        let a = a.as_any().downcast_ref::<StringArray>().expect("strings");
        out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_filter_is_exact() {
    let server = Server::start().await;
    let client = server.client();
    let fx = fixture("basic_partitioned");
    let expected = fx.expected("v1.parquet");
    let want_a = strings(&expected.batches, "letter").iter().filter(|l| l.as_deref() == Some("a")).count();
    assert!(want_a > 0);
    let pred = Predicate::Compare {
        op: CmpOp::Equal,
        left: Leaf::Column { name: "letter".into(), value_type: ValueType::String },
        right: Leaf::Literal { value: "a".into(), value_type: ValueType::String },
    };
    // The server prunes by partition: fewer files than the whole table.
    let all = client.table(&fx.table()).list_files().await.expect("files");
    let pruned = client.table(&fx.table()).filter(pred.clone()).list_files().await.expect("files");
    assert!(pruned.files.len() < all.files.len());
    let batches = client.table(&fx.table()).filter(pred).load().await.expect("loads");
    let letters = strings(&batches, "letter");
    assert_eq!(letters.len(), want_a);
    assert!(letters.iter().all(|l| l.as_deref() == Some("a")));

    let nulls = client.table(&fx.table()).filter_text("letter IS NULL").load().await.expect("loads");
    let want_null = strings(&expected.batches, "letter").iter().filter(|l| l.is_none()).count();
    assert_eq!(num_rows(&nulls), want_null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_column_filter_is_exact_whatever_the_server_skips() {
    let server = Server::start().await;
    let client = server.client();
    let fx = fixture("cdf-table");
    let expected = fx.expected("v3.parquet");
    let mut want = Vec::new();
    for b in &expected.batches {
        let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int32Array>().unwrap().clone();
        let day = b.column_by_name("birthday").unwrap().as_any().downcast_ref::<Date32Array>().unwrap().clone();
        for i in 0..b.num_rows() {
            // 2023-12-23 is day 19714.
            if id.is_valid(i) && id.value(i) > 3 && day.is_valid(i) && day.value(i) >= 19714 {
                want.push(id.value(i));
            }
        }
    }
    want.sort_unstable();
    let batches =
        client.table(&fx.table()).filter_text("id > 3 AND birthday >= '2023-12-23'").load().await.expect("loads");
    let mut got = Vec::new();
    for b in &batches {
        let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int32Array>().unwrap();
        got.extend(id.iter().flatten());
    }
    got.sort_unstable();
    assert_eq!(got, want);
    // With a projection that leaves the filter's columns out.
    let batches = client
        .table(&fx.table())
        .columns(["name"])
        .filter_text("id > 3 AND birthday >= '2023-12-23'")
        .load()
        .await
        .expect("loads");
    assert_eq!(column_names(&batches), vec!["name"]);
    assert_eq!(num_rows(&batches), want.len());
    // A JSON hint works as well.
    let json = r#"{"op":"greaterThan","children":[{"op":"column","name":"id","valueType":"int"},{"op":"literal","value":"3","valueType":"int"}]}"#;
    let batches = client.table(&fx.table()).filter_text(json).load().await.expect("loads");
    assert!(num_rows(&batches) >= want.len());
}
