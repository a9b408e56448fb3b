//! The `delta-sharing-capabilities` header: `key=v1,v2;key2=v3`, case-insensitive.
//!
//! Clients use it to say which response formats and Delta reader features they understand and
//! whether they want an `endStreamAction` at the end of a stream; servers echo their choice.

/// The name of the header, as sent on the wire.
pub const HEADER: &str = "delta-sharing-capabilities";

/// One of the two response formats of `/metadata`, `/query` and `/changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseFormat {
    /// Simplified actions (`file`, `add`, `cdf`, `remove`) with a JSON-encoded `stats` string.
    Parquet,
    /// Raw Delta actions wrapped in `deltaSingleAction`, for clients that read with a Delta kernel.
    Delta,
}

impl ResponseFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFormat::Parquet => "parquet",
            ResponseFormat::Delta => "delta",
        }
    }
}

/// What a client said it can do, parsed from the request header.
///
/// Malformed pairs are ignored, as the reference server does; an absent header means
/// "parquet only, no reader features".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The formats the client accepts, in the order it listed them. Empty means parquet.
    pub response_formats: Vec<ResponseFormat>,
    /// Lower-cased Delta reader features the client can handle (e.g. `deletionvectors`).
    pub reader_features: Vec<String>,
    /// The client wants an `endStreamAction` line at the end of the stream.
    pub include_end_stream_action: bool,
}

impl Capabilities {
    /// Parses a header value. Never fails: unknown keys and values are skipped.
    pub fn parse(header: Option<&str>) -> Self {
        let mut caps = Capabilities::default();
        let Some(header) = header else { return caps };
        for pair in header.split(';') {
            let Some((key, values)) = pair.split_once('=') else { continue };
            let key = key.trim().to_ascii_lowercase();
            let values = values.split(',').map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty());
            match key.as_str() {
                "responseformat" => {
                    for v in values {
                        let format = match v.as_str() {
                            "parquet" => ResponseFormat::Parquet,
                            "delta" => ResponseFormat::Delta,
                            _ => continue,
                        };
                        if !caps.response_formats.contains(&format) {
                            caps.response_formats.push(format);
                        }
                    }
                }
                "readerfeatures" => caps.reader_features.extend(values),
                "includeendstreamaction" => caps.include_end_stream_action = values.into_iter().any(|v| v == "true"),
                _ => {}
            }
        }
        caps
    }

    /// Whether the client accepts `format` (parquet when it named none).
    pub fn accepts(&self, format: ResponseFormat) -> bool {
        if self.response_formats.is_empty() {
            format == ResponseFormat::Parquet
        } else {
            self.response_formats.contains(&format)
        }
    }

    /// Whether the client said it can read the (case-insensitive) Delta reader feature.
    pub fn has_reader_feature(&self, feature: &str) -> bool {
        self.reader_features.iter().any(|f| f.eq_ignore_ascii_case(feature))
    }

    /// The header value a server sends back for the format it chose.
    pub fn response_header(format: ResponseFormat, end_stream_action: bool) -> String {
        if end_stream_action {
            format!("responseformat={};includeendstreamaction=true", format.as_str())
        } else {
            format!("responseformat={}", format.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_header_means_parquet() {
        let c = Capabilities::parse(None);
        assert!(c.accepts(ResponseFormat::Parquet));
        assert!(!c.accepts(ResponseFormat::Delta));
    }

    #[test]
    fn parses_python_connector_header() {
        let c = Capabilities::parse(Some(
            "responseformat=delta,parquet;readerfeatures=deletionvectors,columnmapping,timestampntz",
        ));
        assert_eq!(c.response_formats, vec![ResponseFormat::Delta, ResponseFormat::Parquet]);
        assert!(c.has_reader_feature("deletionVectors"));
        assert!(c.has_reader_feature("timestampNtz"));
        assert!(!c.include_end_stream_action);
    }

    #[test]
    fn case_and_garbage_are_tolerated() {
        let c = Capabilities::parse(Some("ResponseFormat=DELTA; junk ;includeEndStreamAction=TRUE;x=y"));
        assert_eq!(c.response_formats, vec![ResponseFormat::Delta]);
        assert!(c.include_end_stream_action);
        let c = Capabilities::parse(Some("responseformat=orc"));
        assert!(c.response_formats.is_empty());
        assert!(c.accepts(ResponseFormat::Parquet));
    }
}
