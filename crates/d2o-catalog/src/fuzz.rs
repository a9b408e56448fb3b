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

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;

use crate::config::{MAX_FLOW_DEPTH, flow_depth_bound};
use crate::page::{PageRequest, PageToken, page_of};
use crate::partition_filter::{PartitionFilter, Required};
use crate::{CatalogError, ServerConfig};

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
        for at in ["version: 1\nssl: %\n", "version: 1\nfuture: %\n", "%"] {
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
        let refused = ServerConfig::parse(&format!("version: 1\nssl:\n{block}"), Path::new("/"));
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
        let text = if top { yaml.clone() } else { format!("version: 1\nssl: {yaml}\n") };
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
    text.push_str("ssl: *a9\n");
    let start = Instant::now();
    assert!(ServerConfig::parse(&text, Path::new("/")).is_err());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn config_huge_inputs() {
    let inputs = [
        format!("version: 1\nhost: \"{}\"\n", "\\u00e9".repeat(MIB / 6)),
        format!("version: 1\nhost: '{}'\n", "''".repeat(MIB / 2)),
        format!("version: 1\nssl: |\n{}", "  line\n".repeat(MIB / 7)),
        format!("version: 1\n{}", "#\n".repeat(MIB / 2)),
        format!("version: 1\n{}", "\n".repeat(MIB)),
        format!("version: 1\n{}", "---\n".repeat(MIB / 4)),
        format!("version: 1\nssl: [{}]\n", ",".repeat(MIB)),
        format!("version: 1\nssl: {}\n", "\0".repeat(MIB)),
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
