//! The table endpoints: version, metadata, query and changes.

use std::ops::ControlFlow;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use d2o_catalog::SharedTable;
use d2o_delta::{Commit, TableSnapshot, TimestampBound};
use d2o_protocol::capabilities::{self, Capabilities, ResponseFormat};
use d2o_protocol::predicate::{ColumnFacts, FileView, Predicate, ValueType};
use d2o_protocol::timestamp::parse_timestamp_millis;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::params::Params;
use crate::audit::AuditSlot;
use crate::auth::Recipient;
use crate::ndjson::{FileLineContext, FileUrls, LineWriter, SnapshotFile, change_line, protocol_line};
use crate::{ApiError, AppState};

pub(crate) const TABLE_VERSION_HEADER: &str = "delta-table-version";

type TablePath = Path<(String, String, String)>;

/// Runs blocking table work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("table task failed: {e}")))?
}

async fn shared_table(
    state: &AppState,
    who: &Recipient,
    (share, schema, table): &(String, String, String),
) -> Result<SharedTable, ApiError> {
    Ok(state.catalog.get_table(&who.0, share, schema, table).await?)
}

fn history_required(t: &SharedTable) -> Result<(), ApiError> {
    if t.history_shared {
        Ok(())
    } else {
        Err(ApiError::InvalidParameter(format!(
            "Reading table by version or timestamp is not supported because history sharing is not enabled on table: {}",
            t.qualified_name()
        )))
    }
}

/// The partition values every file served to this recipient must have: `None` when the table
/// has no partition filter, `Some(None)` when the recipient lacks a property the filter needs
/// (it may see no file at all).
type Restriction = Option<Option<Vec<(String, String)>>>;

fn restriction(t: &SharedTable, who: &Recipient) -> Result<Restriction, ApiError> {
    let Some(filter) = &t.partition_filter else { return Ok(None) };
    let filter = d2o_catalog::PartitionFilter::parse(filter)
        .map_err(|e| ApiError::Internal(format!("stored partition filter of {}: {e}", t.qualified_name())))?;
    Ok(Some(filter.resolve(&who.0.properties)))
}

/// Whether a file with these partition values may be served under `restriction`.
fn permitted(
    restriction: &Restriction,
    snapshot: &TableSnapshot,
    partition_values: &serde_json::Map<String, Value>,
) -> bool {
    match restriction {
        None => true,
        Some(None) => false,
        Some(Some(required)) => required.iter().all(|(column, value)| {
            let physical = snapshot.physical_name(column);
            partition_values
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(physical))
                .is_some_and(|(_, v)| v.as_str() == Some(value.as_str()))
        }),
    }
}

fn check_start_version(t: &SharedTable, version: u64, what: &str) -> Result<(), ApiError> {
    if version < t.start_version {
        return Err(ApiError::InvalidParameter(format!(
            "You can only query table {what} since version {}.",
            t.start_version
        )));
    }
    Ok(())
}

fn timestamp_param(name: &str, value: &str) -> Result<i64, ApiError> {
    parse_timestamp_millis(value).map_err(|e| ApiError::InvalidParameter(format!("Invalid {name}: {e}")))
}

/// The base of file URLs: the configured public URL, or the request's host.
fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let root = match &state.settings.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            if !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c)) {
                return Err(ApiError::InvalidParameter("the Host header is not a valid host".into()));
            }
            let proto = headers
                .get("x-forwarded-proto")
                .and_then(|h| h.to_str().ok())
                .filter(|p| *p == "https" || *p == "http")
                .unwrap_or("http");
            format!("{proto}://{host}")
        }
    };
    Ok(format!("{root}{}", state.settings.endpoint.trim_end_matches('/')))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The response format for this client and table version.
fn choose_format(caps: &Capabilities, snapshot: &TableSnapshot) -> Result<ResponseFormat, ApiError> {
    let obstacle = snapshot.parquet_format_obstacle();
    if caps.accepts(ResponseFormat::Parquet) && obstacle.is_none() {
        return Ok(ResponseFormat::Parquet);
    }
    if caps.accepts(ResponseFormat::Delta) {
        // A client that names its reader features must name the ones the table needs; one that
        // names none is trusted (the reference server checks deletion vectors the same way).
        if !caps.reader_features.is_empty() {
            for feature in ["deletionvectors", "columnmapping"] {
                if snapshot.required_reader_features().iter().any(|f| f == feature) && !caps.has_reader_feature(feature)
                {
                    return Err(ApiError::Unsupported(format!(
                        "Unsupported Delta Table Properties: the table needs the reader feature '{feature}', which the client did not list in readerfeatures"
                    )));
                }
            }
        }
        return Ok(ResponseFormat::Delta);
    }
    Err(ApiError::Unsupported(format!(
        "Unsupported Delta Table Properties: the table uses {}, which the parquet response format cannot express; ask for 'delta-sharing-capabilities: responseformat=delta'",
        obstacle.unwrap_or("features")
    )))
}

fn ndjson_response(version: u64, format: ResponseFormat, end_stream: bool, body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson; charset=utf-8"));
    h.insert(TABLE_VERSION_HEADER, HeaderValue::from(version));
    if let Ok(v) = HeaderValue::from_str(&Capabilities::response_header(format, end_stream)) {
        h.insert(capabilities::HEADER, v);
    }
    response
}

fn version_response(version: u64) -> Response {
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(TABLE_VERSION_HEADER, HeaderValue::from(version));
    response
}

/// `GET .../version` and the deprecated `HEAD .../tables/{t}`.
pub(crate) async fn version(
    State(state): State<AppState>,
    who: Recipient,
    Path(path): TablePath,
    params: Params,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let t = shared_table(&state, &who, &path).await?;
    let starting = params.get("startingTimestamp").map(|v| timestamp_param("startingTimestamp", v)).transpose()?;
    if starting.is_some() {
        history_required(&t)?;
    }
    let version = blocking(move || {
        let latest = state.tables.latest(&t.location)?;
        match starting {
            None => Ok(latest.version()),
            Some(ts) => {
                let v = state.tables.version_at(&latest, ts, TimestampBound::AtOrAfter)?;
                Ok(v.max(t.start_version))
            }
        }
    })
    .await?;
    audit.update(|e| e.version = Some(version as i64));
    Ok(version_response(version))
}

/// Resolves the snapshot for `version` / `timestamp` (both optional, at most one).
fn resolve_snapshot(
    state: &AppState,
    t: &SharedTable,
    version: Option<u64>,
    timestamp: Option<i64>,
) -> Result<TableSnapshot, ApiError> {
    let latest = state.tables.latest(&t.location)?;
    let version = match (version, timestamp) {
        (Some(v), _) => v,
        (None, Some(ts)) => state.tables.version_at(&latest, ts, TimestampBound::AtOrBefore)?,
        (None, None) => return Ok(latest),
    };
    check_start_version(t, version, "data")?;
    Ok(state.tables.at_version(&t.location, version, Some(&latest))?)
}

/// The metaData line of either format.
fn metadata_line(format: ResponseFormat, snapshot: &TableSnapshot, t: &SharedTable, version: Option<u64>) -> Value {
    match format {
        ResponseFormat::Parquet => {
            let mut md = json!({
                "id": snapshot.table_id(),
                "format": {"provider": "parquet"},
                "schemaString": snapshot.parquet_schema_string(),
                "partitionColumns": snapshot.partition_columns(),
            });
            if t.history_shared && t.cdf_enabled != Some(false) && snapshot.change_data_feed_enabled() {
                md["configuration"] = json!({"enableChangeDataFeed": "true"});
            }
            for (key, value) in [("name", "name"), ("description", "description")] {
                if let Some(v) = snapshot.metadata_action().get(value).filter(|v| v.is_string()) {
                    md[key] = v.clone();
                }
            }
            if let Some(v) = version {
                md["version"] = v.into();
            }
            json!({"metaData": md})
        }
        ResponseFormat::Delta => {
            let mut md = json!({"deltaMetadata": snapshot.metadata_action()});
            if let Some(v) = version {
                md["version"] = v.into();
            }
            json!({"metaData": md})
        }
    }
}

/// `GET .../metadata`
pub(crate) async fn metadata(
    State(state): State<AppState>,
    who: Recipient,
    Path(path): TablePath,
    params: Params,
    headers: HeaderMap,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let t = shared_table(&state, &who, &path).await?;
    let version = params.version("version")?;
    let timestamp = params.get("timestamp").map(|v| timestamp_param("timestamp", v)).transpose()?;
    if version.is_some() && timestamp.is_some() {
        return Err(ApiError::InvalidParameter("Please only provide one of: version,timestamp".into()));
    }
    if version.is_some() || timestamp.is_some() {
        history_required(&t)?;
    }
    let caps = Capabilities::parse(headers.get(capabilities::HEADER).and_then(|h| h.to_str().ok()));
    let (snapshot, format) = blocking({
        let state = state.clone();
        let t = t.clone();
        move || {
            let snapshot = resolve_snapshot(&state, &t, version, timestamp)?;
            let format = choose_format(&caps, &snapshot)?;
            Ok((snapshot, format))
        }
    })
    .await?;
    audit.update(|e| e.version = Some(snapshot.version() as i64));
    let md_version = (version.is_some() || timestamp.is_some()).then(|| snapshot.version());
    let body = format!(
        "{}\n{}\n",
        protocol_line(format, snapshot.protocol_action()),
        metadata_line(format, &snapshot, &t, md_version)
    );
    Ok(ndjson_response(snapshot.version(), format, false, Body::from(body)))
}

/// The body of `POST .../query`. Unknown fields are ignored; a field of the wrong type is a
/// malformed request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    predicate_hints: Option<Vec<String>>,
    json_predicate_hints: Option<Value>,
    limit_hint: Option<i64>,
    version: Option<i64>,
    timestamp: Option<String>,
    starting_version: Option<i64>,
    ending_version: Option<i64>,
    max_files: Option<i64>,
    page_token: Option<String>,
    include_refresh_token: Option<bool>,
    refresh_token: Option<String>,
}

/// What a `/query` page token remembers: the table, the version every page reads, where the
/// next page starts, and a fingerprint of the parameters that must not change between pages.
#[derive(Debug, Serialize, Deserialize)]
struct QueryPageToken {
    table: String,
    version: u64,
    next: usize,
    params: String,
    expires: i64,
}

/// What a refresh token remembers.
#[derive(Debug, Serialize, Deserialize)]
struct RefreshToken {
    table: String,
    version: u64,
    expires: i64,
}

fn body_json<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
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

/// The predicate the server will skip files with, from both kinds of hint.
fn predicate_of(state: &AppState, req: &QueryRequest, snapshot: &TableSnapshot) -> Option<Predicate> {
    let mut parts = Vec::new();
    if state.settings.evaluate_json_hints {
        let hint = match &req.json_predicate_hints {
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            _ => None,
        };
        match hint.as_deref().map(Predicate::from_json) {
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

fn fingerprint(req: &QueryRequest, format: ResponseFormat) -> String {
    let mut h = Md5::new();
    h.update(format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
        req.predicate_hints,
        req.json_predicate_hints,
        req.limit_hint,
        req.version,
        req.timestamp,
        req.starting_version,
        req.ending_version,
        format.as_str()
    ));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn validate_query(req: &QueryRequest) -> Result<(), ApiError> {
    let given = [req.version.is_some(), req.timestamp.is_some(), req.starting_version.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ApiError::InvalidParameter("Please only provide one of: version,timestamp,startingVersion".into()));
    }
    for (name, v) in
        [("version", req.version), ("startingVersion", req.starting_version), ("endingVersion", req.ending_version)]
    {
        if v.is_some_and(|v| v < 0) {
            return Err(ApiError::InvalidParameter(format!("'{name}' cannot be negative")));
        }
    }
    if let (Some(s), Some(e)) = (req.starting_version, req.ending_version)
        && s > e
    {
        return Err(ApiError::InvalidParameter(format!(
            "startingVersion ({s}) cannot be greater than endingVersion ({e})"
        )));
    }
    if req.max_files.is_some_and(|m| m <= 0) {
        return Err(ApiError::InvalidParameter("maxFiles must be positive.".into()));
    }
    if req.limit_hint.is_some_and(|l| l < 0) {
        return Err(ApiError::InvalidParameter("limitHint cannot be negative".into()));
    }
    let refresh = req.include_refresh_token == Some(true) || req.refresh_token.is_some();
    if refresh && (given.iter().any(|g| *g) || req.page_token.is_some()) {
        return Err(ApiError::InvalidParameter(
            "includeRefreshToken and refreshToken cannot be combined with version, timestamp, startingVersion or pageToken".into(),
        ));
    }
    Ok(())
}

/// Everything a snapshot query needs, resolved before the response starts.
struct SnapshotPlan {
    table: SharedTable,
    snapshot: TableSnapshot,
    format: ResponseFormat,
    /// `version` on the metaData line and `version`/`timestamp` on file lines.
    versioned: Option<(u64, i64)>,
    predicate: Option<Predicate>,
    limit: Option<i64>,
    /// (first file index, page size) when paginating.
    page: Option<(usize, usize)>,
    fingerprint: String,
    refresh: bool,
    end_stream: bool,
    restriction: Restriction,
    audit: AuditSlot,
}

/// `POST .../query`
pub(crate) async fn query(
    State(state): State<AppState>,
    who: Recipient,
    Path(path): TablePath,
    audit: AuditSlot,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: QueryRequest = body_json(body)?;
    validate_query(&req)?;
    let t = shared_table(&state, &who, &path).await?;
    let restriction = restriction(&t, &who)?;
    let caps = Capabilities::parse(headers.get(capabilities::HEADER).and_then(|h| h.to_str().ok()));
    let base = base_url(&state, &headers)?;
    if req.version.is_some() || req.timestamp.is_some() || req.starting_version.is_some() {
        history_required(&t)?;
    }
    let timestamp = req.timestamp.as_deref().map(|v| timestamp_param("timestamp", v)).transpose()?;
    if let Some(start) = req.starting_version {
        let end = req.ending_version.map(|v| v as u64);
        let max_files = req.max_files.map(|m| (m as u64).min(u64::from(state.settings.page_size_limit)) as usize);
        let changes = ChangesRequest {
            start: Some(start as u64),
            start_timestamp: None,
            end,
            end_timestamp: None,
            historical_metadata: true,
            max_files,
            page_token: req.page_token.clone(),
            mode: ChangeMode::Streaming,
            end_stream: caps.include_end_stream_action || max_files.is_some(),
            restriction,
            audit,
        };
        return changes_response(state, t, caps, base, changes).await;
    }
    let plan = blocking({
        let state = state.clone();
        move || {
            let table_key = t.location.to_string();
            let mut version = req.version.map(|v| v as u64);
            let mut page_start = 0usize;
            if let Some(token) = &req.refresh_token {
                let rt: RefreshToken = state
                    .signer
                    .open("refresh", token)
                    .ok_or_else(|| ApiError::InvalidParameter("invalid 'refreshToken'".into()))?;
                if rt.table != table_key {
                    return Err(ApiError::InvalidParameter(
                        "The table specified in the refresh token does not match the table being queried.".into(),
                    ));
                }
                if now_ms() > rt.expires {
                    return Err(ApiError::InvalidParameter(
                        "The refresh token has expired. Please restart the query.".into(),
                    ));
                }
                version = Some(rt.version);
            }
            let page_token = match &req.page_token {
                Some(token) => {
                    let pt: QueryPageToken = state.signer.open("query-page", token).ok_or_else(|| {
                        ApiError::InvalidParameter(
                            "Error decoding the page token: it is not a valid page token.".into(),
                        )
                    })?;
                    if pt.table != table_key {
                        return Err(ApiError::InvalidParameter(
                            "The table specified in the page token does not match the table being queried".into(),
                        ));
                    }
                    if now_ms() > pt.expires {
                        return Err(ApiError::InvalidParameter(
                            "The page token has expired. Please restart the query.".into(),
                        ));
                    }
                    version = Some(pt.version);
                    page_start = pt.next;
                    Some(pt)
                }
                None => None,
            };
            let snapshot = if req.refresh_token.is_some() || page_token.is_some() {
                let latest = state.tables.latest(&t.location)?;
                state.tables.at_version(&t.location, version.unwrap_or(latest.version()), Some(&latest))?
            } else {
                resolve_snapshot(&state, &t, version, timestamp)?
            };
            let format = choose_format(&caps, &snapshot)?;
            let fingerprint = fingerprint(&req, format);
            if let Some(pt) = &page_token
                && pt.params != fingerprint
            {
                return Err(ApiError::InvalidParameter(
                    "Query parameter mismatch detected for the next page query".into(),
                ));
            }
            let versioned = if req.version.is_some() || req.timestamp.is_some() {
                Some((snapshot.version(), state.tables.commit_timestamp(&snapshot)?))
            } else {
                None
            };
            let predicate = predicate_of(&state, &req, &snapshot);
            let page =
                req.max_files.map(|m| (page_start, (m as u64).min(u64::from(state.settings.page_size_limit)) as usize));
            let refresh = req.include_refresh_token == Some(true);
            let end_stream = caps.include_end_stream_action || page.is_some() || refresh;
            Ok(SnapshotPlan {
                table: t,
                snapshot,
                format,
                versioned,
                predicate,
                limit: req.limit_hint,
                page,
                fingerprint,
                refresh,
                end_stream,
                restriction,
                audit,
            })
        }
    })
    .await?;
    plan.audit.update(|e| e.version = Some(plan.snapshot.version() as i64));
    let (writer, body) = LineWriter::channel();
    let response = ndjson_response(plan.snapshot.version(), plan.format, plan.end_stream, body);
    stream_lines(writer, state.settings.url_timeout_secs, move |expires_ms, w| {
        write_snapshot(&state, &plan, &base, expires_ms, w)
    });
    Ok(response)
}

/// Writes a response body on a blocking thread: `write` gets the expiry of the URLs it signs
/// and the writer; an error after the 200 went out breaks the stream.
fn stream_lines(
    mut writer: LineWriter,
    url_timeout_secs: u64,
    write: impl FnOnce(i64, &mut LineWriter) -> Result<(), ApiError> + Send + 'static,
) {
    tokio::task::spawn_blocking(move || {
        let expires_ms = now_ms() + url_timeout_secs as i64 * 1000;
        match write(expires_ms, &mut writer) {
            Ok(()) => {
                let _ = writer.flush();
            }
            Err(e) => writer.abort(&e),
        }
    });
}

fn write_snapshot(
    state: &AppState,
    plan: &SnapshotPlan,
    base: &str,
    expires_ms: i64,
    w: &mut LineWriter,
) -> Result<(), ApiError> {
    let snapshot = &plan.snapshot;
    let _ = w.json_line(&protocol_line(plan.format, snapshot.protocol_action()));
    let _ = w.json_line(&metadata_line(plan.format, snapshot, &plan.table, plan.versioned.map(|(v, _)| v)));
    let urls = FileUrls::new(&state.signer, base.to_owned(), snapshot.table_root().clone(), expires_ms);
    let ctx = FileLineContext { version: plan.versioned, expires_ms };
    let partition_columns = snapshot.partition_columns();
    let (page_start, page_size) = plan.page.unwrap_or((0, usize::MAX));
    let mut matched = 0usize;
    let mut rows = 0i64;
    let mut more = false;
    let mut failure = None;
    let (mut files_sent, mut bytes_sent) = (0i64, 0i64);
    state.tables.visit_files(snapshot, &mut |entry| {
        if plan.limit.is_some_and(|l| rows >= l) {
            return ControlFlow::Break(());
        }
        if plan.restriction.is_some() {
            let values = serde_json::from_str(entry.partition_values_json()).unwrap_or_default();
            if !permitted(&plan.restriction, snapshot, &values) {
                return ControlFlow::Continue(());
            }
        }
        if let Some(p) = &plan.predicate
            && !may_match(p, snapshot, &partition_columns, &entry)
        {
            return ControlFlow::Continue(());
        }
        let index = matched;
        matched += 1;
        // Rows are counted from the start of the listing, so every page sees the same cut.
        rows += entry.live_rows().unwrap_or(0);
        if index < page_start {
            return ControlFlow::Continue(());
        }
        if index >= page_start.saturating_add(page_size) {
            more = true;
            return ControlFlow::Break(());
        }
        let file = SnapshotFile { entry };
        let mut result = Ok(());
        let flow = w.line(|out| result = file.write(out, plan.format, &urls, &ctx));
        if let Err(e) = result {
            failure = Some(e);
            return ControlFlow::Break(());
        }
        files_sent += 1;
        bytes_sent += entry.size();
        flow
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    plan.audit.update(|e| {
        e.files = Some(files_sent);
        e.bytes = Some(bytes_sent);
    });
    if plan.end_stream {
        let mut end = json!({"minUrlExpirationTimestamp": expires_ms});
        if more {
            let token = QueryPageToken {
                table: plan.table.location.to_string(),
                version: snapshot.version(),
                next: page_start + page_size,
                params: plan.fingerprint.clone(),
                expires: now_ms() + state.settings.page_token_ttl_ms as i64,
            };
            end["nextPageToken"] = state.signer.seal("query-page", &token).into();
        }
        if plan.refresh {
            let token = RefreshToken {
                table: plan.table.location.to_string(),
                version: snapshot.version(),
                expires: now_ms() + state.settings.refresh_token_ttl_ms as i64,
            };
            end["refreshToken"] = state.signer.seal("refresh", &token).into();
        }
        let _ = w.json_line(&json!({ "endStreamAction": end }));
    }
    Ok(())
}

/// How a range of commits is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeMode {
    /// `/changes`: the change data feed (`cdc` files where a commit has them).
    ChangeDataFeed,
    /// `/query` with `startingVersion`: data-changing `add` and `remove` actions.
    Streaming,
}

struct ChangesRequest {
    start: Option<u64>,
    start_timestamp: Option<i64>,
    end: Option<u64>,
    end_timestamp: Option<i64>,
    historical_metadata: bool,
    max_files: Option<usize>,
    page_token: Option<String>,
    mode: ChangeMode,
    /// End the stream with an `endStreamAction` (asked for, or implied by `maxFiles`).
    end_stream: bool,
    restriction: Restriction,
    audit: AuditSlot,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChangesPageToken {
    table: String,
    start: u64,
    end: u64,
    next: usize,
    expires: i64,
}

/// `GET .../changes`
pub(crate) async fn changes(
    State(state): State<AppState>,
    who: Recipient,
    Path(path): TablePath,
    params: Params,
    headers: HeaderMap,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let t = shared_table(&state, &who, &path).await?;
    let restriction = restriction(&t, &who)?;
    if !t.history_shared || t.cdf_enabled == Some(false) {
        return Err(ApiError::InvalidParameter(format!("cdf is not enabled on table {}", t.qualified_name())));
    }
    let start = params.version("startingVersion")?;
    let start_timestamp =
        params.get("startingTimestamp").map(|v| timestamp_param("startingTimestamp", v)).transpose()?;
    let end = params.version("endingVersion")?;
    let end_timestamp = params.get("endingTimestamp").map(|v| timestamp_param("endingTimestamp", v)).transpose()?;
    match (start, start_timestamp) {
        (None, None) => {
            return Err(ApiError::InvalidParameter(
                "No startingVersion or startingTimestamp provided for CDF read.".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter(
                "Multiple starting arguments provided for CDF read. Please provide one of either startingTimestamp or startingVersion.".into(),
            ));
        }
        _ => {}
    }
    if end.is_some() && end_timestamp.is_some() {
        return Err(ApiError::InvalidParameter(
            "Multiple ending arguments provided for CDF read. Please provide one of either endingTimestamp or endingVersion.".into(),
        ));
    }
    let max_files = match params.i64("maxFiles")? {
        Some(m) if m <= 0 => return Err(ApiError::InvalidParameter("maxFiles must be positive.".into())),
        m => m.map(|m| (m as u64).min(u64::from(state.settings.page_size_limit)) as usize),
    };
    let caps = Capabilities::parse(headers.get(capabilities::HEADER).and_then(|h| h.to_str().ok()));
    let base = base_url(&state, &headers)?;
    let request = ChangesRequest {
        start,
        start_timestamp,
        end,
        end_timestamp,
        historical_metadata: params.bool("includeHistoricalMetadata")?.unwrap_or(false),
        max_files,
        page_token: params.get("pageToken").map(str::to_owned),
        mode: ChangeMode::ChangeDataFeed,
        end_stream: caps.include_end_stream_action || max_files.is_some(),
        restriction,
        audit,
    };
    changes_response(state, t, caps, base, request).await
}

/// Everything a change response needs, resolved before it starts.
struct ChangesPlan {
    start: u64,
    end: u64,
    start_snapshot: TableSnapshot,
    latest: TableSnapshot,
    commits: Vec<Commit>,
    format: ResponseFormat,
    next: usize,
}

async fn changes_response(
    state: AppState,
    t: SharedTable,
    caps: Capabilities,
    base: String,
    req: ChangesRequest,
) -> Result<Response, ApiError> {
    let plan = blocking({
        let state = state.clone();
        let t = t.clone();
        let page_token = req.page_token.clone();
        move || plan_changes(&state, &t, &caps, &req, page_token.as_deref()).map(|p| (p, req))
    })
    .await?;
    let (plan, req) = plan;
    req.audit.update(|e| e.version = Some(plan.start as i64));
    let end_stream = req.end_stream;
    let (writer, body) = LineWriter::channel();
    let response = ndjson_response(plan.start, plan.format, end_stream, body);
    stream_lines(writer, state.settings.url_timeout_secs, move |expires_ms, w| {
        write_changes(&state, &t, &plan, &req, &base, expires_ms, w)
    });
    Ok(response)
}

fn plan_changes(
    state: &AppState,
    t: &SharedTable,
    caps: &Capabilities,
    req: &ChangesRequest,
    page_token: Option<&str>,
) -> Result<ChangesPlan, ApiError> {
    let latest = state.tables.latest(&t.location)?;
    let latest_version = latest.version();
    let (start, end, next) = match page_token {
        Some(token) => {
            let pt: ChangesPageToken = state.signer.open("changes-page", token).ok_or_else(|| {
                ApiError::InvalidParameter("Error decoding the page token: it is not a valid page token.".into())
            })?;
            if pt.table != t.location.as_str() {
                return Err(ApiError::InvalidParameter(
                    "The table specified in the page token does not match the table being queried".into(),
                ));
            }
            if now_ms() > pt.expires {
                return Err(ApiError::InvalidParameter("The page token has expired. Please restart the query.".into()));
            }
            (pt.start, pt.end, pt.next)
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
            (start, end, 0)
        }
    };
    check_start_version(t, start, if req.mode == ChangeMode::ChangeDataFeed { "changes" } else { "data" })?;
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
    Ok(ChangesPlan { start, end, start_snapshot, latest, commits, format, next })
}

fn file_id(path: &str) -> String {
    Md5::digest(path.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn write_changes(
    state: &AppState,
    t: &SharedTable,
    plan: &ChangesPlan,
    req: &ChangesRequest,
    base: &str,
    expires_ms: i64,
    w: &mut LineWriter,
) -> Result<(), ApiError> {
    let format = plan.format;
    let historical = req.historical_metadata || req.mode == ChangeMode::Streaming;
    let head = if historical { &plan.start_snapshot } else { &plan.latest };
    let head_version = if historical { plan.start } else { plan.latest.version() };
    let _ = w.json_line(&protocol_line(format, head.protocol_action()));
    let _ = w.json_line(&metadata_line(format, head, t, Some(head_version)));
    let urls = FileUrls::new(&state.signer, base.to_owned(), t.location.clone(), expires_ms);
    let page_size = req.max_files.unwrap_or(usize::MAX);
    let mut index = 0usize;
    let mut more = false;
    let (mut files_sent, mut bytes_sent) = (0i64, 0i64);
    'commits: for commit in &plan.commits {
        let ctx = FileLineContext { version: Some((commit.version, commit.timestamp)), expires_ms };
        if historical
            && commit.version > plan.start
            && let Some(md) = commit.metadata()
            && index >= plan.next
        {
            let line = match format {
                ResponseFormat::Delta => json!({"metaData": {"deltaMetadata": md, "version": commit.version}}),
                ResponseFormat::Parquet => {
                    let mut m = json!({
                        "id": md.get("id").cloned().unwrap_or_default(),
                        "format": {"provider": "parquet"},
                        "schemaString": md.get("schemaString").cloned().unwrap_or_default(),
                        "partitionColumns": md.get("partitionColumns").cloned().unwrap_or_else(|| json!([])),
                        "version": commit.version,
                    });
                    if let Some(conf) = md.get("configuration") {
                        m["configuration"] = conf.clone();
                    }
                    json!({"metaData": m})
                }
            };
            if w.json_line(&line).is_break() {
                return Ok(());
            }
        }
        let files = match req.mode {
            ChangeMode::ChangeDataFeed => commit.change_data(),
            ChangeMode::Streaming => commit.data_changes(),
        };
        for change in files {
            if req.restriction.is_some() {
                let values =
                    change.action.get("partitionValues").and_then(Value::as_object).cloned().unwrap_or_default();
                if !permitted(&req.restriction, &plan.latest, &values) {
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
            let id = file_id(change.path().unwrap_or_default());
            let line = change_line(&change, format, &urls, &ctx, &id)?;
            if w.json_line(&line).is_break() {
                return Ok(());
            }
            files_sent += 1;
            bytes_sent += change.action.get("size").and_then(Value::as_i64).unwrap_or(0);
        }
    }
    req.audit.update(|e| {
        e.files = Some(files_sent);
        e.bytes = Some(bytes_sent);
    });
    if req.end_stream {
        let mut end = json!({"minUrlExpirationTimestamp": expires_ms});
        if more {
            let token = ChangesPageToken {
                table: t.location.to_string(),
                start: plan.start,
                end: plan.end,
                next: plan.next + page_size,
                expires: now_ms() + state.settings.page_token_ttl_ms as i64,
            };
            end["nextPageToken"] = state.signer.seal("changes-page", &token).into();
        }
        let _ = w.json_line(&json!({ "endStreamAction": end }));
    }
    Ok(())
}
