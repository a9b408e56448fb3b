//! Per-table partition filters a provider sets: `region = 'EU'`,
//! `region = CURRENT_RECIPIENT('region') AND year = 2024`.
//!
//! A filter is a conjunction of equalities between a partition column and either a literal or a
//! property of the calling recipient. The server keeps only files whose partition values satisfy
//! every equality exactly; a recipient without the property sees nothing.

use std::collections::BTreeMap;

use crate::CatalogError;

/// What a column must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    Literal(String),
    RecipientProperty(String),
}

/// A parsed partition filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFilter {
    pub clauses: Vec<(String, Required)>,
}

impl PartitionFilter {
    /// Parses a filter; errors say what is wrong.
    pub fn parse(text: &str) -> Result<PartitionFilter, CatalogError> {
        let bad = |m: String| CatalogError::InvalidArgument(format!("invalid partition filter '{text}': {m}"));
        let mut clauses = Vec::new();
        for clause in split_and(text) {
            let (column, value) =
                clause.split_once('=').ok_or_else(|| bad(format!("'{clause}' is not 'column = value'")))?;
            let column = column.trim().trim_matches('`').to_owned();
            if column.is_empty() || !column.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(bad(format!("'{column}' is not a column name")));
            }
            let value = value.trim();
            let required = if let Some(inner) = value
                .strip_prefix("CURRENT_RECIPIENT(")
                .or_else(|| value.strip_prefix("current_recipient("))
                .and_then(|v| v.strip_suffix(')'))
            {
                Required::RecipientProperty(
                    unquote(inner.trim())
                        .ok_or_else(|| bad("CURRENT_RECIPIENT takes a quoted property name".into()))?,
                )
            } else if let Some(s) = unquote(value) {
                Required::Literal(s)
            } else if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.') {
                Required::Literal(value.to_owned())
            } else {
                return Err(bad(format!(
                    "'{value}' is not a quoted string, a number or CURRENT_RECIPIENT('property')"
                )));
            };
            clauses.push((column, required));
        }
        if clauses.is_empty() {
            return Err(bad("it is empty".into()));
        }
        Ok(PartitionFilter { clauses })
    }

    /// The `(column, value)` pairs for one recipient, or `None` when the recipient lacks a
    /// property the filter needs (such a recipient may see no file).
    pub fn resolve(&self, properties: &BTreeMap<String, String>) -> Option<Vec<(String, String)>> {
        self.clauses
            .iter()
            .map(|(c, r)| match r {
                Required::Literal(v) => Some((c.clone(), v.clone())),
                Required::RecipientProperty(p) => properties.get(p).map(|v| (c.clone(), v.clone())),
            })
            .collect()
    }
}

fn split_and(text: &str) -> Vec<String> {
    // Split on AND outside quotes, case-insensitively.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    for w in words {
        if !quoted && w.trim().eq_ignore_ascii_case("and") {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        quoted ^= w.matches('\'').count() % 2 == 1;
        cur.push_str(w);
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// The value of a SQL string literal; `None` unless `s` is exactly one (every quote inside
/// doubled, so `'a' OR 'b'` is not one literal).
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        let f = PartitionFilter::parse("region = CURRENT_RECIPIENT('region') AND year = 2024 and kind='it''s and'")
            .expect("valid filter");
        assert_eq!(f.clauses.len(), 3);
        let props = BTreeMap::from([("region".to_owned(), "EU".to_owned())]);
        assert_eq!(
            f.resolve(&props),
            Some(vec![
                ("region".into(), "EU".into()),
                ("year".into(), "2024".into()),
                ("kind".into(), "it's and".into())
            ])
        );
        assert_eq!(f.resolve(&BTreeMap::new()), None);
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        for bad in [
            "",
            "region",
            "region > 'EU'",
            "region = EU",
            "a b = 'x'",
            "region = CURRENT_RECIPIENT(region)",
            "x = 1 OR y = 2",
            "x = 'a' OR 'b'",
            "x = 'it's'",
        ] {
            assert!(PartitionFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
