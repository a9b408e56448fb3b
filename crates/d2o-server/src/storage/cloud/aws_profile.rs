//! The AWS shared credential and config files (`~/.aws/credentials`, `~/.aws/config`), which
//! `object_store` does not read: static keys and the region of one profile.
//!
//! The profile is `AWS_PROFILE` (else `default`); the files are `AWS_SHARED_CREDENTIALS_FILE`
//! and `AWS_CONFIG_FILE` (else under `~/.aws`). Only `aws_access_key_id`,
//! `aws_secret_access_key`, `aws_session_token` and `region` are read; a profile that assumes
//! a role or runs a process is left to the environment (`AWS_WEB_IDENTITY_TOKEN_FILE`, ...).

use std::path::{Path, PathBuf};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// One profile's keys and region.
#[derive(Default, PartialEq, Eq)]
pub(super) struct AwsProfile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
}

impl std::fmt::Debug for AwsProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProfile").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl AwsProfile {
    /// The profile from the files, if they give it keys; an unreadable file is an error, an
    /// absent one is not.
    pub(super) fn from_files() -> Result<Option<AwsProfile>, String> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let file = |var: &str, name: &str| {
            std::env::var_os(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
        let read = |path: Option<PathBuf>| -> Result<String, String> {
            match path {
                None => Ok(String::new()),
                Some(path) => match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                    Err(e) => Err(format!("cannot read {}: {e}", display(&path))),
                },
            }
        };
        let credentials = read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))?;
        let config = read(file("AWS_CONFIG_FILE", "config"))?;
        Ok(Self::parse(&credentials, &config, &profile))
    }

    /// The profile `name` of the two files' texts: keys from either (the credentials file
    /// first), where the config file names it `[profile name]` (or `[default]`).
    fn parse(credentials: &str, config: &str, name: &str) -> Option<AwsProfile> {
        let mut profile = AwsProfile::default();
        let config_section = if name == "default" { "default".to_owned() } else { format!("profile {name}") };
        for (text, section) in [(credentials, name), (config, config_section.as_str())] {
            for (key, value) in section_entries(text, section) {
                let slot = match key.as_str() {
                    "aws_access_key_id" => &mut profile.access_key_id,
                    "aws_secret_access_key" => &mut profile.secret_access_key,
                    "aws_session_token" => &mut profile.session_token,
                    "region" => &mut profile.region,
                    _ => continue,
                };
                slot.get_or_insert(value);
            }
        }
        (profile.access_key_id.is_some() && profile.secret_access_key.is_some()).then_some(profile)
    }

    /// The builder with the profile's keys, and its region unless one is set.
    pub(super) fn apply(self, mut b: AmazonS3Builder) -> AmazonS3Builder {
        if let (Some(id), Some(secret)) = (self.access_key_id, self.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(token) = self.session_token {
            b = b.with_token(token);
        }
        if let Some(region) = self.region
            && b.get_config_value(&AmazonS3ConfigKey::Region).is_none()
        {
            b = b.with_region(region);
        }
        b
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The `key = value` lines of `[section]` in an INI text (`#` and `;` start comments).
fn section_entries(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == section;
        } else if inside && let Some((key, value)) = line.split_once('=') {
            out.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n# comment\n[partner]\naws_access_key_id=AKIDPARTNER\naws_secret_access_key=s2\naws_session_token = tok\n";
    const CONFIG: &str =
        "[default]\nregion = eu-west-1\n[profile partner]\nregion = us-west-2\n[partner]\nregion = wrong\n";

    #[test]
    fn profiles_are_read_from_both_files() {
        let default = AwsProfile::parse(CREDENTIALS, CONFIG, "default").expect("a profile");
        assert_eq!(default.access_key_id.as_deref(), Some("AKIDDEFAULT"));
        assert_eq!(default.region.as_deref(), Some("eu-west-1"));
        let partner = AwsProfile::parse(CREDENTIALS, CONFIG, "partner").expect("a profile");
        assert_eq!((partner.session_token.as_deref(), partner.region.as_deref()), (Some("tok"), Some("us-west-2")));
        assert_eq!(AwsProfile::parse(CREDENTIALS, CONFIG, "nobody"), None);
        assert_eq!(AwsProfile::parse("[x]\naws_access_key_id = a\n", "", "x"), None, "no secret, no profile");
        assert!(!format!("{partner:?}").contains("s2"), "Debug shows no secret");
    }

    #[test]
    fn a_profile_fills_what_is_not_set() {
        let profile = AwsProfile::parse(CREDENTIALS, CONFIG, "default").expect("a profile");
        let b = profile.apply(AmazonS3Builder::new().with_region("ap-south-1"));
        assert_eq!(b.get_config_value(&AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("AKIDDEFAULT"));
        assert_eq!(b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(), Some("ap-south-1"));
    }
}
