//! `GET .../changes` (the change data feed) and the streaming form of `/query`
//! (`startingVersion`): the file actions of a range of commits.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use d2o_catalog::{Principal, SharedTable};
use d2o_delta::{Commit, TableSnapshot, TimestampBound};
use d2o_protocol::action::EndStreamAction;
use d2o_protocol::action::write::LineContext;
use d2o_protocol::capabilities::{Capabilities, ResponseFormat};
use d2o_protocol::request::ChangesRequest;
use serde_json::Value;

use super::{
    TablePath, blocking, capabilities_of, check_start_version, choose_format, ndjson_response, page_size,
    timestamp_param,
};
use crate::audit::AuditSlot;
use crate::auth::Recipient;
use crate::lines;
use crate::openapi::{Errors, TablePath as TablePathParams};
use crate::policy::{self, Access, Decision};
use crate::routes::params::Params;
use crate::storage::UrlRequest;
use crate::stream::{LineWriter, stream_response};
use crate::tokens::{self, Position, Scope, TokenKind};
use crate::{ApiError, AppState};

/// How a range of commits is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeMode {
    /// `/changes`: the change data feed (`cdc` files where a commit has them).
    ChangeDataFeed,
    /// `/query` with `startingVersion`: data-changing `add` and `remove` actions.
    Streaming,
}

impl ChangeMode {
    fn token_kind(self) -> TokenKind {
        match self {
            ChangeMode::ChangeDataFeed => TokenKind::ChangesPage,
            ChangeMode::Streaming => TokenKind::StreamingPage,
        }
    }
}

/// A read of a range of commits, as `/changes` and streaming `/query` ask for it.
pub(super) struct RangeRead {
    pub(super) start: Option<u64>,
    pub(super) start_timestamp: Option<i64>,
    pub(super) end: Option<u64>,
    pub(super) end_timestamp: Option<i64>,
    pub(super) historical_metadata: bool,
    pub(super) max_files: Option<usize>,
    pub(super) page_token: Option<String>,
    pub(super) mode: ChangeMode,
    /// End the stream with an `endStreamAction` (asked for, or implied by `maxFiles`).
    pub(super) end_stream: bool,
    /// Every request parameter that shapes the response, for the fingerprint of page tokens.
    pub(super) parameters: String,
    pub(super) audit: AuditSlot,
}

#[utoipa::path(
    get,
    path = "/shares/{share}/schemas/{schema}/tables/{table}/changes",
    tag = "table",
    operation_id = "getTableChanges",
    summary = "The table's change data feed",
    params(
        TablePathParams,
        ("startingVersion" = Option<i64>, Query, description = "The first version (this or `startingTimestamp` is required)"),
        ("startingTimestamp" = Option<String>, Query, description = "The first version at or after this ISO 8601 timestamp"),
        ("endingVersion" = Option<i64>, Query, description = "The last version (default: the latest)"),
        ("endingTimestamp" = Option<String>, Query, description = "The last version at or before this ISO 8601 timestamp"),
        ("includeHistoricalMetadata" = Option<bool>, Query, description = "Include `metaData` lines of the range's schema changes"),
        ("maxFiles" = Option<i64>, Query, description = "Page the answer after this many files"),
        ("pageToken" = Option<String>, Query, description = "The `nextPageToken` of the previous page"),
        ("delta-sharing-capabilities" = Option<String>, Header, description = "The client's capabilities: `responseformat=delta,parquet`, `readerfeatures=deletionvectors,columnmapping,...`, `includeendstreamaction=true`"),
    ),
    responses(
        (status = 200, description = "NDJSON: `protocol`, `metaData`, then `add`, `cdf` and `remove` lines (parquet format) or their delta-format forms, and an `endStreamAction` when asked for or when paging", content_type = "application/x-ndjson", body = String, headers(("delta-table-version" = i64, description = "The table version the answer is about"))),
        Errors
    ),
    security(("recipient" = []))
)]
pub(crate) async fn changes(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(path): TablePath,
    params: Params,
    headers: HeaderMap,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let decision = policy::decide(&state, &who, &path).await?;
    let t = &decision.table;
    if !t.history_shared || t.cdf_enabled == Some(false) {
        return Err(ApiError::InvalidParameter(format!("cdf is not enabled on table {}", t.qualified_name())));
    }
    let req = ChangesRequest::from_query_pairs(params.pairs()).map_err(|e| ApiError::InvalidParameter(e.0))?;
    let start_timestamp =
        req.starting_timestamp.as_deref().map(|v| timestamp_param("startingTimestamp", v)).transpose()?;
    let end_timestamp = req.ending_timestamp.as_deref().map(|v| timestamp_param("endingTimestamp", v)).transpose()?;
    let max_files = page_size(&state, req.max_files);
    let caps = capabilities_of(&headers);
    let base = crate::routes::public_endpoint(&state, &headers)?;
    let request = RangeRead {
        start: req.starting_version,
        start_timestamp,
        end: req.ending_version,
        end_timestamp,
        historical_metadata: req.include_historical_metadata.unwrap_or(false),
        max_files,
        mode: ChangeMode::ChangeDataFeed,
        end_stream: caps.include_end_stream_action || max_files.is_some(),
        // Every parameter that shapes the feed, for its page tokens.
        parameters: format!("{:?}", (ChangesRequest { page_token: None, ..req.clone() }, &caps)),
        page_token: req.page_token,
        audit,
    };
    respond(state, who, decision, caps, base, request).await
}

/// Everything a change response needs, resolved before it starts.
struct ChangesPlan {
    who: Principal,
    table: SharedTable,
    access: Access,
    start: u64,
    end: u64,
    start_snapshot: TableSnapshot,
    latest: TableSnapshot,
    commits: Vec<Commit>,
    format: ResponseFormat,
    next: usize,
    scope: Scope,
}

/// Answers a change request (`/changes`, or `/query` with `startingVersion`).
pub(super) async fn respond(
    state: AppState,
    who: Principal,
    decision: Decision,
    caps: Capabilities,
    base: String,
    req: RangeRead,
) -> Result<Response, ApiError> {
    let scope = Scope::new(&who, &decision.table, &[&req.parameters, &req.mode]);
    let (plan, req) = blocking({
        let state = state.clone();
        move || plan_changes(&state, who, decision, &caps, &req, scope).map(|p| (p, req))
    })
    .await?;
    req.audit.update(|e| e.version = Some(plan.start as i64));
    let (version, format, end_stream) = (plan.start, plan.format, req.end_stream);
    let audit = req.audit.clone();
    stream_response(
        state.settings.url_timeout_secs,
        end_stream,
        audit,
        move |body| ndjson_response(version, format, end_stream, body),
        move |expires_ms, w| write_changes(&state, &plan, &req, &base, expires_ms, w),
    )
    .await
}

fn plan_changes(
    state: &AppState,
    who: Principal,
    Decision { table: t, access }: Decision,
    caps: &Capabilities,
    req: &RangeRead,
    scope: Scope,
) -> Result<ChangesPlan, ApiError> {
    let latest = state.tables.latest(&t.location)?;
    let latest_version = latest.version();
    let (start, end, next) = match &req.page_token {
        Some(token) => {
            let at = tokens::redeem(&state.key, req.mode.token_kind(), &scope, token)?;
            (at.version, at.end.unwrap_or(at.version), at.next)
        }
        None => {
            let start = match (req.start, req.start_timestamp) {
                (Some(s), _) => s,
                (None, Some(ts)) => state.tables.version_at(&latest, ts, TimestampBound::AtOrAfter).map_err(|e| {
                    ApiError::InvalidParameter(format!("{e}. Please use a timestamp greater than or equal to the first commit and less than or equal to the latest commit."))
                })?,
                (None, None) => return Err(ApiError::InvalidParameter("No startingVersion or startingTimestamp provided for CDF read.".into())),
            };
            let end = match (req.end, req.end_timestamp) {
                (Some(e), _) => e,
                (None, Some(ts)) => state.tables.version_at(&latest, ts, TimestampBound::AtOrBefore).map_err(|e| {
                    ApiError::InvalidParameter(format!(
                        "{e}. Please use a timestamp less than or equal to the latest commit."
                    ))
                })?,
                (None, None) => latest_version,
            };
            (start, end, 0)
        }
    };
    // The checks of a first request hold for every page.
    if start > latest_version {
        return Err(ApiError::InvalidParameter(format!(
            "Provided Start version({start}) for reading change data is invalid. Start version cannot be greater than the latest version of the table({latest_version})."
        )));
    }
    // A streaming client may ask past the end; it must tolerate the latest instead.
    let end = if req.mode == ChangeMode::Streaming { end.min(latest_version) } else { end };
    if end > latest_version {
        return Err(ApiError::InvalidParameter(format!(
            "Provided end version({end}) is invalid. End version cannot be greater than the latest version of the table({latest_version})."
        )));
    }
    if end < start {
        return Err(ApiError::InvalidParameter(format!(
            "CDF range from start {start} to end {end} was invalid. End cannot be before start."
        )));
    }
    check_start_version(&t, start, if req.mode == ChangeMode::ChangeDataFeed { "changes" } else { "data" })?;
    let start_snapshot = state.tables.at_version(&t.location, start, Some(&latest))?;
    let commits = state.tables.commits(&latest, start, end)?;
    if req.mode == ChangeMode::ChangeDataFeed {
        let mut enabled = start_snapshot.change_data_feed_enabled();
        for c in &commits {
            if let Some(md) = c.metadata() {
                enabled = md
                    .get("configuration")
                    .and_then(|c| c.get("delta.enableChangeDataFeed"))
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            }
            if !enabled {
                return Err(ApiError::InvalidParameter(format!(
                    "Error getting change data for range [{start}, {end}] as change data was not recorded for version [{}]",
                    c.version
                )));
            }
        }
    }
    // The newest schema decides the format: a range that reaches column mapping needs delta.
    let format = match choose_format(caps, &latest) {
        Ok(f) => choose_format(caps, &start_snapshot).map(|g| if g == ResponseFormat::Delta { g } else { f })?,
        Err(e) => return Err(e),
    };
    Ok(ChangesPlan { who, table: t, access, start, end, start_snapshot, latest, commits, format, next, scope })
}

fn write_changes(
    state: &AppState,
    plan: &ChangesPlan,
    req: &RangeRead,
    base: &str,
    expires_ms: i64,
    w: &mut LineWriter,
) -> Result<(), ApiError> {
    let format = plan.format;
    let historical = req.historical_metadata || req.mode == ChangeMode::Streaming;
    let head = if historical { &plan.start_snapshot } else { &plan.latest };
    let head_version = if historical { plan.start } else { plan.latest.version() };
    let _ = w.json_line(&lines::protocol(format, head));
    let _ = w.json_line(&lines::metadata(format, head, &plan.table, Some(head_version)));
    let urls = state.storage.urls(&UrlRequest { base, who: &plan.who, table: &plan.table, expires_ms })?;
    let page_size = req.max_files.unwrap_or(usize::MAX);
    let mut index = 0usize;
    let mut more = false;
    'commits: for commit in &plan.commits {
        let ctx = LineContext { version: Some((commit.version, commit.timestamp)), expiration_timestamp: expires_ms };
        if historical
            && commit.version > plan.start
            && let Some(md) = commit.metadata()
            && index >= plan.next
        {
            let line = lines::commit_metadata(format, md, commit.version);
            if w.json_line(&line).is_break() {
                return Ok(());
            }
        }
        let files = match req.mode {
            ChangeMode::ChangeDataFeed => commit.change_data(),
            ChangeMode::Streaming => commit.data_changes(),
        };
        for change in files {
            if plan.access.is_restricted() {
                let values =
                    change.action.get("partitionValues").and_then(Value::as_object).cloned().unwrap_or_default();
                if !plan.access.permits(&plan.latest, &values) {
                    continue;
                }
            }
            if index < plan.next {
                index += 1;
                continue;
            }
            if index >= plan.next.saturating_add(page_size) {
                more = true;
                break 'commits;
            }
            index += 1;
            let id = d2o_delta::file_id(change.path().unwrap_or_default());
            let line = lines::change(&change, format, &urls, &ctx, &id)?;
            let size = change.action.get("size").and_then(Value::as_i64).unwrap_or(0);
            if w.file_line(size, |out| {
                out.push_str(&serde_json::to_string(&line).unwrap_or_default());
                Ok(())
            })?
            .is_break()
            {
                return Ok(());
            }
        }
    }
    if req.end_stream {
        let mut end = EndStreamAction { min_url_expiration_timestamp: Some(expires_ms), ..Default::default() };
        if more {
            let next = Position { version: plan.start, end: Some(plan.end), next: plan.next + page_size };
            let ttl = state.settings.page_token_ttl_ms;
            end.next_page_token = Some(tokens::issue(&state.key, req.mode.token_kind(), &plan.scope, next, ttl));
        }
        let _ = w.json_line(&lines::end_stream(format, end));
    }
    Ok(())
}
