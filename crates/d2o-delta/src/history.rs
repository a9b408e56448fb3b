//! Commit timestamps of a table, for time travel by timestamp and for change feeds.
//!
//! A commit's timestamp is its in-commit timestamp when the table records one, else the
//! `timestamp` of its `commitInfo`, else the commit file's modification time. File times are
//! the Delta protocol's default, but they do not survive a copy of the table (every commit of a
//! copied table gets the copy's time), while `commitInfo` does; Delta writers record both. As in
//! Delta's own history manager, timestamps are made strictly increasing with the version.

use serde_json::Value;
use url::Url;

use delta_kernel::Engine;

use crate::DeltaError;

/// Versions and timestamps of the commits in the log, in version order.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    commits: Vec<(u64, i64)>,
}

impl History {
    pub(crate) fn last_version(&self) -> Option<u64> {
        self.commits.last().map(|(v, _)| *v)
    }

    pub(crate) fn timestamp_of(&self, version: u64) -> Option<i64> {
        self.commits.binary_search_by_key(&version, |(v, _)| *v).ok().map(|i| self.commits[i].1)
    }

    /// The latest version with a timestamp at or before `ts`.
    pub(crate) fn at_or_before(&self, ts: i64) -> Option<u64> {
        let i = self.commits.partition_point(|(_, t)| *t <= ts);
        i.checked_sub(1).map(|i| self.commits[i].0)
    }

    /// The earliest version with a timestamp at or after `ts`.
    pub(crate) fn at_or_after(&self, ts: i64) -> Option<u64> {
        let i = self.commits.partition_point(|(_, t)| *t < ts);
        self.commits.get(i).map(|(v, _)| *v)
    }

    pub(crate) fn first(&self) -> Option<(u64, i64)> {
        self.commits.first().copied()
    }

    pub(crate) fn last(&self) -> Option<(u64, i64)> {
        self.commits.last().copied()
    }

    /// Extends the history with the commits after the ones it has, up to `latest`.
    pub(crate) fn extend(&mut self, engine: &dyn Engine, table_root: &Url, latest: u64) -> Result<(), DeltaError> {
        if self.last_version().is_some_and(|v| v >= latest) {
            return Ok(());
        }
        let log = table_root.join("_delta_log/").map_err(|e| DeltaError::internal_from("bad log URL", e))?;
        let from = match self.last_version() {
            Some(v) => {
                log.join(&format!("{v:020}.json")).map_err(|e| DeltaError::internal_from("bad commit URL", e))?
            }
            None => log.clone(),
        };
        let mut found = Vec::new();
        for meta in engine.storage_handler().list_from(&from)? {
            let meta = meta?;
            let name = meta.location.path().rsplit('/').next().unwrap_or_default();
            let Some(version) =
                name.strip_suffix(".json").filter(|v| v.len() == 20).and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            if version > latest || self.last_version().is_some_and(|last| version <= last) {
                continue;
            }
            found.push((version, meta));
        }
        found.sort_by_key(|(v, _)| *v);
        for (version, meta) in found {
            let ts = commit_info_timestamp(engine, &meta.location)?.unwrap_or(meta.last_modified);
            let ts = match self.commits.last() {
                Some((_, prev)) if ts <= *prev => prev + 1,
                _ => ts,
            };
            self.commits.push((version, ts));
        }
        Ok(())
    }
}

/// The in-commit timestamp or `commitInfo.timestamp` of a commit file.
fn commit_info_timestamp(engine: &dyn Engine, commit: &Url) -> Result<Option<i64>, DeltaError> {
    let mut text = Vec::new();
    for bytes in engine.storage_handler().read_files(vec![(commit.clone(), None)])? {
        text.extend_from_slice(&bytes?);
    }
    let line = text.split(|b| *b == b'\n').find(|l| l.windows(12).any(|w| w == b"\"commitInfo\""));
    let Some(info) = line.and_then(|l| serde_json::from_slice::<Value>(l).ok()) else { return Ok(None) };
    let info = info.get("commitInfo");
    Ok(info.and_then(|i| i.get("inCommitTimestamp").or_else(|| i.get("timestamp"))).and_then(Value::as_i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let h = History { commits: vec![(0, 100), (1, 200), (2, 300)] };
        assert_eq!(h.at_or_before(99), None);
        assert_eq!(h.at_or_before(100), Some(0));
        assert_eq!(h.at_or_before(250), Some(1));
        assert_eq!(h.at_or_before(1000), Some(2));
        assert_eq!(h.at_or_after(0), Some(0));
        assert_eq!(h.at_or_after(101), Some(1));
        assert_eq!(h.at_or_after(300), Some(2));
        assert_eq!(h.at_or_after(301), None);
        assert_eq!(h.timestamp_of(1), Some(200));
        assert_eq!(h.timestamp_of(5), None);
    }
}
