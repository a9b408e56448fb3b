//! The table endpoints, one module each: [`version`], [`metadata`], [`query`] and [`changes`].
//! What they share (resolving a snapshot, choosing the response format, the NDJSON response
//! and its headers) is here.

pub(crate) mod changes;
pub(crate) mod metadata;
pub(crate) mod query;
pub(crate) mod version;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use d2o_catalog::SharedTable;
use d2o_delta::{TableSnapshot, TimestampBound};
use d2o_protocol::capabilities::{self, Capabilities, ResponseFormat};
use d2o_protocol::timestamp::parse_timestamp_millis;

use crate::{ApiError, AppState};

pub(crate) const TABLE_VERSION_HEADER: &str = "delta-table-version";

/// `{share}/schemas/{schema}/tables/{table}` of a table route.
pub(crate) type TablePath = Path<(String, String, String)>;

/// Runs blocking table work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal_from("the table task failed", e))?
}

/// Time travel and the change data feed need the provider to share the table's history.
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

/// No version before the entry's `startVersion` may be read, whatever asked for it.
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

fn capabilities_of(headers: &HeaderMap) -> Capabilities {
    Capabilities::parse(headers.get(capabilities::HEADER).and_then(|h| h.to_str().ok()))
}

/// Which version of a table a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionPin {
    Latest,
    /// `version` in the request, or the version a page or refresh token continues.
    Version(u64),
    /// `timestamp` in the request: the latest version committed at or before it.
    Timestamp(i64),
}

/// Resolves the snapshot a request reads. Every version other than the latest is checked
/// against the entry's start version, however it was asked for.
fn resolve_snapshot(state: &AppState, t: &SharedTable, pin: VersionPin) -> Result<TableSnapshot, ApiError> {
    let latest = state.tables.latest(&t.location)?;
    let version = match pin {
        VersionPin::Latest => return Ok(latest),
        VersionPin::Version(v) => v,
        VersionPin::Timestamp(ts) => state.tables.version_at(&latest, ts, TimestampBound::AtOrBefore)?,
    };
    check_start_version(t, version, "data")?;
    Ok(state.tables.at_version(&t.location, version, Some(&latest))?)
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

/// `maxFiles`, capped to the server's page size limit.
fn page_size(state: &AppState, max_files: Option<i64>) -> Option<usize> {
    max_files.map(|m| (m.max(1) as u64).min(u64::from(state.settings.page_size_limit)) as usize)
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
