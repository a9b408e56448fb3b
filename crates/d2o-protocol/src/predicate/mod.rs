//! Predicate hints and their conservative evaluation against what is known of a file.
//!
//! Clients send filters as `jsonPredicateHints` (a JSON-encoded tree, [`Predicate::from_json`]) or
//! as the deprecated SQL `predicateHints` ([`Predicate::from_sql`]). A server uses them to skip
//! files: [`Predicate::may_match`] answers `false` only when the file's partition values or
//! statistics *prove* that no row can match. Anything unknown keeps the file, so a hint can make
//! a response smaller but never wrong. Clients must still filter rows themselves.

mod eval;
mod json;
mod sql;

pub use eval::{ColumnFacts, FileView};

/// The type both sides of a comparison are cast to before comparing (`valueType` in the JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    Int,
    Long,
    String,
    Date,
    Float,
    Double,
    Timestamp,
}

impl ValueType {
    /// Parses the JSON spelling (`bool`, `int`, `long`, `string`, `date`, `float`, `double`,
    /// `timestamp`; case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bool" | "boolean" => ValueType::Bool,
            "int" | "integer" => ValueType::Int,
            "long" => ValueType::Long,
            "string" => ValueType::String,
            "date" => ValueType::Date,
            "float" => ValueType::Float,
            "double" => ValueType::Double,
            "timestamp" => ValueType::Timestamp,
            _ => return None,
        })
    }

    /// The value type for a Delta primitive type name (`integer`, `timestamp_ntz`, ...), or
    /// `None` for types that hints cannot be evaluated on (decimals, binary, nested types).
    pub fn for_delta_type(delta_type: &str) -> Option<Self> {
        Some(match delta_type {
            "boolean" => ValueType::Bool,
            "byte" | "short" | "integer" => ValueType::Int,
            "long" => ValueType::Long,
            "string" => ValueType::String,
            "date" => ValueType::Date,
            "float" => ValueType::Float,
            "double" => ValueType::Double,
            "timestamp" | "timestamp_ntz" => ValueType::Timestamp,
            _ => return None,
        })
    }
}

/// A leaf of the tree: a column reference or a literal, each with the type to compare as.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf {
    Column { name: String, value_type: ValueType },
    Literal { value: String, value_type: ValueType },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Equal,
    LessThan,
    LessThanOrEqual,
    GreaterThan,
    GreaterThanOrEqual,
}

/// A boolean predicate over the columns of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Compare { op: CmpOp, left: Leaf, right: Leaf },
    IsNull(Leaf),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
}

/// Why a hint could not be used. Servers ignore such hints (and return every file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PredicateError {
    #[error("predicate hint is not valid JSON: {0}")]
    Json(String),
    #[error("predicate hint is too large ({0} bytes; the limit is {MAX_HINT_BYTES})")]
    TooLarge(usize),
    #[error("predicate hint is nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("invalid predicate hint: {0}")]
    Invalid(String),
}

/// The largest hint evaluated, in bytes (as the reference server).
pub const MAX_HINT_BYTES: usize = 1 << 20;
/// The deepest tree evaluated (as the reference server).
pub const MAX_DEPTH: usize = 100;

impl Predicate {
    /// All the conjuncts, combined with AND (`None` when there are none).
    pub fn and_all(mut predicates: Vec<Predicate>) -> Option<Predicate> {
        match predicates.len() {
            0 => None,
            1 => predicates.pop(),
            _ => Some(Predicate::And(predicates)),
        }
    }

    /// The column names the predicate refers to, each once.
    pub fn columns(&self) -> Vec<&str> {
        fn walk<'a>(p: &'a Predicate, out: &mut Vec<&'a str>) {
            let mut leaf = |l: &'a Leaf| {
                if let Leaf::Column { name, .. } = l
                    && !out.contains(&name.as_str())
                {
                    out.push(name);
                }
            };
            match p {
                Predicate::Compare { left, right, .. } => {
                    leaf(left);
                    leaf(right);
                }
                Predicate::IsNull(l) => leaf(l),
                Predicate::And(ps) | Predicate::Or(ps) => ps.iter().for_each(|p| walk(p, out)),
                Predicate::Not(p) => walk(p, out),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}
