//! Integration tests of the protocol server: the router called in-process (`oneshot`) over the
//! real Delta tables in `tests/data/delta-tables`, and a real socket where URLs are fetched.

#![allow(unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

mod catalog;
mod changes;
mod compression;
mod console;
mod discovery;
mod files;
mod openapi;
mod query;
mod support;
mod table;
mod telemetry;
mod tls;
mod tokens;
mod wire;
