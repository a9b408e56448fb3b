//! DataFusion over shared tables (feature `sql`).

use arrow::array::{Array, Int64Array};
use datafusion::prelude::SessionContext;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_the_profile() {
    let server = Server::start().await;
    let client = server.client();
    let ctx = SessionContext::new();
    let n = d2o_client::sql::register_profile(&ctx, &client).await.expect("registers");
    assert_eq!(n, fixtures().len() + 1);

    let count = |batches: Vec<arrow::record_batch::RecordBatch>| {
        batches[0].column(0).as_any().downcast_ref::<Int64Array>().expect("count").value(0)
    };
    let all = ctx.sql("SELECT count(*) FROM s1.sc1.cdf_table").await.expect("plans").collect().await.expect("runs");
    assert_eq!(count(all), 9);
    // A filter on a partition column and one on a data column, pushed down and exact.
    let some = ctx
        .sql("SELECT count(*) FROM s1.sc1.cdf_table WHERE birthday = DATE '2023-12-25' AND id > 8")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let expected = fixture("cdf-table").expected("v3.parquet");
    let (rows, _) = rows_like(&expected.batches, &expected, &["id", "birthday"]);
    let want = rows
        .iter()
        .filter(|r| {
            let (id, day) = r.split_once(" | ").unwrap();
            id.parse::<i32>().unwrap() > 8 && day == "2023-12-25"
        })
        .count();
    assert_eq!(count(some), want as i64);

    let limited = ctx.sql("SELECT * FROM s1.sc1.basic_partitioned LIMIT 2").await.unwrap().collect().await.unwrap();
    assert_eq!(num_rows(&limited), 2);

    // Deletion vectors and column mapping through SQL.
    let dv = ctx.sql("SELECT count(*) FROM s1.sc1.table_with_dv_small").await.unwrap().collect().await.unwrap();
    assert_eq!(count(dv), 8);
    let joined = ctx
        .sql("SELECT a.id FROM s1.sc1.cdf_table a JOIN s1.sc1.cdf_table b ON a.id = b.id WHERE a.name IS NOT NULL")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(num_rows(&joined), 9);
    let e = ctx.sql("SELECT * FROM s1.sc1.nope").await.expect_err("unknown table");
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(joined[0].column(0).null_count() == 0);
}
