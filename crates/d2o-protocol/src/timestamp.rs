//! The protocol's timestamps: ISO-8601 with an offset (`2022-01-01T00:00:00Z`,
//! `2020-01-01T00:00:00-08:00`), carried as milliseconds since the Unix epoch.

use chrono::DateTime;

/// Parses an ISO-8601 timestamp with an offset into milliseconds since the epoch.
///
/// Returns a human-readable reason on failure, suitable for an `INVALID_PARAMETER_VALUE` message.
pub fn parse_timestamp_millis(value: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(value.trim()).map(|t| t.timestamp_millis()).map_err(|e| {
        format!("'{value}' is not an ISO-8601 timestamp with an offset such as 2022-01-01T00:00:00Z ({e})")
    })
}

/// Formats milliseconds since the epoch as an RFC 3339 UTC timestamp (`2022-01-01T00:00:00.000Z`).
pub fn format_timestamp_millis(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_timestamp_millis("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_timestamp_millis("1970-01-01T00:00:00-00:01"), Ok(60_000));
        assert_eq!(parse_timestamp_millis("2022-01-01T00:00:00.5Z"), Ok(1_640_995_200_500));
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        assert!(parse_timestamp_millis("abc").is_err());
        assert!(parse_timestamp_millis("2022-01-01").is_err());
        assert!(parse_timestamp_millis("2022-01-01T00:00:00").is_err());
    }

    #[test]
    fn formats_round_trip() {
        let t = 1_640_995_200_500;
        assert_eq!(parse_timestamp_millis(&format_timestamp_millis(t)), Ok(t));
    }
}
