//! The server over a SQL catalog: per-recipient tokens, grants, partition filters against
//! hostile requests, the admin API, the audit log, and admin changes while recipients read.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use d2o_catalog::{Admin, CredentialRequest, NewRecipient, SqlCatalog, TableEntry};
use serde_json::{Value, json};

use crate::support::*;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

pub struct Fixture {
    pub app: Router,
    pub catalog: SqlCatalog,
    _dir: tempfile::TempDir,
}

pub fn entry(schema: &str, name: &str, fixture: &str, filter: Option<&str>) -> TableEntry {
    TableEntry {
        id: None,
        schema: schema.into(),
        name: name.into(),
        location: table_dir(fixture).display().to_string(),
        history_shared: true,
        start_version: 0,
        cdf_enabled: None,
        partition_filter: filter.map(str::to_owned),
        comment: None,
    }
}

pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = SqlCatalog::connect(dir.path().join("d2o.db").to_str().expect("utf-8")).await.expect("catalog");
    let (config, _) = d2o_server::config::ServerConfig::parse("version: 1", std::path::Path::new("/")).expect("config");
    let mut state = d2o_server::AppState::from_config(&config, Arc::new(catalog.clone())).expect("state");
    state.admin = Some(Arc::new(catalog.clone()));
    Arc::make_mut(&mut state.settings).admin_token = Some(d2o_server::Secret::new(ADMIN_TOKEN));
    Fixture { app: d2o_server::router(state), catalog, _dir: dir }
}

pub async fn call(app: &Router, method: Method, uri: &str, token: &str, body: Option<Value>) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
    send(app, req.body(body).expect("request")).await
}

pub async fn recipient(f: &Fixture, name: &str, props: &[(&str, &str)]) -> String {
    let properties = props.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let (_, token) = f
        .catalog
        .create_recipient(NewRecipient { name: name.into(), properties, ..Default::default() })
        .await
        .map(with_token)
        .expect("recipient");
    token.token
}

fn file_letters(lines: &[Value]) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = lines
        .iter()
        .skip(2)
        .filter_map(|l| l.get("file").or_else(|| l.get("add")).or_else(|| l.get("cdf")).or_else(|| l.get("remove")))
        .map(|f| {
            let pv = f.get("partitionValues").or_else(|| f["deltaSingleAction"]["add"].get("partitionValues"));
            pv.and_then(|p| p["letter"].as_str()).map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn recipients_see_only_their_grants_and_tokens_follow_their_lifecycle() {
    let f = fixture().await;
    f.catalog.create_share("external_retail", None).await.expect("share");
    f.catalog.create_share("internal", None).await.expect("share");
    f.catalog.add_table("external_retail", entry("retail", "sales", "basic_partitioned", None)).await.expect("table");
    f.catalog.add_table("internal", entry("x", "y", "simple_table", None)).await.expect("table");
    let token = recipient(&f, "partner_co", &[]).await;
    f.catalog.grant("external_retail", "partner_co").await.expect("grant");

    let r = call(&f.app, Method::GET, "/delta-sharing/shares", &token, None).await;
    assert_eq!(r.json()["items"], json!([{"name": "external_retail", "id": r.json()["items"][0]["id"]}]));
    // Another share answers exactly as a missing one.
    let hidden = call(&f.app, Method::GET, "/delta-sharing/shares/internal/schemas", &token, None).await;
    let missing = call(&f.app, Method::GET, "/delta-sharing/shares/nosuch/schemas", &token, None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden.json()["message"].as_str().map(|m| m.replace("internal", "X")),
        missing.json()["message"].as_str().map(|m| m.replace("nosuch", "X"))
    );
    let q = call(
        &f.app,
        Method::POST,
        "/delta-sharing/shares/external_retail/schemas/retail/tables/sales/query",
        &token,
        Some(json!({})),
    )
    .await;
    assert_eq!(q.status, StatusCode::OK);

    // Rotation with a grace period keeps the old token until it ends; revocation ends all.
    let rotated = f
        .catalog
        .rotate_credential("partner_co", 3600, CredentialRequest::default())
        .await
        .map(token_of)
        .expect("rotate");
    for t in [&token, &rotated.token] {
        assert_eq!(call(&f.app, Method::GET, "/delta-sharing/shares", t, None).await.status, StatusCode::OK);
    }
    let last =
        f.catalog.rotate_credential("partner_co", 0, CredentialRequest::default()).await.map(token_of).expect("rotate");
    call(&f.app, Method::GET, "/delta-sharing/shares", &token, None).await.error(StatusCode::UNAUTHORIZED);
    call(&f.app, Method::GET, "/delta-sharing/shares", &rotated.token, None).await.error(StatusCode::UNAUTHORIZED);
    assert_eq!(call(&f.app, Method::GET, "/delta-sharing/shares", &last.token, None).await.status, StatusCode::OK);
    f.catalog.revoke_grant("external_retail", "partner_co").await.expect("revoke grant");
    call(
        &f.app,
        Method::POST,
        "/delta-sharing/shares/external_retail/schemas/retail/tables/sales/query",
        &last.token,
        Some(json!({})),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    f.catalog.revoke_recipient("partner_co").await.expect("revoke");
    call(&f.app, Method::GET, "/delta-sharing/shares", &last.token, None).await.error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn partition_filters_hold_against_hostile_requests() {
    let f = fixture().await;
    f.catalog.create_share("s", None).await.expect("share");
    let filter = "letter = CURRENT_RECIPIENT('letter')";
    f.catalog.add_table("s", entry("sc", "t", "basic_partitioned", Some(filter))).await.expect("table");
    f.catalog.add_table("s", entry("sc", "cdf", "cdf-table", Some("birthday = '2023-12-23'"))).await.expect("table");
    let a = recipient(&f, "a_only", &[("letter", "a")]).await;
    let none = recipient(&f, "no_property", &[]).await;
    for r in ["a_only", "no_property"] {
        f.catalog.grant("s", r).await.expect("grant");
    }
    let q = "/delta-sharing/shares/s/schemas/sc/tables/t/query";
    let hint_b = json!({"op": "equal", "children": [
        {"op": "column", "name": "letter", "valueType": "string"}, {"op": "literal", "value": "b", "valueType": "string"}]})
    .to_string();
    let is_null =
        json!({"op": "isNull", "children": [{"op": "column", "name": "letter", "valueType": "string"}]}).to_string();
    let bodies = [
        json!({}),
        json!({"jsonPredicateHints": hint_b}),
        json!({"jsonPredicateHints": is_null}),
        json!({"predicateHints": ["letter = 'b'", "letter <> 'a'"]}),
        json!({"version": 0}),
        json!({"version": 1, "limitHint": 100}),
        json!({"maxFiles": 1}),
        json!({"startingVersion": 0}),
    ];
    for body in &bodies {
        let r = call(&f.app, Method::POST, q, &a, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text());
        let letters = file_letters(&r.lines());
        assert!(letters.iter().all(|l| l.as_deref() == Some("a")), "{body} leaked {letters:?}");
        let r = call(&f.app, Method::POST, q, &none, Some(body.clone())).await;
        assert!(file_letters(&r.lines()).is_empty(), "{body}: a recipient without the property sees nothing");
    }
    // Both response formats, and the change data feed.
    let r = send(
        &f.app,
        Request::post(q)
            .header("authorization", format!("Bearer {a}"))
            .header("delta-sharing-capabilities", "responseformat=delta")
            .body(Body::from("{}"))
            .expect("request"),
    )
    .await;
    let adds: Vec<Value> = r.lines().into_iter().skip(2).collect();
    assert_eq!(adds.len(), 2);
    assert!(adds.iter().all(|l| l["file"]["deltaSingleAction"]["add"]["partitionValues"]["letter"] == "a"));
    let r =
        call(&f.app, Method::GET, "/delta-sharing/shares/s/schemas/sc/tables/cdf/changes?startingVersion=0", &a, None)
            .await;
    let lines = r.lines();
    assert!(lines.len() > 2);
    for l in &lines[2..] {
        let action = l.as_object().and_then(|o| o.values().next()).expect("action");
        assert_eq!(action["partitionValues"]["birthday"], "2023-12-23", "{l}");
    }
}

#[tokio::test]
async fn admin_api_needs_its_own_token() {
    let f = fixture().await;
    let token = recipient(&f, "r", &[]).await;
    for t in ["", "wrong", token.as_str()] {
        call(&f.app, Method::GET, "/admin/v1/shares", t, None).await.error(StatusCode::UNAUTHORIZED);
    }
    let r = call(
        &f.app,
        Method::POST,
        "/admin/v1/shares",
        ADMIN_TOKEN,
        Some(json!({"name": "external_retail", "comment": "c"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    call(&f.app, Method::POST, "/admin/v1/shares", ADMIN_TOKEN, Some(json!({"name": "EXTERNAL_RETAIL"})))
        .await
        .error(StatusCode::CONFLICT);
    call(&f.app, Method::POST, "/admin/v1/shares", ADMIN_TOKEN, Some(json!({"name": "a/b"})))
        .await
        .error(StatusCode::BAD_REQUEST);
    call(&f.app, Method::POST, "/admin/v1/shares", ADMIN_TOKEN, Some(json!({"nom": "x"})))
        .await
        .error(StatusCode::BAD_REQUEST);
    let table = json!({"schema": "retail", "name": "sales", "location": table_dir("basic_partitioned").display().to_string(), "historyShared": true});
    let table = serde_json::to_value(
        serde_json::from_value::<TableEntry>(table.clone())
            .unwrap_or_else(|_| entry("retail", "sales", "basic_partitioned", None)),
    )
    .expect("json");
    let r = call(&f.app, Method::POST, "/admin/v1/shares/external_retail/tables", ADMIN_TOKEN, Some(table)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &f.app,
        Method::POST,
        "/admin/v1/recipients",
        ADMIN_TOKEN,
        Some(json!({"name": "partner_co", "properties": {"region": "EU"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let new_token = r.json()["token"]["token"].as_str().expect("token").to_owned();
    assert_eq!(
        call(&f.app, Method::PUT, "/admin/v1/shares/external_retail/recipients/partner_co", ADMIN_TOKEN, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&f.app, Method::GET, "/delta-sharing/shares/external_retail", &new_token, None).await.status,
        StatusCode::OK
    );
    let r = call(
        &f.app,
        Method::POST,
        "/admin/v1/recipients/partner_co/rotate",
        ADMIN_TOKEN,
        Some(json!({"graceSeconds": 0})),
    )
    .await;
    let rotated = r.json()["token"]["token"].as_str().expect("rotated").to_owned();
    call(&f.app, Method::GET, "/delta-sharing/shares", &new_token, None).await.error(StatusCode::UNAUTHORIZED);
    assert_eq!(call(&f.app, Method::GET, "/delta-sharing/shares", &rotated, None).await.status, StatusCode::OK);
    let shown = call(&f.app, Method::GET, "/admin/v1/recipients/partner_co", ADMIN_TOKEN, None).await.json();
    assert_eq!(shown["shares"], json!(["external_retail"]));
    assert!(!shown.to_string().contains(&rotated), "secrets are never shown again");
    call(&f.app, Method::POST, "/admin/v1/recipients/partner_co/revoke", ADMIN_TOKEN, None).await;
    call(&f.app, Method::GET, "/delta-sharing/shares", &rotated, None).await.error(StatusCode::UNAUTHORIZED);
    call(&f.app, Method::GET, "/admin/v1/shares/nope", ADMIN_TOKEN, None).await.error(StatusCode::NOT_FOUND);
    assert_eq!(
        call(&f.app, Method::DELETE, "/admin/v1/shares/external_retail", ADMIN_TOKEN, None).await.status,
        StatusCode::NO_CONTENT
    );

    // The audit log has the admin actions and the protocol requests, and no secret.
    let events = call(&f.app, Method::GET, "/admin/v1/audit?limit=1000", ADMIN_TOKEN, None).await.json();
    let actions: Vec<&str> = events.as_array().expect("events").iter().filter_map(|e| e["action"].as_str()).collect();
    for expected in
        ["admin.share.create", "admin.recipient.rotate", "admin.recipient.revoke", "get_share", "list_shares"]
    {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let text = events.to_string();
    for secret in [&new_token, &rotated, &ADMIN_TOKEN.to_owned()] {
        assert!(!text.contains(secret.as_str()), "no token in audit events");
    }
    let unauthorized = events.as_array().expect("events").iter().filter(|e| e["status"] == 401).count();
    assert!(unauthorized >= 3, "refused requests are audited too");
    assert!(actions.contains(&"admin.login"), "refused admin logins are audited: {actions:?}");
    // A refused admin action is recorded with the status it was answered with.
    call(&f.app, Method::POST, "/admin/v1/shares", ADMIN_TOKEN, Some(json!({"name": "external_retail"}))).await;
    let events = call(&f.app, Method::GET, "/admin/v1/audit?action=admin.share.create", ADMIN_TOKEN, None).await.json();
    let conflict = events.as_array().expect("events").iter().find(|e| e["status"] == 409).expect("the conflict");
    assert!(conflict["share"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("external_retail")), "{conflict}");
    assert!(conflict["detail"].as_str().is_some_and(|d| d.contains("already exists")), "{conflict}");
    let filtered =
        call(&f.app, Method::GET, "/admin/v1/audit?recipient=partner_co&action=get_share", ADMIN_TOKEN, None)
            .await
            .json();
    assert_eq!(filtered.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn admin_api_is_off_without_a_catalog() {
    let r = get(&app(), "/admin/v1/shares").await;
    r.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_request_whose_audit_event_cannot_be_written_fails() {
    let f = fixture().await;
    f.catalog.create_share("s", None).await.expect("share");
    f.catalog.add_table("s", entry("sc", "t", "basic_partitioned", None)).await.expect("table");
    let token = recipient(&f, "r", &[]).await;
    f.catalog.grant("s", "r").await.expect("grant");
    // Break the audit table behind the server's back.
    sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .execute(f.catalog_pool())
        .await
        .expect("rename");
    let r = call(&f.app, Method::GET, "/delta-sharing/shares", &token, None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!r.text().contains("audit_events"), "no internals in the message: {}", r.text());
    // A streamed response fails instead of ending cleanly.
    let response = tower::ServiceExt::oneshot(
        f.app.clone(),
        Request::post("/delta-sharing/shares/s/schemas/sc/tables/t/query")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from("{}"))
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(body.is_err(), "the body must fail when its audit event cannot be written");
}

impl Fixture {
    fn catalog_pool(&self) -> &sqlx::AnyPool {
        self.catalog.pool()
    }
}

#[tokio::test]
async fn admin_changes_while_recipients_read() {
    let f = fixture().await;
    f.catalog.create_share("s", None).await.expect("share");
    f.catalog.add_table("s", entry("sc", "t", "basic_partitioned", None)).await.expect("table");
    let token = recipient(&f, "reader", &[]).await;
    f.catalog.grant("s", "reader").await.expect("grant");
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let app = f.app.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    let r = call(
                        &app,
                        Method::POST,
                        "/delta-sharing/shares/s/schemas/sc/tables/t/query",
                        &token,
                        Some(json!({})),
                    )
                    .await;
                    if r.status == StatusCode::OK {
                        assert_eq!(r.lines().len(), 8, "a complete response");
                    }
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    for i in 0..20 {
        f.catalog.add_table("s", entry("other", &format!("t{i}"), "simple_table", None)).await.expect("add");
        let (_, _) = f
            .catalog
            .create_recipient(NewRecipient { name: format!("r{i}"), ..Default::default() })
            .await
            .map(with_token)
            .expect("recipient");
        f.catalog.grant("s", &format!("r{i}")).await.expect("grant");
        if i % 5 == 0 {
            f.catalog.remove_table("s", "other", &format!("t{i}")).await.expect("remove");
        }
    }
    for r in readers {
        let statuses = r.await.expect("reader");
        assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    }
}

/// A reference server's token kept by `catalog import` works even when it is shaped like a JWT
/// and federation policies exist (which send JWT-shaped tokens to the identity provider).
#[tokio::test]
async fn an_imported_jwt_shaped_token_is_a_bearer_token() {
    use d2o_catalog::{ImportShare, ImportSpec, LegacyToken, NewFederationPolicy, SubjectClaim};
    let f = fixture().await;
    let legacy = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let spec = ImportSpec {
        shares: vec![ImportShare {
            name: "s".into(),
            id: None,
            tables: vec![TableEntry { id: Some("t-id".into()), ..entry("sc", "t", "basic_partitioned", None) }],
        }],
        legacy: Some(LegacyToken { recipient: "legacy".into(), token: legacy.into() }),
        prune: false,
    };
    f.catalog.import(&spec, false).await.expect("imported");
    let policy = NewFederationPolicy {
        issuer: "https://idp.example.com".into(),
        audiences: vec!["d2o".into()],
        subject_claim: SubjectClaim::Sub,
        subject: "x".into(),
    };
    recipient(&f, "federated", &[]).await;
    f.catalog.add_federation_policy("federated", policy).await.expect("policy");
    let r = call(&f.app, Method::GET, "/delta-sharing/shares/s/all-tables", legacy, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["items"][0]["id"], "t-id", "the imported id");
    // Another JWT-shaped token still goes to federation, and is refused there.
    let other = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ5In0.c2lnbmF0dXJl";
    let r = call(&f.app, Method::GET, "/delta-sharing/shares", other, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text().contains("federated token was refused"), "{}", r.text());
}

/// The admin API's usage and audit filters: a recipient's reads per bucket, status classes,
/// paging, and bad parameters refused.
#[tokio::test]
async fn the_admin_api_sums_usage_and_filters_the_audit_log_by_status() {
    let f = fixture().await;
    f.catalog.create_share("s", None).await.expect("share");
    f.catalog.add_table("s", entry("sc", "t", "basic_partitioned", None)).await.expect("table");
    let token = recipient(&f, "partner_co", &[]).await;
    f.catalog.grant("s", "partner_co").await.expect("grant");
    for _ in 0..3 {
        call(&f.app, Method::GET, "/delta-sharing/shares/s/schemas/sc/tables/t/metadata", &token, None).await;
    }
    call(&f.app, Method::GET, "/delta-sharing/shares/nope", &token, None).await.error(StatusCode::NOT_FOUND);
    let now = chrono::Utc::now().timestamp_millis();
    // One bucket of three hours around now.
    let since = now - 7_200_000;
    let uri = |by: &str| format!("/admin/v1/usage?by={by}&since={since}&until={}&bucketMs=10800000", now + 3_600_000);
    let by_recipient = call(&f.app, Method::GET, &uri("recipient"), ADMIN_TOKEN, None).await.json();
    let points = by_recipient.as_array().expect("points");
    assert_eq!(points.len(), 1, "{by_recipient}");
    assert_eq!((points[0]["key"].as_str(), points[0]["requests"].as_i64()), (Some("partner_co"), Some(4)));
    let by_table = call(&f.app, Method::GET, &uri("table"), ADMIN_TOKEN, None).await.json();
    assert_eq!(by_table[0]["key"], "s.sc.t");
    assert_eq!(by_table[0]["requests"], 3);
    for bad in
        ["/admin/v1/usage?bucketMs=1000", "/admin/v1/usage?since=0&bucketMs=1000", "/admin/v1/usage?since=0&bucketMs=x"]
    {
        call(&f.app, Method::GET, bad, ADMIN_TOKEN, None).await.error(StatusCode::BAD_REQUEST);
    }
    let refused = call(&f.app, Method::GET, "/admin/v1/audit?recipient=partner_co&status=4xx", ADMIN_TOKEN, None).await;
    let refused = refused.json();
    assert_eq!(refused.as_array().map(Vec::len), Some(1), "{refused}");
    assert_eq!(refused[0]["status"], 404);
    let page =
        call(&f.app, Method::GET, "/admin/v1/audit?recipient=partner_co&limit=2&offset=2", ADMIN_TOKEN, None).await;
    assert_eq!(page.json().as_array().map(Vec::len), Some(2));
    call(&f.app, Method::GET, "/admin/v1/audit?status=teapot", ADMIN_TOKEN, None).await.error(StatusCode::BAD_REQUEST);
}

/// Audit retention: `serve` with a retention deletes older events (in batches) and keeps the
/// rest, while it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prunes_the_audit_log_to_its_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = SqlCatalog::connect(dir.path().join("d2o.db").to_str().expect("utf-8")).await.expect("catalog");
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    for (i, age_days) in [40, 31, 29, 1].into_iter().enumerate() {
        let event = d2o_catalog::AuditEvent {
            time_ms: now - age_days * day,
            principal: "partner_co".into(),
            action: format!("query-{i}"),
            status: 200,
            ..Default::default()
        };
        catalog.append_audit(&event).await.expect("event");
    }
    assert_eq!(
        d2o_server::retention::prune(&catalog, now - 35 * day, 1).await.expect("pruned"),
        1,
        "one batch at a time, to the end"
    );
    let (config, _) =
        d2o_server::config::ServerConfig::parse("version: 1\nauditRetentionDays: 30\n", std::path::Path::new("/"))
            .expect("config");
    let mut state = d2o_server::AppState::from_config(&config, Arc::new(catalog.clone())).expect("state");
    state.admin = Some(Arc::new(catalog.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(d2o_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let mut left = Vec::new();
    for _ in 0..100 {
        left = catalog.audit(&d2o_catalog::AuditFilter::default()).await.expect("read");
        if left.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let actions: Vec<&str> = left.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["query-3", "query-2"], "events of the last 30 days stay");
    let _ = stop.send(());
    server.await.expect("joined").expect("served");
}
