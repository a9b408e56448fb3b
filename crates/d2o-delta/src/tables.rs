//! [`DeltaTables`]: the one place the server reads Delta tables from.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use d2o_protocol::timestamp::format_timestamp_millis;
use delta_kernel::{Engine, Snapshot};
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use parking_lot::Mutex;
use serde_json::Value;
use url::Url;

use crate::cache::{ByteLru, count_lookup};
use crate::engine::PagedEngine;
use crate::file_lists::FileLists;
use crate::files::{FileEntry, scan};
use crate::history::History;
use crate::storage::{LocalStores, StoreOpener};
use crate::{ActiveFiles, Commit, DeltaError, SegmentVisitor, TableSnapshot};

/// Tuning for [`DeltaTables`].
#[derive(Debug, Clone)]
pub struct DeltaTablesOptions {
    /// How many tables keep their latest snapshot.
    pub snapshot_cache_tables: usize,
    /// Memory budget of the per-version file-list cache.
    pub file_list_cache_bytes: usize,
    /// Most versions of one table whose file lists stay cached: under a steady writer each new
    /// version replaces the oldest rather than adding to memory.
    pub file_list_versions_per_table: usize,
    /// Memory budget of the snapshots of older versions kept for time travel.
    pub snapshot_cache_bytes: usize,
    /// When set, a cached latest snapshot younger than this is served without listing the log.
    pub staleness: Option<Duration>,
    /// Most threads the kernel's storage I/O may block at once (local files are read on
    /// blocking threads).
    pub io_threads: usize,
}

impl Default for DeltaTablesOptions {
    fn default() -> Self {
        DeltaTablesOptions {
            snapshot_cache_tables: 64,
            file_list_cache_bytes: 96 << 20,
            file_list_versions_per_table: 4,
            snapshot_cache_bytes: 64 << 20,
            staleness: None,
            io_threads: 16,
        }
    }
}

/// Which side of a timestamp to resolve a version on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampBound {
    /// The latest version committed at or before the timestamp (time travel).
    AtOrBefore,
    /// The earliest version committed at or after the timestamp (a starting point).
    AtOrAfter,
}

/// Reads Delta tables, with caches that make repeated requests cheap.
///
/// All methods block (the kernel is synchronous); call them from blocking threads.
pub struct DeltaTables {
    options: DeltaTablesOptions,
    stores: Arc<dyn StoreOpener>,
    /// The runtime every engine does its storage I/O on: one for all tables, with a bounded
    /// blocking pool (each engine would otherwise start a runtime of its own, whose blocking
    /// pool grows to hundreds of threads under a burst of uncached reads).
    io: Option<tokio::runtime::Runtime>,
    engines: Mutex<HashMap<String, Arc<dyn Engine>>>,
    latest: Mutex<HashMap<Url, (TableSnapshot, Instant)>>,
    pinned: Mutex<ByteLru<(Url, u64), TableSnapshot>>,
    file_lists: FileLists,
    histories: Mutex<HashMap<Url, Arc<History>>>,
}

impl std::fmt::Debug for DeltaTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaTables").field("options", &self.options).finish_non_exhaustive()
    }
}

impl DeltaTables {
    /// The service over tables on the local file system. Fails only when its I/O runtime
    /// cannot start.
    pub fn new(options: DeltaTablesOptions) -> Result<Self, DeltaError> {
        Self::with_stores(options, Arc::new(LocalStores))
    }

    /// The service over the stores `stores` opens.
    pub fn with_stores(options: DeltaTablesOptions, stores: Arc<dyn StoreOpener>) -> Result<Self, DeltaError> {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(options.io_threads.max(1))
            .thread_name("d2o-delta-io")
            .enable_all()
            .build()
            .map_err(|e| DeltaError::internal(format!("cannot start the storage I/O runtime: {e}")))?;
        let file_lists = FileLists::new(options.file_list_cache_bytes, options.file_list_versions_per_table);
        let pinned = Mutex::new(ByteLru::new(options.snapshot_cache_bytes));
        Ok(DeltaTables {
            options,
            stores,
            io: Some(io),
            engines: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            pinned,
            file_lists,
            histories: Mutex::new(HashMap::new()),
        })
    }

    /// The engine for a location; one per store (see [`StoreOpener::store_key`]).
    fn engine(&self, location: &Url) -> Result<Arc<dyn Engine>, DeltaError> {
        let key = self.stores.store_key(location);
        if let Some(engine) = self.engines.lock().get(&key) {
            return Ok(engine.clone());
        }
        let store = self.stores.open(location)?;
        let io = self.io.as_ref().ok_or_else(|| DeltaError::internal("the storage runtime has stopped"))?;
        let executor = Arc::new(TokioMultiThreadExecutor::new(io.handle().clone()));
        let engine: Arc<dyn Engine> =
            Arc::new(PagedEngine::new(DefaultEngineBuilder::new(store).with_task_executor(executor).build()));
        self.engines.lock().insert(key, engine.clone());
        Ok(engine)
    }

    /// The newest committed version of the table (or, with staleness allowed, one at most that
    /// old).
    pub fn latest(&self, location: &Url) -> Result<TableSnapshot, DeltaError> {
        self.read_latest(location).map_err(|e| e.at(location))
    }

    fn read_latest(&self, location: &Url) -> Result<TableSnapshot, DeltaError> {
        let cached = self.latest.lock().get(location).cloned();
        if let (Some((snapshot, checked)), Some(staleness)) = (&cached, self.options.staleness)
            && checked.elapsed() < staleness
        {
            count_lookup("latest_snapshot", true);
            return Ok(snapshot.clone());
        }
        // A cached snapshot is refreshed incrementally (a hit); without one the whole log is read.
        count_lookup("latest_snapshot", cached.is_some());
        let engine = self.engine(location)?;
        let snapshot = match cached {
            Some((old, _)) => {
                let fresh = Snapshot::builder_from(old.inner.clone()).build(engine.as_ref())?;
                if fresh.version() == old.version() { old } else { TableSnapshot::new(fresh)? }
            }
            None => TableSnapshot::new(Snapshot::builder_for(location.as_str()).build(engine.as_ref())?)?,
        };
        let mut latest = self.latest.lock();
        if latest.len() >= self.options.snapshot_cache_tables.max(1) && !latest.contains_key(location) {
            // Evict the entry checked longest ago.
            if let Some(oldest) = latest.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) {
                latest.remove(&oldest);
            }
        }
        latest.insert(location.clone(), (snapshot.clone(), Instant::now()));
        Ok(snapshot)
    }

    /// The table at `version`. `latest` (if the caller has it) avoids a second log listing.
    pub fn at_version(
        &self,
        location: &Url,
        version: u64,
        latest: Option<&TableSnapshot>,
    ) -> Result<TableSnapshot, DeltaError> {
        self.read_version(location, version, latest).map_err(|e| e.at(location))
    }

    fn read_version(
        &self,
        location: &Url,
        version: u64,
        latest: Option<&TableSnapshot>,
    ) -> Result<TableSnapshot, DeltaError> {
        if let Some(latest) = latest {
            if latest.version() == version {
                return Ok(latest.clone());
            }
            if version > latest.version() {
                return Err(DeltaError::VersionNotFound(format!(
                    "version {version} does not exist; the latest version of the table is {}",
                    latest.version()
                )));
            }
        }
        let key = (location.clone(), version);
        let cached = self.pinned.lock().get(&key);
        count_lookup("version_snapshot", cached.is_some());
        if let Some(s) = cached {
            return Ok(s);
        }
        let engine = self.engine(location)?;
        let snapshot =
            Snapshot::builder_for(location.as_str()).at_version(version).build(engine.as_ref()).map_err(|e| {
                match DeltaError::from(e) {
                    DeltaError::Internal { message: m, .. } | DeltaError::TableNotFound(m) => {
                        DeltaError::VersionNotFound(format!("version {version} of the table cannot be read: {m}"))
                    }
                    other => other,
                }
            })?;
        let snapshot = TableSnapshot::new(snapshot)?;
        self.pinned.lock().insert(key, snapshot.clone(), snapshot.estimated_bytes());
        Ok(snapshot)
    }

    /// The commit history of a table up to `latest`, cached and extended as the table grows.
    fn history(&self, latest: &TableSnapshot) -> Result<Arc<History>, DeltaError> {
        let root = latest.table_root();
        let cached = self.histories.lock().get(root).cloned();
        if let Some(h) = &cached
            && h.last_version().is_some_and(|v| v >= latest.version())
        {
            return Ok(h.clone());
        }
        let mut history = cached.map(|h| (*h).clone()).unwrap_or_default();
        history.extend(self.engine(root)?.as_ref(), root, latest.version())?;
        let history = Arc::new(history);
        self.histories.lock().insert(root.clone(), history.clone());
        Ok(history)
    }

    /// Resolves a timestamp (ms since the epoch) to a version, against the history of `latest`.
    ///
    /// [`TimestampBound::AtOrBefore`] fails with `TimestampOutOfRange` before the first commit
    /// and after the last one; [`TimestampBound::AtOrAfter`] answers the first version for a
    /// timestamp before the first commit and fails after the last one.
    pub fn version_at(&self, latest: &TableSnapshot, timestamp: i64, bound: TimestampBound) -> Result<u64, DeltaError> {
        let history = self.history(latest)?;
        let (Some((_, first)), Some((_, last))) = (history.first(), history.last()) else {
            return Err(DeltaError::TimestampOutOfRange("the table has no commits in its log".into()));
        };
        let show = format_timestamp_millis;
        let after_latest = || {
            DeltaError::TimestampOutOfRange(format!(
                "The provided timestamp ({}) is after the latest version available to this table ({}).",
                show(timestamp),
                show(last)
            ))
        };
        match bound {
            TimestampBound::AtOrBefore => {
                if timestamp > last {
                    return Err(after_latest());
                }
                history.at_or_before(timestamp).ok_or_else(|| {
                    DeltaError::TimestampOutOfRange(format!(
                        "The provided timestamp ({}) is before the earliest version available to this table ({}).",
                        show(timestamp),
                        show(first)
                    ))
                })
            }
            TimestampBound::AtOrAfter => history.at_or_after(timestamp).ok_or_else(after_latest),
        }
    }

    /// The commit timestamp of a snapshot's version (see the `history` module for its source).
    pub fn commit_timestamp(&self, snapshot: &TableSnapshot) -> Result<i64, DeltaError> {
        let history = self.history(snapshot)?;
        match history.timestamp_of(snapshot.version()) {
            Some(ts) => Ok(ts),
            None => Ok(snapshot.inner.get_timestamp(self.engine(snapshot.table_root())?.as_ref())?),
        }
    }

    /// Calls `visit` with each active file of `snapshot`, in a stable order, until it breaks.
    /// See [`DeltaTables::visit_segments`].
    pub fn visit_files(
        &self,
        snapshot: &TableSnapshot,
        visit: &mut dyn FnMut(FileEntry<'_>) -> ControlFlow<()>,
    ) -> Result<(), DeltaError> {
        self.visit_segments(snapshot, &mut |segment| {
            for entry in segment.iter() {
                visit(entry)?;
            }
            ControlFlow::Continue(())
        })
    }

    /// Calls `visit` with the active files of `snapshot` a segment at a time, in a stable
    /// order, until it breaks. A segment can be kept (to render its files on another thread).
    ///
    /// Served from the per-version cache when warm. Otherwise callers that ask for the same
    /// version at once share one scan of its log, each visiting the segments as they arrive (so
    /// responses stream), and the complete list is cached if it fits the budget; a version too
    /// large for the budget is streamed in bounded memory instead (see the `file_lists` module).
    pub fn visit_segments(&self, snapshot: &TableSnapshot, visit: &mut SegmentVisitor<'_>) -> Result<(), DeltaError> {
        let root = snapshot.table_root();
        let scan = Box::new(|segment: &mut dyn FnMut(ActiveFiles) -> ControlFlow<()>| {
            let engine = self.engine(root)?;
            scan(snapshot, engine.as_ref(), segment)
        });
        self.file_lists.visit((root.clone(), snapshot.version()), snapshot.checkpoint_bytes(), scan, visit)
    }

    /// The commits `start..=end` of the table (`latest` must be at or after `end`), each with
    /// its actions and timestamp.
    pub fn commits(&self, latest: &TableSnapshot, start: u64, end: u64) -> Result<Vec<Commit>, DeltaError> {
        let history = self.history(latest)?;
        let root = latest.table_root();
        let engine = self.engine(root)?;
        let mut out = Vec::new();
        for version in start..=end {
            let missing = || {
                DeltaError::VersionNotFound(format!(
                    "commit {version} is not available in the log (it may have been cleaned up)"
                ))
            };
            let timestamp = history.timestamp_of(version).ok_or_else(missing)?;
            let url = root
                .join(&format!("_delta_log/{version:020}.json"))
                .map_err(|e| DeltaError::internal_from("bad commit URL", e))?;
            let mut text = Vec::new();
            for bytes in engine.storage_handler().read_files(vec![(url, None)]).map_err(|_| missing())? {
                text.extend_from_slice(&bytes.map_err(|_| missing())?);
            }
            let actions = text
                .split(|b| *b == b'\n')
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                .map(serde_json::from_slice::<Value>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DeltaError::internal(format!("commit {version} is not valid JSON: {e}")))?;
            out.push(Commit { version, timestamp, actions });
        }
        Ok(out)
    }

    /// Forgets everything cached about a table (after it was dropped or replaced).
    pub fn forget(&self, location: &Url) {
        self.latest.lock().remove(location);
        self.pinned.lock().retain(|(l, _)| l != location);
        self.file_lists.forget(location);
        self.histories.lock().remove(location);
    }
}

impl Drop for DeltaTables {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed where this may be dropped (an async
        // task); let its threads wind down on their own.
        if let Some(io) = self.io.take() {
            io.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_storage_is_refused_before_any_credential_lookup() {
        let tables = DeltaTables::new(DeltaTablesOptions::default()).expect("runtime");
        for location in ["s3://bucket/t/", "gs://bucket/t/", "abfss://c@a.dfs.core.windows.net/t/"] {
            let url = Url::parse(location).expect("url");
            match tables.latest(&url) {
                Err(DeltaError::Unsupported(m)) => assert!(m.contains("object storage"), "{m}"),
                other => panic!("{location}: {:?}", other.map(|s| s.version())),
            }
        }
        assert!(tables.engines.lock().is_empty(), "no store was built");
    }

    /// A table whose log is written here: version 0 creates it, each later version adds a file.
    fn write_version(root: &std::path::Path, version: u64) {
        let log = root.join("_delta_log");
        std::fs::create_dir_all(&log).expect("mkdir");
        let mut lines = Vec::new();
        if version == 0 {
            let schema = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}"#;
            lines.push(serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
            lines.push(serde_json::json!({"metaData": {"id": "t", "format": {"provider": "parquet", "options": {}},
                "schemaString": schema, "partitionColumns": [], "configuration": {}, "createdTime": 0}}));
        } else {
            lines.push(serde_json::json!({"add": {"path": format!("part-{version:05}.parquet"), "partitionValues": {},
                "size": 100, "modificationTime": 0, "dataChange": true}}));
        }
        lines.push(serde_json::json!({"commitInfo": {"timestamp": 1_700_000_000_000_i64 + version as i64}}));
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(log.join(format!("{version:020}.json")), text).expect("write commit");
    }

    /// Concurrent requests for a new version all get its whole file list, in the same order,
    /// whether they scanned it, joined a scan in progress or found it cached.
    #[test]
    fn concurrent_callers_of_one_version_get_the_same_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for version in 0..=200 {
            write_version(dir.path(), version);
        }
        let tables = DeltaTables::new(DeltaTablesOptions::default()).expect("runtime");
        let url = Url::from_directory_path(dir.path()).expect("url");
        let latest = tables.latest(&url).expect("latest");
        let lists: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut paths = Vec::new();
                        tables
                            .visit_files(&latest, &mut |e| {
                                paths.push(e.path().to_owned());
                                ControlFlow::Continue(())
                            })
                            .expect("files");
                        paths
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("caller")).collect()
        });
        assert_eq!(lists[0].len(), 200);
        assert!(lists.iter().all(|l| *l == lists[0]));
        assert_eq!(tables.file_lists.cached().0, 1);
    }

    /// Regression for the probe's finding that memory grew with every committed version: a
    /// reader following a writer for 1,000 versions keeps every per-version cache within its
    /// bounds.
    #[test]
    fn caches_stay_bounded_while_a_writer_commits_1000_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = DeltaTablesOptions { snapshot_cache_bytes: 2 << 20, ..DeltaTablesOptions::default() };
        let tables = DeltaTables::new(options.clone()).expect("runtime");
        let url = Url::from_directory_path(dir.path()).expect("url");
        for version in 0..=1000 {
            write_version(dir.path(), version);
            let latest = tables.latest(&url).expect("latest");
            assert_eq!(latest.version(), version);
            if version % 20 == 0 {
                // Checkpoints, as writers make them, keep each version's log replay short.
                let engine = tables.engine(&url).expect("engine");
                latest.inner.checkpoint(engine.as_ref(), None).expect("checkpoint");
            }
            let mut files = 0;
            tables
                .visit_files(&latest, &mut |_| {
                    files += 1;
                    ControlFlow::Continue(())
                })
                .expect("files");
            assert_eq!(files, version);
            if version % 10 == 0 && version > 0 {
                // Time travel pins an older version too.
                tables.at_version(&url, version / 2, Some(&latest)).expect("older version");
            }
            let (lists, bytes) = tables.file_lists.cached();
            assert!(lists <= options.file_list_versions_per_table, "{lists} file lists at v{version}");
            assert!(bytes <= options.file_list_cache_bytes);
            assert!(tables.pinned.lock().used_bytes() <= options.snapshot_cache_bytes);
        }
        assert!(tables.pinned.lock().len() > 1, "older versions are kept while they fit");
    }
}
