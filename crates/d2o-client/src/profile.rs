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
            Credentials::OAuthClientCredentials { .. } | Credentials::OAuthPrivateKey { .. } => {
                let mut cached = self.oauth.lock().await;
                let fresh = cached.as_ref().filter(|(_, until)| *until > Instant::now() + OAUTH_REFRESH_MARGIN);
                let token = match fresh {
                    Some((t, _)) => t.clone(),
                    None => {
                        let (t, until) = self.fetch_oauth_token(http).await?;
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

    /// A new access token from the profile's token endpoint: client credentials by HTTP Basic,
    /// or a JWT signed with the profile's private key (RFC 7523).
    async fn fetch_oauth_token(&self, http: &reqwest::Client) -> Result<(String, Instant)> {
        let (token_endpoint, mut form, basic) = match &self.credentials {
            Credentials::OAuthClientCredentials { token_endpoint, client_id, client_secret, scope } => {
                let mut form = vec![("grant_type", "client_credentials".to_owned())];
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
                (token_endpoint, form, Some((client_id, client_secret)))
            }
            Credentials::OAuthPrivateKey { token_endpoint, .. } => {
                let form = vec![
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()),
                    ("assertion", self.assertion()?),
                ];
                (token_endpoint, form, None)
            }
            _ => return Err(ClientError::invalid("the profile has no OAuth credentials")),
        };
        let body: String = form
            .drain(..)
            .map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(&v, FORM_VALUE)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = http.post(token_endpoint);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request
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
                message: format!("the OAuth token endpoint refused the client's credentials: {text}"),
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

impl Authenticator {
    /// A client assertion for a private-key profile: `iss` the client id, `aud` the profile's
    /// issuer, valid for two minutes, with a fresh `jti`, signed with the key file's key.
    fn assertion(&self) -> Result<String> {
        let Credentials::OAuthPrivateKey { issuer, client_id, private_key, audience, scope, .. } = &self.credentials
        else {
            return Err(ClientError::invalid("the profile has no private key"));
        };
        let failed =
            |message: String| ClientError::Profile { source_name: private_key.private_key_file.clone(), message };
        let pem = std::fs::read(&private_key.private_key_file)
            .map_err(|e| failed(format!("cannot read the private key file: {e}")))?;
        let (algorithm, key) = match private_key.algorithm.as_deref().unwrap_or("RS256") {
            "RS256" => (jsonwebtoken::Algorithm::RS256, jsonwebtoken::EncodingKey::from_rsa_pem(&pem)),
            "ES256" => (jsonwebtoken::Algorithm::ES256, jsonwebtoken::EncodingKey::from_ec_pem(&pem)),
            other => return Err(failed(format!("algorithm '{other}' is not supported; use RS256 or ES256"))),
        };
        let key = key.map_err(|e| failed(format!("the file is not a PEM private key for {algorithm:?}: {e}")))?;
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = private_key.key_id.clone();
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "iss": client_id, "aud": issuer, "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(scope) = scope {
            claims["scope"] = scope.clone().into();
        }
        if let Some(audience) = audience {
            claims["resource"] = audience.clone().into();
        }
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| failed(format!("cannot sign the assertion: {e}")))
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
