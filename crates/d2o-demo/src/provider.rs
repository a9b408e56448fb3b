//! The provider's side of the demo: the catalog, the share, the recipient and its activation
//! link, the grant, and the server; then the recipient's first step, redeeming the link.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use d2o_catalog::{
    ActivationRequest, Admin, Catalog, CredentialRequest, IssuedActivation, NewRecipient, SqlCatalog, TableEntry,
};
use d2o_server::AppState;
use d2o_server::config::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::DemoError;
use crate::delta_writer::TablePaths;

/// The share the demo creates.
pub const SHARE: &str = "external_retail";
/// The schema the tables are shared under.
pub const SCHEMA: &str = "retail";
/// The recipient the demo creates and acts as.
pub const RECIPIENT: &str = "partner_co";
/// The protocol's path prefix.
pub const ENDPOINT_PATH: &str = "/delta-sharing";

fn catalog_err(context: &str) -> impl Fn(d2o_catalog::CatalogError) -> DemoError + '_ {
    move |e| DemoError::Catalog(format!("{context}: {e}"))
}

/// Creates the catalog at `path` with the share, its two tables (history shared, so time
/// travel and the change feed work), the recipient with an activation link, and the grant.
/// Returns the catalog and the link's secret.
pub async fn provision(path: &Path, tables: &TablePaths) -> Result<(SqlCatalog, IssuedActivation), DemoError> {
    let catalog = SqlCatalog::connect(&path.to_string_lossy()).await.map_err(catalog_err("cannot open the catalog"))?;
    catalog
        .create_share(SHARE, Some("Retail data shared with partners (d2o demo)"))
        .await
        .map_err(catalog_err("create the share"))?;
    for (name, location, comment) in [
        ("customers", &tables.customers, "Customers; version 1 moves 50 customers to another segment"),
        ("sales", &tables.sales, "Sales partitioned by region; version 1 appends a later batch"),
    ] {
        let location = std::path::absolute(location).map_err(|e| DemoError::io(location, e))?;
        let entry = TableEntry {
            id: None,
            schema: SCHEMA.to_owned(),
            name: name.to_owned(),
            location: location.to_string_lossy().into_owned(),
            history_shared: true,
            start_version: 0,
            cdf_enabled: None,
            partition_filter: None,
            comment: Some(comment.to_owned()),
        };
        catalog.add_table(SHARE, entry).await.map_err(catalog_err("add a table"))?;
    }
    let recipient = NewRecipient {
        name: RECIPIENT.to_owned(),
        comment: Some("The demo's partner".to_owned()),
        credential: CredentialRequest::Activation(ActivationRequest::default()),
        ..NewRecipient::default()
    };
    let (_, issued) = catalog.create_recipient(recipient).await.map_err(catalog_err("create the recipient"))?;
    let link =
        issued.into_activation().ok_or_else(|| DemoError::Catalog("no activation link was issued".to_owned()))?;
    catalog.grant(SHARE, RECIPIENT).await.map_err(catalog_err("grant the share"))?;
    Ok((catalog, link))
}

/// The recipient's first step: opens the activation link as its browser's button does (a
/// `POST` to the link) and keeps the `config.share` it downloads, readable by its owner only.
pub async fn activate(url: &str, path: &Path) -> Result<(), DemoError> {
    let failed = |e: &dyn std::fmt::Display| DemoError::Server(format!("cannot redeem the activation link: {e}"));
    let response = reqwest::Client::new().post(url).send().await.map_err(|e| failed(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| failed(&e))?;
    if !status.is_success() {
        return Err(failed(&format!("{status}: {}", String::from_utf8_lossy(&body))));
    }
    write_private(path, &body)
}

/// Writes a credential file readable by its owner only (mode 0600 on Unix, in a 0700
/// directory).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
        // Only the owner may list the credentials directory either.
        #[cfg(unix)]
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| DemoError::io(dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| DemoError::io(path, e))?;
    // An existing file keeps its mode on open: set it again.
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| DemoError::io(path, e))?;
    file.write_all(bytes).map_err(|e| DemoError::io(path, e))?;
    Ok(())
}

/// The link a provider sends: the activation secret under the server's endpoint.
pub fn activation_url(endpoint: &str, link: &IssuedActivation) -> String {
    d2o_server::admin::activation_url(endpoint, &link.secret)
}

/// A running server and how to stop it.
#[derive(Debug)]
pub struct RunningServer {
    /// `http://127.0.0.1:<port>/delta-sharing`
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    catalog: SqlCatalog,
}

impl RunningServer {
    /// Starts the protocol server over `catalog` on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(catalog: SqlCatalog, port: u16, base_dir: &Path) -> Result<RunningServer, DemoError> {
        let (config, _) = ServerConfig::parse("version: 1", base_dir).map_err(DemoError::Server)?;
        let mut state = AppState::from_config(&config, Arc::new(catalog.clone()) as Arc<dyn Catalog>)
            .map_err(|e| DemoError::Server(e.to_string()))?;
        state.admin = Some(Arc::new(catalog.clone()) as Arc<dyn Admin>);
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| DemoError::Server(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| DemoError::Server(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(d2o_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Ok(RunningServer { endpoint: format!("http://{addr}{ENDPOINT_PATH}"), stop: Some(stop), task, catalog })
    }

    /// Stops the server, waits for it, and closes the catalog (SQLite folds its write-ahead
    /// log back into `d2o.db`).
    pub async fn stop(mut self) -> Result<(), DemoError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match (&mut self.task).await {
            Ok(result) => result.map_err(|e| DemoError::Server(e.to_string())),
            Err(e) => Err(DemoError::Server(format!("the server task failed: {e}"))),
        };
        self.catalog.pool().close().await;
        result
    }
}

/// The credential file's place in the demo directory.
pub fn creds_path(dir: &Path) -> PathBuf {
    dir.join(".creds").join("config.share")
}
