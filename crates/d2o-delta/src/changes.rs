//! The actions of each commit in a version range: what `/changes` and streaming queries serve.

use serde_json::Value;

/// One commit: its version, its timestamp (in-commit timestamp, else the commit file's
/// modification time) and its actions as raw JSON objects (`{"add": {...}}`, ...).
#[derive(Debug, Clone)]
pub struct Commit {
    pub version: u64,
    pub timestamp: i64,
    pub actions: Vec<Value>,
}

/// The kind of a file action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChangeKind {
    Add,
    Remove,
    Cdc,
}

impl FileChangeKind {
    /// The action's key in the Delta log (`add`, `remove`, `cdc`).
    pub fn log_key(self) -> &'static str {
        match self {
            FileChangeKind::Add => "add",
            FileChangeKind::Remove => "remove",
            FileChangeKind::Cdc => "cdc",
        }
    }
}

/// One file action of a commit: the raw action body (the object under `add`, `remove` or `cdc`).
#[derive(Debug, Clone, Copy)]
pub struct FileChange<'a> {
    pub kind: FileChangeKind,
    pub action: &'a Value,
}

impl FileChange<'_> {
    pub fn path(&self) -> Option<&str> {
        self.action.get("path").and_then(Value::as_str)
    }
}

impl Commit {
    fn action(&self, key: &str) -> impl Iterator<Item = &Value> {
        self.actions.iter().filter_map(move |a| a.get(key))
    }

    /// The `metaData` action of this commit, if it changed the metadata.
    pub fn metadata(&self) -> Option<&Value> {
        self.action("metaData").next()
    }

    /// The `protocol` action of this commit, if it changed the protocol.
    pub fn protocol(&self) -> Option<&Value> {
        self.action("protocol").next()
    }

    fn files(&self, kind: FileChangeKind) -> impl Iterator<Item = FileChange<'_>> {
        self.action(kind.log_key()).map(move |action| FileChange { kind, action })
    }

    fn data_change(f: &FileChange<'_>) -> bool {
        f.action.get("dataChange").and_then(Value::as_bool).unwrap_or(true)
    }

    /// The `add` and `remove` actions that changed data (`dataChange` true), as a streaming
    /// query returns them.
    pub fn data_changes(&self) -> Vec<FileChange<'_>> {
        self.files(FileChangeKind::Add).chain(self.files(FileChangeKind::Remove)).filter(Self::data_change).collect()
    }

    /// The files that make up this commit's change data: its `cdc` files when it has any,
    /// otherwise its data-changing `add` and `remove` actions (as Delta's own CDF reader).
    pub fn change_data(&self) -> Vec<FileChange<'_>> {
        let cdc: Vec<_> = self.files(FileChangeKind::Cdc).collect();
        if cdc.is_empty() { self.data_changes() } else { cdc }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cdc_files_take_precedence() {
        let commit = Commit {
            version: 1,
            timestamp: 0,
            actions: vec![
                json!({"add": {"path": "a", "dataChange": true}}),
                json!({"remove": {"path": "b", "dataChange": true}}),
                json!({"cdc": {"path": "c"}}),
            ],
        };
        let paths: Vec<_> = commit.change_data().iter().filter_map(|f| f.path()).map(str::to_owned).collect();
        assert_eq!(paths, ["c"]);
        let without_cdc = Commit { actions: commit.actions[..2].to_vec(), ..commit.clone() };
        assert_eq!(without_cdc.change_data().len(), 2);
    }

    #[test]
    fn compaction_is_not_a_data_change() {
        let commit = Commit {
            version: 1,
            timestamp: 0,
            actions: vec![
                json!({"add": {"path": "a", "dataChange": false}}),
                json!({"remove": {"path": "b", "dataChange": false}}),
                json!({"metaData": {"id": "x"}}),
            ],
        };
        assert!(commit.change_data().is_empty());
        assert!(commit.metadata().is_some());
        assert!(commit.protocol().is_none());
    }
}
