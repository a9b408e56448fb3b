//! Finding and reading a profile, naming tables, and authenticating requests with it.
//!
//! A profile comes from a file (`config.share`), from JSON text, or from the environment
//! variable [`PROFILE_ENV`] holding either, so that credentials need not sit in scripts.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use d2o_protocol::profile::{Credentials, Profile};
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::error::{ClientError, Result};

/// The environment variable that may hold a profile path or the profile JSON itself.
pub const PROFILE_ENV: &str = "DELTA_SHARING_PROFILE";

/// `application/x-www-form-urlencoded` values: everything but unreserved characters is escaped.
const FORM_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Refresh an OAuth access token when fewer than this many seconds of it remain.
const OAUTH_REFRESH_MARGIN: Duration = Duration::from_secs(600);

/// Reads a profile from a path, or from JSON text when `path_or_json` starts with `{`.
pub fn load_profile(path_or_json: &str) -> Result<Profile> {
    let trimmed = path_or_json.trim_start();
    if trimmed.starts_with('{') {
        return Profile::from_json(trimmed)
            .map_err(|e| ClientError::Profile { source_name: "(inline JSON)".into(), message: e.to_string() });
    }
    let path = Path::new(path_or_json);
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::Profile {
        source_name: path.display().to_string(),
        message: format!("cannot read the file: {e}"),
    })?;
    Profile::from_json(&text)
        .map_err(|e| ClientError::Profile { source_name: path.display().to_string(), message: e.to_string() })
}

/// Reads the profile named by [`PROFILE_ENV`], or `None` when the variable is unset or empty.
pub fn profile_from_env() -> Result<Option<Profile>> {
    match std::env::var(PROFILE_ENV) {
        Ok(v) if !v.trim().is_empty() => load_profile(&v).map(Some).map_err(|e| match e {
            ClientError::Profile { source_name, message } => {
                ClientError::Profile { source_name: format!("{source_name} (from ${PROFILE_ENV})"), message }
            }
            other => other,
        }),
        _ => Ok(None),
    }
}

/// A table's full name: `share.schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub share: String,
    pub schema: String,
    pub table: String,
}

impl TableName {
    pub fn new(share: impl Into<String>, schema: impl Into<String>, table: impl Into<String>) -> Self {
        TableName { share: share.into(), schema: schema.into(), table: table.into() }
    }

    /// Parses `share.schema.table` (exactly three non-empty parts).
    pub fn parse(name: &str) -> Result<Self> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            [share, schema, table] if !share.is_empty() && !schema.is_empty() && !table.is_empty() => {
                Ok(TableName::new(*share, *schema, *table))
            }
            _ => Err(ClientError::invalid(format!("'{name}' is not a table name of the form share.schema.table"))),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.share, self.schema, self.table)
    }
}

impl std::str::FromStr for TableName {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self> {
        TableName::parse(s)
    }
}

/// Splits the connectors' table URL `<profile>#<share>.<schema>.<table>` at the last `#`.
/// The profile part may be empty (`#s.sc.t`), meaning "the profile from elsewhere".
pub fn parse_table_url(url: &str) -> Result<(String, TableName)> {
    let (profile, name) = url.rsplit_once('#').ok_or_else(|| {
        ClientError::invalid(format!("'{url}' is not a table URL of the form <profile-file>#<share>.<schema>.<table>"))
    })?;
    Ok((profile.to_owned(), TableName::parse(name)?))
}

/// Produces the `Authorization` header for a profile, fetching and refreshing OAuth tokens.
pub(crate) struct Authenticator {
    credentials: Credentials,
    endpoint: String,
    oauth: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl Authenticator {
    pub(crate) fn new(profile: &Profile) -> Self {
        Authenticator {
            credentials: profile.credentials.clone(),
            endpoint: profile.endpoint.clone(),
            oauth: tokio::sync::Mutex::new(None),
        }
    }

    /// The bearer token's `expirationTime` when it has passed.
    pub(crate) fn expired_token(&self) -> Option<String> {
        let Credentials::BearerToken { expiration_time: Some(t), .. } = &self.credentials else { return None };
        let at = chrono::DateTime::parse_from_rfc3339(t).ok()?;
        (at < chrono::Utc::now()).then(|| t.clone())
    }

    pub(crate) async fn header(&self, http: &reqwest::Client) -> Result<HeaderValue> {
        let value = match &self.credentials {
            Credentials::BearerToken { token, .. } => format!("Bearer {token}"),
            Credentials::Basic { username, password } => {
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")))
            }
            Credentials::OAuthClientCredentials { token_endpoint, client_id, client_secret, scope } => {
                let mut cached = self.oauth.lock().await;
                let fresh = cached.as_ref().filter(|(_, until)| *until > Instant::now() + OAUTH_REFRESH_MARGIN);
                let token = match fresh {
                    Some((t, _)) => t.clone(),
                    None => {
                        let (t, until) =
                            self.fetch_oauth_token(http, token_endpoint, client_id, client_secret, scope).await?;
                        *cached = Some((t.clone(), until));
                        t
                    }
                };
                format!("Bearer {token}")
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| ClientError::Profile {
            source_name: self.endpoint.clone(),
            message: "the credentials contain characters that cannot be sent in a header".into(),
        })?;
        header.set_sensitive(true);
        Ok(header)
    }

    /// Forgets a cached OAuth token (after a 401), so the next request fetches a new one.
    pub(crate) async fn invalidate(&self) {
        *self.oauth.lock().await = None;
    }

    async fn fetch_oauth_token(
        &self,
        http: &reqwest::Client,
        token_endpoint: &str,
        client_id: &str,
        client_secret: &str,
        scope: &Option<String>,
    ) -> Result<(String, Instant)> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(s) = scope {
            form.push(("scope", s.clone()));
        }
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, FORM_VALUE)))
            .collect::<Vec<_>>()
            .join("&");
        let response = http
            .post(token_endpoint)
            .basic_auth(client_id, Some(client_secret))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::Connection { url: token_endpoint.to_owned(), message: e.to_string() })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ClientError::Unauthenticated {
                endpoint: token_endpoint.to_owned(),
                status: status.as_u16(),
                message: format!("the OAuth token endpoint refused the client credentials: {text}"),
            });
        }
        let token: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| ClientError::protocol(format!("OAuth token response from {token_endpoint}: {e}")))?;
        let secs = match token.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(3600);
        // Tokens shorter-lived than the refresh margin are used for half their life.
        let life = Duration::from_secs(secs);
        let until = Instant::now()
            + life
            + if life <= OAUTH_REFRESH_MARGIN { OAUTH_REFRESH_MARGIN - life / 2 } else { Duration::ZERO };
        Ok((token.access_token, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_urls() {
        let (p, t) = parse_table_url("/a#b/config.share#s.sc.t").expect("valid");
        assert_eq!(p, "/a#b/config.share");
        assert_eq!(t, TableName::new("s", "sc", "t"));
        assert!(parse_table_url("config.share#s.t").is_err());
        assert!(parse_table_url("config.share").is_err());
        assert!(TableName::parse("a..b").is_err());
    }

    #[test]
    fn inline_json_and_errors() {
        let p = load_profile(r#" {"shareCredentialsVersion":1,"endpoint":"http://h/x/","bearerToken":"t"}"#)
            .expect("valid");
        assert_eq!(p.endpoint, "http://h/x");
        let e = load_profile("/nonexistent/config.share").expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/config.share"), "{e}");
    }
}
