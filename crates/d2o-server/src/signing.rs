//! Signed file URLs and signed opaque tokens.
//!
//! Files are served by d2o itself at URLs that work the way pre-signed cloud URLs do: the URL
//! names a table root (by an opaque id), a path in it and an expiry, and carries an
//! HMAC-SHA256 signature over the three made with the server's key. Whoever holds the URL may
//! read that one file until it expires; nothing else about the URL can be changed. Page and
//! refresh tokens use the same key, so they cannot be forged or altered either.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use url::Url;

use crate::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The server's signing key and the table roots it has handed out URLs for.
pub struct UrlSigner {
    mac: HmacSha256,
    roots: RwLock<HashMap<String, Url>>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner").finish_non_exhaustive()
    }
}

/// Characters kept as they are in a file path inside a URL: unreserved ones and `/`.
const PATH_SET: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

impl UrlSigner {
    /// A signer with the given key (at least 32 bytes are recommended).
    pub fn new(key: &[u8]) -> Result<Self, ApiError> {
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(UrlSigner { mac, roots: RwLock::new(HashMap::new()) })
    }

    /// A signer with a fresh random key: URLs it signs die with the process.
    pub fn random() -> Result<Self, ApiError> {
        let key: [u8; 32] = rand::random();
        Self::new(&key)
    }

    /// Decodes a base64 key from the configuration.
    pub fn from_base64(key: &str) -> Result<Self, ApiError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(key.trim()))
            .map_err(|_| ApiError::InvalidParameter("urlSigningKey must be base64".into()))?;
        if bytes.len() < 16 {
            return Err(ApiError::InvalidParameter("urlSigningKey must hold at least 16 bytes".into()));
        }
        Self::new(&bytes)
    }

    fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b"\n");
            }
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b"\n");
            }
            mac.update(p);
        }
        mac.verify_slice(signature).is_ok()
    }

    /// The opaque id of a table root in file URLs, registering the root for file requests.
    pub fn root_id(&self, root: &Url) -> String {
        let digest = self.sign(&[b"root", root.as_str().as_bytes()]);
        let id = hex(&digest[..12]);
        if !self.roots.read().contains_key(&id) {
            self.roots.write().insert(id.clone(), root.clone());
        }
        id
    }

    /// The root registered under an id.
    pub fn root(&self, id: &str) -> Option<Url> {
        self.roots.read().get(id).cloned()
    }

    /// Writes the URL of `path` (a path relative to the root, as in the Delta log) into `out`:
    /// `{base}/files/{root_id}/{path}?sp=r&se={expiry ms}&sig={signature}`.
    ///
    /// The query names follow Azure's shared access signatures (`sp` permissions, `se` expiry,
    /// `sig` signature). Delta kernels decide by these names whether a URL is pre-signed and
    /// must be fetched over HTTP rather than through their own object store; the Python
    /// connector's delta-format reader fails on URLs it does not recognise.
    pub fn write_file_url(&self, out: &mut String, base: &str, root_id: &str, path: &str, expires_ms: i64) {
        out.push_str(base);
        out.push_str("/files/");
        out.push_str(root_id);
        out.push('/');
        out.extend(percent_encoding::utf8_percent_encode(path, PATH_SET));
        out.push_str("?sp=r&se=");
        let expires_at = out.len();
        let _ = write!(out, "{expires_ms}");
        let sig = self.sign(&[root_id.as_bytes(), path.as_bytes(), &out.as_bytes()[expires_at..]]);
        out.push_str("&sig=");
        URL_SAFE_NO_PAD.encode_string(sig, out);
    }

    /// Checks a file URL's signature and expiry. The path is the decoded path from the URL.
    pub fn check_file_url(
        &self,
        root_id: &str,
        path: &str,
        expires: &str,
        signature: &str,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let forbidden = || ApiError::Forbidden("the URL signature is not valid".to_owned());
        let sig = URL_SAFE_NO_PAD.decode(signature).map_err(|_| forbidden())?;
        if !self.verify(&[root_id.as_bytes(), path.as_bytes(), expires.as_bytes()], &sig) {
            return Err(forbidden());
        }
        let expires: i64 = expires.parse().map_err(|_| forbidden())?;
        if now_ms > expires {
            return Err(ApiError::Forbidden("the URL has expired; query the table again for a fresh one".to_owned()));
        }
        Ok(())
    }

    /// Encodes a value as a signed opaque token: `base64url(json).base64url(hmac)`. `purpose`
    /// keeps a token of one kind from being accepted as another.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let sig = self.sign(&[b"token", purpose.as_bytes(), &json]);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(&sig[..16]))
    }

    /// Decodes a token made by [`UrlSigner::seal`] with the same purpose; `None` if it was
    /// altered, made by another key or for another purpose.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, token: &str) -> Option<T> {
        let (body, sig) = token.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(body).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let expected = self.sign(&[b"token", purpose.as_bytes(), &json]);
        if sig.len() != 16 || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..16], &sig[..])) {
            return None;
        }
        serde_json::from_slice(&json).ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_parts(url: &str) -> (String, String, String, String) {
        let u = Url::parse(url).expect("valid url");
        let mut segs = u.path().trim_start_matches("/files/").splitn(2, '/');
        let root = segs.next().unwrap_or_default().to_owned();
        let path =
            percent_encoding::percent_decode_str(segs.next().unwrap_or_default()).decode_utf8_lossy().into_owned();
        let q: HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["sp"], "r");
        (root, path, q["se"].clone(), q["sig"].clone())
    }

    #[test]
    fn signed_urls_verify_and_resist_tampering() {
        let s = UrlSigner::new(b"0123456789abcdef0123456789abcdef").expect("key");
        let root = Url::parse("file:///data/t/").expect("url");
        let id = s.root_id(&root);
        assert_eq!(s.root(&id), Some(root));
        let mut url = String::new();
        s.write_file_url(&mut url, "http://h", &id, "a b/part%201.parquet", 2_000);
        let (r, p, e, sig) = url_parts(&url);
        assert_eq!(p, "a b/part%201.parquet");
        assert!(s.check_file_url(&r, &p, &e, &sig, 1_000).is_ok());
        assert!(s.check_file_url(&r, &p, &e, &sig, 2_001).is_err(), "expired");
        assert!(s.check_file_url(&r, "other.parquet", &e, &sig, 1_000).is_err(), "other path");
        assert!(s.check_file_url(&r, &p, "9999999", &sig, 1_000).is_err(), "extended expiry");
        assert!(s.check_file_url(&r, &p, &e, "AAAA", 1_000).is_err(), "bad signature");
        let other = UrlSigner::new(b"another key another key another!").expect("key");
        assert!(other.check_file_url(&r, &p, &e, &sig, 1_000).is_err(), "other key");
    }

    #[test]
    fn tokens_round_trip_and_reject_changes() {
        let s = UrlSigner::random().expect("key");
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
