//! The web console (`/console`) in-process: sessions, CSRF tokens, the origin check, escaping,
//! the pages' headers, and the actions a provider takes, checked in the catalog. (The real
//! browser drives it in `tests/python/test_console.py`.)

use axum::body::Body;
use axum::http::{Request, StatusCode};
use d2o_catalog::{Admin, AuditFilter, NewRecipient};

use crate::catalog::{Fixture, entry, fixture, recipient};
use crate::support::*;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
const ORIGIN: &str = "http://localhost";

/// Form fields or headers.
type Pairs<'a> = Vec<(&'a str, &'a str)>;
type Headers<'a> = &'a [(&'a str, &'a str)];

fn page_request(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::get(uri).header("host", "localhost");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.body(Body::empty()).expect("request")
}

fn form_request(uri: &str, cookie: Option<&str>, body: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut req =
        Request::post(uri).header("host", "localhost").header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_owned())).expect("request")
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Logs in; returns the `Cookie` header value of the session.
async fn login(f: &Fixture) -> String {
    let reply =
        send(&f.app, form_request("/console/login", None, &form(&[("token", ADMIN_TOKEN)]), &[("origin", ORIGIN)]))
            .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let set = reply.header("set-cookie").expect("a session cookie").to_owned();
    set.split(';').next().expect("name=value").to_owned()
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().expect("value").to_owned()
}

async fn page(f: &Fixture, uri: &str, cookie: &str) -> Reply {
    send(&f.app, page_request(uri, Some(cookie))).await
}

#[tokio::test]
async fn pages_need_a_session_and_actions_are_refused_without_one() {
    let f = fixture().await;
    for uri in ["/console", "/console/shares", "/console/recipients/x", "/console/audit"] {
        let r = send(&f.app, page_request(uri, None)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(r.header("location"), Some("/console/login"), "{uri}");
    }
    let r = send(&f.app, page_request("/console/login", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.header("content-security-policy").expect("a CSP").to_owned();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // An action without a session changes nothing, even with a made-up token.
    let body = form(&[("name", "sneaky"), ("csrf", "made-up")]);
    let r = send(&f.app, form_request("/console/shares", None, &body, &[("origin", ORIGIN)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // A forged or altered cookie is no session.
    let cookie = login(&f).await;
    let forged = format!("{}x", cookie);
    let r = send(&f.app, page_request("/console", Some(&forged))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(f.catalog.list_shares().await.expect("list").is_empty());
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_wrong_tokens_are_refused_and_audited() {
    let f = fixture().await;
    let r =
        send(&f.app, form_request("/console/login", None, &form(&[("token", "wrong")]), &[("origin", ORIGIN)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("set-cookie").is_none());
    assert!(r.text().contains("not the admin token"));
    let reply =
        send(&f.app, form_request("/console/login", None, &form(&[("token", ADMIN_TOKEN)]), &[("origin", ORIGIN)]))
            .await;
    let set = reply.header("set-cookie").expect("cookie");
    for part in ["d2o_console=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains(ADMIN_TOKEN), "the cookie does not hold the token");
    let cookie = set.split(';').next().expect("cookie").to_owned();
    let r = page(&f, "/console", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("Usage by recipient"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let events = f
        .catalog
        .audit(&AuditFilter { action: Some("admin.console.login".into()), ..Default::default() })
        .await
        .expect("audit");
    let statuses: Vec<(String, u16)> = events.iter().map(|e| (e.principal.clone(), e.status)).collect();
    assert!(statuses.contains(&("anonymous".into(), 401)) && statuses.contains(&("admin".into(), 200)), "{statuses:?}");
    // A login from another site is refused before the token is looked at.
    let r = send(
        &f.app,
        form_request("/console/login", None, &form(&[("token", ADMIN_TOKEN)]), &[("origin", "https://evil.example")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Logging out ends the cookie.
    let csrf = csrf_of(&page(&f, "/console", &cookie).await.text());
    let r =
        send(&f.app, form_request("/console/logout", Some(&cookie), &form(&[("csrf", &csrf)]), &[("origin", ORIGIN)]))
            .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
}

#[tokio::test]
async fn forms_need_the_sessions_csrf_token_and_the_consoles_origin() {
    let f = fixture().await;
    let cookie = login(&f).await;
    let csrf = csrf_of(&page(&f, "/console/shares", &cookie).await.text());
    let other = login(&f).await;
    let other_csrf = csrf_of(&page(&f, "/console/shares", &other).await.text());
    assert_ne!(csrf, other_csrf, "each session has its own token");
    let attempts: [(&str, Pairs, Headers); 5] = [
        ("no token", vec![("name", "s1")], &[("origin", ORIGIN)]),
        ("a wrong token", vec![("name", "s1"), ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAA")], &[("origin", ORIGIN)]),
        ("another session's token", vec![("name", "s1"), ("csrf", &other_csrf)], &[("origin", ORIGIN)]),
        ("another origin", vec![("name", "s1"), ("csrf", &csrf)], &[("origin", "https://evil.example")]),
        ("a cross-site fetch", vec![("name", "s1"), ("csrf", &csrf)], &[("sec-fetch-site", "cross-site")]),
    ];
    for (what, fields, headers) in attempts {
        let r = send(&f.app, form_request("/console/shares", Some(&cookie), &form(&fields), headers)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.text());
    }
    assert!(f.catalog.list_shares().await.expect("list").is_empty(), "nothing was created");
    let r = send(
        &f.app,
        form_request(
            "/console/shares",
            Some(&cookie),
            &form(&[("name", "s1"), ("csrf", &csrf)]),
            &[("origin", ORIGIN), ("sec-fetch-site", "same-origin")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.header("location"), Some("/console/shares/s1"));
    let shares = f.catalog.list_shares().await.expect("list");
    assert_eq!(shares.len(), 1);
    // The action is in the audit log as the admin's, like the admin API's.
    let events = f
        .catalog
        .audit(&AuditFilter { action: Some("admin.share.create".into()), ..Default::default() })
        .await
        .expect("audit");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].principal, "admin");
    // The outcome is shown once, on the page the action led to.
    let flash = r.header("set-cookie").expect("flash").split(';').next().expect("flash").to_owned();
    let shown = page(&f, "/console/shares/s1", &format!("{cookie}; {flash}")).await;
    assert!(shown.text().contains("Share s1 created."), "{}", shown.text());
    assert!(
        shown.headers.get_all("set-cookie").iter().any(|c| c.to_str().is_ok_and(|c| c.contains("d2o_console_flash=;")))
    );
    // A form post must be a form.
    let r = send(
        &f.app,
        Request::post("/console/shares")
            .header("host", "localhost")
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(Body::from(format!("{{\"name\":\"s2\",\"csrf\":\"{csrf}\"}}")))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn names_render_as_text() {
    let f = fixture().await;
    let xss_share = "<img src=x onerror=alert(1)>";
    let xss_comment = "<script>alert(1)</script>";
    f.catalog.create_share(xss_share, Some(xss_comment)).await.expect("share");
    f.catalog
        .add_table(xss_share, entry("\"><svg onload=alert(1)>", "t", "basic_partitioned", None))
        .await
        .expect("table");
    f.catalog
        .create_recipient(NewRecipient {
            name: "r\"'><b>".into(),
            comment: Some(xss_comment.into()),
            properties: [("k<".to_owned(), "<i>v".to_owned())].into(),
            ..Default::default()
        })
        .await
        .expect("recipient");
    f.catalog.grant(xss_share, "r\"'><b>").await.expect("grant");
    let cookie = login(&f).await;
    let share_page = format!(
        "/console/shares/{}",
        percent_encoding::utf8_percent_encode(xss_share, percent_encoding::NON_ALPHANUMERIC)
    );
    let recipient_page = "/console/recipients/r%22%27%3E%3Cb%3E";
    for uri in ["/console/shares", share_page.as_str(), "/console/recipients", recipient_page] {
        let r = page(&f, uri, &cookie).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let html = r.text();
        for raw in [xss_share, xss_comment, "<svg onload", "<b>", "<i>v"] {
            assert!(!html.contains(raw), "{uri} has {raw} unescaped");
        }
        assert!(html.contains("&lt;"), "{uri} shows the names as text");
    }
}

#[tokio::test]
async fn a_provider_shares_a_table_with_a_new_recipient_who_reads_it() {
    let f = fixture().await;
    let cookie = login(&f).await;
    let csrf = csrf_of(&page(&f, "/console/shares", &cookie).await.text());
    let post = |uri: &'static str, fields: Vec<(&'static str, String)>| {
        let mut fields = fields;
        fields.push(("csrf", csrf.clone()));
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        send(&f.app, form_request(uri, Some(&cookie), &body, &[("origin", ORIGIN)]))
    };
    assert_eq!(post("/console/shares", vec![("name", "retail".into())]).await.status, StatusCode::SEE_OTHER);
    // The location is checked before the table is added.
    let r = post(
        "/console/shares/retail/tables",
        vec![("schema", "s".into()), ("table", "t".into()), ("location", "/nonexistent/table".into())],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(f.catalog.show_share("retail").await.expect("share").tables.is_empty(), "no table at a bad location");
    let location = table_dir("basic_partitioned").display().to_string();
    let r = post(
        "/console/shares/retail/tables",
        vec![("schema", "s".into()), ("table", "t".into()), ("location", location), ("history_shared", "on".into())],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let share = f.catalog.show_share("retail").await.expect("share");
    assert_eq!(share.tables.len(), 1);
    assert!(share.tables[0].history_shared);
    let r = page(&f, "/console/shares/retail", &cookie).await;
    assert!(r.text().contains("s.t"), "the table is listed with its version");

    // A new recipient's activation link is the answer to the post, shown once.
    let r = post(
        "/console/recipients",
        vec![
            ("name", "partner_co".into()),
            ("credential", "bearer_token".into()),
            ("properties", "region=EU\n".into()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let html = r.text();
    let at = html.find("/activate/").expect("the link");
    let secret: String = html[at + "/activate/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(secret.len() >= 40, "{secret}");
    let shown = page(&f, "/console/recipients/partner_co", &cookie).await.text();
    assert!(!shown.contains(&secret), "the link is not shown again");
    assert!(shown.contains("awaiting activation"));
    let recipient = f.catalog.show_recipient("partner_co").await.expect("recipient");
    assert_eq!(recipient.properties.get("region").map(String::as_str), Some("EU"));

    // Properties, IP access list and rate limit from the recipient's page.
    let r =
        post("/console/recipients/partner_co/properties", vec![("properties", "region=US\ntier=gold".into())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = post("/console/recipients/partner_co/properties", vec![("properties", "no value".into())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "refused with a message on the page");
    let r =
        post("/console/recipients/partner_co/ip-access", vec![("networks", "10.0.0.0/8\n127.0.0.0/8".into())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = post("/console/recipients/partner_co/rate-limit", vec![("rate", "600/min".into()), ("burst", "20".into())])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let shown = f.catalog.show_recipient("partner_co").await.expect("recipient");
    assert_eq!(
        shown.properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        ["region=US", "tier=gold"]
    );
    assert_eq!(shown.ip_access_list, Some(vec!["10.0.0.0/8".to_owned(), "127.0.0.0/8".to_owned()]));
    assert_eq!(shown.rate_limit.map(|l| (l.rate.to_string(), l.burst)), Some(("600/min".to_owned(), 20)));
    let r = post("/console/recipients/partner_co/ip-access", vec![("networks", String::new())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.catalog.show_recipient("partner_co").await.expect("recipient").ip_access_list, None);

    // Grant from the recipient's page; the read shows in the audit page and the usage chart.
    let r = post(
        "/console/grants",
        vec![("share", "retail".into()), ("recipient", "partner_co".into()), ("back", "recipient".into())],
    )
    .await;
    assert_eq!(r.header("location"), Some("/console/recipients/partner_co"));
    let (_, issued) = f.catalog.redeem_activation(&secret).await.expect("redeem");
    let read = send(
        &f.app,
        Request::get("/delta-sharing/shares/retail/schemas/s/tables/t/metadata")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", issued.token))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    let audit = page(&f, "/console/audit?recipient=partner_co&status=ok", &cookie).await.text();
    assert!(audit.contains("<code>metadata</code>"), "{audit}");
    let overview = page(&f, "/console", &cookie).await.text();
    assert!(overview.contains("<title>partner_co · "), "the chart has the read");
    assert!(overview.contains("retail.s.t"), "and the table");

    // Revoking from the console cuts the recipient off.
    let r = post("/console/recipients/partner_co/revoke", vec![]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let refused = send(
        &f.app,
        Request::get("/delta-sharing/shares")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", issued.token))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(page(&f, "/console/recipients/partner_co", &cookie).await.text().contains("revoked"));
}

#[tokio::test]
async fn the_audit_page_filters_and_pages() {
    let f = fixture().await;
    let _ = recipient(&f, "partner_co", &[]).await;
    for i in 0..60 {
        let event = d2o_catalog::AuditEvent {
            time_ms: 1_000_000 + i,
            principal: "partner_co".into(),
            action: if i % 2 == 0 { "query".into() } else { "metadata".into() },
            status: if i % 3 == 0 { 403 } else { 200 },
            ..Default::default()
        };
        f.catalog.append_audit(&event).await.expect("event");
    }
    let cookie = login(&f).await;
    let first = page(&f, "/console/audit?recipient=partner_co", &cookie).await.text();
    assert_eq!(first.matches("<tr><td class=\"nowrap\">").count(), 50, "a page is 50 events");
    assert!(first.contains("Older"));
    let at = first.find("href=\"/console/audit?").expect("older link") + "href=\"".len();
    let older = first[at..].split('"').next().expect("link").replace("&amp;", "&");
    let second = page(&f, &older, &cookie).await.text();
    assert_eq!(second.matches("<tr><td class=\"nowrap\">").count(), 10);
    assert!(second.contains("Newer"));
    let errors = page(&f, "/console/audit?recipient=partner_co&status=4xx", &cookie).await.text();
    assert_eq!(errors.matches("<tr><td class=\"nowrap\">").count(), 20);
    let bad = page(&f, "/console/audit?since=yesterday", &cookie).await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.text().contains("is not a time"));
}

#[tokio::test]
async fn the_console_is_absent_without_an_admin_token() {
    let app = app();
    let r = send(&app, page_request("/console/login", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
