//! `jsonPredicateHints`: the JSON tree of protocol.md §4.2, to and from [`Predicate`].

use serde_json::{Map, Value, json};

use super::{CmpOp, Leaf, MAX_DEPTH, MAX_HINT_BYTES, Predicate, PredicateError, ValueType};

impl Predicate {
    /// Parses a `jsonPredicateHints` string.
    ///
    /// Fails on anything the protocol does not define (unknown `op` or `valueType`, wrong arity,
    /// a comparison without a column, ...); callers that receive hints ignore a failed one.
    pub fn from_json(hint: &str) -> Result<Predicate, PredicateError> {
        if hint.len() > MAX_HINT_BYTES {
            return Err(PredicateError::TooLarge(hint.len()));
        }
        // serde_json has its own recursion limit (128), above MAX_DEPTH: deeper trees fail here
        // or in `node` below, never on the stack.
        let value: Value = serde_json::from_str(hint).map_err(|e| PredicateError::Json(e.to_string()))?;
        node(&value, 0)
    }

    /// Renders the predicate as a `jsonPredicateHints` string.
    pub fn to_json(&self) -> String {
        to_value(self).to_string()
    }
}

fn invalid(msg: impl Into<String>) -> PredicateError {
    PredicateError::Invalid(msg.into())
}

fn children(obj: &Map<String, Value>) -> Result<&Vec<Value>, PredicateError> {
    obj.get("children").and_then(Value::as_array).ok_or_else(|| invalid("missing 'children'"))
}

fn str_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, PredicateError> {
    obj.get(name).and_then(Value::as_str).ok_or_else(|| invalid(format!("missing string '{name}'")))
}

fn leaf(value: &Value) -> Result<Leaf, PredicateError> {
    let obj = value.as_object().ok_or_else(|| invalid("a node must be an object"))?;
    let op = str_field(obj, "op")?;
    let value_type = str_field(obj, "valueType")?;
    let value_type =
        ValueType::parse(value_type).ok_or_else(|| invalid(format!("unknown valueType '{value_type}'")))?;
    match op {
        "column" => Ok(Leaf::Column { name: str_field(obj, "name")?.to_owned(), value_type }),
        "literal" => {
            // The protocol sends literal values as strings; accept numbers and booleans too.
            let value = match obj.get("value") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => return Err(invalid("a literal needs a 'value'")),
            };
            Ok(Leaf::Literal { value, value_type })
        }
        other => Err(invalid(format!("expected a column or literal, found '{other}'"))),
    }
}

fn node(value: &Value, depth: usize) -> Result<Predicate, PredicateError> {
    if depth > MAX_DEPTH {
        return Err(PredicateError::TooDeep);
    }
    let obj = value.as_object().ok_or_else(|| invalid("a node must be an object"))?;
    let op = str_field(obj, "op")?;
    let cmp = match op {
        "equal" => Some(CmpOp::Equal),
        "lessThan" => Some(CmpOp::LessThan),
        "lessThanOrEqual" => Some(CmpOp::LessThanOrEqual),
        "greaterThan" => Some(CmpOp::GreaterThan),
        "greaterThanOrEqual" => Some(CmpOp::GreaterThanOrEqual),
        _ => None,
    };
    if let Some(op) = cmp {
        let [left, right] = children(obj)?.as_slice() else {
            return Err(invalid(format!("'{op:?}' takes two children")));
        };
        return Ok(Predicate::Compare { op, left: leaf(left)?, right: leaf(right)? });
    }
    match op {
        "isNull" => match children(obj)?.as_slice() {
            [child] => Ok(Predicate::IsNull(leaf(child)?)),
            _ => Err(invalid("'isNull' takes one child")),
        },
        "not" => match children(obj)?.as_slice() {
            [child] => Ok(Predicate::Not(Box::new(node(child, depth + 1)?))),
            _ => Err(invalid("'not' takes one child")),
        },
        "and" | "or" => {
            let kids = children(obj)?;
            if kids.len() < 2 {
                return Err(invalid(format!("'{op}' takes at least two children")));
            }
            let kids = kids.iter().map(|k| node(k, depth + 1)).collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" { Predicate::And(kids) } else { Predicate::Or(kids) })
        }
        other => Err(invalid(format!("unknown op '{other}'"))),
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Bool => "bool",
        ValueType::Int => "int",
        ValueType::Long => "long",
        ValueType::String => "string",
        ValueType::Date => "date",
        ValueType::Float => "float",
        ValueType::Double => "double",
        ValueType::Timestamp => "timestamp",
    }
}

fn leaf_value(l: &Leaf) -> Value {
    match l {
        Leaf::Column { name, value_type } => json!({"op": "column", "name": name, "valueType": type_name(*value_type)}),
        Leaf::Literal { value, value_type } => {
            json!({"op": "literal", "value": value, "valueType": type_name(*value_type)})
        }
    }
}

fn to_value(p: &Predicate) -> Value {
    match p {
        Predicate::Compare { op, left, right } => {
            let op = match op {
                CmpOp::Equal => "equal",
                CmpOp::LessThan => "lessThan",
                CmpOp::LessThanOrEqual => "lessThanOrEqual",
                CmpOp::GreaterThan => "greaterThan",
                CmpOp::GreaterThanOrEqual => "greaterThanOrEqual",
            };
            json!({"op": op, "children": [leaf_value(left), leaf_value(right)]})
        }
        Predicate::IsNull(l) => json!({"op": "isNull", "children": [leaf_value(l)]}),
        Predicate::Not(p) => json!({"op": "not", "children": [to_value(p)]}),
        // The protocol wants at least two children; a single child is padded with itself.
        Predicate::And(ps) | Predicate::Or(ps) => {
            let op = if matches!(p, Predicate::And(_)) { "and" } else { "or" };
            let mut kids: Vec<Value> = ps.iter().map(to_value).collect();
            if kids.len() == 1 {
                kids.push(kids[0].clone());
            }
            json!({"op": op, "children": kids})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"op":"and","children":[
      {"op":"not","children":[{"op":"isNull","children":[{"op":"column","name":"birthday","valueType":"date"}]}]},
      {"op":"equal","children":[{"op":"column","name":"birthday","valueType":"date"},{"op":"literal","value":"2020-01-01","valueType":"date"}]}]}"#;

    #[test]
    fn parses_the_protocol_example_and_round_trips() {
        let p = Predicate::from_json(EXAMPLE).expect("valid hint");
        assert_eq!(p.columns(), vec!["birthday"]);
        assert_eq!(Predicate::from_json(&p.to_json()), Ok(p));
    }

    #[test]
    fn rejects_what_the_protocol_does_not_define() {
        for bad in [
            "bad-predicates",
            "{}",
            r#"{"op":"like","children":[]}"#,
            r#"{"op":"equal","children":[{"op":"column","name":"a","valueType":"int"}]}"#,
            r#"{"op":"and","children":[{"op":"isNull","children":[{"op":"column","name":"a","valueType":"int"}]}]}"#,
            r#"{"op":"isNull","children":[{"op":"column","name":"a","valueType":"uuid"}]}"#,
        ] {
            assert!(Predicate::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_deep_and_huge_trees() {
        let mut hint = r#"{"op":"isNull","children":[{"op":"column","name":"a","valueType":"int"}]}"#.to_owned();
        for _ in 0..(MAX_DEPTH + 1) {
            hint = format!(r#"{{"op":"not","children":[{hint}]}}"#);
        }
        assert!(Predicate::from_json(&hint).is_err());
        let huge = format!(r#"{{"op":"column","name":"{}","valueType":"int"}}"#, "a".repeat(MAX_HINT_BYTES));
        assert!(matches!(Predicate::from_json(&huge), Err(PredicateError::TooLarge(_))));
    }
}
