//! The contract every catalog backend fulfils (see `d2o_catalog::Catalog` and `Admin`).

use std::collections::BTreeMap;

use d2o_catalog::{
    Admin, AuditEvent, AuditFilter, Catalog, CatalogError, NewRecipient, PageRequest, PartitionFilter, SqlCatalog,
    TableEntry,
};

fn table(schema: &str, name: &str) -> TableEntry {
    TableEntry {
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

pub async fn shares_and_tables(c: &SqlCatalog) {
    let s = c.create_share("External_Retail", Some("for partners")).await.expect("created");
    assert_eq!(s.name, "External_Retail");
    assert!(matches!(c.create_share("external_retail", None).await, Err(CatalogError::AlreadyExists { .. })));
    c.add_table("external_retail", table("retail", "sales")).await.expect("added");
    let s = c.add_table("EXTERNAL_RETAIL", table("retail", "customers")).await.expect("added");
    assert_eq!(s.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["customers", "sales"]);
    assert_eq!(s.tables[0].location, "file:///data/retail/customers/");
    assert!(matches!(
        c.add_table("external_retail", table("Retail", "SALES")).await,
        Err(CatalogError::AlreadyExists { .. })
    ));
    assert!(matches!(c.add_table("nope", table("a", "b")).await, Err(CatalogError::NotFound { .. })));
    let s = c.comment_share("external_retail", Some("new comment")).await.expect("commented");
    assert_eq!(s.comment.as_deref(), Some("new comment"));
    let s = c.remove_table("external_retail", "RETAIL", "Sales").await.expect("removed");
    assert_eq!(s.tables.len(), 1);
    assert!(matches!(c.remove_table("external_retail", "retail", "sales").await, Err(CatalogError::NotFound { .. })));
    assert_eq!(Admin::list_shares(c).await.expect("listed").len(), 1);
    c.drop_share("external_retail").await.expect("dropped");
    assert!(Admin::list_shares(c).await.expect("listed").is_empty());
    assert!(matches!(c.show_share("external_retail").await, Err(CatalogError::NotFound { .. })));
}

pub async fn bad_input_changes_nothing(c: &SqlCatalog) {
    for name in ["", "a/b", "tab\there", &"x".repeat(256)] {
        assert!(matches!(c.create_share(name, None).await, Err(CatalogError::InvalidArgument(_))), "{name:?}");
        assert!(matches!(c.create_recipient(recipient(name)).await, Err(CatalogError::InvalidArgument(_))), "{name:?}");
    }
    c.create_share("s", None).await.expect("created");
    let mut bad = table("sc", "t");
    bad.partition_filter = Some("region > 'EU'".into());
    assert!(matches!(c.add_table("s", bad).await, Err(CatalogError::InvalidArgument(_))));
    assert!(matches!(c.add_table("s", table("a/b", "t")).await, Err(CatalogError::InvalidArgument(_))));
    // Object storage is not served yet: refused when added, not at every request.
    for location in ["s3://bucket/t", "s3a://bucket/t", "gs://bucket/t", "abfss://c@account.dfs.core.windows.net/t"] {
        let cloud = TableEntry { location: location.into(), ..table("sc", "cloud") };
        match c.add_table("s", cloud).await {
            Err(CatalogError::InvalidArgument(m)) => assert!(m.contains("object storage"), "{m}"),
            other => panic!("{location}: {other:?}"),
        }
    }
    assert!(c.show_share("s").await.expect("exists").tables.is_empty(), "nothing half-made");
    c.create_recipient(recipient("r")).await.expect("created");
    assert!(matches!(c.create_recipient(recipient("R")).await, Err(CatalogError::AlreadyExists { .. })));
    assert_eq!(c.show_recipient("r").await.expect("exists").tokens.len(), 1, "the failed create left no token");
    let past = NewRecipient { expires_at: Some(now() - 1000), ..recipient("late") };
    assert!(matches!(c.create_recipient(past).await, Err(CatalogError::InvalidArgument(_))));
    assert!(matches!(c.grant("nope", "r").await, Err(CatalogError::NotFound { .. })));
    assert!(matches!(c.grant("s", "nope").await, Err(CatalogError::NotFound { .. })));
}

pub async fn tokens_authenticate_rotate_and_revoke(c: &SqlCatalog) {
    let props = BTreeMap::from([("region".to_owned(), "EU".to_owned())]);
    let (info, first) = c
        .create_recipient(NewRecipient { properties: props.clone(), ..recipient("Partner_Co") })
        .await
        .expect("created");
    assert!(first.token.len() >= 40);
    assert_eq!(info.tokens.len(), 1);
    let who = c.authenticate(Some(&first.token)).await.expect("authenticated");
    assert_eq!(who.recipient, "Partner_Co");
    assert_eq!(who.properties, props);
    for bad in [None, Some("wrong"), Some(&first.token[..first.token.len() - 1])] {
        assert!(matches!(c.authenticate(bad).await, Err(CatalogError::Unauthenticated(_))), "{bad:?}");
    }
    // Rotate with a grace period: both work; the old one ends within the grace.
    let second = c.rotate_token("partner_co", 3600).await.expect("rotated");
    assert!(c.authenticate(Some(&first.token)).await.is_ok());
    assert!(c.authenticate(Some(&second.token)).await.is_ok());
    let tokens = c.show_recipient("partner_co").await.expect("shown").tokens;
    let old = tokens.iter().find(|t| t.expires_at.is_some()).expect("the old token got an expiry");
    let limit = old.expires_at.expect("expiry");
    assert!(limit <= now() + 3_600_000 && limit > now() + 3_500_000);
    // A later rotation with a longer grace never extends it.
    let third = c.rotate_token("partner_co", 7200).await.expect("rotated");
    let tokens = c.show_recipient("partner_co").await.expect("shown").tokens;
    let first_info = tokens.iter().find(|t| t.id == old.id).expect("still listed");
    assert_eq!(first_info.expires_at, Some(limit));
    // Grace 0 ends the older ones now.
    let fourth = c.rotate_token("partner_co", 0).await.expect("rotated");
    for old in [&first, &second, &third] {
        assert!(matches!(c.authenticate(Some(&old.token)).await, Err(CatalogError::Unauthenticated(_))));
    }
    assert!(c.authenticate(Some(&fourth.token)).await.is_ok());
    // Revoke ends everything at once.
    let info = c.revoke_recipient("partner_co").await.expect("revoked");
    assert!(info.tokens.iter().all(|t| !t.is_active(now())));
    assert!(matches!(c.authenticate(Some(&fourth.token)).await, Err(CatalogError::Unauthenticated(_))));
    c.drop_recipient("partner_co").await.expect("dropped");
    assert!(matches!(c.show_recipient("partner_co").await, Err(CatalogError::NotFound { .. })));
}

pub async fn recipient_expiry(c: &SqlCatalog) {
    let (_, token) = c
        .create_recipient(NewRecipient { expires_at: Some(now() + 300), ..recipient("brief") })
        .await
        .expect("created");
    assert_eq!(token.expires_at.map(|e| e > now()), Some(true));
    assert!(c.authenticate(Some(&token.token)).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let err = c.authenticate(Some(&token.token)).await.expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");
    // A rotation cannot outlive the recipient.
    let rotated = c.rotate_token("brief", 3600).await.expect("rotated");
    assert!(matches!(c.authenticate(Some(&rotated.token)).await, Err(CatalogError::Unauthenticated(_))));
}

pub async fn grants_decide_visibility(c: &SqlCatalog) {
    c.create_share("granted", None).await.expect("created");
    c.create_share("secret", None).await.expect("created");
    c.add_table("granted", table("sc", "t")).await.expect("added");
    c.add_table("secret", table("sc", "t")).await.expect("added");
    let (_, token) = c.create_recipient(recipient("r")).await.expect("created");
    let who = c.authenticate(Some(&token.token)).await.expect("authenticated");
    let page = PageRequest::default();
    assert!(Catalog::list_shares(c, &who, &page).await.expect("listed").items.is_empty());
    c.grant("granted", "r").await.expect("granted");
    c.grant("GRANTED", "R").await.expect("granting twice is fine");
    let shares = Catalog::list_shares(c, &who, &page).await.expect("listed").items;
    assert_eq!(shares.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["granted"]);
    let t = c.get_table(&who, "Granted", "SC", "T").await.expect("visible");
    assert_eq!((t.share.as_str(), t.schema.as_str(), t.name.as_str()), ("granted", "sc", "t"));
    assert!(t.history_shared);
    // A share that is not granted answers exactly like one that does not exist.
    let hidden = c.get_share(&who, "secret").await.expect_err("hidden").to_string();
    let missing = c.get_share(&who, "nonexistent").await.expect_err("missing").to_string();
    assert_eq!(hidden.replace("secret", "X"), missing.replace("nonexistent", "X"));
    assert!(matches!(c.get_table(&who, "secret", "sc", "t").await, Err(CatalogError::NotFound { kind: "share", .. })));
    assert!(matches!(c.list_schemas(&who, "secret", &page).await, Err(CatalogError::NotFound { kind: "share", .. })));
    assert!(matches!(
        c.get_table(&who, "granted", "nope", "t").await,
        Err(CatalogError::NotFound { kind: "schema", .. })
    ));
    assert!(matches!(
        c.get_table(&who, "granted", "sc", "nope").await,
        Err(CatalogError::NotFound { kind: "table", .. })
    ));
    c.revoke_grant("granted", "r").await.expect("revoked");
    assert!(matches!(c.get_table(&who, "granted", "sc", "t").await, Err(CatalogError::NotFound { .. })));
    assert!(matches!(c.revoke_grant("granted", "r").await, Err(CatalogError::NotFound { .. })));
}

pub async fn pagination_covers_everything_once(c: &SqlCatalog) {
    let (_, token) = c.create_recipient(recipient("r")).await.expect("created");
    let who = c.authenticate(Some(&token.token)).await.expect("authenticated");
    for i in 0..7 {
        let name = format!("share{i}");
        c.create_share(&name, None).await.expect("created");
        c.grant(&name, "r").await.expect("granted");
    }
    for schema in ["a", "b", "c"] {
        for t in 0..3 {
            c.add_table("share0", table(schema, &format!("t{t}"))).await.expect("added");
        }
    }
    let mut names = Vec::new();
    let mut page = PageRequest { max_results: Some(2), page_token: None };
    loop {
        let p = Catalog::list_shares(c, &who, &page).await.expect("page");
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
        let p = c.list_all_tables(&who, "share0", &page).await.expect("page");
        all.extend(p.items.into_iter().map(|t| format!("{}.{}", t.schema, t.name)));
        match p.next_page_token {
            Some(t) => page.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(all.len(), 9);
    assert_eq!(all.iter().collect::<std::collections::BTreeSet<_>>().len(), 9);
    let schemas =
        c.list_schemas(&who, "share0", &PageRequest { max_results: Some(1), page_token: None }).await.expect("page");
    assert_eq!(schemas.items.len(), 1);
    assert!(schemas.next_page_token.is_some());
    let zero =
        Catalog::list_shares(c, &who, &PageRequest { max_results: Some(0), page_token: None }).await.expect("page");
    assert!(zero.items.is_empty() && zero.next_page_token.is_some());
    for bad in [Some("garbage".to_owned()), zero.next_page_token.clone()] {
        let r = c.list_all_tables(&who, "share0", &PageRequest { max_results: None, page_token: bad }).await;
        assert!(matches!(r, Err(CatalogError::InvalidArgument(_))));
    }
    let r = Catalog::list_shares(c, &who, &PageRequest { max_results: Some(501), page_token: None }).await;
    assert!(matches!(r, Err(CatalogError::InvalidArgument(_))));
}

pub async fn audit_events_filter(c: &SqlCatalog) {
    let base = now();
    for (i, (who, action, table)) in [
        ("partner_co", "query", "sales"),
        ("partner_co", "metadata", "customers"),
        ("other", "query", "sales"),
        ("admin", "share.create", ""),
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
            status: 200,
            client_ip: Some("127.0.0.1".into()),
            user_agent: Some("test".into()),
            request_id: Some(format!("req-{i}")),
            detail: (i == 0).then(|| "bytes=0-99/1234".into()),
        };
        c.append_audit(&e).await.expect("appended");
    }
    let all = c.audit(&AuditFilter::default()).await.expect("read");
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].time_ms >= w[1].time_ms), "newest first");
    assert_eq!(all[3].request_id.as_deref(), Some("req-0"));
    assert_eq!(all[3].detail.as_deref(), Some("bytes=0-99/1234"), "the detail is stored");
    let f = |f: AuditFilter| async move { c.audit(&f).await.expect("read").len() };
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
}

pub async fn migrations_are_idempotent(c: &SqlCatalog) {
    c.create_share("kept", None).await.expect("created");
    // Connecting again, as a restart or a second replica does, migrates nothing and loses nothing.
    let again = SqlCatalog::connect(c.display()).await.expect("reconnected");
    assert_eq!(Admin::list_shares(&again).await.expect("listed").len(), 1);
    again.create_share("more", None).await.expect("created through the second handle");
    assert_eq!(Admin::list_shares(c).await.expect("listed").len(), 2);
}

pub async fn concurrent_changes(c: &SqlCatalog) {
    c.create_share("busy", None).await.expect("created");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("r{i}");
            c.create_recipient(NewRecipient { name: name.clone(), ..Default::default() }).await?;
            c.grant("busy", &name).await?;
            c.add_table("busy", table("sc", &format!("t{i}"))).await?;
            c.rotate_token(&name, 0).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("no change is lost under concurrency");
    }
    let share = c.show_share("busy").await.expect("shown");
    assert_eq!(share.tables.len(), 16);
    assert_eq!(share.recipients.len(), 16);
}

/// Changes made elsewhere (the CLI on the same catalog, another replica) reach a running
/// catalog at its next `authenticate` (which starts every request) once the freshness window
/// has passed, with no restart.
pub async fn changes_made_elsewhere_are_seen_by_the_next_request(c: &SqlCatalog) {
    let other = SqlCatalog::connect(c.display()).await.expect("a second handle shares no memory with the first");
    let page = PageRequest::default();
    other.create_share("s", None).await.expect("created");
    other.add_table("s", table("sc", "t")).await.expect("added");
    let (_, issued) = other.create_recipient(recipient("r")).await.expect("created");
    settle().await;
    let who = c.authenticate(Some(&issued.token)).await.expect("a new recipient authenticates at once");
    assert!(Catalog::list_shares(c, &who, &page).await.expect("listed").items.is_empty());

    other.grant("s", "r").await.expect("granted");
    settle().await;
    let who = c.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert_eq!(Catalog::list_shares(c, &who, &page).await.expect("listed").items.len(), 1);
    assert_eq!(c.get_table(&who, "s", "sc", "t").await.expect("visible").name, "t");

    other
        .add_table("s", TableEntry { partition_filter: Some("region = 'EU'".into()), ..table("sc", "u") })
        .await
        .expect("added");
    settle().await;
    let who = c.authenticate(Some(&issued.token)).await.expect("authenticated");
    let u = c.get_table(&who, "s", "sc", "u").await.expect("a new table is visible");
    assert_eq!(u.partition_filter, Some(PartitionFilter::parse("region = 'EU'").expect("valid")));

    other.revoke_grant("s", "r").await.expect("revoked");
    settle().await;
    let who = c.authenticate(Some(&issued.token)).await.expect("authenticated");
    assert!(matches!(c.get_table(&who, "s", "sc", "t").await, Err(CatalogError::NotFound { kind: "share", .. })));

    let rotated = other.rotate_token("r", 0).await.expect("rotated");
    settle().await;
    assert!(matches!(c.authenticate(Some(&issued.token)).await, Err(CatalogError::Unauthenticated(_))));
    c.authenticate(Some(&rotated.token)).await.expect("the new token works at once");
    other.revoke_recipient("r").await.expect("revoked");
    settle().await;
    assert!(matches!(c.authenticate(Some(&rotated.token)).await, Err(CatalogError::Unauthenticated(_))));
}

/// Many requests at once each see every change committed before the freshness window, while
/// the catalog changes.
pub async fn concurrent_reads_see_committed_changes(c: &SqlCatalog) {
    c.create_share("s", None).await.expect("created");
    let (_, issued) = c.create_recipient(recipient("r")).await.expect("created");
    c.grant("s", "r").await.expect("granted");
    let other = SqlCatalog::connect(c.display()).await.expect("second handle");
    for i in 0..20 {
        other.add_table("s", table("sc", &format!("t{i}"))).await.expect("added");
        settle().await;
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (c, token) = (c.clone(), issued.token.clone());
                tokio::spawn(async move {
                    let who = c.authenticate(Some(&token)).await?;
                    c.list_tables(&who, "s", "sc", &PageRequest::default()).await.map(|p| p.items.len())
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
pub async fn concurrent_audit_events_are_all_stored(c: &SqlCatalog) {
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let c = c.clone();
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
                c.append_audit(&e).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("appended");
    }
    let all = c.audit(&AuditFilter { limit: Some(1000), ..Default::default() }).await.expect("read");
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
pub async fn import_tables_is_atomic_and_idempotent(c: &SqlCatalog) {
    c.create_share("bulk", None).await.expect("created");
    let many: Vec<_> = (0..50).map(|i| table(&format!("s{}", i % 5), &format!("t{i}"))).collect();
    assert_eq!(c.import_tables("bulk", many.clone()).await.expect("imported"), 50);
    assert_eq!(c.import_tables("bulk", many).await.expect("imported again"), 0, "existing names are skipped");
    let bad = vec![table("s0", "new"), TableEntry { partition_filter: Some("nonsense (".into()), ..table("s0", "x") }];
    assert!(matches!(c.import_tables("bulk", bad).await, Err(CatalogError::InvalidArgument(_))));
    assert_eq!(c.show_share("bulk").await.expect("shown").tables.len(), 50, "a failed import adds nothing");
    assert!(matches!(c.import_tables("missing", vec![table("s", "t")]).await, Err(CatalogError::NotFound { .. })));
}

/// A file URL names a recipient and a table by id; the check made when it is used follows
/// grants, revocation and expiry as `authenticate` does, including changes made elsewhere.
pub async fn file_access_follows_grants_and_revocation(c: &SqlCatalog) {
    let other = SqlCatalog::connect(c.display()).await.expect("a second handle");
    c.create_share("s", None).await.expect("created");
    c.create_share("elsewhere", None).await.expect("created");
    c.add_table("s", table("sc", "t")).await.expect("added");
    c.add_table("elsewhere", table("sc", "t")).await.expect("added");
    let (_, issued) = c.create_recipient(recipient("r")).await.expect("created");
    c.grant("s", "r").await.expect("granted");
    let who = c.authenticate(Some(&issued.token)).await.expect("authenticated");
    let t = c.get_table(&who, "s", "sc", "t").await.expect("visible");
    let (by_id, table) = c.file_access(&who.id, &t.id).await.expect("granted table");
    assert_eq!((by_id, &table), (who.clone(), &t));

    let not_found = |r: Result<_, CatalogError>| matches!(r, Err(CatalogError::NotFound { .. }));
    // The same location in a share that is not granted is another table.
    let elsewhere = other.show_share("elsewhere").await.expect("shown");
    assert_eq!(elsewhere.tables[0].location, t.location.as_str());
    assert!(not_found(c.file_access(&who.id, "no-such-table").await));
    assert!(not_found(c.file_access("no-such-recipient", &t.id).await));

    other.revoke_grant("s", "r").await.expect("revoked");
    settle().await;
    assert!(not_found(c.file_access(&who.id, &t.id).await), "a removed grant stops downloads");
    other.grant("s", "r").await.expect("granted again");
    settle().await;
    c.file_access(&who.id, &t.id).await.expect("granted again");

    other.rotate_token("r", 0).await.expect("rotated");
    settle().await;
    c.file_access(&who.id, &t.id).await.expect("a rotated recipient still has a credential");
    other.revoke_recipient("r").await.expect("revoked");
    settle().await;
    assert!(not_found(c.file_access(&who.id, &t.id).await), "revocation stops downloads");

    let (_, issued) = c
        .create_recipient(NewRecipient { expires_at: Some(now() + 150), ..recipient("brief") })
        .await
        .expect("created");
    c.grant("s", "brief").await.expect("granted");
    let brief = c.authenticate(Some(&issued.token)).await.expect("authenticated");
    c.file_access(&brief.id, &t.id).await.expect("not expired yet");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(not_found(c.file_access(&brief.id, &t.id).await), "expiry stops downloads");
    other.drop_recipient("brief").await.expect("dropped");
    settle().await;
    assert!(not_found(c.file_access(&brief.id, &t.id).await));
}
