//! Version 2 profiles: OAuth client credentials (with token refresh) and basic authentication.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use d2o_client::{Client, Profile};

use crate::support::*;

/// An OAuth token endpoint that hands out the test server's token, valid for `expires_in` s.
async fn token_endpoint(expires_in: u64) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/token",
        post(move |headers: HeaderMap, body: String| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                // base64("cid:secret")
                assert_eq!(auth, "Basic Y2lkOnNlY3JldA==");
                assert!(body.contains("grant_type=client_credentials"), "{body}");
                format!(r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":"{expires_in}"}}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/token"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_client_credentials_fetch_and_refresh_the_token() {
    let server = Server::start().await;
    let (token_url, calls) = token_endpoint(3600).await;
    let profile = Profile::from_json(&format!(
        r#"{{"shareCredentialsVersion":2,"type":"oauth_client_credentials","endpoint":"{}","tokenEndpoint":"{token_url}","clientId":"cid","clientSecret":"secret"}}"#,
        server.endpoint
    ))
    .unwrap();
    let client = Client::new(profile.clone()).unwrap();
    assert_eq!(client.list_shares().await.unwrap().len(), 2);
    assert_eq!(client.list_shares().await.unwrap().len(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a long-lived token is reused");

    // A token that lives 1 s is used for half its life, then refreshed.
    let (token_url, calls) = token_endpoint(1).await;
    let mut short = profile;
    if let d2o_protocol::profile::Credentials::OAuthClientCredentials { token_endpoint, .. } = &mut short.credentials {
        *token_endpoint = token_url;
    }
    let client = Client::new(short).unwrap();
    client.list_shares().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    client.list_shares().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_v2_bearer() {
    let app = Router::new().route(
        "/ds/shares",
        get(|headers: HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if auth == "Basic dTpw" {
                (axum::http::StatusCode::OK, r#"{"items":[{"name":"only"}]}"#.to_owned())
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, r#"{"errorCode":"UNAUTHENTICATED","message":"no"}"#.to_owned())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let profile = Profile::from_json(&format!(
        r#"{{"shareCredentialsVersion":2,"type":"basic","endpoint":"http://{addr}/ds/","username":"u","password":"p"}}"#
    ))
    .unwrap();
    let shares = Client::new(profile).unwrap().list_shares().await.unwrap();
    assert_eq!(shares[0].name, "only");

    let server = Server::start().await;
    let v2 = Profile::from_json(&format!(
        r#"{{"shareCredentialsVersion":2,"type":"bearer_token","endpoint":"{}","bearerToken":"{TOKEN}"}}"#,
        server.endpoint
    ))
    .unwrap();
    assert_eq!(Client::new(v2).unwrap().list_shares().await.unwrap().len(), 2);
}
