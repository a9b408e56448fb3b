//! Page and refresh tokens replayed where they were not issued: on another entry of the same
//! Delta table (with a later start version), another table, another share over the same
//! location, by another recipient, and with a larger page. Regression for the probe's finding
//! that a page token from `sales` read version 1 of `sales_sv3` (start version 3): rows deleted
//! before the provider's cut.

use axum::http::{Method, StatusCode};
use d2o_catalog::{Admin, TableEntry};
use serde_json::{Value, json};

use crate::catalog::{Fixture, call, entry, fixture, recipient};
use crate::table::urlencode;

fn path(share: &str, table: &str, suffix: &str) -> String {
    format!("/delta-sharing/shares/{share}/schemas/sc/tables/{table}{suffix}")
}

fn end_stream(r: &crate::support::Reply) -> Value {
    r.lines().into_iter().rev().find_map(|l| l.get("endStreamAction").cloned()).expect("an endStreamAction")
}

/// Share `s`: `sales` and `sales_sv3` over one table (the second from version 3), `other`,
/// `cdf` and `cdf_sv2` over the change-feed table; share `s2`: `sales` and `cdf` again, over
/// the same locations. `r1` may read both shares, `r2` only `s`.
async fn setup() -> (Fixture, String, String) {
    let f = fixture().await;
    let from =
        |name: &str, fixture: &str, start: u64| TableEntry { start_version: start, ..entry("sc", name, fixture, None) };
    for share in ["s", "s2"] {
        f.catalog.create_share(share, None).await.expect("share");
        f.catalog.add_table(share, from("sales", "basic-with-inserts-deletes-checkpoint", 0)).await.expect("table");
        f.catalog.add_table(share, from("cdf", "cdf-table", 0)).await.expect("table");
    }
    f.catalog.add_table("s", from("sales_sv3", "basic-with-inserts-deletes-checkpoint", 3)).await.expect("table");
    f.catalog.add_table("s", from("cdf_sv2", "cdf-table", 2)).await.expect("table");
    f.catalog.add_table("s", from("other", "simple_table", 0)).await.expect("table");
    let r1 = recipient(&f, "r1", &[]).await;
    let r2 = recipient(&f, "r2", &[]).await;
    for (share, who) in [("s", "r1"), ("s2", "r1"), ("s", "r2")] {
        f.catalog.grant(share, who).await.expect("grant");
    }
    (f, r1, r2)
}

/// Where a token is replayed, and whether it must work there.
struct Replay<'a> {
    what: &'a str,
    token: &'a str,
    share: &'a str,
    table: &'a str,
    accepted: bool,
}

fn replays<'a>(r1: &'a str, r2: &'a str, table: &'a str, entry_of_same_table: &'a str) -> Vec<Replay<'a>> {
    vec![
        Replay { what: "where it was issued", token: r1, share: "s", table, accepted: true },
        Replay {
            what: "another entry of the same table",
            token: r1,
            share: "s",
            table: entry_of_same_table,
            accepted: false,
        },
        Replay { what: "another table", token: r1, share: "s", table: "other", accepted: false },
        Replay { what: "another share over the same location", token: r1, share: "s2", table, accepted: false },
        Replay { what: "another recipient", token: r2, share: "s", table, accepted: false },
    ]
}

fn check(what: &str, r: &crate::support::Reply, accepted: bool) {
    if accepted {
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text());
    } else {
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "INVALID_PARAMETER_VALUE", "{what}");
    }
}

#[tokio::test]
async fn query_page_tokens_work_only_where_they_were_issued() {
    let (f, r1, r2) = setup().await;
    let body = json!({"version": 1, "maxFiles": 1});
    let first = call(&f.app, Method::POST, &path("s", "sales", "/query"), &r1, Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let token = end_stream(&first)["nextPageToken"].as_str().expect("a next page").to_owned();
    // The direct request is refused on the entry that starts at version 3 ...
    call(&f.app, Method::POST, &path("s", "sales_sv3", "/query"), &r1, Some(body.clone()))
        .await
        .error(StatusCode::BAD_REQUEST);
    // ... and so is every replay of the token outside its scope.
    let mut next = body.clone();
    next["pageToken"] = token.clone().into();
    for replay in replays(&r1, &r2, "sales", "sales_sv3") {
        let r =
            call(&f.app, Method::POST, &path(replay.share, replay.table, "/query"), replay.token, Some(next.clone()))
                .await;
        check(replay.what, &r, replay.accepted);
    }
    // Later pages cannot be made larger (or otherwise different).
    for changed in [
        json!({"version": 1, "maxFiles": 1000}),
        json!({"version": 1}),
        json!({"version": 1, "maxFiles": 1, "limitHint": 1}),
    ] {
        let mut body = changed.clone();
        body["pageToken"] = token.clone().into();
        let r = call(&f.app, Method::POST, &path("s", "sales", "/query"), &r1, Some(body)).await;
        check(&format!("with {changed}"), &r, false);
    }
}

#[tokio::test]
async fn refresh_tokens_work_only_where_they_were_issued() {
    let (f, r1, r2) = setup().await;
    let first =
        call(&f.app, Method::POST, &path("s", "sales", "/query"), &r1, Some(json!({"includeRefreshToken": true})))
            .await;
    let token = end_stream(&first)["refreshToken"].as_str().expect("a refresh token").to_owned();
    for replay in replays(&r1, &r2, "sales", "sales_sv3") {
        let body = json!({"refreshToken": token});
        let r = call(&f.app, Method::POST, &path(replay.share, replay.table, "/query"), replay.token, Some(body)).await;
        check(replay.what, &r, replay.accepted);
    }
    // A page token is not a refresh token, nor the other way round.
    let paged = call(&f.app, Method::POST, &path("s", "sales", "/query"), &r1, Some(json!({"maxFiles": 1}))).await;
    let page_token = end_stream(&paged)["nextPageToken"].as_str().expect("a next page").to_owned();
    let r =
        call(&f.app, Method::POST, &path("s", "sales", "/query"), &r1, Some(json!({"refreshToken": page_token}))).await;
    check("a page token as a refresh token", &r, false);
    let r = call(
        &f.app,
        Method::POST,
        &path("s", "sales", "/query"),
        &r1,
        Some(json!({"maxFiles": 1, "pageToken": token})),
    )
    .await;
    check("a refresh token as a page token", &r, false);
}

#[tokio::test]
async fn change_feed_page_tokens_work_only_where_they_were_issued() {
    let (f, r1, r2) = setup().await;
    let query = "?startingVersion=2&maxFiles=1";
    let first = call(&f.app, Method::GET, &path("s", "cdf", &format!("/changes{query}")), &r1, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let token = end_stream(&first)["nextPageToken"].as_str().expect("a next page").to_owned();
    let next = format!("/changes{query}&pageToken={}", urlencode(&token));
    for replay in replays(&r1, &r2, "cdf", "cdf_sv2") {
        let r = call(&f.app, Method::GET, &path(replay.share, replay.table, &next), replay.token, None).await;
        check(replay.what, &r, replay.accepted);
    }
    let larger = format!("/changes?startingVersion=2&maxFiles=50&pageToken={}", urlencode(&token));
    check("a larger page", &call(&f.app, Method::GET, &path("s", "cdf", &larger), &r1, None).await, false);
    // Nor is it a page token of a streaming query.
    let body = json!({"startingVersion": 2, "maxFiles": 1, "pageToken": token});
    let r = call(&f.app, Method::POST, &path("s", "cdf", "/query"), &r1, Some(body)).await;
    check("as a streaming page token", &r, false);
}

#[tokio::test]
async fn streaming_page_tokens_work_only_where_they_were_issued() {
    let (f, r1, r2) = setup().await;
    let body = json!({"startingVersion": 3, "maxFiles": 1});
    let first = call(&f.app, Method::POST, &path("s", "sales", "/query"), &r1, Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let token = end_stream(&first)["nextPageToken"].as_str().expect("a next page").to_owned();
    let mut next = body.clone();
    next["pageToken"] = token.into();
    for replay in replays(&r1, &r2, "sales", "sales_sv3") {
        // The streaming read from version 3 is allowed on `sales_sv3` too: only the binding
        // refuses it there.
        let r =
            call(&f.app, Method::POST, &path(replay.share, replay.table, "/query"), replay.token, Some(next.clone()))
                .await;
        check(replay.what, &r, replay.accepted);
    }
}
