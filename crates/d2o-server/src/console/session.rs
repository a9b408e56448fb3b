//! The console's session: a cookie sealed with the server's signing key, the CSRF token bound
//! to it, and the checks every console request passes.
//!
//! Logging in with the admin token sets `d2o_console`, `Secure; HttpOnly; SameSite=Strict`,
//! for 12 hours. The cookie holds a random session id, its expiry and a fingerprint of the
//! admin token (an HMAC under the signing key, not the token): replicas that share
//! `urlSigningKey` accept each other's sessions, and changing the admin token ends every
//! session. Each form carries a CSRF token, the HMAC of the session id, and every `POST` must
//! also come from the console's own origin (`Origin`, `Sec-Fetch-Site`).

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::admin::{AdminContext, AuditedAdmin};
use crate::{ApiError, AppState};

pub(super) const COOKIE: &str = "d2o_console";
const FLASH_COOKIE: &str = "d2o_console_flash";
const SEAL_PURPOSE: &str = "console-session";
const FLASH_PURPOSE: &str = "console-flash";
/// How long a login lasts.
pub(super) const SESSION_MS: i64 = 12 * 3600 * 1000;

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The session id: 128 random bits, hex.
    sid: String,
    /// Expiry, ms since the epoch.
    exp: i64,
    /// Which admin token logged in (an HMAC of it).
    adm: String,
}

/// A logged-in console user: the admin.
pub(super) struct Session {
    csrf: String,
    /// What the page was asked to show once (set by the action that redirected here).
    pub(super) flash: Option<Flash>,
    /// The admin's actions, recorded in the audit log as the API's are.
    pub(super) admin: AuditedAdmin,
}

/// A one-time message for the next page, after an action.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Flash {
    pub(super) ok: bool,
    pub(super) text: String,
}

impl Flash {
    pub(super) fn ok(text: impl Into<String>) -> Flash {
        Flash { ok: true, text: text.into() }
    }

    pub(super) fn error(text: impl Into<String>) -> Flash {
        Flash { ok: false, text: text.into() }
    }
}

impl Session {
    /// The token every form of this session carries.
    pub(super) fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn admin_fingerprint(state: &AppState, token: &crate::Secret) -> String {
    hex(&state.key.sign("console-admin", &[token.expose().as_bytes()])[..12])
}

fn csrf_of(state: &AppState, sid: &str) -> String {
    URL_SAFE_NO_PAD.encode(&state.key.sign("console-csrf", &[sid.as_bytes()])[..18])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The value of cookie `name` in the request, if sent once (a repeated cookie is ignored:
/// a sibling site could have planted one of them).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn set_cookie(name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let cookie = format!("{name}={value}; Path=/console; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("d2o_console=; Max-Age=0"))
}

/// The `Set-Cookie` of a new session for the admin token `token`.
pub(super) fn login_cookie(state: &AppState, token: &crate::Secret) -> HeaderValue {
    let sid: [u8; 16] = rand::random();
    let claims = Claims { sid: hex(&sid), exp: now_ms() + SESSION_MS, adm: admin_fingerprint(state, token) };
    set_cookie(COOKIE, &state.key.seal(SEAL_PURPOSE, &claims), SESSION_MS / 1000)
}

/// The `Set-Cookie` that ends a session.
pub(super) fn logout_cookie() -> HeaderValue {
    set_cookie(COOKIE, "", 0)
}

/// A response that also sets the flash message the next page shows.
pub(super) fn with_flash(state: &AppState, mut response: Response, flash: &Flash) -> Response {
    let value = set_cookie(FLASH_COOKIE, &state.key.seal(FLASH_PURPOSE, flash), 60);
    response.headers_mut().append(header::SET_COOKIE, value);
    response
}

/// Redirects to `to` (a console path) with a message.
pub(super) fn redirect(state: &AppState, to: &str, flash: Flash) -> Response {
    with_flash(state, Redirect::to(to).into_response(), &flash)
}

/// Clears the flash cookie on a page that showed it.
pub(super) fn flash_shown(response: &mut Response) {
    response.headers_mut().append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, "", 0));
}

/// What a console request needs first: the admin API enabled (a catalog and an admin token).
pub(super) fn enabled(state: &AppState) -> Result<(&std::sync::Arc<dyn d2o_catalog::Admin>, &crate::Secret), ApiError> {
    match (&state.admin, &state.settings.admin_token) {
        (Some(admin), Some(token)) => Ok((admin, token)),
        _ => Err(ApiError::NotFound("the console needs a catalog and an admin token (serve --catalog)".into())),
    }
}

/// The session of a request, if its cookie is valid, current and made for the current admin
/// token.
fn session_of(parts: &Parts, state: &AppState) -> Result<Option<Session>, ApiError> {
    let (admin, token) = enabled(state)?;
    let Some(claims) = cookie(&parts.headers, COOKIE).and_then(|v| state.key.open::<Claims>(SEAL_PURPOSE, v)) else {
        return Ok(None);
    };
    let fingerprint = admin_fingerprint(state, token);
    if claims.exp <= now_ms() || !bool::from(claims.adm.as_bytes().ct_eq(fingerprint.as_bytes())) {
        return Ok(None);
    }
    let flash = cookie(&parts.headers, FLASH_COOKIE).and_then(|v| state.key.open::<Flash>(FLASH_PURPOSE, v));
    let context = AdminContext::of(parts, "admin");
    Ok(Some(Session { csrf: csrf_of(state, &claims.sid), flash, admin: AuditedAdmin::new(admin.clone(), context) }))
}

/// Refuses a state-changing request that a browser says came from another site. Browsers
/// send `Origin` with every `POST` and `Sec-Fetch-Site` with every request; a client that
/// sends neither still needs the session cookie and the CSRF token.
pub(super) fn same_origin(parts: &Parts, state: &AppState) -> Result<(), ApiError> {
    let refused = |why: &str| Err(ApiError::Forbidden(format!("cross-site request refused: {why}")));
    if let Some(site) = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return refused("Sec-Fetch-Site is not same-origin");
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let own = crate::routes::public_origin(state, &parts.headers)?;
        let own = url::Url::parse(&own).map(|u| u.origin().ascii_serialization()).unwrap_or(own);
        if origin.as_bytes() != own.as_bytes() {
            return refused("the Origin is not this console's");
        }
    }
    Ok(())
}

/// A page request: the session, or a redirect to the login page.
pub(super) struct Page(pub(super) Session);

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match session_of(parts, state) {
            Ok(Some(session)) => Ok(Page(session)),
            Ok(None) => Err(Redirect::to("/console/login").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A form post with a valid session, from the console's own origin, carrying the session's
/// CSRF token; its fields (URL-encoded, the last of repeated names wins).
pub(super) struct Action {
    pub(super) session: Session,
    pub(super) fields: Fields,
}

/// A form's fields.
pub(super) struct Fields(BTreeMap<String, String>);

impl Fields {
    /// A field, trimmed; `None` when missing or blank.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A field that must be given.
    pub(super) fn required(&self, name: &str, what: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{what} is required"))
    }

    /// Whether a checkbox was ticked.
    pub(super) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(super) fn parse(body: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(body).into_owned().collect())
    }
}

/// The form of a request: URL-encoded, within the body limit.
async fn form(request: Request, state: &AppState) -> Result<(Parts, Fields), ApiError> {
    let (parts, body) = request.into_parts();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim() == "application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ApiError::InvalidParameter(
            "the console takes form posts (application/x-www-form-urlencoded)".into(),
        ));
    }
    let bytes = axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
        .await
        .map_err(|e| ApiError::InvalidParameter(format!("unreadable form: {}", e.body_text())))?;
    Ok((parts, Fields::parse(&bytes)))
}

impl FromRequest<AppState> for Action {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let checked = async {
            let (parts, fields) = form(request, state).await?;
            same_origin(&parts, state)?;
            let session = session_of(&parts, state)?
                .ok_or_else(|| ApiError::Unauthenticated("log in to the console first".into()))?;
            let given = fields.get("csrf").unwrap_or_default();
            if !bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes())) {
                return Err(ApiError::Forbidden("the form's CSRF token is missing or wrong; reload the page".into()));
            }
            Ok(Action { session, fields })
        };
        checked.await.map_err(|e: ApiError| e.into_response())
    }
}

/// The login form: checked for origin, not for a session.
pub(super) struct LoginForm {
    pub(super) parts: Parts,
    pub(super) fields: Fields,
}

impl FromRequest<AppState> for LoginForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let checked = async {
            enabled(state)?;
            let (parts, fields) = form(request, state).await?;
            same_origin(&parts, state)?;
            Ok(LoginForm { parts, fields })
        };
        checked.await.map_err(|e: ApiError| e.into_response())
    }
}

/// Whether `given` is the admin token (compared in constant time).
pub(super) fn is_admin_token(given: &str, expected: &crate::Secret) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_cookie_is_ignored() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; d2o_console=x"));
        assert_eq!(cookie(&h, COOKIE), Some("x"));
        h.append(header::COOKIE, HeaderValue::from_static("d2o_console=y"));
        assert_eq!(cookie(&h, COOKIE), None);
    }

    #[test]
    fn cookies_are_secure_http_only_and_strict() {
        let c = set_cookie(COOKIE, "v", 10);
        let c = c.to_str().expect("ascii");
        for part in ["Path=/console", "HttpOnly", "Secure", "SameSite=Strict", "Max-Age=10"] {
            assert!(c.contains(part), "{c}");
        }
    }
}
