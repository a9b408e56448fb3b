//! Activation links: `GET {endpoint}/activate/{secret}` shows what the link gives, and
//! `POST` to the same URL (the page's button) creates the recipient's credential and downloads
//! it as `config.share`, once.
//!
//! The provider never sees the credential: it exists from the moment of the download. Opening
//! the page changes nothing, so a link scanner that fetches the URL does not use it up. Both
//! are audited (`activation.view`, `activation.download`) under the recipient's name, and both
//! pass the recipient's IP access list and rate limit.

mod page;

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use d2o_catalog::{ActivationInfo, ActivationState, Admin, CatalogError, CredentialKind, Principal, RecipientInfo};

use self::page::{escape, render, when};
use crate::openapi::Errors;
use crate::{ApiError, AppState};

/// Secrets are 43 URL-safe characters; anything else is not worth a database lookup.
fn plausible(secret: &str) -> bool {
    (20..=128).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn admin(state: &AppState) -> Result<&std::sync::Arc<dyn Admin>, ApiError> {
    state.admin.as_ref().ok_or_else(|| ApiError::NotFound("activation links need a catalog (serve --catalog)".into()))
}

/// The link's recipient as a principal: for its IP access list and rate limit.
fn principal_of(r: &RecipientInfo) -> Result<Principal, ApiError> {
    let mut p = Principal::new(r.id.clone(), r.name.clone(), r.properties.clone());
    p.allowed_networks = r
        .ip_access_list
        .as_deref()
        .map(|list| d2o_catalog::ip_access::parse_networks(list).map(std::sync::Arc::from))
        .transpose()
        .map_err(|e| ApiError::internal(format!("stored IP access list: {e}")))?;
    p.rate_limit = r.rate_limit;
    Ok(p)
}

/// The link if it can be redeemed, after the recipient's network and rate checks; `Err(page)`
/// for an unknown link or one that was used, expired or withdrawn.
async fn ready(state: &AppState, parts: &Parts, secret: &str) -> Result<Result<ActivationInfo, Response>, ApiError> {
    let unknown = || {
        Ok(Err(render(
            StatusCode::NOT_FOUND,
            "This activation link is not valid",
            "<p>Check that the whole link was copied. If it was, ask the data provider who sent it for a new one.</p>",
        )))
    };
    if !plausible(secret) {
        return unknown();
    }
    let info = match admin(state)?.activation(secret).await {
        Ok(info) => info,
        Err(CatalogError::NotFound { .. }) => return unknown(),
        Err(e) => return Err(e.into()),
    };
    crate::auth::admit(parts, state, &principal_of(&info.recipient)?)?;
    if info.state != ActivationState::Ready {
        return Ok(Err(spent(state, &info)));
    }
    Ok(Ok(info))
}

fn contact(state: &AppState) -> String {
    state.settings.provider_contact.as_deref().map_or_else(
        || "the data provider who sent you this link".to_owned(),
        |c| format!("the data provider ({})", escape(c)),
    )
}

fn kind_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::BearerToken => "bearer token",
        CredentialKind::OauthClientCredentials => "OAuth client credentials (short-lived access tokens)",
        CredentialKind::OauthPrivateKeyJwt => "OAuth client with your own key",
    }
}

/// The page for a link that cannot be redeemed.
fn spent(state: &AppState, info: &ActivationInfo) -> Response {
    let ask = contact(state);
    let (title, text) = match info.state {
        ActivationState::Used => (
            "This activation link has already been used",
            format!(
                "<p class=\"status\">The credential file was downloaded on {}.</p>\
                 <p>A link works only once, so that nobody else can download the same credential. \
                 If you did not download it, or have lost the file, ask {ask} for a new link.</p>",
                info.used_at.map_or_else(|| "an earlier visit".to_owned(), when)
            ),
        ),
        ActivationState::Expired => (
            "This activation link has expired",
            format!(
                "<p class=\"status\">It could be used until {}.</p><p>Ask {ask} for a new link.</p>",
                when(info.expires_at)
            ),
        ),
        ActivationState::Withdrawn | ActivationState::Ready => (
            "This activation link is no longer valid",
            format!("<p>The provider replaced it with a newer link or withdrew the access. Ask {ask}.</p>"),
        ),
    };
    render(StatusCode::GONE, title, &text)
}

/// `GET {endpoint}/activate/{secret}`
#[utoipa::path(
    get,
    path = "/activate/{secret}",
    tag = "recipient",
    operation_id = "showActivation",
    summary = "The activation page of a one-time link",
    description = "An HTML page naming the recipient, its shares and the credential the link hands out, \
                   with a button that downloads `config.share`. A used, expired or withdrawn link gets a page \
                   that says so (410).",
    params(("secret" = String, Path, description = "The link's secret (its last path segment)")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 410, description = "The link was used, expired or withdrawn", content_type = "text/html", body = String),
        Errors
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    parts: Parts,
    Path(secret): Path<String>,
) -> Result<Response, ApiError> {
    let info = match ready(&state, &parts, &secret).await? {
        Ok(info) => info,
        Err(page) => return Ok(page),
    };
    let r = &info.recipient;
    let shares = if r.shares.is_empty() {
        "<dd>none yet (the provider can grant shares later; the same file will reach them)</dd>".to_owned()
    } else {
        r.shares.iter().map(|s| format!("<dd>{}</dd>", escape(s))).collect::<Vec<_>>().join("")
    };
    let endpoint = crate::routes::public_endpoint(&state, &parts.headers)?;
    let body = format!(
        "<p>You have been given read access to data shared over Delta Sharing. Download your credential \
         file and open it with any Delta Sharing client (pandas, Spark, Power BI, the d2o CLI).</p>\
         <dl><dt>Recipient</dt><dd>{name}</dd><dt>Shares</dt>{shares}<dt>Endpoint</dt><dd>{endpoint}</dd>\
         <dt>Credential</dt><dd>{kind}</dd><dt>Access ends</dt><dd>{ends}</dd></dl>\
         <form method=\"post\"><button id=\"download\" type=\"submit\">Download config.share</button></form>\
         <p class=\"note\">This link works once and until {until}. Keep the file secret: whoever holds it \
         can read the data shared with you. Questions? Ask {ask}.</p>",
        name = escape(&r.name),
        endpoint = escape(&endpoint),
        kind = kind_name(info.kind),
        ends = r.expires_at.map_or_else(|| "when the provider ends it".to_owned(), when),
        until = when(info.expires_at),
        ask = contact(&state),
    );
    Ok(render(StatusCode::OK, "Your Delta Sharing access", &body))
}

/// `POST {endpoint}/activate/{secret}`: the download.
#[utoipa::path(
    post,
    path = "/activate/{secret}",
    tag = "recipient",
    operation_id = "redeemActivation",
    summary = "Redeem a one-time link: create the credential and download `config.share`",
    params(("secret" = String, Path, description = "The link's secret (its last path segment)")),
    responses(
        (status = 200, description = "The profile file (`config.share`), as an attachment", content_type = "application/json", body = Object),
        (status = 410, description = "The link was used, expired or withdrawn", content_type = "text/html", body = String),
        Errors
    )
)]
pub(crate) async fn redeem(
    State(state): State<AppState>,
    parts: Parts,
    Path(secret): Path<String>,
) -> Result<Response, ApiError> {
    if let Err(page) = ready(&state, &parts, &secret).await? {
        return Ok(page);
    }
    let endpoint = crate::routes::public_endpoint(&state, &parts.headers)?;
    let (info, issued) = match admin(&state)?.redeem_activation(&secret).await {
        Ok(done) => done,
        // Another request redeemed it first.
        Err(CatalogError::InvalidArgument(_)) => {
            let info = admin(&state)?.activation(&secret).await?;
            return Ok(spent(&state, &info));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(recipient = %info.recipient.name, kind = issued.kind.as_str(), "activation link redeemed");
    let profile = issued.profile(&endpoint).ok_or_else(|| ApiError::internal("a link issued a key client"))?;
    let mut response = (StatusCode::OK, format!("{}\n", profile.to_json())).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"config.share\""));
    page::no_store(h);
    Ok(response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plausible_secrets_are_looked_up() {
        assert!(super::plausible("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"));
        for bad in
            ["", "short", "has space in it and is long enough", "../../etc/passwd/and/more/text", &"a".repeat(200)]
        {
            assert!(!super::plausible(bad), "{bad}");
        }
    }
}
