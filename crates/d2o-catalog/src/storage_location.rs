//! Named storage locations: how the server reaches tables on object storage.
//!
//! A [`StorageLocation`] gives the `object_store` options (region, endpoint, path-style access,
//! ...) for every table whose location starts with its URL prefix; the longest prefix wins.
//! Credentials come from the store's usual chain (environment, profile and token files,
//! instance metadata, workload or managed identity). An option may name an environment
//! variable as `${NAME}`, and an option that holds a secret must: the catalog never stores a
//! secret, so nothing that prints a location (the CLI, the admin API, the audit log) can
//! disclose one.

use std::collections::BTreeMap;
use std::str::FromStr;

use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use serde::{Deserialize, Serialize};
use url::Url;

/// How recipients reach the files of a location's tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UrlMode {
    /// URLs pre-signed by the object store: recipients download from the bucket.
    #[default]
    Presign,
    /// The server's own signed URLs: the server streams the files from the store, for buckets
    /// recipients cannot reach and credentials that cannot sign.
    Proxy,
}

impl FromStr for UrlMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "presign" => Ok(UrlMode::Presign),
            "proxy" => Ok(UrlMode::Proxy),
            other => Err(format!("'{other}' is not a URL mode; use presign or proxy")),
        }
    }
}

impl UrlMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlMode::Presign => "presign",
            UrlMode::Proxy => "proxy",
        }
    }
}

/// The kind of object store a location's URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    S3,
    Gcs,
    Azure,
}

impl StoreKind {
    /// The store behind a URL scheme; `None` for the local file system and unknown schemes.
    pub fn of(url: &Url) -> Option<StoreKind> {
        match url.scheme() {
            "s3" | "s3a" => Some(StoreKind::S3),
            "gs" => Some(StoreKind::Gcs),
            "abfss" | "abfs" | "az" | "azure" => Some(StoreKind::Azure),
            _ => None,
        }
    }

    /// Whether option `key` is one this store knows, and whether its value is a secret.
    fn option(self, key: &str) -> Option<bool> {
        match self {
            StoreKind::S3 => AmazonS3ConfigKey::from_str(key)
                .ok()
                .map(|k| matches!(k, AmazonS3ConfigKey::SecretAccessKey | AmazonS3ConfigKey::Token)),
            StoreKind::Gcs => {
                GoogleConfigKey::from_str(key).ok().map(|k| matches!(k, GoogleConfigKey::ServiceAccountKey))
            }
            StoreKind::Azure => AzureConfigKey::from_str(key).ok().map(|k| {
                matches!(
                    k,
                    AzureConfigKey::AccessKey
                        | AzureConfigKey::ClientSecret
                        | AzureConfigKey::SasKey
                        | AzureConfigKey::Token
                        | AzureConfigKey::FabricSessionToken
                )
            }),
        }
    }
}

/// A named storage location. Deserializing checks it as [`StorageLocation::new`] does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", try_from = "StorageSpec")]
pub struct StorageLocation {
    pub name: String,
    /// The prefix of the table locations it covers, ending with `/`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub url: Url,
    pub url_mode: UrlMode,
    /// `object_store` options; values are literal or `${ENV}` references, secrets always
    /// references.
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A storage location as written (YAML, JSON), before it is checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StorageSpec {
    name: String,
    url: String,
    #[serde(default)]
    url_mode: UrlMode,
    #[serde(default)]
    options: BTreeMap<String, OptionValue>,
    #[serde(default)]
    comment: Option<String>,
}

/// An option's value: a string, or a number or boolean as YAML writes them unquoted.
struct OptionValue(String);

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = OptionValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

impl TryFrom<StorageSpec> for StorageLocation {
    type Error = String;
    fn try_from(spec: StorageSpec) -> Result<Self, String> {
        let options = spec.options.into_iter().map(|(k, v)| (k, v.0)).collect();
        StorageLocation::new(&spec.name, &spec.url, spec.url_mode, options, spec.comment)
    }
}

impl StorageLocation {
    /// A checked location: a valid name, an object-store URL, options the store knows, and
    /// every secret given as an environment reference.
    pub fn new(
        name: &str,
        url: &str,
        url_mode: UrlMode,
        options: BTreeMap<String, String>,
        comment: Option<String>,
    ) -> Result<StorageLocation, String> {
        crate::names::validate_name(name).map_err(|e| format!("storage location name: {e}"))?;
        let mut url = Url::parse(url).map_err(|e| format!("'{url}' is not a valid URL: {e}"))?;
        let kind = StoreKind::of(&url).ok_or_else(|| {
            format!(
                "'{url}': a storage location is on S3 (s3://, s3a://), GCS (gs://) or Azure (abfss://, az://, azure://)"
            )
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("'{url}' names no bucket or container"));
        }
        // abfss://container@account...: the user part names the container, never a password.
        let user = !url.username().is_empty() && kind != StoreKind::Azure;
        if url.query().is_some() || url.fragment().is_some() || user || url.password().is_some() {
            return Err(format!("'{url}': a storage location's URL has no credentials, query or fragment"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        for (key, value) in &options {
            let secret = kind.option(key).ok_or_else(|| {
                format!("'{key}' is not an option of {} storage (see the object_store configuration keys)", kind.name())
            })?;
            let reference = env_reference(value)?;
            if secret && reference.is_none() {
                return Err(format!(
                    "option '{key}' holds a secret: give it as an environment variable reference such as ${{{}}}, never inline",
                    key.to_ascii_uppercase()
                ));
            }
        }
        Ok(StorageLocation { name: name.to_owned(), url, url_mode, options, comment })
    }

    /// Whether this location covers the table at `location`.
    pub fn covers(&self, location: &Url) -> bool {
        location.as_str().starts_with(self.url.as_str())
    }

    /// The options with every `${NAME}` replaced by the environment variable's value. An error
    /// names the variable, never a value.
    pub fn resolved_options(&self) -> Result<Vec<(String, String)>, String> {
        self.options
            .iter()
            .map(|(key, value)| {
                let value = match env_reference(value)? {
                    None => value.clone(),
                    Some(var) => std::env::var(var).map_err(|_| {
                        format!(
                            "storage location '{}': option '{key}' names the environment variable {var}, which is not set",
                            self.name
                        )
                    })?,
                };
                Ok((key.clone(), value))
            })
            .collect()
    }
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::S3 => "S3",
            StoreKind::Gcs => "GCS",
            StoreKind::Azure => "Azure",
        }
    }
}

/// The variable a `${NAME}` value names; `None` for a literal. A value that looks like a
/// reference but is not a valid one is an error, so that a typo is not taken as a literal.
fn env_reference(value: &str) -> Result<Option<&str>, String> {
    let Some(inner) = value.strip_prefix("${") else {
        return Ok(None);
    };
    let name = inner.strip_suffix('}').unwrap_or_default();
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(
            "an option value of the form ${...} must name one environment variable, such as ${AWS_SECRET_ACCESS_KEY}"
                .to_owned(),
        );
    }
    // Whoever may add a storage location must not be able to make the server read its own
    // secrets (the admin token, the URL-signing key, the catalog's password) into a store's
    // settings, where an error or a request to an endpoint of their choice could disclose them.
    if !ENV_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(format!(
            "${{{name}}}: an option may only name variables that start with {}",
            ENV_PREFIXES.join(", ")
        ));
    }
    Ok(Some(name))
}

/// The environment variables an option may name: the stores' own, and d2o's for storage.
pub const ENV_PREFIXES: &[&str] = &["AWS_", "AZURE_", "GOOGLE_", "D2O_STORAGE_"];

/// The location with the longest prefix covering `table`.
pub fn covering<'a>(locations: &'a [StorageLocation], table: &Url) -> Option<&'a StorageLocation> {
    locations.iter().filter(|l| l.covers(table)).max_by_key(|l| l.url.as_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn secrets_must_be_environment_references() {
        let inline = [
            ("s3://b/", "secret_access_key"),
            ("s3a://b/", "aws_session_token"),
            ("gs://b/", "service_account_key"),
            ("az://c/", "access_key"),
            ("abfss://c@a.dfs.core.windows.net/", "azure_storage_sas_token"),
            ("azure://c/", "client_secret"),
        ];
        for (url, key) in inline {
            let err =
                StorageLocation::new("l", url, UrlMode::Presign, options(&[(key, "hunter2")]), None).expect_err(key);
            assert!(err.contains("secret") && !err.contains("hunter2"), "{err}");
            let ok = StorageLocation::new("l", url, UrlMode::Presign, options(&[(key, "${D2O_STORAGE_SECRET}")]), None);
            assert!(ok.is_ok(), "{key}: {ok:?}");
        }
        let plain = options(&[("endpoint", "http://127.0.0.1:9000"), ("region", "us-east-1"), ("allow_http", "true")]);
        assert!(StorageLocation::new("l", "s3://b/t", UrlMode::Proxy, plain, None).is_ok());
    }

    #[test]
    fn bad_locations_are_refused() {
        let none = BTreeMap::new;
        for (name, url, opts, expected) in [
            ("l", "file:///data/", none(), "S3"),
            ("l", "s3:///x", none(), "no bucket"),
            ("l", "s3://key:secret@b/", none(), "credentials"),
            ("l", "s3://b/?x=1", none(), "query"),
            ("a/b", "s3://b/", none(), "name"),
            ("l", "s3://b/", options(&[("no_such_option", "1")]), "not an option"),
            ("l", "gs://b/", options(&[("region", "x")]), "not an option of GCS"),
            ("l", "s3://b/", options(&[("region", "${}")]), "environment variable"),
            ("l", "s3://b/", options(&[("region", "${A B}")]), "environment variable"),
            ("l", "s3://b/", options(&[("secret_access_key", "${D2O_ADMIN_TOKEN}")]), "only name variables"),
            ("l", "s3://b/", options(&[("endpoint", "${HOME}")]), "only name variables"),
        ] {
            let err = StorageLocation::new(name, url, UrlMode::Presign, opts, None).expect_err(url);
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn the_longest_prefix_covers_a_table() {
        let at = |name: &str, url: &str| {
            StorageLocation::new(name, url, UrlMode::Presign, BTreeMap::new(), None).expect("valid")
        };
        let locations = [at("bucket", "s3://b"), at("deep", "s3://b/tables/"), at("other", "s3://bb/")];
        let covering_name = |table: &str| {
            covering(&locations, &Url::parse(table).expect("url")).map(|l| l.name.clone()).unwrap_or_default()
        };
        assert_eq!(covering_name("s3://b/tables/t/"), "deep");
        assert_eq!(covering_name("s3://b/tablesx/t/"), "bucket");
        assert_eq!(covering_name("s3://bb/t/"), "other");
        assert_eq!(covering_name("s3a://b/t/"), "");
    }

    #[test]
    fn deserializing_checks() {
        let ok: StorageLocation = serde_json::from_str(
            r#"{"name": "lake", "url": "s3://b", "urlMode": "proxy", "options": {"allow_http": true, "region": "x"}}"#,
        )
        .expect("valid");
        assert_eq!(
            (ok.url.as_str(), ok.url_mode, ok.options["allow_http"].as_str()),
            ("s3://b/", UrlMode::Proxy, "true")
        );
        let inline = r#"{"name": "lake", "url": "s3://b", "options": {"secret_access_key": "hunter2"}}"#;
        let err = serde_json::from_str::<StorageLocation>(inline).expect_err("inline secret").to_string();
        assert!(err.contains("secret") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn references_resolve_from_the_environment() {
        let l = StorageLocation::new(
            "l",
            "s3://b/",
            UrlMode::Presign,
            options(&[("region", "eu-west-1"), ("secret_access_key", "${D2O_STORAGE_TEST_UNSET_1}")]),
            None,
        )
        .expect("valid");
        let err = l.resolved_options().expect_err("unset");
        assert!(err.contains("D2O_STORAGE_TEST_UNSET_1"), "{err}");
    }
}
