//! What d2o shares, and with whom.
//!
//! The server asks a [`Catalog`] two kinds of question: who is calling ([`Catalog::authenticate`])
//! and what that caller may see (shares, schemas, tables, and where a table's data lives). This
//! crate holds the trait, its contract, and the backends.
//!
//! # Layout
//! - [`Catalog`]: the trait the protocol server depends on, with its contract.
//! - [`Admin`]: the provider's operations (shares, tables, recipients, tokens, grants, audit).
//! - [`SqlCatalog`]: both traits over SQLite (embedded, the default) or PostgreSQL (several
//!   replicas), with versioned migrations applied at start.
//! - [`PartitionFilter`]: per-table filters such as `region = CURRENT_RECIPIENT('region')`.
//! - [`share_config`]: the share tree of a reference-format YAML file, and the rules for
//!   names and locations; [`YamlCatalog`], a read-only catalog over such a tree with one
//!   optional bearer token. (The file's server settings are the server crate's.)
//! - [`storage_location`]: named storage locations, the object-store options of the tables
//!   under a URL prefix (no secrets: environment references only).
//! - [`credential`]: credential kinds (bearer tokens, OAuth clients) and one-time activation
//!   links that create them.
//! - [`federation`]: OIDC federation policies, which tokens of an outside identity provider
//!   act for a recipient.
//! - [`page`]: list pagination with opaque, checked page tokens.
//! - [`CatalogError`]: what a caller can act on (`NotFound`, `Unauthenticated`, ...).

pub mod admin;
pub mod credential;
pub mod federation;
pub mod import;
pub mod ip_access;
pub mod page;
pub mod partition_filter;
pub mod rate_limit;
pub mod share_config;
pub mod sql;
pub mod storage_location;

mod catalog;
mod error;
mod names;
mod yaml_catalog;

pub use admin::{
    ActivationLinkInfo, Admin, AuditEvent, AuditFilter, NewRecipient, RecipientInfo, ShareInfo, TableEntry, TokenInfo,
    UsageBy, UsagePoint, UsageQuery,
};
pub use catalog::{Catalog, Principal, SharedTable};
pub use credential::{
    ActivationInfo, ActivationRequest, ActivationState, CredentialKind, CredentialRequest, Issued, IssuedActivation,
    IssuedToken,
};
pub use error::CatalogError;
pub use federation::{FederationPolicy, NewFederationPolicy, PolicyMismatch, SubjectClaim};
pub use import::{ImportChange, ImportPlan, ImportShare, ImportSpec, LegacyToken};
pub use page::{PageRequest, PageToken};
pub use partition_filter::PartitionFilter;
pub use rate_limit::RateLimit;
pub use sql::SqlCatalog;
pub use storage_location::{StorageLocation, StoreKind, UrlMode};
pub use yaml_catalog::{YamlCatalog, derived_table_id};

#[cfg(test)]
mod fuzz;
