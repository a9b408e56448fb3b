//! `/metrics` (guarded by the admin token, or open on the metrics listener's router) and
//! `/ready`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::support::{Reply, get, send, state_with};

const ADMIN_TOKEN: &str = "an-admin-token-for-metrics";

async fn scrape(app: &axum::Router, token: Option<&str>) -> Reply {
    let mut req = Request::builder().method(Method::GET).uri("/metrics");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    send(app, req.body(Body::empty()).expect("request")).await
}

/// The value of the sample whose line starts with `series` (name and labels, as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_need_the_admin_token_on_the_protocol_listener() {
    let app = crate::support::app();
    scrape(&app, None).await.error(StatusCode::NOT_FOUND);

    let mut state = state_with("");
    Arc::make_mut(&mut state.settings).admin_token = Some(d2o_server::Secret::new(ADMIN_TOKEN));
    let app = d2o_server::router(state);
    scrape(&app, None).await.error(StatusCode::UNAUTHORIZED);
    scrape(&app, Some(crate::support::TOKEN)).await.error(StatusCode::UNAUTHORIZED);

    assert_eq!(get(&app, "/delta-sharing/shares").await.status, StatusCode::OK);
    let reply = scrape(&app, Some(ADMIN_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = reply.text();
    assert!(text.contains("# TYPE d2o_requests_total counter"), "{text}");
    // The recorder is the process's: other tests' requests (refused ones too) are in it.
    let counted = |l: &&str| {
        l.starts_with("d2o_requests_total{") && l.contains(r#"route="list_shares""#) && l.contains(r#"status="200""#)
    };
    assert!(text.lines().any(|l| counted(&l)), "list_shares is counted by its route and status: {text}");
    assert!(text.contains("# TYPE d2o_request_duration_seconds histogram"), "{text}");
    assert!(sample(&text, r#"d2o_request_duration_seconds_count{route="list_shares"}"#).is_some_and(|n| n >= 1.0));
    assert!(!text.contains("/delta-sharing/shares"), "raw paths are never labels: {text}");
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_without_a_token() {
    let app = d2o_server::metrics_router(state_with(""));
    let reply = scrape(&app, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.text().contains("d2o_build_info{version="), "{}", reply.text());
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/ready").await.status, StatusCode::OK);
    // Only those: the protocol is not served there.
    get(&app, "/delta-sharing/shares").await.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_yaml_catalog_is_always_ready() {
    let reply = get(&crate::support::app(), "/ready").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), serde_json::json!({"status": "ready"}));
}
