//! The deprecated SQL `predicateHints` (protocol.md §4.1): `col = 123`, `col > 'foo'`,
//! `'foo' < col`, `col <> 'x'`, `col IS NULL`, `col IS NOT NULL`.

use super::{CmpOp, Leaf, Predicate, PredicateError, ValueType};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Token>, PredicateError> {
    let err = |m: &str| PredicateError::Invalid(format!("{m} in SQL hint '{s}'"));
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err("unterminated string")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        v.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token::Str(v));
        } else if c == '`' {
            let end = chars[i + 1..].iter().position(|&ch| ch == '`').ok_or_else(|| err("unterminated `name`"))?;
            out.push(Token::Ident(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (op, width) = match two.as_str() {
                "<=" => ("<=", 2),
                ">=" => (">=", 2),
                "<>" | "!=" => ("<>", 2),
                _ => match c {
                    '=' => ("=", 1),
                    '<' => ("<", 1),
                    '>' => (">", 1),
                    _ => return Err(err(&format!("unexpected '{c}'"))),
                },
            };
            i += width;
            out.push(Token::Op(op));
        }
    }
    Ok(out)
}

impl Predicate {
    /// Parses one SQL hint. `type_of` gives the value type of a column (from the table schema);
    /// a column it does not know, or a form outside the subset, is an error.
    pub fn from_sql(hint: &str, type_of: &dyn Fn(&str) -> Option<ValueType>) -> Result<Predicate, PredicateError> {
        let tokens = tokenize(hint)?;
        let invalid = || PredicateError::Invalid(format!("unsupported SQL hint '{hint}'"));
        let column = |name: &str| {
            type_of(name)
                .map(|value_type| Leaf::Column { name: name.to_owned(), value_type })
                .ok_or_else(|| PredicateError::Invalid(format!("unknown column '{name}' in SQL hint")))
        };
        let is = |t: &Token, word: &str| matches!(t, Token::Ident(w) if w.eq_ignore_ascii_case(word));
        match tokens.as_slice() {
            [Token::Ident(c), is_, null] if is(is_, "is") && is(null, "null") => Ok(Predicate::IsNull(column(c)?)),
            [Token::Ident(c), is_, not, null] if is(is_, "is") && is(not, "not") && is(null, "null") => {
                Ok(Predicate::Not(Box::new(Predicate::IsNull(column(c)?))))
            }
            [a, Token::Op(op), b] => {
                let (col, lit, flipped) = match (a, b) {
                    (Token::Ident(c), l @ (Token::Str(_) | Token::Num(_))) => (c, l, false),
                    (l @ (Token::Str(_) | Token::Num(_)), Token::Ident(c)) => (c, l, true),
                    _ => return Err(invalid()),
                };
                let col = column(col)?;
                let Leaf::Column { value_type, .. } = col else { return Err(invalid()) };
                let value = match lit {
                    Token::Str(v) | Token::Num(v) => v.clone(),
                    _ => return Err(invalid()),
                };
                let lit = Leaf::Literal { value, value_type };
                let (left, right) = if flipped { (lit, col) } else { (col, lit) };
                let cmp = |op| Predicate::Compare { op, left: left.clone(), right: right.clone() };
                Ok(match *op {
                    "=" => cmp(CmpOp::Equal),
                    "<>" => Predicate::Not(Box::new(cmp(CmpOp::Equal))),
                    "<" => cmp(CmpOp::LessThan),
                    "<=" => cmp(CmpOp::LessThanOrEqual),
                    ">" => cmp(CmpOp::GreaterThan),
                    ">=" => cmp(CmpOp::GreaterThanOrEqual),
                    _ => return Err(invalid()),
                })
            }
            _ => Err(invalid()),
        }
    }

    /// Parses a list of SQL hints combined with AND, skipping those that do not parse (skipping
    /// a conjunct only widens the result, so this stays conservative).
    pub fn from_sql_hints(hints: &[String], type_of: &dyn Fn(&str) -> Option<ValueType>) -> Option<Predicate> {
        Predicate::and_all(hints.iter().filter_map(|h| Predicate::from_sql(h, type_of).ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(name: &str) -> Option<ValueType> {
        match name {
            "id" => Some(ValueType::Long),
            "date" | "my col" => Some(ValueType::Date),
            "s" => Some(ValueType::String),
            _ => None,
        }
    }

    fn lit(v: &str, t: ValueType) -> Leaf {
        Leaf::Literal { value: v.into(), value_type: t }
    }

    fn col(n: &str, t: ValueType) -> Leaf {
        Leaf::Column { name: n.into(), value_type: t }
    }

    #[test]
    fn parses_the_subset() {
        assert_eq!(
            Predicate::from_sql("id >= 123", &types),
            Ok(Predicate::Compare {
                op: CmpOp::GreaterThanOrEqual,
                left: col("id", ValueType::Long),
                right: lit("123", ValueType::Long)
            })
        );
        assert_eq!(
            Predicate::from_sql("'2021-01-01' < date", &types),
            Ok(Predicate::Compare {
                op: CmpOp::LessThan,
                left: lit("2021-01-01", ValueType::Date),
                right: col("date", ValueType::Date)
            })
        );
        assert_eq!(
            Predicate::from_sql("s <> 'it''s'", &types),
            Ok(Predicate::Not(Box::new(Predicate::Compare {
                op: CmpOp::Equal,
                left: col("s", ValueType::String),
                right: lit("it's", ValueType::String)
            })))
        );
        assert_eq!(Predicate::from_sql("s IS NULL", &types), Ok(Predicate::IsNull(col("s", ValueType::String))));
        assert!(matches!(Predicate::from_sql("`my col` is not null", &types), Ok(Predicate::Not(_))));
        assert!(matches!(Predicate::from_sql("id != -5", &types), Ok(Predicate::Not(_))));
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["id", "id = ", "nope = 1", "id = 1 AND id = 2", "id LIKE 'x'", "'a' = 'b'", "s = 'open"] {
            assert!(Predicate::from_sql(bad, &types).is_err(), "{bad}");
        }
        let hints = vec!["id = 1".to_owned(), "garbage (".to_owned()];
        assert!(matches!(Predicate::from_sql_hints(&hints, &types), Some(Predicate::Compare { .. })));
    }
}
