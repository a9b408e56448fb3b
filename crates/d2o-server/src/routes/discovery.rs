//! The discovery endpoints: shares, schemas and tables.

use axum::Json;
use axum::extract::{Path, State};
use d2o_protocol::model::{GetShareResponse, Page, Schema, Share, Table};

use super::params::Params;
use crate::auth::Recipient;
use crate::openapi::{Errors, PageQuery, SharePath};
use crate::{ApiError, AppState};

#[utoipa::path(
    get,
    path = "/shares",
    tag = "discovery",
    operation_id = "listShares",
    summary = "List the shares the recipient can read",
    params(PageQuery),
    responses((status = 200, description = "`{\"items\": [{\"name\", \"id\"}], \"nextPageToken\"}`, on one line", body = Object), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn list_shares(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    params: Params,
) -> Result<Json<Page<Share>>, ApiError> {
    Ok(Json(state.catalog.list_shares(&who, &params.page()?).await?))
}

#[utoipa::path(
    get,
    path = "/shares/{share}",
    tag = "discovery",
    operation_id = "getShare",
    summary = "Get a share",
    params(SharePath),
    responses((status = 200, description = "`{\"share\": {\"name\", \"id\"}}`", body = Object), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn get_share(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(share): Path<String>,
) -> Result<Json<GetShareResponse>, ApiError> {
    Ok(Json(GetShareResponse { share: state.catalog.get_share(&who, &share).await? }))
}

#[utoipa::path(
    get,
    path = "/shares/{share}/schemas",
    tag = "discovery",
    operation_id = "listSchemas",
    summary = "List the schemas of a share",
    params(SharePath, PageQuery),
    responses((status = 200, description = "`{\"items\": [{\"name\", \"share\"}], \"nextPageToken\"}`", body = Object), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn list_schemas(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(share): Path<String>,
    params: Params,
) -> Result<Json<Page<Schema>>, ApiError> {
    Ok(Json(state.catalog.list_schemas(&who, &share, &params.page()?).await?))
}

#[utoipa::path(
    get,
    path = "/shares/{share}/schemas/{schema}/tables",
    tag = "discovery",
    operation_id = "listTables",
    summary = "List the tables of a schema",
    params(SharePath, ("schema" = String, Path, description = "The schema's name (case-insensitive)."), PageQuery),
    responses((status = 200, description = "`{\"items\": [{\"name\", \"schema\", \"share\", \"shareId\", \"id\"}], \"nextPageToken\"}`", body = Object), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn list_tables(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path((share, schema)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Page<Table>>, ApiError> {
    Ok(Json(state.catalog.list_tables(&who, &share, &schema, &params.page()?).await?))
}

#[utoipa::path(
    get,
    path = "/shares/{share}/all-tables",
    tag = "discovery",
    operation_id = "listAllTables",
    summary = "List all the tables of a share",
    params(SharePath, PageQuery),
    responses((status = 200, description = "`{\"items\": [{\"name\", \"schema\", \"share\", \"shareId\", \"id\"}], \"nextPageToken\"}`", body = Object), Errors),
    security(("recipient" = []))
)]
pub(crate) async fn list_all_tables(
    State(state): State<AppState>,
    Recipient(who): Recipient,
    Path(share): Path<String>,
    params: Params,
) -> Result<Json<Page<Table>>, ApiError> {
    Ok(Json(state.catalog.list_all_tables(&who, &share, &params.page()?).await?))
}
