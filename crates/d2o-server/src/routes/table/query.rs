//! `POST .../query`: the files of a version (snapshot query), or of a version range (streaming,
//! `startingVersion`, answered by [`super::changes`]).

use std::ops::ControlFlow;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use d2o_catalog::{Principal, SharedTable};
use d2o_delta::{FileEntry, TableSnapshot};
use d2o_protocol::action::EndStreamAction;
use d2o_protocol::action::write::LineContext;
use d2o_protocol::capabilities::ResponseFormat;
use d2o_protocol::predicate::{ColumnFacts, FileView, Predicate, ValueType};
use d2o_protocol::request::QueryRequest;
use serde::Deserialize;
use serde_json::Value;

use super::changes::{ChangeMode, RangeRead};
use super::{
    TablePath, VersionPin, blocking, capabilities_of, choose_format, history_required, ndjson_response, page_size,
    resolve_snapshot, timestamp_param,
};
use crate::audit::AuditSlot;
use crate::auth::Recipient;
use crate::openapi::{Errors, TablePath as TablePathParams};
use crate::policy::{self, Access, Decision};
use crate::storage::UrlRequest;
use crate::stream::{LineWriter, stream_response};
use crate::tokens::{self, Position, Scope, TokenKind};
use crate::{ApiError, AppState};
use crate::{lines, render};

pub(crate) fn body_json<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: crate::MAX_BODY_BYTES }
        } else {
            ApiError::Malformed(format!("cannot read the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::Malformed(format!("the request body is not a valid query: {e}")))
}

/// Everything a snapshot query needs, resolved before the response starts.
struct SnapshotPlan {
    who: Principal,
    table: SharedTable,
    access: Access,
    snapshot: TableSnapshot,
    format: ResponseFormat,
    /// `version` on the metaData line and `version`/`timestamp` on file lines.
    versioned: Option<(u64, i64)>,
    predicate: Option<Predicate>,
    limit: Option<i64>,
    /// (first file index, page size) when paginating.
    page: Option<(usize, usize)>,
    /// The scope later pages must be asked in.
    page_scope: Scope,
    /// The scope of refresh tokens, when one was asked for.
    refresh_scope: Option<Scope>,
    end_stream: bool,
}

#[utoipa::path(
    post,
    path = "/shares/{share}/schemas/{schema}/tables/{table}/query",
    tag = "table",
    operation_id = "queryTable",
    summary = "The table's files, with URLs to read them",
    params(TablePathParams, ("delta-sharing-capabilities" = Option<String>, Header, description = "The client's capabilities: `responseformat=delta,parquet`, `readerfeatures=deletionvectors,columnmapping,...`, `includeendstreamaction=true`")),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "`predicateHints`, `jsonPredicateHints`, `limitHint`, `version` or `timestamp` or `startingVersion` (with `endingVersion`), `maxFiles`, `pageToken`, `includeRefreshToken`, `refreshToken`; all optional"
    ),
    responses(
        (status = 200, description = "NDJSON: `protocol`, `metaData`, then one `file` line per file (parquet format) or `deltaProtocol`, `deltaMetadata` and files with their Delta actions (delta format), and an `endStreamAction` when asked for or when paging", content_type = "application/x-ndjson", body = String, headers(("delta-table-version" = i64, description = "The table version the answer is about"))),
        Errors
    ),
    security(("recipient" = []))
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(path): TablePath,
    audit: AuditSlot,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: QueryRequest = body_json(body)?;
    req.validate().map_err(|e| ApiError::InvalidParameter(e.0))?;
    let Decision { table: t, access } = policy::decide(&state, &who, &path).await?;
    let caps = capabilities_of(&headers);
    let base = crate::routes::public_endpoint(&state, &headers)?;
    if req.version.is_some() || req.timestamp.is_some() || req.starting_version.is_some() {
        history_required(&t)?;
    }
    let timestamp = req.timestamp.as_deref().map(|v| timestamp_param("timestamp", v)).transpose()?;
    let max_files = page_size(&state, req.max_files);
    if let Some(start) = req.starting_version {
        let changes = RangeRead {
            start: Some(start as u64),
            start_timestamp: None,
            end: req.ending_version.map(|v| v as u64),
            end_timestamp: None,
            historical_metadata: true,
            max_files,
            page_token: req.page_token.clone(),
            mode: ChangeMode::Streaming,
            end_stream: caps.include_end_stream_action || max_files.is_some(),
            // Every parameter that shapes the stream, for its page tokens.
            parameters: format!(
                "{:?}",
                (
                    &req.predicate_hints,
                    &req.json_predicate_hints,
                    req.limit_hint,
                    req.starting_version,
                    req.ending_version,
                    req.max_files,
                    &caps
                )
            ),
            audit,
        };
        return super::changes::respond(state, who, Decision { table: t, access }, caps, base, changes).await;
    }
    // Every parameter that shapes the listing, so that a page token is only accepted with the
    // parameters it was issued for. The capabilities stand for the format: with the same
    // capabilities, one version always gets the same format.
    let page_scope = Scope::new(
        &who,
        &t,
        &[
            &req.predicate_hints,
            &req.json_predicate_hints,
            &req.limit_hint,
            &req.version,
            &req.timestamp,
            &req.max_files,
            &req.include_refresh_token,
            &caps,
        ],
    );
    let refresh_scope = Scope::new(&who, &t, &[]);
    let plan = blocking({
        let state = state.clone();
        move || {
            let mut pin = match (req.version, timestamp) {
                (Some(v), _) => VersionPin::Version(v as u64),
                (None, Some(ts)) => VersionPin::Timestamp(ts),
                (None, None) => VersionPin::Latest,
            };
            let mut page_start = 0;
            if let Some(token) = &req.refresh_token {
                let at = tokens::redeem(&state.key, TokenKind::Refresh, &refresh_scope, token)?;
                pin = VersionPin::Version(at.version);
            }
            if let Some(token) = &req.page_token {
                let at = tokens::redeem(&state.key, TokenKind::QueryPage, &page_scope, token)?;
                pin = VersionPin::Version(at.version);
                page_start = at.next;
            }
            // The same checks as for a first request, whatever the version came from.
            let snapshot = resolve_snapshot(&state, &t, pin)?;
            let format = choose_format(&caps, &snapshot)?;
            let versioned = if req.version.is_some() || req.timestamp.is_some() {
                Some((snapshot.version(), state.tables.commit_timestamp(&snapshot)?))
            } else {
                None
            };
            let predicate = predicate_of(&state, &req, &snapshot);
            let page = max_files.map(|size| (page_start, size));
            let refresh = req.include_refresh_token == Some(true);
            let end_stream = caps.include_end_stream_action || page.is_some() || refresh;
            Ok(SnapshotPlan {
                who,
                table: t,
                access,
                snapshot,
                format,
                versioned,
                predicate,
                limit: req.limit_hint,
                page,
                page_scope,
                refresh_scope: refresh.then_some(refresh_scope),
                end_stream,
            })
        }
    })
    .await?;
    audit.update(|e| e.version = Some(plan.snapshot.version() as i64));
    let (version, format, end_stream) = (plan.snapshot.version(), plan.format, plan.end_stream);
    stream_response(
        state.settings.url_timeout_secs,
        end_stream,
        audit,
        move |body| ndjson_response(version, format, end_stream, body),
        move |expires_ms, w| write_snapshot(&state, &plan, &base, expires_ms, w),
    )
    .await
}

/// The predicate the server will skip files with, from both kinds of hint.
fn predicate_of(state: &AppState, req: &QueryRequest, snapshot: &TableSnapshot) -> Option<Predicate> {
    let mut parts = Vec::new();
    if state.settings.evaluate_json_hints {
        match req.json_predicate_hints_text().as_deref().map(Predicate::from_json) {
            Some(Ok(p)) => parts.push(p),
            Some(Err(e)) => tracing::debug!(error = %e, "ignoring jsonPredicateHints"),
            None => {}
        }
    }
    if state.settings.evaluate_sql_hints
        && let Some(hints) = &req.predicate_hints
    {
        let type_of = |c: &str| snapshot.column_type(c).and_then(ValueType::for_delta_type);
        parts.extend(Predicate::from_sql_hints(hints, &type_of));
    }
    Predicate::and_all(parts)
}

/// A file seen by predicate evaluation: its partition values and parsed statistics.
struct EntryView<'a> {
    snapshot: &'a TableSnapshot,
    partition_columns: &'a [String],
    partitions: serde_json::Map<String, Value>,
    stats: Value,
}

impl FileView for EntryView<'_> {
    fn column(&self, column: &str) -> Option<ColumnFacts<'_>> {
        let physical = self.snapshot.physical_name(column);
        if self.partition_columns.iter().any(|p| p.eq_ignore_ascii_case(column)) {
            return match self.partitions.iter().find(|(k, _)| k.eq_ignore_ascii_case(physical)) {
                Some((_, Value::String(s))) => Some(ColumnFacts::Partition(Some(s.as_str()))),
                Some((_, Value::Null)) => Some(ColumnFacts::Partition(None)),
                _ => None,
            };
        }
        let lookup = |section: &str| physical.split('.').try_fold(self.stats.get(section)?, |v, part| v.get(part));
        let (min, max, nulls) = (lookup("minValues"), lookup("maxValues"), lookup("nullCount"));
        if min.is_none() && max.is_none() && nulls.is_none() {
            return None;
        }
        Some(ColumnFacts::Stats {
            min,
            max,
            null_count: nulls.and_then(Value::as_i64),
            num_records: self.stats.get("numRecords").and_then(Value::as_i64),
        })
    }
}

fn may_match(
    p: &Predicate,
    snapshot: &TableSnapshot,
    partition_columns: &[String],
    entry: &d2o_delta::FileEntry<'_>,
) -> bool {
    let view = EntryView {
        snapshot,
        partition_columns,
        partitions: serde_json::from_str(entry.partition_values_json()).unwrap_or_default(),
        stats: entry.stats().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null),
    };
    p.may_match(&view)
}

fn write_snapshot(
    state: &AppState,
    plan: &SnapshotPlan,
    base: &str,
    expires_ms: i64,
    w: &mut LineWriter,
) -> Result<(), ApiError> {
    let snapshot = &plan.snapshot;
    let _ = w.json_line(&lines::protocol(plan.format, snapshot));
    let _ = w.json_line(&lines::metadata(plan.format, snapshot, &plan.table, plan.versioned.map(|(v, _)| v)));
    let ctx = LineContext { version: plan.versioned, expiration_timestamp: expires_ms };
    // One URL signer per rendering thread; their time is the response's.
    let timing = crate::telemetry::SigningTime::new(plan.table.location.scheme());
    let renderer = || {
        let request = UrlRequest { base, who: &plan.who, table: &plan.table, expires_ms };
        let urls = state.storage.urls_timed(&request, timing.clone())?;
        Ok(move |entry: &FileEntry<'_>, out: &mut String| {
            lines::write_snapshot_file(out, plan.format, entry, &urls, &ctx)
        })
    };
    let partition_columns = snapshot.partition_columns();
    let (page_start, page_size) = plan.page.unwrap_or((0, usize::MAX));
    let mut matched = 0usize;
    let mut rows = 0i64;
    let mut more = false;
    render::write_in_order(w, &renderer, |submit| {
        let mut failure = None;
        state.tables.visit_segments(snapshot, &mut |segment| {
            // Which files of the segment to list: the same decisions, in the same order, as
            // one file at a time.
            let mut files = Vec::new();
            let mut flow = ControlFlow::Continue(());
            for (i, entry) in segment.iter().enumerate() {
                if plan.limit.is_some_and(|l| rows >= l) {
                    flow = ControlFlow::Break(());
                    break;
                }
                if plan.access.is_restricted() {
                    let values = serde_json::from_str(entry.partition_values_json()).unwrap_or_default();
                    if !plan.access.permits(snapshot, &values) {
                        continue;
                    }
                }
                if let Some(p) = &plan.predicate
                    && !may_match(p, snapshot, &partition_columns, &entry)
                {
                    continue;
                }
                let index = matched;
                matched += 1;
                // Rows are counted from the start of the listing, so every page sees the same cut.
                rows += entry.live_rows().unwrap_or(0);
                if index < page_start {
                    continue;
                }
                if index >= page_start.saturating_add(page_size) {
                    more = true;
                    flow = ControlFlow::Break(());
                    break;
                }
                match u32::try_from(i) {
                    Ok(i) => files.push(i),
                    Err(_) => {
                        failure = Some(ApiError::internal("a file list segment is too large"));
                        return ControlFlow::Break(());
                    }
                }
            }
            for chunk in files.chunks(render::SLICE_FILES) {
                submit(render::Slice { segment: segment.clone(), files: chunk.to_vec() })?;
            }
            flow
        })?;
        failure.map_or(Ok(()), Err)
    })?;
    if plan.end_stream {
        let mut end = EndStreamAction { min_url_expiration_timestamp: Some(expires_ms), ..Default::default() };
        if more {
            let next = Position { version: snapshot.version(), end: None, next: page_start + page_size };
            let ttl = state.settings.page_token_ttl_ms;
            end.next_page_token = Some(tokens::issue(&state.key, TokenKind::QueryPage, &plan.page_scope, next, ttl));
        }
        if let Some(scope) = &plan.refresh_scope {
            let at = Position { version: snapshot.version(), end: None, next: 0 };
            let ttl = state.settings.refresh_token_ttl_ms;
            end.refresh_token = Some(tokens::issue(&state.key, TokenKind::Refresh, scope, at, ttl));
        }
        let _ = w.json_line(&lines::end_stream(plan.format, end));
    }
    Ok(())
}
