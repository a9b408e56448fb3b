//! [`Admin`] over a running server's admin REST API (`d2o ... --server URL`).

use async_trait::async_trait;
use d2o_catalog::{
    ActivationInfo, ActivationRequest, Admin, AuditEvent, AuditFilter, CatalogError, CredentialRequest, Issued,
    IssuedActivation, IssuedToken, NewFederationPolicy, NewRecipient, RateLimit, RecipientInfo, ShareInfo,
    StorageLocation, TableEntry, UsageBy, UsagePoint, UsageQuery,
};
use d2o_protocol::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The admin API of a d2o server.
pub(crate) struct RemoteAdmin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl RemoteAdmin {
    pub(crate) fn new(server: &str, token: String) -> Self {
        RemoteAdmin { base: format!("{}/admin/v1", server.trim_end_matches('/')), token, http: reqwest::Client::new() }
    }

    fn path(segments: &[&str]) -> String {
        segments
            .iter()
            .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20"))
            .collect::<Vec<_>>()
            .join("/")
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, CatalogError> {
        let mut req = self.http.request(method, format!("{}/{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CatalogError::internal_from(format!("cannot reach the server at {}", self.base), e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CatalogError::internal_from("cannot read the server's answer", e))?;
        if status.is_success() {
            let text = if text.is_empty() { "null" } else { &text };
            return serde_json::from_str(text)
                .map_err(|e| CatalogError::internal_from("unexpected answer from the server", e));
        }
        let err: ErrorBody =
            serde_json::from_str(&text).unwrap_or(ErrorBody { error_code: String::new(), message: text });
        Err(match status {
            StatusCode::NOT_FOUND => CatalogError::NotFound { kind: "object", name: err.message },
            StatusCode::UNAUTHORIZED => CatalogError::Unauthenticated(err.message),
            StatusCode::CONFLICT => CatalogError::AlreadyExists { kind: "object", name: err.message },
            s if s.is_client_error() => CatalogError::InvalidArgument(err.message),
            _ => CatalogError::internal(format!("server error {status}: {}", err.message)),
        })
    }
}

/// What the admin API answers for an issued credential: `{"token": ...}`, `{"activation": ...}`
/// or neither.
#[derive(serde::Deserialize)]
struct IssuedAnswer {
    token: Option<IssuedToken>,
    activation: Option<IssuedActivation>,
}

impl From<IssuedAnswer> for Issued {
    fn from(a: IssuedAnswer) -> Issued {
        match (a.token, a.activation) {
            (Some(t), _) => Issued::Token(t),
            (None, Some(l)) => Issued::Activation(l),
            (None, None) => Issued::None,
        }
    }
}

#[async_trait]
impl Admin for RemoteAdmin {
    async fn create_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError> {
        self.call(Method::POST, "shares", Some(json!({"name": name, "comment": comment}))).await
    }
    async fn list_shares(&self) -> Result<Vec<ShareInfo>, CatalogError> {
        self.call(Method::GET, "shares", None).await
    }
    async fn show_share(&self, name: &str) -> Result<ShareInfo, CatalogError> {
        self.call(Method::GET, &Self::path(&["shares", name]), None).await
    }
    async fn comment_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError> {
        self.call(Method::PATCH, &Self::path(&["shares", name]), Some(json!({"comment": comment}))).await
    }
    async fn drop_share(&self, name: &str) -> Result<(), CatalogError> {
        self.call::<Value>(Method::DELETE, &Self::path(&["shares", name]), None).await.map(drop)
    }
    async fn add_table(&self, share: &str, table: TableEntry) -> Result<ShareInfo, CatalogError> {
        let body =
            serde_json::to_value(&table).map_err(|e| CatalogError::internal_from("cannot encode the request", e))?;
        self.call(Method::POST, &Self::path(&["shares", share, "tables"]), Some(body)).await
    }
    async fn import_tables(&self, share: &str, tables: Vec<TableEntry>) -> Result<usize, CatalogError> {
        #[derive(serde::Deserialize)]
        struct Imported {
            added: usize,
        }
        let body =
            serde_json::to_value(&tables).map_err(|e| CatalogError::internal_from("cannot encode the request", e))?;
        let imported: Imported =
            self.call(Method::POST, &Self::path(&["shares", share, "tables", "import"]), Some(body)).await?;
        Ok(imported.added)
    }
    async fn remove_table(&self, share: &str, schema: &str, table: &str) -> Result<ShareInfo, CatalogError> {
        self.call(Method::DELETE, &Self::path(&["shares", share, "tables", schema, table]), None).await
    }
    async fn set_ip_access_list(
        &self,
        name: &str,
        networks: Option<Vec<String>>,
    ) -> Result<RecipientInfo, CatalogError> {
        let path = Self::path(&["recipients", name, "ip-access-list"]);
        match networks {
            Some(networks) => self.call(Method::PUT, &path, Some(json!({ "networks": networks }))).await,
            None => self.call(Method::DELETE, &path, None).await,
        }
    }
    async fn set_properties(
        &self,
        name: &str,
        properties: std::collections::BTreeMap<String, String>,
    ) -> Result<RecipientInfo, CatalogError> {
        let body = serde_json::json!({ "properties": properties });
        self.call(Method::PUT, &Self::path(&["recipients", name, "properties"]), Some(body)).await
    }
    async fn set_rate_limit(&self, name: &str, limit: Option<RateLimit>) -> Result<RecipientInfo, CatalogError> {
        let path = Self::path(&["recipients", name, "rate-limit"]);
        match limit {
            Some(limit) => {
                let body = serde_json::to_value(limit)
                    .map_err(|e| CatalogError::internal_from("cannot encode the request", e))?;
                self.call(Method::PUT, &path, Some(body)).await
            }
            None => self.call(Method::DELETE, &path, None).await,
        }
    }
    async fn add_storage(&self, location: StorageLocation) -> Result<StorageLocation, CatalogError> {
        let body =
            serde_json::to_value(&location).map_err(|e| CatalogError::internal_from("cannot encode the request", e))?;
        self.call(Method::POST, "storage", Some(body)).await
    }
    async fn list_storage(&self) -> Result<Vec<StorageLocation>, CatalogError> {
        self.call(Method::GET, "storage", None).await
    }
    async fn show_storage(&self, name: &str) -> Result<StorageLocation, CatalogError> {
        self.call(Method::GET, &Self::path(&["storage", name]), None).await
    }
    async fn drop_storage(&self, name: &str) -> Result<(), CatalogError> {
        self.call::<Value>(Method::DELETE, &Self::path(&["storage", name]), None).await.map(drop)
    }
    async fn create_recipient(&self, recipient: NewRecipient) -> Result<(RecipientInfo, Issued), CatalogError> {
        #[derive(serde::Deserialize)]
        struct Created {
            recipient: RecipientInfo,
            #[serde(flatten)]
            issued: IssuedAnswer,
        }
        let body = serde_json::to_value(&recipient)
            .map_err(|e| CatalogError::internal_from("cannot encode the request", e))?;
        let created: Created = self.call(Method::POST, "recipients", Some(body)).await?;
        Ok((created.recipient, created.issued.into()))
    }
    async fn list_recipients(&self) -> Result<Vec<RecipientInfo>, CatalogError> {
        self.call(Method::GET, "recipients", None).await
    }
    async fn show_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError> {
        self.call(Method::GET, &Self::path(&["recipients", name]), None).await
    }
    async fn rotate_credential(
        &self,
        name: &str,
        grace_seconds: u64,
        next: CredentialRequest,
    ) -> Result<Issued, CatalogError> {
        let body = json!({"graceSeconds": grace_seconds, "credential": next});
        let answer: IssuedAnswer =
            self.call(Method::POST, &Self::path(&["recipients", name, "rotate"]), Some(body)).await?;
        Ok(answer.into())
    }
    async fn issue_activation(&self, name: &str, request: ActivationRequest) -> Result<IssuedActivation, CatalogError> {
        let body = serde_json::to_value(request).map_err(|e| CatalogError::internal_from("cannot encode", e))?;
        let path = Self::path(&["recipients", name, "activation-link"]);
        let answer: IssuedAnswer = self.call(Method::POST, &path, Some(body)).await?;
        answer.activation.ok_or_else(|| CatalogError::internal("the server answered without an activation link"))
    }
    async fn activation(&self, _secret: &str) -> Result<ActivationInfo, CatalogError> {
        Err(CatalogError::internal("activation links are opened on the server's activation page, not the admin API"))
    }
    async fn redeem_activation(&self, _secret: &str) -> Result<(ActivationInfo, IssuedToken), CatalogError> {
        Err(CatalogError::internal("activation links are redeemed on the server's activation page, not the admin API"))
    }
    async fn add_client_key(&self, name: &str, public_key: &str) -> Result<d2o_catalog::TokenInfo, CatalogError> {
        let body = json!({"publicKey": public_key});
        self.call(Method::POST, &Self::path(&["recipients", name, "client-keys"]), Some(body)).await
    }
    async fn add_federation_policy(
        &self,
        name: &str,
        policy: NewFederationPolicy,
    ) -> Result<RecipientInfo, CatalogError> {
        let body = serde_json::to_value(policy).map_err(|e| CatalogError::internal_from("cannot encode", e))?;
        self.call(Method::POST, &Self::path(&["recipients", name, "federation-policies"]), Some(body)).await
    }
    async fn remove_federation_policy(&self, name: &str, policy_id: &str) -> Result<RecipientInfo, CatalogError> {
        self.call(Method::DELETE, &Self::path(&["recipients", name, "federation-policies", policy_id]), None).await
    }
    async fn revoke_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError> {
        self.call(Method::POST, &Self::path(&["recipients", name, "revoke"]), None).await
    }
    async fn drop_recipient(&self, name: &str) -> Result<(), CatalogError> {
        self.call::<Value>(Method::DELETE, &Self::path(&["recipients", name]), None).await.map(drop)
    }
    async fn grant(&self, share: &str, recipient: &str) -> Result<(), CatalogError> {
        self.call::<Value>(Method::PUT, &Self::path(&["shares", share, "recipients", recipient]), None).await.map(drop)
    }
    async fn revoke_grant(&self, share: &str, recipient: &str) -> Result<(), CatalogError> {
        self.call::<Value>(Method::DELETE, &Self::path(&["shares", share, "recipients", recipient]), None)
            .await
            .map(drop)
    }
    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, CatalogError> {
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [("recipient", &f.principal), ("share", &f.share), ("table", &f.table), ("action", &f.action)]
            {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            let numbers = [
                ("since", f.since_ms),
                ("until", f.until_ms),
                ("minStatus", f.min_status.map(i64::from)),
                ("maxStatus", f.max_status.map(i64::from)),
                ("limit", f.limit.map(i64::from)),
                ("offset", f.offset.map(i64::from)),
            ];
            for (k, v) in numbers {
                if let Some(v) = v {
                    q.append_pair(k, &v.to_string());
                }
            }
            q.finish()
        };
        self.call(Method::GET, &format!("audit?{query}"), None).await
    }
    async fn import(
        &self,
        spec: &d2o_catalog::ImportSpec,
        dry_run: bool,
    ) -> Result<d2o_catalog::ImportPlan, CatalogError> {
        let body =
            serde_json::to_value(spec).map_err(|e| CatalogError::internal_from("cannot encode the request", e))?;
        self.call(Method::POST, &format!("import?dryRun={dry_run}"), Some(body)).await
    }
    async fn prune_audit(&self, before_ms: i64, batch: u32) -> Result<u64, CatalogError> {
        let answer: Value =
            self.call(Method::POST, &format!("audit/prune?before={before_ms}&batch={batch}"), None).await?;
        Ok(answer["deleted"].as_u64().unwrap_or_default())
    }
    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsagePoint>, CatalogError> {
        let query = {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("by", if q.by == UsageBy::Table { "table" } else { "recipient" });
            for (k, v) in [("since", q.since_ms), ("until", q.until_ms), ("bucketMs", q.bucket_ms)] {
                query.append_pair(k, &v.to_string());
            }
            for (k, v) in [("recipient", &q.principal), ("share", &q.share)] {
                if let Some(v) = v {
                    query.append_pair(k, v);
                }
            }
            query.finish()
        };
        self.call(Method::GET, &format!("usage?{query}"), None).await
    }
    async fn append_audit(&self, _event: &AuditEvent) -> Result<(), CatalogError> {
        // The server records its own admin actions.
        Ok(())
    }
}

/// The catalog contract through a live server's admin API: the same suite the catalog crate
/// runs on SQLite and PostgreSQL, here with this client as the provider's side. (Appending
/// audit events directly is not part of the API, so the audit-log cases do not apply.)
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, unreachable_pub, dead_code)]
mod contract_tests {
    use std::sync::Arc;

    use d2o_catalog::SqlCatalog;
    use d2o_server::config::ServerConfig;

    use super::RemoteAdmin;
    use crate::catalog_contract as contract;

    const TOKEN: &str = "remote-admin-contract-token-0123456789";

    /// A server on 127.0.0.1:0 over a new SQLite catalog, and the contract's subject: this
    /// client on the admin side, the server's catalog on the recipient side, and a second
    /// connection for changes made elsewhere.
    async fn subject() -> (contract::Subject, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d2o.db");
        let catalog = SqlCatalog::connect(path.to_str().expect("utf-8")).await.expect("catalog");
        let (config, _) = ServerConfig::parse("version: 1", std::path::Path::new("/")).expect("config");
        let mut state = d2o_server::AppState::from_config(&config, Arc::new(catalog.clone())).expect("state");
        state.admin = Some(Arc::new(catalog.clone()));
        Arc::make_mut(&mut state.settings).admin_token = Some(d2o_server::Secret::new(TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(d2o_server::serve(listener, state, std::future::pending()));
        let elsewhere = SqlCatalog::connect(path.to_str().expect("utf-8")).await.expect("a second handle");
        let subject = contract::Subject {
            catalog: Arc::new(catalog),
            admin: Arc::new(RemoteAdmin::new(&format!("http://{addr}"), TOKEN.to_owned())),
            elsewhere: Arc::new(elsewhere),
        };
        (subject, dir)
    }

    macro_rules! remote_contract {
        ($($name:ident),* $(,)?) => {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let (s, _dir) = subject().await;
                contract::$name(&s).await;
            })*
        };
    }

    remote_contract!(
        shares_and_tables,
        bad_input_changes_nothing,
        tokens_authenticate_rotate_and_revoke,
        recipient_expiry,
        grants_decide_visibility,
        pagination_covers_everything_once,
        concurrent_changes,
        changes_made_elsewhere_are_seen_by_the_next_request,
        concurrent_reads_see_committed_changes,
        import_tables_is_atomic_and_idempotent,
        file_access_follows_grants_and_revocation,
        activation_links_create_the_credential_once,
        concurrent_redemptions_succeed_once,
        concurrent_activation_links_leave_one_usable,
        new_activation_links_replace_unused_ones,
        rotation_covers_every_kind_of_credential,
        federation_policies_act_for_their_recipient,
        unknown_activation_links_are_not_found,
        private_key_clients_hold_only_a_public_key,
        recipient_properties,
        import_keeps_ids_and_tokens_and_is_repeatable,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_follow_the_contract() {
        let (s, _dir) = subject().await;
        let token = contract::build_read_tree(s.admin.as_ref()).await;
        contract::reads_follow_the_contract(s.catalog.as_ref(), &token).await;
    }
}
