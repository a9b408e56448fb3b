//! The server's signing key: HMAC-SHA256 over what it vouches for, kept apart by domain (file
//! URLs, tokens) so that a signature made for one kind of thing never passes for another.
//! File URLs of tables on the server's own disk ([`crate::storage`]) and sealed page and
//! refresh tokens ([`crate::tokens`]) use it: none can be forged or altered.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::error::StartupError;

type HmacSha256 = Hmac<Sha256>;

/// The server's signing key.
pub struct SigningKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from bytes (at least 32 are recommended).
    pub fn new(key: &[u8]) -> Result<Self, StartupError> {
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key)
            .map_err(|e| StartupError::Setting { setting: "urlSigningKey", message: e.to_string() })?;
        Ok(SigningKey { mac })
    }

    /// A fresh random key: what it signs dies with the process.
    pub fn random() -> Result<Self, StartupError> {
        let key: [u8; 32] = rand::random();
        Self::new(&key)
    }

    /// Decodes a base64 key from the configuration.
    pub fn from_base64(key: &str) -> Result<Self, StartupError> {
        let bad = |message: &str| StartupError::Setting { setting: "urlSigningKey", message: message.to_owned() };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(key.trim()))
            .map_err(|_| bad("must be base64"))?;
        if bytes.len() < 16 {
            return Err(bad("must hold at least 16 bytes"));
        }
        Self::new(&bytes)
    }

    /// The MAC of `parts` in `domain`. Parts are length-prefixed, so no two lists of parts
    /// share a MAC.
    pub(crate) fn sign(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        self.mac_of(domain, parts).finalize().into_bytes().into()
    }

    /// Whether `signature` is the MAC of `parts` in `domain` (compared in constant time).
    pub(crate) fn verify(&self, domain: &str, parts: &[&[u8]], signature: &[u8]) -> bool {
        self.mac_of(domain, parts).verify_slice(signature).is_ok()
    }

    /// A MAC in `domain` with its first parts absorbed once, for signing many messages that
    /// share them (every URL of one response shares its grant).
    pub(crate) fn prefixed(&self, domain: &str, first: &[&[u8]]) -> PrefixedMac {
        PrefixedMac(self.mac_of(domain, first))
    }

    fn mac_of(&self, domain: &str, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        absorb(&mut mac, std::iter::once(domain.as_bytes()).chain(parts.iter().copied()));
        mac
    }

    /// Encodes a value as a signed opaque token: `base64url(json).base64url(hmac)`. `purpose`
    /// keeps a token of one kind from being accepted as another.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let sig = self.sign("token", &[purpose.as_bytes(), &json]);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(&sig[..16]))
    }

    /// Decodes a token made by [`SigningKey::seal`] with the same purpose; `None` if it was
    /// altered, made by another key or for another purpose.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, token: &str) -> Option<T> {
        let (body, sig) = token.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(body).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let expected = self.sign("token", &[purpose.as_bytes(), &json]);
        if sig.len() != 16 || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..16], &sig[..])) {
            return None;
        }
        serde_json::from_slice(&json).ok()
    }
}

/// Each part length-prefixed, so no two lists of parts give the same input.
fn absorb<'a>(mac: &mut HmacSha256, parts: impl Iterator<Item = &'a [u8]>) {
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
}

/// See [`SigningKey::prefixed`].
pub(crate) struct PrefixedMac(HmacSha256);

impl PrefixedMac {
    /// The same MAC as [`SigningKey::sign`] over the first parts followed by `rest`.
    pub(crate) fn sign(&self, rest: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        absorb(&mut mac, rest.iter().copied());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn domains_and_parts_are_kept_apart() {
        let k = SigningKey::new(b"0123456789abcdef0123456789abcdef").expect("key");
        let mac = k.sign("file", &[b"ab", b"c"]);
        assert!(k.verify("file", &[b"ab", b"c"], &mac));
        assert!(!k.verify("token", &[b"ab", b"c"], &mac), "another domain");
        assert!(!k.verify("file", &[b"a", b"bc"], &mac), "other boundaries");
        let other = SigningKey::new(b"another key another key another!").expect("key");
        assert!(!other.verify("file", &[b"ab", b"c"], &mac), "another key");
        assert_eq!(k.prefixed("file", &[b"ab"]).sign(&[b"c"]), mac, "a prefixed MAC is the same MAC");
    }

    #[test]
    fn tokens_round_trip_and_reject_changes() {
        let s = SigningKey::random().expect("key");
        let t = s.seal("page", &(1u64, "x"));
        assert_eq!(s.open::<(u64, String)>("page", &t), Some((1, "x".to_owned())));
        assert_eq!(s.open::<(u64, String)>("refresh", &t), None);
        let (body, sig) = t.split_once('.').expect("two parts");
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(br#"[2,"x"]"#));
        assert_eq!(s.open::<(u64, String)>("page", &forged), None);
        assert_eq!(s.open::<(u64, String)>("page", body), None);
        assert_eq!(s.open::<(u64, String)>("page", "garbage"), None);
    }
}
