//! JSON bodies of the discovery endpoints: shares, schemas, tables and their pages.
//!
//! Every body is written on one line (the Python connector parses only the first line).
//! Optional fields are omitted when absent, and unknown fields are ignored when reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A share as listed by `GET /shares` and `GET /shares/{share}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// A schema inside a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    pub share: String,
}

/// A table inside a schema of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub name: String,
    pub schema: String,
    pub share: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One page of a list endpoint: `{"items": [...], "nextPageToken": "..."}`.
///
/// Servers may omit `items` on an empty page and send `nextPageToken` as absent or `""` on the
/// last page; [`Page::next_page_token`] treats both forms alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// The token of the next page, or `None` on the last page (absent or empty token).
    pub fn next_page_token(&self) -> Option<&str> {
        self.next_page_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// The body of `GET /shares/{share}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetShareResponse {
    pub share: Share,
}
