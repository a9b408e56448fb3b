//! The parts of a token read before its signature is checked.
//!
//! Nothing here is trusted: the header chooses the key and the unverified `iss` chooses the
//! policies, and both are checked again when the signature is (the algorithm by the key's type,
//! the issuer by `jsonwebtoken`'s validation).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::FederationError;

/// The longest token looked at. Identity providers' access tokens are a few KiB, even with a
/// list of groups; the HTTP layer bounds headers anyway.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What the token says about itself.
#[derive(Debug)]
pub(super) struct Unverified {
    /// The header's `alg`, one of the two accepted.
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
    /// The payload's `iss`.
    pub(super) issuer: String,
}

/// Whether `token` has the shape of a JWT: three base64url parts, the first a JSON object with
/// an `alg`. A d2o token (`d2o_` and base64url, no dot) never does.
pub(super) fn looks_like_jwt(token: &str) -> bool {
    split(token)
        .and_then(|[header, _, _]| decode_object(header))
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

/// Reads the header and the unverified issuer of `token`, refusing any algorithm but RS256 and
/// ES256 before a key is even looked for.
pub(super) fn read_unverified(token: &str) -> Result<Unverified, FederationError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(FederationError::Malformed("it is longer than 16 KiB"));
    }
    let [header, payload, _] =
        split(token).ok_or(FederationError::Malformed("a JWT is three base64url parts separated by dots"))?;
    let header = decode_object(header).ok_or(FederationError::Malformed("its header is not base64url-encoded JSON"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => Algorithm::RS256,
        Some(Value::String(alg)) if alg == "ES256" => Algorithm::ES256,
        Some(Value::String(alg)) => return Err(FederationError::Algorithm(printable(alg))),
        _ => return Err(FederationError::Malformed("its header has no alg")),
    };
    // RFC 7515 4.1.11: a token with critical extensions the verifier does not know is refused.
    if header.contains_key("crit") {
        return Err(FederationError::Malformed("its header has a crit parameter, which d2o does not support"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(FederationError::Malformed("its header's kid is not a string")),
    };
    let payload =
        decode_object(payload).ok_or(FederationError::Malformed("its payload is not base64url-encoded JSON"))?;
    let issuer = match payload.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        Some(_) => return Err(FederationError::MalformedClaim("iss".to_owned())),
        None => return Err(FederationError::MissingClaim("iss".to_owned())),
    };
    Ok(Unverified { alg, kid, issuer })
}

/// The three parts of a compact JWS. The signature may be empty (`alg: none`), so that such a
/// token is refused for its algorithm rather than its shape.
fn split(token: &str) -> Option<[&str; 3]> {
    let mut parts = token.split('.');
    let parts_and_rest = ([parts.next()?, parts.next()?, parts.next()?], parts.next());
    let ([header, payload, signature], None) = parts_and_rest else { return None };
    let base64url = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let ok = !header.is_empty() && !payload.is_empty() && [header, payload, signature].into_iter().all(base64url);
    ok.then_some([header, payload, signature])
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// The header's `alg` for an error message: short names as they are, anything odd not at all
/// (it is the sender's text).
fn printable(alg: &str) -> String {
    let plain = alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain { alg.to_owned() } else { "in the token's header".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: &Value, payload: &Value) -> String {
        format!("{}.{}.c2ln", part(header), part(payload))
    }

    #[test]
    fn only_jwts_look_like_jwts() {
        let payload = serde_json::json!({"iss": "https://idp.example"});
        assert!(looks_like_jwt(&token(&serde_json::json!({"alg": "RS256"}), &payload)));
        assert!(looks_like_jwt(&format!("{}.{}.", part(&serde_json::json!({"alg": "none"})), part(&payload))));
        // d2o's own tokens: `d2o_` and 43 base64url characters.
        assert!(!looks_like_jwt(&format!("d2o_{}", URL_SAFE_NO_PAD.encode([7u8; 32]))));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt(&format!("{}.{}", part(&serde_json::json!({"alg": "RS256"})), part(&payload))));
        assert!(!looks_like_jwt(&format!("{}.x.y.z", part(&serde_json::json!({"alg": "RS256"})))));
        assert!(!looks_like_jwt(&token(&serde_json::json!({"typ": "JWT"}), &payload)));
        assert!(!looks_like_jwt(&token(&serde_json::json!(["alg"]), &payload)));
        assert!(!looks_like_jwt(&format!("{}=.{}.c2ln", part(&serde_json::json!({"alg": "RS256"})), part(&payload))));
    }

    #[test]
    fn header_and_issuer_are_read_and_algorithms_refused_early() {
        let payload = serde_json::json!({"iss": "https://idp.example", "sub": "x"});
        let read = read_unverified(&token(&serde_json::json!({"alg": "ES256", "kid": "k1"}), &payload)).unwrap();
        assert_eq!(
            (read.alg, read.kid.as_deref(), read.issuer.as_str()),
            (Algorithm::ES256, Some("k1"), "https://idp.example")
        );
        for (alg, shown) in
            [("none", "none"), ("HS256", "HS256"), ("RS384", "RS384"), ("<script>", "in the token's header")]
        {
            let err = read_unverified(&token(&serde_json::json!({"alg": alg}), &payload)).unwrap_err();
            assert_eq!(err, FederationError::Algorithm(shown.to_owned()));
        }
        let crit = serde_json::json!({"alg": "RS256", "crit": ["b64"], "b64": false});
        assert!(matches!(read_unverified(&token(&crit, &payload)), Err(FederationError::Malformed(_))));
        let no_iss = read_unverified(&token(&serde_json::json!({"alg": "RS256"}), &serde_json::json!({"sub": "x"})));
        assert_eq!(no_iss.unwrap_err(), FederationError::MissingClaim("iss".to_owned()));
        let list = serde_json::json!({"iss": ["https://idp.example"]});
        assert!(read_unverified(&token(&serde_json::json!({"alg": "RS256"}), &list)).is_err());
        assert!(read_unverified(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }
}
