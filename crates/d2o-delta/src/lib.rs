//! Delta tables for d2o, read through `delta_kernel`.
//!
//! The server never touches the kernel directly: it asks [`DeltaTables`] for a [`TableSnapshot`]
//! (latest, at a version, or at a timestamp), for the active files of a snapshot
//! ([`DeltaTables::visit_files`], served from a per-version cache when warm), and for the commits
//! of a version range ([`DeltaTables::commits`], for the change data feed and streaming).
//!
//! What this crate is not: it knows nothing of HTTP, recipients or URL signing; it hands out
//! table-relative file paths and leaves turning them into URLs to the caller.
//!
//! # Layout
//! - [`tables`]: the service, its engines and snapshot caches.
//! - `engine`: the kernel's default engine, reading local Parquet (checkpoints) a page at a time.
//! - [`snapshot`]: [`TableSnapshot`], what the protocol needs of one version (metadata, protocol,
//!   schema facts such as column mapping).
//! - [`files`]: [`ActiveFiles`], a compact arena of active files, and the scan that makes one
//!   per batch of the kernel's scan metadata.
//! - `file_lists`: a version's files for many callers: one scan shared by concurrent requests
//!   (single flight), a cache within a byte budget, bounded memory for versions beyond it.
//! - [`changes`]: the actions of each commit in a version range.
//! - [`storage`]: [`StoreOpener`], the seam between a table location and its object store.
//! - [`cache`]: a small LRU bounded by bytes.

pub mod cache;
pub mod changes;
mod engine;
mod file_lists;
pub mod files;
mod history;
pub mod snapshot;
pub mod storage;
pub mod tables;

mod error;

pub use changes::{Commit, FileChange, FileChangeKind};
pub use error::DeltaError;
pub use file_lists::SegmentVisitor;
pub use files::{ActiveFiles, DeletionVectorDescriptor, FileEntry, deletion_vector_path, file_id};
pub use snapshot::TableSnapshot;
pub use storage::{LocalStores, StoreOpener};
pub use tables::{DeltaTables, DeltaTablesOptions, TimestampBound};
