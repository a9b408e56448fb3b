//! What a client asks of a table: the JSON body of `POST .../query` and the query-string
//! parameters of `GET .../changes`, with the parsing and the error messages both sides share.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request parameter with a bad value; the message names it and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// The body of `POST .../query`. Every field is optional; unknown fields are ignored (as the
/// protocol asks); a field of the wrong type, or a body that is not a JSON object, is an error
/// (no `#[serde(default)]`: it would let `[]` pass as an empty query).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryRequest {
    /// SQL predicates (deprecated), combined with AND.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_hints: Option<Vec<String>>,
    /// A JSON predicate tree, sent as a JSON-encoded string (an object is accepted as well).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_predicate_hints: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_hint: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_files: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_refresh_token: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl QueryRequest {
    /// The JSON predicate tree as JSON text, whichever form it was sent in.
    pub fn json_predicate_hints_text(&self) -> Option<String> {
        match &self.json_predicate_hints {
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    /// Checks the combinations the protocol forbids (one of version, timestamp and
    /// startingVersion; no negative versions; a positive `maxFiles`; refresh tokens only for a
    /// snapshot of the latest version, without paging).
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |m: &str| Err(ParamError(m.to_owned()));
        let given = [self.version.is_some(), self.timestamp.is_some(), self.starting_version.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return bad("Please only provide one of: version,timestamp,startingVersion");
        }
        for (name, v) in [
            ("version", self.version),
            ("startingVersion", self.starting_version),
            ("endingVersion", self.ending_version),
        ] {
            if v.is_some_and(|v| v < 0) {
                return Err(ParamError(format!("'{name}' cannot be negative")));
            }
        }
        if let (Some(s), Some(e)) = (self.starting_version, self.ending_version)
            && s > e
        {
            return Err(ParamError(format!("startingVersion ({s}) cannot be greater than endingVersion ({e})")));
        }
        if self.max_files.is_some_and(|m| m <= 0) {
            return bad("maxFiles must be positive.");
        }
        if self.limit_hint.is_some_and(|l| l < 0) {
            return bad("limitHint cannot be negative");
        }
        let refresh = self.include_refresh_token == Some(true) || self.refresh_token.is_some();
        if refresh && (given.iter().any(|g| *g) || self.page_token.is_some()) {
            return bad(
                "includeRefreshToken and refreshToken cannot be combined with version, timestamp, startingVersion or pageToken",
            );
        }
        Ok(())
    }
}

/// The query-string parameters of `GET .../changes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangesRequest {
    pub starting_version: Option<u64>,
    pub starting_timestamp: Option<String>,
    pub ending_version: Option<u64>,
    pub ending_timestamp: Option<String>,
    pub include_historical_metadata: Option<bool>,
    pub max_files: Option<i64>,
    pub page_token: Option<String>,
}

impl ChangesRequest {
    /// The parameters as `(name, value)` pairs in a fixed order, values not yet URL-encoded.
    pub fn to_query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push = |name, value: Option<String>| {
            if let Some(v) = value {
                pairs.push((name, v));
            }
        };
        push("startingVersion", self.starting_version.map(|v| v.to_string()));
        push("startingTimestamp", self.starting_timestamp.clone());
        push("endingVersion", self.ending_version.map(|v| v.to_string()));
        push("endingTimestamp", self.ending_timestamp.clone());
        push("includeHistoricalMetadata", self.include_historical_metadata.map(|b| b.to_string()));
        push("maxFiles", self.max_files.map(|m| m.to_string()));
        push("pageToken", self.page_token.clone());
        pairs
    }

    /// Reads the parameters from decoded query-string pairs (the last of a repeated name wins;
    /// other names are ignored). Checks types and the combinations the protocol forbids.
    pub fn from_query_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ParamError> {
        let mut r = ChangesRequest::default();
        for (name, value) in pairs {
            match name {
                "startingVersion" => r.starting_version = Some(parse_version(name, value)?),
                "startingTimestamp" => r.starting_timestamp = Some(value.to_owned()),
                "endingVersion" => r.ending_version = Some(parse_version(name, value)?),
                "endingTimestamp" => r.ending_timestamp = Some(value.to_owned()),
                "includeHistoricalMetadata" => r.include_historical_metadata = Some(parse_bool(name, value)?),
                "maxFiles" => r.max_files = Some(parse_i64(name, value)?),
                "pageToken" => r.page_token = Some(value.to_owned()),
                _ => {}
            }
        }
        match (&r.starting_version, &r.starting_timestamp) {
            (None, None) => {
                return Err(ParamError("No startingVersion or startingTimestamp provided for CDF read.".into()));
            }
            (Some(_), Some(_)) => {
                return Err(ParamError(
                    "Multiple starting arguments provided for CDF read. Please provide one of either startingTimestamp or startingVersion.".into(),
                ));
            }
            _ => {}
        }
        if r.ending_version.is_some() && r.ending_timestamp.is_some() {
            return Err(ParamError(
                "Multiple ending arguments provided for CDF read. Please provide one of either endingTimestamp or endingVersion.".into(),
            ));
        }
        if r.max_files.is_some_and(|m| m <= 0) {
            return Err(ParamError("maxFiles must be positive.".into()));
        }
        Ok(r)
    }
}

/// A number parameter.
pub fn parse_i64(name: &str, value: &str) -> Result<i64, ParamError> {
    value.trim().parse::<i64>().map_err(|_| {
        ParamError(format!(
            "'{name}' must be a number: expected a number but the string didn't have the appropriate format ('{value}')"
        ))
    })
}

/// A version parameter: a number that is not negative.
pub fn parse_version(name: &str, value: &str) -> Result<u64, ParamError> {
    let v = parse_i64(name, value)?;
    u64::try_from(v).map_err(|_| ParamError(format!("'{name}' cannot be negative")))
}

/// A boolean parameter, case-insensitive (the Python connector sends `True`/`False`).
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ParamError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParamError(format!("'{name}' must be true or false, not '{value}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_requests_round_trip_and_skip_what_is_unset() {
        let r = QueryRequest { version: Some(3), max_files: Some(10), ..Default::default() };
        let text = serde_json::to_string(&r).expect("serializes");
        assert_eq!(text, r#"{"version":3,"maxFiles":10}"#);
        assert_eq!(serde_json::from_str::<QueryRequest>(&text).expect("parses"), r);
        let object = r#"{"jsonPredicateHints":{"op":"isNull","children":[]},"someFutureField":1}"#;
        let parsed: QueryRequest = serde_json::from_str(object).expect("unknown fields are ignored");
        assert_eq!(parsed.json_predicate_hints_text().as_deref(), Some(r#"{"children":[],"op":"isNull"}"#));
        assert!(serde_json::from_str::<QueryRequest>(r#"{"version":"3"}"#).is_err(), "wrong type");
        assert!(serde_json::from_str::<QueryRequest>("[]").is_err(), "not an object");
        assert!(
            QueryRequest { version: Some(1), timestamp: Some("t".into()), ..Default::default() }.validate().is_err()
        );
        let refresh_with_page =
            QueryRequest { include_refresh_token: Some(true), page_token: Some("p".into()), ..Default::default() };
        assert!(refresh_with_page.validate().is_err());
    }

    #[test]
    fn changes_requests_round_trip_through_the_query_string() {
        let r = ChangesRequest {
            starting_version: Some(2),
            ending_timestamp: Some("2024-01-01T00:00:00Z".into()),
            include_historical_metadata: Some(true),
            max_files: Some(5),
            page_token: Some("tok".into()),
            ..Default::default()
        };
        let pairs = r.to_query_pairs();
        let parsed = ChangesRequest::from_query_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).expect("parses");
        assert_eq!(parsed, r);
        let err = |pairs: &[(&str, &str)]| {
            ChangesRequest::from_query_pairs(pairs.iter().copied()).expect_err("refused").to_string()
        };
        assert!(err(&[]).contains("No startingVersion"));
        assert!(err(&[("startingVersion", "-1")]).contains("cannot be negative"));
        assert!(err(&[("startingVersion", "x")]).contains("must be a number"));
        assert!(err(&[("startingVersion", "1"), ("startingTimestamp", "t")]).contains("Multiple starting"));
        assert!(err(&[("startingVersion", "1"), ("includeHistoricalMetadata", "yes")]).contains("true or false"));
        assert!(err(&[("startingVersion", "1"), ("maxFiles", "0")]).contains("positive"));
        let python =
            ChangesRequest::from_query_pairs([("startingVersion", "0"), ("includeHistoricalMetadata", "True")]);
        assert_eq!(python.map(|r| r.include_historical_metadata), Ok(Some(true)));
    }
}
