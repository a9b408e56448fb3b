//! Request rate limits: a rate (`10/s`, `600/min`, `5000/h`) and a burst, for one recipient or
//! for the whole server. The server enforces them with a token bucket per recipient, in memory,
//! on each replica's own traffic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The largest rate or burst accepted.
const MAX_REQUESTS: u32 = 1_000_000;

/// A sustained rate: `requests` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub requests: u32,
    pub period: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Second,
    Minute,
    Hour,
}

impl Period {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
        })
    }
}

impl Rate {
    /// Requests per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.requests) / self.period.duration().as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a rate; write it as 10/s, 600/min or 5000/h");
        let (requests, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let requests: u32 = requests.trim().parse().map_err(|_| bad())?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Period::Second,
            "m" | "min" | "minute" => Period::Minute,
            "h" | "hour" => Period::Hour,
            _ => return Err(bad()),
        };
        if requests == 0 || requests > MAX_REQUESTS {
            return Err(format!("'{s}': the number of requests must be between 1 and {MAX_REQUESTS}"));
        }
        Ok(Rate { requests, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "h",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// A rate and the burst allowed above it (the bucket's size). Serialized as
/// `{"rate": "10/s", "burst": 20}`; reading one checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RateLimitSpec", into = "RateLimitSpec")]
pub struct RateLimit {
    pub rate: Rate,
    pub burst: u32,
}

impl RateLimit {
    /// A limit; without a burst, one second's worth of the rate (at least 1).
    pub fn new(rate: Rate, burst: Option<u32>) -> Result<RateLimit, String> {
        let burst = burst.unwrap_or_else(|| (rate.per_second().ceil() as u32).max(1));
        if burst == 0 || burst > MAX_REQUESTS {
            return Err(format!("a burst must be between 1 and {MAX_REQUESTS}"));
        }
        Ok(RateLimit { rate, burst })
    }
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
struct RateLimitSpec {
    /// Requests per period: `10/s`, `600/min`, `36/h`.
    rate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
}

// The JSON form is `RateLimitSpec`'s, so that is the schema (named `RateLimit`).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for RateLimit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <RateLimitSpec as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for RateLimit {
    fn name() -> std::borrow::Cow<'static, str> {
        "RateLimit".into()
    }
}

impl TryFrom<RateLimitSpec> for RateLimit {
    type Error = String;
    fn try_from(spec: RateLimitSpec) -> Result<Self, String> {
        RateLimit::new(spec.rate.parse()?, spec.burst)
    }
}

impl From<RateLimit> for RateLimitSpec {
    fn from(limit: RateLimit) -> Self {
        RateLimitSpec { rate: limit.rate.to_string(), burst: Some(limit.burst) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for (text, shown, per_second) in
            [("10/s", "10/s", 10.0), ("600 / min", "600/min", 10.0), ("36/h", "36/h", 0.01)]
        {
            let rate: Rate = text.parse().expect(text);
            assert_eq!((rate.to_string().as_str(), rate.per_second()), (shown, per_second));
        }
        for bad in ["", "10", "0/s", "-1/s", "10/day", "x/s", "2000000/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_read_back_and_default_their_burst() {
        let limit: RateLimit = serde_json::from_str(r#"{"rate": "600/min"}"#).expect("valid");
        assert_eq!(limit.burst, 10);
        assert_eq!(serde_json::to_string(&limit).expect("json"), r#"{"rate":"600/min","burst":10}"#);
        assert_eq!(RateLimit::new("1/h".parse().expect("rate"), None).expect("valid").burst, 1);
        assert!(serde_json::from_str::<RateLimit>(r#"{"rate": "1/s", "burst": 0}"#).is_err());
        assert!(serde_json::from_str::<RateLimit>(r#"{"rate": "1/s", "extra": 1}"#).is_err());
    }
}
