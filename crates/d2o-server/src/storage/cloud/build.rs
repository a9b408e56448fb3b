//! Building a bucket's store from its storage location, the environment and the credential
//! chain, refusing what would reach a network endpoint nobody configured, and a pre-signing
//! location whose credentials cannot sign in memory.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use d2o_catalog::{StorageLocation, StoreKind, UrlMode};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::signer::Signer;
use object_store::{ClientConfigKey, DynObjectStore, RetryConfig};
use url::Url;

use super::CloudStore;
use super::aws_profile::AwsProfile;

/// How long a store request may take, and how long connecting may.
const REQUEST_TIMEOUT: &str = "30 seconds";
const CONNECT_TIMEOUT: &str = "5 seconds";

/// Whether instance metadata may be asked for credentials of `kind`.
fn metadata_allowed(kind: StoreKind) -> bool {
    let set = |var: &str, value: &str| std::env::var(var).is_ok_and(|v| v.eq_ignore_ascii_case(value));
    let blocked = set("D2O_INSTANCE_METADATA", "off")
        || match kind {
            StoreKind::S3 => set("AWS_EC2_METADATA_DISABLED", "true"),
            StoreKind::Gcs => set("NO_GCE_CHECK", "true"),
            StoreKind::Azure => false,
        };
    !blocked
}

/// Builds the store of a bucket; the error is a sentence for the provider's log, with no
/// option values in it.
pub(super) fn build(location: &Url, config: Option<&StorageLocation>) -> Result<CloudStore, String> {
    let kind = StoreKind::of(location).ok_or_else(|| format!("'{location}' is not on object storage"))?;
    let name = config.map_or_else(|| "(none: the store's defaults)".to_owned(), |c| format!("'{}'", c.name));
    let options = config.map(StorageLocation::resolved_options).transpose()?.unwrap_or_default();
    let url_mode = config.map(|c| c.url_mode).unwrap_or_default();
    let bucket = format!("{}://{}", location.scheme(), location.authority());
    let built = Built { kind, name: &name, bucket: &bucket, presign: url_mode == UrlMode::Presign };
    let (store, signer) = match kind {
        StoreKind::S3 => built.s3(options)?,
        StoreKind::Gcs => built.gcs(options)?,
        StoreKind::Azure => built.azure(location, options)?,
    };
    Ok(CloudStore { store, signer, url_mode })
}

type Stores = (Arc<DynObjectStore>, Arc<dyn Signer>);

/// A store's builder from the environment, with d2o's retries and timeouts, then the
/// location's options (which win). The three builders share no trait, hence a macro.
macro_rules! configured {
    ($built:expr, $builder:ty, $key:ident, $url:expr, $options:expr) => {{
        let mut b = <$builder>::from_env()
            .with_url($url)
            .with_retry(Built::retry())
            .with_config($key::Client(ClientConfigKey::Timeout), REQUEST_TIMEOUT)
            .with_config($key::Client(ClientConfigKey::ConnectTimeout), CONNECT_TIMEOUT);
        for (key, value) in $options {
            b = b.with_config($key::from_str(&key).map_err(|_| $built.unknown(&key))?, value);
        }
        b
    }};
}

/// What every store's build needs to say what went wrong.
struct Built<'a> {
    kind: StoreKind,
    name: &'a str,
    bucket: &'a str,
    /// Whether the location's URLs are pre-signed (rather than proxied).
    presign: bool,
}

impl Built<'_> {
    fn retry() -> RetryConfig {
        RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..RetryConfig::default() }
    }

    fn fail(&self, what: impl std::fmt::Display) -> String {
        format!("storage location {}: {} {}: {what}", self.name, self.kind.name(), self.bucket)
    }

    fn unknown(&self, key: &str) -> String {
        self.fail(format_args!("'{key}' is not an option of {} storage", self.kind.name()))
    }

    /// Refuses a location with no credentials when instance metadata is switched off.
    fn need_credentials(&self, explicit: bool) -> Result<(), String> {
        if explicit || metadata_allowed(self.kind) {
            return Ok(());
        }
        Err(self.fail(
            "no credentials, and instance metadata is switched off; set the store's credential variables or options",
        ))
    }

    fn s3(&self, options: Vec<(String, String)>) -> Result<Stores, String> {
        let mut b = configured!(self, AmazonS3Builder, AmazonS3ConfigKey, self.bucket, options);
        let has = |b: &AmazonS3Builder, k| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
        // The shared profile files, which `object_store` does not read: below the environment
        // and the options.
        if !has(&b, AmazonS3ConfigKey::AccessKeyId)
            && let Some(profile) = AwsProfile::from_files().map_err(|e| self.fail(e))?
        {
            b = profile.apply(b);
        }
        let explicit = [
            AmazonS3ConfigKey::AccessKeyId,
            AmazonS3ConfigKey::WebIdentityTokenFile,
            AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
            AmazonS3ConfigKey::ContainerCredentialsFullUri,
        ]
        .into_iter()
        .any(|k| has(&b, k))
            || b.get_config_value(&AmazonS3ConfigKey::SkipSignature).is_some_and(|v| v == "true");
        self.need_credentials(explicit)?;
        let s3 = Arc::new(b.build().map_err(|e| self.fail(e))?);
        Ok((s3.clone(), s3))
    }

    fn gcs(&self, options: Vec<(String, String)>) -> Result<Stores, String> {
        let b = configured!(self, GoogleCloudStorageBuilder, GoogleConfigKey, self.bucket, options);
        let value = |k| b.get_config_value(&k).filter(|v| !v.is_empty());
        let key = match (value(GoogleConfigKey::ServiceAccountKey), value(GoogleConfigKey::ServiceAccount)) {
            (Some(key), _) => Some(key),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| self.fail(format_args!("cannot read the service account file {path}: {e}")))?,
            ),
            (None, None) => None,
        };
        let explicit = key.is_some()
            || value(GoogleConfigKey::ApplicationCredentials).is_some()
            || value(GoogleConfigKey::SkipSignature).is_some_and(|v| v == "true");
        self.need_credentials(explicit)?;
        // Without a private key, `object_store` signs each URL by asking Google's IAM service:
        // one request per file.
        if self.presign && !key.as_deref().is_some_and(signs_locally) {
            return Err(self.fail(
                "pre-signed GCS URLs need a service account key with its private key (other credentials sign through a request per file); give one, or set urlMode: proxy",
            ));
        }
        let gcs = Arc::new(b.build().map_err(|e| self.fail(e))?);
        Ok((gcs.clone(), gcs))
    }

    fn azure(&self, location: &Url, options: Vec<(String, String)>) -> Result<Stores, String> {
        let b = configured!(self, MicrosoftAzureBuilder, AzureConfigKey, location.as_str(), options);
        let has = |k| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
        let on = |k| b.get_config_value(&k).is_some_and(|v| v == "true");
        let account_key = has(AzureConfigKey::AccessKey) || on(AzureConfigKey::UseEmulator);
        let explicit = account_key
            || [
                AzureConfigKey::SasKey,
                AzureConfigKey::Token,
                AzureConfigKey::ClientSecret,
                AzureConfigKey::FederatedTokenFile,
            ]
            .into_iter()
            .any(has)
            || on(AzureConfigKey::SkipSignature)
            || on(AzureConfigKey::UseAzureCli);
        self.need_credentials(explicit)?;
        // With Entra ID credentials, `object_store` fetches a user delegation key to sign each
        // URL: one request per file.
        if self.presign && !account_key {
            return Err(self.fail(
                "pre-signed Azure URLs need the storage account key (access_key); with other credentials set urlMode: proxy",
            ));
        }
        let azure = Arc::new(b.build().map_err(|e| self.fail(e))?);
        Ok((azure.clone(), azure))
    }
}

/// Whether a service account key (JSON) signs in memory: it has a private key, and does not
/// switch OAuth off (which makes `object_store` sign through Google's IAM service).
fn signs_locally(key: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(default)]
        private_key: String,
        #[serde(default)]
        disable_oauth: bool,
    }
    serde_json::from_str::<Key>(key).is_ok_and(|k| !k.private_key.is_empty() && !k.disable_oauth)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn location(url: &str, mode: UrlMode, options: &[(&str, &str)]) -> StorageLocation {
        let options: BTreeMap<_, _> = options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        StorageLocation::new("l", url, mode, options, None).expect("valid")
    }

    #[test]
    fn locations_that_cannot_sign_in_memory_must_proxy() {
        let oauth_off = r#"{"private_key": "k", "client_email": "e", "disable_oauth": true}"#;
        assert!(!signs_locally(oauth_off) && !signs_locally("{}") && !signs_locally("not json"));
        let azure_token = [("account_name", "a"), ("use_azure_cli", "true")];
        for (url, options) in [("az://c/", &azure_token[..]), ("gs://b/", &[("skip_signature", "true")][..])] {
            let presign = build(&Url::parse(url).expect("url"), Some(&location(url, UrlMode::Presign, options)));
            let err = presign.err().expect("refused");
            assert!(err.contains("urlMode: proxy"), "{err}");
            let proxy = build(&Url::parse(url).expect("url"), Some(&location(url, UrlMode::Proxy, options)));
            assert!(proxy.is_ok(), "{url}: {:?}", proxy.err());
        }
    }

    #[test]
    fn unknown_options_and_missing_variables_name_the_location() {
        let l = location("s3://b/", UrlMode::Presign, &[("region", "${D2O_STORAGE_SURELY_UNSET}")]);
        let err = build(&Url::parse("s3://b/t/").expect("url"), Some(&l)).err().expect("refused");
        assert!(err.contains("'l'") && err.contains("D2O_STORAGE_SURELY_UNSET"), "{err}");
    }
}
