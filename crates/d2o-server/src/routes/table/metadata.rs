//! `GET .../metadata`: the protocol and metaData lines of a version.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use d2o_catalog::SharedTable;
use d2o_delta::TableSnapshot;
use d2o_protocol::capabilities::ResponseFormat;
use serde_json::{Value, json};

use super::{
    TablePath, VersionPin, blocking, capabilities_of, choose_format, history_required, ndjson_response,
    resolve_snapshot, timestamp_param,
};
use crate::audit::AuditSlot;
use crate::auth::Recipient;
use crate::ndjson::protocol_line;
use crate::routes::params::Params;
use crate::{ApiError, AppState, policy};

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
    let body = format!(
        "{}\n{}\n",
        protocol_line(format, snapshot.protocol_action()),
        metadata_line(format, &snapshot, &t, md_version)
    );
    Ok(ndjson_response(snapshot.version(), format, false, Body::from(body)))
}

/// The metaData line of either format.
pub(super) fn metadata_line(
    format: ResponseFormat,
    snapshot: &TableSnapshot,
    t: &SharedTable,
    version: Option<u64>,
) -> Value {
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
