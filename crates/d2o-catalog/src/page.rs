//! List pagination: `maxResults` and opaque `pageToken`s that are checked against the listing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// The default and largest page size, as the reference server.
pub const MAX_RESULTS_LIMIT: u32 = 500;

/// What the client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub max_results: Option<u32>,
    pub page_token: Option<String>,
}

impl PageRequest {
    /// The effective page size: `maxResults`, or the default.
    ///
    /// Values above [`MAX_RESULTS_LIMIT`] are an error, as in the reference server.
    pub fn size(&self) -> Result<usize, CatalogError> {
        match self.max_results {
            None => Ok(MAX_RESULTS_LIMIT as usize),
            Some(n) if n <= MAX_RESULTS_LIMIT => Ok(n as usize),
            Some(_) => Err(CatalogError::InvalidArgument(format!(
                "Acceptable values of 'maxResults' are 0 to {MAX_RESULTS_LIMIT}, inclusive."
            ))),
        }
    }
}

/// The decoded content of a page token: which listing it belongs to and where the next page
/// starts. Encoded as URL-safe base64 of JSON, so it survives in a query string unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// The listing, e.g. `shares` or `tables/<share>/<schema>` (lower-cased names).
    #[serde(rename = "l")]
    pub listing: String,
    /// The position in the listing: an index or the last key returned, as the backend chooses.
    #[serde(rename = "p")]
    pub position: String,
}

impl PageToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a token and checks that it belongs to `listing`.
    pub fn decode(token: &str, listing: &str) -> Result<PageToken, CatalogError> {
        let invalid = || CatalogError::InvalidArgument("invalid 'nextPageToken'".to_owned());
        let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| invalid())?;
        let token: PageToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if token.listing != listing {
            return Err(invalid());
        }
        Ok(token)
    }
}

/// Cuts one page out of a fully materialized listing that is in a stable order.
///
/// The position is the index of the next item; `listing` names the listing (see [`PageToken`]).
pub fn page_of<T>(
    items: Vec<T>,
    listing: &str,
    page: &PageRequest,
) -> Result<d2o_protocol::model::Page<T>, CatalogError> {
    let size = page.size()?;
    let start = match &page.page_token {
        None => 0,
        Some(t) if t.is_empty() => 0,
        Some(t) => {
            let token = PageToken::decode(t, listing)?;
            token
                .position
                .parse::<usize>()
                .ok()
                .filter(|&s| s <= items.len())
                .ok_or_else(|| CatalogError::InvalidArgument("invalid 'nextPageToken'".to_owned()))?
        }
    };
    let end = start.saturating_add(size).min(items.len());
    let next_page_token =
        (end < items.len()).then(|| PageToken { listing: listing.to_owned(), position: end.to_string() }.encode());
    let items = items.into_iter().skip(start).take(end - start).collect();
    Ok(d2o_protocol::model::Page { items, next_page_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(max: Option<u32>, token: Option<String>) -> PageRequest {
        PageRequest { max_results: max, page_token: token }
    }

    #[test]
    fn pages_cover_the_listing_once() {
        let items: Vec<u32> = (0..7).collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = page_of(items.clone(), "l", &req(Some(3), token)).expect("valid page");
            assert!(page.items.len() <= 3);
            seen.extend(page.items);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn zero_results_still_pages() {
        let page = page_of(vec![1, 2], "l", &req(Some(0), None)).expect("valid page");
        assert!(page.items.is_empty());
        assert!(page.next_page_token.is_some());
    }

    #[test]
    fn bad_tokens_and_sizes_are_refused() {
        assert!(page_of(vec![1], "l", &req(None, Some("garbage".into()))).is_err());
        let other = PageToken { listing: "other".into(), position: "0".into() }.encode();
        assert!(page_of(vec![1], "l", &req(None, Some(other))).is_err());
        let far = PageToken { listing: "l".into(), position: "99".into() }.encode();
        assert!(page_of(vec![1], "l", &req(None, Some(far))).is_err());
        assert!(page_of(vec![1], "l", &req(Some(501), None)).is_err());
    }
}
