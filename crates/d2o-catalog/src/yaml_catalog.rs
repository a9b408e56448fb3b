use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use d2o_protocol::model::{Page, Schema, Share, Table};
use subtle::ConstantTimeEq;

use crate::page::page_of;
use crate::share_config::{ShareConfig, resolve_location};
use crate::{AuditEvent, Catalog, CatalogError, PageRequest, Principal, SharedTable, StorageLocation};

/// A read-only catalog over the share tree of a reference-format YAML file.
///
/// Everyone who holds the one `authorization.bearerToken` sees everything; without that key the
/// server is open (as the reference server). Order is the order of the file.
#[derive(Debug, Clone)]
pub struct YamlCatalog {
    bearer_token: Option<String>,
    shares: Vec<YamlShare>,
    storage: Arc<Vec<StorageLocation>>,
}

#[derive(Debug, Clone)]
struct YamlShare {
    share: Share,
    schemas: Vec<(String, Vec<SharedTable>)>,
}

/// The principal of the YAML catalog's single token (its name and its id).
const RECIPIENT: &str = "bearer-token";

/// The id of a table the YAML file gives no `id`: derived from its names (case-insensitive, as
/// names are matched), so it is the same at every start and on every replica.
pub fn derived_table_id(share: &str, schema: &str, table: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6432_6f00_7461_626c_6569_6473_0000_0001);
    let key = format!("{}\n{}\n{}", share.to_lowercase(), schema.to_lowercase(), table.to_lowercase());
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).to_string()
}

impl YamlCatalog {
    /// Builds the catalog from a validated share tree (see
    /// [`crate::share_config::validate_shares`]) and the file's bearer token; `base_dir` anchors
    /// relative locations.
    pub fn new(tree: &[ShareConfig], bearer_token: Option<&str>, base_dir: &Path) -> Result<Self, CatalogError> {
        let mut shares = Vec::new();
        for share in tree {
            let share_name = share.name.clone().unwrap_or_default();
            let mut schemas = Vec::new();
            for schema in &share.schemas {
                let schema_name = schema.name.clone().unwrap_or_default();
                let mut tables = Vec::new();
                for table in &schema.tables {
                    let location = resolve_location(table.location.as_deref().unwrap_or_default(), base_dir)
                        .map_err(CatalogError::InvalidArgument)?;
                    let name = table.name.clone().unwrap_or_default();
                    let id = table.id.clone().unwrap_or_else(|| derived_table_id(&share_name, &schema_name, &name));
                    tables.push(SharedTable {
                        share: share_name.clone(),
                        schema: schema_name.clone(),
                        name,
                        share_id: share.id.clone(),
                        id,
                        location,
                        history_shared: table.history_shared,
                        start_version: table.start_version,
                        cdf_enabled: table.cdf_enabled,
                        partition_filter: None,
                    });
                }
                schemas.push((schema_name, tables));
            }
            shares.push(YamlShare {
                share: Share {
                    name: share_name,
                    id: share.id.clone(),
                    display_name: None,
                    comment: None,
                    properties: BTreeMap::new(),
                },
                schemas,
            });
        }
        let bearer_token = bearer_token.map(str::to_owned);
        Ok(YamlCatalog { bearer_token, shares, storage: Arc::default() })
    }

    /// The catalog with these named storage locations (the file's `storage:`).
    pub fn with_storage(self, storage: Vec<StorageLocation>) -> Self {
        YamlCatalog { storage: Arc::new(storage), ..self }
    }

    fn share(&self, name: &str) -> Result<&YamlShare, CatalogError> {
        self.shares
            .iter()
            .find(|s| s.share.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| CatalogError::not_found("share", name))
    }

    fn schema(&self, share: &str, schema: &str) -> Result<&[SharedTable], CatalogError> {
        self.share(share)?
            .schemas
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(schema))
            .map(|(_, t)| t.as_slice())
            .ok_or_else(|| CatalogError::not_found("schema", format!("{share}.{schema}")))
    }
}

fn principal() -> Principal {
    Principal::new(RECIPIENT, RECIPIENT, BTreeMap::new())
}

#[async_trait]
impl Catalog for YamlCatalog {
    async fn authenticate(&self, bearer_token: Option<&str>) -> Result<Principal, CatalogError> {
        if let Some(expected) = &self.bearer_token {
            let given = bearer_token.unwrap_or_default();
            if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(CatalogError::Unauthenticated(if bearer_token.is_none() {
                    "a bearer token is required".into()
                } else {
                    "the bearer token is not valid".into()
                }));
            }
        }
        Ok(principal())
    }

    async fn authenticate_client(&self, _client_id: &str, _secret: &str) -> Result<Principal, CatalogError> {
        Err(CatalogError::Unauthenticated("this server has no OAuth clients (it serves a YAML config)".into()))
    }

    async fn client_key(&self, _client_id: &str) -> Result<(Principal, String), CatalogError> {
        Err(CatalogError::Unauthenticated("this server has no OAuth clients (it serves a YAML config)".into()))
    }

    async fn authenticate_credential(&self, _credential_id: &str) -> Result<Principal, CatalogError> {
        Err(CatalogError::Unauthenticated("this server has no OAuth clients or federation policies".into()))
    }

    async fn federation_policies(&self) -> Result<Arc<Vec<crate::FederationPolicy>>, CatalogError> {
        Ok(Arc::default())
    }

    async fn list_shares(&self, _who: &Principal, page: &PageRequest) -> Result<Page<Share>, CatalogError> {
        page_of(self.shares.iter().map(|s| s.share.clone()).collect(), "shares", page)
    }

    async fn get_share(&self, _who: &Principal, share: &str) -> Result<Share, CatalogError> {
        Ok(self.share(share)?.share.clone())
    }

    async fn list_schemas(
        &self,
        _who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Schema>, CatalogError> {
        let s = self.share(share)?;
        let items =
            s.schemas.iter().map(|(name, _)| Schema { name: name.clone(), share: s.share.name.clone() }).collect();
        page_of(items, &format!("schemas/{}", share.to_lowercase()), page)
    }

    async fn list_tables(
        &self,
        _who: &Principal,
        share: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError> {
        let items = self.schema(share, schema)?.iter().map(SharedTable::listed).collect();
        page_of(items, &format!("tables/{}/{}", share.to_lowercase(), schema.to_lowercase()), page)
    }

    async fn list_all_tables(
        &self,
        _who: &Principal,
        share: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>, CatalogError> {
        let items = self.share(share)?.schemas.iter().flat_map(|(_, t)| t.iter().map(SharedTable::listed)).collect();
        page_of(items, &format!("all-tables/{}", share.to_lowercase()), page)
    }

    async fn get_table(
        &self,
        _who: &Principal,
        share: &str,
        schema: &str,
        table: &str,
    ) -> Result<SharedTable, CatalogError> {
        self.schema(share, schema)?
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(table))
            .cloned()
            .ok_or_else(|| CatalogError::not_found("table", format!("{share}.{schema}.{table}")))
    }

    async fn file_access(&self, recipient_id: &str, table_id: &str) -> Result<(Principal, SharedTable), CatalogError> {
        let not_found = || CatalogError::not_found("table", table_id);
        if recipient_id != RECIPIENT {
            return Err(not_found());
        }
        let table = self
            .shares
            .iter()
            .flat_map(|s| s.schemas.iter().flat_map(|(_, t)| t.iter()))
            .find(|t| t.id == table_id)
            .ok_or_else(not_found)?;
        Ok((principal(), table.clone()))
    }

    /// The YAML catalog has no storage: events go to the log (target `d2o::audit`).
    fn storage_locations(&self) -> Arc<Vec<StorageLocation>> {
        self.storage.clone()
    }

    async fn record(&self, e: &AuditEvent) -> Result<(), CatalogError> {
        tracing::info!(
            target: "d2o::audit",
            principal = %e.principal, action = %e.action, share = ?e.share, schema = ?e.schema, table = ?e.table,
            version = ?e.version, files = ?e.files, bytes = ?e.bytes, status = e.status, client_ip = ?e.client_ip,
            user_agent = ?e.user_agent, request_id = ?e.request_id, detail = ?e.detail,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(token: Option<&str>) -> YamlCatalog {
        let text = "- name: Share1\n  schemas:\n  - name: sc\n    tables:\n    - name: T1\n      location: /data/t1\n    - name: t2\n      location: t2\n- name: share2\n";
        let shares: Vec<ShareConfig> = serde_yaml_ng::from_str(text).expect("a share tree");
        crate::share_config::validate_shares(&shares, Path::new("/base")).expect("valid");
        YamlCatalog::new(&shares, token, Path::new("/base")).expect("valid catalog")
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        // The YAML catalog never awaits anything; a trivial executor is enough.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn token_is_checked() {
        let c = catalog(Some("secret"));
        assert!(block(c.authenticate(Some("secret"))).is_ok());
        assert!(matches!(block(c.authenticate(Some("wrong"))), Err(CatalogError::Unauthenticated(_))));
        assert!(matches!(block(c.authenticate(None)), Err(CatalogError::Unauthenticated(_))));
        assert!(block(catalog(None).authenticate(None)).is_ok());
    }

    #[test]
    fn lookups_ignore_case_and_report_what_is_missing() {
        let c = catalog(None);
        let who = block(c.authenticate(None)).expect("open");
        let t = block(c.get_table(&who, "share1", "SC", "t1")).expect("found");
        assert_eq!(t.name, "T1");
        assert_eq!(t.location.as_str(), "file:///data/t1/");
        let t2 = block(c.get_table(&who, "share1", "sc", "T2")).expect("found");
        assert_eq!(t2.location.as_str(), "file:///base/t2/");
        assert!(matches!(
            block(c.get_table(&who, "nope", "sc", "t1")),
            Err(CatalogError::NotFound { kind: "share", .. })
        ));
        assert!(matches!(
            block(c.get_table(&who, "share1", "x", "t1")),
            Err(CatalogError::NotFound { kind: "schema", .. })
        ));
        assert!(matches!(
            block(c.get_table(&who, "share1", "sc", "x")),
            Err(CatalogError::NotFound { kind: "table", .. })
        ));
        let all = block(c.list_all_tables(&who, "SHARE1", &PageRequest::default())).expect("listed");
        assert_eq!(all.items.len(), 2);
        let (who, by_id) = block(c.file_access(RECIPIENT, &t2.id)).expect("found by id");
        assert_eq!((who.recipient.as_str(), by_id.name.as_str()), (RECIPIENT, "t2"));
        assert!(block(c.file_access("someone-else", &t2.id)).is_err());
        assert!(block(c.file_access(RECIPIENT, "no-such-id")).is_err());
    }
}
