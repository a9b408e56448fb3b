//! The recipient's profile file (`config.share`): where the server is and how to authenticate.

use serde::{Deserialize, Serialize};

/// The newest `shareCredentialsVersion` this crate understands.
pub const MAX_SHARE_CREDENTIALS_VERSION: i32 = 2;

/// How a recipient authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>` (version 1, or version 2 with `type: bearer_token`).
    BearerToken { token: String, expiration_time: Option<String> },
    /// OAuth 2.0 client credentials; the access token is fetched from `token_endpoint`.
    OAuthClientCredentials { token_endpoint: String, client_id: String, client_secret: String, scope: Option<String> },
    /// OAuth 2.0 with a JWT the client signs with its own private key (RFC 7523), exchanged at
    /// `token_endpoint` for an access token (the `oauth_jwt_bearer_private_key_jwt` type).
    OAuthPrivateKey {
        token_endpoint: String,
        /// The assertion's audience (`aud`): the authorization server's identifier.
        issuer: String,
        client_id: String,
        private_key: PrivateKeyRef,
        /// Sent as the assertion's `resource` claim.
        audience: Option<String>,
        scope: Option<String>,
    },
    /// HTTP basic authentication on every request.
    Basic { username: String, password: String },
}

/// Where a private-key profile's key is, and how to sign with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeyRef {
    /// A PEM file holding the private key.
    pub private_key_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `RS256` (the default) or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

/// The nested `auth` object of a private-key profile.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuth {
    token_endpoint: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    private_key: Option<PrivateKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// A parsed profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub share_credentials_version: i32,
    /// The server URL including its prefix, without a trailing `/`.
    pub endpoint: String,
    pub credentials: Credentials,
}

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("the profile is not valid JSON: {0}")]
    Json(String),
    #[error("'{0}' is missing from the profile")]
    MissingField(&'static str),
    #[error(
        "'shareCredentialsVersion' in the profile is {0}, which is too new; this client supports up to {MAX_SHARE_CREDENTIALS_VERSION}"
    )]
    TooNew(i32),
    #[error(
        "unsupported profile type '{0}' (expected bearer_token, oauth_client_credentials, oauth_jwt_bearer_private_key_jwt or basic)"
    )]
    UnsupportedType(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    share_credentials_version: Option<i32>,
    #[serde(rename = "type")]
    kind: Option<String>,
    endpoint: Option<String>,
    bearer_token: Option<String>,
    expiration_time: Option<String>,
    token_endpoint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    username: Option<String>,
    password: Option<String>,
    auth: Option<RawAuth>,
}

impl Profile {
    /// A version 1 bearer-token profile, the form d2o hands to its recipients.
    pub fn bearer(endpoint: impl Into<String>, token: impl Into<String>, expiration_time: Option<String>) -> Self {
        Profile {
            share_credentials_version: 1,
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            credentials: Credentials::BearerToken { token: token.into(), expiration_time },
        }
    }

    /// Parses a profile file's JSON text.
    pub fn from_json(text: &str) -> Result<Self, ProfileError> {
        let raw: RawProfile = serde_json::from_str(text).map_err(|e| ProfileError::Json(e.to_string()))?;
        let version = raw.share_credentials_version.ok_or(ProfileError::MissingField("shareCredentialsVersion"))?;
        if version > MAX_SHARE_CREDENTIALS_VERSION {
            return Err(ProfileError::TooNew(version));
        }
        let endpoint = raw.endpoint.ok_or(ProfileError::MissingField("endpoint"))?.trim_end_matches('/').to_owned();
        let need = |v: Option<String>, name: &'static str| v.ok_or(ProfileError::MissingField(name));
        let kind = raw.kind.as_deref().unwrap_or("bearer_token");
        let credentials = match kind {
            "bearer_token" => Credentials::BearerToken {
                token: need(raw.bearer_token, "bearerToken")?,
                expiration_time: raw.expiration_time,
            },
            "oauth_client_credentials" if version >= 2 => Credentials::OAuthClientCredentials {
                token_endpoint: need(raw.token_endpoint, "tokenEndpoint")?,
                client_id: need(raw.client_id, "clientId")?,
                client_secret: need(raw.client_secret, "clientSecret")?,
                scope: raw.scope,
            },
            "oauth_jwt_bearer_private_key_jwt" if version >= 2 => {
                let auth = raw.auth.ok_or(ProfileError::MissingField("auth"))?;
                Credentials::OAuthPrivateKey {
                    token_endpoint: need(auth.token_endpoint, "auth.tokenEndpoint")?,
                    issuer: need(auth.issuer, "auth.issuer")?,
                    client_id: need(auth.client_id, "auth.clientId")?,
                    private_key: auth.private_key.ok_or(ProfileError::MissingField("auth.privateKey"))?,
                    audience: auth.audience,
                    scope: auth.scope,
                }
            }
            "basic" if version >= 2 => Credentials::Basic {
                username: need(raw.username, "username")?,
                password: need(raw.password, "password")?,
            },
            other => return Err(ProfileError::UnsupportedType(other.to_owned())),
        };
        Ok(Profile { share_credentials_version: version, endpoint, credentials })
    }

    /// Renders the profile as the JSON of a `config.share` file.
    pub fn to_json(&self) -> String {
        let mut raw = RawProfile {
            share_credentials_version: Some(self.share_credentials_version),
            kind: None,
            endpoint: Some(format!("{}/", self.endpoint)),
            bearer_token: None,
            expiration_time: None,
            token_endpoint: None,
            client_id: None,
            client_secret: None,
            scope: None,
            username: None,
            password: None,
            auth: None,
        };
        match &self.credentials {
            Credentials::BearerToken { token, expiration_time } => {
                raw.bearer_token = Some(token.clone());
                raw.expiration_time = expiration_time.clone();
            }
            Credentials::OAuthClientCredentials { token_endpoint, client_id, client_secret, scope } => {
                raw.kind = Some("oauth_client_credentials".into());
                raw.token_endpoint = Some(token_endpoint.clone());
                raw.client_id = Some(client_id.clone());
                raw.client_secret = Some(client_secret.clone());
                raw.scope = scope.clone();
            }
            Credentials::OAuthPrivateKey { token_endpoint, issuer, client_id, private_key, audience, scope } => {
                raw.kind = Some("oauth_jwt_bearer_private_key_jwt".into());
                raw.auth = Some(RawAuth {
                    token_endpoint: Some(token_endpoint.clone()),
                    issuer: Some(issuer.clone()),
                    client_id: Some(client_id.clone()),
                    private_key: Some(private_key.clone()),
                    audience: audience.clone(),
                    scope: scope.clone(),
                });
            }
            Credentials::Basic { username, password } => {
                raw.kind = Some("basic".into());
                raw.username = Some(username.clone());
                raw.password = Some(password.clone());
            }
        }
        let value = serde_json::to_value(&raw).unwrap_or_default();
        // Drop the absent optional fields rather than writing nulls.
        let value = match value {
            serde_json::Value::Object(map) => {
                serde_json::Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            other => other,
        };
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_bearer() {
        let p = Profile::from_json(r#"{"shareCredentialsVersion":1,"endpoint":"http://h/ds/","bearerToken":"t"}"#)
            .expect("valid");
        assert_eq!(p.endpoint, "http://h/ds");
        assert_eq!(p.credentials, Credentials::BearerToken { token: "t".into(), expiration_time: None });
        assert_eq!(Profile::from_json(&p.to_json()), Ok(p));
    }

    #[test]
    fn version_two_kinds() {
        let p = Profile::from_json(
            r#"{"shareCredentialsVersion":2,"type":"oauth_client_credentials","endpoint":"e","tokenEndpoint":"t","clientId":"c","clientSecret":"s"}"#,
        )
        .expect("valid");
        assert!(matches!(p.credentials, Credentials::OAuthClientCredentials { .. }));
        assert_eq!(Profile::from_json(&p.to_json()), Ok(p));
        let p = Profile::from_json(
            r#"{"shareCredentialsVersion":2,"type":"basic","endpoint":"e","username":"u","password":"p"}"#,
        )
        .expect("valid");
        assert!(matches!(p.credentials, Credentials::Basic { .. }));
        let p = Profile::from_json(
            r#"{"shareCredentialsVersion":2,"type":"oauth_jwt_bearer_private_key_jwt","endpoint":"e",
                "auth":{"tokenEndpoint":"t","issuer":"i","clientId":"c","audience":"a",
                        "privateKey":{"privateKeyFile":"/k.pem","keyId":"k1","algorithm":"ES256"}}}"#,
        )
        .expect("valid");
        assert!(matches!(&p.credentials, Credentials::OAuthPrivateKey { private_key, .. }
            if private_key.algorithm.as_deref() == Some("ES256")));
        assert_eq!(Profile::from_json(&p.to_json()), Ok(p));
        assert_eq!(
            Profile::from_json(
                r#"{"shareCredentialsVersion":2,"type":"oauth_jwt_bearer_private_key_jwt","endpoint":"e","auth":{"tokenEndpoint":"t","issuer":"i","clientId":"c"}}"#
            ),
            Err(ProfileError::MissingField("auth.privateKey"))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(Profile::from_json(r#"{"shareCredentialsVersion":3,"endpoint":"e"}"#), Err(ProfileError::TooNew(3)));
        assert_eq!(
            Profile::from_json(r#"{"shareCredentialsVersion":1,"endpoint":"e"}"#),
            Err(ProfileError::MissingField("bearerToken"))
        );
        assert!(matches!(Profile::from_json("{"), Err(ProfileError::Json(_))));
        assert!(matches!(
            Profile::from_json(
                r#"{"shareCredentialsVersion":1,"type":"basic","endpoint":"e","username":"u","password":"p"}"#
            ),
            Err(ProfileError::UnsupportedType(_))
        ));
    }
}
