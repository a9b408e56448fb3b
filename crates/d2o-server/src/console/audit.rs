//! The audit log: every recipient request and admin action, newest first, with filters
//! (recipient, share, table, action, status, time range) and pages of 50.

use axum::extract::Query;
use axum::response::Response;
use d2o_catalog::AuditFilter;
use maud::html;
use std::collections::BTreeMap;

use super::layout::{Section, bytes, page, when};
use super::message;
use super::session::Page;

const PAGE: u32 = 50;

/// A `datetime-local` value (or an ISO 8601 time), as ms since the epoch, read as UTC.
fn time(text: Option<&str>) -> Result<Option<i64>, String> {
    let Some(text) = text else { return Ok(None) };
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| t.and_utc().timestamp_millis())
        .or_else(|_| d2o_protocol::timestamp::parse_timestamp_millis(text).map_err(|e| e.to_string()));
    parsed.map(Some).map_err(|_| format!("'{text}' is not a time (YYYY-MM-DDTHH:MM, UTC)"))
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=399 => "good",
        400..=499 => "warn",
        _ => "bad",
    }
}

pub(super) async fn show(Query(params): Query<BTreeMap<String, String>>, Page(session): Page) -> Response {
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let offset: u32 = get("offset").and_then(|o| o.parse().ok()).unwrap_or(0).min(10_000_000);
    // Pages hold `until` fixed (the first page's time), so new events do not shift them.
    let until = time(get("until")).map(|u| u.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
    let status = get("status").map(AuditFilter::status_range).transpose();
    let since = time(get("since"));
    let events = match (until, since, status) {
        (Ok(until), Ok(since), Ok(status)) => {
            let filter = AuditFilter {
                principal: get("recipient").map(str::to_owned),
                share: get("share").map(str::to_owned),
                table: get("table").map(str::to_owned),
                action: get("action").map(str::to_owned),
                since_ms: since,
                until_ms: Some(until),
                min_status: status.map(|s| s.0),
                max_status: status.map(|s| s.1),
                limit: Some(PAGE + 1),
                offset: Some(offset),
            };
            session.admin.inner().audit(&filter).await.map(|e| (e, until)).map_err(message)
        }
        (Err(e), _, _) | (_, Err(e), _) => Err(e),
        (_, _, Err(e)) => Err(message(e)),
    };
    let link = |offset: u32, until: i64| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for k in ["recipient", "share", "table", "action", "status", "since"] {
            if let Some(v) = get(k) {
                q.append_pair(k, v);
            }
        }
        let until = chrono::DateTime::from_timestamp_millis(until).map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
        if let Some(until) = until {
            q.append_pair("until", &until);
        }
        q.append_pair("offset", &offset.to_string());
        format!("/console/audit?{}", q.finish())
    };
    let value = |k: &str| get(k).map(str::to_owned);
    let content = html! {
        section.card {
            form.row method="get" action="/console/audit" {
                label { "Recipient" input name="recipient" value=[value("recipient")]; }
                label { "Share" input name="share" value=[value("share")]; }
                label { "Table" input name="table" placeholder="schema.table" value=[value("table")]; }
                label { "Action" input name="action" placeholder="query" value=[value("action")]; }
                label { "Status"
                    select name="status" {
                        @for (v, label) in [("", "any"), ("ok", "ok"), ("error", "errors"), ("4xx", "4xx"), ("5xx", "5xx")] {
                            option value=(v) selected[get("status").unwrap_or("") == v] { (label) }
                        }
                    }
                }
                label { "From (UTC)" input type="datetime-local" name="since" value=[value("since")]; }
                label { "Until (UTC)" input type="datetime-local" name="until" step="1" value=[value("until")]; }
                button type="submit" { "Filter" }
                a href="/console/audit" { "Clear" }
            }
        }
        section.card {
            @match &events {
                Err(e) => p.flash.error role="alert" { (e) },
                Ok((events, _)) if events.is_empty() => p.empty { "No events match." },
                Ok((events, until)) => {
                    div.scroll { table id="audit" {
                        thead { tr { th { "Time" } th { "Principal" } th { "Action" } th { "Table" } th.num { "Version" } th.num { "Files" } th.num { "Bytes" } th { "Status" } th { "Client" } th { "Detail" } } }
                        tbody {
                            @for e in events.iter().take(PAGE as usize) {
                                tr {
                                    td.nowrap { (when(e.time_ms)) }
                                    td { (e.principal) }
                                    td { code { (e.action) } }
                                    td { @if let Some(s) = &e.share { (s) }
                                        @if let (Some(schema), Some(t)) = (&e.schema, &e.table) { "." (schema) "." (t) } }
                                    td.num { (e.version.map(|v| v.to_string()).unwrap_or_default()) }
                                    td.num { (e.files.map(|v| v.to_string()).unwrap_or_default()) }
                                    td.num { (e.bytes.map(bytes).unwrap_or_default()) }
                                    td { span class={ "badge " (status_class(e.status)) } { (e.status) } }
                                    td { (e.client_ip.as_deref().unwrap_or("")) }
                                    td { (e.detail.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    } }
                    div.pager {
                        @if offset > 0 { a href=(link(offset.saturating_sub(PAGE), *until)) { "← Newer" } } @else { span {} }
                        span.muted { "Events " (offset + 1) "–" (offset as usize + events.len().min(PAGE as usize)) }
                        @if events.len() > PAGE as usize { a href=(link(offset + PAGE, *until)) { "Older →" } } @else { span {} }
                    }
                }
            }
        }
    };
    page(&session, Section::Audit, "Audit log", content)
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_times_are_utc() {
        assert_eq!(super::time(Some("1970-01-01T00:01")), Ok(Some(60_000)));
        assert_eq!(super::time(Some("1970-01-01T00:00:02")), Ok(Some(2_000)));
        assert_eq!(super::time(None), Ok(None));
        assert!(super::time(Some("yesterday")).is_err());
    }
}
