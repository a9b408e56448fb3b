//! An identity provider's JSON Web Key Set, reduced to the keys d2o can verify with.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::FederationError;

/// At most this many keys of a set are read; providers publish two or three.
const MAX_KEYS: usize = 64;

/// A key that verifies one algorithm.
pub(super) struct VerifyingKey {
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    pub(super) key: DecodingKey,
}

/// The signing keys of one provider: RSA keys (for RS256) and P-256 keys (for ES256).
pub(super) struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Reads a JWKS document. Keys d2o cannot use (other types or curves, encryption keys, keys
    /// bound to another algorithm) are skipped, so one exotic key does not hide the others.
    pub(super) fn from_jwks(jwks: &Value) -> Result<KeySet, String> {
        let keys = jwks.get("keys").and_then(Value::as_array).ok_or("the JWKS has no \"keys\" list")?;
        Ok(KeySet { keys: keys.iter().take(MAX_KEYS).filter_map(verifying_key).collect() })
    }

    /// Whether this set has a key for a token with this `kid` (any key of `alg` when the token
    /// names none). `false` means the provider may have rotated its keys since they were fetched.
    pub(super) fn knows(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => self.keys.iter().any(|k| k.alg == alg),
        }
    }

    /// The keys to try for a token: the one its `kid` names, which must be of the header's
    /// algorithm; without a `kid`, every key of that algorithm.
    pub(super) fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<&VerifyingKey>, FederationError> {
        let named: Vec<&VerifyingKey> = self.keys.iter().filter(|k| kid.is_none() || k.kid.as_deref() == kid).collect();
        let fitting: Vec<&VerifyingKey> = named.iter().copied().filter(|k| k.alg == alg).collect();
        match (named.first(), fitting.is_empty()) {
            (None, _) => Err(FederationError::UnknownKey),
            (Some(key), true) if kid.is_some() => {
                Err(FederationError::KeyAlgorithm { alg: alg_name(alg), key_alg: alg_name(key.alg) })
            }
            (Some(_), true) => Err(FederationError::UnknownKey),
            (Some(_), false) => Ok(fitting),
        }
    }
}

/// The verifying key of one JWK, if d2o can use it.
fn verifying_key(jwk: &Value) -> Option<VerifyingKey> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return None;
        }
    }
    let (alg, key) = match field("kty")? {
        "RSA" => (Algorithm::RS256, DecodingKey::from_rsa_components(field("n")?, field("e")?).ok()?),
        "EC" if field("crv") == Some("P-256") => {
            (Algorithm::ES256, DecodingKey::from_ec_components(field("x")?, field("y")?).ok()?)
        }
        _ => return None,
    };
    // A key the provider bound to another algorithm (RS384, PS256, ...) must not verify ours.
    match jwk.get("alg") {
        None => {}
        Some(Value::String(bound)) if bound == alg_name(alg) => {}
        Some(_) => return None,
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return None,
    };
    Some(VerifyingKey { kid, alg, key })
}

pub(super) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "unsupported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa(kid: &str, extra: Value) -> Value {
        let mut jwk = serde_json::json!({"kty": "RSA", "kid": kid, "n": "AQAB", "e": "AQAB"});
        jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        jwk
    }

    #[test]
    fn unusable_keys_are_skipped_and_kids_choose_keys() {
        let jwks = serde_json::json!({"keys": [
            rsa("r1", serde_json::json!({"use": "sig", "alg": "RS256"})),
            rsa("enc", serde_json::json!({"use": "enc"})),
            rsa("ps", serde_json::json!({"alg": "PS256"})),
            rsa("ops", serde_json::json!({"key_ops": ["encrypt"]})),
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AQAB", "y": "AQAB"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AQAB", "y": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AQAB"},
            "not a key",
        ]});
        let set = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(set.keys.iter().map(|k| k.kid.as_deref().unwrap()).collect::<Vec<_>>(), ["r1", "e1"]);
        assert!(set.knows(Some("r1"), Algorithm::ES256));
        assert!(!set.knows(Some("hmac"), Algorithm::RS256));
        assert!(set.knows(None, Algorithm::ES256));
        assert_eq!(set.candidates(Some("r1"), Algorithm::RS256).unwrap().len(), 1);
        assert_eq!(set.candidates(None, Algorithm::RS256).unwrap().len(), 1);
        assert!(matches!(set.candidates(Some("nope"), Algorithm::RS256), Err(FederationError::UnknownKey)));
        assert!(matches!(
            set.candidates(Some("r1"), Algorithm::ES256),
            Err(FederationError::KeyAlgorithm { alg: "ES256", key_alg: "RS256" })
        ));
        assert!(KeySet::from_jwks(&serde_json::json!({"keys": {}})).is_err());
        assert!(KeySet::from_jwks(&serde_json::json!([])).is_err());
    }
}
