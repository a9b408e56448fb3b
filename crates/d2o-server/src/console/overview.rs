//! The overview: counts, and who reads what over time (per recipient and per table), for
//! the last day, week or month, in requests, files or bytes.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::response::Response;
use d2o_catalog::{UsageBy, UsageQuery};
use maud::html;

use super::charts::{Metric, Window, stacked_bars};
use super::layout::{Section, page};
use super::message;
use super::session::Page;

pub(super) async fn show(Query(params): Query<BTreeMap<String, String>>, Page(session): Page) -> Response {
    let admin = session.admin.inner();
    let range = params.get("range").map(String::as_str).filter(|r| Window::RANGES.iter().any(|(k, _)| k == r));
    let metric = Metric::parse(params.get("metric").map(String::as_str));
    let window = Window::of(range, chrono::Utc::now().timestamp_millis());
    let usage = |by| {
        let query = UsageQuery {
            by,
            since_ms: window.since_ms,
            until_ms: window.until_ms,
            bucket_ms: window.bucket_ms,
            principal: None,
            share: None,
        };
        async move { admin.usage(&query).await.map_err(message) }
    };
    let (shares, recipients) = (admin.list_shares().await, admin.list_recipients().await);
    let (by_recipient, by_table) = (usage(UsageBy::Recipient).await, usage(UsageBy::Table).await);
    let range = range.unwrap_or("24h");
    let period = Window::RANGES.iter().find(|(k, _)| *k == range).map_or("", |(_, label)| *label);
    let content = html! {
        div.stats {
            div.stat { b { (shares.as_ref().map_or(0, Vec::len)) } span { "shares" } }
            div.stat { b { (shares.as_ref().map_or(0, |s| s.iter().map(|s| s.tables.len()).sum::<usize>())) } span { "shared tables" } }
            div.stat { b { (recipients.as_ref().map_or(0, Vec::len)) } span { "recipients" } }
            div.stat { b { (by_recipient.as_ref().map_or(0, |u| u.iter().map(|p| p.requests).sum::<i64>())) } span { "requests, " (period) } }
        }
        form.row.card method="get" action="/console" {
            label { "Period" select name="range" {
                @for (k, label) in Window::RANGES { option value=(k) selected[k == range] { (label) } }
            } }
            label { "Measure" select name="metric" {
                @for m in Metric::ALL { option value=(m.name()) selected[m == metric] { (m.name()) } }
            } }
            button type="submit" { "Show" }
        }
        div.grid {
            section.card id="usage-recipients" {
                h2 { "Usage by recipient (" (metric.name()) ")" }
                @match &by_recipient { Ok(points) => (stacked_bars(points, window, metric, "recipient")), Err(e) => p.flash.error { (e) } }
            }
            section.card id="usage-tables" {
                h2 { "Usage by table (" (metric.name()) ")" }
                @match &by_table { Ok(points) => (stacked_bars(points, window, metric, "table")), Err(e) => p.flash.error { (e) } }
            }
        }
    };
    page(&session, Section::Overview, "Overview", content)
}
