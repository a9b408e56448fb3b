//! Integration tests of the recipient client against a real d2o server (in-process, on
//! 127.0.0.1:0) serving the shared fixture tables in `tests/data/delta-tables`.

#![allow(unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

mod auth;
mod changes;
mod discovery;
mod errors;
mod filters;
mod refresh;
mod snapshots;
#[cfg(feature = "sql")]
mod sql;
mod support;
mod write;
