//! Query-string parameters, parsed with the protocol's error messages.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use d2o_catalog::PageRequest;

use d2o_protocol::request::{self, ParamError};

use crate::ApiError;

fn invalid(e: ParamError) -> ApiError {
    ApiError::InvalidParameter(e.0)
}

/// The query string of a request as name -> value (the last one wins).
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(q) = RawQuery::from_request_parts(parts, state).await.unwrap_or(RawQuery(None));
        Ok(Params(url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect()))
    }
}

impl Params {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|v| request::parse_i64(name, v)).transpose().map_err(invalid)
    }

    /// A non-negative version number.
    pub(crate) fn version(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name).map(|v| request::parse_version(name, v)).transpose().map_err(invalid)
    }

    /// The `(name, value)` pairs, for the protocol's request types to read.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `maxResults` and `pageToken` of the list endpoints.
    pub(crate) fn page(&self) -> Result<PageRequest, ApiError> {
        let max_results = match self.i64("maxResults")? {
            None => None,
            Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Some(n as u32),
            Some(_) => {
                return Err(ApiError::InvalidParameter(
                    "Acceptable values of 'maxResults' are 0 to 500, inclusive.".to_owned(),
                ));
            }
        };
        Ok(PageRequest { max_results, page_token: self.get("pageToken").map(str::to_owned) })
    }
}
