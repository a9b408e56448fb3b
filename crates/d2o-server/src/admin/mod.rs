//! The admin REST API: the same operations as the `d2o` admin commands, under `/admin/v1`,
//! guarded by an admin token that is separate from recipient tokens.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use d2o_catalog::{
    ActivationRequest, Admin, AuditEvent, AuditFilter, CredentialRequest, Issued, IssuedActivation,
    NewFederationPolicy, NewRecipient, RateLimit, RecipientInfo, ShareInfo, StorageLocation, TableEntry, UsageBy,
    UsagePoint, UsageQuery,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::audited::{AdminContext, AuditedAdmin};
use crate::client_addr::ClientAddr;
use crate::openapi::Errors;
use crate::routes::params::Params;
use crate::{ApiError, AppState};

mod audited;

/// `{"added": n}`: how many tables an import added (described only).
#[derive(ToSchema)]
#[allow(dead_code)] // the handler answers with `json!`
struct Imported {
    added: usize,
}

/// An activation link as the API answers it: its URL, secret, kind and expiry.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // `link_json` writes it
struct ActivationLink {
    /// The page the recipient opens: `{endpoint}/activate/{secret}`.
    url: String,
    recipient: String,
    secret: String,
    kind: d2o_catalog::CredentialKind,
    /// When the link stops working (ms since the epoch).
    expires_at: i64,
}

/// What a credential request issued: a token (the secret, shown once), an activation link,
/// or neither (`{}`, a recipient that signs in through federation only).
#[derive(ToSchema)]
#[allow(dead_code)] // `issued_json` writes it
struct IssuedCredential {
    token: Option<d2o_catalog::IssuedToken>,
    activation: Option<ActivationLink>,
}

/// A new activation link.
#[derive(ToSchema)]
#[allow(dead_code)] // `activation_link` writes it
struct IssuedLink {
    activation: ActivationLink,
}

/// A new recipient and what was issued for it.
#[derive(ToSchema)]
#[allow(dead_code)] // `create_recipient` writes it
struct CreatedRecipient {
    recipient: RecipientInfo,
    token: Option<d2o_catalog::IssuedToken>,
    activation: Option<ActivationLink>,
}

/// The admin routes (nested under `/admin/v1` by the router), each registered with its
/// description (`routes!`). Their actions are recorded by [`AuditedAdmin`], as the CLI's are.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_shares, create_share))
        .routes(routes!(show_share, comment_share, drop_share))
        .routes(routes!(add_table))
        .routes(routes!(import_tables))
        .routes(routes!(remove_table))
        .routes(routes!(grant, revoke_grant))
        .routes(routes!(list_recipients, create_recipient))
        .routes(routes!(show_recipient, drop_recipient))
        .routes(routes!(rotate))
        .routes(routes!(activation_link))
        .routes(routes!(add_client_key))
        .routes(routes!(add_federation_policy))
        .routes(routes!(remove_federation_policy))
        .routes(routes!(revoke))
        .routes(routes!(set_ip_access_list, clear_ip_access_list))
        .routes(routes!(set_rate_limit, clear_rate_limit))
        .routes(routes!(set_properties))
        .routes(routes!(list_storage, add_storage))
        .routes(routes!(show_storage, drop_storage))
        .routes(routes!(audit))
        .routes(routes!(prune_audit))
        .routes(routes!(usage))
        .routes(routes!(import))
}

impl AdminContext {
    /// Who acts (`principal`), from where, as the request says.
    pub(crate) fn of(parts: &Parts, principal: &str) -> AdminContext {
        let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        AdminContext {
            principal: principal.to_owned(),
            client_ip: parts.extensions.get::<ClientAddr>().and_then(|c| c.0).map(|ip| ip.to_string()),
            user_agent: header(header::USER_AGENT).map(|v| v.chars().take(512).collect()),
            request_id: crate::telemetry::given_request_id(&parts.headers),
        }
    }
}

/// The admin, once the admin token checked out, with what its actions are recorded with.
pub(crate) struct AdminCaller(AuditedAdmin);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (Some(admin), Some(expected)) = (&state.admin, &state.settings.admin_token) else {
            return Err(ApiError::NotFound(
                "the admin API is not enabled (serve from a catalog with an admin token)".to_owned(),
            ));
        };
        let context = AdminContext::of(parts, "admin");
        if !has_admin_token(parts, expected) {
            return Err(refused(state, &context, "admin.login", "a valid admin token is required").await);
        }
        Ok(AdminCaller(AuditedAdmin::new(admin.clone(), context)))
    }
}

/// Records a refused admin-token attempt (as `anonymous`, with `action`) and answers 401.
async fn refused(state: &AppState, context: &AdminContext, action: &str, message: &str) -> ApiError {
    let anonymous = AdminContext { principal: "anonymous".to_owned(), ..context.clone() };
    match record_access(state, &anonymous, action, StatusCode::UNAUTHORIZED).await {
        Ok(()) => ApiError::Unauthenticated(message.to_owned()),
        Err(e) => e,
    }
}

/// Records an attempt to use the admin token (`action`, by `context`'s principal) with the
/// status it got: refusals, and the console's logins.
pub(crate) async fn record_access(
    state: &AppState,
    context: &AdminContext,
    action: &str,
    status: StatusCode,
) -> Result<(), ApiError> {
    let event = AuditEvent {
        time_ms: chrono::Utc::now().timestamp_millis(),
        principal: context.principal.clone(),
        action: action.to_owned(),
        status: status.as_u16(),
        client_ip: context.client_ip.clone(),
        user_agent: context.user_agent.clone(),
        request_id: context.request_id.clone(),
        ..AuditEvent::default()
    };
    Ok(state.catalog.record(&event).await?)
}

/// `GET /metrics` on the protocol listener: for the admin token only; a refused attempt is
/// audited as `metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "For the admin token here; open on the separate metrics address (`--metrics-addr`), if one is configured.",
    responses((status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String), Errors),
    security(("admin" = []))
)]
pub(crate) async fn metrics(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let Some(expected) = &state.settings.admin_token else {
        return Err(ApiError::NotFound(
            "metrics are served here only with an admin token; or serve them on their own address (--metrics-addr)"
                .to_owned(),
        ));
    };
    if !has_admin_token(&parts, expected) {
        let context = AdminContext::of(&parts, "anonymous");
        return Err(refused(&state, &context, "metrics", "metrics need the admin token as the bearer token").await);
    }
    crate::telemetry::metrics_open().await
}

/// Whether the request's bearer token is the admin token, compared in constant time.
fn has_admin_token(parts: &Parts, expected: &crate::Secret) -> bool {
    let given = crate::auth::bearer_token(parts).unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| ApiError::Malformed(format!("a JSON body is required: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::Malformed(format!("invalid request body: {e}")))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateShare {
    name: String,
    #[serde(default)]
    comment: Option<String>,
}

#[utoipa::path(
    get,
    path = "/shares",
    tag = "admin",
    operation_id = "adminListShares",
    summary = "List the shares",
    responses((status = 200, description = "The shares, with their tables and recipients", body = Vec<ShareInfo>), Errors),
    security(("admin" = []))
)]
async fn list_shares(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<ShareInfo>>, ApiError> {
    Ok(Json(admin.list_shares().await?))
}

#[utoipa::path(
    post,
    path = "/shares",
    tag = "admin",
    operation_id = "adminCreateShare",
    summary = "Create a share",
    request_body = CreateShare,
    responses((status = 201, description = "The new share", body = ShareInfo), Errors),
    security(("admin" = []))
)]
async fn create_share(AdminCaller(admin): AdminCaller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: CreateShare = json_body(&body)?;
    let share = admin.create_share(&req.name, req.comment.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(share)).into_response())
}

#[utoipa::path(
    get,
    path = "/shares/{share}",
    tag = "admin",
    operation_id = "adminShowShare",
    summary = "Show a share",
    params(("share" = String, Path, description = "The share")),
    responses((status = 200, description = "The share", body = ShareInfo), Errors),
    security(("admin" = []))
)]
async fn show_share(AdminCaller(admin): AdminCaller, Path(share): Path<String>) -> Result<Json<ShareInfo>, ApiError> {
    Ok(Json(admin.show_share(&share).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Comment {
    comment: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/shares/{share}",
    tag = "admin",
    operation_id = "adminCommentShare",
    summary = "Set or clear a share's comment",
    params(("share" = String, Path, description = "The share")),
    request_body = Comment,
    responses((status = 200, description = "The share", body = ShareInfo), Errors),
    security(("admin" = []))
)]
async fn comment_share(
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ShareInfo>, ApiError> {
    let req: Comment = json_body(&body)?;
    Ok(Json(admin.comment_share(&share, req.comment.as_deref()).await?))
}

#[utoipa::path(
    delete,
    path = "/shares/{share}",
    tag = "admin",
    operation_id = "adminDropShare",
    summary = "Drop a share",
    params(("share" = String, Path, description = "The share")),
    responses((status = 204, description = "Dropped"), Errors),
    security(("admin" = []))
)]
async fn drop_share(AdminCaller(admin): AdminCaller, Path(share): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_share(&share).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/shares/{share}/tables",
    tag = "admin",
    operation_id = "adminAddTable",
    summary = "Add a table to a share (on object storage: only where a Delta log is)",
    params(("share" = String, Path, description = "The share")),
    request_body = TableEntry,
    responses((status = 200, description = "The share", body = ShareInfo), Errors),
    security(("admin" = []))
)]
/// A table on object storage is added only when a Delta log is there.
async fn add_table(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ShareInfo>, ApiError> {
    let table: TableEntry = json_body(&body)?;
    if let Ok(url) = url::Url::parse(&table.location)
        && d2o_catalog::StoreKind::of(&url).is_some()
        && let Some(catalog) = &state.admin
    {
        let locations = catalog.list_storage().await?;
        crate::storage::cloud::check_delta_log(&url, &locations).await.map_err(ApiError::InvalidParameter)?;
    }
    Ok(Json(admin.add_table(&share, table).await?))
}

#[utoipa::path(
    post,
    path = "/shares/{share}/tables/import",
    tag = "admin",
    operation_id = "adminImportTables",
    summary = "Add several tables to a share",
    params(("share" = String, Path, description = "The share")),
    request_body = Vec<TableEntry>,
    responses((status = 200, description = "How many were added", body = Imported), Errors),
    security(("admin" = []))
)]
async fn import_tables(
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tables: Vec<TableEntry> = json_body(&body)?;
    let added = admin.import_tables(&share, tables).await?;
    Ok(Json(serde_json::json!({ "added": added })))
}

#[utoipa::path(
    delete,
    path = "/shares/{share}/tables/{schema}/{table}",
    tag = "admin",
    operation_id = "adminRemoveTable",
    summary = "Remove a table from a share",
    params(("share" = String, Path, description = "The share"), ("schema" = String, Path, description = "The table's schema"), ("table" = String, Path, description = "The table")),
    responses((status = 200, description = "The share", body = ShareInfo), Errors),
    security(("admin" = []))
)]
async fn remove_table(
    AdminCaller(admin): AdminCaller,
    Path((share, schema, table)): Path<(String, String, String)>,
) -> Result<Json<ShareInfo>, ApiError> {
    Ok(Json(admin.remove_table(&share, &schema, &table).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IpAccessList {
    networks: Vec<String>,
}

#[utoipa::path(
    put,
    path = "/recipients/{recipient}/ip-access-list",
    tag = "admin",
    operation_id = "adminSetIpAccessList",
    summary = "Restrict a recipient to networks",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = IpAccessList,
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
/// `PUT {"networks": ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7"]}`
async fn set_ip_access_list(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RecipientInfo>, ApiError> {
    let list: IpAccessList = json_body(&body)?;
    Ok(Json(admin.set_ip_access_list(&name, Some(list.networks)).await?))
}

#[utoipa::path(
    delete,
    path = "/recipients/{recipient}/ip-access-list",
    tag = "admin",
    operation_id = "adminClearIpAccessList",
    summary = "Lift a recipient's network restriction",
    params(("recipient" = String, Path, description = "The recipient")),
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
async fn clear_ip_access_list(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.set_ip_access_list(&name, None).await?))
}

/// A recipient's new properties.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Properties {
    properties: std::collections::BTreeMap<String, String>,
}

#[utoipa::path(
    put,
    path = "/recipients/{recipient}/properties",
    tag = "admin",
    operation_id = "adminSetProperties",
    summary = "Replace a recipient's properties (what partition filters compare with)",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = Properties,
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
async fn set_properties(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RecipientInfo>, ApiError> {
    let Properties { properties } = json_body(&body)?;
    Ok(Json(admin.set_properties(&name, properties).await?))
}

#[utoipa::path(
    put,
    path = "/recipients/{recipient}/rate-limit",
    tag = "admin",
    operation_id = "adminSetRateLimit",
    summary = "Set a recipient's rate limit",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = RateLimit,
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
/// `PUT {"rate": "10/s", "burst": 20}` (burst optional).
async fn set_rate_limit(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RecipientInfo>, ApiError> {
    let limit: RateLimit = json_body(&body)?;
    Ok(Json(admin.set_rate_limit(&name, Some(limit)).await?))
}

#[utoipa::path(
    delete,
    path = "/recipients/{recipient}/rate-limit",
    tag = "admin",
    operation_id = "adminClearRateLimit",
    summary = "Clear a recipient's rate limit",
    params(("recipient" = String, Path, description = "The recipient")),
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
async fn clear_rate_limit(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.set_rate_limit(&name, None).await?))
}

#[utoipa::path(
    get,
    path = "/storage",
    tag = "admin",
    operation_id = "adminListStorage",
    summary = "List the storage locations",
    responses((status = 200, description = "The storage locations", body = Vec<StorageLocation>), Errors),
    security(("admin" = []))
)]
async fn list_storage(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<StorageLocation>>, ApiError> {
    Ok(Json(admin.list_storage().await?))
}

#[utoipa::path(
    post,
    path = "/storage",
    tag = "admin",
    operation_id = "adminAddStorage",
    summary = "Add a storage location (secrets only as environment references)",
    request_body = StorageLocation,
    responses((status = 201, description = "The storage location", body = StorageLocation), Errors),
    security(("admin" = []))
)]
/// The body is checked as it is read: an inline secret is refused with 400.
async fn add_storage(AdminCaller(admin): AdminCaller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let location: StorageLocation = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(admin.add_storage(location).await?)).into_response())
}

#[utoipa::path(
    get,
    path = "/storage/{name}",
    tag = "admin",
    operation_id = "adminShowStorage",
    summary = "Show a storage location",
    params(("name" = String, Path, description = "The storage location")),
    responses((status = 200, description = "The storage location", body = StorageLocation), Errors),
    security(("admin" = []))
)]
async fn show_storage(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<StorageLocation>, ApiError> {
    Ok(Json(admin.show_storage(&name).await?))
}

#[utoipa::path(
    delete,
    path = "/storage/{name}",
    tag = "admin",
    operation_id = "adminDropStorage",
    summary = "Drop a storage location",
    params(("name" = String, Path, description = "The storage location")),
    responses((status = 204, description = "Dropped"), Errors),
    security(("admin" = []))
)]
async fn drop_storage(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_storage(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/shares/{share}/recipients/{recipient}",
    tag = "admin",
    operation_id = "adminGrant",
    summary = "Grant a share to a recipient",
    params(("share" = String, Path, description = "The share"), ("recipient" = String, Path, description = "The recipient")),
    responses((status = 204, description = "Granted"), Errors),
    security(("admin" = []))
)]
async fn grant(
    AdminCaller(admin): AdminCaller,
    Path((share, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.grant(&share, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/shares/{share}/recipients/{recipient}",
    tag = "admin",
    operation_id = "adminRevokeGrant",
    summary = "Revoke a recipient's grant of a share",
    params(("share" = String, Path, description = "The share"), ("recipient" = String, Path, description = "The recipient")),
    responses((status = 204, description = "Revoked"), Errors),
    security(("admin" = []))
)]
async fn revoke_grant(
    AdminCaller(admin): AdminCaller,
    Path((share, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.revoke_grant(&share, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/recipients",
    tag = "admin",
    operation_id = "adminListRecipients",
    summary = "List the recipients",
    responses((status = 200, description = "The recipients (never their secrets)", body = Vec<RecipientInfo>), Errors),
    security(("admin" = []))
)]
async fn list_recipients(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<RecipientInfo>>, ApiError> {
    Ok(Json(admin.list_recipients().await?))
}

/// An activation link's URL: the secret under the sharing endpoint's public URL.
pub fn activation_url(endpoint: &str, secret: &str) -> String {
    format!("{}/activate/{secret}", endpoint.trim_end_matches('/'))
}

/// What was issued, as the API answers it: `{"token": ...}` (the secret, shown once),
/// `{"activation": {"url": ..., "secret": ..., "expiresAt": ..., "kind": ...}}`, or `{}`.
fn issued_json(state: &AppState, headers: &HeaderMap, issued: Issued) -> Result<serde_json::Value, ApiError> {
    Ok(match issued {
        Issued::Token(token) => serde_json::json!({ "token": token }),
        Issued::Activation(link) => serde_json::json!({ "activation": link_json(state, headers, &link)? }),
        Issued::None => serde_json::json!({}),
    })
}

fn link_json(state: &AppState, headers: &HeaderMap, link: &IssuedActivation) -> Result<serde_json::Value, ApiError> {
    let endpoint = crate::routes::public_endpoint(state, headers)?;
    let mut answer = serde_json::to_value(link).map_err(|e| ApiError::internal_from("encoding", e))?;
    answer["url"] = activation_url(&endpoint, &link.secret).into();
    Ok(answer)
}

#[utoipa::path(
    post,
    path = "/recipients",
    tag = "admin",
    operation_id = "adminCreateRecipient",
    summary = "Create a recipient and its first credential",
    request_body = NewRecipient,
    responses((status = 201, description = "The recipient, and its bearer token or OAuth secret (shown once) or activation link", body = CreatedRecipient), Errors),
    security(("admin" = []))
)]
/// `POST {"name": ..., "credential": {"type": "activation", "kind": "oauth_client_credentials"}}`;
/// without `credential`, a bearer token is returned at once.
async fn create_recipient(
    State(state): State<AppState>,
    headers: HeaderMap,
    AdminCaller(admin): AdminCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: NewRecipient = json_body(&body)?;
    let (recipient, issued) = admin.create_recipient(req).await?;
    let mut answer = issued_json(&state, &headers, issued)?;
    answer["recipient"] = serde_json::to_value(recipient).map_err(|e| ApiError::internal_from("encoding", e))?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(
    get,
    path = "/recipients/{recipient}",
    tag = "admin",
    operation_id = "adminShowRecipient",
    summary = "Show a recipient",
    params(("recipient" = String, Path, description = "The recipient")),
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
async fn show_recipient(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.show_recipient(&name).await?))
}

#[utoipa::path(
    delete,
    path = "/recipients/{recipient}",
    tag = "admin",
    operation_id = "adminDropRecipient",
    summary = "Drop a recipient",
    params(("recipient" = String, Path, description = "The recipient")),
    responses((status = 204, description = "Dropped"), Errors),
    security(("admin" = []))
)]
async fn drop_recipient(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_recipient(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    grace_seconds: u64,
    #[serde(default)]
    credential: CredentialRequest,
}

#[utoipa::path(
    post,
    path = "/recipients/{recipient}/rotate",
    tag = "admin",
    operation_id = "adminRotate",
    summary = "Rotate a recipient's credential (the old one lives on for `graceSeconds`)",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = Rotate,
    responses((status = 200, description = "The new credential or activation link", body = IssuedCredential), Errors),
    security(("admin" = []))
)]
/// `POST {"graceSeconds": 3600, "credential": {"type": "activation"}}`; without `credential`,
/// a new bearer token is returned at once.
async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: Rotate = json_body(&body)?;
    let issued = admin.rotate_credential(&name, req.grace_seconds, req.credential).await?;
    Ok(Json(issued_json(&state, &headers, issued)?))
}

#[utoipa::path(
    post,
    path = "/recipients/{recipient}/activation-link",
    tag = "admin",
    operation_id = "adminActivationLink",
    summary = "Issue a new activation link (older ones are withdrawn)",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = ActivationRequest,
    responses((status = 200, description = "The link", body = IssuedLink), Errors),
    security(("admin" = []))
)]
/// `POST {"kind": "bearer_token", "lifetimeSecs": 259200}` (both optional): a new link, the
/// older ones withdrawn, live credentials untouched.
async fn activation_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: ActivationRequest = json_body(&body)?;
    let link = admin.issue_activation(&name, req).await?;
    Ok(Json(serde_json::json!({ "activation": link_json(&state, &headers, &link)? })))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientKey {
    public_key: String,
}

#[utoipa::path(
    post,
    path = "/recipients/{recipient}/client-keys",
    tag = "admin",
    operation_id = "adminAddClientKey",
    summary = "Register a private-key OAuth client by its public key",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = ClientKey,
    responses((status = 201, description = "The client; its `id` is the client id", body = d2o_catalog::TokenInfo), Errors),
    security(("admin" = []))
)]
/// `POST {"publicKey": "-----BEGIN PUBLIC KEY-----..."}`: a private-key OAuth client; the
/// answer's `id` is its client id.
async fn add_client_key(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: ClientKey = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(admin.add_client_key(&name, &req.public_key).await?)).into_response())
}

#[utoipa::path(
    post,
    path = "/recipients/{recipient}/federation-policies",
    tag = "admin",
    operation_id = "adminAddFederationPolicy",
    summary = "Add an OIDC federation policy",
    params(("recipient" = String, Path, description = "The recipient")),
    request_body = NewFederationPolicy,
    responses((status = 201, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
/// `POST {"issuer": ..., "audiences": [...], "subjectClaim": "sub", "subject": ...}`
async fn add_federation_policy(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let policy: NewFederationPolicy = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(admin.add_federation_policy(&name, policy).await?)).into_response())
}

#[utoipa::path(
    delete,
    path = "/recipients/{recipient}/federation-policies/{id}",
    tag = "admin",
    operation_id = "adminRemoveFederationPolicy",
    summary = "Remove a federation policy",
    params(("recipient" = String, Path, description = "The recipient"), ("id" = String, Path, description = "The federation policy's id")),
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
async fn remove_federation_policy(
    AdminCaller(admin): AdminCaller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.remove_federation_policy(&name, &id).await?))
}

#[utoipa::path(
    post,
    path = "/recipients/{recipient}/revoke",
    tag = "admin",
    operation_id = "adminRevoke",
    summary = "Revoke all of a recipient's credentials and links",
    params(("recipient" = String, Path, description = "The recipient")),
    responses((status = 200, description = "The recipient", body = RecipientInfo), Errors),
    security(("admin" = []))
)]
async fn revoke(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.revoke_recipient(&name).await?))
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "admin",
    operation_id = "adminAudit",
    summary = "Audit events, newest first",
    params(("recipient" = Option<String>, Query, description = "Only this principal's events"), ("share" = Option<String>, Query, description = "Only this share's"), ("table" = Option<String>, Query, description = "Only this table's"), ("action" = Option<String>, Query, description = "Only this action's (`query`, `admin.share.create`, ...)"), ("since" = Option<String>, Query, description = "From this ISO 8601 timestamp or ms since the epoch"), ("until" = Option<String>, Query, description = "Until this ISO 8601 timestamp or ms since the epoch"), ("status" = Option<String>, Query, description = "Only this status: a code (`404`), a class (`4xx`), `ok` or `error`"), ("minStatus" = Option<u16>, Query, description = "Only statuses from this code"), ("maxStatus" = Option<u16>, Query, description = "Only statuses up to this code"), ("limit" = Option<u32>, Query, description = "At most this many events (1 to 100000)"), ("offset" = Option<u32>, Query, description = "Skip this many of the newest matching events")),
    responses((status = 200, description = "The events", body = Vec<d2o_catalog::AuditEvent>), Errors),
    security(("admin" = []))
)]
async fn audit(
    AdminCaller(admin): AdminCaller,
    params: Params,
) -> Result<Json<Vec<d2o_catalog::AuditEvent>>, ApiError> {
    let status = params.get("status").map(AuditFilter::status_range).transpose()?;
    let code = |name: &str| -> Result<Option<u16>, ApiError> { Ok(params.i64(name)?.map(|c| c.clamp(0, 999) as u16)) };
    let filter = AuditFilter {
        principal: params.get("recipient").map(str::to_owned),
        share: params.get("share").map(str::to_owned),
        table: params.get("table").map(str::to_owned),
        action: params.get("action").map(str::to_owned),
        since_ms: time_param(&params, "since")?,
        until_ms: time_param(&params, "until")?,
        min_status: code("minStatus")?.or(status.map(|s| s.0)),
        max_status: code("maxStatus")?.or(status.map(|s| s.1)),
        limit: params.i64("limit")?.map(|l| l.clamp(1, 100_000) as u32),
        offset: params.i64("offset")?.map(|o| o.clamp(0, i64::from(u32::MAX)) as u32),
    };
    Ok(Json(admin.audit(&filter).await?))
}

#[utoipa::path(
    post,
    path = "/import",
    tag = "admin",
    operation_id = "adminImport",
    summary = "Make the catalog hold a share tree (a reference server's YAML, as `d2o catalog import` reads it)",
    description = "Atomic: creates what is missing, updates tables whose id, location or settings changed, keeps the \
                   legacy bearer token as a recipient's credential, and with `prune` drops what the spec does not name. \
                   With `dryRun=true` it answers the same plan and changes nothing.",
    params(("dryRun" = Option<bool>, Query, description = "Only plan")),
    request_body = d2o_catalog::ImportSpec,
    responses((status = 200, description = "What changed (or would change)", body = d2o_catalog::ImportPlan), Errors),
    security(("admin" = []))
)]
async fn import(
    AdminCaller(admin): AdminCaller,
    params: Params,
    body: axum::body::Bytes,
) -> Result<Json<d2o_catalog::ImportPlan>, ApiError> {
    let spec: d2o_catalog::ImportSpec = json_body(&body)?;
    let dry_run = match params.get("dryRun") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::InvalidParameter(format!("'dryRun' is true or false, not '{other}'"))),
    };
    Ok(Json(admin.import(&spec, dry_run).await?))
}

/// An ISO 8601 timestamp or ms since the epoch, from query parameter `name`.
fn time_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            d2o_protocol::timestamp::parse_timestamp_millis(v)
                .or_else(|_| v.parse::<i64>().map_err(|_| format!("'{v}' is neither a timestamp nor milliseconds")))
                .map_err(|e| ApiError::InvalidParameter(format!("invalid '{name}': {e}")))
        })
        .transpose()
}

/// `{"deleted": n}`: how many audit events a prune deleted (described only).
#[derive(ToSchema)]
#[allow(dead_code)] // the handler answers with `json!`
struct Pruned {
    deleted: u64,
}

#[utoipa::path(
    post,
    path = "/audit/prune",
    tag = "admin",
    operation_id = "adminPruneAudit",
    summary = "Delete audit events older than a time, at most `batch` of them (repeat until fewer go)",
    params(
        ("before" = String, Query, description = "An ISO 8601 timestamp or ms since the epoch"),
        ("batch" = Option<u32>, Query, description = "At most this many (1 to 100000, default 10000)")
    ),
    responses((status = 200, description = "How many were deleted", body = Pruned), Errors),
    security(("admin" = []))
)]
async fn prune_audit(AdminCaller(admin): AdminCaller, params: Params) -> Result<Json<serde_json::Value>, ApiError> {
    let before =
        time_param(&params, "before")?.ok_or_else(|| ApiError::InvalidParameter("'before' is required".into()))?;
    let batch = params.i64("batch")?.map_or(10_000, |b| b.clamp(1, 100_000) as u32);
    Ok(Json(serde_json::json!({ "deleted": admin.prune_audit(before, batch).await? })))
}

#[utoipa::path(
    get,
    path = "/usage",
    tag = "admin",
    operation_id = "adminUsage",
    summary = "Recipients' usage over time: requests, files and bytes per time bucket and per recipient or table",
    params(
        ("by" = Option<String>, Query, description = "`recipient` (default) or `table`"),
        ("since" = String, Query, description = "From this ISO 8601 timestamp or ms since the epoch"),
        ("until" = Option<String>, Query, description = "Until this time (default now)"),
        ("bucketMs" = i64, Query, description = "Bucket width in ms (at least 1000; at most 1000 buckets)"),
        ("recipient" = Option<String>, Query, description = "Only this recipient's requests"),
        ("share" = Option<String>, Query, description = "Only this share's requests")
    ),
    responses((status = 200, description = "Non-empty buckets, by time then key", body = Vec<UsagePoint>), Errors),
    security(("admin" = []))
)]
async fn usage(AdminCaller(admin): AdminCaller, params: Params) -> Result<Json<Vec<UsagePoint>>, ApiError> {
    let by = match params.get("by") {
        None | Some("recipient") => UsageBy::Recipient,
        Some("table") => UsageBy::Table,
        Some(other) => return Err(ApiError::InvalidParameter(format!("'by' is recipient or table, not '{other}'"))),
    };
    let query = UsageQuery {
        by,
        since_ms: time_param(&params, "since")?
            .ok_or_else(|| ApiError::InvalidParameter("'since' is required".into()))?,
        until_ms: time_param(&params, "until")?.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
        bucket_ms: params
            .i64("bucketMs")?
            .ok_or_else(|| ApiError::InvalidParameter("'bucketMs' is required".into()))?,
        principal: params.get("recipient").map(str::to_owned),
        share: params.get("share").map(str::to_owned),
    };
    Ok(Json(admin.usage(&query).await?))
}
