//! What d2o shares, and with whom.
//!
//! The server asks a [`Catalog`] two kinds of question: who is calling ([`Catalog::authenticate`])
//! and what that caller may see (shares, schemas, tables, and where a table's data lives). This
//! crate holds the trait, its contract, and the backends.
//!
//! # Layout
//! - [`Catalog`]: the trait the server depends on, with its contract.
//! - [`config`]: the reference Delta Sharing server's YAML file ([`ServerConfig`]), and
//!   [`YamlCatalog`], a read-only catalog over its share tree with one optional bearer token.
//! - [`page`]: list pagination with opaque, checked page tokens.
//! - [`CatalogError`]: what a caller can act on (`NotFound`, `Unauthenticated`, ...).

pub mod config;
pub mod page;

mod catalog;
mod error;
mod yaml_catalog;

pub use catalog::{Catalog, Principal, SharedTable};
pub use config::{ConfigError, ServerConfig};
pub use error::CatalogError;
pub use page::{PageRequest, PageToken};
pub use yaml_catalog::YamlCatalog;
