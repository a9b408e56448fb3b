//! The discovery endpoints: shares, schemas and tables.

use axum::Json;
use axum::extract::{Path, State};
use d2o_protocol::model::{GetShareResponse, Page, Schema, Share, Table};

use super::params::Params;
use crate::auth::Recipient;
use crate::{ApiError, AppState};

pub(crate) async fn list_shares(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    params: Params,
) -> Result<Json<Page<Share>>, ApiError> {
    Ok(Json(state.catalog.list_shares(&who, &params.page()?).await?))
}

pub(crate) async fn get_share(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(share): Path<String>,
) -> Result<Json<GetShareResponse>, ApiError> {
    Ok(Json(GetShareResponse { share: state.catalog.get_share(&who, &share).await? }))
}

pub(crate) async fn list_schemas(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(share): Path<String>,
    params: Params,
) -> Result<Json<Page<Schema>>, ApiError> {
    Ok(Json(state.catalog.list_schemas(&who, &share, &params.page()?).await?))
}

pub(crate) async fn list_tables(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path((share, schema)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Page<Table>>, ApiError> {
    Ok(Json(state.catalog.list_tables(&who, &share, &schema, &params.page()?).await?))
}

pub(crate) async fn list_all_tables(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(share): Path<String>,
    params: Params,
) -> Result<Json<Page<Table>>, ApiError> {
    Ok(Json(state.catalog.list_all_tables(&who, &share, &params.page()?).await?))
}
