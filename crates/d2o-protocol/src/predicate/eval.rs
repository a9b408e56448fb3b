//! Conservative evaluation of a [`Predicate`] over one file.
//!
//! Each node evaluates to the set of truth values it *may* take on some row of the file
//! (true, false, null). A file may hold a matching row iff the root may be true. Every step
//! over-approximates: an unknown column, an unparsable statistic or a comparison between two
//! columns yields "anything", so a file is dropped only when the known facts rule out a match.

use std::cmp::Ordering;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;

use super::{CmpOp, Leaf, Predicate, ValueType};

/// What is known of one column in one file.
#[derive(Debug, Clone, Copy)]
pub enum ColumnFacts<'a> {
    /// A partition column: every row has this serialized value (`None` = null).
    Partition(Option<&'a str>),
    /// A data column with file statistics. Any of them may be unknown.
    Stats { min: Option<&'a Value>, max: Option<&'a Value>, null_count: Option<i64>, num_records: Option<i64> },
}

/// What a file offers to predicate evaluation.
pub trait FileView {
    /// The facts about `column` (a logical column name, possibly dotted for nested fields), or
    /// `None` when nothing is known about it.
    fn column(&self, column: &str) -> Option<ColumnFacts<'_>>;
}

impl Predicate {
    /// Whether the file may hold a row for which the predicate is true. `false` is a proof.
    pub fn may_match(&self, file: &dyn FileView) -> bool {
        eval(self, file).may_true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Truth {
    may_true: bool,
    may_false: bool,
    may_null: bool,
}

const ANYTHING: Truth = Truth { may_true: true, may_false: true, may_null: true };

fn eval(p: &Predicate, file: &dyn FileView) -> Truth {
    match p {
        Predicate::Not(inner) => {
            let t = eval(inner, file);
            Truth { may_true: t.may_false, may_false: t.may_true, may_null: t.may_null }
        }
        Predicate::And(ps) => ps.iter().map(|p| eval(p, file)).reduce(and).unwrap_or(ANYTHING),
        Predicate::Or(ps) => ps.iter().map(|p| eval(p, file)).reduce(or).unwrap_or(ANYTHING),
        Predicate::IsNull(leaf) => match range(leaf, file) {
            None => ANYTHING,
            Some(r) => Truth { may_true: r.may_null, may_false: r.may_value, may_null: false },
        },
        Predicate::Compare { op, left, right } => {
            if !compatible(leaf_type(left), leaf_type(right)) {
                return ANYTHING;
            }
            match (range(left, file), range(right, file)) {
                (Some(l), Some(r)) => compare(*op, &l, &r),
                _ => ANYTHING,
            }
        }
    }
}

fn and(a: Truth, b: Truth) -> Truth {
    Truth {
        may_true: a.may_true && b.may_true,
        may_false: a.may_false || b.may_false,
        may_null: (a.may_null && (b.may_true || b.may_null)) || (b.may_null && (a.may_true || a.may_null)),
    }
}

fn or(a: Truth, b: Truth) -> Truth {
    Truth {
        may_true: a.may_true || b.may_true,
        may_false: a.may_false && b.may_false,
        may_null: (a.may_null && (b.may_false || b.may_null)) || (b.may_null && (a.may_false || a.may_null)),
    }
}

fn leaf_type(l: &Leaf) -> ValueType {
    match l {
        Leaf::Column { value_type, .. } | Leaf::Literal { value_type, .. } => *value_type,
    }
}

/// Types that compare as the same kind of value.
fn compatible(a: ValueType, b: ValueType) -> bool {
    use ValueType::*;
    matches!((a, b), (Int | Long, Int | Long) | (Float | Double, Float | Double)) || a == b
}

/// A typed value; only values of the same kind are compared.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Date(i64),
    /// Microseconds since the epoch.
    Micros(i64),
}

impl Typed {
    fn cmp(&self, other: &Typed) -> Option<Ordering> {
        match (self, other) {
            (Typed::Bool(a), Typed::Bool(b)) => Some(a.cmp(b)),
            (Typed::Int(a), Typed::Int(b))
            | (Typed::Date(a), Typed::Date(b))
            | (Typed::Micros(a), Typed::Micros(b)) => Some(a.cmp(b)),
            (Typed::Float(a), Typed::Float(b)) => a.partial_cmp(b),
            (Typed::Int(a), Typed::Float(b)) => (*a as f64).partial_cmp(b),
            (Typed::Float(a), Typed::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Typed::Str(a), Typed::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }
}

/// A timestamp with or without an explicit offset.
fn parse_micros(s: &str) -> Option<(i64, bool)> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some((t.timestamp_micros(), true));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some((t.and_utc().timestamp_micros(), false));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| (t.and_utc().timestamp_micros(), false))
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Parses `s` as `t`, returning the interval of values it may stand for (timestamps without an
/// offset may be in any zone, so they stand for a day either side).
fn parse(s: &str, t: ValueType) -> Option<(Typed, Typed)> {
    let s = s.trim();
    let exact = |v: Typed| Some((v.clone(), v));
    match t {
        ValueType::Bool => match s.to_ascii_lowercase().as_str() {
            "true" => exact(Typed::Bool(true)),
            "false" => exact(Typed::Bool(false)),
            _ => None,
        },
        ValueType::Int | ValueType::Long => match s.parse::<i64>() {
            Ok(v) => exact(Typed::Int(v)),
            Err(_) => s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(|f| exact(Typed::Float(f))),
        },
        ValueType::Float | ValueType::Double => {
            s.parse::<f64>().ok().filter(|f| !f.is_nan()).and_then(|f| exact(Typed::Float(f)))
        }
        ValueType::String => exact(Typed::Str(s.to_owned())),
        ValueType::Date => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            exact(Typed::Date(d.signed_duration_since(NaiveDate::default()).num_days()))
        }
        ValueType::Timestamp => {
            let (micros, zoned) = parse_micros(s)?;
            if zoned {
                exact(Typed::Micros(micros))
            } else {
                Some((Typed::Micros(micros - DAY_MICROS), Typed::Micros(micros + DAY_MICROS)))
            }
        }
    }
}

fn json_as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The values a leaf may take in the file: bounds (`None` = unbounded) and whether nulls and
/// non-null values may occur.
#[derive(Debug, Clone)]
struct Range {
    lo: Option<Typed>,
    hi: Option<Typed>,
    may_null: bool,
    may_value: bool,
}

/// Longest string statistic trusted as an upper bound: writers truncate long string maxima.
const MAX_TRUSTED_STRING_STAT: usize = 31;

fn range(leaf: &Leaf, file: &dyn FileView) -> Option<Range> {
    match leaf {
        Leaf::Literal { value, value_type } => {
            let (lo, hi) = parse(value, *value_type)?;
            Some(Range { lo: Some(lo), hi: Some(hi), may_null: false, may_value: true })
        }
        Leaf::Column { name, value_type } => match file.column(name)? {
            ColumnFacts::Partition(None) => Some(Range { lo: None, hi: None, may_null: true, may_value: false }),
            ColumnFacts::Partition(Some(v)) => {
                let (lo, hi) = parse(v, *value_type)?;
                Some(Range { lo: Some(lo), hi: Some(hi), may_null: false, may_value: true })
            }
            ColumnFacts::Stats { min, max, null_count, num_records } => {
                if num_records == Some(0) {
                    return Some(Range { lo: None, hi: None, may_null: false, may_value: false });
                }
                let may_null = null_count != Some(0);
                let may_value = !matches!((null_count, num_records), (Some(n), Some(r)) if n >= r);
                let lo = min.and_then(json_as_text).and_then(|s| parse(&s, *value_type)).map(|(lo, _)| lo);
                let hi = max.and_then(json_as_text).and_then(|s| {
                    match value_type {
                        // NaN sorts above every number and is left out of statistics.
                        ValueType::Float | ValueType::Double => None,
                        ValueType::String if s.chars().count() >= MAX_TRUSTED_STRING_STAT => None,
                        // Timestamp statistics are truncated to milliseconds.
                        ValueType::Timestamp => parse(&s, *value_type).map(|(_, hi)| match hi {
                            Typed::Micros(m) => Typed::Micros(m + 1000),
                            other => other,
                        }),
                        _ => parse(&s, *value_type).map(|(_, hi)| hi),
                    }
                });
                Some(Range { lo, hi, may_null, may_value })
            }
        },
    }
}

/// `Some(ordering holds)` when the bounds decide it, `None` when a bound is missing or the
/// values are incomparable.
fn holds(a: &Option<Typed>, b: &Option<Typed>, ok: impl Fn(Ordering) -> bool) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b).map(ok),
        _ => None,
    }
}

fn compare(op: CmpOp, l: &Range, r: &Range) -> Truth {
    let may_null = l.may_null || r.may_null;
    if !(l.may_value && r.may_value) {
        return Truth { may_true: false, may_false: false, may_null };
    }
    use Ordering::*;
    // may_true / may_false for `l op r`, from the interval bounds; an undecided bound keeps both.
    let (may_true, may_false) = match op {
        CmpOp::Equal => {
            let overlap = holds(&l.lo, &r.hi, |o| o != Greater).unwrap_or(true)
                && holds(&r.lo, &l.hi, |o| o != Greater).unwrap_or(true);
            let all_equal = [&l.lo, &l.hi, &r.lo].iter().all(|b| holds(b, &r.hi, |o| o == Equal).unwrap_or(false));
            (overlap, !all_equal)
        }
        CmpOp::LessThan => {
            (holds(&l.lo, &r.hi, |o| o == Less).unwrap_or(true), holds(&l.hi, &r.lo, |o| o != Less).unwrap_or(true))
        }
        CmpOp::LessThanOrEqual => (
            holds(&l.lo, &r.hi, |o| o != Greater).unwrap_or(true),
            holds(&l.hi, &r.lo, |o| o == Greater).unwrap_or(true),
        ),
        CmpOp::GreaterThan => {
            return compare(CmpOp::LessThan, r, l);
        }
        CmpOp::GreaterThanOrEqual => {
            return compare(CmpOp::LessThanOrEqual, r, l);
        }
    };
    Truth { may_true, may_false, may_null }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// A file given as partition values and a stats JSON object.
    struct TestFile {
        partitions: HashMap<String, Option<String>>,
        stats: Value,
    }

    impl FileView for TestFile {
        fn column(&self, column: &str) -> Option<ColumnFacts<'_>> {
            if let Some(v) = self.partitions.get(column) {
                return Some(ColumnFacts::Partition(v.as_deref()));
            }
            let s = &self.stats;
            let known = s.get("minValues").and_then(|m| m.get(column)).is_some()
                || s.get("nullCount").and_then(|m| m.get(column)).is_some();
            known.then(|| ColumnFacts::Stats {
                min: s.get("minValues").and_then(|m| m.get(column)),
                max: s.get("maxValues").and_then(|m| m.get(column)),
                null_count: s.get("nullCount").and_then(|m| m.get(column)).and_then(Value::as_i64),
                num_records: s.get("numRecords").and_then(Value::as_i64),
            })
        }
    }

    fn part(k: &str, v: Option<&str>) -> TestFile {
        TestFile { partitions: [(k.to_owned(), v.map(str::to_owned))].into(), stats: json!({}) }
    }

    fn hint(s: &str) -> Predicate {
        Predicate::from_json(s).expect("valid hint")
    }

    fn eq_date(d: &str) -> Predicate {
        hint(&format!(
            r#"{{"op":"equal","children":[{{"op":"column","name":"date","valueType":"date"}},{{"op":"literal","value":"{d}","valueType":"date"}}]}}"#
        ))
    }

    #[test]
    fn partition_equality() {
        let p = eq_date("2021-04-28");
        assert!(p.may_match(&part("date", Some("2021-04-28"))));
        assert!(!p.may_match(&part("date", Some("2021-04-29"))));
        assert!(!p.may_match(&part("date", None)));
        // Unknown column: keep.
        assert!(p.may_match(&part("other", Some("x"))));
        // Unparsable partition value: keep.
        assert!(p.may_match(&part("date", Some("not a date"))));
    }

    #[test]
    fn not_and_null_semantics() {
        let is_null = hint(r#"{"op":"isNull","children":[{"op":"column","name":"date","valueType":"date"}]}"#);
        let not_null = Predicate::Not(Box::new(is_null.clone()));
        assert!(is_null.may_match(&part("date", None)));
        assert!(!is_null.may_match(&part("date", Some("2021-01-01"))));
        assert!(!not_null.may_match(&part("date", None)));
        // NOT (date = x) on a null partition is null, never true.
        assert!(!Predicate::Not(Box::new(eq_date("2021-01-01"))).may_match(&part("date", None)));
        assert!(Predicate::Not(Box::new(eq_date("2021-01-01"))).may_match(&part("date", Some("2021-01-02"))));
    }

    #[test]
    fn stats_ranges() {
        let file = TestFile {
            partitions: HashMap::new(),
            stats: json!({"numRecords": 10, "minValues": {"x": 5, "s": "b", "t": "2021-01-01T00:00:00.000Z"},
                          "maxValues": {"x": 9, "s": "d", "t": "2021-01-01T00:00:00.000Z"},
                          "nullCount": {"x": 0, "s": 10, "t": 0}}),
        };
        let cmp = |op: &str, col: &str, ty: &str, v: &str| {
            hint(&format!(
                r#"{{"op":"{op}","children":[{{"op":"column","name":"{col}","valueType":"{ty}"}},{{"op":"literal","value":"{v}","valueType":"{ty}"}}]}}"#
            ))
            .may_match(&file)
        };
        assert!(cmp("equal", "x", "int", "7"));
        assert!(!cmp("equal", "x", "int", "10"));
        assert!(!cmp("lessThan", "x", "long", "5"));
        assert!(cmp("lessThanOrEqual", "x", "long", "5"));
        assert!(!cmp("greaterThan", "x", "int", "9"));
        assert!(cmp("greaterThanOrEqual", "x", "int", "9"));
        // All of `s` is null: no comparison can be true.
        assert!(!cmp("equal", "s", "string", "c"));
        // Millisecond-truncated timestamp max is widened.
        assert!(cmp("equal", "t", "timestamp", "2021-01-01T00:00:00.000500Z"));
        assert!(!cmp("greaterThan", "t", "timestamp", "2021-01-01T00:00:01Z"));
        // Mixed types are not compared.
        assert!(hint(r#"{"op":"equal","children":[{"op":"column","name":"x","valueType":"string"},{"op":"literal","value":"1","valueType":"int"}]}"#).may_match(&file));
    }

    #[test]
    fn empty_file_never_matches_and_missing_stats_always_may() {
        let empty = TestFile { partitions: HashMap::new(), stats: json!({"numRecords": 0, "nullCount": {"x": 0}}) };
        let p = hint(r#"{"op":"isNull","children":[{"op":"column","name":"x","valueType":"int"}]}"#);
        assert!(!p.may_match(&empty));
        let none = TestFile { partitions: HashMap::new(), stats: json!({}) };
        assert!(p.may_match(&none));
    }

    /// Rows of one file: values of `x` (None = null).
    fn file_of(rows: &[Option<i64>]) -> TestFile {
        let values: Vec<i64> = rows.iter().flatten().copied().collect();
        let mut stats = json!({"numRecords": rows.len(), "nullCount": {"x": rows.len() - values.len()}});
        if let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) {
            stats["minValues"] = json!({"x": min});
            stats["maxValues"] = json!({"x": max});
        }
        TestFile { partitions: HashMap::new(), stats }
    }

    /// SQL three-valued truth of `p` on one row (`None` is SQL's unknown, not a failure, so
    /// the folds below must not short-circuit on it).
    #[allow(clippy::manual_try_fold)]
    fn row_truth(p: &Predicate, x: Option<i64>) -> Option<bool> {
        let value = |l: &Leaf| match l {
            Leaf::Column { .. } => x,
            Leaf::Literal { value, .. } => value.parse().ok(),
        };
        match p {
            Predicate::IsNull(l) => Some(value(l).is_none()),
            Predicate::Not(p) => row_truth(p, x).map(|b| !b),
            Predicate::And(ps) => ps.iter().map(|p| row_truth(p, x)).fold(Some(true), |a, b| match (a, b) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }),
            Predicate::Or(ps) => ps.iter().map(|p| row_truth(p, x)).fold(Some(false), |a, b| match (a, b) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }),
            Predicate::Compare { op, left, right } => {
                let (a, b) = (value(left)?, value(right)?);
                Some(match op {
                    CmpOp::Equal => a == b,
                    CmpOp::LessThan => a < b,
                    CmpOp::LessThanOrEqual => a <= b,
                    CmpOp::GreaterThan => a > b,
                    CmpOp::GreaterThanOrEqual => a >= b,
                })
            }
        }
    }

    fn arb_predicate() -> impl Strategy<Value = Predicate> {
        let col = Leaf::Column { name: "x".into(), value_type: ValueType::Long };
        let leaf = {
            let is_null = Predicate::IsNull(col.clone());
            prop_oneof![
                (0..5usize, -5i64..5, any::<bool>()).prop_map(move |(op, v, flip)| {
                    let op = [
                        CmpOp::Equal,
                        CmpOp::LessThan,
                        CmpOp::LessThanOrEqual,
                        CmpOp::GreaterThan,
                        CmpOp::GreaterThanOrEqual,
                    ][op];
                    let lit = Leaf::Literal { value: v.to_string(), value_type: ValueType::Long };
                    let (left, right) = if flip { (lit, col.clone()) } else { (col.clone(), lit) };
                    Predicate::Compare { op, left, right }
                }),
                Just(is_null),
            ]
        };
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Predicate::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Predicate::Or),
                inner.prop_map(|p| Predicate::Not(Box::new(p))),
            ]
        })
    }

    proptest! {
        /// Soundness: whenever some row of a file satisfies the predicate, the file is kept.
        #[test]
        fn never_drops_a_file_with_a_matching_row(
            p in arb_predicate(),
            rows in prop::collection::vec(prop::option::weighted(0.8, -6i64..6), 0..6),
        ) {
            let any_row_matches = rows.iter().any(|x| row_truth(&p, *x) == Some(true));
            if any_row_matches {
                prop_assert!(p.may_match(&file_of(&rows)));
            }
        }
    }
}
