//! [`TableQuery`] and [`ChangesQuery`]: builders for reading a shared table.
//!
//! ```no_run
//! # async fn f(client: d2o_client::Client) -> d2o_client::Result<()> {
//! let batches = client.table("share.schema.sales").version(5).columns(["id", "amount"]).limit(100).load().await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use d2o_protocol::predicate::{Predicate, ValueType};

use d2o_protocol::request::{ChangesRequest, QueryRequest};
use serde_json::Value;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::files::{TableFiles, TableMetadata};
use crate::profile::TableName;
use crate::reader::{LoadProgress, ReadPlan, RecordBatchStream, Requery, read_files};
use crate::schema::{DeltaType, TableSchema};
use crate::write::{OutputFormat, WriteSummary, write_parquet_copying, write_stream};

/// Reads start from the client (`client.table("share.schema.table")`); the builder lives here.
impl Client {
    /// Starts a read of `share.schema.table`; see [`TableQuery`] for the options.
    /// A malformed name is reported when the query runs.
    pub fn table(&self, name: &str) -> TableQuery {
        match TableName::parse(name) {
            Ok(n) => TableQuery::new(self.clone(), n),
            Err(e) => TableQuery::invalid(self.clone(), e.to_string()),
        }
    }

    /// Starts a read of a table given by its parts.
    pub fn table_named(&self, name: TableName) -> TableQuery {
        TableQuery::new(self.clone(), name)
    }
}

/// A filter, given as a predicate or as text to be parsed against the schema.
#[derive(Debug, Clone)]
enum Filter {
    Predicate(Predicate),
    Text(String),
}

/// Options shared by snapshot and change-feed reads.
#[derive(Debug, Clone, Default)]
struct ReadOptions {
    columns: Option<Vec<String>>,
    filters: Vec<Filter>,
    limit: Option<u64>,
    progress: Option<Arc<LoadProgress>>,
}

impl ReadOptions {
    fn predicate(&self, schema: &TableSchema) -> Result<Option<Predicate>> {
        let mut parts = Vec::new();
        for f in &self.filters {
            match f {
                Filter::Predicate(p) => parts.push(p.clone()),
                Filter::Text(t) => parts.push(parse_filter(t, schema)?),
            }
        }
        Ok(Predicate::and_all(parts))
    }
}

/// The row-shaping setters shared by [`TableQuery`] and [`ChangesQuery`]; both keep them in
/// `self.options`.
macro_rules! read_option_setters {
    () => {
        /// Only these columns, in this order (case-insensitive names).
        pub fn columns<I, S>(mut self, columns: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.options.columns = Some(columns.into_iter().map(Into::into).collect());
            self
        }

        /// Only rows matching `predicate`. For a snapshot the server also skips files with it;
        /// the client always filters rows. Several filters are combined with AND.
        pub fn filter(mut self, predicate: Predicate) -> Self {
            self.options.filters.push(Filter::Predicate(predicate));
            self
        }

        /// Like `filter`, from text: `a = 1 AND b >= '2024-01-01' AND c IS NOT NULL`
        /// (comparisons and null tests joined by AND), or a `jsonPredicateHints` JSON tree.
        pub fn filter_text(mut self, text: impl Into<String>) -> Self {
            self.options.filters.push(Filter::Text(text.into()));
            self
        }

        /// At most this many rows.
        pub fn limit(mut self, rows: u64) -> Self {
            self.options.limit = Some(rows);
            self
        }

        /// Counters to follow the read with (files, bytes, rows).
        pub fn progress(mut self, progress: Arc<LoadProgress>) -> Self {
            self.options.progress = Some(progress);
            self
        }
    };
}

/// A read of a table's snapshot (the latest, or a version or timestamp).
#[derive(Debug, Clone)]
pub struct TableQuery {
    client: Client,
    name: Result<TableName, String>,
    version: Option<i64>,
    timestamp: Option<String>,
    options: ReadOptions,
}

impl TableQuery {
    pub(crate) fn new(client: Client, name: TableName) -> Self {
        TableQuery { client, name: Ok(name), version: None, timestamp: None, options: ReadOptions::default() }
    }

    pub(crate) fn invalid(client: Client, message: String) -> Self {
        TableQuery { client, name: Err(message), version: None, timestamp: None, options: ReadOptions::default() }
    }

    fn name(&self) -> Result<&TableName> {
        self.name.as_ref().map_err(|m| ClientError::invalid(m.clone()))
    }

    /// Reads the table as of this version (needs history sharing).
    pub fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    /// Reads the table as of this ISO-8601 timestamp (`2024-01-01T00:00:00Z`).
    pub fn timestamp(mut self, timestamp: impl Into<String>) -> Self {
        self.timestamp = Some(timestamp.into());
        self
    }

    read_option_setters!();

    /// The table's version: the latest, or the one this query's timestamp selects.
    pub async fn table_version(&self) -> Result<i64> {
        match self.version {
            Some(v) => Ok(v),
            None => self.client.table_version(self.name()?, None).await,
        }
    }

    /// The table's metadata at this query's version.
    pub async fn metadata(&self) -> Result<TableMetadata> {
        if self.timestamp.is_some() {
            return Ok(self.list_files_with(None).await?.metadata);
        }
        self.client.metadata(self.name()?, self.version).await
    }

    fn body(&self, predicate: Option<&Predicate>) -> QueryRequest {
        let snapshot = self.version.is_none() && self.timestamp.is_none();
        QueryRequest {
            json_predicate_hints: predicate.map(|p| Value::String(p.to_json())),
            // Rows per file are only known from stats; a hint with a filter would be wrong.
            limit_hint: if predicate.is_none() { self.options.limit.map(|l| l as i64) } else { None },
            version: self.version,
            timestamp: self.timestamp.clone(),
            include_refresh_token: snapshot.then_some(true),
            ..QueryRequest::default()
        }
    }

    async fn list_files_with(&self, predicate: Option<&Predicate>) -> Result<TableFiles> {
        self.client.query(self.name()?, &self.body(predicate)).await
    }

    /// The files the server returns for this query (the plan of a read).
    pub async fn list_files(&self) -> Result<TableFiles> {
        let name = self.name()?;
        let predicate = if self.options.filters.is_empty() {
            None
        } else {
            let md = self.client.metadata(name, self.version).await?;
            self.options.predicate(&md.schema)?
        };
        self.list_files_with(predicate.as_ref()).await
    }

    /// Loads the table as a stream of record batches.
    pub async fn load_stream(self) -> Result<RecordBatchStream> {
        let files = self.list_files().await?;
        self.load_stream_from(files)
    }

    /// Reads the files of an earlier [`TableQuery::list_files`]; URLs that expired since are
    /// refreshed.
    pub fn load_stream_from(self, files: TableFiles) -> Result<RecordBatchStream> {
        let (name, plan, requery, progress) = self.read_setup(&files)?;
        Ok(read_files(self.client.clone(), name, files, plan, requery, self.options.limit, progress))
    }

    /// What a read of `files` needs: the table name, the plan, how to refresh URLs, progress.
    fn read_setup(&self, files: &TableFiles) -> Result<(TableName, ReadPlan, Requery, Arc<LoadProgress>)> {
        let name = self.name()?.clone();
        let predicate = self.options.predicate(&files.metadata.schema)?;
        let plan = ReadPlan::new(&files.metadata, self.options.columns.as_deref(), predicate.clone(), false)?;
        let mut body = self.body(predicate.as_ref());
        if self.version.is_none() && self.timestamp.is_none() && files.refresh_token.is_none() {
            // No refresh token: re-query the same version, matching files by id.
            body.version = Some(files.version);
            body.include_refresh_token = None;
        }
        let progress = self.options.progress.clone().unwrap_or_default();
        Ok((name, plan, Requery::Version(body), progress))
    }

    /// Loads the table into a local file, streaming (a table larger than memory fits); on
    /// error the partial file is removed.
    ///
    /// The file reads back to the schema and rows of [`TableQuery::load`] (in some order).
    /// For a Parquet file of a read without filter and row limit, the column chunks of every
    /// data file that has no deletion vector and already stores the selected columns with the
    /// output's Parquet types are copied as they are, without decoding: such files keep their
    /// row groups, compression and column statistics. The other files are decoded and encoded
    /// as [`write_stream`](crate::write::write_stream) does. [`WriteSummary::files_copied`]
    /// counts the copied files.
    pub async fn load_to_file(self, path: &Path, format: OutputFormat) -> Result<WriteSummary> {
        let files = self.list_files().await?;
        if format != OutputFormat::Parquet || !self.options.filters.is_empty() || self.options.limit.is_some() {
            return write_stream(self.load_stream_from(files)?, path, format).await;
        }
        let (name, plan, requery, progress) = self.read_setup(&files)?;
        write_parquet_copying(self.client.clone(), name, files, plan, requery, progress, path).await
    }

    /// Loads the whole result into memory.
    pub async fn load(self) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        self.load_stream().await?.collect().await
    }

    /// The change data feed of this table; set its range with [`ChangesQuery::from_version`].
    pub fn changes(self) -> ChangesQuery {
        ChangesQuery {
            client: self.client,
            name: self.name,
            range: ChangesRequest::default(),
            invalid: None,
            options: self.options,
        }
    }
}

/// A read of a table's change data feed. Rows carry `_change_type`, `_commit_version` and
/// `_commit_timestamp`.
#[derive(Debug, Clone)]
pub struct ChangesQuery {
    client: Client,
    name: Result<TableName, String>,
    range: ChangesRequest,
    /// Why the range cannot be asked for, if it cannot.
    invalid: Option<String>,
    options: ReadOptions,
}

impl ChangesQuery {
    pub fn from_version(mut self, v: i64) -> Self {
        self.range.starting_version = self.version(v);
        self
    }

    pub fn to_version(mut self, v: i64) -> Self {
        self.range.ending_version = self.version(v);
        self
    }

    pub fn from_timestamp(mut self, t: impl Into<String>) -> Self {
        self.range.starting_timestamp = Some(t.into());
        self
    }

    pub fn to_timestamp(mut self, t: impl Into<String>) -> Self {
        self.range.ending_timestamp = Some(t.into());
        self
    }

    /// A version for the range; a negative one makes the read fail with a clear error.
    fn version(&mut self, v: i64) -> Option<u64> {
        let version = u64::try_from(v).ok();
        if version.is_none() {
            self.invalid = Some(format!("version {v} is negative"));
        }
        version
    }

    read_option_setters!();

    /// The files of the change feed.
    pub async fn list_files(&self) -> Result<TableFiles> {
        let name = self.name.as_ref().map_err(|m| ClientError::invalid(m.clone()))?;
        if let Some(why) = &self.invalid {
            return Err(ClientError::invalid(why.clone()));
        }
        if self.range.starting_version.is_none() && self.range.starting_timestamp.is_none() {
            return Err(ClientError::invalid("a change feed read needs a starting version or timestamp"));
        }
        self.client.changes(name, &self.range).await
    }

    pub async fn load_stream(self) -> Result<RecordBatchStream> {
        let files = self.list_files().await?;
        let name = self.name.as_ref().map_err(|m| ClientError::invalid(m.clone()))?.clone();
        let predicate = self.options.predicate(&files.metadata.schema)?;
        let plan = ReadPlan::new(&files.metadata, self.options.columns.as_deref(), predicate, true)?;
        let progress = self.options.progress.clone().unwrap_or_default();
        Ok(read_files(
            self.client.clone(),
            name,
            files,
            plan,
            Requery::Changes(self.range.clone()),
            self.options.limit,
            progress,
        ))
    }

    pub async fn load(self) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        self.load_stream().await?.collect().await
    }
}

/// Parses a filter: a `jsonPredicateHints` tree when it starts with `{`, otherwise SQL-like
/// conditions joined by `AND` (each one of `col op literal`, `literal op col`, `col IS [NOT] NULL`).
pub fn parse_filter(text: &str, schema: &TableSchema) -> Result<Predicate> {
    let text = text.trim();
    if text.starts_with('{') {
        return Predicate::from_json(text).map_err(|e| ClientError::invalid(format!("invalid filter: {e}")));
    }
    let type_of = |name: &str| -> Option<ValueType> {
        let f = schema.field(name)?;
        match &f.data_type {
            DeltaType::Primitive(p) => ValueType::for_delta_type(p),
            _ => None,
        }
    };
    let parts = split_and(text);
    let mut out = Vec::new();
    for part in &parts {
        out.push(Predicate::from_sql(part, &type_of).map_err(|e| {
            let known = schema.field(first_word(part)).is_some();
            if known {
                ClientError::invalid(format!("invalid filter '{part}': {e}"))
            } else {
                ClientError::invalid(format!(
                    "invalid filter '{part}': {e} (columns: {})",
                    schema.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            }
        })?);
    }
    Predicate::and_all(out).ok_or_else(|| ClientError::invalid("empty filter"))
}

fn first_word(s: &str) -> &str {
    s.split(|c: char| c.is_whitespace() || "<>=!".contains(c)).next().unwrap_or_default().trim_matches('`')
}

/// Splits at ` AND ` (any case) outside quotes.
fn split_and(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted && c.is_whitespace() {
            let rest: String = chars[i + 1..].iter().take(4).collect();
            if rest.len() == 4 && rest[..3].eq_ignore_ascii_case("and") && rest.ends_with(char::is_whitespace) {
                parts.push(current.trim().to_owned());
                current.clear();
                i += 4;
                continue;
            }
        }
        current.push(c);
        i += 1;
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_from_text() {
        let schema = TableSchema::parse(
            r#"{"type":"struct","fields":[{"name":"a","type":"long","nullable":true,"metadata":{}},{"name":"s","type":"string","nullable":true,"metadata":{}}]}"#,
        )
        .expect("schema");
        assert_eq!(split_and("a = 1 AND s = 'x and y' and a > 0"), vec!["a = 1", "s = 'x and y'", "a > 0"]);
        let p = parse_filter("a >= 2 AND s IS NOT NULL", &schema).expect("parses");
        assert!(matches!(p, Predicate::And(v) if v.len() == 2));
        let e = parse_filter("nope = 1", &schema).expect_err("unknown column");
        assert!(e.to_string().contains("columns: a, s"), "{e}");
    }
}
