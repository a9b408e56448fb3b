use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn health_needs_no_token() {
    let r = send(&app(), Request::get("/health").body(Body::empty()).expect("valid")).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_json() {
    let app = app();
    let r = send(&app, Request::get("/delta-sharing/shares").body(Body::empty()).expect("valid")).await;
    assert_eq!(r.error(StatusCode::UNAUTHORIZED), "UNAUTHENTICATED");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = send(
        &app,
        Request::get("/delta-sharing/shares")
            .header("authorization", "Bearer wrong")
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    r.error(StatusCode::UNAUTHORIZED);
    // Also on table endpoints and for a token that is a prefix of the right one.
    let r = send(
        &app,
        Request::get(t("simple_table", "/metadata"))
            .header("authorization", format!("Bearer {}", &TOKEN[..4]))
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    r.error(StatusCode::UNAUTHORIZED);
    // The scheme is case-insensitive.
    let r = send(
        &app,
        Request::get("/delta-sharing/shares")
            .header("authorization", format!("bearer {TOKEN}"))
            .body(Body::empty())
            .expect("valid"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn list_shares_is_one_line_of_json() {
    let r = get(&app(), "/delta-sharing/shares").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    assert!(!r.text().trim_end().contains('\n'), "one line: {}", r.text());
    let names: Vec<_> = r.json()["items"].as_array().expect("items").iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("s1"), Value::from("plain")]);
    assert!(r.json().get("nextPageToken").is_none());
}

async fn collect_pages(app: &axum::Router, path: &str, page: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        let uri = match &token {
            Some(t) => format!("{path}?maxResults={page}&pageToken={t}"),
            None => format!("{path}?maxResults={page}"),
        };
        let r = get(app, &uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        let page_items = body["items"].as_array().cloned().unwrap_or_default();
        assert!(page_items.len() <= page as usize);
        items.extend(page_items);
        match body.get("nextPageToken").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return items,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn pagination_covers_every_item_once() {
    let app = app();
    let all =
        get(&app, "/delta-sharing/shares/s1/all-tables").await.json()["items"].as_array().cloned().expect("items");
    assert!(all.len() >= 10, "every fixture is listed");
    for page in [1, 3, 500] {
        assert_eq!(collect_pages(&app, "/delta-sharing/shares/s1/all-tables", page).await, all);
    }
    let tables = get(&app, "/delta-sharing/shares/s1/schemas/sc1/tables").await.json()["items"]
        .as_array()
        .cloned()
        .expect("items");
    assert_eq!(collect_pages(&app, "/delta-sharing/shares/s1/schemas/sc1/tables", 2).await, tables);
    assert_eq!(tables, all, "one schema: all-tables equals its tables");
    for item in &tables {
        assert_eq!(item["share"], "s1");
        assert_eq!(item["schema"], "sc1");
        assert!(item["name"].is_string());
    }
    assert_eq!(collect_pages(&app, "/delta-sharing/shares", 1).await.len(), 2);
    let zero = get(&app, "/delta-sharing/shares?maxResults=0").await.json();
    assert_eq!(zero["items"].as_array().map(Vec::len), Some(0));
    assert!(zero["nextPageToken"].is_string());
}

#[tokio::test]
async fn bad_pagination_parameters_are_400() {
    let app = app();
    for uri in [
        "/delta-sharing/shares?maxResults=abc",
        "/delta-sharing/shares?maxResults=-1",
        "/delta-sharing/shares?maxResults=501",
        "/delta-sharing/shares?pageToken=garbage",
        "/delta-sharing/shares/s1/schemas?pageToken=eyJsIjoic2hhcmVzIiwicCI6IjEifQ",
    ] {
        assert_eq!(get(&app, uri).await.error(StatusCode::BAD_REQUEST), "INVALID_PARAMETER_VALUE", "{uri}");
    }
    // A token of one listing is refused by another.
    let token = get(&app, "/delta-sharing/shares?maxResults=1").await.json()["nextPageToken"]
        .as_str()
        .expect("token")
        .to_owned();
    get(&app, &format!("/delta-sharing/shares/s1/all-tables?pageToken={token}")).await.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn names_are_case_insensitive_and_unknown_ones_are_404() {
    let app = app();
    let r = get(&app, "/delta-sharing/shares/S1").await;
    assert_eq!(r.json()["share"]["name"], "s1");
    let schemas = get(&app, "/delta-sharing/shares/S1/schemas").await.json();
    assert_eq!(schemas["items"][0]["name"], "sc1");
    assert_eq!(schemas["items"][0]["share"], "s1");
    for uri in [
        "/delta-sharing/shares/nope",
        "/delta-sharing/shares/nope/schemas",
        "/delta-sharing/shares/nope/all-tables",
        "/delta-sharing/shares/s1/schemas/nope/tables",
        "/delta-sharing/nothing-here",
    ] {
        assert_eq!(get(&app, uri).await.error(StatusCode::NOT_FOUND), "RESOURCE_DOES_NOT_EXIST", "{uri}");
    }
    let msg = get(&app, "/delta-sharing/shares/nope").await.json()["message"].as_str().map(str::to_owned);
    assert!(msg.is_some_and(|m| m.contains("'nope'")));
}

#[tokio::test]
async fn wrong_method_is_a_json_error() {
    let r = send(&app(), request(Method::DELETE, "/delta-sharing/shares").body(Body::empty()).expect("valid")).await;
    r.error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn percent_encoded_names_are_decoded() {
    let r = get(&app(), "/delta-sharing/shares/%73%31/schemas").await;
    assert_eq!(r.status, StatusCode::OK);
}
