//! Page and refresh tokens: opaque, signed, and bound to one table entry and one recipient.
//!
//! A token lets a client continue a query: read its next page (`nextPageToken` of `/query` and
//! `/changes`) or read the same version again with fresh URLs (`refreshToken`). Each kind is
//! sealed for its own purpose, so that one kind is never accepted as another, and each is bound
//! to:
//! - the recipient it was issued to, by id (names can be reused, ids cannot);
//! - the exact table entry: share, schema and table names, the entry's id and its location. Two
//!   entries over one Delta table are different tables, with their own start versions, filters
//!   and grants;
//! - a fingerprint of every request parameter that must not change between pages (`maxFiles`
//!   included, so that later pages cannot be made larger).
//!
//! A redeemed token only says where to continue. The caller then checks the request exactly as
//! it checks a first request (history sharing, start version, partition filter): a token never
//! skips a check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use d2o_catalog::{Principal, SharedTable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ApiError;
use crate::signing::SigningKey;

/// The kinds of token, each sealed for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// The next page of a snapshot `/query`.
    QueryPage,
    /// The same snapshot `/query` again, with fresh URLs.
    Refresh,
    /// The next page of `/changes`.
    ChangesPage,
    /// The next page of a streaming `/query` (`startingVersion`).
    StreamingPage,
}

impl TokenKind {
    fn purpose(self) -> &'static str {
        match self {
            TokenKind::QueryPage => "query-page",
            TokenKind::Refresh => "refresh",
            TokenKind::ChangesPage => "changes-page",
            TokenKind::StreamingPage => "streaming-page",
        }
    }

    fn name(self) -> &'static str {
        match self {
            TokenKind::Refresh => "refresh token",
            _ => "page token",
        }
    }
}

/// Where a query continues: the version (or first version of a range) every page reads, the
/// last version of a range, and the index of the next file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    #[serde(rename = "v")]
    pub(crate) version: u64,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub(crate) end: Option<u64>,
    #[serde(rename = "n", default)]
    pub(crate) next: usize,
}

/// What a token is bound to: who asked, which table entry, with which parameters.
#[derive(Debug)]
pub(crate) struct Scope {
    binding: String,
    fingerprint: String,
}

impl Scope {
    /// The scope of a request by `who` on table `table`; `parameters` lists every parameter
    /// that must be equal on every page (in a fixed order).
    pub(crate) fn new(who: &Principal, table: &SharedTable, parameters: &[&dyn std::fmt::Debug]) -> Scope {
        let entry = [
            who.id.as_str(),
            &table.share.to_lowercase(),
            &table.schema.to_lowercase(),
            &table.name.to_lowercase(),
            &table.id,
            table.location.as_str(),
        ];
        let parameters: Vec<String> = parameters.iter().map(|p| format!("{p:?}")).collect();
        Scope { binding: digest(&entry), fingerprint: digest(&parameters) }
    }
}

/// A short digest of a list of strings (unambiguous: each is length-prefixed).
fn digest<S: AsRef<str>>(parts: &[S]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        let p = p.as_ref().as_bytes();
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

/// The sealed content of a token.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    /// The binding digest of [`Scope`].
    b: String,
    /// The parameter fingerprint of [`Scope`].
    f: String,
    /// Expiry, ms since the epoch.
    x: i64,
    #[serde(flatten)]
    position: Position,
}

/// Issues a token of `kind` for `scope`, valid for `ttl_ms`.
pub(crate) fn issue(signer: &SigningKey, kind: TokenKind, scope: &Scope, position: Position, ttl_ms: u64) -> String {
    let sealed = Sealed {
        b: scope.binding.clone(),
        f: scope.fingerprint.clone(),
        x: now_ms().saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
        position,
    };
    signer.seal(kind.purpose(), &sealed)
}

/// Opens a token of `kind` and checks that it belongs to `scope` and has not expired.
///
/// Errors are the protocol's 400s: a token that does not decode (or is of another kind), one
/// issued for another table entry or recipient, an expired one, and one whose request
/// parameters differ from this request's.
pub(crate) fn redeem(signer: &SigningKey, kind: TokenKind, scope: &Scope, token: &str) -> Result<Position, ApiError> {
    let what = kind.name();
    let sealed: Sealed = signer
        .open(kind.purpose(), token)
        .ok_or_else(|| ApiError::InvalidParameter(format!("Error decoding the {what}: it is not a valid {what}.")))?;
    if sealed.b != scope.binding {
        return Err(ApiError::InvalidParameter(format!(
            "The table specified in the {what} does not match the table being queried."
        )));
    }
    if now_ms() > sealed.x {
        return Err(ApiError::InvalidParameter(format!("The {what} has expired. Please restart the query.")));
    }
    if sealed.f != scope.fingerprint {
        return Err(ApiError::InvalidParameter(format!(
            "Query parameter mismatch detected for the {what}: send the same parameters as the first request."
        )));
    }
    Ok(sealed.position)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn who(id: &str) -> Principal {
        Principal::new(id, "r", BTreeMap::new())
    }

    fn table(share: &str, name: &str, id: &str, location: &str) -> SharedTable {
        SharedTable {
            share: share.into(),
            schema: "sc".into(),
            name: name.into(),
            share_id: None,
            id: id.into(),
            location: url::Url::parse(location).expect("url"),
            history_shared: true,
            start_version: 0,
            cdf_enabled: None,
            partition_filter: None,
        }
    }

    #[test]
    fn a_token_works_only_in_its_scope() {
        let signer = SigningKey::random().expect("key");
        let t = table("s", "t", "id1", "file:///data/t/");
        let scope = Scope::new(&who("r1"), &t, &[&Some(5), &"parquet"]);
        let at = Position { version: 3, end: None, next: 7 };
        let token = issue(&signer, TokenKind::QueryPage, &scope, at, 60_000);
        assert_eq!(redeem(&signer, TokenKind::QueryPage, &scope, &token).ok(), Some(at));
        // Names are matched case-insensitively, so the scope is too.
        let upper = table("S", "T", "id1", "file:///data/t/");
        assert!(
            redeem(&signer, TokenKind::QueryPage, &Scope::new(&who("r1"), &upper, &[&Some(5), &"parquet"]), &token)
                .is_ok()
        );

        let refused = |kind, scope: &Scope| redeem(&signer, kind, scope, &token).expect_err("refused").to_string();
        assert!(refused(TokenKind::Refresh, &scope).contains("not a valid"), "another kind");
        assert!(refused(TokenKind::StreamingPage, &scope).contains("not a valid"), "another kind");
        let other_entry = table("s", "t_sv3", "id2", "file:///data/t/");
        for (what, other) in [
            ("another recipient", Scope::new(&who("r2"), &t, &[&Some(5), &"parquet"])),
            ("another entry of the same location", Scope::new(&who("r1"), &other_entry, &[&Some(5), &"parquet"])),
            (
                "another share",
                Scope::new(&who("r1"), &table("s2", "t", "id1", "file:///data/t/"), &[&Some(5), &"parquet"]),
            ),
            (
                "another location",
                Scope::new(&who("r1"), &table("s", "t", "id1", "file:///data/u/"), &[&Some(5), &"parquet"]),
            ),
        ] {
            assert!(refused(TokenKind::QueryPage, &other).contains("does not match the table"), "{what}");
        }
        let larger = Scope::new(&who("r1"), &t, &[&Some(500), &"parquet"]);
        assert!(refused(TokenKind::QueryPage, &larger).contains("parameter mismatch"));
        let expired = issue(&signer, TokenKind::QueryPage, &scope, at, 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(
            redeem(&signer, TokenKind::QueryPage, &scope, &expired)
                .expect_err("expired")
                .to_string()
                .contains("expired")
        );
        assert!(redeem(&signer, TokenKind::QueryPage, &scope, "garbage").is_err());
    }
}
