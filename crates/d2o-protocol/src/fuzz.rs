//! Property and fuzz tests for every parser in this crate that reads outside input: profile
//! files, JSON and SQL predicate hints, the capabilities header and timestamps.
//!
//! Each parser gets arbitrary text, valid input with random edits (see [`mutate`]), and hostile
//! input built by hand: 10,000-deep nesting, 1 MB inputs, long runs of one separator, odd
//! Unicode, NULs. None may panic or overflow the stack (deep nesting runs on the test thread's
//! ordinary stack, so an overflow would abort the run), every error carries a message, and the
//! inputs most likely to be super-linear are timed at two sizes ([`assert_linear`]). Inputs that
//! must round-trip do.
//!
//! Each property runs [`CASES`] cases unless `PROPTEST_CASES` says otherwise.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;

use crate::capabilities::{Capabilities, ResponseFormat};
use crate::predicate::{
    CmpOp, ColumnFacts, FileView, Leaf, MAX_DEPTH, MAX_HINT_BYTES, Predicate, PredicateError, ValueType,
};
use crate::profile::{Credentials, Profile};
use crate::timestamp::{format_timestamp_millis, parse_timestamp_millis};

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
    "AND", "and", "IS", "NOT", "NULL", "null", "true", "1e999", "-0", "9223372036854775808", "0x1F", "NaN",
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

/// The fastest of seven runs: the one least disturbed by other work on the machine.
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
/// most 30 times as long. Linear is about 8 times; quadratic would be about 64. A parse that
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
    // Linear is about 8 (more once the input leaves the caches); quadratic about 64.
    assert!(ratio < 40.0, "{what}: {small:?} for n={n} but {large:?} for 8n: super-linear");
    assert!(large < Duration::from_secs(2), "{what}: {large:?} for {} bytes", input.len());
}

/// Asserts that `parse` handles a 1 MB input within a generous bound for a debug build.
fn assert_fast(what: &str, input: &str, parse: impl Fn(&str)) {
    let start = Instant::now();
    parse(input);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "{what}: {took:?} for {} bytes", input.len());
}

/// `open` repeated `n` times, then `middle`, then `close` repeated `n` times.
fn nest(open: &str, middle: &str, close: &str, n: usize) -> String {
    let mut s = String::with_capacity((open.len() + close.len()) * n + middle.len());
    s.push_str(&open.repeat(n));
    s.push_str(middle);
    s.push_str(&close.repeat(n));
    s
}

// ---------------------------------------------------------------------------------------------
// Profile files.

fn profile() -> impl Strategy<Value = Profile> {
    let text = any::<String>;
    let credentials = prop_oneof![
        (text(), proptest::option::of(text()))
            .prop_map(|(token, expiration_time)| Credentials::BearerToken { token, expiration_time }),
        (text(), text(), text(), proptest::option::of(text())).prop_map(
            |(token_endpoint, client_id, client_secret, scope)| Credentials::OAuthClientCredentials {
                token_endpoint,
                client_id,
                client_secret,
                scope
            }
        ),
        (text(), text()).prop_map(|(username, password)| Credentials::Basic { username, password }),
    ];
    (credentials, text(), -3..=2i32).prop_map(|(credentials, endpoint, version)| {
        let version = match credentials {
            Credentials::BearerToken { .. } => version,
            _ => 2,
        };
        Profile { share_credentials_version: version, endpoint: endpoint.trim_end_matches('/').to_owned(), credentials }
    })
}

fn check_profile(text: &str) {
    if let Err(e) = Profile::from_json(text) {
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn profile_arbitrary_text(text in any::<String>()) {
        check_profile(&text);
    }

    #[test]
    fn profile_round_trips(p in profile()) {
        prop_assert_eq!(Profile::from_json(&p.to_json()), Ok(p));
    }

    #[test]
    fn profile_edited(p in profile(), edits in edits()) {
        check_profile(&mutate(&p.to_json(), &edits));
    }
}

#[test]
fn profile_deep_nesting_fails_cleanly() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        // In an ignored key, in a known key, and at the top.
        for at in ["{\"x\":%,\"shareCredentialsVersion\":1}", "{\"endpoint\":%}", "%"] {
            let text = at.replace('%', &nest(open, "1", close, 10_000));
            assert!(Profile::from_json(&text).is_err(), "{open} nested 10,000 deep in {at}");
        }
    }
}

#[test]
fn profile_huge_inputs() {
    let token = "é\\u00e9\\\"".repeat(MIB / 10);
    let text = format!(r#"{{"shareCredentialsVersion":1,"endpoint":"e","bearerToken":"{token}"}}"#);
    assert_fast("profile with a 1 MB token", &text, check_profile);
    assert!(Profile::from_json(&text).is_ok());
    let unknown: String = (0..MIB / 12).map(|i| format!("\"k{i}\":[],")).collect();
    let text = format!(r#"{{{unknown}"shareCredentialsVersion":1,"endpoint":"e","bearerToken":"t"}}"#);
    assert_fast("profile with 1 MB of unknown keys", &text, check_profile);
    assert!(Profile::from_json(&text).is_ok());
    assert_fast("1 MB of NULs", &"\0".repeat(MIB), check_profile);
    assert_fast("1 MB of commas", &format!("{{{}}}", ",".repeat(MIB)), check_profile);
}

#[test]
fn profile_parses_in_linear_time() {
    assert_linear(
        "profile: nested arrays in an ignored key",
        10,
        8 * MIB,
        |n| format!("{{\"x\":[{}],\"shareCredentialsVersion\":1}}", vec![nest("[", "", "]", 100); n].join(",")),
        check_profile,
    );
    assert_linear(
        "profile: long escaped token",
        10_000,
        8 * MIB,
        |n| format!(r#"{{"shareCredentialsVersion":1,"endpoint":"e","bearerToken":"{}"}}"#, "\\u00e9\\n".repeat(n)),
        check_profile,
    );
}

// ---------------------------------------------------------------------------------------------
// JSON predicate hints.

fn value_type() -> impl Strategy<Value = ValueType> {
    use ValueType::*;
    prop::sample::select(&[Bool, Int, Long, String, Date, Float, Double, Timestamp][..])
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        (column_name(), value_type()).prop_map(|(name, value_type)| Leaf::Column { name, value_type }),
        (literal_value(), value_type()).prop_map(|(value, value_type)| Leaf::Literal { value, value_type }),
    ]
}

fn predicate() -> impl Strategy<Value = Predicate> {
    use CmpOp::*;
    let op = prop::sample::select(&[Equal, LessThan, LessThanOrEqual, GreaterThan, GreaterThanOrEqual][..]);
    let comparison = (op, leaf(), leaf()).prop_map(|(op, left, right)| Predicate::Compare { op, left, right });
    let base = prop_oneof![comparison, leaf().prop_map(Predicate::IsNull)];
    // And and Or with at least two children: the protocol's rule, and what `to_json` keeps.
    base.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..5).prop_map(Predicate::And),
            prop::collection::vec(inner.clone(), 2..5).prop_map(Predicate::Or),
            inner.prop_map(|p| Predicate::Not(Box::new(p))),
        ]
    })
}

/// Parses a hint; a hint that parses must survive a round trip unchanged.
fn check_json_hint(text: &str) {
    match Predicate::from_json(text) {
        Ok(p) => assert_eq!(Predicate::from_json(&p.to_json()), Ok(p), "{text:?}"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

const IS_NULL: &str = r#"{"op":"isNull","children":[{"op":"column","name":"a","valueType":"int"}]}"#;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_hint_arbitrary_text(text in any::<String>()) {
        check_json_hint(&text);
    }

    #[test]
    fn json_hint_round_trips(p in predicate()) {
        prop_assert_eq!(Predicate::from_json(&p.to_json()), Ok(p));
    }

    #[test]
    fn json_hint_edited(p in predicate(), edits in edits()) {
        check_json_hint(&mutate(&p.to_json(), &edits));
    }
}

/// Values at the edges of what predicate evaluation parses: dates and timestamps at chrono's
/// limits, integers at i64's, floats that are not finite.
#[rustfmt::skip]
const EDGE_VALUES: &[&str] = &[
    "2020-01-01", "+262142-12-31", "-262143-01-01", "9999-12-31T23:59:59.999999999Z", "+262142-12-31T23:59:59Z",
    "-262143-01-01T00:00:00-23:59", "2020-01-01 00:00:00", "2020-02-30", "9223372036854775807",
    "-9223372036854775808", "9223372036854775808", "1e308", "-1e309", "NaN", "inf", "-0", "true", "FALSE", "",
    "\u{1F600}", "a",
];

/// A column name from a small set (so that files know it), or any name.
fn column_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(&["a", "b", "c"][..]).prop_map(str::to_owned), 1 => any::<String>()]
}

/// An edge value, or any text.
fn literal_value() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(EDGE_VALUES).prop_map(str::to_owned), 1 => any::<String>()]
}

/// What a file knows of columns `a`, `b` and `c`: partition values or statistics.
#[derive(Debug)]
struct File {
    partitions: std::collections::BTreeMap<String, Option<String>>,
    stats: serde_json::Value,
}

impl FileView for File {
    fn column(&self, column: &str) -> Option<ColumnFacts<'_>> {
        if let Some(v) = self.partitions.get(column) {
            return Some(ColumnFacts::Partition(v.as_deref()));
        }
        let get = |section: &str| self.stats.get(section).and_then(|s| s.get(column));
        Some(ColumnFacts::Stats {
            min: get("minValues"),
            max: get("maxValues"),
            null_count: get("nullCount").and_then(serde_json::Value::as_i64),
            num_records: self.stats.get("numRecords").and_then(serde_json::Value::as_i64),
        })
    }
}

fn file() -> impl Strategy<Value = File> {
    let stat = prop_oneof![
        literal_value().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let partitions = prop::collection::btree_map(column_name(), proptest::option::of(literal_value()), 0..2);
    let stats = prop::collection::btree_map(column_name(), (stat.clone(), stat, any::<Option<i64>>()), 0..3);
    (partitions, stats, any::<Option<i64>>()).prop_map(|(partitions, stats, num_records)| {
        let section = |pick: fn(&(serde_json::Value, serde_json::Value, Option<i64>)) -> serde_json::Value| {
            serde_json::Value::Object(stats.iter().map(|(k, v)| (k.clone(), pick(v))).collect())
        };
        let stats = serde_json::json!({
            "numRecords": num_records,
            "minValues": section(|v| v.0.clone()),
            "maxValues": section(|v| v.1.clone()),
            "nullCount": section(|v| v.2.into()),
        });
        File { partitions, stats }
    })
}

proptest! {
    #![proptest_config(config())]

    /// A hint that parses is evaluated against every file the server lists: it must not panic
    /// whatever the file's statistics say.
    #[test]
    fn json_hint_evaluates_over_any_file(p in predicate(), file in file()) {
        let _ = p.may_match(&file);
        let parsed = Predicate::from_json(&p.to_json());
        prop_assert!(parsed.is_ok_and(|q| q.may_match(&file) == p.may_match(&file)));
    }
}

#[test]
fn json_hint_deep_nesting_fails_cleanly() {
    for depth in [MAX_DEPTH + 1, 10_000] {
        let hint = nest(r#"{"op":"not","children":["#, IS_NULL, "]}", depth);
        assert!(Predicate::from_json(&hint).is_err(), "not nested {depth} deep");
        let hint = nest(r#"{"op":"and","children":["#, IS_NULL, &format!(",{IS_NULL}]}}"), depth);
        assert!(Predicate::from_json(&hint).is_err(), "and nested {depth} deep");
    }
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let nested = nest(open, "1", close, 10_000);
        assert!(Predicate::from_json(&nested).is_err());
        let literal =
            format!(r#"{{"op":"isNull","children":[{{"op":"literal","valueType":"int","value":{nested}}}]}}"#);
        assert!(Predicate::from_json(&literal).is_err());
    }
    // Each level of the tree is two levels of JSON (the node and its children), so serde_json's
    // own limit (128) refuses a tree before MAX_DEPTH does: a refusal, never a crash.
    let shallow = nest(r#"{"op":"not","children":["#, IS_NULL, "]}", 60);
    assert!(Predicate::from_json(&shallow).is_ok());
}

#[test]
fn json_hint_huge_inputs() {
    let children = vec![IS_NULL; (MAX_HINT_BYTES - 100) / (IS_NULL.len() + 1)].join(",");
    let wide = format!(r#"{{"op":"or","children":[{children}]}}"#);
    assert!(wide.len() <= MAX_HINT_BYTES);
    assert_fast("a 1 MB or", &wide, check_json_hint);
    assert!(Predicate::from_json(&wide).is_ok());
    let name = "\u{1F600}".repeat((MAX_HINT_BYTES - 100) / 4);
    let long = format!(r#"{{"op":"isNull","children":[{{"op":"column","name":"{name}","valueType":"int"}}]}}"#);
    assert_fast("a 1 MB column name", &long, check_json_hint);
    assert!(matches!(Predicate::from_json(&"[".repeat(MAX_HINT_BYTES + 1)), Err(PredicateError::TooLarge(_))));
    assert_fast("1 MB of NULs", &"\0".repeat(MAX_HINT_BYTES), check_json_hint);
    assert_fast("1 MB of commas", &format!("[{}]", ",".repeat(MAX_HINT_BYTES - 2)), check_json_hint);
}

#[test]
fn json_hint_parses_in_linear_time() {
    assert_linear(
        "json hint: many children",
        200,
        MAX_HINT_BYTES,
        |n| format!(r#"{{"op":"and","children":[{}]}}"#, vec![IS_NULL; n.max(2)].join(",")),
        check_json_hint,
    );
    assert_linear(
        "json hint: long escaped literal",
        2_000,
        MAX_HINT_BYTES,
        |n| {
            format!(
                r#"{{"op":"equal","children":[{{"op":"column","name":"a","valueType":"string"}},{{"op":"literal","valueType":"string","value":"{}"}}]}}"#,
                "\\\"\\u00e9".repeat(n)
            )
        },
        check_json_hint,
    );
}

// ---------------------------------------------------------------------------------------------
// SQL predicate hints.

/// Every column is known, so that parsing gets as far as it can.
fn any_column(name: &str) -> Option<ValueType> {
    Some(if name.len().is_multiple_of(2) { ValueType::String } else { ValueType::Long })
}

fn check_sql_hint(text: &str) {
    if let Err(e) = Predicate::from_sql(text, &any_column) {
        assert!(!e.to_string().is_empty());
    }
}

/// A valid SQL hint and what it must parse to.
fn sql_hint() -> impl Strategy<Value = (String, Predicate)> {
    let plain = "[a-zA-Z_][a-zA-Z0-9_.]{0,12}".prop_map(|n| (n.clone(), n));
    let quoted = "[^`]{0,12}".prop_map(|n| (format!("`{n}`"), n));
    let column = prop_oneof![plain, quoted];
    let string = any::<String>().prop_map(|s| (format!("'{}'", s.replace('\'', "''")), s));
    let number = "-?[0-9]{1,12}(\\.[0-9]{1,6})?".prop_map(|n| (n.clone(), n));
    let literal = prop_oneof![string, number];
    let space = prop::sample::select(&[" ", "  ", "\t", "\u{3000}", "\n"][..]);
    let op = prop::sample::select(&["=", "<>", "!=", "<", "<=", ">", ">="][..]);
    let comparison = (column.clone(), op, literal, any::<bool>(), space.clone()).prop_map(
        |((sql_name, name), op, (sql_value, value), flipped, sp)| {
            let value_type = any_column(&name).unwrap_or(ValueType::String);
            let col = Leaf::Column { name, value_type };
            let lit = Leaf::Literal { value, value_type };
            let (text, left, right) = if flipped {
                (format!("{sql_value}{sp}{op}{sp}{sql_name}"), lit, col)
            } else {
                (format!("{sql_name}{sp}{op}{sp}{sql_value}"), col, lit)
            };
            let cmp = |op| Predicate::Compare { op, left: left.clone(), right: right.clone() };
            let p = match op {
                "=" => cmp(CmpOp::Equal),
                "<" => cmp(CmpOp::LessThan),
                "<=" => cmp(CmpOp::LessThanOrEqual),
                ">" => cmp(CmpOp::GreaterThan),
                ">=" => cmp(CmpOp::GreaterThanOrEqual),
                _ => Predicate::Not(Box::new(cmp(CmpOp::Equal))),
            };
            (text, p)
        },
    );
    let null_check = (column, any::<bool>(), any::<bool>(), space).prop_map(|((sql_name, name), not, upper, sp)| {
        let words = if not { "is not null" } else { "is null" };
        let words = if upper { words.to_uppercase() } else { words.to_owned() };
        let leaf = Leaf::Column { value_type: any_column(&name).unwrap_or(ValueType::String), name };
        let p = Predicate::IsNull(leaf);
        let p = if not { Predicate::Not(Box::new(p)) } else { p };
        (format!("{sql_name}{sp}{}", words.replace(' ', sp)), p)
    });
    prop_oneof![comparison, null_check]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sql_hint_arbitrary_text(text in any::<String>()) {
        check_sql_hint(&text);
    }

    #[test]
    fn sql_hint_parses_what_it_should((text, expected) in sql_hint()) {
        prop_assert_eq!(Predicate::from_sql(&text, &any_column), Ok(expected));
    }

    #[test]
    fn sql_hint_edited((text, _) in sql_hint(), edits in edits()) {
        check_sql_hint(&mutate(&text, &edits));
    }

    #[test]
    fn sql_hints_skip_what_does_not_parse(hints in prop::collection::vec(any::<String>(), 0..8)) {
        let _ = Predicate::from_sql_hints(&hints, &any_column);
    }
}

#[test]
fn sql_hint_hostile_inputs() {
    for text in [
        nest("(", "a = 1", ")", 10_000),
        format!("a = '{}", "''".repeat(MIB / 2)),
        format!("`{}", "a".repeat(MIB)),
        format!("a = '{}'", "\u{1F600}\0".repeat(MIB / 5)),
        "-".repeat(MIB),
        "=".repeat(MIB),
        "<>".repeat(MIB / 2),
        "\0".repeat(MIB),
        " ".repeat(MIB),
        "9".repeat(MIB),
    ] {
        assert_fast("a 1 MB SQL hint", &text, check_sql_hint);
    }
    let long = format!("a = '{}'", "it''s ".repeat(MIB / 6));
    assert!(Predicate::from_sql(&long, &any_column).is_ok());
    let many = vec!["a = 1".to_owned(); 100_000];
    let start = Instant::now();
    assert!(matches!(Predicate::from_sql_hints(&many, &any_column), Some(Predicate::And(v)) if v.len() == 100_000));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn sql_hint_parses_in_linear_time() {
    assert_linear("sql hint: many tokens", 1_000, 8 * MIB, |n| "a = 1 ".repeat(n), check_sql_hint);
    assert_linear("sql hint: escaped quotes", 1_000, 8 * MIB, |n| format!("a = '{}'", "''x".repeat(n)), check_sql_hint);
    assert_linear("sql hint: backticks", 1_000, 8 * MIB, |n| "`a` ".repeat(n), check_sql_hint);
    assert_linear("sql hint: unterminated", 1_000, 8 * MIB, |n| format!("a = '{}", "x".repeat(n)), check_sql_hint);
}

// ---------------------------------------------------------------------------------------------
// The capabilities header.

/// Parses a header (it never fails) and checks what came out is well formed.
fn check_capabilities(text: &str) -> Capabilities {
    let caps = Capabilities::parse(Some(text));
    assert!(caps.response_formats.len() <= 2);
    assert!(!(caps.response_formats.len() == 2 && caps.response_formats[0] == caps.response_formats[1]));
    for f in &caps.reader_features {
        assert!(!f.is_empty() && f.trim() == f && !f.contains([',', ';']), "{f:?}");
        assert_eq!(f, &f.to_ascii_lowercase());
    }
    caps
}

/// A header a client may send and what it says.
fn capabilities_header() -> impl Strategy<Value = (String, Capabilities)> {
    let formats =
        prop::collection::vec(prop::sample::select(&[ResponseFormat::Parquet, ResponseFormat::Delta][..]), 0..3);
    let features = prop::collection::vec("[a-zA-Z0-9_]{1,12}", 0..5);
    (formats, features, any::<bool>(), any::<bool>()).prop_map(|(formats, features, end, upper)| {
        let case = |s: String| if upper { s.to_uppercase() } else { s };
        let list = |v: Vec<&str>| v.join(",");
        let header = format!(
            "{}={};{}={} ; {}={}",
            case("responseFormat".into()),
            case(list(formats.iter().map(|f| f.as_str()).collect())),
            case("readerFeatures".into()),
            list(features.iter().map(String::as_str).collect()),
            case("includeEndStreamAction".into()),
            case(end.to_string()),
        );
        let mut response_formats = Vec::new();
        for f in formats {
            if !response_formats.contains(&f) {
                response_formats.push(f);
            }
        }
        let reader_features = features.iter().map(|f| f.to_ascii_lowercase()).collect();
        (header, Capabilities { response_formats, reader_features, include_end_stream_action: end })
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn capabilities_arbitrary_text(text in any::<String>()) {
        check_capabilities(&text);
    }

    #[test]
    fn capabilities_say_what_was_sent((header, expected) in capabilities_header()) {
        prop_assert_eq!(check_capabilities(&header), expected);
    }

    #[test]
    fn capabilities_edited((header, _) in capabilities_header(), edits in edits()) {
        check_capabilities(&mutate(&header, &edits));
    }
}

#[test]
fn capabilities_hostile_inputs() {
    for text in [
        ";".repeat(MIB),
        "=".repeat(MIB),
        ",".repeat(MIB),
        format!("responseformat={}", "delta,parquet,".repeat(MIB / 14)),
        format!("readerfeatures={}", "\u{1F600}\0,".repeat(MIB / 6)),
        nest("(", "", ")", MIB / 2),
    ] {
        assert_fast("a 1 MB capabilities header", &text, |t| {
            check_capabilities(t);
        });
    }
}

#[test]
fn capabilities_parse_in_linear_time() {
    let parse = |t: &str| {
        check_capabilities(t);
    };
    assert_linear("capabilities: many pairs", 1_000, 8 * MIB, |n| "responseformat=delta;".repeat(n), parse);
    assert_linear(
        "capabilities: many formats",
        1_000,
        8 * MIB,
        |n| format!("responseformat={}", "delta,parquet,".repeat(n)),
        parse,
    );
    assert_linear(
        "capabilities: many features",
        1_000,
        8 * MIB,
        |n| format!("readerfeatures={}", "f,".repeat(n)),
        parse,
    );
}

// ---------------------------------------------------------------------------------------------
// Timestamps.

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: RFC 3339 has four-digit years.
const FIRST_MILLIS: i64 = -62_135_596_800_000;
const LAST_MILLIS: i64 = 253_402_300_799_999;

fn check_timestamp(text: &str) {
    if let Err(e) = parse_timestamp_millis(text) {
        assert!(!e.is_empty());
    }
}

/// A valid timestamp with an offset, in the forms clients send.
fn timestamp_text() -> impl Strategy<Value = String> {
    (
        2..=9998i32,
        1..=12u32,
        1..=28u32,
        0..24u32,
        0..60u32,
        0..60u32,
        "(\\.[0-9]{1,9})?",
        "Z|z|[+-](0[0-9]|1[0-3]):[0-5][0-9]",
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, offset)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{offset}")
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn timestamp_arbitrary_text(text in any::<String>()) {
        check_timestamp(&text);
    }

    #[test]
    fn timestamp_round_trips(millis in FIRST_MILLIS..=LAST_MILLIS) {
        prop_assert_eq!(parse_timestamp_millis(&format_timestamp_millis(millis)), Ok(millis));
    }

    #[test]
    fn timestamp_valid_forms_parse(text in timestamp_text()) {
        let millis = parse_timestamp_millis(&text);
        prop_assert!(millis.is_ok(), "{text}: {millis:?}");
        let millis = millis.unwrap_or_default();
        prop_assert_eq!(parse_timestamp_millis(&format_timestamp_millis(millis)), Ok(millis));
    }

    #[test]
    fn timestamp_edited(text in timestamp_text(), edits in edits()) {
        check_timestamp(&mutate(&text, &edits));
    }
}

#[test]
fn timestamp_hostile_inputs() {
    for text in [
        format!("2022-01-01T00:00:00.{}Z", "9".repeat(MIB)),
        format!("{}-01-01T00:00:00Z", "9".repeat(MIB)),
        format!("2022-01-01T00:00:00Z{}", "\0".repeat(MIB)),
        format!("{}2022-01-01T00:00:00Z", " ".repeat(MIB)),
        "+99999-01-01T00:00:00Z".to_owned(),
        "2022-02-30T00:00:00Z".to_owned(),
        "2022-01-01T24:00:00Z".to_owned(),
        "2022-01-01T23:59:60Z".to_owned(),
        "2022-01-01T00:00:00+99:99".to_owned(),
        "2022-01-01T00:00:00-23:59".to_owned(),
        "9999-12-31T23:59:59-23:59".to_owned(),
        "0000-01-01T00:00:00+23:59".to_owned(),
    ] {
        assert_fast("a hostile timestamp", &text, check_timestamp);
    }
    for millis in [i64::MIN, i64::MAX, 0, -1] {
        check_timestamp(&format_timestamp_millis(millis));
    }
}

#[test]
fn timestamp_parses_in_linear_time() {
    assert_linear(
        "timestamp: long fraction",
        10_000,
        8 * MIB,
        |n| format!("2022-01-01T00:00:00.{}Z", "9".repeat(n)),
        check_timestamp,
    );
}
