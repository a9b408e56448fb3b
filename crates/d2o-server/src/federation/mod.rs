//! OIDC federation: verifying JWTs that a recipient's own identity provider issued.
//!
//! A recipient with [federation policies](FederationPolicy) sends its provider's JWT as the
//! bearer token, instead of a d2o token. [`Federation::verify`] checks, in order:
//! 1. the header's `alg`: RS256 or ES256 only (never `none`, never HMAC);
//! 2. the *unverified* `iss`, which must be the issuer of a policy that is not revoked. A token
//!    whose issuer no policy names is refused before anything is fetched: a token can never
//!    make the server contact an address of its choosing (the header's `jku`, `x5u` and `jwk`
//!    are ignored for the same reason);
//! 3. the signature, with the key its `kid` names in the provider's JWKS (found through
//!    `{issuer}/.well-known/openid-configuration`); the key's type must fit the `alg`;
//! 4. `exp` (required) and `nbf`, with a minute of leeway, and `iss`, now verified, exactly;
//! 5. audience and subject, per policy ([`FederationPolicy::matches`]): the first policy of the
//!    issuer that matches wins.
//!
//! # Layout
//! - `token`: what a token says before its signature is checked; [`Federation::looks_like_jwt`].
//! - `cache`: each provider's keys, fetched once and refreshed on an unknown `kid` (at most once
//!   a second) or after an hour; `jwks`: a key set, reduced to the keys d2o can use.
//! - `fetch`: HTTP to identity providers, with timeouts, size limits, no redirects or proxies.
//! - `error`: [`FederationError`].

mod cache;
mod error;
mod fetch;
mod jwks;
mod token;

#[cfg(test)]
mod tests;

use std::time::Duration;

use d2o_catalog::{FederationPolicy, PolicyMismatch};
use jsonwebtoken::Validation;
use serde_json::Value;

use crate::StartupError;

pub(crate) use error::FederationError;

use cache::KeyCache;
use fetch::Fetcher;
use token::Unverified;

/// The limits of [`Federation`]. The defaults suit production; tests shorten them.
#[derive(Debug, Clone)]
pub(crate) struct FederationOptions {
    /// To connect to a provider.
    pub(crate) connect_timeout: Duration,
    /// For a whole request to a provider, body included.
    pub(crate) timeout: Duration,
    /// The largest discovery document or JWKS read.
    pub(crate) max_body_bytes: usize,
    /// Keys (and the discovery document) older than this are fetched again.
    pub(crate) max_key_age: Duration,
    /// At most one fetch per provider starts within this interval.
    pub(crate) min_refetch_interval: Duration,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub(crate) leeway_secs: u64,
}

impl Default for FederationOptions {
    fn default() -> Self {
        FederationOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_key_age: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(1),
            leeway_secs: 60,
        }
    }
}

/// Verifies identity providers' JWTs against federation policies, with a cache of each
/// provider's keys. One per server; cheap to share behind an `Arc`.
pub(crate) struct Federation {
    keys: KeyCache,
    leeway_secs: u64,
}

impl Federation {
    /// A verifier with the default limits.
    pub(crate) fn new() -> Result<Federation, StartupError> {
        Federation::with_options(FederationOptions::default())
    }

    pub(crate) fn with_options(options: FederationOptions) -> Result<Federation, StartupError> {
        let fetcher = Fetcher::new(options.connect_timeout, options.timeout, options.max_body_bytes).map_err(|e| {
            StartupError::Start { what: "the HTTP client for identity providers".into(), source: Box::new(e) }
        })?;
        let keys = KeyCache::new(fetcher, options.max_key_age, options.min_refetch_interval);
        Ok(Federation { keys, leeway_secs: options.leeway_secs })
    }

    /// Whether a bearer token has the shape of a JWT: three base64url parts, the first a JSON
    /// header with an `alg`. d2o's own tokens never do, so this decides which check a bearer
    /// token gets.
    pub(crate) fn looks_like_jwt(token: &str) -> bool {
        token::looks_like_jwt(token)
    }

    /// Verifies `token` and returns the first policy (not revoked) it satisfies.
    ///
    /// Only the issuers of `policies` are ever contacted. Fails with the check that failed;
    /// [`FederationError::is_idp_failure`] tells a provider that cannot be reached from a bad
    /// token.
    pub(crate) async fn verify<'p>(
        &self,
        token: &str,
        policies: &'p [FederationPolicy],
    ) -> Result<&'p FederationPolicy, FederationError> {
        let unverified = token::read_unverified(token)?;
        let of_issuer: Vec<&FederationPolicy> =
            policies.iter().filter(|p| p.revoked_at.is_none() && p.issuer == unverified.issuer).collect();
        if of_issuer.is_empty() {
            return Err(FederationError::UnknownIssuer);
        }
        let claims = self.verified_claims(token, &unverified).await?;
        first_match(&of_issuer, &claims)
    }

    /// The token's claims, once its signature, times and issuer are checked.
    async fn verified_claims(&self, token: &str, unverified: &Unverified) -> Result<Value, FederationError> {
        let (kid, alg) = (unverified.kid.as_deref(), unverified.alg);
        let fetched = self.keys.keys(&unverified.issuer, |keys| keys.knows(kid, alg)).await?;
        let candidates = fetched.keys.candidates(kid, alg)?;

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        // Audiences differ per policy: `FederationPolicy::matches` checks them.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[&unverified.issuer]);

        // Without a `kid`, any key of the algorithm may be the one; a wrong key is a bad
        // signature, so try the next.
        let mut result = Err(FederationError::UnknownKey);
        for candidate in candidates {
            result = jsonwebtoken::decode::<Value>(token, &candidate.key, &validation)
                .map(|data| data.claims)
                .map_err(|e| FederationError::from_jwt(&e));
            if !matches!(result, Err(FederationError::Signature)) {
                break;
            }
        }
        result
    }
}

/// The `iss` of a JWT, before its signature is checked (it only chooses the key to check it
/// with), read as [`Federation::verify`] reads it: RS256 and ES256 only.
pub(crate) fn unverified_issuer(token: &str) -> Result<String, FederationError> {
    token::read_unverified(token).map(|u| u.issuer)
}

/// The claims of a JWT signed with a public key the caller already holds (PEM), such as a
/// private-key OAuth client's assertion (RFC 7523): RS256 (RSA key) or ES256 (EC P-256 key)
/// only, the signature, `exp` (required) and `nbf` with a minute of leeway, and `iss` equal to
/// `issuer`. Audience and the rest are the caller's to check.
pub(crate) fn verify_with_public_key(token: &str, pem: &str, issuer: &str) -> Result<Value, FederationError> {
    let unverified = token::read_unverified(token)?;
    if unverified.issuer != issuer {
        return Err(FederationError::UnknownIssuer);
    }
    let key = match unverified.alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()),
        _ => jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()),
    }
    .map_err(|_| FederationError::KeyAlgorithm { alg: alg_name(unverified.alg), key_alg: "different" })?;
    let mut validation = Validation::new(unverified.alg);
    validation.leeway = FederationOptions::default().leeway_secs;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| FederationError::from_jwt(&e))
}

fn alg_name(alg: jsonwebtoken::Algorithm) -> &'static str {
    if alg == jsonwebtoken::Algorithm::RS256 { "RS256" } else { "ES256" }
}

/// The first policy `claims` satisfy. When none does, a wrong subject is reported over a wrong
/// audience: it means some policy allowed the audience.
fn first_match<'p>(policies: &[&'p FederationPolicy], claims: &Value) -> Result<&'p FederationPolicy, FederationError> {
    let mut mismatch = FederationError::Audience;
    for policy in policies {
        match policy.matches(claims) {
            Ok(()) => return Ok(policy),
            Err(PolicyMismatch::Subject(claim)) if mismatch == FederationError::Audience => {
                mismatch = FederationError::Subject(claim);
            }
            Err(_) => {}
        }
    }
    Err(mismatch)
}
