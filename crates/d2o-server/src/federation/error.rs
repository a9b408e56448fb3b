//! Why a federated token was refused.

use d2o_catalog::SubjectClaim;
use jsonwebtoken::errors::ErrorKind;

/// Why [`Federation::verify`](super::Federation::verify) refused a token. Each message names the
/// check that failed, in words the recipient can act on; none ever contains the token.
///
/// Every variant but [`FederationError::IdpUnreachable`] is a problem of the token; that one is
/// the identity provider's (see [`FederationError::is_idp_failure`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FederationError {
    /// Not three base64url parts with a JSON header and payload, or a header d2o cannot honour.
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not RS256 or ES256 (`none`, HS256, ...).
    #[error("algorithm {0} is not accepted; use RS256 or ES256")]
    Algorithm(String),
    /// A required claim (`iss`, `exp`) is missing, or `exp` is not a number.
    #[error("the token has no valid {0} claim")]
    MissingClaim(String),
    #[error("the token's {0} claim is malformed")]
    MalformedClaim(String),
    /// No policy that is not revoked names the token's `iss` (compared exactly).
    #[error("the token's issuer has no federation policy here")]
    UnknownIssuer,
    /// The identity provider's JWKS has no key with the token's `kid`, even after a refetch.
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    /// The key the `kid` names is of another type than the header's `alg` (an RSA key for ES256).
    #[error("the token's header says {alg}, but the identity provider's key for its kid is a {key_alg} key")]
    KeyAlgorithm { alg: &'static str, key_alg: &'static str },
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (its nbf is in the future)")]
    NotYetValid,
    /// The token is genuine, but no policy of its issuer allows its `aud`.
    #[error("the token's audience is not allowed")]
    Audience,
    /// The token is genuine and its audience allowed, but its subject claim has another value.
    #[error("the token's {0} claim does not match")]
    Subject(SubjectClaim),
    /// The discovery document or the JWKS could not be fetched or read.
    #[error("the identity provider's keys could not be fetched: {0}")]
    IdpUnreachable(String),
}

impl FederationError {
    /// Whether the identity provider failed rather than the token: worth a warning in the log,
    /// since every recipient of that provider is refused until it answers again.
    pub(crate) fn is_idp_failure(&self) -> bool {
        matches!(self, FederationError::IdpUnreachable(_))
    }

    /// The error for a failed `jsonwebtoken::decode` (signature, then time and issuer checks).
    pub(super) fn from_jwt(error: &jsonwebtoken::errors::Error) -> FederationError {
        match error.kind() {
            ErrorKind::ExpiredSignature => FederationError::Expired,
            ErrorKind::ImmatureSignature => FederationError::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) => FederationError::MissingClaim(claim.clone()),
            ErrorKind::InvalidClaimFormat(claim) => FederationError::MalformedClaim(claim.clone()),
            ErrorKind::InvalidIssuer => FederationError::UnknownIssuer,
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                FederationError::Malformed("its parts do not decode")
            }
            // Everything else means the signature could not be checked with the key: a bad
            // signature, or a published key the crypto library rejects (too short an RSA key).
            _ => FederationError::Signature,
        }
    }
}
