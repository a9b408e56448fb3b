//! Property and fuzz tests for every parser in this crate that reads outside input: the
//! reference server's YAML configuration, partition-filter expressions and list page tokens.
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

use crate::CatalogError;
use crate::page::{PageRequest, PageToken, page_of};
use crate::partition_filter::{PartitionFilter, Required};

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
    "AND", "and", "null", "true", "~", "1e999", "-0", "18446744073709551616", "0x1F", ".nan", "&a ", "*a", "<<: ",
    "!!binary ", "!tag ", "---\n", "...\n", "? ", "- ", ": ", "#", "|", ">", "%YAML 1.2\n", "CURRENT_RECIPIENT(",
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

/// The fastest of three runs: the one least disturbed by other work on the machine.
fn fastest(run: impl Fn()) -> Duration {
    (0..3)
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
    assert!(ratio < 30.0, "{what}: {small:?} for n={n} but {large:?} for 8n: super-linear");
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
// Partition filters.

fn check_filter(text: &str) -> Option<PartitionFilter> {
    match PartitionFilter::parse(text) {
        Ok(f) => {
            assert!(!f.clauses.is_empty());
            Some(f)
        }
        Err(CatalogError::InvalidArgument(m)) => {
            assert!(!m.is_empty());
            None
        }
        Err(e) => panic!("{text:?} gave {e:?}, not InvalidArgument"),
    }
}

/// A valid filter and the clauses it must parse to.
fn partition_filter() -> impl Strategy<Value = (String, Vec<(String, Required)>)> {
    let column = ("[a-zA-Z0-9_\\p{L}]{1,12}", any::<bool>())
        .prop_filter("'and' alone is the separator", |(c, ticks)| *ticks || !c.eq_ignore_ascii_case("and"))
        .prop_map(|(c, ticks)| (if ticks { format!("`{c}`") } else { c.clone() }, c));
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let value = prop_oneof![
        any::<String>().prop_map(move |s| (quote(&s), Required::Literal(s))),
        "-?[0-9]{1,12}(\\.[0-9]{1,6})?".prop_map(|n| (n.clone(), Required::Literal(n))),
        (any::<String>(), any::<bool>()).prop_map(move |(p, upper)| {
            let f = if upper { "CURRENT_RECIPIENT" } else { "current_recipient" };
            (format!("{f}( {} )", quote(&p)), Required::RecipientProperty(p))
        }),
    ];
    let space = prop::sample::select(&["", " ", "\t", "\u{3000}"][..]);
    let clause = (column, space.clone(), value).prop_map(|((sql_column, column), sp, (sql_value, required))| {
        (format!("{sql_column}{sp}={sp}{sql_value}"), (column, required))
    });
    let and = prop::sample::select(&[" AND ", " and ", "\nAnd\t", "  aNd  "][..]);
    (prop::collection::vec(clause, 1..5), and).prop_map(|(clauses, and)| {
        let text = clauses.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(and);
        (text, clauses.into_iter().map(|(_, c)| c).collect())
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn filter_arbitrary_text(text in any::<String>()) {
        check_filter(&text);
    }

    #[test]
    fn filter_parses_what_it_should((text, clauses) in partition_filter()) {
        prop_assert_eq!(PartitionFilter::parse(&text).ok(), Some(PartitionFilter { clauses }), "{:?}", text);
    }

    #[test]
    fn filter_edited((text, _) in partition_filter(), edits in edits()) {
        check_filter(&mutate(&text, &edits));
    }
}

#[test]
fn filter_hostile_inputs() {
    for text in [
        nest("(", "a = 1", ")", 10_000),
        nest("CURRENT_RECIPIENT(", "'p'", ")", 10_000),
        format!("a = '{}'", "''".repeat(MIB / 2)),
        format!("a = '{}", "x".repeat(MIB)),
        format!("a = '{}'", "\u{1F600}\0 and ".repeat(MIB / 10)),
        "'".repeat(MIB),
        "=".repeat(MIB),
        " AND ".repeat(MIB / 5),
        "\0".repeat(MIB),
        " ".repeat(MIB),
        format!("a = {}", "9".repeat(MIB)),
    ] {
        assert_fast("a 1 MB partition filter", &text, |t| {
            check_filter(t);
        });
    }
    let many = vec!["a = 1"; MIB / 10].join(" AND ");
    assert!(check_filter(&many).is_some_and(|f| f.clauses.len() == MIB / 10));
}

#[test]
fn filter_parses_in_linear_time() {
    let parse = |t: &str| {
        check_filter(t);
    };
    assert_linear("filter: many clauses", 1_000, 8 * MIB, |n| vec!["a = 'x y'"; n].join(" AND "), parse);
    assert_linear("filter: many quotes", 1_000, 8 * MIB, |n| format!("a = '{}'", "'' ".repeat(n)), parse);
    assert_linear("filter: many words", 1_000, 8 * MIB, |n| format!("a = '{}'", "x ".repeat(n)), parse);
    assert_linear("filter: many separators", 1_000, 8 * MIB, |n| " and ".repeat(n), parse);
}

// ---------------------------------------------------------------------------------------------
// Page tokens.

fn check_page_token(token: &str, listing: &str) {
    match PageToken::decode(token, listing) {
        Ok(t) => assert_eq!(t.listing, listing),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let items: Vec<u32> = (0..10).collect();
    let page = PageRequest { max_results: Some(3), page_token: Some(token.to_owned()) };
    if let Ok(page) = page_of(items, listing, &page) {
        assert!(page.items.len() <= 3);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn page_token_arbitrary_text(token in any::<String>(), listing in any::<String>()) {
        check_page_token(&token, &listing);
    }

    #[test]
    fn page_token_base64_of_anything(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        use base64::Engine as _;
        check_page_token(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes), "l");
    }

    #[test]
    fn page_token_round_trips(listing in any::<String>(), position in any::<String>(), other in any::<String>()) {
        let token = PageToken { listing: listing.clone(), position };
        let encoded = token.encode();
        prop_assert!(encoded.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        prop_assert_eq!(PageToken::decode(&encoded, &listing).ok(), Some(token));
        if other != listing {
            prop_assert!(PageToken::decode(&encoded, &other).is_err());
        }
    }

    #[test]
    fn page_token_edited(listing in "[a-z/]{1,12}", position in any::<usize>(), edits in edits()) {
        let token = PageToken { listing: listing.clone(), position: position.to_string() }.encode();
        check_page_token(&mutate(&token, &edits), &listing);
    }

    #[test]
    fn pages_cover_any_listing(len in 0..50usize, size in 0..=10u32) {
        let items: Vec<usize> = (0..len).collect();
        let mut seen = Vec::new();
        let mut token = None;
        for _ in 0..=len {
            let page = page_of(items.clone(), "l", &PageRequest { max_results: Some(size.max(1)), page_token: token });
            prop_assert!(page.is_ok());
            let page = page.unwrap_or_else(|_| unreachable!());
            seen.extend(page.items);
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        prop_assert_eq!(seen, items);
    }
}

#[test]
fn page_token_hostile_inputs() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for token in [
        b64(&nest("[", "", "]", 10_000)),
        b64(&nest(r#"{"l":"#, "1", "}", 10_000)),
        b64(&format!(r#"{{"l":"l","p":"{}"}}"#, "9".repeat(MIB))),
        b64(r#"{"l":"l","p":"18446744073709551616"}"#),
        b64(r#"{"l":"l","p":"-1"}"#),
        b64(r#"{"l":"l","p":"1","p":"2"}"#),
        "=".repeat(MIB),
        "A".repeat(MIB + 1),
        "\0".repeat(MIB),
    ] {
        assert_fast("a hostile page token", &token, |t| check_page_token(t, "l"));
    }
}

#[test]
fn page_token_decodes_in_linear_time() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    assert_linear(
        "page token: long position",
        10_000,
        8 * MIB,
        |n| b64(&format!(r#"{{"l":"l","p":"{}"}}"#, "\\u0039".repeat(n))),
        |t| check_page_token(t, "l"),
    );
}
