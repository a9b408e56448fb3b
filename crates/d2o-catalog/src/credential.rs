//! Recipient credentials and how they are handed out: bearer tokens, OAuth client credentials,
//! and one-time activation links that create either when the recipient opens them.
//!
//! A provider never needs to see a recipient's secret. It issues an activation link; the
//! recipient opens it and downloads `config.share`, and only then is the credential created.
//! A link works once, expires (72 hours by default), and is replaced when a new one is issued.

use d2o_protocol::profile::{Credentials, Profile};
use serde::{Deserialize, Serialize};

use crate::{CatalogError, RecipientInfo};

/// The path of d2o's OAuth token endpoint, under the sharing endpoint.
pub const TOKEN_ENDPOINT_PATH: &str = "/oauth/token";

/// How long an activation link works unless the provider says otherwise.
pub const DEFAULT_ACTIVATION_LIFETIME_SECS: u64 = 72 * 3600;
/// The longest lifetime an activation link may have.
pub const MAX_ACTIVATION_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// A kind of credential, named as the profile types of `config.share` name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A long-lived bearer token, sent with every request.
    #[default]
    BearerToken,
    /// An OAuth 2.0 client id and secret, exchanged at d2o's token endpoint for short-lived
    /// access tokens (the connector's `oauth_client_credentials` profile type).
    OauthClientCredentials,
    /// An OAuth 2.0 client that proves itself with a JWT signed by its own private key (RFC
    /// 7523; the connector's `oauth_jwt_bearer_private_key_jwt` profile type). d2o holds only
    /// the public key, which the recipient registers: it is never issued, only added.
    #[serde(rename = "oauth_jwt_bearer_private_key_jwt")]
    OauthPrivateKeyJwt,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::BearerToken => "bearer_token",
            CredentialKind::OauthClientCredentials => "oauth_client_credentials",
            CredentialKind::OauthPrivateKeyJwt => "oauth_jwt_bearer_private_key_jwt",
        }
    }

    /// Refuses the kinds d2o cannot create a secret for.
    pub(crate) fn check_issuable(self) -> Result<(), CatalogError> {
        if self == CredentialKind::OauthPrivateKeyJwt {
            return Err(CatalogError::InvalidArgument(
                "a private-key client is registered with the recipient's public key (recipient client-key), not issued"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The stored form (`tokens.kind`).
    pub(crate) fn from_stored(kind: Option<&str>) -> Result<CredentialKind, CatalogError> {
        match kind {
            None | Some("bearer_token") => Ok(CredentialKind::BearerToken),
            Some("oauth_client_credentials") => Ok(CredentialKind::OauthClientCredentials),
            Some("oauth_jwt_bearer_private_key_jwt") => Ok(CredentialKind::OauthPrivateKeyJwt),
            Some(other) => Err(CatalogError::internal(format!("stored credential kind '{other}'"))),
        }
    }
}

impl std::str::FromStr for CredentialKind {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self, CatalogError> {
        match s.trim() {
            "bearer_token" | "bearer" | "token" => Ok(CredentialKind::BearerToken),
            "oauth_jwt_bearer_private_key_jwt" | "private_key_jwt" => Err(CatalogError::InvalidArgument(
                "a private-key client is registered with the recipient's public key: d2o recipient client-key".into(),
            )),
            "oauth_client_credentials" | "oauth" => Ok(CredentialKind::OauthClientCredentials),
            other => Err(CatalogError::InvalidArgument(format!(
                "'{other}' is not a credential kind; use bearer_token or oauth_client_credentials"
            ))),
        }
    }
}

/// What an activation link hands out, and how long it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivationRequest {
    #[serde(default)]
    pub kind: CredentialKind,
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
}

fn default_lifetime() -> u64 {
    DEFAULT_ACTIVATION_LIFETIME_SECS
}

impl Default for ActivationRequest {
    fn default() -> Self {
        ActivationRequest { kind: CredentialKind::BearerToken, lifetime_secs: DEFAULT_ACTIVATION_LIFETIME_SECS }
    }
}

impl ActivationRequest {
    pub fn validate(&self) -> Result<(), CatalogError> {
        self.kind.check_issuable()?;
        if self.lifetime_secs == 0 || self.lifetime_secs > MAX_ACTIVATION_LIFETIME_SECS {
            return Err(CatalogError::InvalidArgument(format!(
                "an activation link's lifetime must be between 1 second and {} days",
                MAX_ACTIVATION_LIFETIME_SECS / 86_400
            )));
        }
        Ok(())
    }
}

/// Which credential to give a recipient when it is created or rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum CredentialRequest {
    /// Create the credential now and return its secret (for automation: `--profile-out`).
    Direct {
        #[serde(default)]
        kind: CredentialKind,
    },
    /// Issue an activation link; the credential is created when the recipient redeems it.
    Activation(ActivationRequest),
    /// No d2o credential (a recipient that signs in through OIDC federation only).
    None,
}

impl Default for CredentialRequest {
    fn default() -> Self {
        CredentialRequest::Direct { kind: CredentialKind::BearerToken }
    }
}

/// A freshly issued credential: the only time its secret is seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    pub recipient: String,
    /// The credential's id; for OAuth client credentials, the client id.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub kind: CredentialKind,
    /// The bearer token, or the OAuth client secret.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl IssuedToken {
    /// The recipient's profile file (`config.share`) for this credential, with the sharing
    /// `endpoint` (its public URL) in it. (A private-key client is never issued: `None`.)
    pub fn profile(&self, endpoint: &str) -> Option<Profile> {
        let endpoint = endpoint.trim_end_matches('/');
        Some(match self.kind {
            CredentialKind::BearerToken => Profile::bearer(
                endpoint,
                self.token.clone(),
                self.expires_at.map(d2o_protocol::timestamp::format_timestamp_millis),
            ),
            CredentialKind::OauthClientCredentials => Profile {
                share_credentials_version: 2,
                endpoint: endpoint.to_owned(),
                credentials: Credentials::OAuthClientCredentials {
                    token_endpoint: format!("{endpoint}{TOKEN_ENDPOINT_PATH}"),
                    client_id: self.id.clone(),
                    client_secret: self.token.clone(),
                    scope: None,
                },
            },
            CredentialKind::OauthPrivateKeyJwt => return None,
        })
    }
}

/// The most a public key in PEM may weigh (an RSA-8192 key is under 1,500 bytes).
const MAX_PUBLIC_KEY_BYTES: usize = 8192;

/// Checks a private-key client's public key: PEM, RSA (for RS256) or EC P-256 (for ES256).
pub fn check_public_key(pem: &str) -> Result<(), CatalogError> {
    let bad = || {
        CatalogError::InvalidArgument(
            "the client key must be a PEM public key (-----BEGIN PUBLIC KEY-----), RSA or EC P-256".into(),
        )
    };
    if pem.len() > MAX_PUBLIC_KEY_BYTES || !pem.trim_start().starts_with("-----BEGIN") || pem.contains("PRIVATE") {
        return Err(bad());
    }
    let rsa = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok();
    if rsa || jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).is_ok() { Ok(()) } else { Err(bad()) }
}

/// A freshly issued activation link's secret (the last path segment of its URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IssuedActivation {
    pub recipient: String,
    pub secret: String,
    pub kind: CredentialKind,
    /// When the link stops working (ms since the epoch).
    pub expires_at: i64,
}

/// What creating or rotating a recipient's credential produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Issued {
    Token(IssuedToken),
    Activation(IssuedActivation),
    None,
}

impl Issued {
    /// The credential, when one was created directly.
    pub fn into_token(self) -> Option<IssuedToken> {
        match self {
            Issued::Token(t) => Some(t),
            _ => None,
        }
    }

    /// The activation link, when one was issued.
    pub fn into_activation(self) -> Option<IssuedActivation> {
        match self {
            Issued::Activation(a) => Some(a),
            _ => None,
        }
    }
}

/// Where an activation link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum ActivationState {
    /// It can be redeemed.
    Ready,
    /// It was redeemed (at `used_at`).
    Used,
    /// Its lifetime ended before it was redeemed.
    Expired,
    /// The provider withdrew it: a newer link was issued, or the recipient was revoked.
    Withdrawn,
}

impl ActivationState {
    /// The state in words: "already used", "expired", ...
    pub fn describe(self) -> &'static str {
        match self {
            ActivationState::Ready => "ready",
            ActivationState::Used => "already used",
            ActivationState::Expired => "expired",
            ActivationState::Withdrawn => "withdrawn",
        }
    }
}

/// An activation link as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationInfo {
    pub recipient: RecipientInfo,
    pub kind: CredentialKind,
    pub state: ActivationState,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_the_admin_api_sends_them() {
        let parse = |s: &str| serde_json::from_str::<CredentialRequest>(s);
        assert_eq!(parse(r#"{"type":"direct"}"#).ok(), Some(CredentialRequest::default()));
        assert_eq!(
            parse(r#"{"type":"activation","kind":"oauth_client_credentials","lifetimeSecs":60}"#).ok(),
            Some(CredentialRequest::Activation(ActivationRequest {
                kind: CredentialKind::OauthClientCredentials,
                lifetime_secs: 60
            }))
        );
        assert_eq!(
            parse(r#"{"type":"activation"}"#).ok(),
            Some(CredentialRequest::Activation(ActivationRequest::default()))
        );
        assert_eq!(parse(r#"{"type":"none"}"#).ok(), Some(CredentialRequest::None));
        assert!(parse(r#"{"type":"activation","kind":"password"}"#).is_err());
        assert!(parse(r#"{"type":"direct","extra":1}"#).is_err());
        assert!(ActivationRequest { lifetime_secs: 0, ..Default::default() }.validate().is_err());
        assert!(ActivationRequest { lifetime_secs: 31 * 86_400, ..Default::default() }.validate().is_err());
        assert!(ActivationRequest::default().validate().is_ok());
        assert_eq!("oauth".parse::<CredentialKind>().ok(), Some(CredentialKind::OauthClientCredentials));
    }

    #[test]
    fn profiles_name_the_token_endpoint() {
        let issued = |kind| IssuedToken {
            recipient: "r".into(),
            id: "c1".into(),
            kind,
            token: "s3cret".into(),
            expires_at: None,
        };
        let bearer =
            issued(CredentialKind::BearerToken).profile("https://d2o.example/delta-sharing/").expect("a profile");
        assert_eq!(bearer.share_credentials_version, 1);
        assert_eq!(bearer.endpoint, "https://d2o.example/delta-sharing");
        let oauth = issued(CredentialKind::OauthClientCredentials)
            .profile("https://d2o.example/delta-sharing")
            .expect("a profile");
        assert_eq!(
            oauth.credentials,
            Credentials::OAuthClientCredentials {
                token_endpoint: "https://d2o.example/delta-sharing/oauth/token".into(),
                client_id: "c1".into(),
                client_secret: "s3cret".into(),
                scope: None,
            }
        );
        assert_eq!(Profile::from_json(&oauth.to_json()), Ok(oauth));
        assert!(issued(CredentialKind::OauthPrivateKeyJwt).profile("https://d2o.example").is_none());
        assert!(
            ActivationRequest { kind: CredentialKind::OauthPrivateKeyJwt, ..Default::default() }.validate().is_err()
        );
    }

    #[test]
    fn only_public_keys_are_client_keys() {
        assert!(check_public_key("not a key").is_err());
        assert!(check_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
    }
}
