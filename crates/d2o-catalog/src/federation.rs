//! OIDC federation policies: which tokens of an outside identity provider act for a recipient.
//!
//! A recipient whose company runs an identity provider need not hold a d2o credential at all.
//! Its provider issues short-lived JWTs; the d2o server checks each one against the policies of
//! every recipient: the issuer, one of the allowed audiences, and the value of one subject claim.
//! A token that passes every check of a policy acts for that policy's recipient.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::CatalogError;

/// The claim of a token that identifies its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SubjectClaim {
    /// `sub`: the subject (a user, or a service principal's id).
    Sub,
    /// `azp`: the client the token was issued to.
    Azp,
    /// `oid`: Microsoft Entra ID's object id.
    Oid,
    /// `groups`: a list (or one string); the policy's value must be one of its members.
    Groups,
}

impl SubjectClaim {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectClaim::Sub => "sub",
            SubjectClaim::Azp => "azp",
            SubjectClaim::Oid => "oid",
            SubjectClaim::Groups => "groups",
        }
    }
}

impl fmt::Display for SubjectClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubjectClaim {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self, CatalogError> {
        match s.trim() {
            "sub" => Ok(SubjectClaim::Sub),
            "azp" => Ok(SubjectClaim::Azp),
            "oid" => Ok(SubjectClaim::Oid),
            "groups" => Ok(SubjectClaim::Groups),
            other => Err(CatalogError::InvalidArgument(format!(
                "'{other}' is not a subject claim d2o matches; use sub, azp, oid or groups"
            ))),
        }
    }
}

/// What a provider gives to add a federation policy to a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewFederationPolicy {
    /// The identity provider's issuer URL, exactly as in its tokens' `iss` claim. Its discovery
    /// document is at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// A token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub subject_claim: SubjectClaim,
    /// The value the subject claim must have (for `groups`: contain).
    pub subject: String,
}

impl NewFederationPolicy {
    /// Checks the policy: an `https` issuer URL (plain `http` only on a loopback address, for
    /// tests and local identity providers), at least one audience, a subject.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let bad = |m: String| Err(CatalogError::InvalidArgument(m));
        let issuer = match Url::parse(&self.issuer) {
            Ok(u) => u,
            Err(e) => return bad(format!("issuer '{}' is not a URL: {e}", self.issuer)),
        };
        let loopback = match issuer.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
            return bad(format!("issuer '{}' must be an https URL", self.issuer));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() || !issuer.username().is_empty() {
            return bad(format!("issuer '{}' must not have a query, a fragment or user info", self.issuer));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            return bad("a federation policy needs at least one audience, and no empty one".to_owned());
        }
        if self.subject.trim().is_empty() {
            return bad("a federation policy needs the subject claim's expected value".to_owned());
        }
        let too_long = std::iter::once(&self.issuer).chain(&self.audiences).chain([&self.subject]);
        if too_long.clone().any(|v| v.len() > 2048) || self.audiences.len() > 32 {
            return bad("a federation policy's values are limited to 2048 characters and 32 audiences".to_owned());
        }
        Ok(())
    }
}

/// A stored federation policy, as the server matches tokens against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FederationPolicy {
    /// The policy's id: the credential id a matching token authenticates as.
    pub id: String,
    /// The recipient it acts for.
    pub recipient_id: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub subject_claim: SubjectClaim,
    pub subject: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl FederationPolicy {
    /// Whether verified `claims` (a token's payload, already checked for issuer, signature and
    /// times) satisfy this policy's audience and subject.
    pub fn matches(&self, claims: &serde_json::Value) -> Result<(), PolicyMismatch> {
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|a| self.audiences.iter().any(|allowed| allowed == a)) {
            return Err(PolicyMismatch::Audience);
        }
        let claim = claims.get(self.subject_claim.as_str());
        let matched = match (self.subject_claim, claim) {
            (SubjectClaim::Groups, Some(serde_json::Value::Array(groups))) => {
                groups.iter().any(|g| g.as_str() == Some(self.subject.as_str()))
            }
            (_, Some(serde_json::Value::String(value))) => *value == self.subject,
            _ => false,
        };
        if matched { Ok(()) } else { Err(PolicyMismatch::Subject(self.subject_claim)) }
    }
}

/// Why a verified token does not satisfy a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMismatch {
    Audience,
    Subject(SubjectClaim),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(claim: SubjectClaim, subject: &str) -> FederationPolicy {
        FederationPolicy {
            id: "p1".into(),
            recipient_id: "r1".into(),
            issuer: "https://idp.example".into(),
            audiences: vec!["d2o".into(), "api://d2o".into()],
            subject_claim: claim,
            subject: subject.into(),
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn audience_and_subject_must_match() {
        let p = policy(SubjectClaim::Sub, "svc-1");
        assert_eq!(p.matches(&serde_json::json!({"aud": "d2o", "sub": "svc-1"})), Ok(()));
        assert_eq!(p.matches(&serde_json::json!({"aud": ["x", "api://d2o"], "sub": "svc-1"})), Ok(()));
        assert_eq!(p.matches(&serde_json::json!({"aud": "other", "sub": "svc-1"})), Err(PolicyMismatch::Audience));
        assert_eq!(p.matches(&serde_json::json!({"sub": "svc-1"})), Err(PolicyMismatch::Audience));
        assert_eq!(
            p.matches(&serde_json::json!({"aud": "d2o", "sub": "svc-2"})),
            Err(PolicyMismatch::Subject(SubjectClaim::Sub))
        );
        // A list is not a match for a single-valued claim.
        assert!(p.matches(&serde_json::json!({"aud": "d2o", "sub": ["svc-1"]})).is_err());
        let g = policy(SubjectClaim::Groups, "partners");
        assert_eq!(g.matches(&serde_json::json!({"aud": "d2o", "groups": ["a", "partners"]})), Ok(()));
        assert!(g.matches(&serde_json::json!({"aud": "d2o", "groups": ["a"]})).is_err());
        // Some providers (AD FS) send a single group as a string.
        assert_eq!(g.matches(&serde_json::json!({"aud": "d2o", "groups": "partners"})), Ok(()));
    }

    #[test]
    fn policies_are_checked_when_written() {
        let new = |issuer: &str, audiences: &[&str], subject: &str| NewFederationPolicy {
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            subject_claim: SubjectClaim::Sub,
            subject: subject.into(),
        };
        assert!(new("https://login.example.com/tenant/v2.0", &["d2o"], "x").validate().is_ok());
        assert!(new("http://127.0.0.1:8900", &["d2o"], "x").validate().is_ok());
        assert!(new("http://[::1]:8900/", &["d2o"], "x").validate().is_ok());
        for (issuer, audiences, subject) in [
            ("http://idp.example", &["d2o"][..], "x"),
            ("not a url", &["d2o"], "x"),
            ("https://idp.example?x=1", &["d2o"], "x"),
            ("https://idp.example", &[], "x"),
            ("https://idp.example", &[""], "x"),
            ("https://idp.example", &["d2o"], " "),
        ] {
            assert!(new(issuer, audiences, subject).validate().is_err(), "{issuer} {audiences:?} {subject:?}");
        }
        assert!("email".parse::<SubjectClaim>().is_err());
        assert_eq!("groups".parse::<SubjectClaim>().ok(), Some(SubjectClaim::Groups));
    }
}
