//! The admin REST API: the same operations as the `d2o` admin commands, under `/admin/v1`,
//! guarded by an admin token that is separate from recipient tokens.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use d2o_catalog::{
    ActivationRequest, Admin, AuditEvent, AuditFilter, CredentialRequest, Issued, IssuedActivation,
    NewFederationPolicy, NewRecipient, RateLimit, RecipientInfo, ShareInfo, StorageLocation, TableEntry,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub use self::audited::{AdminContext, AuditedAdmin};
use crate::client_addr::ClientAddr;
use crate::routes::params::Params;
use crate::{ApiError, AppState};

mod audited;

/// The admin routes (nested under `/admin/v1` by the router). Their actions are recorded by
/// [`AuditedAdmin`], as the CLI's are.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/shares", get(list_shares).post(create_share))
        .route("/shares/{share}", get(show_share).patch(comment_share).delete(drop_share))
        .route("/shares/{share}/tables", post(add_table))
        .route("/shares/{share}/tables/import", post(import_tables))
        .route("/shares/{share}/tables/{schema}/{table}", delete(remove_table))
        .route("/shares/{share}/recipients/{recipient}", put(grant).delete(revoke_grant))
        .route("/recipients", get(list_recipients).post(create_recipient))
        .route("/recipients/{recipient}", get(show_recipient).delete(drop_recipient))
        .route("/recipients/{recipient}/rotate", post(rotate))
        .route("/recipients/{recipient}/activation-link", post(activation_link))
        .route("/recipients/{recipient}/client-keys", post(add_client_key))
        .route("/recipients/{recipient}/federation-policies", post(add_federation_policy))
        .route("/recipients/{recipient}/federation-policies/{id}", delete(remove_federation_policy))
        .route("/recipients/{recipient}/revoke", post(revoke))
        .route("/recipients/{recipient}/ip-access-list", put(set_ip_access_list).delete(clear_ip_access_list))
        .route("/recipients/{recipient}/rate-limit", put(set_rate_limit).delete(clear_rate_limit))
        .route("/storage", get(list_storage).post(add_storage))
        .route("/storage/{name}", get(show_storage).delete(drop_storage))
        .route("/audit", get(audit))
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
        let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let context = AdminContext {
            principal: "admin".to_owned(),
            client_ip: parts.extensions.get::<ClientAddr>().and_then(|c| c.0).map(|ip| ip.to_string()),
            user_agent: header(header::USER_AGENT).map(|v| v.chars().take(512).collect()),
            request_id: header(header::HeaderName::from_static("x-request-id"))
                .filter(|v| v.len() <= 128)
                .map(str::to_owned),
        };
        if !has_admin_token(parts, expected) {
            // Refused attempts are recorded too, as an anonymous login.
            let event = AuditEvent {
                time_ms: chrono::Utc::now().timestamp_millis(),
                principal: "anonymous".to_owned(),
                action: "admin.login".to_owned(),
                status: 401,
                client_ip: context.client_ip,
                user_agent: context.user_agent,
                request_id: context.request_id,
                ..AuditEvent::default()
            };
            state.catalog.record(&event).await?;
            return Err(ApiError::Unauthenticated("a valid admin token is required".to_owned()));
        }
        Ok(AdminCaller(AuditedAdmin::new(admin.clone(), context)))
    }
}

/// Whether the request's bearer token is the admin token, compared in constant time.
pub(crate) fn has_admin_token(parts: &Parts, expected: &crate::Secret) -> bool {
    let given = crate::auth::bearer_token(parts).unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| ApiError::Malformed(format!("a JSON body is required: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::Malformed(format!("invalid request body: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateShare {
    name: String,
    #[serde(default)]
    comment: Option<String>,
}

async fn list_shares(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<ShareInfo>>, ApiError> {
    Ok(Json(admin.list_shares().await?))
}

async fn create_share(AdminCaller(admin): AdminCaller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: CreateShare = json_body(&body)?;
    let share = admin.create_share(&req.name, req.comment.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(share)).into_response())
}

async fn show_share(AdminCaller(admin): AdminCaller, Path(share): Path<String>) -> Result<Json<ShareInfo>, ApiError> {
    Ok(Json(admin.show_share(&share).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Comment {
    comment: Option<String>,
}

async fn comment_share(
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ShareInfo>, ApiError> {
    let req: Comment = json_body(&body)?;
    Ok(Json(admin.comment_share(&share, req.comment.as_deref()).await?))
}

async fn drop_share(AdminCaller(admin): AdminCaller, Path(share): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_share(&share).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

async fn import_tables(
    AdminCaller(admin): AdminCaller,
    Path(share): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tables: Vec<TableEntry> = json_body(&body)?;
    let added = admin.import_tables(&share, tables).await?;
    Ok(Json(serde_json::json!({ "added": added })))
}

async fn remove_table(
    AdminCaller(admin): AdminCaller,
    Path((share, schema, table)): Path<(String, String, String)>,
) -> Result<Json<ShareInfo>, ApiError> {
    Ok(Json(admin.remove_table(&share, &schema, &table).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpAccessList {
    networks: Vec<String>,
}

/// `PUT {"networks": ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7"]}`
async fn set_ip_access_list(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RecipientInfo>, ApiError> {
    let list: IpAccessList = json_body(&body)?;
    Ok(Json(admin.set_ip_access_list(&name, Some(list.networks)).await?))
}

async fn clear_ip_access_list(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.set_ip_access_list(&name, None).await?))
}

/// `PUT {"rate": "10/s", "burst": 20}` (burst optional).
async fn set_rate_limit(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RecipientInfo>, ApiError> {
    let limit: RateLimit = json_body(&body)?;
    Ok(Json(admin.set_rate_limit(&name, Some(limit)).await?))
}

async fn clear_rate_limit(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.set_rate_limit(&name, None).await?))
}

async fn list_storage(AdminCaller(admin): AdminCaller) -> Result<Json<Vec<StorageLocation>>, ApiError> {
    Ok(Json(admin.list_storage().await?))
}

/// The body is checked as it is read: an inline secret is refused with 400.
async fn add_storage(AdminCaller(admin): AdminCaller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let location: StorageLocation = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(admin.add_storage(location).await?)).into_response())
}

async fn show_storage(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<StorageLocation>, ApiError> {
    Ok(Json(admin.show_storage(&name).await?))
}

async fn drop_storage(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_storage(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant(
    AdminCaller(admin): AdminCaller,
    Path((share, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.grant(&share, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_grant(
    AdminCaller(admin): AdminCaller,
    Path((share, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin.revoke_grant(&share, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

async fn show_recipient(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.show_recipient(&name).await?))
}

async fn drop_recipient(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    admin.drop_recipient(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    grace_seconds: u64,
    #[serde(default)]
    credential: CredentialRequest,
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientKey {
    public_key: String,
}

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

/// `POST {"issuer": ..., "audiences": [...], "subjectClaim": "sub", "subject": ...}`
async fn add_federation_policy(
    AdminCaller(admin): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let policy: NewFederationPolicy = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(admin.add_federation_policy(&name, policy).await?)).into_response())
}

async fn remove_federation_policy(
    AdminCaller(admin): AdminCaller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.remove_federation_policy(&name, &id).await?))
}

async fn revoke(AdminCaller(admin): AdminCaller, Path(name): Path<String>) -> Result<Json<RecipientInfo>, ApiError> {
    Ok(Json(admin.revoke_recipient(&name).await?))
}

async fn audit(
    AdminCaller(admin): AdminCaller,
    params: Params,
) -> Result<Json<Vec<d2o_catalog::AuditEvent>>, ApiError> {
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                d2o_protocol::timestamp::parse_timestamp_millis(v)
                    .or_else(|_| v.parse::<i64>().map_err(|_| format!("'{v}' is neither a timestamp nor milliseconds")))
                    .map_err(|e| ApiError::InvalidParameter(format!("invalid '{name}': {e}")))
            })
            .transpose()
    };
    let filter = AuditFilter {
        principal: params.get("recipient").map(str::to_owned),
        share: params.get("share").map(str::to_owned),
        table: params.get("table").map(str::to_owned),
        action: params.get("action").map(str::to_owned),
        since_ms: time("since")?,
        until_ms: time("until")?,
        limit: params.i64("limit")?.map(|l| l.clamp(1, 100_000) as u32),
    };
    Ok(Json(admin.audit(&filter).await?))
}
