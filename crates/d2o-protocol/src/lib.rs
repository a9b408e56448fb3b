//! Wire types of the Delta Sharing protocol, shared by the d2o server and client.
//!
//! This crate is the vocabulary of the open protocol and nothing more: it has no I/O, no HTTP and
//! no Delta log reading. Everything here is plain data with serde, plus the one piece of logic
//! that both sides need to agree on exactly: evaluating predicate hints against what is known of
//! a file (its partition values and statistics).
//!
//! # Layout
//! - [`model`]: the JSON bodies of the discovery endpoints (shares, schemas, tables, pages).
//! - [`action`]: the NDJSON lines of `/metadata`, `/query` and `/changes`, in both response
//!   formats, and the fast writers of data-file lines.
//! - [`capabilities`]: the `delta-sharing-capabilities` header.
//! - [`hex`]: lower-case hex, as file ids and token hashes are written.
//! - [`predicate`]: `jsonPredicateHints` trees, the SQL `predicateHints` subset, and their
//!   conservative evaluation over file statistics.
//! - [`profile`]: the recipient's profile file (`config.share`).
//! - [`request`]: the `/query` body and the `/changes` parameters, with their checks.
//! - [`timestamp`]: the protocol's ISO-8601 timestamps.
//! - [`ErrorCode`] and [`ErrorBody`]: the `{"errorCode","message"}` error body.

pub mod action;
pub mod capabilities;
pub mod hex;
pub mod model;
pub mod predicate;
pub mod profile;
pub mod request;
pub mod timestamp;

mod error;

pub use error::{ErrorBody, ErrorCode};

#[cfg(test)]
mod fuzz;
