//! The d2o recipient client: read tables shared over the open Delta Sharing protocol, as Arrow.
//!
//! It talks to any Delta Sharing server (d2o, the reference server, Databricks) with a profile
//! file, downloads the data files in parallel, and hands back Arrow `RecordBatch`es with
//! deletion vectors applied, partition columns filled in and column mapping resolved. Filters
//! are sent to the server as `jsonPredicateHints` and applied again to every row, so results
//! are exact. With the `sql` feature, shared tables become DataFusion tables.
//!
//! It depends on `d2o-protocol` for the wire types and never on the server.
//!
//! ```no_run
//! # async fn f() -> d2o_client::Result<()> {
//! let client = d2o_client::Client::from_profile("config.share")?;
//! let batches = client.table("retail.sales.orders").columns(["id", "amount"]).filter_text("amount > 100").load().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`profile`]: finding a profile (file, JSON, `DELTA_SHARING_PROFILE`), table names, and
//!   authentication (bearer token, OAuth client credentials with refresh, basic).
//! - [`client`]: [`Client`], the protocol's REST calls with retries and clear errors.
//! - [`files`]: [`TableFiles`], what `/query` and `/changes` return, read from either format.
//! - [`table`]: [`TableQuery`] and [`ChangesQuery`], the read builders.
//! - `reader`: parallel download and decoding, URL refresh, [`RecordBatchStream`].
//! - [`schema`]: Delta schemas as Arrow, with column-mapping names.
//! - [`filter`]: predicates applied to record batches.
//! - [`write`]: streaming batches to Parquet, CSV or Arrow IPC files.
//! - `sql` (feature `sql`): a DataFusion `TableProvider` and catalog.
//! - [`ClientError`]: every error, with what the caller can act on.

pub mod client;
pub mod files;
pub mod filter;
pub mod profile;
pub mod schema;
pub mod table;
pub mod write;

mod convert;
mod copy;
mod dv;
mod error;
mod reader;
#[cfg(feature = "sql")]
pub mod sql;

pub use client::{Client, ClientBuilder};
pub use error::{ClientError, Result};
pub use files::{DataFile, FileKind, TableFiles, TableMetadata};
pub use profile::{PROFILE_ENV, TableName, load_profile, parse_table_url, profile_from_env};
pub use reader::{CHANGE_TYPE, COMMIT_TIMESTAMP, COMMIT_VERSION, LoadProgress, RecordBatchStream};
pub use table::{ChangesQuery, TableQuery};

pub use d2o_protocol::capabilities::ResponseFormat;
/// Re-exported so callers need not depend on `d2o-protocol` for the basics.
pub use d2o_protocol::predicate::Predicate;
pub use d2o_protocol::profile::Profile;
