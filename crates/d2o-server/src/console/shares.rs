//! Shares: the list, one share's tables and grants, and their actions (create and drop a
//! share, add a table after checking that its location holds a Delta table, remove a table,
//! grant and revoke).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use d2o_catalog::{Admin, ShareInfo, TableEntry, UsageBy, UsageQuery};
use maud::{Markup, html};

use super::charts::{Metric, Window, stacked_bars};
use super::layout::{Section, button, csrf, page, page_with, seg, when};
use super::message;
use super::session::{Action, Flash, Page, redirect};
use crate::AppState;

pub(super) async fn list(Page(session): Page) -> Response {
    let shares = match session.admin.inner().list_shares().await {
        Ok(shares) => shares,
        Err(e) => {
            return page_with(
                &session,
                Section::Shares,
                "Shares",
                StatusCode::INTERNAL_SERVER_ERROR,
                error(&message(e)),
            );
        }
    };
    let content = html! {
        section.card {
            @if shares.is_empty() {
                p.empty { "No shares yet. Create one below, then add tables to it." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Share" } th { "Comment" } th.num { "Tables" } th { "Recipients" } th { "Created" } } }
                    tbody {
                        @for s in &shares {
                            tr {
                                td { a href={ "/console/shares/" (seg(&s.name)) } { (s.name) } }
                                td { (s.comment.as_deref().unwrap_or("")) }
                                td.num { (s.tables.len()) }
                                td { (s.recipients.join(", ")) }
                                td { (when(s.created_at)) }
                            }
                        }
                    }
                } }
            }
        }
        section.card {
            h2 { "New share" }
            form.row method="post" action="/console/shares" {
                (csrf(&session))
                label { "Name" input name="name" required maxlength="255" placeholder="external_retail"; }
                label { "Comment" input name="comment" maxlength="1000"; }
                button type="submit" { "Create share" }
            }
        }
    };
    page(&session, Section::Shares, "Shares", content)
}

fn error(text: &str) -> Markup {
    html! { p.flash.error role="alert" { (text) } }
}

fn share_path(name: &str) -> String {
    format!("/console/shares/{}", seg(name))
}

pub(super) async fn create(State(state): State<AppState>, Action { session, fields }: Action) -> Response {
    let Ok(name) = fields.required("name", "A share name") else {
        return redirect(&state, "/console/shares", Flash::error("A share name is required."));
    };
    match session.admin.create_share(name, fields.get("comment")).await {
        Ok(share) => redirect(&state, &share_path(&share.name), Flash::ok(format!("Share {} created.", share.name))),
        Err(e) => redirect(&state, "/console/shares", Flash::error(message(e))),
    }
}

pub(super) async fn drop(
    State(state): State<AppState>,
    Path(share): Path<String>,
    Action { session, .. }: Action,
) -> Response {
    match session.admin.drop_share(&share).await {
        Ok(()) => redirect(&state, "/console/shares", Flash::ok(format!("Share {share} dropped."))),
        Err(e) => redirect(&state, &share_path(&share), Flash::error(message(e))),
    }
}

/// The table's current version, or why it cannot be read.
async fn version_of(state: &AppState, location: &str) -> Result<u64, String> {
    let url = d2o_catalog::share_config::resolve_location(location, std::path::Path::new("/"))?;
    let tables = state.tables.clone();
    let location = url.clone();
    tokio::task::spawn_blocking(move || tables.latest(&location).map(|s| s.version()))
        .await
        .map_err(|e| format!("the check did not finish: {e}"))?
        .map_err(|e| crate::ApiError::from(e).public_message())
}

/// Tables shown with their current version, at most this many (a version is a log read).
const VERSIONS_SHOWN: usize = 100;

pub(super) async fn show(State(state): State<AppState>, Path(name): Path<String>, Page(session): Page) -> Response {
    let admin = session.admin.inner();
    let share = match admin.show_share(&name).await {
        Ok(share) => share,
        Err(e) => {
            let status = crate::ApiError::from(e.clone()).status();
            return page_with(&session, Section::Shares, &name, status, error(&message(e)));
        }
    };
    let versions =
        futures::future::join_all(share.tables.iter().take(VERSIONS_SHOWN).map(|t| version_of(&state, &t.location)))
            .await;
    let recipients = admin.list_recipients().await.unwrap_or_default();
    let window = Window::of(None, chrono::Utc::now().timestamp_millis());
    let query = UsageQuery {
        by: UsageBy::Table,
        since_ms: window.since_ms,
        until_ms: window.until_ms,
        bucket_ms: window.bucket_ms,
        principal: None,
        share: Some(share.name.clone()),
    };
    let usage = admin.usage(&query).await.unwrap_or_default();
    let content = html! {
        @if let Some(comment) = &share.comment { p.muted { (comment) } }
        section.card {
            h2 { "Tables" }
            (tables(&session, &share, &versions))
        }
        div.grid {
            section.card {
                h2 { "Add a table" }
                form.stack method="post" action={ (share_path(&share.name)) "/tables" } {
                    (csrf(&session))
                    label { "Schema" input name="schema" required placeholder="retail"; }
                    label { "Table name" input name="table" required placeholder="sales"; }
                    label { "Location (a Delta table: absolute path or s3://, gs://, abfss:// URL)"
                        input name="location" required placeholder="/data/delta/sales"; }
                    label { "Partition filter (optional)" input name="partition_filter" placeholder="region = 'EU'"; }
                    label.check { input type="checkbox" name="history_shared" checked; "Share history (time travel, change data feed)" }
                    label { "Comment (optional)" input name="comment"; }
                    button type="submit" { "Add table" }
                }
            }
            section.card {
                h2 { "Recipients" }
                (grants(&session, &share, &recipients))
            }
        }
        section.card {
            h2 { "Reads of this share's tables, last 24 hours" }
            (stacked_bars(&usage, window, Metric::Requests, "table"))
        }
        section.card {
            h2 { "Drop this share" }
            p.muted { "Its tables and grants go with it; the data stays where it is." }
            (button(&session, &format!("{}/drop", share_path(&share.name)), "Drop share", "danger",
                Some(&format!("Drop share {}? Recipients lose access at once.", share.name))))
        }
    };
    page(&session, Section::Shares, &format!("Share {}", share.name), content)
}

fn tables(session: &super::session::Session, share: &ShareInfo, versions: &[Result<u64, String>]) -> Markup {
    html! {
        @if share.tables.is_empty() {
            p.empty { "No tables yet." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Table" } th { "Location" } th.num { "Version" } th { "History" } th { "Partition filter" } th {} } }
                tbody {
                    @for (i, t) in share.tables.iter().enumerate() {
                        tr {
                            td { (t.schema) "." (t.name)
                                @if let Some(c) = &t.comment { br; span.muted { (c) } } }
                            td.mono { (t.location) }
                            td.num {
                                @match versions.get(i) {
                                    Some(Ok(v)) => (v),
                                    Some(Err(e)) => span.badge.bad title=(e) { "unreadable" },
                                    None => span.muted { "-" },
                                }
                            }
                            td {
                                @if t.history_shared { span.badge.good { "shared" } } @else { span.badge { "latest only" } }
                                @if t.start_version > 0 { " from v" (t.start_version) }
                            }
                            td.mono { (t.partition_filter.as_deref().unwrap_or("")) }
                            td {
                                form.inline method="post" action={ (share_path(&share.name)) "/tables/remove" }
                                    data-confirm={ "Remove " (t.schema) "." (t.name) " from the share?" } {
                                    (csrf(session))
                                    input type="hidden" name="schema" value=(t.schema);
                                    input type="hidden" name="table" value=(t.name);
                                    button.danger.small type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn grants(session: &super::session::Session, share: &ShareInfo, recipients: &[d2o_catalog::RecipientInfo]) -> Markup {
    let others: Vec<&str> = recipients
        .iter()
        .map(|r| r.name.as_str())
        .filter(|r| !share.recipients.iter().any(|g| g.eq_ignore_ascii_case(r)))
        .collect();
    html! {
        @if share.recipients.is_empty() { p.muted { "Nobody can read this share yet." } }
        ul {
            @for r in &share.recipients {
                li {
                    a href={ "/console/recipients/" (seg(r)) } { (r) } " "
                    (grant_button(session, "/console/grants/revoke", &share.name, r, "share", "Revoke", "danger small"))
                }
            }
        }
        @if !others.is_empty() {
            form.row method="post" action="/console/grants" {
                (csrf(session))
                input type="hidden" name="share" value=(share.name);
                input type="hidden" name="back" value="share";
                label { "Grant to" select name="recipient" { @for r in &others { option value=(r) { (r) } } } }
                button type="submit" { "Grant" }
            }
        }
    }
}

/// A form that grants or revokes `share` for `recipient`, then returns to the `back` page.
pub(super) fn grant_button(
    session: &super::session::Session,
    action: &str,
    share: &str,
    recipient: &str,
    back: &str,
    label: &str,
    class: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(session))
            input type="hidden" name="share" value=(share);
            input type="hidden" name="recipient" value=(recipient);
            input type="hidden" name="back" value=(back);
            button class=(class) type="submit" { (label) }
        }
    }
}

pub(super) async fn add_table(
    State(state): State<AppState>,
    Path(share): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let back = share_path(&share);
    let entry = (|| -> Result<TableEntry, String> {
        Ok(TableEntry {
            id: None,
            schema: fields.required("schema", "A schema")?.to_owned(),
            name: fields.required("table", "A table name")?.to_owned(),
            location: fields.required("location", "A location")?.to_owned(),
            history_shared: fields.checked("history_shared"),
            start_version: 0,
            cdf_enabled: None,
            partition_filter: fields.get("partition_filter").map(str::to_owned),
            comment: fields.get("comment").map(str::to_owned),
        })
    })();
    let entry = match entry {
        Ok(entry) => entry,
        Err(e) => return redirect(&state, &back, Flash::error(e)),
    };
    if let Err(e) = version_of(&state, &entry.location).await {
        return redirect(&state, &back, Flash::error(format!("No Delta table at {}: {e}", entry.location)));
    }
    let name = format!("{}.{}", entry.schema, entry.name);
    match session.admin.add_table(&share, entry).await {
        Ok(_) => redirect(&state, &back, Flash::ok(format!("Table {name} added."))),
        Err(e) => redirect(&state, &back, Flash::error(message(e))),
    }
}

pub(super) async fn remove_table(
    State(state): State<AppState>,
    Path(share): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let back = share_path(&share);
    let (Some(schema), Some(table)) = (fields.get("schema"), fields.get("table")) else {
        return redirect(&state, &back, Flash::error("Which table? The form lacks its schema or name."));
    };
    match session.admin.remove_table(&share, schema, table).await {
        Ok(_) => redirect(&state, &back, Flash::ok(format!("Table {schema}.{table} removed."))),
        Err(e) => redirect(&state, &back, Flash::error(message(e))),
    }
}

/// Where a grant form returns: the share's page or the recipient's (never a URL from the form).
fn grant_back(fields: &super::session::Fields, share: &str, recipient: &str) -> String {
    match fields.get("back") {
        Some("recipient") => format!("/console/recipients/{}", seg(recipient)),
        _ => share_path(share),
    }
}

pub(super) async fn grant(State(state): State<AppState>, action: Action) -> Response {
    change_grant(&state, action, true).await
}

pub(super) async fn revoke_grant(State(state): State<AppState>, action: Action) -> Response {
    change_grant(&state, action, false).await
}

/// Grants (`give`) or revokes the form's share for the form's recipient.
async fn change_grant(state: &AppState, Action { session, fields }: Action, give: bool) -> Response {
    let (Some(share), Some(recipient)) = (fields.get("share"), fields.get("recipient")) else {
        return redirect(state, "/console/shares", Flash::error("A grant needs a share and a recipient."));
    };
    let back = grant_back(&fields, share, recipient);
    let done = if give {
        session.admin.grant(share, recipient).await
    } else {
        session.admin.revoke_grant(share, recipient).await
    };
    let flash = match done {
        Ok(()) if give => Flash::ok(format!("{recipient} can now read share {share}.")),
        Ok(()) => Flash::ok(format!("{recipient} can no longer read share {share}.")),
        Err(e) => Flash::error(message(e)),
    };
    redirect(state, &back, flash)
}
