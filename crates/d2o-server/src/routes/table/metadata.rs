//! `GET .../metadata`: the protocol and metaData lines of a version.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::{
    TablePath, VersionPin, blocking, capabilities_of, choose_format, history_required, ndjson_response,
    resolve_snapshot, timestamp_param,
};
use crate::audit::AuditSlot;
use crate::auth::Recipient;
use crate::lines;
use crate::openapi::{Errors, TablePath as TablePathParams};
use crate::routes::params::Params;
use crate::{ApiError, AppState, policy};

#[utoipa::path(
    get,
    path = "/shares/{share}/schemas/{schema}/tables/{table}/metadata",
    tag = "table",
    operation_id = "getTableMetadata",
    summary = "The table's protocol and metadata",
    params(
        TablePathParams,
        ("version" = Option<i64>, Query, description = "Time travel to this version (needs the table's history shared)"),
        ("timestamp" = Option<String>, Query, description = "Time travel to this ISO 8601 timestamp (needs the table's history shared)"),
        ("delta-sharing-capabilities" = Option<String>, Header, description = "The client's capabilities: `responseformat=delta,parquet`, `readerfeatures=deletionvectors,columnmapping,...`, `includeendstreamaction=true`"),
    ),
    responses(
        (status = 200, description = "NDJSON: a `protocol` line, then a `metaData` line (parquet format), or their `deltaProtocol`/`deltaMetadata` forms (delta format)", content_type = "application/x-ndjson", body = String, headers(("delta-table-version" = i64, description = "The table version the answer is about"))),
        Errors
    ),
    security(("recipient" = []))
)]
pub(crate) async fn metadata(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(path): TablePath,
    params: Params,
    headers: HeaderMap,
    audit: AuditSlot,
) -> Result<Response, ApiError> {
    let t = policy::decide(&state, &who, &path).await?.table;
    let version = params.version("version")?;
    let timestamp = params.get("timestamp").map(|v| timestamp_param("timestamp", v)).transpose()?;
    let pin = match (version, timestamp) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter("Please only provide one of: version,timestamp".into()));
        }
        (Some(v), None) => VersionPin::Version(v),
        (None, Some(ts)) => VersionPin::Timestamp(ts),
        (None, None) => VersionPin::Latest,
    };
    if pin != VersionPin::Latest {
        history_required(&t)?;
    }
    let caps = capabilities_of(&headers);
    let (snapshot, format) = blocking({
        let state = state.clone();
        let t = t.clone();
        move || {
            let snapshot = resolve_snapshot(&state, &t, pin)?;
            let format = choose_format(&caps, &snapshot)?;
            Ok((snapshot, format))
        }
    })
    .await?;
    audit.update(|e| e.version = Some(snapshot.version() as i64));
    let md_version = (pin != VersionPin::Latest).then(|| snapshot.version());
    let line = |l: &lines::Line| serde_json::to_string(l).unwrap_or_default();
    let body = format!(
        "{}\n{}\n",
        line(&lines::protocol(format, &snapshot)),
        line(&lines::metadata(format, &snapshot, &t, md_version))
    );
    Ok(ndjson_response(snapshot.version(), format, false, Body::from(body)))
}
