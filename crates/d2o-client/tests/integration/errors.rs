//! Broken profiles, bad or expired tokens, missing tables and a server that dies mid-read all
//! give clear errors.

use d2o_client::{Client, ClientError, Profile};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_profiles_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.share");
    std::fs::write(&path, r#"{"shareCredentialsVersion":1,"endpoint":"http://x"}"#).unwrap();
    let e = Client::from_profile(path.to_str().unwrap()).expect_err("no token");
    assert!(matches!(e, ClientError::Profile { .. }));
    let msg = e.to_string();
    assert!(msg.contains("config.share") && msg.contains("bearerToken"), "{msg}");

    std::fs::write(&path, "not json").unwrap();
    let e = Client::from_profile(path.to_str().unwrap()).expect_err("not json");
    assert!(e.to_string().contains("not valid JSON"), "{e}");

    let e = Client::from_profile("/definitely/missing.share").expect_err("missing");
    assert!(e.to_string().contains("/definitely/missing.share"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_expired_tokens() {
    let server = Server::start().await;
    let wrong = Client::new(Profile::bearer(server.endpoint.clone(), "wrong", None)).unwrap();
    let e = wrong.list_shares().await.expect_err("401");
    assert!(matches!(e, ClientError::Unauthenticated { status: 401, .. }), "{e:?}");
    assert!(e.to_string().contains(&server.endpoint), "{e}");

    let expired =
        Client::new(Profile::bearer(server.endpoint.clone(), "old", Some("2020-01-01T00:00:00Z".into()))).unwrap();
    let e = expired.list_shares().await.expect_err("expired");
    assert!(matches!(e, ClientError::TokenExpired { .. }), "{e:?}");
    assert!(e.to_string().contains("2020-01-01"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_share_and_bad_names() {
    let server = Server::start().await;
    let client = server.client();
    let e = client.table("s1.sc1.nope").load().await.expect_err("missing");
    assert!(matches!(e, ClientError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("s1.sc1.nope"), "{e}");
    let e = client.list_schemas("nope").await.expect_err("missing share");
    assert!(e.to_string().contains("share 'nope'"), "{e}");
    let e = client.table("just_a_name").load().await.expect_err("bad name");
    assert!(matches!(e, ClientError::InvalidArgument(_)), "{e:?}");
    // Time travel on a table without history: the server's 400 and message come through.
    let e = client.table("plain.sc.t").version(0).load().await.expect_err("no history");
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.error_code().is_some(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_read() {
    let mut server = Server::start().await;
    let client = Client::builder(server.profile())
        .max_retries(2)
        .retry_backoff(std::time::Duration::from_millis(10))
        .build()
        .unwrap();
    let query = client.table("s1.sc1.basic_with_inserts_deletes_checkpoint");
    let files = query.list_files().await.expect("files");
    server.stop().await;
    let e = query.load_stream_from(files).expect("plan").collect().await.expect_err("server gone");
    assert!(matches!(e, ClientError::Connection { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("cannot reach") && msg.contains("attempts"), "{msg}");
    assert!(!msg.contains("sig="), "signatures stay out of messages: {msg}");

    let e = client.list_shares().await.expect_err("server gone");
    assert!(matches!(e, ClientError::Connection { .. }), "{e:?}");
}
