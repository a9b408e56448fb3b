//! Pre-signed URLs that expire during a read are refreshed instead of failing the read.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_urls_are_refreshed_with_the_refresh_token() {
    let server = Server::start_with("preSignedUrlTimeoutSeconds: 1\n").await;
    let client = server.client();
    let fx = fixture("basic-with-inserts-deletes-checkpoint");
    let query = client.table(&fx.table());
    let files = query.list_files().await.expect("files");
    assert!(files.refresh_token.is_some(), "a latest-snapshot query asks for a refresh token");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let batches = query.load_stream_from(files).expect("plan").collect().await.expect("read after expiry");
    let expected = fx.expected(&format!("v{}.parquet", fx.versions().last().unwrap()));
    assert_eq!(num_rows(&batches), expected.num_rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_on_download_triggers_a_requery_by_file_id() {
    let server = Server::start_with("preSignedUrlTimeoutSeconds: 1\n").await;
    let client = server.client();
    let fx = fixture("table-with-dv-small");
    // A version query: no refresh token, so the refresh re-queries the version and matches ids.
    let query = client.table(&fx.table()).version(1);
    let mut files = query.list_files().await.expect("files");
    assert!(files.refresh_token.is_none());
    // Hide the expiry so the client only learns of it from the server's 403.
    for f in &mut files.files {
        f.expiration_timestamp = None;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let batches = query.load_stream_from(files).expect("plan").collect().await.expect("read after expiry");
    assert_eq!(num_rows(&batches), 8);
}
