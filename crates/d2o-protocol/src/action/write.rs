//! Writing data-file lines fast: straight into the output buffer, from fields a file listing
//! already holds as JSON text, with no allocation per file. The `/query` hot path. A round-trip
//! test parses what these write with the typed lines of [`super`].

use std::fmt::Write as _;

/// The fields of one data file, as a listing holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFields<'a> {
    /// The file's id in responses.
    pub id: &'a str,
    /// The `partitionValues` object, as JSON text.
    pub partition_values: &'a str,
    pub size: i64,
    /// The `stats` value as a JSON string literal (quoted and escaped), if the file has any.
    pub stats: Option<&'a str>,
    pub modification_time: i64,
    /// The `deletionVector` descriptor object, as JSON text (delta format only).
    pub deletion_vector: Option<&'a str>,
}

/// What every file line of one response carries besides the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineContext {
    /// `version` and `timestamp` of the commit, on lines of versioned reads.
    pub version: Option<(u64, i64)>,
    /// When the line's URLs expire (ms since the epoch).
    pub expiration_timestamp: i64,
}

/// Writes a parquet-format `file` line (no newline). `url` writes the file's URL, which must be
/// a valid JSON string content (pre-signed URLs are percent-encoded ASCII).
pub fn write_parquet_file<E>(
    out: &mut String,
    file: &FileFields<'_>,
    ctx: &LineContext,
    url: impl FnOnce(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    out.push_str("{\"file\":{\"url\":\"");
    url(out)?;
    out.push_str("\",\"id\":\"");
    out.push_str(file.id);
    out.push_str("\",\"partitionValues\":");
    out.push_str(file.partition_values);
    let _ = write!(out, ",\"size\":{}", file.size);
    if let Some(stats) = file.stats {
        out.push_str(",\"stats\":");
        out.push_str(stats);
    }
    write_sharing_fields(out, ctx);
    out.push_str("}}");
    Ok(())
}

/// Writes a delta-format `file` line holding an `add` action whose `path` is the URL (no
/// newline). `url` as for [`write_parquet_file`].
pub fn write_delta_file<E>(
    out: &mut String,
    file: &FileFields<'_>,
    ctx: &LineContext,
    url: impl FnOnce(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    out.push_str("{\"file\":{\"id\":\"");
    out.push_str(file.id);
    out.push('"');
    write_sharing_fields(out, ctx);
    out.push_str(",\"deltaSingleAction\":{\"add\":{\"path\":\"");
    url(out)?;
    out.push_str("\",\"partitionValues\":");
    out.push_str(file.partition_values);
    let _ = write!(out, ",\"size\":{},\"modificationTime\":{},\"dataChange\":true", file.size, file.modification_time);
    if let Some(stats) = file.stats {
        out.push_str(",\"stats\":");
        out.push_str(stats);
    }
    if let Some(dv) = file.deletion_vector {
        out.push_str(",\"deletionVector\":");
        out.push_str(dv);
    }
    out.push_str("}}}}");
    Ok(())
}

/// `version`, `timestamp` and `expirationTimestamp`, after the file's own fields.
fn write_sharing_fields(out: &mut String, ctx: &LineContext) {
    if let Some((version, timestamp)) = ctx.version {
        let _ = write!(out, ",\"version\":{version},\"timestamp\":{timestamp}");
    }
    let _ = write!(out, ",\"expirationTimestamp\":{}", ctx.expiration_timestamp);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::action::{DeltaLine, FileAction, ParquetLine};

    fn fields<'a>(stats: Option<&'a str>, dv: Option<&'a str>) -> FileFields<'a> {
        FileFields {
            id: "0cc175b9c0f1b6a831c399e269772661",
            partition_values: r#"{"region":"eu","day":null}"#,
            size: 1234,
            stats,
            modification_time: 1_700_000_000_000,
            deletion_vector: dv,
        }
    }

    fn url(out: &mut String) -> Result<(), ()> {
        out.push_str("https://h/files/a%20b.parquet?sp=r&se=9&sig=x");
        Ok(())
    }

    #[test]
    fn parquet_lines_read_back_as_typed_lines() {
        let stats = r#""{\"numRecords\":7}""#;
        for (stats, version) in [(Some(stats), Some((3, 42))), (None, None)] {
            let ctx = LineContext { version, expiration_timestamp: 99 };
            let mut out = String::new();
            write_parquet_file(&mut out, &fields(stats, None), &ctx, url).expect("written");
            let ParquetLine::File(f) = serde_json::from_str(&out).expect("one typed line") else { panic!("{out}") };
            let expected = FileAction {
                url: "https://h/files/a%20b.parquet?sp=r&se=9&sig=x".into(),
                id: "0cc175b9c0f1b6a831c399e269772661".into(),
                partition_values: BTreeMap::from([("region".into(), Some("eu".into())), ("day".into(), None)]),
                size: 1234,
                stats: stats.map(|_| r#"{"numRecords":7}"#.to_owned()),
                version: version.map(|(v, _)| v as i64),
                timestamp: version.map(|(_, t)| t),
                expiration_timestamp: Some(99),
            };
            assert_eq!(f, expected);
            // Nothing is written that the typed line does not hold.
            let typed = serde_json::to_value(ParquetLine::File(f)).expect("serializes");
            assert_eq!(typed, serde_json::from_str::<Value>(&out).expect("JSON"));
        }
    }

    #[test]
    fn delta_lines_read_back_as_typed_lines() {
        let dv = r#"{"storageType":"p","pathOrInlineDv":"https://h/dv","offset":1,"sizeInBytes":34,"cardinality":2}"#;
        let ctx = LineContext { version: Some((5, 77)), expiration_timestamp: 99 };
        let mut out = String::new();
        write_delta_file(&mut out, &fields(Some(r#""{}""#), Some(dv)), &ctx, url).expect("written");
        let DeltaLine::File(f) = serde_json::from_str(&out).expect("one typed line") else { panic!("{out}") };
        assert_eq!(
            (f.id.as_str(), f.version, f.timestamp, f.expiration_timestamp),
            (fields(None, None).id, Some(5), Some(77), Some(99))
        );
        assert_eq!(
            f.delta_single_action,
            json!({"add": {"path": "https://h/files/a%20b.parquet?sp=r&se=9&sig=x",
                "partitionValues": {"region": "eu", "day": null}, "size": 1234,
                "modificationTime": 1_700_000_000_000_i64, "dataChange": true, "stats": "{}",
                "deletionVector": serde_json::from_str::<Value>(dv).expect("JSON")}})
        );
        let typed = serde_json::to_value(DeltaLine::File(f)).expect("serializes");
        assert_eq!(typed, serde_json::from_str::<Value>(&out).expect("JSON"));
    }

    #[test]
    fn a_failing_url_writer_fails_the_line() {
        let ctx = LineContext { version: None, expiration_timestamp: 0 };
        let mut out = String::new();
        assert_eq!(write_parquet_file(&mut out, &fields(None, None), &ctx, |_| Err("no url")), Err("no url"));
    }
}
