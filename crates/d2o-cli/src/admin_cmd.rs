//! `d2o share|recipient|grant|revoke|audit|catalog`: administration, on the catalog directly
//! or through a running server's admin API (`--server`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use d2o_catalog::admin::parse_properties;
use d2o_catalog::{
    ActivationRequest, Admin, AuditFilter, CredentialKind, CredentialRequest, Issued, IssuedActivation, IssuedToken,
    NewFederationPolicy, NewRecipient, RateLimit, RecipientInfo, ShareInfo, SqlCatalog, StorageLocation, TableEntry,
};

use crate::output;
use d2o_server::{AdminContext, AuditedAdmin};

use crate::remote_admin::RemoteAdmin;

/// Where administration happens.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// The catalog: a SQLite file or a postgres:// URL.
    #[arg(long, global = true, env = "D2O_CATALOG", default_value = "d2o.db")]
    pub(crate) catalog: String,
    /// Administer a running server through its admin API instead of the catalog.
    #[arg(long, global = true, env = "D2O_SERVER")]
    pub(crate) server: Option<String>,
    /// The server's admin token (with --server).
    #[arg(long, global = true, env = "D2O_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Print JSON lines instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl Target {
    /// The admin to work through: a server's admin API (which records what it does), or the
    /// catalog itself, whose actions are recorded here as the server records its own.
    async fn open(&self) -> Result<Arc<dyn Admin>> {
        match &self.server {
            Some(server) => {
                crate::warn_if_secret_argument("--admin-token", "D2O_ADMIN_TOKEN");
                let token = self.admin_token.clone().context("--server needs --admin-token (or D2O_ADMIN_TOKEN)")?;
                Ok(Arc::new(RemoteAdmin::new(server, token)))
            }
            None => {
                let catalog = SqlCatalog::connect(&self.catalog)
                    .await
                    .with_context(|| format!("cannot open the catalog '{}'", self.catalog))?;
                let context = AdminContext {
                    principal: "admin".to_owned(),
                    user_agent: Some(format!("d2o-cli/{}", env!("CARGO_PKG_VERSION"))),
                    ..AdminContext::default()
                };
                Ok(Arc::new(AuditedAdmin::new(Arc::new(catalog), context)))
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ShareCommand {
    /// Create a share.
    Create {
        name: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// List shares.
    List,
    /// Show a share, its tables and its recipients.
    Show { name: String },
    /// Set (or with no text, clear) a share's comment.
    Comment { name: String, comment: Option<String> },
    /// Drop a share with its tables and grants.
    Drop { name: String },
    /// Add a Delta table to a share as SCHEMA.TABLE.
    AddTable(AddTable),
    /// Remove a table from a share.
    RemoveTable { share: String, table: String },
}

#[derive(Debug, Args)]
pub(crate) struct AddTable {
    share: String,
    /// The name in the share: SCHEMA.TABLE.
    table: String,
    /// The Delta table root: a path (made absolute) or a file:// URI.
    #[arg(long)]
    location: String,
    /// Share history: time travel and the change data feed.
    #[arg(long)]
    history: bool,
    /// The earliest version recipients may read.
    #[arg(long, default_value_t = 0)]
    start_version: u64,
    /// Restrict every recipient to matching partitions, e.g. "region = CURRENT_RECIPIENT('region')".
    #[arg(long)]
    partition_filter: Option<String>,
    /// Turn the change data feed off for this table even with history shared.
    #[arg(long)]
    no_cdf: bool,
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RecipientCommand {
    /// Create a recipient and print its one-time activation link (the recipient downloads its
    /// credential file there); with --profile-out, create the credential now and write the file.
    Create(CreateRecipient),
    /// List recipients.
    List,
    /// Show a recipient, its tokens and its shares.
    Show { name: String },
    /// Replace a recipient's credentials: older ones stay valid for the grace period (0 ends
    /// them now); prints a new activation link, or writes the new credential with --profile-out.
    Rotate {
        name: String,
        #[arg(long, default_value = "0")]
        grace: String,
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Issue a new activation link (the older ones stop working); live credentials are not
    /// touched.
    ActivationLink {
        name: String,
        #[command(flatten)]
        link: LinkArgs,
        /// The server endpoint recipients use: the link is under it.
        #[arg(long, env = "D2O_PUBLIC_ENDPOINT", default_value = "http://localhost:8080/delta-sharing")]
        endpoint: String,
    },
    /// Register a private-key OAuth client (RFC 7523, the connector's
    /// oauth_jwt_bearer_private_key_jwt profile type) with the recipient's PEM public key.
    ClientKey {
        name: String,
        /// The recipient's public key (PEM: RSA for RS256, EC P-256 for ES256).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// The server endpoint recipients use, for the profile template printed.
        #[arg(long, env = "D2O_PUBLIC_ENDPOINT", default_value = "http://localhost:8080/delta-sharing")]
        endpoint: String,
    },
    /// Let tokens of the recipient's own identity provider (OIDC) act for it.
    Federation {
        #[command(subcommand)]
        command: FederationCommand,
    },
    /// Restrict a recipient to networks (IPv4/IPv6 CIDR ranges or addresses), or lift the
    /// restriction with --clear. Applies to its requests and to the file URLs issued to it.
    IpAccess {
        name: String,
        /// A network the recipient may connect from (repeatable).
        #[arg(long = "allow", value_name = "CIDR", required_unless_present = "clear")]
        allow: Vec<String>,
        /// Remove the list: any address may be used.
        #[arg(long, conflicts_with = "allow")]
        clear: bool,
    },
    /// Replace a recipient's properties (what partition filters compare with).
    SetProperties {
        name: String,
        /// A property, KEY=VALUE (repeatable); none clears them.
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Limit a recipient's request rate (per server process), or lift the limit with --clear.
    /// Excess requests get 429 with Retry-After.
    RateLimit {
        name: String,
        /// The sustained rate: 10/s, 600/min, 5000/h.
        #[arg(long, required_unless_present = "clear")]
        rate: Option<String>,
        /// Requests allowed at once above the rate (default: one second's worth, at least 1).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
        #[arg(long, conflicts_with = "rate")]
        clear: bool,
    },
    /// Revoke every credential of a recipient at once: tokens, OAuth clients (and their access
    /// tokens), federation policies and unused activation links.
    Revoke { name: String },
    /// Drop a recipient with its tokens and grants.
    Drop { name: String },
}

#[derive(Debug, Args)]
pub(crate) struct CreateRecipient {
    name: String,
    #[arg(long)]
    comment: Option<String>,
    /// A property partition filters can refer to, KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Access ends after this long (30d, 12h, ...), or `never`.
    #[arg(long, default_value = "365d")]
    expires_in: String,
    #[command(flatten)]
    credential: CredentialArgs,
}

/// Which credential to hand out, and how.
#[derive(Debug, Args)]
pub(crate) struct CredentialArgs {
    /// Create the credential now and write the recipient's credential file (config.share,
    /// mode 0600) here, instead of printing an activation link (for automation).
    #[arg(long)]
    profile_out: Option<PathBuf>,
    /// No d2o credential: the recipient signs in through OIDC federation only.
    #[arg(long, conflicts_with_all = ["profile_out", "kind", "link_expires_in"])]
    no_credential: bool,
    #[command(flatten)]
    link: LinkArgs,
    /// The server endpoint recipients use, written into the credential file and the link.
    #[arg(long, env = "D2O_PUBLIC_ENDPOINT", default_value = "http://localhost:8080/delta-sharing")]
    endpoint: String,
}

#[derive(Debug, Args)]
pub(crate) struct LinkArgs {
    /// The credential: bearer_token, or oauth_client_credentials (a client id and secret
    /// exchanged for short-lived access tokens).
    #[arg(long)]
    kind: Option<String>,
    /// How long an activation link works (72h by default, at most 30d).
    #[arg(long)]
    link_expires_in: Option<String>,
}

impl LinkArgs {
    fn kind(&self) -> Result<CredentialKind> {
        Ok(self.kind.as_deref().map(str::parse).transpose()?.unwrap_or_default())
    }

    fn request(&self) -> Result<ActivationRequest> {
        let lifetime_secs = match &self.link_expires_in {
            Some(d) => output::parse_duration(d).map_err(anyhow::Error::msg)?,
            None => d2o_catalog::credential::DEFAULT_ACTIVATION_LIFETIME_SECS,
        };
        Ok(ActivationRequest { kind: self.kind()?, lifetime_secs })
    }
}

impl CredentialArgs {
    fn request(&self) -> Result<CredentialRequest> {
        Ok(if self.no_credential {
            CredentialRequest::None
        } else if self.profile_out.is_some() {
            CredentialRequest::Direct { kind: self.link.kind()? }
        } else {
            CredentialRequest::Activation(self.link.request()?)
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Add a policy: tokens from ISSUER with one of the audiences and the claim's value act
    /// for the recipient.
    Add {
        name: String,
        /// The identity provider's issuer URL, exactly as its tokens' `iss` claim.
        #[arg(long)]
        issuer: String,
        /// An audience the token's `aud` must contain (repeatable).
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// The claim that names the subject: sub, azp, oid or groups.
        #[arg(long, default_value = "sub")]
        claim: String,
        /// The value the claim must have (for groups: contain).
        #[arg(long)]
        subject: String,
    },
    /// Remove a policy, by the id `recipient show` lists.
    Remove { name: String, id: String },
}

/// Listing the audit log: which events, and which page of them.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    filter: AuditFilterArgs,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Skip this many of the newest matching events (paging).
    #[arg(long)]
    offset: Option<u32>,
}

/// Which audit events.
#[derive(Debug, Args)]
pub(crate) struct AuditFilterArgs {
    #[arg(long)]
    recipient: Option<String>,
    #[arg(long)]
    share: Option<String>,
    /// TABLE or SCHEMA.TABLE.
    #[arg(long)]
    table: Option<String>,
    /// e.g. query, metadata, changes, admin.recipient.rotate
    #[arg(long)]
    action: Option<String>,
    /// Only events at or after this time (ISO-8601, or a duration ago such as 1h).
    #[arg(long)]
    since: Option<String>,
    /// Only events at or before this time (ISO-8601).
    #[arg(long)]
    until: Option<String>,
    /// Only events with this status: a code (404), a class (4xx), ok (below 400) or error.
    #[arg(long)]
    status: Option<String>,
}

impl AuditFilterArgs {
    fn filter(self) -> Result<AuditFilter> {
        let status = self.status.as_deref().map(AuditFilter::status_range).transpose()?;
        Ok(AuditFilter {
            principal: self.recipient,
            share: self.share,
            table: self.table,
            action: self.action,
            since_ms: self.since.as_deref().map(time_arg).transpose()?,
            until_ms: self.until.as_deref().map(time_arg).transpose()?,
            min_status: status.map(|s| s.0),
            max_status: status.map(|s| s.1),
            ..AuditFilter::default()
        })
    }
}

/// What else there is to do with the audit log than list it.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Write the audit log (or the events the filters select) as a Parquet file or as a new
    /// Delta table, which you can query, or share.
    Export {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// The file (parquet) or directory (delta) to create.
        #[arg(long, short = 'o')]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "parquet")]
        format: crate::audit_export::Format,
    },
    /// Delete events older than a duration (90d, 12h, ...), in batches. `serve
    /// --audit-retention-days` does this every hour.
    Prune {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        older_than: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StorageCommand {
    /// Add a named storage location: object-store options for the tables under a URL prefix.
    Add {
        name: String,
        /// The prefix it covers: s3://bucket/path/, gs://..., abfss://container@account.dfs.core.windows.net/...
        #[arg(long)]
        url: String,
        /// An object_store option, KEY=VALUE (repeatable). Secrets only as ${ENV_VAR}.
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// presign: recipients download from the store at pre-signed URLs; proxy: through
        /// the server.
        #[arg(long, default_value = "presign")]
        url_mode: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// List storage locations.
    List,
    /// Show a storage location.
    Show { name: String },
    /// Drop a storage location (its tables are then read with the store's defaults).
    Drop { name: String },
    /// Try a storage location: list under its prefix and read one object.
    Check { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// Make the catalog hold the shares of a reference-format server.yaml, keeping table ids
    /// and the file's bearer token (as a recipient's credential); repeatable.
    Import {
        config: PathBuf,
        /// The recipient that keeps the file's bearer token.
        #[arg(long, default_value = d2o_catalog::import::DEFAULT_LEGACY_RECIPIENT)]
        legacy_recipient: String,
        /// Do not keep the file's bearer token.
        #[arg(long)]
        no_legacy_token: bool,
        /// Drop shares and tables the file does not name, and revoke the legacy recipient's
        /// other bearer tokens.
        #[arg(long)]
        prune: bool,
        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the catalog's shares as a reference-format server.yaml (no secrets).
    Export {
        /// Write here instead of to standard output.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn print_share(s: &ShareInfo, json: bool) -> Result<()> {
    if json {
        return output::json(s);
    }
    println!("share {}{}", s.name, s.comment.as_deref().map(|c| format!("  ({c})")).unwrap_or_default());
    let rows: Vec<Vec<String>> = s
        .tables
        .iter()
        .map(|t| {
            vec![
                format!("{}.{}", t.schema, t.name),
                t.location.clone(),
                if t.history_shared { "yes".into() } else { "no".into() },
                t.partition_filter.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(&["TABLE", "LOCATION", "HISTORY", "PARTITION FILTER"], &rows);
    println!("recipients: {}", if s.recipients.is_empty() { "-".to_owned() } else { s.recipients.join(", ") });
    Ok(())
}

fn print_recipient(r: &RecipientInfo, json: bool) -> Result<()> {
    if json {
        return output::json(r);
    }
    println!("recipient {}{}", r.name, r.comment.as_deref().map(|c| format!("  ({c})")).unwrap_or_default());
    if !r.properties.is_empty() {
        let props: Vec<String> = r.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("properties: {}", props.join(", "));
    }
    println!("expires: {}", output::time(r.expires_at));
    if let Some(networks) = &r.ip_access_list {
        println!("allowed networks: {}", networks.join(", "));
    }
    if let Some(limit) = &r.rate_limit {
        println!("rate limit: {} (burst {})", limit.rate, limit.burst);
    }
    println!("shares: {}", if r.shares.is_empty() { "-".to_owned() } else { r.shares.join(", ") });
    if let Some(link) = &r.activation {
        let used = link.used_at.map(|u| format!(" on {}", output::time(Some(u)))).unwrap_or_default();
        println!(
            "activation link: {} {}{used} (for a {}, issued {}, works until {})",
            link.state.describe(),
            if link.state == d2o_catalog::ActivationState::Ready { "to be opened" } else { "" },
            link.kind.as_str(),
            output::time(Some(link.created_at)),
            output::time(Some(link.expires_at))
        );
    }
    for p in &r.federation_policies {
        println!(
            "federation policy {}: issuer {}, audience {}, {} = {}{}",
            p.id,
            p.issuer,
            p.audiences.join(" | "),
            p.subject_claim,
            p.subject,
            if p.revoked_at.is_some() { " (revoked)" } else { "" }
        );
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = r
        .tokens
        .iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.is_active(now) {
                "active"
            } else {
                "expired"
            };
            vec![
                t.id.clone(),
                t.kind.as_str().into(),
                state.into(),
                output::time(Some(t.created_at)),
                output::time(t.expires_at),
            ]
        })
        .collect();
    output::table(&["CREDENTIAL", "KIND", "STATE", "CREATED", "EXPIRES"], &rows);
    Ok(())
}

/// Writes a credential file readable only by its owner.
/// Writes a credential file: mode 0600, through a new temporary file renamed into place, so a
/// reader never sees half a file and a symlink planted at the path is never followed.
pub(crate) fn write_profile(path: &Path, endpoint: &str, token: &IssuedToken) -> Result<()> {
    let profile = token.profile(endpoint).context("this credential has no profile file")?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("{} is a symbolic link; refusing to write a credential file through it", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), uuid_like()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        writeln!(file, "{}", profile.to_json())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// A name part no other writer picks at the same moment.
fn uuid_like() -> String {
    format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// Says what was issued: writes the credential file, or prints the activation link.
fn report(issued: Issued, args: &CredentialArgs, json: bool) -> Result<()> {
    match issued {
        Issued::Token(token) => {
            let path = args.profile_out.as_ref().context("a credential was issued without --profile-out")?;
            write_profile(path, &args.endpoint, &token)?;
            if json {
                output::json(&serde_json::json!({
                    "recipient": token.recipient, "kind": token.kind, "profile": path, "expiresAt": token.expires_at,
                }))
            } else {
                println!("credential file for {} written to {} (mode 0600)", token.recipient, path.display());
                Ok(())
            }
        }
        Issued::Activation(link) => report_link(&link, &args.endpoint, json),
        Issued::None => {
            if !json {
                println!("no credential issued: add a federation policy with `d2o recipient federation add`");
            }
            Ok(())
        }
    }
}

fn report_link(link: &IssuedActivation, endpoint: &str, json: bool) -> Result<()> {
    let url = d2o_server::admin::activation_url(endpoint, &link.secret);
    if json {
        return output::json(&serde_json::json!({
            "recipient": link.recipient, "url": url, "kind": link.kind, "expiresAt": link.expires_at,
        }));
    }
    println!(
        "activation link for {} ({}; works once, until {}):\n{url}",
        link.recipient,
        link.kind.as_str(),
        output::time(Some(link.expires_at))
    );
    println!("send it to the recipient: opening it downloads config.share; nobody else sees the credential");
    Ok(())
}

pub(crate) async fn share(target: &Target, command: ShareCommand) -> Result<()> {
    let admin = target.open().await?;
    let json = target.json;
    match command {
        ShareCommand::Create { name, comment } => {
            let s = admin.create_share(&name, comment.as_deref()).await?;
            print_share(&s, json)
        }
        ShareCommand::List => {
            let shares = admin.list_shares().await?;
            if json {
                return shares.iter().try_for_each(output::json);
            }
            let rows: Vec<Vec<String>> = shares
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.tables.len().to_string(),
                        s.recipients.join(","),
                        s.comment.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["SHARE", "TABLES", "RECIPIENTS", "COMMENT"], &rows);
            Ok(())
        }
        ShareCommand::Show { name } => print_share(&admin.show_share(&name).await?, json),
        ShareCommand::Comment { name, comment } => {
            let s = admin.comment_share(&name, comment.as_deref()).await?;
            print_share(&s, json)
        }
        ShareCommand::Drop { name } => {
            admin.drop_share(&name).await?;
            if !json {
                println!("dropped share {name}");
            }
            Ok(())
        }
        ShareCommand::AddTable(a) => {
            let Some((schema, table)) = a.table.split_once('.') else {
                bail!("the table name must be SCHEMA.TABLE, not '{}'", a.table);
            };
            let location = if a.location.contains("://") {
                a.location.clone()
            } else {
                std::path::absolute(&a.location)?.display().to_string()
            };
            let entry = TableEntry {
                id: None,
                schema: schema.to_owned(),
                name: table.to_owned(),
                location,
                history_shared: a.history,
                start_version: a.start_version,
                cdf_enabled: a.no_cdf.then_some(false),
                partition_filter: a.partition_filter,
                comment: a.comment,
            };
            // Through a server, the server checks a cloud location itself.
            if target.server.is_none()
                && let Ok(url) = url::Url::parse(&entry.location)
                && d2o_catalog::StoreKind::of(&url).is_some()
            {
                let locations = admin.list_storage().await?;
                d2o_server::storage::cloud::check_delta_log(&url, &locations).await.map_err(anyhow::Error::msg)?;
            }
            let s = admin.add_table(&a.share, entry).await?;
            print_share(&s, json)
        }
        ShareCommand::RemoveTable { share, table } => {
            let Some((schema, name)) = table.split_once('.') else {
                bail!("the table name must be SCHEMA.TABLE, not '{table}'")
            };
            let s = admin.remove_table(&share, schema, name).await?;
            print_share(&s, json)
        }
    }
}

fn print_storage(l: &StorageLocation, json: bool) -> Result<()> {
    if json {
        return output::json(l);
    }
    println!("storage location {}  {}  (urlMode {})", l.name, l.url, l.url_mode.as_str());
    let rows: Vec<Vec<String>> = l.options.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
    output::table(&["OPTION", "VALUE"], &rows);
    Ok(())
}

pub(crate) async fn storage(target: &Target, command: StorageCommand) -> Result<()> {
    let admin = target.open().await?;
    let json = target.json;
    match command {
        StorageCommand::Add { name, url, options, url_mode, comment } => {
            let options = parse_properties(options.iter().map(String::as_str))?;
            let url_mode = url_mode.parse().map_err(anyhow::Error::msg)?;
            let location = StorageLocation::new(&name, &url, url_mode, options, comment).map_err(anyhow::Error::msg)?;
            print_storage(&admin.add_storage(location).await?, json)
        }
        StorageCommand::List => {
            let locations = admin.list_storage().await?;
            if json {
                return locations.iter().try_for_each(output::json);
            }
            let rows: Vec<Vec<String>> = locations
                .iter()
                .map(|l| {
                    vec![l.name.clone(), l.url.to_string(), l.url_mode.as_str().to_owned(), l.options.len().to_string()]
                })
                .collect();
            output::table(&["STORAGE", "URL", "URL MODE", "OPTIONS"], &rows);
            Ok(())
        }
        StorageCommand::Show { name } => print_storage(&admin.show_storage(&name).await?, json),
        StorageCommand::Drop { name } => {
            admin.drop_storage(&name).await?;
            if !json {
                println!("dropped storage location {name}");
            }
            Ok(())
        }
        StorageCommand::Check { name } => {
            let location = admin.show_storage(&name).await?;
            let check = d2o_server::storage::cloud::check_location(&location)
                .await
                .map_err(|e| anyhow::anyhow!("storage location '{name}': {e}"))?;
            if json {
                return output::json(&check);
            }
            println!(
                "storage location {name}: listed {} object(s) under {}; {}",
                check.listed,
                check.url,
                check.read.map_or_else(|| "nothing to read".to_owned(), |o| format!("read {o}"))
            );
            Ok(())
        }
    }
}

pub(crate) async fn recipient(target: &Target, command: RecipientCommand) -> Result<()> {
    let admin = target.open().await?;
    let json = target.json;
    match command {
        RecipientCommand::Create(c) => {
            let expires_at = match c.expires_in.as_str() {
                "never" => None,
                d => Some(now_ms() + output::parse_duration(d).map_err(anyhow::Error::msg)? as i64 * 1000),
            };
            let properties = parse_properties(c.properties.iter().map(String::as_str))?;
            let credential = c.credential.request()?;
            let new = NewRecipient { name: c.name.clone(), comment: c.comment, properties, expires_at, credential };
            let (_, issued) = admin.create_recipient(new).await?;
            report(issued, &c.credential, json)
        }
        RecipientCommand::List => {
            let recipients = admin.list_recipients().await?;
            if json {
                return recipients.iter().try_for_each(output::json);
            }
            let now = now_ms();
            let rows: Vec<Vec<String>> = recipients
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.tokens.iter().filter(|t| t.is_active(now)).count().to_string(),
                        r.shares.join(","),
                        output::time(r.expires_at),
                    ]
                })
                .collect();
            output::table(&["RECIPIENT", "ACTIVE CREDENTIALS", "SHARES", "EXPIRES"], &rows);
            Ok(())
        }
        RecipientCommand::Show { name } => print_recipient(&admin.show_recipient(&name).await?, json),
        RecipientCommand::Rotate { name, grace, credential } => {
            let grace = output::parse_duration(&grace).map_err(anyhow::Error::msg)?;
            let issued = admin.rotate_credential(&name, grace, credential.request()?).await?;
            report(issued, &credential, json)
        }
        RecipientCommand::ActivationLink { name, link, endpoint } => {
            let issued = admin.issue_activation(&name, link.request()?).await?;
            report_link(&issued, &endpoint, json)
        }
        RecipientCommand::ClientKey { name, public_key, endpoint } => {
            let pem = std::fs::read_to_string(&public_key)
                .with_context(|| format!("cannot read {}", public_key.display()))?;
            let client = admin.add_client_key(&name, &pem).await?;
            let token_endpoint =
                format!("{}{}", endpoint.trim_end_matches('/'), d2o_catalog::credential::TOKEN_ENDPOINT_PATH);
            let profile = serde_json::json!({
                "shareCredentialsVersion": 2,
                "type": "oauth_jwt_bearer_private_key_jwt",
                "endpoint": endpoint,
                "auth": {
                    "tokenEndpoint": token_endpoint,
                    "issuer": token_endpoint,
                    "clientId": client.id,
                    "audience": endpoint,
                    "privateKey": {"privateKeyFile": "PATH/TO/private-key.pem", "keyId": "any", "algorithm": "RS256 or ES256"},
                },
            });
            if json {
                return output::json(
                    &serde_json::json!({"recipient": name, "clientId": client.id, "profile": profile}),
                );
            }
            println!("client id for {name}: {}", client.id);
            println!("the recipient's profile (it fills in its private key file and algorithm):");
            println!("{}", serde_json::to_string_pretty(&profile)?);
            Ok(())
        }
        RecipientCommand::Federation { command } => match command {
            FederationCommand::Add { name, issuer, audiences, claim, subject } => {
                let policy = NewFederationPolicy { issuer, audiences, subject_claim: claim.parse()?, subject };
                print_recipient(&admin.add_federation_policy(&name, policy).await?, json)
            }
            FederationCommand::Remove { name, id } => {
                print_recipient(&admin.remove_federation_policy(&name, &id).await?, json)
            }
        },
        RecipientCommand::IpAccess { name, allow, clear } => {
            let r = admin.set_ip_access_list(&name, (!clear).then_some(allow)).await?;
            print_recipient(&r, json)
        }
        RecipientCommand::SetProperties { name, properties } => {
            let properties = d2o_catalog::admin::parse_properties(properties.iter().map(String::as_str))?;
            print_recipient(&admin.set_properties(&name, properties).await?, json)
        }
        RecipientCommand::RateLimit { name, rate, burst, clear: _ } => {
            let limit = rate
                .map(|rate| {
                    RateLimit::new(rate.parse().map_err(anyhow::Error::msg)?, burst).map_err(anyhow::Error::msg)
                })
                .transpose()?;
            print_recipient(&admin.set_rate_limit(&name, limit).await?, json)
        }
        RecipientCommand::Revoke { name } => {
            let r = admin.revoke_recipient(&name).await?;
            print_recipient(&r, json)
        }
        RecipientCommand::Drop { name } => {
            admin.drop_recipient(&name).await?;
            if !json {
                println!("dropped recipient {name}");
            }
            Ok(())
        }
    }
}

pub(crate) async fn grant(target: &Target, share: &str, recipient: &str, grant: bool) -> Result<()> {
    let admin = target.open().await?;
    if grant {
        admin.grant(share, recipient).await?;
        if !target.json {
            println!("granted share {share} to {recipient}");
        }
    } else {
        admin.revoke_grant(share, recipient).await?;
        if !target.json {
            println!("revoked share {share} from {recipient}");
        }
    }
    Ok(())
}

fn time_arg(text: &str) -> Result<i64> {
    if let Ok(ms) = d2o_protocol::timestamp::parse_timestamp_millis(text) {
        return Ok(ms);
    }
    let ago = output::parse_duration(text)
        .map_err(|_| anyhow::anyhow!("'{text}' is neither an ISO-8601 time nor a duration such as 1h"))?;
    Ok(now_ms() - ago as i64 * 1000)
}

pub(crate) async fn audit_command(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Export { target, filter, out, format } => {
            let filter = filter.filter()?;
            let admin = target.open().await?;
            let rows = crate::audit_export::export(admin.as_ref(), &filter, &out, format).await?;
            eprintln!("wrote {rows} audit events to {}", out.display());
            Ok(())
        }
        AuditCommand::Prune { target, older_than } => {
            let ago = output::parse_duration(&older_than).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(ago >= 3600, "--older-than must be at least 1h");
            let admin = target.open().await?;
            let deleted = d2o_server::retention::prune(admin.as_ref(), now_ms() - ago as i64 * 1000, 5_000).await?;
            println!("deleted {deleted} audit events older than {older_than}");
            Ok(())
        }
    }
}

pub(crate) async fn audit(target: &Target, a: AuditArgs) -> Result<()> {
    let admin = target.open().await?;
    let filter = AuditFilter { limit: Some(a.limit), offset: a.offset, ..a.filter.filter()? };
    let events = admin.audit(&filter).await?;
    if target.json {
        return events.iter().try_for_each(output::json);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let table = match (&e.schema, &e.table) {
                (Some(s), Some(t)) => format!("{s}.{t}"),
                (None, Some(t)) => t.clone(),
                _ => "-".into(),
            };
            vec![
                output::time(Some(e.time_ms)),
                e.principal.clone(),
                e.action.clone(),
                opt(&e.share),
                table,
                e.version.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                e.files.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                e.bytes.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                e.status.to_string(),
                opt(&e.client_ip),
            ]
        })
        .collect();
    output::table(&["TIME", "WHO", "ACTION", "SHARE", "TABLE", "VERSION", "FILES", "BYTES", "STATUS", "CLIENT"], &rows);
    Ok(())
}

pub(crate) async fn catalog(target: &Target, command: CatalogCommand) -> Result<()> {
    match command {
        CatalogCommand::Import { config, legacy_recipient, no_legacy_token, prune, dry_run } => {
            let legacy = (!no_legacy_token).then_some(legacy_recipient);
            import(target, &config, legacy, prune, dry_run).await
        }
        CatalogCommand::Export { out } => export(target, out.as_deref()).await,
    }
}

async fn import(target: &Target, config: &Path, legacy: Option<String>, prune: bool, dry_run: bool) -> Result<()> {
    let (parsed, report) = d2o_server::config::ServerConfig::load(config)?;
    for w in &report.warnings {
        eprintln!("warning: {}: {w}", config.display());
    }
    let spec =
        d2o_server::config::import_spec(&parsed, &d2o_server::config::config_dir(config), legacy.as_deref(), prune)
            .map_err(anyhow::Error::msg)?;
    let admin = target.open().await?;
    let plan = admin.import(&spec, dry_run).await?;
    if target.json {
        return output::json(&plan);
    }
    let verb = if dry_run { "would change" } else { "changed" };
    if plan.changes.is_empty() {
        println!("the catalog already holds the shares of {}: nothing to change", config.display());
    } else {
        println!("{} {verb}:", config.display());
        for change in &plan.changes {
            println!("  {change}");
        }
    }
    if let (Some(legacy), false, false) = (&spec.legacy, dry_run, plan.changes.is_empty()) {
        println!(
            "profiles with the file's bearer token keep working as recipient {}; give partners their own \
             recipients, then `d2o recipient revoke {}`",
            legacy.recipient, legacy.recipient
        );
    }
    if !prune && !dry_run {
        let extra = admin.list_shares().await?.len().saturating_sub(spec.shares.len());
        if extra > 0 {
            println!("note: {extra} shares of the catalog are not in the file; --prune drops them");
        }
    }
    Ok(())
}

async fn export(target: &Target, out: Option<&Path>) -> Result<()> {
    let admin = target.open().await?;
    let shares = admin.list_shares().await?;
    let yaml = d2o_server::config::export_yaml(&shares)?;
    match out {
        Some(path) => {
            std::fs::write(path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} shares to {}", shares.len(), path.display());
        }
        None => print!("{yaml}"),
    }
    Ok(())
}
