//! Property and fuzz tests for every parser in this crate that reads outside input: page and
//! refresh tokens, signed file URLs and their grant segment, the `Range` header, the `/query`
//! request body, forwarded headers, and the YAML configuration.
//!
//! Each parser gets arbitrary input, valid input with random edits (see [`mutate`]), and hostile
//! input built by hand: 10,000-deep nesting, 1 MB inputs, long runs of one separator, odd
//! Unicode, NULs. None may panic or overflow the stack (deep nesting runs on the test thread's
//! ordinary stack, so an overflow would abort the run), every error is a client error with a
//! message, and the inputs most likely to be super-linear are timed at two sizes
//! ([`assert_linear`]). Tokens, URLs and grants round-trip.
//!
//! Each property runs [`CASES`] cases unless `PROPTEST_CASES` says otherwise.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use d2o_catalog::{Principal, SharedTable};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::ApiError;
use crate::client_addr::TrustedProxies;
use crate::config::yaml_depth::flow_depth_bound;
use crate::config::{MAX_FLOW_DEPTH, ServerConfig};
use crate::routes::table::query::body_json;
use crate::signing::SigningKey;
use crate::storage::files::parse_range;
use crate::storage::local::{FileGrant, check_url, write_url};
use crate::tokens::{self, Position, Scope, TokenKind};
use d2o_protocol::request::QueryRequest;

/// Cases per property: the whole file runs in a few seconds in a debug build.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES);
    // Failures are pinned as named tests below rather than in a regressions file.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Mutations and timing, shared by the parsers below.

/// One random edit of a valid input.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, String),
    /// Repeats the `len` characters at the index `times` times.
    Repeat(Index, usize, usize),
    Replace(Index, char),
}

/// Text that parsers treat specially (separators, quotes, escapes, keywords), text they may
/// mishandle (NUL, byte-order mark, right-to-left override, astral and multi-byte characters,
/// numbers at the edge of their type).
#[rustfmt::skip]
const SPECIAL: &[&str] = &[
    "\0", "\u{feff}", "\u{202e}", "é", "\u{1F600}", "\u{10FFFF}", "\u{3000}", "\r\n", "\t", " ", "'", "''", "\"",
    "\\", "\\u0000", "\\ud800", "`", "(", ")", "[", "]", "{", "}", ",", ";", "=", "==", ":", ".", "-", "/", "%",
    "null", "true", "1e999", "-0", "9223372036854775808", "18446744073709551616", "0x1F", "NaN", "bytes=",
    "for=", "\"[", "]:", "::ffff:", "unknown", "_hidden", "%2F", "..", "A", "==",
];

/// A special piece of text, or anything at all.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(SPECIAL).prop_map(str::to_owned), 1 => any::<String>()]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), fragment()).prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<Index>(), 1..16usize, 1..64usize).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::Replace(i, c)),
    ];
    prop::collection::vec(edit, 1..6)
}

/// `valid` with the edits applied, character by character (the result stays UTF-8).
fn mutate(valid: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = valid.chars().collect();
    for edit in edits {
        let len = chars.len();
        match edit {
            Edit::Delete(i, n) => {
                let start = i.index(len + 1);
                chars.drain(start..(start + n).min(len));
            }
            Edit::Insert(i, s) => {
                let at = i.index(len + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Repeat(i, n, times) => {
                let start = i.index(len + 1);
                let end = (start + n).min(len);
                let piece = chars[start..end].repeat(*times);
                chars.splice(end..end, piece);
            }
            Edit::Replace(i, c) => {
                if len > 0 {
                    chars[i.index(len)] = *c;
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// The fastest of seven runs: the one least disturbed by other work on the machine (a CI run
/// beside two compiling jobs preempted all three runs of a 90 ms parse).
fn fastest(run: impl Fn()) -> Duration {
    (0..7)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Asserts that `parse` takes linear time on `make(n)`: n is doubled from `n` until the input
/// takes at least 5 ms (or `make(16 n)` would pass `max_bytes`), then `make(8 n)` may take at
/// most 40 times as long. Linear is about 8 times (more when the larger input leaves the CPU's
/// caches); quadratic would be about 64. A parse that
/// stops early takes microseconds at both sizes, which is noise: the small time counts as at
/// least 1 ms.
fn assert_linear(what: &str, mut n: usize, max_bytes: usize, make: impl Fn(usize) -> String, parse: impl Fn(&str)) {
    let small = loop {
        let input = make(n);
        let took = fastest(|| parse(&input));
        if took >= Duration::from_millis(5) || input.len() * 16 > max_bytes {
            break took;
        }
        n *= 2;
    };
    let input = make(8 * n);
    let large = fastest(|| parse(&input));
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-3);
    eprintln!("{what}: n={n} {small:?}, 8n ({} bytes) {large:?}, ratio {ratio:.1}", input.len());
    assert!(ratio < 40.0, "{what}: {small:?} for n={n} but {large:?} for 8n: super-linear");
    assert!(large < Duration::from_secs(2), "{what}: {large:?} for {} bytes", input.len());
}

/// Asserts that `parse` handles a 1 MB input within a generous bound for a debug build on a
/// loaded machine (a quadratic parse of 1 MB takes minutes; 2 s was exceeded under load).
fn assert_fast(what: &str, input: &str, parse: impl Fn(&str)) {
    let start = Instant::now();
    parse(input);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "{what}: {took:?} for {} bytes", input.len());
}

/// `open` repeated `n` times, then `middle`, then `close` repeated `n` times.
fn nest(open: &str, middle: &str, close: &str, n: usize) -> String {
    let mut s = String::with_capacity((open.len() + close.len()) * n + middle.len());
    s.push_str(&open.repeat(n));
    s.push_str(middle);
    s.push_str(&close.repeat(n));
    s
}

/// A refusal must be a client error with a message, never a 5xx.
fn check_refusal(e: &ApiError) {
    assert!(e.status().is_client_error(), "{e:?}");
    assert!(!e.public_message().is_empty(), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Page and refresh tokens.

const KINDS: [TokenKind; 4] =
    [TokenKind::QueryPage, TokenKind::Refresh, TokenKind::ChangesPage, TokenKind::StreamingPage];

fn signer() -> SigningKey {
    SigningKey::new(b"0123456789abcdef0123456789abcdef").expect("a key")
}

fn table(name: &str, id: &str) -> SharedTable {
    SharedTable {
        share: "s".into(),
        schema: "c".into(),
        name: name.into(),
        share_id: None,
        id: id.into(),
        location: url::Url::parse("file:///data/t/").expect("a URL"),
        history_shared: true,
        start_version: 0,
        cdf_enabled: None,
        partition_filter: None,
    }
}

fn scope(recipient_id: &str, table_name: &str, max_files: Option<i64>) -> Scope {
    let who = Principal::new(recipient_id, "r", BTreeMap::new());
    Scope::new(&who, &table(table_name, "id"), &[&max_files, &"parquet"])
}

fn position() -> impl Strategy<Value = Position> {
    (any::<u64>(), any::<Option<u64>>(), any::<usize>()).prop_map(|(version, end, next)| Position {
        version,
        end,
        next,
    })
}

/// Redeems a token as every kind; a refusal must be a 400 with a message.
fn check_token(signer: &SigningKey, scope: &Scope, token: &str) -> Vec<Option<Position>> {
    KINDS
        .iter()
        .map(|&kind| match tokens::redeem(signer, kind, scope, token) {
            Ok(p) => Some(p),
            Err(e) => {
                assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
                check_refusal(&e);
                None
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_arbitrary_text(token in any::<String>()) {
        let signer = signer();
        prop_assert!(check_token(&signer, &scope("r", "t", None), &token).iter().all(Option::is_none));
    }

    #[test]
    fn token_round_trips(
        at in position(),
        kind in 0..4usize,
        who in any::<String>(),
        name in any::<String>(),
        max_files in any::<Option<i64>>(),
    ) {
        let signer = signer();
        let scope = scope(&who, &name, max_files);
        let token = tokens::issue(&signer, KINDS[kind], &scope, at, 60_000);
        let redeemed = check_token(&signer, &scope, &token);
        for (i, p) in redeemed.into_iter().enumerate() {
            prop_assert_eq!(p, (i == kind).then_some(at), "redeemed as kind {}", i);
        }
    }

    #[test]
    fn token_edited(at in position(), edits in edits()) {
        let signer = signer();
        let scope = scope("r", "t", Some(10));
        let token = tokens::issue(&signer, TokenKind::QueryPage, &scope, at, 60_000);
        let edited = mutate(&token, &edits);
        let redeemed = check_token(&signer, &scope, &edited);
        // Base64 has one spelling for each byte string: an edited token that still opens is
        // the same token.
        prop_assert!(redeemed.iter().all(|p| p.is_none() || (edited == token && *p == Some(at))));
    }

    #[test]
    fn token_open_of_anything(body in prop::collection::vec(any::<u8>(), 0..128), sig in prop::collection::vec(any::<u8>(), 0..32)) {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let token = format!("{}.{}", b64(&body), b64(&sig));
        prop_assert!(signer().open::<serde_json::Value>("query-page", &token).is_none());
    }
}

#[test]
fn token_hostile_inputs() {
    let signer = signer();
    let scope = scope("r", "t", None);
    let a = "A".repeat(MIB);
    for token in [
        ".".repeat(MIB),
        format!("{a}.{a}"),
        format!("{a}.AAAAAAAAAAAAAAAAAAAAAA"),
        "\0".repeat(MIB),
        "=".repeat(MIB),
        "\u{1F600}".repeat(MIB / 4),
    ] {
        assert_fast("a hostile token", &token, |t| {
            check_token(&signer, &scope, t);
        });
    }
    // Tokens this server signed but that do not hold a position (the key is the server's, so
    // only the server can make them): deep nesting, a huge body, wrong types.
    let mut deep = serde_json::json!(1);
    for _ in 0..1_000 {
        deep = serde_json::json!([deep]);
    }
    let huge = serde_json::json!({"b": "x".repeat(MIB), "f": "", "x": i64::MAX, "v": 1});
    let wrong = serde_json::json!({"b": 1, "f": [], "x": "soon", "v": -1, "n": 1e300});
    for value in [deep, huge, wrong] {
        let token = signer.seal("query-page", &value);
        assert_fast("a signed token without a position", &token, |t| {
            assert!(check_token(&signer, &scope, t).iter().all(Option::is_none));
        });
    }
}

#[test]
fn token_redeems_in_linear_time() {
    let signer = signer();
    let scope = scope("r", "t", None);
    assert_linear(
        "token: long body",
        10_000,
        8 * MIB,
        |n| format!("{}.AAAAAAAAAAAAAAAAAAAAAA", "A".repeat(n)),
        |t| {
            check_token(&signer, &scope, t);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Signed file URLs and their grant segment.

fn check_file_url(signer: &SigningKey, grant: &str, path: &str, expires: &str, signature: &str) -> bool {
    match check_url(signer, grant, path, expires, signature, 1_000) {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(e.status(), StatusCode::FORBIDDEN, "{e:?}");
            check_refusal(&e);
            false
        }
    }
}

/// The signed URL of a file, cut back into what the file route receives (the path decoded).
fn signed_url(signer: &SigningKey, grant: &FileGrant, path: &str, expires: i64) -> (String, String, String, String) {
    let segment = grant.encode();
    let mut url = String::new();
    write_url(signer, &mut url, "http://h/ds", &segment, path, expires);
    let query = url.rsplit_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: BTreeMap<_, _> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let encoded = url.split_once(&format!("/files/{segment}/")).map(|(_, rest)| rest).unwrap_or_default();
    let encoded = encoded.split_once('?').map(|(p, _)| p).unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8().map(|p| p.into_owned());
    assert_eq!(decoded.as_deref(), Ok(path));
    (segment, decoded.unwrap_or_default(), params["se"].clone(), params["sig"].clone())
}

fn file_grant() -> impl Strategy<Value = FileGrant> {
    let id = prop_oneof![any::<String>(), any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).to_string())];
    (id.clone(), id).prop_map(|(table_id, recipient_id)| FileGrant { table_id, recipient_id })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn file_url_arbitrary_parts(grant in any::<String>(), path in any::<String>(), expires in any::<String>(), sig in any::<String>()) {
        prop_assert!(!check_file_url(&signer(), &grant, &path, &expires, &sig));
        prop_assert!(FileGrant::decode(&grant).is_none_or(|g| FileGrant::decode(&g.encode()) == Some(g)));
    }

    #[test]
    fn file_url_round_trips(grant in file_grant(), path in any::<String>(), expires in 0..2_000i64) {
        let signer = signer();
        let (segment, path, se, sig) = signed_url(&signer, &grant, &path, expires);
        prop_assert_eq!(check_file_url(&signer, &segment, &path, &se, &sig), expires >= 1_000);
        prop_assert_eq!(FileGrant::decode(&segment), Some(grant));
    }

    #[test]
    fn file_url_edited(grant in file_grant(), path in "[a-z0-9/._-]{1,40}", part in 0..4usize, edits in edits()) {
        let signer = signer();
        let (mut segment, mut path, mut se, mut sig) = signed_url(&signer, &grant, &path, 5_000);
        let target = [&mut segment, &mut path, &mut se, &mut sig][part].clone();
        let edited = mutate(&target, &edits);
        *[&mut segment, &mut path, &mut se, &mut sig][part] = edited.clone();
        prop_assert_eq!(check_file_url(&signer, &segment, &path, &se, &sig), edited == target);
        if part == 0 {
            prop_assert!(FileGrant::decode(&segment).is_none_or(|g| FileGrant::decode(&g.encode()) == Some(g)));
        }
    }
}

#[test]
fn file_url_hostile_inputs() {
    let signer = signer();
    let long = "A".repeat(MIB);
    let dots = ".".repeat(MIB);
    let nuls = "\0".repeat(MIB);
    let digits = "9".repeat(MIB);
    let parts: [(&str, &str, &str, &str); 6] = [
        (&long, "p", "1", "x"),
        ("g", &long, "1", "x"),
        ("g", "p", &digits, "x"),
        ("g", "p", "1", &long),
        (&dots, &dots, &dots, &dots),
        (&nuls, &nuls, &nuls, &nuls),
    ];
    for (grant, path, expires, sig) in parts {
        let start = Instant::now();
        assert!(!check_file_url(&signer, grant, path, expires, sig));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
    for segment in
        [long.clone(), dots, nuls, format!("s{long}.s{long}"), format!("u{long}.u"), "\u{1F600}".repeat(MIB / 4)]
    {
        assert_fast("a hostile grant", &segment, |s| {
            let _ = FileGrant::decode(s);
        });
    }
}

#[test]
fn file_url_checks_in_linear_time() {
    let signer = signer();
    assert_linear(
        "file url: long path",
        10_000,
        8 * MIB,
        |n| "a/".repeat(n),
        |p| {
            check_file_url(&signer, "g", p, "1", "AAAA");
        },
    );
    assert_linear(
        "grant: long ids",
        10_000,
        8 * MIB,
        |n| format!("s{}.s{}", "QUFB".repeat(n), "QUFB".repeat(n)),
        |s| {
            let _ = FileGrant::decode(s);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The Range header.

/// Parses a header; a range must lie inside the file, a refusal must be a 416.
fn check_range(value: &str, size: u64) -> Option<Option<(u64, u64)>> {
    match parse_range(value, size) {
        Ok(Some((start, end))) => {
            assert!(start <= end && end < size, "{value:?} of {size}: {start}-{end}");
            Some(Some((start, end)))
        }
        Ok(None) => Some(None),
        Err(e) => {
            assert_eq!(e.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{e:?}");
            check_refusal(&e);
            None
        }
    }
}

/// What a single `bytes=first-last` range means (RFC 9110 §14.1.2), absent numbers as `None`.
fn expected_range(first: Option<u64>, last: Option<u64>, size: u64) -> Option<Option<(u64, u64)>> {
    let range = match (first, last) {
        (Some(f), Some(l)) if f <= l && f < size => (f, l.min(size - 1)),
        (Some(f), None) if f < size => (f, size - 1),
        (None, Some(n)) if n > 0 && size > 0 => (size.saturating_sub(n), size - 1),
        _ => return None,
    };
    Some(Some(range))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn range_arbitrary_text(value in any::<String>(), size in any::<u64>()) {
        check_range(&value, size);
        check_range(&format!("bytes={value}"), size);
    }

    #[test]
    fn range_means_what_it_says(
        first in proptest::option::of(prop_oneof![0..200u64, any::<u64>()]),
        last in proptest::option::of(prop_oneof![0..200u64, any::<u64>()]),
        size in prop_oneof![0..100u64, any::<u64>()],
        spaces in any::<bool>(),
    ) {
        prop_assume!(first.is_some() || last.is_some());
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let sp = if spaces { " " } else { "" };
        let value = format!("{sp}bytes={sp}{}{sp}-{sp}{}{sp}", n(first), n(last));
        prop_assert_eq!(check_range(&value, size), expected_range(first, last, size), "{}", value);
    }

    #[test]
    fn range_edited(first in 0..1_000u64, last in 0..1_000u64, size in 0..1_000u64, edits in edits()) {
        check_range(&mutate(&format!("bytes={first}-{last}"), &edits), size);
    }
}

#[test]
fn range_hostile_inputs() {
    for value in [
        format!("bytes={}-", "9".repeat(MIB)),
        format!("bytes=-{}", "9".repeat(MIB)),
        format!("bytes={}", "-".repeat(MIB)),
        format!("bytes={}", ",".repeat(MIB)),
        format!("bytes={}", "0-1,".repeat(MIB / 4)),
        format!("{}bytes=0-1", " ".repeat(MIB)),
        "bytes=".repeat(MIB / 6),
        "\0".repeat(MIB),
        format!("bytes=0-{}", "\u{1F600}".repeat(MIB / 4)),
        "bytes=18446744073709551615-18446744073709551615".to_owned(),
        "bytes=-18446744073709551615".to_owned(),
        "bytes=18446744073709551616-".to_owned(),
        "bytes=+1-2".to_owned(),
    ] {
        for size in [0, 1, u64::MAX] {
            assert_fast("a hostile Range", &value, |v| {
                check_range(v, size);
            });
        }
    }
}

#[test]
fn range_parses_in_linear_time() {
    assert_linear(
        "range: long number",
        10_000,
        8 * MIB,
        |n| format!("bytes=0-{}", "0".repeat(n)),
        |v| {
            check_range(v, 100);
        },
    );
    assert_linear(
        "range: many ranges",
        10_000,
        8 * MIB,
        |n| format!("bytes={}", "0-1,".repeat(n)),
        |v| {
            check_range(v, 100);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The /query body.

/// Reads a body as the `/query` route does; refusals are 400s with a message.
fn check_query(body: impl Into<Bytes>) -> bool {
    let req: QueryRequest = match body_json(Ok(body.into())) {
        Ok(req) => req,
        Err(e) => {
            assert!(matches!(e, ApiError::Malformed(_)), "{e:?}");
            check_refusal(&e);
            return false;
        }
    };
    match req.validate().map_err(|e| ApiError::InvalidParameter(e.0)) {
        Ok(()) => true,
        Err(e) => {
            assert!(matches!(e, ApiError::InvalidParameter(_)), "{e:?}");
            check_refusal(&e);
            false
        }
    }
}

/// A `/query` body: each field absent, of its type, or of another type.
fn query_body() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let int = prop_oneof![Just(json!(null)), (-3..100i64).prop_map(Value::from), any::<i64>().prop_map(Value::from)];
    let text = prop_oneof![Just(json!(null)), any::<String>().prop_map(Value::from)];
    let flag = prop_oneof![Just(json!(null)), any::<bool>().prop_map(Value::from)];
    let hints = prop_oneof![
        Just(json!(null)),
        prop::collection::vec(any::<String>(), 0..4).prop_map(Value::from),
        Just(json!({"op": "isNull", "children": [{"op": "column", "name": "a", "valueType": "int"}]})),
    ];
    let any_value = prop_oneof![int.clone(), text.clone(), flag.clone(), hints.clone(), Just(json!([[[]]]))];
    let fields = (
        (hints.clone(), hints, int.clone(), int.clone(), text.clone(), int.clone()),
        (int.clone(), int, text.clone(), flag, text),
        prop::collection::vec(any::<bool>(), 11),
        (any::<String>(), any_value),
    );
    fields.prop_map(|((p, j, l, v, t, s), (e, m, pt, ir, rt), keep, (extra_key, extra))| {
        let names = [
            "predicateHints",
            "jsonPredicateHints",
            "limitHint",
            "version",
            "timestamp",
            "startingVersion",
            "endingVersion",
            "maxFiles",
            "pageToken",
            "includeRefreshToken",
            "refreshToken",
        ];
        let values = [p, j, l, v, t, s, e, m, pt, ir, rt];
        let mut body: serde_json::Map<String, Value> =
            names.iter().zip(values).zip(keep).filter(|(_, k)| *k).map(|((n, v), _)| ((*n).to_owned(), v)).collect();
        if !names.contains(&extra_key.as_str()) {
            body.insert(extra_key, extra);
        }
        Value::Object(body)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_query(body);
    }

    #[test]
    fn query_arbitrary_text(body in any::<String>()) {
        check_query(body);
    }

    #[test]
    fn query_bodies_of_any_shape(body in query_body()) {
        let text = body.to_string();
        let accepted = check_query(text.clone());
        // Every well-typed body without conflicting fields is accepted.
        let number = |k: &str| body.get(k).and_then(serde_json::Value::as_i64);
        let given = ["version", "timestamp", "startingVersion"].iter().filter(|k| body.get(**k).is_some_and(|v| !v.is_null())).count();
        let refresh = body.get("includeRefreshToken") == Some(&serde_json::json!(true)) || body.get("refreshToken").is_some_and(|v| !v.is_null());
        let well_typed = serde_json::from_str::<QueryRequest>(&text).is_ok();
        let valid = well_typed
            && given <= 1
            && ["version", "startingVersion", "endingVersion", "limitHint"].iter().all(|k| number(k).is_none_or(|n| n >= 0))
            && number("maxFiles").is_none_or(|n| n > 0)
            && number("startingVersion").zip(number("endingVersion")).is_none_or(|(s, e)| s <= e)
            && !(refresh && (given > 0 || body.get("pageToken").is_some_and(|v| !v.is_null())));
        prop_assert_eq!(accepted, valid, "{}", text);
    }

    #[test]
    fn query_edited(body in query_body(), edits in edits()) {
        check_query(mutate(&body.to_string(), &edits));
    }
}

#[test]
fn query_deep_nesting_fails_cleanly() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let nested = nest(open, "1", close, 10_000);
        // An object of unknown fields is a valid (empty) query; an array is not.
        check_query(nested.clone());
        assert!(!check_query(format!(r#"{{"jsonPredicateHints":{nested}}}"#)));
        assert!(!check_query(format!(r#"{{"predicateHints":{nested}}}"#)));
        // Unknown fields are skipped without recursion: accepted, however deep.
        check_query(format!(r#"{{"future":{nested},"version":1}}"#));
    }
    // A predicate tree as deep as a body may carry still parses without a crash (and is
    // refused as a hint, which only means every file is returned).
    let tree = nest(
        r#"{"op":"not","children":["#,
        r#"{"op":"isNull","children":[{"op":"column","name":"a","valueType":"int"}]}"#,
        "]}",
        60,
    );
    let body = format!(r#"{{"jsonPredicateHints":{tree}}}"#);
    assert!(check_query(body.clone()));
    let value: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
    let _ = d2o_protocol::predicate::Predicate::from_json(&value["jsonPredicateHints"].to_string());
}

#[test]
fn query_huge_bodies() {
    let hints = vec!["a = 1"; MIB / 8];
    for body in [
        serde_json::json!({"predicateHints": hints}).to_string(),
        serde_json::json!({"jsonPredicateHints": "x".repeat(MIB)}).to_string(),
        serde_json::json!({"pageToken": "\u{1F600}".repeat(MIB / 4)}).to_string(),
        format!("{{{}\"version\":1}}", "\"a\":null,".repeat(MIB / 9)),
        format!("{{\"version\":{}}}", "9".repeat(MIB)),
        format!("{}{{}}", " ".repeat(MIB)),
        "\0".repeat(MIB),
    ] {
        assert_fast("a 1 MB /query body", &body, |b| {
            check_query(b.to_owned());
        });
    }
}

#[test]
fn query_parses_in_linear_time() {
    let parse = |b: &str| {
        check_query(b.to_owned());
    };
    assert_linear(
        "query: many hints",
        1_000,
        8 * MIB,
        |n| serde_json::json!({"predicateHints": vec!["a = 1"; n]}).to_string(),
        parse,
    );
    assert_linear(
        "query: many unknown fields",
        1_000,
        8 * MIB,
        |n| format!("{{{}\"version\":1}}", (0..n).map(|i| format!("\"k{i}\":[[]],")).collect::<String>()),
        parse,
    );
    assert_linear(
        "query: long escaped token",
        1_000,
        8 * MIB,
        |n| format!("{{\"pageToken\":\"{}\"}}", "\\u00e9\\\"".repeat(n)),
        parse,
    );
}

// ---------------------------------------------------------------------------------------------
// Forwarded headers.

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            h.append(*name, v);
        }
    }
    h
}

/// The address as the server compares it: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0..4u8).prop_map(|i| IpAddr::from([10, 0, 0, i])),
        (0..4u8).prop_map(|i| IpAddr::from([203, 0, 113, i])),
        (0..4u8).prop_map(|i| IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, u16::from(i)])),
        any::<IpAddr>(),
    ]
}

fn proxies() -> TrustedProxies {
    TrustedProxies::parse(&["10.0.0.0/8", "::1"]).expect("valid ranges")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn forwarded_arbitrary_headers(peer in ip(), forwarded in any::<String>(), xff in any::<String>(), which in 0..3usize) {
        let pairs = [("forwarded", forwarded), ("x-forwarded-for", xff)];
        let h = headers(match which {
            0 => &pairs[..1],
            1 => &pairs[1..],
            _ => &pairs[..],
        });
        let client = proxies().client_of(peer, &h);
        prop_assert_eq!(client, canonical(client));
        // Only a trusted proxy's headers are believed.
        if !matches!(canonical(peer), IpAddr::V4(v4) if v4.octets()[0] == 10) && canonical(peer) != IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]) {
            prop_assert_eq!(client, canonical(peer));
        }
    }

    #[test]
    fn forwarded_chain_is_walked_from_the_right(peer in ip(), chain in prop::collection::vec(ip(), 0..6), style in 0..3usize) {
        let proxies = proxies();
        let trusted = |ip: IpAddr| matches!(canonical(ip), IpAddr::V4(v4) if v4.octets()[0] == 10) || canonical(ip) == IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]);
        let node = |ip: &IpAddr| match (style, ip) {
            (0, _) => ip.to_string(),
            (_, IpAddr::V6(_)) => format!("\"[{ip}]:4711\""),
            (_, IpAddr::V4(_)) => format!("{ip}:4711"),
        };
        let h = if style == 0 {
            headers(&[("x-forwarded-for", chain.iter().map(node).collect::<Vec<_>>().join(", "))])
        } else {
            let elements: Vec<String> = chain.iter().map(|ip| format!("proto=https;For={}", node(ip))).collect();
            headers(&[("forwarded", elements.join(", "))])
        };
        let mut expected = canonical(peer);
        if trusted(peer) {
            for hop in chain.iter().rev() {
                expected = canonical(*hop);
                if !trusted(*hop) {
                    break;
                }
            }
        }
        prop_assert_eq!(proxies.client_of(peer, &h), expected);
    }

    #[test]
    fn forwarded_edited(chain in prop::collection::vec(ip(), 1..4), edits in edits(), name in prop::sample::select(&["forwarded", "x-forwarded-for"][..])) {
        let value = chain.iter().map(|ip| format!("for=\"[{ip}]\"")).collect::<Vec<_>>().join(", ");
        let h = headers(&[(name, mutate(&value, &edits))]);
        let _ = proxies().client_of(IpAddr::from([10, 0, 0, 1]), &h);
    }
}

#[test]
fn forwarded_hostile_inputs() {
    let peer = IpAddr::from([10, 0, 0, 1]);
    let proxies = proxies();
    for value in [
        "10.0.0.2,".repeat(MIB / 9),
        ",".repeat(MIB),
        ";".repeat(MIB),
        "=".repeat(MIB),
        "for=".repeat(MIB / 4),
        "[".repeat(MIB),
        "\"".repeat(MIB),
        format!("for=\"[{}]\"", ":".repeat(MIB)),
        format!("for={}", "9".repeat(MIB)),
    ] {
        for name in ["forwarded", "x-forwarded-for"] {
            let h = headers(&[(name, value.clone())]);
            let start = Instant::now();
            let _ = proxies.client_of(peer, &h);
            assert!(start.elapsed() < Duration::from_secs(2), "{name}: {:.20}", value);
        }
    }
    // Many header lines, up to what a header map holds.
    let mut h = HeaderMap::new();
    for _ in 0..10_000 {
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2, 10.0.0.3"));
    }
    h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.4, 10.0.0.9"));
    assert_eq!(proxies.client_of(peer, &h), IpAddr::from([198, 51, 100, 4]));
}

#[test]
fn forwarded_headers_are_read_in_linear_time() {
    let peer = IpAddr::from([10, 0, 0, 1]);
    let proxies = proxies();
    assert_linear(
        "forwarded: trusted hops",
        1_000,
        8 * MIB,
        |n| "for=10.0.0.2;proto=https, ".repeat(n),
        |v| {
            proxies.client_of(peer, &headers(&[("forwarded", v.to_owned())]));
        },
    );
    assert_linear(
        "x-forwarded-for: trusted hops",
        1_000,
        8 * MIB,
        |n| "10.0.0.2, ".repeat(n),
        |v| {
            proxies.client_of(peer, &headers(&[("x-forwarded-for", v.to_owned())]));
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The YAML configuration.

/// Parses a config; a refusal must say why.
fn check_config(text: &str) {
    if let Err(e) = ServerConfig::parse(text, Path::new("/etc/ds")) {
        assert!(!e.is_empty());
    }
}

/// A share, schema or table name the protocol allows.
fn name() -> impl Strategy<Value = String> {
    "[\\p{L}\\p{N} _.:'\"#&*!|>%@`{}\\[\\],?\\\\-]{1,16}"
}

type Tree = Vec<(String, Vec<(String, Vec<String>)>)>;

/// Shares of schemas of tables, each name made unique in its list by `_{index}` (the last `_`
/// separates the index, so two names never collide, in any case).
fn tree() -> impl Strategy<Value = Tree> {
    let tables = prop::collection::vec(name(), 0..4);
    let schemas = prop::collection::vec((name(), tables), 0..3);
    let shares = prop::collection::vec((name(), schemas), 0..4);
    shares.prop_map(|shares| {
        let unique = |i: usize, n: String| format!("{n}_{i}");
        shares
            .into_iter()
            .enumerate()
            .map(|(i, (share, schemas))| {
                let schemas = schemas
                    .into_iter()
                    .enumerate()
                    .map(|(j, (schema, tables))| {
                        (unique(j, schema), tables.into_iter().enumerate().map(|(k, t)| unique(k, t)).collect())
                    })
                    .collect();
                (unique(i, share), schemas)
            })
            .collect()
    })
}

/// The YAML of a share tree, names double-quoted (JSON strings are YAML's double-quoted
/// scalars), locations alternately absolute and relative.
fn config_yaml(tree: &Tree) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = String::from("version: 1\nendpoint: /ds/\nshares:\n");
    for (share, schemas) in tree {
        y.push_str(&format!("- name: {}\n  schemas:\n", q(share)));
        for (schema, tables) in schemas {
            y.push_str(&format!("  - name: {}\n    tables:\n", q(schema)));
            for (i, table) in tables.iter().enumerate() {
                let location = if i % 2 == 0 { format!("/data/{i}") } else { format!("rel/../t{i}") };
                y.push_str(&format!("    - name: {}\n      location: {}\n", q(table), q(&location)));
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_arbitrary_text(text in any::<String>()) {
        check_config(&text);
    }

    #[test]
    fn config_reads_the_tree_it_was_given(tree in tree()) {
        let parsed = ServerConfig::parse(&config_yaml(&tree), Path::new("/etc/ds"));
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let (config, report) = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        prop_assert_eq!(&config.endpoint, "/ds");
        let names: Tree = config
            .shares
            .iter()
            .map(|s| {
                let schemas = s
                    .schemas
                    .iter()
                    .map(|c| (c.name.clone().unwrap_or_default(), c.tables.iter().map(|t| t.name.clone().unwrap_or_default()).collect()))
                    .collect();
                (s.name.clone().unwrap_or_default(), schemas)
            })
            .collect();
        prop_assert_eq!(names, tree);
    }

    #[test]
    fn config_edited(tree in tree(), edits in edits()) {
        check_config(&mutate(&config_yaml(&tree), &edits));
    }
}

/// Bug (found by this test): libyaml's scanner does work proportional to the flow depth for
/// every token, so `[[[[...` was quadratic: 10,000 levels took over a second in a debug build,
/// and a 1 MB file would have taken hours, even under a key d2o ignores. Deeper than
/// `MAX_FLOW_DEPTH` is now refused before the YAML parser reads the text.
#[test]
fn config_deep_nesting_fails_cleanly() {
    for nested in [
        nest("[", "1", "]", 10_000),
        nest("{a: ", "1", "}", 10_000),
        nest("[", "", "", 10_000),
        nest("['x', ", "1", "]", 10_000),
        // Closing brackets hidden in quoted strings, comments and tags do not hide the depth.
        nest("[[ \"]]\", ']]''', ", "1", "", 5_000),
        nest("[ # ]]]\n", "1", "", 5_000),
        nest("[ !<]]]> ", "1", "", 5_000),
    ] {
        // Under a key d2o keeps as a YAML value, under an unknown key, and at the top.
        for at in ["version: 1\nrequestTimeoutSeconds: %\n", "version: 1\nfuture: %\n", "%"] {
            let text = at.replace('%', &nested);
            let start = Instant::now();
            let refused = ServerConfig::parse(&text, Path::new("/")).expect_err(&nested[..40]);
            assert!(refused.contains(&format!("nested more than {MAX_FLOW_DEPTH} deep")), "{refused}");
            assert!(start.elapsed() < Duration::from_secs(1));
        }
    }
    let deepest_allowed = nest("[", "1", "]", MAX_FLOW_DEPTH);
    let (config, report) =
        ServerConfig::parse(&format!("version: 1\nfuture: {deepest_allowed}"), Path::new("/")).expect("valid");
    assert_eq!(config.version, Some(1));
    assert_eq!(report.warnings.len(), 1);
    // Block nesting costs libyaml linear time: refused by serde_yaml_ng's own recursion limit
    // where d2o reads it, ignored where d2o does not.
    for block in [nest("- ", "1", "", 10_000), nest("? ", "1", "", 10_000), nest("!t ", "1", "", 10_000)] {
        let refused = ServerConfig::parse(&format!("version: 1\nrequestTimeoutSeconds:\n{block}"), Path::new("/"));
        assert!(refused.is_err_and(|e| !e.is_empty()));
        check_config(&format!("version: 1\nfuture:\n{block}"));
        check_config(&block);
    }
}

/// A flow collection in YAML and how deeply it nests, with what could hide brackets from a
/// careless reader: quoted strings, comments, tags and plain scalars full of brackets, quotes
/// and line breaks of every kind.
fn flow_yaml() -> impl Strategy<Value = (String, usize)> {
    let text = "[^\\p{C}]{0,8}";
    let scalar = prop_oneof![
        "[a-z][a-z0-9 ]{0,6}[a-z0-9]".prop_map(|s| (s, 0)),
        "[a-z][a-z0-9'\"#!&*]{0,6}".prop_map(|s| (s, 0)),
        text.prop_map(|s| (format!("'{}'", s.replace('\'', "''")), 0)),
        text.prop_map(|s| (serde_json::to_string(&s).unwrap_or_default(), 0)),
        Just(("!<tag:[]]'> a".to_owned(), 0)),
        Just(("!t a".to_owned(), 0)),
    ];
    let separator = prop::sample::select(
        &[", ", ",\n  ", " ,", ", # ]]'\"\n", ", # ]}\u{2028}", ", # ]\u{85}", "\n, ", ", &a "][..],
    );
    let nested = scalar.prop_recursive(6, 64, 4, move |inner| {
        let children = (prop::collection::vec(inner, 0..4), separator.clone());
        prop_oneof![
            children.clone().prop_map(|(kids, sep)| {
                let depth = 1 + kids.iter().map(|(_, d)| *d).max().unwrap_or(0);
                let items: Vec<String> = kids.into_iter().map(|(y, _)| y).collect();
                (format!("[{}]", items.join(sep)), depth)
            }),
            children.prop_map(|(kids, sep)| {
                let depth = 1 + kids.iter().map(|(_, d)| *d).max().unwrap_or(0);
                let items: Vec<String> = kids.into_iter().enumerate().map(|(i, (y, _))| format!("k{i}: {y}")).collect();
                (format!("{{{}}}", items.join(sep)), depth)
            }),
        ]
    });
    // Sometimes inside a long chain of brackets, past the limit and past libyaml's own.
    (nested, prop_oneof![3 => Just(0usize), 1 => 0..150usize])
        .prop_map(|((yaml, depth), wrap)| (format!("{}{yaml}{}", "[".repeat(wrap), "]".repeat(wrap)), depth + wrap))
}

proptest! {
    #![proptest_config(config())]

    /// The depth check never underestimates: it is what keeps parsing linear.
    #[test]
    fn config_flow_depth_bound_holds((yaml, depth) in flow_yaml(), top in any::<bool>()) {
        let text = if top { yaml.clone() } else { format!("version: 1\nrequestTimeoutSeconds: {yaml}\n") };
        // The generator writes valid YAML: libyaml reads it, up to serde_yaml_ng's depth limit.
        let parsed = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text);
        if depth + usize::from(!top) <= 128 {
            prop_assert!(parsed.is_ok(), "{text}: {parsed:?}");
        } else {
            prop_assert!(parsed.is_err_and(|e| e.to_string().contains("recursion limit exceeded")));
        }
        if depth > 0 {
            prop_assert!(flow_depth_bound(&text, depth - 1).is_some(), "{text}: depth {depth} not seen");
        }
        prop_assert_eq!(ServerConfig::parse(&text, Path::new("/")).is_err_and(|e| e.contains("nested more than")), depth > MAX_FLOW_DEPTH);
    }
}

#[test]
fn config_alias_bombs_fail_cleanly() {
    // Each level refers to the previous one nine times: 9^9 nodes when expanded.
    let mut text = String::from("version: 1\na0: &a0 [x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("requestTimeoutSeconds: *a9\n");
    let start = Instant::now();
    assert!(ServerConfig::parse(&text, Path::new("/")).is_err());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn config_huge_inputs() {
    let inputs = [
        format!("version: 1\nhost: \"{}\"\n", "\\u00e9".repeat(MIB / 6)),
        format!("version: 1\nhost: '{}'\n", "''".repeat(MIB / 2)),
        format!("version: 1\nrequestTimeoutSeconds: |\n{}", "  line\n".repeat(MIB / 7)),
        format!("version: 1\n{}", "#\n".repeat(MIB / 2)),
        format!("version: 1\n{}", "\n".repeat(MIB)),
        format!("version: 1\n{}", "---\n".repeat(MIB / 4)),
        format!("version: 1\nrequestTimeoutSeconds: [{}]\n", ",".repeat(MIB)),
        format!("version: 1\nrequestTimeoutSeconds: {}\n", "\0".repeat(MIB)),
        format!("version: 1\nhost: {}\n", "\u{1F600}".repeat(MIB / 4)),
        format!("version: 1\n{}", (0..MIB / 16).map(|i| format!("unknown{i}: 1\n")).collect::<String>()),
    ];
    for text in &inputs {
        assert_fast("a 1 MB config", text, check_config);
    }
}

/// A config of `n` shares with no schemas: the most shares a file of its size can hold.
fn many_shares(n: usize) -> String {
    let mut y = String::from("version: 1\nshares:\n");
    for i in 0..n {
        y.push_str(&format!("- name: s{i}\n"));
    }
    y
}

/// A config of one schema with `n` tables.
fn many_tables(n: usize) -> String {
    let mut y = String::from("version: 1\nshares:\n- name: s\n  schemas:\n  - name: c\n    tables:\n");
    for i in 0..n {
        y.push_str(&format!("    - {{name: t{i}, location: /d, id: i{i}}}\n"));
    }
    y
}

/// Bug (found by this test): validation checked each share, schema and table name against a
/// list of the names before it, which is quadratic in their number. The names are now kept in
/// hash sets.
#[test]
fn config_with_many_shares_or_tables_parses_in_linear_time() {
    let parse = |t: &str| {
        let parsed = ServerConfig::parse(t, Path::new("/"));
        assert!(parsed.is_ok(), "{:?}", parsed.err());
    };
    // libyaml reads about a megabyte a second in a debug build, so the bound here is 5 s.
    for (what, text) in [("shares", many_shares(MIB / 12)), ("tables", many_tables(MIB / 40))] {
        let start = Instant::now();
        parse(&text);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "1 MB of {what}: {took:?}");
    }
    assert_linear("config: many shares", 1_000, 8 * MIB, many_shares, parse);
    assert_linear("config: many tables", 1_000, 8 * MIB, many_tables, parse);
}

#[test]
fn config_parses_in_linear_time() {
    let deep = nest("[", "", "", MAX_FLOW_DEPTH - 1);
    assert_linear(
        "config: wide at the deepest flow nesting",
        1_000,
        8 * MIB,
        |n| format!("version: 1\nfuture: {deep}{}", "[1, 'a'], ".repeat(n)),
        check_config,
    );
    assert_linear(
        "config: nested to the depth limit",
        10,
        8 * MIB,
        |n| format!("version: 1\nfuture: [{}]\n", vec![nest("[", "1", "]", MAX_FLOW_DEPTH - 1); n].join(",")),
        check_config,
    );
    assert_linear(
        "config: deep block nesting",
        1_000,
        8 * MIB,
        |n| format!("version: 1\nfuture:\n{}1", "- ".repeat(n)),
        check_config,
    );
    assert_linear(
        "config: unknown keys",
        1_000,
        8 * MIB,
        |n| format!("version: 1\n{}", (0..n).map(|i| format!("k{i}: {{a: [1]}}\n")).collect::<String>()),
        check_config,
    );
    assert_linear(
        "config: long escaped scalar",
        1_000,
        8 * MIB,
        |n| format!("version: 1\nhost: \"{}\"\n", "\\u00e9\\\"".repeat(n)),
        check_config,
    );
    assert_linear(
        "config: quoted brackets",
        1_000,
        8 * MIB,
        |n| format!("version: 1\nfuture: [{}]\n", "\"[a\", 'b]', # {c}\n".repeat(n)),
        check_config,
    );
}

#[test]
fn config_written_as_json_is_read() {
    let json = r#"{"version": 1, "endpoint": "/ds", "trustedProxies": ["[::1]", "10.0.0.0/8"],
        "shares": [{"name": "s[1]", "schemas": [{"name": "c", "tables": [{"name": "t", "location": "/d"}]}]}]}"#;
    let (config, _) = ServerConfig::parse(json, Path::new("/")).expect("a JSON config");
    assert_eq!(config.shares[0].name.as_deref(), Some("s[1]"));
    assert_eq!(flow_depth_bound(json, 7), None, "the bound is tight for ordinary files");
    assert!(flow_depth_bound(json, 6).is_some());
}
