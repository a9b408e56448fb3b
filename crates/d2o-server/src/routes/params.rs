//! Query-string parameters, parsed with the protocol's error messages.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use d2o_catalog::PageRequest;

use crate::ApiError;

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
        self.get(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::InvalidParameter(format!(
                        "'{name}' must be a number: expected a number but the string didn't have the appropriate format ('{v}')"
                    ))
                })
            })
            .transpose()
    }

    /// A non-negative version number.
    pub(crate) fn version(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.i64(name)? {
            Some(v) if v < 0 => Err(ApiError::InvalidParameter(format!("'{name}' cannot be negative"))),
            v => Ok(v.map(|v| v as u64)),
        }
    }

    /// A boolean, case-insensitive (the Python connector sends `True`/`False`).
    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::InvalidParameter(format!("'{name}' must be true or false, not '{v}'"))),
            })
            .transpose()
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
