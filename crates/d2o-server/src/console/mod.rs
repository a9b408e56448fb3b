//! The web console under `/console`: the provider's day-to-day administration in a browser,
//! served when the admin API is (a catalog and an admin token).
//!
//! Pages are rendered on the server with `maud`, which escapes every value it is given; the
//! stylesheet and a small script (confirmations, copy buttons; every page works without it)
//! are embedded in the binary. Charts are inline SVG (`charts`).
//!
//! - `session`: login, the session cookie, CSRF tokens, the origin check; the extractors
//!   [`session::Page`] (a page: redirects to the login page without a session) and
//!   [`session::Action`] (a form post: session, origin and CSRF token checked).
//! - `layout`: the page frame and its headers (a strict Content-Security-Policy).
//! - `overview`, `shares`, `recipients`, `audit`: the pages and their actions.
//!
//! Actions go through [`crate::AuditedAdmin`] as the admin API's do, so each is in the audit
//! log (principal `admin`, with the browser's address and user agent); logins and failed
//! logins are recorded as `admin.console.login`. Reading pages is not recorded.
//! Actions answer with a redirect to a page (post/redirect/get) that shows the outcome
//! once; the pages that show a new secret (an activation link, a token) are the answer to
//! the post itself, so that the secret is never in a URL or a cookie.

mod audit;
mod charts;
mod layout;
mod overview;
mod recipients;
mod session;
mod shares;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;

use self::layout::bare;
use self::session::{LoginForm, is_admin_token};
use crate::admin::{AdminContext, record_access};
use crate::{ApiError, AppState};

/// The audit action of console logins, refused or not.
const LOGIN: &str = "admin.console.login";

/// The console's routes, to be nested under `/console`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::show))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(|| async { asset("text/css; charset=utf-8", layout::CSS) }))
        .route("/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", layout::JS) }))
        .route("/shares", get(shares::list).post(shares::create))
        .route("/shares/{share}", get(shares::show))
        .route("/shares/{share}/drop", post(shares::drop))
        .route("/shares/{share}/tables", post(shares::add_table))
        .route("/shares/{share}/tables/remove", post(shares::remove_table))
        .route("/grants", post(shares::grant))
        .route("/grants/revoke", post(shares::revoke_grant))
        .route("/recipients", get(recipients::list).post(recipients::create))
        .route("/recipients/{recipient}", get(recipients::show))
        .route("/recipients/{recipient}/rotate", post(recipients::rotate))
        .route("/recipients/{recipient}/link", post(recipients::new_link))
        .route("/recipients/{recipient}/revoke", post(recipients::revoke))
        .route("/recipients/{recipient}/drop", post(recipients::drop))
        .route("/recipients/{recipient}/properties", post(recipients::set_properties))
        .route("/recipients/{recipient}/ip-access", post(recipients::set_ip_access))
        .route("/recipients/{recipient}/rate-limit", post(recipients::set_rate_limit))
        .route("/audit", get(audit::show))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn login_form(error: Option<&str>) -> maud::Markup {
    html! {
        @if let Some(error) = error { p.flash.error role="alert" { (error) } }
        form.stack method="post" action="/console/login" {
            label { "Admin token"
                input type="password" name="token" autocomplete="current-password" required autofocus;
            }
            button type="submit" { "Log in" }
        }
        p.muted { "The token given to " code { "d2o serve" } " with " code { "--admin-token-file" } " or "
            code { "D2O_ADMIN_TOKEN" } ". The session lasts 12 hours." }
    }
}

async fn login_page(axum::extract::State(state): axum::extract::State<AppState>) -> Result<Response, ApiError> {
    session::enabled(&state)?;
    Ok(bare(StatusCode::OK, "Log in", login_form(None)))
}

async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    form: LoginForm,
) -> Result<Response, ApiError> {
    let (_, expected) = session::enabled(&state)?;
    let given = form.fields.get("token").unwrap_or_default();
    if !is_admin_token(given, expected) {
        let context = AdminContext::of(&form.parts, "anonymous");
        record_access(&state, &context, LOGIN, StatusCode::UNAUTHORIZED).await?;
        return Ok(bare(StatusCode::UNAUTHORIZED, "Log in", login_form(Some("That is not the admin token."))));
    }
    record_access(&state, &AdminContext::of(&form.parts, "admin"), LOGIN, StatusCode::OK).await?;
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().append(header::SET_COOKIE, session::login_cookie(&state, expected));
    Ok(response)
}

async fn logout(_action: session::Action) -> Response {
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, session::logout_cookie());
    response
}

/// A catalog error as the text a page shows.
fn message(e: impl Into<ApiError>) -> String {
    e.into().public_message()
}
