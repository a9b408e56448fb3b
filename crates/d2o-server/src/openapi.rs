//! The OpenAPI 3 description of the server's HTTP surface, served at `GET /openapi.json`.
//!
//! Routes and their descriptions cannot drift apart: [`crate::router`] registers every route
//! with `utoipa_axum::routes!`, which takes the path and the methods from the handler's
//! `#[utoipa::path]` annotation, so a route and its operation are one declaration. The
//! protocol's paths are nested under the configured endpoint here, as the router nests them,
//! so the document names the paths the server answers.
//!
//! Bodies: the admin API's JSON types are `d2o-catalog`'s (its `openapi` feature derives their
//! schemas); the protocol's NDJSON responses are described as `application/x-ndjson` text.

use std::collections::BTreeMap;

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::{IntoParams, Modify, ToSchema};

/// Security scheme of the protocol: a recipient's bearer token, an OAuth access token from the
/// token endpoint, or a JWT of the recipient's own identity provider (OIDC federation).
pub(crate) const RECIPIENT: &str = "recipient";
/// Security scheme of the admin API and `/metrics`: the admin token as a bearer token.
pub(crate) const ADMIN: &str = "admin";
/// Security scheme of the token endpoint: an OAuth client's id and secret as HTTP Basic.
pub(crate) const OAUTH_CLIENT: &str = "oauthClient";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "d2o",
        description = "A Delta Sharing server: the Delta Sharing protocol (under the configured endpoint, \
                       `/delta-sharing` by default), the OAuth token endpoint and activation pages of \
                       recipients, the admin API (`/admin/v1`), health, readiness and metrics."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = "discovery", description = "Shares, schemas and tables a recipient can read"),
        (name = "table", description = "A table's version, metadata, files and changes"),
        (name = "files", description = "The server's own signed file URLs"),
        (name = "recipient", description = "How recipients obtain credentials: the OAuth token endpoint and activation links"),
        (name = "admin", description = "The admin API: shares, tables, recipients, credentials, grants, storage, audit"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme(
            RECIPIENT,
            bearer(
                "A recipient's bearer token (its `config.share`), an OAuth access token from the token \
                 endpoint, or a JWT from the recipient's identity provider that one of its federation \
                 policies accepts.",
            ),
        );
        components.add_security_scheme(ADMIN, bearer("The server's admin token."));
        components.add_security_scheme(
            OAUTH_CLIENT,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An OAuth client's id and secret (or `client_id` and `client_secret` in the form, \
                         or a private-key client's `assertion`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The protocol's error body, which every 4xx and 5xx answer carries.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // only described: `ApiError` writes this body.
pub(crate) struct ErrorBody {
    /// What went wrong, for programs: `BAD_REQUEST`, `UNAUTHENTICATED`, `RESOURCE_DOES_NOT_EXIST`, ...
    error_code: String,
    /// What went wrong, for people.
    message: String,
}

/// The error answers every operation may give, with the protocol's error body.
pub(crate) struct Errors;

impl utoipa::IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let error = |description: &str| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            ResponseBuilder::new().description(description).content("application/json", content).build()
        };
        ResponsesBuilder::new()
            .response(
                "4XX",
                error("A client error: a malformed request (400), no or a bad credential (401), a refused address (403), an unknown or ungranted resource (404), a rate limit (429)."),
            )
            .response("5XX", error("A server error; the message never shows internals."))
            .build()
            .into()
    }
}

/// `maxResults` and `pageToken` of the list endpoints.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)] // only described: `Params` reads them.
pub(crate) struct PageQuery {
    /// The most items to return in this page.
    max_results: Option<u32>,
    /// The `nextPageToken` of the previous page.
    page_token: Option<String>,
}

/// The share of a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only described: `Path` extracts it.
pub(crate) struct SharePath {
    /// The share's name (case-insensitive).
    share: String,
}

/// A table's path: `{share}/schemas/{schema}/tables/{table}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only described: `Path` extracts it.
pub(crate) struct TablePath {
    /// The share's name (case-insensitive).
    share: String,
    /// The schema's name (case-insensitive).
    schema: String,
    /// The table's name (case-insensitive).
    table: String,
}

/// The document for a router: `ApiDoc` with the protocol's operations under `endpoint`, the
/// admin API's under `/admin/v1`, and the operations at the root.
pub(crate) fn document(endpoint: &str, protocol: OpenApi, admin: OpenApi, root: OpenApi) -> OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = ApiDoc::openapi().nest(endpoint, protocol).nest("/admin/v1", admin);
    doc.merge(root);
    // axum's catch-all `{*path}` is OpenAPI's `{path}` (which then matches the rest of the path).
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths.into_iter().map(|(path, item)| (path.replace("{*", "{"), item)).collect();
    doc
}

/// The serialized document, as `GET /openapi.json` answers it.
#[derive(Clone)]
pub(crate) struct Document(pub(crate) bytes::Bytes);

impl Document {
    pub(crate) fn new(doc: &OpenApi) -> Document {
        // Serializing plain maps and strings cannot fail; an empty body would show it if it did.
        Document(doc.to_json().unwrap_or_default().into())
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This OpenAPI 3 document",
    description = "The server's HTTP surface, generated from its routes. It describes operations and \
                   reveals no data, so it needs no credential.",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.0).into_response()
}
