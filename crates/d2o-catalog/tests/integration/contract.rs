//! The contract every catalog backend fulfils (see `d2o_catalog::Catalog` and `Admin`).

use std::collections::BTreeMap;
use std::sync::Arc;

use d2o_catalog::credential::DEFAULT_ACTIVATION_LIFETIME_SECS;
use d2o_catalog::{
    ActivationRequest, ActivationState, Admin, AuditEvent, AuditFilter, Catalog, CatalogError, CredentialKind,
    CredentialRequest, Issued, IssuedActivation, NewFederationPolicy, NewRecipient, PageRequest, PartitionFilter,
    SqlCatalog, SubjectClaim, TableEntry, UsageBy, UsageQuery,
};

/// What the contract runs against: the recipient side and the provider side of one catalog, and
/// a second, independent handle on the same data (the CLI on the same database, or another
/// replica) for changes made elsewhere.
pub struct Subject {
    pub catalog: Arc<dyn Catalog>,
    pub admin: Arc<dyn Admin>,
    pub elsewhere: Arc<dyn Admin>,
}

fn table(schema: &str, name: &str) -> TableEntry {
    TableEntry {
        id: None,
        schema: schema.into(),
        name: name.into(),
        location: format!("/data/{schema}/{name}"),
        history_shared: true,
        start_version: 0,
        cdf_enabled: None,
        partition_filter: None,
        comment: None,
    }
}

fn recipient(name: &str) -> NewRecipient {
    NewRecipient { name: name.into(), ..Default::default() }
}

/// Waits out the catalog's freshness window: a change made elsewhere is guaranteed to reach
/// requests that start more than 1 ms after it committed.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub async fn shares_and_tables(c: &Subject) {
    let s = c.admin.create_share("External_Retail", Some("for partners")).await.expect("created");
    assert_eq!(s.name, "External_Retail");
    assert!(matches!(c.admin.create_share("external_retail", None).await, Err(CatalogError::AlreadyExists { .. })));
    c.admin.add_table("external_retail", table("retail", "sales")).await.expect("added");
    let s = c.admin.add_table("EXTERNAL_RETAIL", table("retail", "customers")).await.expect("added");
    assert_eq!(s.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["customers", "sales"]);
    assert_eq!(s.tables[0].location, "file:///data/retail/customers/");
    assert!(matches!(
        c.admin.add_table("external_retail", table("Retail", "SALES")).await,
        Err(CatalogError::AlreadyExists { .. })
    ));
    assert!(matches!(c.admin.add_table("nope", table("a", "b")).await, Err(CatalogError::NotFound { .. })));
    let s = c.admin.comment_share("external_retail", Some("new comment")).await.expect("commented");
    assert_eq!(s.comment.as_deref(), Some("new comment"));
    let s = c.admin.remove_table("external_retail", "RETAIL", "Sales").await.expect("removed");
    assert_eq!(s.tables.len(), 1);
    assert!(matches!(
        c.admin.remove_table("external_retail", "retail", "sales").await,
        Err(CatalogError::NotFound { .. })
    ));
    assert_eq!(c.admin.list_shares().await.expect("listed").len(), 1);
    c.admin.drop_share("external_retail").await.expect("dropped");
    assert!(c.admin.list_shares().await.expect("listed").is_empty());
    assert!(matches!(c.admin.show_share("external_retail").await, Err(CatalogError::NotFound { .. })));
}

pub async fn bad_input_changes_nothing(c: &Subject) {
    for name in ["", "a/b", "tab\there", &"x".repeat(256)] {
        assert!(matches!(c.admin.create_share(name, None).await, Err(CatalogError::InvalidArgument(_))), "{name:?}");
        assert!(
            matches!(
                c.admin.create_recipient(recipient(name)).await.map(with_token),
                Err(CatalogError::InvalidArgument(_))
            ),
            "{name:?}"
        );
    }
    c.admin.create_share("s", None).await.expect("created");
    let mut bad = table("sc", "t");
    bad.partition_filter = Some("region > 'EU'".into());
    assert!(matches!(c.admin.add_table("s", bad).await, Err(CatalogError::InvalidArgument(_))));
    assert!(matches!(c.admin.add_table("s", table("a/b", "t")).await, Err(CatalogError::InvalidArgument(_))));
    // A location no backend serves is refused when added, not at every request.
    for location in ["hdfs://node/t", "ftp://host/t"] {
        let elsewhere = TableEntry { location: location.into(), ..table("sc", "elsewhere") };
        match c.admin.add_table("s", elsewhere).await {
            Err(CatalogError::InvalidArgument(m)) => assert!(m.contains("not served"), "{m}"),
            other => panic!("{location}: {other:?}"),
        }
    }
    assert!(c.admin.show_share("s").await.expect("exists").tables.is_empty(), "nothing half-made");
    c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    assert!(matches!(
        c.admin.create_recipient(recipient("R")).await.map(with_token),
        Err(CatalogError::AlreadyExists { .. })
    ));
    assert_eq!(c.admin.show_recipient("r").await.expect("exists").tokens.len(), 1, "the failed create left no token");
    let past = NewRecipient { expires_at: Some(now() - 1000), ..recipient("late") };
    assert!(matches!(c.admin.create_recipient(past).await.map(with_token), Err(CatalogError::InvalidArgument(_))));
    assert!(matches!(c.admin.grant("nope", "r").await, Err(CatalogError::NotFound { .. })));
    assert!(matches!(c.admin.grant("s", "nope").await, Err(CatalogError::NotFound { .. })));
}

pub async fn tokens_authenticate_rotate_and_revoke(c: &Subject) {
    let props = BTreeMap::from([("region".to_owned(), "EU".to_owned())]);
    let (info, first) = c
        .admin
        .create_recipient(NewRecipient { properties: props.clone(), ..recipient("Partner_Co") })
        .await
        .map(with_token)
        .expect("created");
    assert!(first.token.len() >= 40);
    assert_eq!(info.tokens.len(), 1);
    let who = c.catalog.authenticate(Some(&first.token)).await.expect("authenticated");
    assert_eq!(who.recipient, "Partner_Co");
    assert_eq!(who.properties, props);
    for bad in [None, Some("wrong"), Some(&first.token[..first.token.len() - 1])] {
        assert!(matches!(c.catalog.authenticate(bad).await, Err(CatalogError::Unauthenticated(_))), "{bad:?}");
    }
    // Rotate with a grace period: both work; the old one ends within the grace.
    let second = c
        .admin
        .rotate_credential("partner_co", 3600, CredentialRequest::default())
        .await
        .map(token_of)
        .expect("rotated");
    assert!(c.catalog.authenticate(Some(&first.token)).await.is_ok());
    assert!(c.catalog.authenticate(Some(&second.token)).await.is_ok());
    let tokens = c.admin.show_recipient("partner_co").await.expect("shown").tokens;
    let old = tokens.iter().find(|t| t.expires_at.is_some()).expect("the old token got an expiry");
    let limit = old.expires_at.expect("expiry");
    assert!(limit <= now() + 3_600_000 && limit > now() + 3_500_000);
    // A later rotation with a longer grace never extends it.
    let third = c
        .admin
        .rotate_credential("partner_co", 7200, CredentialRequest::default())
        .await
        .map(token_of)
        .expect("rotated");
    let tokens = c.admin.show_recipient("partner_co").await.expect("shown").tokens;
    let first_info = tokens.iter().find(|t| t.id == old.id).expect("still listed");
    assert_eq!(first_info.expires_at, Some(limit));
    // Grace 0 ends the older ones now.
    let fourth =
        c.admin.rotate_credential("partner_co", 0, CredentialRequest::default()).await.map(token_of).expect("rotated");
    for old in [&first, &second, &third] {
        assert!(matches!(c.catalog.authenticate(Some(&old.token)).await, Err(CatalogError::Unauthenticated(_))));
    }
    assert!(c.catalog.authenticate(Some(&fourth.token)).await.is_ok());
    // Revoke ends everything at once.
    let info = c.admin.revoke_recipient("partner_co").await.expect("revoked");
    assert!(info.tokens.iter().all(|t| !t.is_active(now())));
    assert!(matches!(c.catalog.authenticate(Some(&fourth.token)).await, Err(CatalogError::Unauthenticated(_))));
    c.admin.drop_recipient("partner_co").await.expect("dropped");
    assert!(matches!(c.admin.show_recipient("partner_co").await, Err(CatalogError::NotFound { .. })));
}

pub async fn recipient_expiry(c: &Subject) {
    let (_, token) = c
        .admin
        .create_recipient(NewRecipient { expires_at: Some(now() + 300), ..recipient("brief") })
        .await
        .map(with_token)
        .expect("created");
    assert_eq!(token.expires_at.map(|e| e > now()), Some(true));
    assert!(c.catalog.authenticate(Some(&token.token)).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let err = c.catalog.authenticate(Some(&token.token)).await.expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");
    // A rotation cannot outlive the recipient.
    let rotated =
        c.admin.rotate_credential("brief", 3600, CredentialRequest::default()).await.map(token_of).expect("rotated");
    assert!(matches!(c.catalog.authenticate(Some(&rotated.token)).await, Err(CatalogError::Unauthenticated(_))));
}

pub async fn grants_decide_visibility(c: &Subject) {
    c.admin.create_share("granted", None).await.expect("created");
    c.admin.create_share("secret", None).await.expect("created");
    c.admin.add_table("granted", table("sc", "t")).await.expect("added");
    c.admin.add_table("secret", table("sc", "t")).await.expect("added");
    let (_, token) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    let who = c.catalog.authenticate(Some(&token.token)).await.expect("authenticated");
    let page = PageRequest::default();
    assert!(c.catalog.list_shares(&who, &page).await.expect("listed").items.is_empty());
    c.admin.grant("granted", "r").await.expect("granted");
    c.admin.grant("GRANTED", "R").await.expect("granting twice is fine");
    let shares = c.catalog.list_shares(&who, &page).await.expect("listed").items;
    assert_eq!(shares.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["granted"]);
    let t = c.catalog.get_table(&who, "Granted", "SC", "T").await.expect("visible");
    assert_eq!((t.share.as_str(), t.schema.as_str(), t.name.as_str()), ("granted", "sc", "t"));
    assert!(t.history_shared);
    // A share that is not granted answers exactly like one that does not exist.
    let hidden = c.catalog.get_share(&who, "secret").await.expect_err("hidden").to_string();
    let missing = c.catalog.get_share(&who, "nonexistent").await.expect_err("missing").to_string();
    assert_eq!(hidden.replace("secret", "X"), missing.replace("nonexistent", "X"));
    assert!(matches!(
        c.catalog.get_table(&who, "secret", "sc", "t").await,
        Err(CatalogError::NotFound { kind: "share", .. })
    ));
    assert!(matches!(
        c.catalog.list_schemas(&who, "secret", &page).await,
        Err(CatalogError::NotFound { kind: "share", .. })
    ));
    assert!(matches!(
        c.catalog.get_table(&who, "granted", "nope", "t").await,
        Err(CatalogError::NotFound { kind: "schema", .. })
    ));
    assert!(matches!(
        c.catalog.get_table(&who, "granted", "sc", "nope").await,
        Err(CatalogError::NotFound { kind: "table", .. })
    ));
    c.admin.revoke_grant("granted", "r").await.expect("revoked");
    assert!(matches!(c.catalog.get_table(&who, "granted", "sc", "t").await, Err(CatalogError::NotFound { .. })));
    assert!(matches!(c.admin.revoke_grant("granted", "r").await, Err(CatalogError::NotFound { .. })));
}

pub async fn pagination_covers_everything_once(c: &Subject) {
    let (_, token) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    let who = c.catalog.authenticate(Some(&token.token)).await.expect("authenticated");
    for i in 0..7 {
        let name = format!("share{i}");
        c.admin.create_share(&name, None).await.expect("created");
        c.admin.grant(&name, "r").await.expect("granted");
    }
    for schema in ["a", "b", "c"] {
        for t in 0..3 {
            c.admin.add_table("share0", table(schema, &format!("t{t}"))).await.expect("added");
        }
    }
    let mut names = Vec::new();
    let mut page = PageRequest { max_results: Some(2), page_token: None };
    loop {
        let p = c.catalog.list_shares(&who, &page).await.expect("page");
        assert!(p.items.len() <= 2);
        names.extend(p.items.into_iter().map(|s| s.name));
        match p.next_page_token {
            Some(t) => page.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("share{i}")).collect::<Vec<_>>());
    let mut all = Vec::new();
    let mut page = PageRequest { max_results: Some(4), page_token: None };
    loop {
        let p = c.catalog.list_all_tables(&who, "share0", &page).await.expect("page");
        all.extend(p.items.into_iter().map(|t| format!("{}.{}", t.schema, t.name)));
        match p.next_page_token {
            Some(t) => page.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(all.len(), 9);
    assert_eq!(all.iter().collect::<std::collections::BTreeSet<_>>().len(), 9);
    let schemas = c
        .catalog
        .list_schemas(&who, "share0", &PageRequest { max_results: Some(1), page_token: None })
        .await
        .expect("page");
    assert_eq!(schemas.items.len(), 1);
    assert!(schemas.next_page_token.is_some());
    let zero =
        c.catalog.list_shares(&who, &PageRequest { max_results: Some(0), page_token: None }).await.expect("page");
    assert!(zero.items.is_empty() && zero.next_page_token.is_some());
    for bad in [Some("garbage".to_owned()), zero.next_page_token.clone()] {
        let r = c.catalog.list_all_tables(&who, "share0", &PageRequest { max_results: None, page_token: bad }).await;
        assert!(matches!(r, Err(CatalogError::InvalidArgument(_))));
    }
    let r = c.catalog.list_shares(&who, &PageRequest { max_results: Some(501), page_token: None }).await;
    assert!(matches!(r, Err(CatalogError::InvalidArgument(_))));
}

pub async fn audit_events_filter(c: &Subject) {
    let base = now();
    for (i, (who, action, table)) in [
        ("partner_co", "query", "sales"),
        ("partner_co", "metadata", "customers"),
        ("other", "query", "sales"),
        ("admin", "admin.share.create", ""),
    ]
    .iter()
    .enumerate()
    {
        let e = AuditEvent {
            time_ms: base + i as i64,
            principal: (*who).into(),
            action: (*action).into(),
            share: Some("external_retail".into()),
            schema: (!table.is_empty()).then(|| "retail".into()),
            table: (!table.is_empty()).then(|| (*table).into()),
            version: Some(3),
            files: Some(2),
            bytes: Some(1234),
            status: if *who == "other" { 403 } else { 200 },
            client_ip: Some("127.0.0.1".into()),
            user_agent: Some("test".into()),
            request_id: Some(format!("req-{i}")),
            detail: (i == 0).then(|| "bytes=0-99/1234".into()),
        };
        c.admin.append_audit(&e).await.expect("appended");
    }
    let all = c.admin.audit(&AuditFilter::default()).await.expect("read");
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].time_ms >= w[1].time_ms), "newest first");
    assert_eq!(all[3].request_id.as_deref(), Some("req-0"));
    assert_eq!(all[3].detail.as_deref(), Some("bytes=0-99/1234"), "the detail is stored");
    let f = |f: AuditFilter| async move { c.admin.audit(&f).await.expect("read").len() };
    assert_eq!(f(AuditFilter { principal: Some("PARTNER_CO".into()), ..Default::default() }).await, 2);
    assert_eq!(f(AuditFilter { action: Some("query".into()), ..Default::default() }).await, 2);
    assert_eq!(f(AuditFilter { table: Some("retail.sales".into()), ..Default::default() }).await, 2);
    assert_eq!(f(AuditFilter { table: Some("customers".into()), ..Default::default() }).await, 1);
    assert_eq!(
        f(AuditFilter { share: Some("external_retail".into()), since_ms: Some(base + 2), ..Default::default() }).await,
        2
    );
    assert_eq!(f(AuditFilter { until_ms: Some(base), ..Default::default() }).await, 1);
    assert_eq!(f(AuditFilter { limit: Some(1), ..Default::default() }).await, 1);
    // Status ranges and paging.
    let (min, max) = AuditFilter::status_range("4xx").expect("a class");
    let refused = AuditFilter { min_status: Some(min), max_status: Some(max), ..Default::default() };
    assert_eq!(
        c.admin.audit(&refused).await.expect("read").iter().map(|e| e.principal.as_str()).collect::<Vec<_>>(),
        ["other"]
    );
    assert_eq!(f(AuditFilter { max_status: Some(399), ..Default::default() }).await, 3);
    let page =
        c.admin.audit(&AuditFilter { limit: Some(2), offset: Some(1), ..Default::default() }).await.expect("read");
    assert_eq!(page.iter().map(|e| e.time_ms).collect::<Vec<_>>(), [all[1].time_ms, all[2].time_ms]);
    assert_eq!(f(AuditFilter { offset: Some(4), ..Default::default() }).await, 0);

    // Usage: recipients' requests per bucket, without admin actions.
    let usage = |by, principal: Option<&str>| UsageQuery {
        by,
        since_ms: base,
        until_ms: base + 60_000,
        bucket_ms: 60_000,
        principal: principal.map(str::to_owned),
        share: Some("EXTERNAL_RETAIL".into()),
    };
    let by_recipient = c.admin.usage(&usage(UsageBy::Recipient, None)).await.expect("usage");
    let summary: Vec<(&str, i64, i64, i64)> =
        by_recipient.iter().map(|p| (p.key.as_str(), p.requests, p.files, p.bytes)).collect();
    assert_eq!(summary, [("other", 1, 2, 1234), ("partner_co", 2, 4, 2468)]);
    assert!(by_recipient.iter().all(|p| p.bucket_ms == base));
    let by_table = c.admin.usage(&usage(UsageBy::Table, Some("partner_co"))).await.expect("usage");
    let keys: Vec<(&str, i64)> = by_table.iter().map(|p| (p.key.as_str(), p.requests)).collect();
    assert_eq!(keys, [("external_retail.retail.customers", 1), ("external_retail.retail.sales", 1)]);
    for bad in [
        UsageQuery { bucket_ms: 10, ..usage(UsageBy::Table, None) },
        UsageQuery { until_ms: base, ..usage(UsageBy::Table, None) },
        UsageQuery { until_ms: base + 2_000_000, bucket_ms: 1_000, ..usage(UsageBy::Table, None) },
    ] {
        assert!(matches!(c.admin.usage(&bad).await, Err(CatalogError::InvalidArgument(_))), "{bad:?}");
    }

    // Pruning: at most `batch` events a call, the oldest first.
    assert_eq!(c.admin.prune_audit(base + 2, 1).await.expect("pruned"), 1);
    assert_eq!(c.admin.prune_audit(base + 2, 10).await.expect("pruned"), 1);
    assert_eq!(c.admin.prune_audit(base + 2, 10).await.expect("pruned"), 0);
    let left = c.admin.audit(&AuditFilter::default()).await.expect("read");
    assert_eq!(left.iter().map(|e| e.time_ms).collect::<Vec<_>>(), [base + 3, base + 2]);
}

/// SQL catalogs only: connecting again, as a restart or a second replica does, migrates nothing
/// and loses nothing.
pub async fn migrations_are_idempotent(c: &SqlCatalog) {
    c.create_share("kept", None).await.expect("created");
    let again = SqlCatalog::connect(c.display()).await.expect("reconnected");
    assert_eq!(Admin::list_shares(&again).await.expect("listed").len(), 1);
    again.create_share("more", None).await.expect("created through the second handle");
    assert_eq!(Admin::list_shares(c).await.expect("listed").len(), 2);
}

pub async fn concurrent_changes(c: &Subject) {
    c.admin.create_share("busy", None).await.expect("created");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let admin = c.admin.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("r{i}");
            admin.create_recipient(NewRecipient { name: name.clone(), ..Default::default() }).await.map(with_token)?;
            admin.grant("busy", &name).await?;
            admin.add_table("busy", table("sc", &format!("t{i}"))).await?;
            admin.rotate_credential(&name, 0, CredentialRequest::default()).await.map(token_of).map(|_| ())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("no change is lost under concurrency");
    }
    let share = c.admin.show_share("busy").await.expect("shown");
    assert_eq!(share.tables.len(), 16);
    assert_eq!(share.recipients.len(), 16);
}

/// Changes made elsewhere (the CLI on the same catalog, another replica) reach a running
/// catalog at its next `authenticate` (which starts every request) once the freshness window
/// has passed, with no restart.
pub async fn changes_made_elsewhere_are_seen_by_the_next_request(c: &Subject) {
    let page = PageRequest::default();
    c.elsewhere.create_share("s", None).await.expect("created");
    c.elsewhere.add_table("s", table("sc", "t")).await.expect("added");
    let (_, issued) = c.elsewhere.create_recipient(recipient("r")).await.map(with_token).expect("created");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("a new recipient authenticates at once");
    assert!(c.catalog.list_shares(&who, &page).await.expect("listed").items.is_empty());

    c.elsewhere.grant("s", "r").await.expect("granted");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(c.catalog.list_shares(&who, &page).await.expect("listed").items.len(), 1);
    assert_eq!(c.catalog.get_table(&who, "s", "sc", "t").await.expect("visible").name, "t");

    c.elsewhere
        .add_table("s", TableEntry { partition_filter: Some("region = 'EU'".into()), ..table("sc", "u") })
        .await
        .expect("added");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    let u = c.catalog.get_table(&who, "s", "sc", "u").await.expect("a new table is visible");
    assert_eq!(u.partition_filter, Some(PartitionFilter::parse("region = 'EU'").expect("valid")));

    c.elsewhere.revoke_grant("s", "r").await.expect("revoked");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert!(matches!(
        c.catalog.get_table(&who, "s", "sc", "t").await,
        Err(CatalogError::NotFound { kind: "share", .. })
    ));

    let rotated =
        c.elsewhere.rotate_credential("r", 0, CredentialRequest::default()).await.map(token_of).expect("rotated");
    settle().await;
    assert!(matches!(c.catalog.authenticate(Some(&issued.token)).await, Err(CatalogError::Unauthenticated(_))));
    c.catalog.authenticate(Some(&rotated.token)).await.expect("the new token works at once");
    c.elsewhere.revoke_recipient("r").await.expect("revoked");
    settle().await;
    assert!(matches!(c.catalog.authenticate(Some(&rotated.token)).await, Err(CatalogError::Unauthenticated(_))));
}

/// Many requests at once each see every change committed before the freshness window, while
/// the catalog changes.
pub async fn concurrent_reads_see_committed_changes(c: &Subject) {
    c.admin.create_share("s", None).await.expect("created");
    let (_, issued) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    c.admin.grant("s", "r").await.expect("granted");
    for i in 0..20 {
        c.elsewhere.add_table("s", table("sc", &format!("t{i}"))).await.expect("added");
        settle().await;
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (catalog, token) = (c.catalog.clone(), issued.token.clone());
                tokio::spawn(async move {
                    let who = catalog.authenticate(Some(&token)).await?;
                    catalog.list_tables(&who, "s", "sc", &PageRequest::default()).await.map(|p| p.items.len())
                })
            })
            .collect();
        for r in readers {
            assert_eq!(r.await.expect("task").expect("listed"), i + 1, "every reader sees every committed table");
        }
    }
}

/// Events appended at once are written together (several per statement) and none is lost or
/// altered.
pub async fn concurrent_audit_events_are_all_stored(c: &Subject) {
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let admin = c.admin.clone();
            tokio::spawn(async move {
                let e = AuditEvent {
                    time_ms: 1_000 + i,
                    principal: format!("p{}", i % 7),
                    action: "query".into(),
                    share: Some("s".into()),
                    schema: None,
                    table: None,
                    version: Some(i),
                    files: None,
                    bytes: Some(i * 10),
                    status: 200,
                    client_ip: None,
                    user_agent: Some(format!("agent {i}")),
                    request_id: Some(format!("req-{i}")),
                    detail: None,
                };
                admin.append_audit(&e).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("appended");
    }
    let all = c.admin.audit(&AuditFilter { limit: Some(1000), ..Default::default() }).await.expect("read");
    assert_eq!(all.len(), 300);
    for e in &all {
        let i = e.time_ms - 1_000;
        assert_eq!((e.version, e.bytes), (Some(i), Some(i * 10)));
        assert_eq!(e.request_id.as_deref(), Some(format!("req-{i}").as_str()));
        assert_eq!(e.user_agent.as_deref(), Some(format!("agent {i}").as_str()));
        assert_eq!(e.principal, format!("p{}", i % 7));
    }
}

/// A bulk import adds what is new, skips names already taken, and adds nothing on bad input.
pub async fn import_tables_is_atomic_and_idempotent(c: &Subject) {
    c.admin.create_share("bulk", None).await.expect("created");
    let many: Vec<_> = (0..50).map(|i| table(&format!("s{}", i % 5), &format!("t{i}"))).collect();
    assert_eq!(c.admin.import_tables("bulk", many.clone()).await.expect("imported"), 50);
    assert_eq!(c.admin.import_tables("bulk", many).await.expect("imported again"), 0, "existing names are skipped");
    let bad = vec![table("s0", "new"), TableEntry { partition_filter: Some("nonsense (".into()), ..table("s0", "x") }];
    assert!(matches!(c.admin.import_tables("bulk", bad).await, Err(CatalogError::InvalidArgument(_))));
    assert_eq!(c.admin.show_share("bulk").await.expect("shown").tables.len(), 50, "a failed import adds nothing");
    assert!(matches!(
        c.admin.import_tables("missing", vec![table("s", "t")]).await,
        Err(CatalogError::NotFound { .. })
    ));
}

/// A file URL names a recipient and a table by id; the check made when it is used follows
/// grants, revocation and expiry as `authenticate` does, including changes made elsewhere.
pub async fn file_access_follows_grants_and_revocation(c: &Subject) {
    c.admin.create_share("s", None).await.expect("created");
    c.admin.create_share("elsewhere", None).await.expect("created");
    c.admin.add_table("s", table("sc", "t")).await.expect("added");
    c.admin.add_table("elsewhere", table("sc", "t")).await.expect("added");
    let (_, issued) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    c.admin.grant("s", "r").await.expect("granted");
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    let t = c.catalog.get_table(&who, "s", "sc", "t").await.expect("visible");
    let (by_id, table) = c.catalog.file_access(&who.id, &t.id).await.expect("granted table");
    assert_eq!((by_id, &table), (who.clone(), &t));

    let not_found = |r: Result<_, CatalogError>| matches!(r, Err(CatalogError::NotFound { .. }));
    // The same location in a share that is not granted is another table.
    let elsewhere = c.elsewhere.show_share("elsewhere").await.expect("shown");
    assert_eq!(elsewhere.tables[0].location, t.location.as_str());
    assert!(not_found(c.catalog.file_access(&who.id, "no-such-table").await));
    assert!(not_found(c.catalog.file_access("no-such-recipient", &t.id).await));

    c.elsewhere.revoke_grant("s", "r").await.expect("revoked");
    settle().await;
    assert!(not_found(c.catalog.file_access(&who.id, &t.id).await), "a removed grant stops downloads");
    c.elsewhere.grant("s", "r").await.expect("granted again");
    settle().await;
    c.catalog.file_access(&who.id, &t.id).await.expect("granted again");

    c.elsewhere.rotate_credential("r", 0, CredentialRequest::default()).await.map(token_of).expect("rotated");
    settle().await;
    c.catalog.file_access(&who.id, &t.id).await.expect("a rotated recipient still has a credential");
    c.elsewhere.revoke_recipient("r").await.expect("revoked");
    settle().await;
    assert!(not_found(c.catalog.file_access(&who.id, &t.id).await), "revocation stops downloads");

    let (_, issued) = c
        .admin
        .create_recipient(NewRecipient { expires_at: Some(now() + 150), ..recipient("brief") })
        .await
        .map(with_token)
        .expect("created");
    c.admin.grant("s", "brief").await.expect("granted");
    let brief = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    c.catalog.file_access(&brief.id, &t.id).await.expect("not expired yet");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(not_found(c.catalog.file_access(&brief.id, &t.id).await), "expiry stops downloads");
    c.elsewhere.drop_recipient("brief").await.expect("dropped");
    settle().await;
    assert!(not_found(c.catalog.file_access(&brief.id, &t.id).await));
}

/// The tree the read contract expects, as YAML (for the YAML catalog) and as admin calls (for
/// the others): share `Share_A` with schemas `sc1` (tables `t1`, `T2`) and `sc2` (table `t3`),
/// and share `share_b` with schema `x` (table `y`).
pub const READ_TREE_YAML: &str = "- name: Share_A\n  schemas:\n  - name: sc1\n    tables:\n    - {name: t1, location: /data/t1}\n    - {name: T2, location: /data/t2, historyShared: true}\n  - name: sc2\n    tables:\n    - {name: t3, location: /data/t3}\n- name: share_b\n  schemas:\n  - name: x\n    tables:\n    - {name: y, location: /data/y}\n";

/// Builds [`READ_TREE_YAML`] through an admin and grants it all to a new recipient; returns
/// the recipient's token.
pub async fn build_read_tree(admin: &dyn Admin) -> String {
    for (share, tables) in
        [("Share_A", vec![("sc1", "t1"), ("sc1", "T2"), ("sc2", "t3")]), ("share_b", vec![("x", "y")])]
    {
        admin.create_share(share, None).await.expect("created");
        for (schema, name) in tables {
            let entry = TableEntry {
                location: format!("/data/{}", name.to_lowercase()),
                history_shared: name == "T2",
                ..table(schema, name)
            };
            admin.add_table(share, entry).await.expect("added");
        }
    }
    let (_, issued) = admin.create_recipient(recipient("reader")).await.map(with_token).expect("created");
    for share in ["Share_A", "share_b"] {
        admin.grant(share, "reader").await.expect("granted");
    }
    issued.token
}

/// The recipient side of the contract, for every catalog (the YAML catalog included): a
/// catalog holding [`READ_TREE_YAML`], all of it visible to the holder of `token`.
pub async fn reads_follow_the_contract(c: &dyn Catalog, token: &str) {
    for bad in [None, Some("wrong"), Some(&token[..token.len() - 1])] {
        assert!(matches!(c.authenticate(bad).await, Err(CatalogError::Unauthenticated(_))), "{bad:?}");
    }
    let who = c.authenticate(Some(token)).await.expect("authenticated");
    // Listings: every item once, across pages of any size; names as stored.
    for size in [1, 2, 100] {
        let mut names = Vec::new();
        let mut page = PageRequest { max_results: Some(size), page_token: None };
        loop {
            let p = c.list_all_tables(&who, "SHARE_A", &page).await.expect("page");
            assert!(p.items.len() <= size as usize);
            names.extend(p.items.into_iter().map(|t| format!("{}.{}.{}", t.share, t.schema, t.name)));
            match p.next_page_token {
                Some(t) => page.page_token = Some(t),
                None => break,
            }
        }
        names.sort();
        assert_eq!(names, ["Share_A.sc1.T2", "Share_A.sc1.t1", "Share_A.sc2.t3"], "pages of {size}");
    }
    let shares = c.list_shares(&who, &PageRequest::default()).await.expect("listed");
    let mut share_names: Vec<_> = shares.items.iter().map(|s| s.name.as_str()).collect();
    share_names.sort();
    assert_eq!(share_names, ["Share_A", "share_b"]);
    let schemas = c.list_schemas(&who, "share_a", &PageRequest::default()).await.expect("listed");
    assert_eq!(schemas.items.len(), 2);
    let tables = c.list_tables(&who, "share_a", "SC1", &PageRequest::default()).await.expect("listed");
    assert_eq!(tables.items.len(), 2);
    assert!(tables.items.iter().all(|t| t.id.is_some()), "every listed table has an id");
    // Page tokens are checked.
    let first = c.list_all_tables(&who, "share_a", &PageRequest { max_results: Some(1), page_token: None }).await;
    let token_a = first.expect("page").next_page_token.expect("more");
    for bad in [Some("garbage".to_owned()), Some(token_a)] {
        let r = c.list_tables(&who, "share_a", "sc1", &PageRequest { max_results: None, page_token: bad }).await;
        assert!(matches!(r, Err(CatalogError::InvalidArgument(_))), "{r:?}");
    }
    // Lookups ignore case and name the first missing level.
    let t2 = c.get_table(&who, "SHARE_A", "Sc1", "t2").await.expect("found");
    assert_eq!((t2.share.as_str(), t2.schema.as_str(), t2.name.as_str()), ("Share_A", "sc1", "T2"));
    assert!(t2.history_shared && t2.location.as_str() == "file:///data/t2/");
    for (share, schema, table, kind) in
        [("nope", "sc1", "t1", "share"), ("share_a", "nope", "t1", "schema"), ("share_a", "sc1", "nope", "table")]
    {
        match c.get_table(&who, share, schema, table).await {
            Err(CatalogError::NotFound { kind: k, .. }) => assert_eq!(k, kind),
            other => panic!("{share}.{schema}.{table}: {other:?}"),
        }
    }
    // Tables are found by id for file URLs, by their recipient only.
    let (by_id_who, by_id) = c.file_access(&who.id, &t2.id).await.expect("found by id");
    assert_eq!((by_id_who.id, by_id), (who.id.clone(), t2.clone()));
    assert!(matches!(c.file_access("someone-else", &t2.id).await, Err(CatalogError::NotFound { .. })));
    assert!(matches!(c.file_access(&who.id, "no-such-id").await, Err(CatalogError::NotFound { .. })));
}

/// Storage locations: added, listed, shown, dropped; names unique case-insensitively; and a
/// change made elsewhere reaches the recipient side's `storage_locations` at its next request.
pub async fn storage_locations(c: &Subject) {
    use d2o_catalog::{StorageLocation, UrlMode};
    let options = BTreeMap::from([
        ("endpoint".to_owned(), "http://127.0.0.1:9000".to_owned()),
        ("secret_access_key".to_owned(), "${AWS_SECRET_ACCESS_KEY}".to_owned()),
    ]);
    let lake =
        StorageLocation::new("Lake", "s3://bucket/tables", UrlMode::Proxy, options, Some("c".into())).expect("valid");
    assert_eq!(c.admin.add_storage(lake.clone()).await.expect("added"), lake);
    assert!(matches!(c.admin.add_storage(lake.clone()).await, Err(CatalogError::AlreadyExists { .. })));
    assert_eq!(c.admin.show_storage("lake").await.expect("shown"), lake);
    let other = StorageLocation::new("b", "gs://b/", UrlMode::Presign, BTreeMap::new(), None).expect("valid");
    c.elsewhere.add_storage(other.clone()).await.expect("added elsewhere");
    assert_eq!(c.admin.list_storage().await.expect("listed"), [other.clone(), lake.clone()]);

    let (_, issued) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    settle().await;
    c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(*c.catalog.storage_locations(), [other.clone(), lake.clone()]);
    c.elsewhere.drop_storage("LAKE").await.expect("dropped");
    assert!(matches!(c.admin.drop_storage("lake").await, Err(CatalogError::NotFound { .. })));
    settle().await;
    c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(*c.catalog.storage_locations(), [other]);
}

/// IP access lists: set (normalised), refused when bad with nothing changed, carried by the
/// principal of `authenticate` and of `file_access`, changed elsewhere and cleared.
pub async fn ip_access_lists(c: &Subject) {
    let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().expect("an address"));
    c.admin.create_share("s", None).await.expect("created");
    c.admin.add_table("s", table("sc", "t")).await.expect("added");
    let (_, issued) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    c.admin.grant("s", "r").await.expect("granted");
    let info = c.admin.set_ip_access_list("R", Some(vec!["10.9.8.7/8".into(), "2001:db8::/32".into()])).await;
    assert_eq!(info.expect("set").ip_access_list, Some(vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()]));
    for bad in [vec![], vec!["10.0.0.0/8".to_owned(), "nonsense".to_owned()]] {
        assert!(matches!(c.admin.set_ip_access_list("r", Some(bad)).await, Err(CatalogError::InvalidArgument(_))));
    }
    assert!(matches!(c.admin.set_ip_access_list("nobody", None).await, Err(CatalogError::NotFound { .. })));
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert!(who.allows(ip("10.1.1.1")) && who.allows(ip("2001:db8:1::1")) && who.allows(ip("::ffff:10.0.0.1")));
    assert!(!who.allows(ip("192.0.2.1")) && !who.allows(None));
    let t = c.catalog.get_table(&who, "s", "sc", "t").await.expect("visible");
    let (file_who, _) = c.catalog.file_access(&who.id, &t.id).await.expect("access");
    assert_eq!(file_who.allowed_networks, who.allowed_networks, "downloads are held to the same list");

    c.elsewhere.set_ip_access_list("r", Some(vec!["192.0.2.0/24".into()])).await.expect("set elsewhere");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert!(who.allows(ip("192.0.2.1")) && !who.allows(ip("10.1.1.1")));
    c.elsewhere.set_ip_access_list("r", None).await.expect("cleared");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert!(who.allowed_networks.is_none() && who.allows(None));
    assert_eq!(c.admin.show_recipient("r").await.expect("shown").ip_access_list, None);
}

/// Properties: replaced, shown, carried by the principal (partition filters read them),
/// changed elsewhere and cleared.
pub async fn recipient_properties(c: &Subject) {
    let props = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let (_, issued) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    let info = c.admin.set_properties("R", props(&[("region", "EU"), ("tier", "gold")])).await.expect("set");
    assert_eq!(info.properties, props(&[("region", "EU"), ("tier", "gold")]));
    assert!(matches!(c.admin.set_properties("nobody", props(&[])).await, Err(CatalogError::NotFound { .. })));
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(who.properties.get("region").map(String::as_str), Some("EU"));
    c.elsewhere.set_properties("r", props(&[("region", "US")])).await.expect("set elsewhere");
    settle().await;
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(who.properties, props(&[("region", "US")]));
    c.elsewhere.set_properties("r", props(&[])).await.expect("cleared");
    settle().await;
    assert!(c.catalog.authenticate(Some(&issued.token)).await.expect("ok").properties.is_empty());
}

/// Rate limits: set, shown, carried by the principal, changed elsewhere and cleared.
pub async fn rate_limits(c: &Subject) {
    use d2o_catalog::RateLimit;
    let limit = |rate: &str, burst| RateLimit::new(rate.parse().expect("a rate"), Some(burst)).expect("a limit");
    let (_, issued) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    let info = c.admin.set_rate_limit("R", Some(limit("600/min", 20))).await.expect("set");
    assert_eq!(info.rate_limit, Some(limit("600/min", 20)));
    assert!(matches!(c.admin.set_rate_limit("nobody", None).await, Err(CatalogError::NotFound { .. })));
    let who = c.catalog.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(who.rate_limit, Some(limit("600/min", 20)));
    c.elsewhere.set_rate_limit("r", Some(limit("1/s", 1))).await.expect("set elsewhere");
    settle().await;
    assert_eq!(c.catalog.authenticate(Some(&issued.token)).await.expect("ok").rate_limit, Some(limit("1/s", 1)));
    c.elsewhere.set_rate_limit("r", None).await.expect("cleared");
    settle().await;
    assert_eq!(c.catalog.authenticate(Some(&issued.token)).await.expect("ok").rate_limit, None);
    assert_eq!(c.admin.show_recipient("r").await.expect("shown").rate_limit, None);
}

/// A created recipient with the bearer token it was given directly.
pub fn with_token(
    (info, issued): (d2o_catalog::RecipientInfo, d2o_catalog::Issued),
) -> (d2o_catalog::RecipientInfo, d2o_catalog::IssuedToken) {
    (info, token_of(issued))
}

/// The credential of an [`d2o_catalog::Issued`] that must be one.
pub fn token_of(issued: d2o_catalog::Issued) -> d2o_catalog::IssuedToken {
    issued.into_token().expect("a credential issued directly")
}

// Recipient credentials: activation links, OAuth clients, federation policies.
//
// Activation links are opened and redeemed on the server's activation page, not through the
// admin API (whose client refuses `activation` and `redeem_activation`), so these cases open
// and redeem them through `elsewhere`, a SQL catalog on the same data in every subject: the
// page's side of the server, or another replica. What the redemption creates reaches the
// recipient side at its next request, as any change made elsewhere does.

fn invited(name: &str, request: ActivationRequest) -> NewRecipient {
    NewRecipient { credential: CredentialRequest::Activation(request), ..recipient(name) }
}

fn link_of(issued: Issued) -> IssuedActivation {
    issued.into_activation().expect("an activation link")
}

fn oauth() -> CredentialRequest {
    CredentialRequest::Direct { kind: CredentialKind::OauthClientCredentials }
}

fn federation(issuer: &str, audiences: &[&str], claim: SubjectClaim, subject: &str) -> NewFederationPolicy {
    NewFederationPolicy {
        issuer: issuer.into(),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        subject_claim: claim,
        subject: subject.into(),
    }
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, CatalogError>) -> bool {
    matches!(r, Err(CatalogError::Unauthenticated(_)))
}

/// The message of an `InvalidArgument`, or a panic naming what came instead.
fn invalid<T: std::fmt::Debug>(r: Result<T, CatalogError>) -> String {
    match r {
        Err(CatalogError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

/// A recipient created with an activation link has no credential until the link is redeemed;
/// redeeming creates the kind of credential the link names, once.
pub async fn activation_links_create_the_credential_once(c: &Subject) {
    let (info, issued) =
        c.admin.create_recipient(invited("Invited", ActivationRequest::default())).await.expect("created");
    let link = link_of(issued);
    assert_eq!((link.recipient.as_str(), link.kind), ("Invited", CredentialKind::BearerToken));
    assert!(link.secret.len() >= 40, "256 random bits");
    let default_end = now() + DEFAULT_ACTIVATION_LIFETIME_SECS as i64 * 1000;
    assert!(link.expires_at <= default_end && link.expires_at > default_end - 60_000, "72 hours by default");
    assert!(info.tokens.is_empty(), "no credential before the link is redeemed");
    let shown = info.activation.expect("the link is shown, without its secret");
    assert_eq!(
        (shown.state, shown.kind, shown.expires_at, shown.used_at),
        (ActivationState::Ready, CredentialKind::BearerToken, link.expires_at, None)
    );
    assert_eq!(c.admin.show_recipient("invited").await.expect("shown").activation, Some(shown));
    for bad in [None, Some(link.secret.as_str()), Some("wrong")] {
        assert!(unauthenticated(c.catalog.authenticate(bad).await), "{bad:?}");
    }
    assert!(unauthenticated(c.catalog.authenticate_client(&info.id, &link.secret).await));

    let page = c.elsewhere.activation(&link.secret).await.expect("the link's page");
    assert_eq!((page.recipient.name.as_str(), page.recipient.id.as_str()), ("Invited", info.id.as_str()));
    assert_eq!(
        (page.state, page.kind, page.expires_at, page.used_at),
        (ActivationState::Ready, CredentialKind::BearerToken, link.expires_at, None)
    );
    assert_eq!(c.elsewhere.activation(&link.secret).await.expect("shown again").state, ActivationState::Ready);

    let (used, token) = c.elsewhere.redeem_activation(&link.secret).await.expect("redeemed");
    assert_eq!(
        (token.recipient.as_str(), token.kind, token.expires_at),
        ("Invited", CredentialKind::BearerToken, None)
    );
    assert_eq!(used.state, ActivationState::Used);
    assert!(used.used_at.is_some_and(|t| t <= now()));
    assert_eq!(used.recipient.tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [token.id.as_str()]);
    settle().await;
    let who = c.catalog.authenticate(Some(&token.token)).await.expect("the redeemed token authenticates");
    assert_eq!((who.recipient.as_str(), who.id.as_str()), ("Invited", info.id.as_str()));
    assert!(
        unauthenticated(c.catalog.authenticate_client(&token.id, &token.token).await),
        "a bearer token is not an OAuth client secret"
    );
    assert!(unauthenticated(c.catalog.authenticate(Some(&link.secret)).await), "the link is not a credential");

    // Once only.
    let m = invalid(c.elsewhere.redeem_activation(&link.secret).await);
    assert!(m.contains("used"), "{m}");
    assert_eq!(c.elsewhere.activation(&link.secret).await.expect("shown").state, ActivationState::Used);
    let info = c.admin.show_recipient("Invited").await.expect("shown");
    assert_eq!(info.tokens.len(), 1, "the failed redemption created nothing");
    let shown = info.activation.expect("still shown");
    assert_eq!((shown.state, shown.used_at), (ActivationState::Used, used.used_at));

    // A link for OAuth client credentials creates a client: its secret is exchanged at the
    // token endpoint, never sent as a bearer token.
    let request = ActivationRequest { kind: CredentialKind::OauthClientCredentials, ..Default::default() };
    let (info, issued) = c.admin.create_recipient(invited("Client_Co", request)).await.expect("created");
    let link = link_of(issued);
    assert_eq!(link.kind, CredentialKind::OauthClientCredentials);
    let page = c.elsewhere.activation(&link.secret).await.expect("the link's page");
    assert_eq!((page.kind, page.state), (CredentialKind::OauthClientCredentials, ActivationState::Ready));
    let (used, client) = c.elsewhere.redeem_activation(&link.secret).await.expect("redeemed");
    assert_eq!((used.state, client.kind), (ActivationState::Used, CredentialKind::OauthClientCredentials));
    assert!(!client.id.is_empty() && client.token.len() >= 40);
    settle().await;
    let who = c.catalog.authenticate_client(&client.id, &client.token).await.expect("the client authenticates");
    assert_eq!((who.recipient.as_str(), who.id.as_str()), ("Client_Co", info.id.as_str()));
    assert_eq!(c.catalog.authenticate_credential(&client.id).await.expect("a live client"), who);
    assert!(unauthenticated(c.catalog.authenticate(Some(&client.token)).await), "a client secret is no bearer token");
    for (id, secret) in [
        (client.id.as_str(), "wrong"),
        (client.id.as_str(), &client.token[..client.token.len() - 1]),
        ("wrong-id", client.token.as_str()),
        (info.id.as_str(), client.token.as_str()),
    ] {
        assert!(unauthenticated(c.catalog.authenticate_client(id, secret).await), "{id} {secret}");
    }
    let tokens = c.admin.show_recipient("client_co").await.expect("shown").tokens;
    assert_eq!(
        tokens.iter().map(|t| (t.id.as_str(), t.kind)).collect::<Vec<_>>(),
        [(client.id.as_str(), CredentialKind::OauthClientCredentials)]
    );
    assert!(invalid(c.elsewhere.redeem_activation(&link.secret).await).contains("used"));
}

/// Of many concurrent redemptions of one link exactly one succeeds; the others are refused
/// as used, and exactly one credential exists.
pub async fn concurrent_redemptions_succeed_once(c: &Subject) {
    let (_, issued) = c.admin.create_recipient(invited("r", ActivationRequest::default())).await.expect("created");
    let link = link_of(issued);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (admin, secret) = (c.elsewhere.clone(), link.secret.clone());
            tokio::spawn(async move { admin.redeem_activation(&secret).await })
        })
        .collect();
    let mut issued = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok((_, token)) => issued.push(token),
            Err(CatalogError::InvalidArgument(_)) => {}
            Err(e) => panic!("a losing redemption is refused as used, not {e:?}"),
        }
    }
    assert_eq!(issued.len(), 1, "exactly one redemption succeeds");
    let info = c.admin.show_recipient("r").await.expect("shown");
    assert_eq!(info.tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [issued[0].id.as_str()]);
    assert_eq!(info.activation.map(|a| a.state), Some(ActivationState::Used));
    settle().await;
    c.catalog.authenticate(Some(&issued[0].token)).await.expect("the one credential authenticates");
}

/// Of links issued at once for one recipient exactly one is left usable, and it is the one
/// shown.
pub async fn concurrent_activation_links_leave_one_usable(c: &Subject) {
    let (_, live) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    for _ in 0..5 {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let admin = c.admin.clone();
                tokio::spawn(async move { admin.issue_activation("r", ActivationRequest::default()).await })
            })
            .collect();
        let mut links = Vec::new();
        for t in tasks {
            links.push(t.await.expect("task").expect("issued"));
        }
        let mut ready = Vec::new();
        for link in links {
            if c.elsewhere.activation(&link.secret).await.expect("shown").state == ActivationState::Ready {
                ready.push(link);
            }
        }
        assert_eq!(ready.len(), 1, "exactly one link is left usable");
        let shown = c.admin.show_recipient("r").await.expect("shown").activation.expect("the latest link");
        assert_eq!((shown.state, shown.expires_at), (ActivationState::Ready, ready[0].expires_at));
    }
    c.catalog.authenticate(Some(&live.token)).await.expect("live tokens are untouched");
}

/// A new activation link withdraws the unused one and leaves live credentials alone; bad
/// lifetimes are refused and change nothing; links expire, with their lifetime or with their
/// recipient; revocation withdraws them.
pub async fn new_activation_links_replace_unused_ones(c: &Subject) {
    use d2o_catalog::credential::MAX_ACTIVATION_LIFETIME_SECS;
    let (_, live) = c.admin.create_recipient(recipient("r")).await.map(with_token).expect("created");
    let first = c.admin.issue_activation("R", ActivationRequest::default()).await.expect("issued");
    assert_eq!((first.recipient.as_str(), first.kind), ("r", CredentialKind::BearerToken));
    let request = ActivationRequest { kind: CredentialKind::OauthClientCredentials, lifetime_secs: 600 };
    let second = c.admin.issue_activation("r", request).await.expect("issued");
    assert_ne!(first.secret, second.secret);
    assert!(second.expires_at <= now() + 600_000 && second.expires_at > now() + 540_000);
    assert_eq!(c.elsewhere.activation(&first.secret).await.expect("shown").state, ActivationState::Withdrawn);
    let m = invalid(c.elsewhere.redeem_activation(&first.secret).await);
    assert!(m.contains("withdrawn"), "{m}");
    let info = c.admin.show_recipient("r").await.expect("shown");
    let shown = info.activation.expect("the latest link");
    assert_eq!(
        (shown.state, shown.kind, shown.expires_at),
        (ActivationState::Ready, CredentialKind::OauthClientCredentials, second.expires_at),
        "the latest link is shown"
    );
    assert_eq!(info.tokens.len(), 1);
    assert!(info.tokens[0].expires_at.is_none() && info.tokens[0].revoked_at.is_none(), "live tokens are untouched");
    c.catalog.authenticate(Some(&live.token)).await.expect("the live token still works");

    // Links issued in quick succession (often within one millisecond): the latest is the one
    // shown, and the only one usable.
    for _ in 0..20 {
        let older = c.admin.issue_activation("r", ActivationRequest::default()).await.expect("issued");
        let newer = c.admin.issue_activation("r", ActivationRequest::default()).await.expect("issued");
        let shown = c.admin.show_recipient("r").await.expect("shown").activation.expect("the latest link");
        assert_eq!((shown.state, shown.expires_at), (ActivationState::Ready, newer.expires_at));
        assert_eq!(c.elsewhere.activation(&older.secret).await.expect("shown").state, ActivationState::Withdrawn);
    }
    let second = c.admin.issue_activation("r", request).await.expect("issued");

    // Bad lifetimes are refused wherever a link is asked for, and change nothing.
    for lifetime_secs in [0, MAX_ACTIVATION_LIFETIME_SECS + 1] {
        let bad = ActivationRequest { lifetime_secs, ..Default::default() };
        invalid(c.admin.issue_activation("r", bad).await);
        invalid(c.admin.rotate_credential("r", 0, CredentialRequest::Activation(bad)).await);
        invalid(c.admin.create_recipient(invited("bad", bad)).await);
    }
    assert!(
        matches!(c.admin.show_recipient("bad").await, Err(CatalogError::NotFound { .. })),
        "no half-made recipient"
    );
    assert_eq!(c.elsewhere.activation(&second.secret).await.expect("shown").state, ActivationState::Ready);
    let info = c.admin.show_recipient("r").await.expect("shown");
    assert!(info.tokens[0].expires_at.is_none(), "a refused rotation cut nothing");
    c.catalog.authenticate(Some(&live.token)).await.expect("the live token still works");
    assert!(matches!(
        c.admin.issue_activation("nobody", ActivationRequest::default()).await,
        Err(CatalogError::NotFound { .. })
    ));

    // The longest lifetime is allowed; redeeming adds a credential beside the live one.
    let longest = ActivationRequest { lifetime_secs: MAX_ACTIVATION_LIFETIME_SECS, ..Default::default() };
    let third = c.admin.issue_activation("r", longest).await.expect("issued");
    assert_eq!(c.elsewhere.activation(&second.secret).await.expect("shown").state, ActivationState::Withdrawn);
    let (_, token) = c.elsewhere.redeem_activation(&third.secret).await.expect("redeemed");
    settle().await;
    for t in [&live, &token] {
        c.catalog.authenticate(Some(&t.token)).await.expect("both credentials work");
    }

    // Expiry: the link's own lifetime, or its recipient's.
    let short = c.admin.issue_activation("r", ActivationRequest { lifetime_secs: 1, ..Default::default() }).await;
    let short = short.expect("issued");
    let (_, issued) = c
        .admin
        .create_recipient(NewRecipient {
            expires_at: Some(now() + 300),
            ..invited("brief", ActivationRequest::default())
        })
        .await
        .expect("created");
    let brief = link_of(issued);
    assert_eq!(c.elsewhere.activation(&brief.secret).await.expect("shown").state, ActivationState::Ready);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for (name, link) in [("r", &short), ("brief", &brief)] {
        assert_eq!(
            c.elsewhere.activation(&link.secret).await.expect("shown").state,
            ActivationState::Expired,
            "{name}"
        );
        let m = invalid(c.elsewhere.redeem_activation(&link.secret).await);
        assert!(m.contains("expired"), "{name}: {m}");
        let shown = c.admin.show_recipient(name).await.expect("shown").activation.expect("a link");
        assert_eq!(shown.state, ActivationState::Expired, "{name}");
    }

    // Revocation withdraws the unused link.
    let last = c.admin.issue_activation("r", ActivationRequest::default()).await.expect("issued");
    let info = c.admin.revoke_recipient("r").await.expect("revoked");
    assert_eq!(info.activation.map(|a| a.state), Some(ActivationState::Withdrawn));
    assert!(invalid(c.elsewhere.redeem_activation(&last.secret).await).contains("withdrawn"));
    assert!(c.admin.show_recipient("r").await.expect("shown").tokens.iter().all(|t| !t.is_active(now())));
}

/// Rotation cuts every credential (bearer tokens and OAuth clients alike) to the grace and
/// issues the next one of any kind; `authenticate_credential` follows OAuth clients through
/// rotation and revocation, made here or elsewhere.
pub async fn rotation_covers_every_kind_of_credential(c: &Subject) {
    let (info, issued) =
        c.admin.create_recipient(NewRecipient { credential: oauth(), ..recipient("r") }).await.expect("created");
    let client = token_of(issued);
    assert_eq!(client.kind, CredentialKind::OauthClientCredentials);
    assert_eq!(
        info.tokens.iter().map(|t| (t.id.as_str(), t.kind)).collect::<Vec<_>>(),
        [(client.id.as_str(), CredentialKind::OauthClientCredentials)]
    );
    let who = c.catalog.authenticate_client(&client.id, &client.token).await.expect("authenticated");
    assert_eq!(c.catalog.authenticate_credential(&client.id).await.expect("a live client"), who);
    assert!(unauthenticated(c.catalog.authenticate_credential("no-such-credential").await));

    // To an activation link, with a grace: the client works on until the grace ends.
    let link = link_of(
        c.admin
            .rotate_credential("R", 3600, CredentialRequest::Activation(ActivationRequest::default()))
            .await
            .expect("rotated"),
    );
    c.catalog.authenticate_client(&client.id, &client.token).await.expect("within the grace");
    c.catalog.authenticate_credential(&client.id).await.expect("within the grace");
    let tokens = c.admin.show_recipient("r").await.expect("shown").tokens;
    let end = tokens[0].expires_at.expect("the client got an expiry");
    assert!(end <= now() + 3_600_000 && end > now() + 3_500_000);
    let (_, bearer) = c.elsewhere.redeem_activation(&link.secret).await.expect("redeemed");
    settle().await;
    c.catalog.authenticate(Some(&bearer.token)).await.expect("the redeemed token works");

    // To a new OAuth client, with a shorter grace: every older credential ends within it.
    let second = token_of(c.admin.rotate_credential("r", 600, oauth()).await.expect("rotated"));
    assert_eq!(second.kind, CredentialKind::OauthClientCredentials);
    assert_ne!(second.id, client.id);
    c.catalog.authenticate_client(&client.id, &client.token).await.expect("within the grace");
    c.catalog.authenticate(Some(&bearer.token)).await.expect("within the grace");
    c.catalog.authenticate_client(&second.id, &second.token).await.expect("the new client works");
    let tokens = c.admin.show_recipient("r").await.expect("shown").tokens;
    assert_eq!(tokens.len(), 3);
    for t in tokens.iter().filter(|t| t.id != second.id) {
        assert!(t.expires_at.is_some_and(|e| e <= now() + 600_000), "{t:?}");
    }

    // To nothing, with no grace: every credential ends now.
    assert_eq!(c.admin.rotate_credential("r", 0, CredentialRequest::None).await.expect("rotated"), Issued::None);
    for t in [&client, &second] {
        assert!(unauthenticated(c.catalog.authenticate_client(&t.id, &t.token).await));
        assert!(unauthenticated(c.catalog.authenticate_credential(&t.id).await), "outstanding access tokens end");
    }
    assert!(unauthenticated(c.catalog.authenticate(Some(&bearer.token)).await));
    assert!(c.admin.show_recipient("r").await.expect("shown").tokens.iter().all(|t| !t.is_active(now())));
    assert!(matches!(
        c.admin.rotate_credential("nobody", 0, CredentialRequest::None).await,
        Err(CatalogError::NotFound { .. })
    ));

    // Rotation and revocation made elsewhere reach `authenticate_credential` at the next request.
    let (_, issued) =
        c.admin.create_recipient(NewRecipient { credential: oauth(), ..recipient("e") }).await.expect("created");
    let first = token_of(issued);
    c.catalog.authenticate_credential(&first.id).await.expect("a live client");
    let next = token_of(c.elsewhere.rotate_credential("e", 0, oauth()).await.expect("rotated elsewhere"));
    settle().await;
    assert!(unauthenticated(c.catalog.authenticate_credential(&first.id).await), "a rotation elsewhere is seen");
    c.catalog.authenticate_credential(&next.id).await.expect("the new client, created elsewhere");
    c.catalog.authenticate_client(&next.id, &next.token).await.expect("the new client, created elsewhere");
    c.elsewhere.revoke_recipient("e").await.expect("revoked elsewhere");
    settle().await;
    assert!(unauthenticated(c.catalog.authenticate_credential(&next.id).await), "a revocation elsewhere is seen");
    assert!(unauthenticated(c.catalog.authenticate_client(&next.id, &next.token).await));

    // And a revocation made here is seen at once.
    let (_, issued) =
        c.admin.create_recipient(NewRecipient { credential: oauth(), ..recipient("f") }).await.expect("created");
    let f = token_of(issued);
    c.catalog.authenticate_credential(&f.id).await.expect("a live client");
    c.admin.revoke_recipient("f").await.expect("revoked");
    assert!(unauthenticated(c.catalog.authenticate_credential(&f.id).await));
    assert!(unauthenticated(c.catalog.authenticate_client(&f.id, &f.token).await));
}

/// Federation policies: checked when added, listed, served while live, acting for their
/// recipient (also for file URLs) until removed, revoked, expired or dropped.
pub async fn federation_policies_act_for_their_recipient(c: &Subject) {
    c.admin.create_share("s", None).await.expect("created");
    c.admin.add_table("s", table("sc", "t")).await.expect("added");
    let (info, issued) = c
        .admin
        .create_recipient(NewRecipient { credential: CredentialRequest::None, ..recipient("Fed") })
        .await
        .expect("created");
    assert_eq!(issued, Issued::None);
    assert!(info.tokens.is_empty() && info.activation.is_none() && info.federation_policies.is_empty());
    c.admin.grant("s", "fed").await.expect("granted");

    for bad in [
        federation("http://idp.example", &["d2o"], SubjectClaim::Sub, "svc-1"),
        federation("not a url", &["d2o"], SubjectClaim::Sub, "svc-1"),
        federation("https://idp.example?tenant=1", &["d2o"], SubjectClaim::Sub, "svc-1"),
        federation("https://idp.example", &[], SubjectClaim::Sub, "svc-1"),
        federation("https://idp.example", &[" "], SubjectClaim::Sub, "svc-1"),
        federation("https://idp.example", &["d2o"], SubjectClaim::Sub, ""),
    ] {
        invalid(c.admin.add_federation_policy("fed", bad).await);
    }
    assert!(c.admin.show_recipient("fed").await.expect("shown").federation_policies.is_empty(), "nothing added");
    let good = federation("https://login.example.com/tenant/v2.0", &["api://d2o", "d2o"], SubjectClaim::Sub, "svc-1");
    assert!(matches!(c.admin.add_federation_policy("nobody", good.clone()).await, Err(CatalogError::NotFound { .. })));

    let info = c.admin.add_federation_policy("FED", good.clone()).await.expect("added");
    assert_eq!(info.federation_policies.len(), 1);
    let p = info.federation_policies[0].clone();
    assert_eq!(
        (&p.recipient_id, &p.issuer, &p.audiences, p.subject_claim, &p.subject, p.revoked_at),
        (&info.id, &good.issuer, &good.audiences, SubjectClaim::Sub, &good.subject, None)
    );
    assert_eq!(c.catalog.federation_policies().await.expect("listed").as_slice(), std::slice::from_ref(&p));
    let who = c.catalog.authenticate_credential(&p.id).await.expect("the policy acts for its recipient");
    assert_eq!((who.recipient.as_str(), who.id.as_str()), ("Fed", info.id.as_str()));
    let t = c.catalog.get_table(&who, "s", "sc", "t").await.expect("visible");
    c.catalog.file_access(&info.id, &t.id).await.expect("a policy is a credential for file URLs");

    // A second policy, added elsewhere, is served at the next request; removed, it acts no more.
    let groups = federation("http://127.0.0.1:8900", &["d2o"], SubjectClaim::Groups, "partners");
    let info = c.elsewhere.add_federation_policy("fed", groups).await.expect("added elsewhere");
    let p2 = info.federation_policies.iter().find(|q| q.id != p.id).expect("the new policy").clone();
    assert_eq!(p2.subject_claim, SubjectClaim::Groups);
    settle().await;
    let mut live: Vec<_> =
        c.catalog.federation_policies().await.expect("listed").iter().map(|q| q.id.clone()).collect();
    live.sort();
    let mut expected = vec![p.id.clone(), p2.id.clone()];
    expected.sort();
    assert_eq!(live, expected);
    c.catalog.authenticate_credential(&p2.id).await.expect("the second policy acts too");
    let (_, none) = c
        .admin
        .create_recipient(NewRecipient { credential: CredentialRequest::None, ..recipient("other") })
        .await
        .expect("created");
    assert_eq!(none, Issued::None);
    for (name, id) in [("fed", "no-such-policy"), ("other", p2.id.as_str()), ("nobody", p2.id.as_str())] {
        assert!(
            matches!(c.admin.remove_federation_policy(name, id).await, Err(CatalogError::NotFound { .. })),
            "{name} {id}"
        );
    }
    let info = c.admin.remove_federation_policy("fed", &p2.id).await.expect("removed");
    assert_eq!(info.federation_policies, std::slice::from_ref(&p));
    assert!(unauthenticated(c.catalog.authenticate_credential(&p2.id).await), "a removed policy acts no more");
    assert_eq!(c.catalog.federation_policies().await.expect("listed").as_slice(), std::slice::from_ref(&p));
    c.catalog.file_access(&info.id, &t.id).await.expect("the other policy still holds");

    // Rotation leaves policies alone; revocation revokes them.
    assert_eq!(c.admin.rotate_credential("fed", 0, CredentialRequest::None).await.expect("rotated"), Issued::None);
    c.catalog.authenticate_credential(&p.id).await.expect("rotation does not touch policies");
    let info = c.admin.revoke_recipient("fed").await.expect("revoked");
    assert_eq!(info.federation_policies.len(), 1);
    assert!(info.federation_policies[0].revoked_at.is_some(), "{:?}", info.federation_policies);
    assert!(c.catalog.federation_policies().await.expect("listed").is_empty(), "a revoked policy is not served");
    assert!(unauthenticated(c.catalog.authenticate_credential(&p.id).await));
    assert!(
        matches!(c.catalog.file_access(&info.id, &t.id).await, Err(CatalogError::NotFound { .. })),
        "revocation stops downloads"
    );

    // A revocation made elsewhere is seen at the next request.
    let info = c.admin.add_federation_policy("other", good.clone()).await.expect("added");
    let po = info.federation_policies[0].clone();
    c.catalog.authenticate_credential(&po.id).await.expect("live");
    c.elsewhere.revoke_recipient("other").await.expect("revoked elsewhere");
    settle().await;
    assert!(unauthenticated(c.catalog.authenticate_credential(&po.id).await));
    assert!(c.catalog.federation_policies().await.expect("listed").is_empty());

    // An expired recipient's policies are still served (its tokens are then refused as expired,
    // not as unmatched) but do not authenticate.
    let brief =
        NewRecipient { expires_at: Some(now() + 300), credential: CredentialRequest::None, ..recipient("brief") };
    c.admin.create_recipient(brief).await.expect("created");
    let info = c.admin.add_federation_policy("brief", good.clone()).await.expect("added");
    let pb = info.federation_policies[0].clone();
    assert_eq!(c.catalog.federation_policies().await.expect("listed").as_slice(), std::slice::from_ref(&pb));
    c.catalog.authenticate_credential(&pb.id).await.expect("not expired yet");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(c.catalog.federation_policies().await.expect("listed").as_slice(), std::slice::from_ref(&pb));
    let err = c.catalog.authenticate_credential(&pb.id).await.expect_err("expired");
    assert!(matches!(&err, CatalogError::Unauthenticated(m) if m.contains("expired")), "{err:?}");

    // Dropping a recipient removes its policies.
    c.admin
        .create_recipient(NewRecipient { credential: CredentialRequest::None, ..recipient("gone") })
        .await
        .expect("created");
    let info = c.admin.add_federation_policy("gone", good.clone()).await.expect("added");
    let pg = info.federation_policies[0].clone();
    assert_eq!(*c.catalog.federation_policies().await.expect("listed"), [pb.clone(), pg.clone()]);
    c.admin.drop_recipient("gone").await.expect("dropped");
    assert_eq!(c.catalog.federation_policies().await.expect("listed").as_slice(), std::slice::from_ref(&pb));
    assert!(unauthenticated(c.catalog.authenticate_credential(&pg.id).await));
    c.admin
        .create_recipient(NewRecipient { credential: CredentialRequest::None, ..recipient("gone") })
        .await
        .expect("created");
    assert!(c.admin.show_recipient("gone").await.expect("shown").federation_policies.is_empty());
}

/// An activation secret that was never issued is `NotFound`, to open and to redeem.
pub async fn unknown_activation_links_are_not_found(c: &Subject) {
    let (_, issued) = c.admin.create_recipient(invited("r", ActivationRequest::default())).await.expect("created");
    let link = link_of(issued);
    for secret in ["no-such-link", "", &link.secret[..link.secret.len() - 1]] {
        assert!(matches!(c.elsewhere.activation(secret).await, Err(CatalogError::NotFound { .. })), "{secret:?}");
        assert!(
            matches!(c.elsewhere.redeem_activation(secret).await, Err(CatalogError::NotFound { .. })),
            "{secret:?}"
        );
    }
    assert_eq!(c.elsewhere.activation(&link.secret).await.expect("shown").state, ActivationState::Ready);
}

/// A test-only EC P-256 public key.
const CLIENT_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdKfMEDifeOaRIli7SfhJm+hSPB8E
fJz+CWxqr4Kt3/JnabkhHL6X/FB4L5seU6t6DCnS9JEFwRBn1WWctYZspQ==
-----END PUBLIC KEY-----
";

pub async fn private_key_clients_hold_only_a_public_key(c: &Subject) {
    c.admin
        .create_recipient(NewRecipient { credential: CredentialRequest::None, ..recipient("k") })
        .await
        .expect("created");
    for bad in ["", "not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"] {
        assert!(matches!(c.admin.add_client_key("k", bad).await, Err(CatalogError::InvalidArgument(_))), "{bad:?}");
    }
    assert!(matches!(c.admin.add_client_key("nobody", CLIENT_KEY).await, Err(CatalogError::NotFound { .. })));
    let client = c.admin.add_client_key("k", CLIENT_KEY).await.expect("added");
    assert_eq!(client.kind, d2o_catalog::CredentialKind::OauthPrivateKeyJwt);
    assert!(
        matches!(c.admin.add_client_key("k", CLIENT_KEY).await, Err(CatalogError::AlreadyExists { .. })),
        "one key, one client"
    );
    let (who, key) = c.catalog.client_key(&client.id).await.expect("a live client");
    assert_eq!((who.recipient.as_str(), key.trim()), ("k", CLIENT_KEY.trim()));
    assert_eq!(c.catalog.authenticate_credential(&client.id).await.expect("its access tokens work").recipient, "k");
    assert!(matches!(c.catalog.client_key("no-such-client").await, Err(CatalogError::Unauthenticated(_))));
    // Neither its id nor its key is a bearer token or a client secret.
    assert!(c.catalog.authenticate(Some(&client.id)).await.is_err());
    assert!(c.catalog.authenticate_client(&client.id, CLIENT_KEY).await.is_err());
    let shown = c.admin.show_recipient("k").await.expect("shown");
    assert_eq!(shown.tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [client.id.as_str()]);
    c.admin.revoke_recipient("k").await.expect("revoked");
    assert!(matches!(c.catalog.client_key(&client.id).await, Err(CatalogError::Unauthenticated(_))));
    assert!(c.catalog.authenticate_credential(&client.id).await.is_err());
}

/// Importing a reference server's tree: ids and the file's token kept, a dry run changes
/// nothing, a second import changes nothing, changes are applied (removals only with prune),
/// and bad input changes nothing.
pub async fn import_keeps_ids_and_tokens_and_is_repeatable(c: &Subject) {
    use d2o_catalog::{ImportChange, ImportShare, ImportSpec, LegacyToken};
    const TOKEN: &str = "reference-server-token-0123456789";
    let entry = |schema: &str, name: &str, id: &str| TableEntry { id: Some(id.into()), ..table(schema, name) };
    let spec = |tables: Vec<TableEntry>, prune: bool| ImportSpec {
        shares: vec![ImportShare { name: "s".into(), id: Some("share-id-1".into()), tables }],
        legacy: Some(LegacyToken { recipient: "legacy".into(), token: TOKEN.into() }),
        prune,
    };
    let first = spec(vec![entry("sc", "t1", "id-1"), entry("sc", "t2", "id-2")], false);
    let planned = c.admin.import(&first, true).await.expect("dry run");
    assert!(c.admin.list_shares().await.expect("listed").is_empty(), "a dry run changes nothing");
    let done = c.admin.import(&first, false).await.expect("imported");
    assert_eq!(done, planned, "the dry run's plan is what the import does");
    let kinds: Vec<&str> = done
        .changes
        .iter()
        .map(|ch| match ch {
            ImportChange::CreateShare { .. } => "create share",
            ImportChange::AddTable { .. } => "add table",
            ImportChange::CreateRecipient { .. } => "create recipient",
            ImportChange::AddToken { .. } => "add token",
            ImportChange::Grant { .. } => "grant",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["create share", "add table", "add table", "create recipient", "add token", "grant"]);
    let share = c.admin.show_share("s").await.expect("share");
    assert_eq!(share.id, "share-id-1");
    let ids: Vec<Option<&str>> = share.tables.iter().map(|t| t.id.as_deref()).collect();
    assert_eq!(ids, [Some("id-1"), Some("id-2")]);
    settle().await;
    let who = c.catalog.authenticate(Some(TOKEN)).await.expect("the file's token works");
    assert_eq!(who.recipient, "legacy");
    assert_eq!(c.catalog.get_table(&who, "s", "sc", "t1").await.expect("visible").id, "id-1");

    assert!(c.admin.import(&first, false).await.expect("again").changes.is_empty(), "repeatable");

    // A changed file: t1 moved, t3 new, t2 gone (kept without prune).
    let moved = TableEntry { location: "/data/moved".into(), start_version: 2, ..entry("sc", "t1", "id-1") };
    let changed = spec(vec![moved, entry("sc", "t3", "id-3")], false);
    let plan = c.admin.import(&changed, false).await.expect("updated").changes;
    assert!(
        matches!(&plan[0], ImportChange::UpdateTable { table, fields, .. } if table == "t1" && fields.len() == 2),
        "{plan:?}"
    );
    assert!(matches!(&plan[1], ImportChange::AddTable { id, .. } if id == "id-3"), "{plan:?}");
    assert_eq!(plan.len(), 2);
    assert_eq!(c.admin.show_share("s").await.expect("share").tables.len(), 3, "nothing removed without prune");
    let pruned = c.admin.import(&spec(changed.shares[0].tables.clone(), true), false).await.expect("pruned").changes;
    assert!(matches!(&pruned[..], [ImportChange::RemoveTable { table, .. }] if table == "t2"), "{pruned:?}");
    let t1 = c.admin.show_share("s").await.expect("share").tables.into_iter().find(|t| t.name == "t1").expect("t1");
    assert!(
        t1.location.ends_with("/data/moved/") && t1.start_version == 2 && t1.id.as_deref() == Some("id-1"),
        "{t1:?}"
    );

    // Bad input changes nothing: a location d2o cannot serve, an id that is another table's.
    let before = c.admin.show_share("s").await.expect("share");
    for tables in [
        vec![entry("sc", "t4", "id-4"), TableEntry { location: "ftp://host/t".into(), ..entry("sc", "t5", "id-5") }],
        vec![entry("sc", "t4", "id-4"), entry("other", "x", "id-3")],
    ] {
        let mut bad = spec(tables, false);
        bad.shares[0].tables.splice(0..0, changed.shares[0].tables.clone());
        assert!(matches!(c.admin.import(&bad, false).await, Err(CatalogError::InvalidArgument(_))));
        assert_eq!(c.admin.show_share("s").await.expect("share"), before, "nothing changed");
    }
    // The token cannot become a second recipient's.
    let mut stolen = spec(changed.shares[0].tables.clone(), false);
    stolen.legacy = Some(LegacyToken { recipient: "someone_else".into(), token: TOKEN.into() });
    assert!(matches!(c.admin.import(&stolen, false).await, Err(CatalogError::InvalidArgument(_))));
    assert!(matches!(c.admin.show_recipient("someone_else").await, Err(CatalogError::NotFound { .. })));
    // A changed token is added; with prune the old one is revoked.
    let mut rotated = spec(changed.shares[0].tables.clone(), true);
    rotated.legacy = Some(LegacyToken { recipient: "legacy".into(), token: "the-new-reference-token".into() });
    let plan = c.admin.import(&rotated, false).await.expect("rotated").changes;
    assert!(matches!(&plan[..], [ImportChange::AddToken { .. }, ImportChange::RevokeToken { .. }]), "{plan:?}");
    settle().await;
    assert!(c.catalog.authenticate(Some(TOKEN)).await.is_err(), "the old token is revoked");
    assert!(c.catalog.authenticate(Some("the-new-reference-token")).await.is_ok());
}
