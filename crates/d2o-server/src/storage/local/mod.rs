//! Tables on the server's own disk, served by d2o itself at URLs that work the way
//! pre-signed cloud URLs do.
//!
//! A URL names a grant (the table entry and the recipient it was issued to, by id), a path in
//! the table and an expiry, and carries the server key's MAC over the three. Nothing about it
//! can be changed. Whoever holds it may read that one file until it expires, and only while
//! the recipient still has access to the table: the file route ([`crate::storage::files`]) asks the catalog at
//! every download, so revoking a recipient or a grant stops its URLs at once.
//!
//! The query names follow Azure's shared access signatures (`sp` permissions, `se` expiry,
//! `sig` signature). Delta kernels decide by these names whether a URL is pre-signed and must
//! be fetched over HTTP rather than through their own object store; the Python connector's
//! delta-format reader fails on URLs it does not recognise.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;

use d2o_delta::{DeltaError, LocalStores, StoreOpener};
use object_store::DynObjectStore;

use super::{Backend, FileSigner, UrlRequest};
use crate::signing::PrefixedMac;
use crate::{ApiError, SigningKey};

/// The MAC domain of file URLs.
const DOMAIN: &str = "file";

/// Characters kept as they are in a file path inside a URL: unreserved ones and `/`.
const PATH_SET: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// The backend of `file://` tables.
pub(crate) struct LocalFiles {
    key: Arc<SigningKey>,
}

impl LocalFiles {
    pub(crate) fn new(key: Arc<SigningKey>) -> LocalFiles {
        LocalFiles { key }
    }
}

impl Backend for LocalFiles {
    fn serves(&self, location: &Url) -> bool {
        location.scheme() == "file"
    }

    fn open(&self, location: &Url) -> Result<Arc<DynObjectStore>, DeltaError> {
        LocalStores.open(location)
    }

    fn signer<'a>(&'a self, request: &UrlRequest<'a>) -> Result<Box<dyn FileSigner + 'a>, ApiError> {
        let grant = FileGrant { table_id: request.table.id.clone(), recipient_id: request.who.id.clone() }.encode();
        let mac = self.key.prefixed(DOMAIN, &[grant.as_bytes()]);
        Ok(Box::new(LocalSigner { mac, base: request.base, grant, expires_ms: request.expires_ms }))
    }
}

struct LocalSigner<'a> {
    /// The server key's MAC with this response's grant absorbed.
    mac: PrefixedMac,
    base: &'a str,
    grant: String,
    expires_ms: i64,
}

impl FileSigner for LocalSigner<'_> {
    fn write_url(&self, out: &mut String, path: &str) -> Result<(), ApiError> {
        write_signed(out, self.base, &self.grant, path, self.expires_ms, |rest| self.mac.sign(rest));
        Ok(())
    }
}

/// Writes the URL of `path` (relative to the table root, as in the Delta log) into `out`:
/// `{base}/files/{grant}/{path}?sp=r&se={expiry ms}&sig={signature}`, where `grant` is a
/// [`FileGrant::encode`]d segment.
pub fn write_url(key: &SigningKey, out: &mut String, base: &str, grant: &str, path: &str, expires_ms: i64) {
    write_signed(out, base, grant, path, expires_ms, |rest| {
        let mut parts = vec![grant.as_bytes()];
        parts.extend_from_slice(rest);
        key.sign(DOMAIN, &parts)
    });
}

/// Writes the URL; `sign` gets the parts after the grant (the path and the expiry).
fn write_signed(
    out: &mut String,
    base: &str,
    grant: &str,
    path: &str,
    expires_ms: i64,
    sign: impl FnOnce(&[&[u8]]) -> [u8; 32],
) {
    out.push_str(base);
    out.push_str("/files/");
    out.push_str(grant);
    out.push('/');
    out.extend(percent_encoding::utf8_percent_encode(path, PATH_SET));
    out.push_str("?sp=r&se=");
    let expires_at = out.len();
    let _ = write!(out, "{expires_ms}");
    let sig = sign(&[path.as_bytes(), &out.as_bytes()[expires_at..]]);
    out.push_str("&sig=");
    URL_SAFE_NO_PAD.encode_string(sig, out);
}

/// Checks a file URL's signature and expiry. `path` is the decoded path from the URL.
pub fn check_url(
    key: &SigningKey,
    grant: &str,
    path: &str,
    expires: &str,
    signature: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    let forbidden = || ApiError::Forbidden("the URL signature is not valid".to_owned());
    let sig = URL_SAFE_NO_PAD.decode(signature).map_err(|_| forbidden())?;
    if !key.verify(DOMAIN, &[grant.as_bytes(), path.as_bytes(), expires.as_bytes()], &sig) {
        return Err(forbidden());
    }
    let expires: i64 = expires.parse().map_err(|_| forbidden())?;
    if now_ms > expires {
        return Err(ApiError::Forbidden("the URL has expired; query the table again for a fresh one".to_owned()));
    }
    Ok(())
}

/// Who may read files of which table through a URL: the table entry and the recipient the URL
/// was issued to, by id. Encoded as one URL path segment, short for the usual UUID ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    pub table_id: String,
    pub recipient_id: String,
}

impl FileGrant {
    /// `{table}.{recipient}`, each a UUID as `u` + its 16 bytes in base64url, or any other id
    /// as `s` + its UTF-8 in base64url. `.` is not in the base64url alphabet.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(48);
        encode_id(&mut out, &self.table_id);
        out.push('.');
        encode_id(&mut out, &self.recipient_id);
        out
    }

    /// The grant of an encoded segment; `None` if it is not one.
    pub fn decode(segment: &str) -> Option<FileGrant> {
        let (table, recipient) = segment.split_once('.')?;
        Some(FileGrant { table_id: decode_id(table)?, recipient_id: decode_id(recipient)? })
    }
}

fn encode_id(out: &mut String, id: &str) {
    match uuid::Uuid::try_parse(id) {
        Ok(u) if u.hyphenated().to_string() == id => {
            out.push('u');
            URL_SAFE_NO_PAD.encode_string(u.as_bytes(), out);
        }
        _ => {
            out.push('s');
            URL_SAFE_NO_PAD.encode_string(id.as_bytes(), out);
        }
    }
}

fn decode_id(text: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(text.get(1..)?).ok()?;
    match text.as_bytes().first()? {
        b'u' => Some(uuid::Uuid::from_slice(&bytes).ok()?.hyphenated().to_string()),
        b's' => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use url::Url;

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
    fn grants_round_trip() {
        for (table_id, recipient_id) in [
            ("0b7e6f7c-3f4e-4b8e-9a57-1d2c3b4a5f60", "bearer-token"),
            ("my table id", "0B7E6F7C-3F4E-4B8E-9A57-1D2C3B4A5F60"),
            ("", "é.ü/?"),
        ] {
            let grant = FileGrant { table_id: table_id.into(), recipient_id: recipient_id.into() };
            let segment = grant.encode();
            assert!(segment.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{segment}");
            assert_eq!(FileGrant::decode(&segment), Some(grant));
        }
        assert_eq!(
            FileGrant::encode(&FileGrant {
                table_id: "0b7e6f7c-3f4e-4b8e-9a57-1d2c3b4a5f60".into(),
                recipient_id: "x".into()
            })
            .len(),
            23 + 1 + 3
        );
        for bad in ["", ".", "u.s", "xAAAA.sAAAA", "uAAAA.sYQ", "sYQ"] {
            assert_eq!(FileGrant::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn signed_urls_verify_and_resist_tampering() {
        let s = SigningKey::new(b"0123456789abcdef0123456789abcdef").expect("key");
        let id = FileGrant { table_id: "t".into(), recipient_id: "r".into() }.encode();
        let mut url = String::new();
        write_url(&s, &mut url, "http://h", &id, "a b/part%201.parquet", 2_000);
        let (r, p, e, sig) = url_parts(&url);
        assert_eq!(p, "a b/part%201.parquet");
        assert!(check_url(&s, &r, &p, &e, &sig, 1_000).is_ok());
        let other_grant = FileGrant { table_id: "t".into(), recipient_id: "r2".into() }.encode();
        assert!(check_url(&s, &other_grant, &p, &e, &sig, 1_000).is_err(), "another recipient");
        assert!(check_url(&s, &r, &p, &e, &sig, 2_001).is_err(), "expired");
        assert!(check_url(&s, &r, "other.parquet", &e, &sig, 1_000).is_err(), "other path");
        assert!(check_url(&s, &r, &p, "9999999", &sig, 1_000).is_err(), "extended expiry");
        assert!(check_url(&s, &r, &p, &e, "AAAA", 1_000).is_err(), "bad signature");
        let other = SigningKey::new(b"another key another key another!").expect("key");
        assert!(check_url(&other, &r, &p, &e, &sig, 1_000).is_err(), "other key");
    }
}
