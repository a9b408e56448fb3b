//! Recipients: the list with each one's state, one recipient's credentials, link, grants,
//! network and rate settings and usage, and their actions (create, rotate, new link, revoke,
//! drop, IP access list, rate limit). A new activation link is shown once, as the answer to
//! the post that made it.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use d2o_catalog::{
    ActivationRequest, ActivationState, Admin, CredentialKind, CredentialRequest, Issued, IssuedActivation,
    NewRecipient, RateLimit, RecipientInfo, UsageBy, UsageQuery,
};
use maud::{Markup, html};

use super::charts::{Metric, Window, stacked_bars};
use super::layout::{Section, button, csrf, page, page_with, seg, when, when_or};
use super::message;
use super::session::{Action, Fields, Flash, Page, Session, redirect};
use super::shares::grant_button;
use crate::AppState;

fn recipient_path(name: &str) -> String {
    format!("/console/recipients/{}", seg(name))
}

/// How a recipient stands, as a badge: its class and text.
fn standing(r: &RecipientInfo, now: i64) -> (&'static str, &'static str) {
    if r.expires_at.is_some_and(|e| e <= now) {
        return ("bad", "expired");
    }
    let live_tokens =
        r.tokens.iter().filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now)).count();
    let live_policies = r.federation_policies.iter().filter(|p| p.revoked_at.is_none()).count();
    if live_tokens + live_policies > 0 {
        return ("good", "active");
    }
    match &r.activation {
        Some(a) if a.state == ActivationState::Ready && a.expires_at > now => ("warn", "awaiting activation"),
        _ if r.tokens.is_empty() && r.federation_policies.is_empty() => ("", "no credential"),
        _ => ("bad", "revoked"),
    }
}

fn badge((class, text): (&str, &str)) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

fn link_state(state: ActivationState) -> &'static str {
    match state {
        ActivationState::Ready => "ready",
        ActivationState::Used => "used",
        ActivationState::Expired => "expired",
        ActivationState::Withdrawn => "withdrawn",
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) async fn list(Page(session): Page) -> Response {
    let recipients = match session.admin.inner().list_recipients().await {
        Ok(r) => r,
        Err(e) => {
            let content = html! { p.flash.error { (message(e)) } };
            return page_with(&session, Section::Recipients, "Recipients", StatusCode::INTERNAL_SERVER_ERROR, content);
        }
    };
    let now = now_ms();
    let content = html! {
        section.card {
            @if recipients.is_empty() {
                p.empty { "No recipients yet. Create one below: it gets a one-time activation link." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Recipient" } th { "State" } th { "Shares" } th { "Activation link" } th { "Access ends" } th { "Created" } } }
                    tbody {
                        @for r in &recipients {
                            tr {
                                td { a href=(recipient_path(&r.name)) { (r.name) }
                                    @if let Some(c) = &r.comment { br; span.muted { (c) } } }
                                td { (badge(standing(r, now))) }
                                td { (r.shares.join(", ")) }
                                td { @if let Some(a) = &r.activation { (link_state(a.state)) } @else { span.muted { "-" } } }
                                td { (when_or(r.expires_at, "never")) }
                                td { (when(r.created_at)) }
                            }
                        }
                    }
                } }
            }
        }
        section.card {
            h2 { "New recipient" }
            form.stack method="post" action="/console/recipients" {
                (csrf(&session))
                div.grid {
                    label { "Name" input name="name" required maxlength="255" placeholder="partner_co"; }
                    label { "Comment" input name="comment" maxlength="1000"; }
                    label { "Credential"
                        select name="credential" {
                            option value="bearer_token" selected { "Activation link: bearer token" }
                            option value="oauth_client_credentials" { "Activation link: OAuth client credentials" }
                            option value="none" { "None (OIDC federation only)" }
                        }
                    }
                    label { "Link valid for (hours, at most 720)" input name="link_hours" type="number" min="1" max="720" value="72"; }
                    label { "Access ends after (days, empty for never)" input name="expires_days" type="number" min="1"; }
                }
                label { "Properties (one key=value per line, for partition filters)" textarea name="properties" {} }
                div { button type="submit" { "Create recipient" } }
            }
        }
    };
    page(&session, Section::Recipients, "Recipients", content)
}

fn kind_of(fields: &Fields) -> Result<CredentialKind, String> {
    match fields.get("credential").unwrap_or("bearer_token") {
        "bearer_token" => Ok(CredentialKind::BearerToken),
        "oauth_client_credentials" => Ok(CredentialKind::OauthClientCredentials),
        other => Err(format!("'{other}' is not a credential an activation link can hand out")),
    }
}

fn link_request(fields: &Fields) -> Result<ActivationRequest, String> {
    let hours: u64 = match fields.get("link_hours") {
        None => 72,
        Some(h) => h.parse().map_err(|_| format!("'{h}' is not a number of hours"))?,
    };
    if !(1..=720).contains(&hours) {
        return Err("a link lives between 1 and 720 hours".into());
    }
    Ok(ActivationRequest { kind: kind_of(fields)?, lifetime_secs: hours * 3600 })
}

fn new_recipient(fields: &Fields) -> Result<NewRecipient, String> {
    let name = fields.required("name", "A recipient name")?.to_owned();
    let expires_at = match fields.get("expires_days") {
        None => None,
        Some(d) => {
            let days: i64 = d
                .parse()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| format!("'{d}' is not a number of days"))?;
            Some(now_ms() + days * 86_400_000)
        }
    };
    let properties = properties_of(fields)?;
    let credential = match fields.get("credential") {
        Some("none") => CredentialRequest::None,
        _ => CredentialRequest::Activation(link_request(fields)?),
    };
    Ok(NewRecipient { name, comment: fields.get("comment").map(str::to_owned), properties, expires_at, credential })
}

/// The properties of a form's `properties` field: one `key=value` per line.
fn properties_of(fields: &Fields) -> Result<BTreeMap<String, String>, String> {
    match fields.get("properties") {
        None => Ok(BTreeMap::new()),
        Some(text) => {
            d2o_catalog::admin::parse_properties(text.lines().map(str::trim).filter(|l| !l.is_empty())).map_err(message)
        }
    }
}

fn properties_text(properties: &BTreeMap<String, String>) -> String {
    properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n")
}

/// The page that shows a new activation link, once.
fn link_page(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    what: &str,
    link: &IssuedActivation,
) -> Response {
    let url = crate::routes::public_endpoint(state, headers)
        .map(|endpoint| crate::admin::activation_url(&endpoint, &link.secret));
    let content = match url {
        Ok(url) => html! {
            p.flash.ok role="status" { (what) }
            section.card {
                h2 { "Activation link for " (link.recipient) }
                p { "Send this link to the recipient. It works once, until " (when(link.expires_at))
                    ", and hands out a " code { (link.kind.as_str()) } " credential as " code { "config.share" } "." }
                div.secret { code id="link" { (url) } button.secondary.small type="button" data-copy="link" { "Copy" } }
                p.muted { "This is the only time the link is shown: d2o keeps only its hash. If it is lost, issue a new one from the recipient's page." }
                p { a href=(recipient_path(&link.recipient)) { "Go to " (link.recipient) } }
            }
        },
        Err(e) => html! { p.flash.error { (e.public_message()) } },
    };
    page(session, Section::Recipients, "Activation link", content)
}

/// The answer to an action that issued something: the link page, or a redirect that says what
/// happened.
fn issued_page(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    name: &str,
    what: &str,
    issued: Issued,
) -> Response {
    match issued {
        Issued::Activation(link) => link_page(state, headers, session, what, &link),
        // The console only asks for links or nothing; a token would be shown here once.
        Issued::Token(token) => {
            let content = html! {
                p.flash.ok role="status" { (what) }
                section.card {
                    h2 { "Credential for " (token.recipient) }
                    div.secret { code id="token" { (token.token) } button.secondary.small type="button" data-copy="token" { "Copy" } }
                    p.muted { "This is the only time it is shown." }
                }
            };
            page(session, Section::Recipients, "New credential", content)
        }
        Issued::None => redirect(state, &recipient_path(name), Flash::ok(what)),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Action { session, fields }: Action,
) -> Response {
    let recipient = match new_recipient(&fields) {
        Ok(r) => r,
        Err(e) => return redirect(&state, "/console/recipients", Flash::error(e)),
    };
    match session.admin.create_recipient(recipient).await {
        Ok((r, issued)) => {
            let what = format!("Recipient {} created. Grant it shares on its page.", r.name);
            issued_page(&state, &headers, &session, &r.name, &what, issued)
        }
        Err(e) => redirect(&state, "/console/recipients", Flash::error(message(e))),
    }
}

pub(super) async fn show(Path(name): Path<String>, Page(session): Page) -> Response {
    let admin = session.admin.inner();
    let r = match admin.show_recipient(&name).await {
        Ok(r) => r,
        Err(e) => {
            let status = crate::ApiError::from(e.clone()).status();
            let content = html! { p.flash.error { (message(e)) } };
            return page_with(&session, Section::Recipients, &name, status, content);
        }
    };
    let shares = admin.list_shares().await.unwrap_or_default();
    let window = Window::of(None, now_ms());
    let query = UsageQuery {
        by: UsageBy::Table,
        since_ms: window.since_ms,
        until_ms: window.until_ms,
        bucket_ms: window.bucket_ms,
        principal: Some(r.name.clone()),
        share: None,
    };
    let usage = admin.usage(&query).await.unwrap_or_default();
    let path = recipient_path(&r.name);
    let now = now_ms();
    let content = html! {
        p { (badge(standing(&r, now))) @if let Some(c) = &r.comment { " " span.muted { (c) } } }
        div.grid {
            section.card {
                h2 { "Details" }
                dl.facts {
                    dt { "Created" } dd { (when(r.created_at)) }
                    dt { "Access ends" } dd { (when_or(r.expires_at, "never")) }
                    dt { "Activation link" } dd {
                        @match &r.activation {
                            Some(a) => { (link_state(a.state)) " (" code { (a.kind.as_str()) } "), "
                                @if let Some(used) = a.used_at { "used " (when(used)) } @else { "until " (when(a.expires_at)) } },
                            None => span.muted { "none" },
                        }
                    }
                }
            }
            section.card {
                h2 { "Shares" }
                @if r.shares.is_empty() { p.muted { "No shares granted." } }
                ul { @for s in &r.shares { li {
                    a href={ "/console/shares/" (seg(s)) } { (s) } " "
                    (grant_button(&session, "/console/grants/revoke", s, &r.name, "recipient", "Revoke", "danger small"))
                } } }
                @let others: Vec<&str> = shares.iter().map(|s| s.name.as_str()).filter(|s| !r.shares.iter().any(|g| g.eq_ignore_ascii_case(s))).collect();
                @if !others.is_empty() {
                    form.row method="post" action="/console/grants" {
                        (csrf(&session))
                        input type="hidden" name="recipient" value=(r.name);
                        input type="hidden" name="back" value="recipient";
                        label { "Grant share" select name="share" { @for s in &others { option value=(s) { (s) } } } }
                        button type="submit" { "Grant" }
                    }
                }
            }
        }
        section.card {
            h2 { "Credentials" }
            @if r.tokens.is_empty() && r.federation_policies.is_empty() { p.muted { "None yet." } }
            @if !r.tokens.is_empty() {
                div.scroll { table {
                    thead { tr { th { "Id" } th { "Kind" } th { "Created" } th { "Expires" } th { "State" } } }
                    tbody { @for t in &r.tokens { tr {
                        td.mono.nowrap { (t.id) }
                        td { code { (t.kind.as_str()) } }
                        td { (when(t.created_at)) }
                        td { (when_or(t.expires_at, "with the recipient")) }
                        td {
                            @if let Some(at) = t.revoked_at { span.badge.bad { "revoked" } " " (when(at)) }
                            @else if t.expires_at.is_some_and(|e| e <= now) { span.badge.bad { "expired" } }
                            @else { span.badge.good { "active" } }
                        }
                    } } }
                } }
            }
            @if !r.federation_policies.is_empty() {
                h2 { "Federation policies" }
                div.scroll { table {
                    thead { tr { th { "Issuer" } th { "Audiences" } th { "Claim" } th { "State" } } }
                    tbody { @for p in &r.federation_policies { tr {
                        td.mono { (p.issuer) }
                        td { (p.audiences.join(", ")) }
                        td { code { (p.subject_claim.as_str()) "=" (p.subject) } }
                        td { @if p.revoked_at.is_some() { span.badge.bad { "revoked" } } @else { span.badge.good { "active" } } }
                    } } }
                } }
            }
            div.actions {
                form.row method="post" action={ (path) "/rotate" } data-confirm="Rotate? The current credentials end after the grace period." {
                    (csrf(&session))
                    label { "Grace (seconds)" input name="grace_seconds" type="number" min="0" value="0"; }
                    (kind_select())
                    button.secondary type="submit" { "Rotate: new link" }
                }
                form.row method="post" action={ (path) "/link" } {
                    (csrf(&session))
                    (kind_select())
                    button.secondary type="submit" { "New activation link" }
                }
            }
        }
        div.grid {
            section.card {
                h2 { "Properties" }
                form.stack method="post" action={ (path) "/properties" } {
                    (csrf(&session))
                    label { "One key=value per line (partition filters compare with them)"
                        textarea name="properties" { (properties_text(&r.properties)) } }
                    div { button.secondary type="submit" { "Save properties" } }
                }
            }
            section.card {
                h2 { "IP access list" }
                form.stack method="post" action={ (path) "/ip-access" } {
                    (csrf(&session))
                    label { "Networks (one CIDR per line; empty allows any address)"
                        textarea name="networks" { (r.ip_access_list.as_deref().unwrap_or_default().join("\n")) } }
                    div { button.secondary type="submit" { "Save IP access list" } }
                }
            }
            section.card {
                h2 { "Rate limit" }
                form.stack method="post" action={ (path) "/rate-limit" } {
                    (csrf(&session))
                    label { "Rate (such as 600/min; empty for the server's default)"
                        input name="rate" value=[r.rate_limit.map(|l| l.rate.to_string())]; }
                    label { "Burst (optional)" input name="burst" type="number" min="1" value=[r.rate_limit.map(|l| l.burst)]; }
                    div { button.secondary type="submit" { "Save rate limit" } }
                }
            }
        }
        section.card {
            h2 { "Reads by " (r.name) ", last 24 hours" }
            (stacked_bars(&usage, window, Metric::Requests, "table"))
        }
        section.card {
            h2 { "End access" }
            div.actions {
                (button(&session, &format!("{path}/revoke"), "Revoke all credentials", "danger",
                    Some(&format!("Revoke every credential and link of {}? Its reads fail from the next request.", r.name))))
                (button(&session, &format!("{path}/drop"), "Drop recipient", "danger",
                    Some(&format!("Drop {} with its credentials and grants?", r.name))))
            }
        }
    };
    page(&session, Section::Recipients, &format!("Recipient {}", r.name), content)
}

fn kind_select() -> Markup {
    html! {
        label { "Credential"
            select name="credential" {
                option value="bearer_token" { "bearer token" }
                option value="oauth_client_credentials" { "OAuth client credentials" }
            }
        }
    }
}

pub(super) async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let grace = match fields.get("grace_seconds").map(str::parse::<u64>).transpose() {
        Ok(g) => g.unwrap_or(0),
        Err(_) => {
            return redirect(&state, &recipient_path(&name), Flash::error("The grace period is a number of seconds."));
        }
    };
    let request = match link_request(&fields) {
        Ok(r) => r,
        Err(e) => return redirect(&state, &recipient_path(&name), Flash::error(e)),
    };
    match session.admin.rotate_credential(&name, grace, CredentialRequest::Activation(request)).await {
        Ok(issued) => {
            let what =
                format!("Rotated: {name}'s credentials end within {grace} s; the new link hands out the next one.");
            issued_page(&state, &headers, &session, &name, &what, issued)
        }
        Err(e) => redirect(&state, &recipient_path(&name), Flash::error(message(e))),
    }
}

pub(super) async fn new_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let request = match link_request(&fields) {
        Ok(r) => r,
        Err(e) => return redirect(&state, &recipient_path(&name), Flash::error(e)),
    };
    match session.admin.issue_activation(&name, request).await {
        Ok(link) => link_page(&state, &headers, &session, "A new activation link; older links no longer work.", &link),
        Err(e) => redirect(&state, &recipient_path(&name), Flash::error(message(e))),
    }
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Action { session, .. }: Action,
) -> Response {
    let flash = match session.admin.revoke_recipient(&name).await {
        Ok(_) => Flash::ok(format!("Every credential and link of {name} is revoked.")),
        Err(e) => Flash::error(message(e)),
    };
    redirect(&state, &recipient_path(&name), flash)
}

pub(super) async fn drop(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Action { session, .. }: Action,
) -> Response {
    match session.admin.drop_recipient(&name).await {
        Ok(()) => redirect(&state, "/console/recipients", Flash::ok(format!("Recipient {name} dropped."))),
        Err(e) => redirect(&state, &recipient_path(&name), Flash::error(message(e))),
    }
}

pub(super) async fn set_ip_access(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let networks: Option<Vec<String>> = fields
        .get("networks")
        .map(|text| text.split(['\n', ',']).map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect());
    let flash = match session.admin.set_ip_access_list(&name, networks.clone()).await {
        Ok(_) if networks.is_some() => Flash::ok("IP access list saved."),
        Ok(_) => Flash::ok("IP access list cleared: any address may connect."),
        Err(e) => Flash::error(message(e)),
    };
    redirect(&state, &recipient_path(&name), flash)
}

pub(super) async fn set_rate_limit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let limit = match fields.get("rate") {
        None => Ok(None),
        Some(rate) => rate.parse().and_then(|rate| {
            let burst = fields
                .get("burst")
                .map(|b| b.parse::<u32>().map_err(|_| format!("'{b}' is not a burst size")))
                .transpose()?;
            RateLimit::new(rate, burst).map(Some)
        }),
    };
    let flash = match limit {
        Err(e) => Flash::error(e),
        Ok(limit) => match session.admin.set_rate_limit(&name, limit).await {
            Ok(_) if limit.is_some() => Flash::ok("Rate limit saved."),
            Ok(_) => Flash::ok("Rate limit cleared."),
            Err(e) => Flash::error(message(e)),
        },
    };
    redirect(&state, &recipient_path(&name), flash)
}

pub(super) async fn set_properties(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Action { session, fields }: Action,
) -> Response {
    let flash = match properties_of(&fields) {
        Err(e) => Flash::error(e),
        Ok(properties) => match session.admin.set_properties(&name, properties).await {
            Ok(_) => Flash::ok("Properties saved."),
            Err(e) => Flash::error(message(e)),
        },
    };
    redirect(&state, &recipient_path(&name), flash)
}
