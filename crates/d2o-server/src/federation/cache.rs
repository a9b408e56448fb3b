//! Identity providers' keys, cached per issuer.
//!
//! A provider's JWKS is fetched once and kept. It is fetched again when it is older than the
//! maximum age (and then the discovery document too, in case `jwks_uri` moved), or when a token
//! names a key the set lacks: providers rotate keys and publish the new one shortly before they
//! sign with it. Refreshes of one issuer are serialized, so a hundred requests arriving with a
//! new key cause one fetch; and at most one starts per `min_refetch_interval`, so a flood of
//! tokens with made-up `kid`s costs the provider one request a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::FederationError;
use super::fetch::Fetcher;
use super::jwks::KeySet;

/// The keys of every issuer asked for so far. Only issuers of federation policies are ever
/// asked for, so the map stays as small as the set of configured providers.
pub(super) struct KeyCache {
    fetcher: Fetcher,
    max_age: Duration,
    min_refetch_interval: Duration,
    issuers: parking_lot::Mutex<HashMap<String, Arc<IssuerKeys>>>,
}

/// A provider's keys as last fetched.
pub(super) struct Fetched {
    pub(super) keys: KeySet,
    jwks_uri: Url,
    discovered_at: Instant,
    fetched_at: Instant,
}

#[derive(Default)]
struct IssuerKeys {
    current: parking_lot::RwLock<Option<Arc<Fetched>>>,
    /// Held while fetching: whoever waits for it finds the new keys when it gets it.
    refresh: tokio::sync::Mutex<Refresh>,
}

#[derive(Default)]
struct Refresh {
    last_attempt: Option<Instant>,
    /// Why the last attempt failed, if it did.
    last_error: Option<String>,
}

impl KeyCache {
    pub(super) fn new(fetcher: Fetcher, max_age: Duration, min_refetch_interval: Duration) -> KeyCache {
        KeyCache { fetcher, max_age, min_refetch_interval, issuers: parking_lot::Mutex::default() }
    }

    /// The keys of `issuer`, which must be the issuer of a federation policy (never one a token
    /// names on its own). They are refreshed first when older than the maximum age or when
    /// `usable` says they lack the token's key, within the refresh limits above.
    ///
    /// Fails with [`FederationError::IdpUnreachable`] when the provider cannot be reached and no
    /// usable keys are at hand; stale keys are used while the provider is down.
    pub(super) async fn keys(
        &self,
        issuer: &str,
        usable: impl Fn(&KeySet) -> bool,
    ) -> Result<Arc<Fetched>, FederationError> {
        let entry = self.issuers.lock().entry(issuer.to_owned()).or_default().clone();
        let good = |f: &Fetched| f.fetched_at.elapsed() < self.max_age && usable(&f.keys);
        if let Some(current) = entry.current.read().clone().filter(|f| good(f)) {
            return Ok(current);
        }
        let mut refresh = entry.refresh.lock().await;
        // Another request may have refreshed while this one waited.
        let current = entry.current.read().clone();
        if let Some(current) = current.clone().filter(|f| good(f)) {
            return Ok(current);
        }
        if refresh.last_attempt.is_some_and(|t| t.elapsed() < self.min_refetch_interval) {
            return match (current, &refresh.last_error) {
                (Some(current), None) => Ok(current),
                (Some(current), Some(_)) if usable(&current.keys) => Ok(current),
                (_, Some(error)) => Err(FederationError::IdpUnreachable(error.clone())),
                (None, None) => Err(FederationError::IdpUnreachable("no keys were fetched yet".to_owned())),
            };
        }
        refresh.last_attempt = Some(Instant::now());
        match self.fetch(issuer, current.as_deref()).await {
            Ok(fetched) => {
                refresh.last_error = None;
                let fetched = Arc::new(fetched);
                *entry.current.write() = Some(fetched.clone());
                Ok(fetched)
            }
            Err(error) => {
                refresh.last_error = Some(error.clone());
                match current {
                    Some(current) if usable(&current.keys) => {
                        tracing::warn!(issuer, error, "using the identity provider's keys fetched before");
                        Ok(current)
                    }
                    _ => Err(FederationError::IdpUnreachable(error)),
                }
            }
        }
    }

    /// Fetches the JWKS, and the discovery document first unless `previous` found its
    /// `jwks_uri` recently.
    async fn fetch(&self, issuer: &str, previous: Option<&Fetched>) -> Result<Fetched, String> {
        let now = Instant::now();
        let (jwks_uri, discovered_at) = match previous.filter(|p| p.discovered_at.elapsed() < self.max_age) {
            Some(previous) => (previous.jwks_uri.clone(), previous.discovered_at),
            None => (self.fetcher.discover(issuer).await?, now),
        };
        let keys = KeySet::from_jwks(&self.fetcher.jwks(&jwks_uri).await?)
            .map_err(|e| format!("the JWKS at {jwks_uri} is not valid: {e}"))?;
        tracing::debug!(issuer, %jwks_uri, "fetched the identity provider's keys");
        Ok(Fetched { keys, jwks_uri, discovered_at, fetched_at: now })
    }
}
