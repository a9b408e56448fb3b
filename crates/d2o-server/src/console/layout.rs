//! The console's page frame: the header and navigation, flash messages, the headers every
//! page carries (a strict Content-Security-Policy among them) and the embedded assets.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::{Flash, Session, flash_shown};

/// Scripts and styles only from the console's own assets; no inline script or style, no
/// frames, forms posting only back here.
const POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) const CSS: &str = include_str!("assets/console.css");
pub(super) const JS: &str = include_str!("assets/console.js");

/// The section a page belongs to, highlighted in the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Shares,
    Recipients,
    Audit,
}

impl Section {
    const ALL: [(Section, &'static str, &'static str); 4] = [
        (Section::Overview, "Overview", "/console"),
        (Section::Shares, "Shares", "/console/shares"),
        (Section::Recipients, "Recipients", "/console/recipients"),
        (Section::Audit, "Audit log", "/console/audit"),
    ];
}

/// The headers of every console answer: HTML, never cached, no referrer to other sites, not
/// framed.
pub(super) fn headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the console's own posts,
    // and the origin check needs the real one. Console URLs hold no secrets.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · d2o console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body { (body) }
        }
    }
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    headers(response.headers_mut());
    response
}

/// A page of a logged-in session: navigation, the flash message if any, then `content`.
pub(super) fn page(session: &Session, section: Section, title: &str, content: Markup) -> Response {
    page_with(session, section, title, StatusCode::OK, content)
}

/// [`page`] with another status (a form's errors, a missing object).
pub(super) fn page_with(
    session: &Session,
    section: Section,
    title: &str,
    status: StatusCode,
    content: Markup,
) -> Response {
    let body = html! {
        header.top {
            a.brand href="/console" { "d2o" span { "console" } }
            nav {
                @for (s, label, href) in Section::ALL {
                    a href=(href) aria-current=[(s == section).then_some("page")] { (label) }
                }
            }
            form.logout method="post" action="/console/logout" {
                (csrf(session))
                button.link type="submit" { "Log out" }
            }
        }
        main {
            @if let Some(flash) = &session.flash { (flash_box(flash)) }
            h1 { (title) }
            (content)
        }
    };
    let mut response = respond(status, document(title, body));
    if session.flash.is_some() {
        flash_shown(&mut response);
    }
    response
}

/// A page outside a session (the login page).
pub(super) fn bare(status: StatusCode, title: &str, content: Markup) -> Response {
    let body = html! {
        main.narrow {
            p.brand { "d2o" span { "console" } }
            h1 { (title) }
            (content)
        }
    };
    respond(status, document(title, body))
}

pub(super) fn flash_box(flash: &Flash) -> Markup {
    html! {
        p.flash.ok[flash.ok].error[!flash.ok] role=(if flash.ok { "status" } else { "alert" }) { (flash.text) }
    }
}

/// The hidden CSRF field every form carries.
pub(super) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}

/// A one-button form that posts to `action`, asking first when `confirm` is given.
pub(super) fn button(session: &Session, action: &str, label: &str, class: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(session))
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A time (ms since the epoch) as people read it, in UTC.
pub(super) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// An optional time, `never` when absent.
pub(super) fn when_or(ms: Option<i64>, absent: &str) -> String {
    ms.map_or_else(|| absent.to_owned(), when)
}

/// A byte count with a binary unit.
pub(super) fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// What a name keeps unencoded in a path segment: letters, digits, `-`, `_` and `~`. (`.`
/// is encoded, so that names such as `..` do not become relative paths.)
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// A path segment for a name: percent-encoded, so that any catalog name makes a valid link.
pub(super) fn seg(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_nothing_inline() {
        assert!(!POLICY.contains("unsafe"));
        assert!(POLICY.starts_with("default-src 'none'"));
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn names_become_safe_segments() {
        assert_eq!(seg("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(seg("partner_co-1"), "partner_co-1");
        assert_eq!(seg(".."), "%2E%2E");
    }
}
