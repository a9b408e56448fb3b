//! Shares, schemas, tables, versions and metadata.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_everything() {
    let server = Server::start().await;
    let client = server.client();
    let shares: Vec<String> = client.list_shares().await.expect("shares").into_iter().map(|s| s.name).collect();
    assert_eq!(shares, vec!["s1", "plain"]);
    let schemas = client.list_schemas("s1").await.expect("schemas");
    assert_eq!(schemas.len(), 1);
    let tables = client.list_tables("s1", "sc1").await.expect("tables");
    assert_eq!(tables.len(), fixtures().len());
    let all = client.list_every_table().await.expect("all tables");
    assert_eq!(all.len(), fixtures().len() + 1);
    assert_eq!(client.get_share("S1").await.expect("share").name.to_lowercase(), "s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_metadata() {
    let server = Server::start().await;
    let client = server.client();
    for fx in fixtures() {
        let name = d2o_client::TableName::parse(&fx.table()).expect("name");
        let v = client.table_version(&name, None).await.expect("version");
        assert_eq!(v, fx.meta["latest_version"].as_i64().expect("latest"), "{}", fx.name);
        let md = client.metadata(&name, None).await.expect("metadata");
        let want: Vec<String> = fx.meta["partition_columns"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        assert_eq!(md.partition_columns, want, "{}", fx.name);
        md.schema.arrow_schema().expect("every fixture schema maps to Arrow");
    }
    let name = d2o_client::TableName::parse("s1.sc1.cdf_table").expect("name");
    assert_eq!(client.table_version(&name, Some("2000-01-01T00:00:00Z")).await.expect("version"), 0);
}

/// The client offers zstd and gzip, and reads a compressed answer (d2o compresses JSON and
/// NDJSON for clients that offer them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_asks_for_compressed_answers_and_reads_them() {
    use std::io::Write as _;
    let offered = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = offered.clone();
    let app = axum::Router::new().route(
        "/sharing/shares",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let accept = headers.get("accept-encoding").and_then(|v| v.to_str().ok()).unwrap_or_default();
                *seen.lock().expect("lock") = accept.to_owned();
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(br#"{"items":[{"name":"compressed_share"}]}"#).expect("gzip");
                let body = gz.finish().expect("gzip");
                ([("content-type", "application/json"), ("content-encoding", "gzip")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let profile = d2o_client::Profile::from_json(&format!(
        r#"{{"shareCredentialsVersion":1,"endpoint":"http://{addr}/sharing","bearerToken":"t"}}"#
    ))
    .expect("profile");
    let shares = d2o_client::Client::new(profile).expect("client").list_shares().await.expect("listed");
    assert_eq!(shares.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["compressed_share"]);
    let offered = offered.lock().expect("lock").clone();
    assert!(offered.contains("zstd") && offered.contains("gzip"), "{offered}");
}
