//! [`AuditedAdmin`]: the one place admin actions are recorded, whether they come through the
//! server's admin API or the `d2o` commands working on the catalog directly.

use std::sync::Arc;

use async_trait::async_trait;
use d2o_catalog::{
    ActivationInfo, ActivationRequest, Admin, AuditEvent, AuditFilter, CatalogError, CredentialRequest, Issued,
    IssuedActivation, IssuedToken, NewFederationPolicy, NewRecipient, RateLimit, RecipientInfo, ShareInfo,
    StorageLocation, TableEntry, UsagePoint, UsageQuery,
};

use crate::ApiError;

/// Who acts, and from where: what each recorded event carries besides the action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminContext {
    /// `admin` for the admin token (and the CLI on the catalog itself).
    pub principal: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// An [`Admin`] that records every call as an audit event (`admin.share.create`, ...) with its
/// outcome: the HTTP status the error maps to, 200 on success. A call whose event cannot be
/// written fails, even when its change was made, so that no change goes unrecorded silently.
pub struct AuditedAdmin {
    inner: Arc<dyn Admin>,
    context: AdminContext,
}

/// What an event names besides its action.
#[derive(Default)]
struct Names<'a> {
    share: Option<&'a str>,
    schema: Option<&'a str>,
    table: Option<&'a str>,
    detail: Option<String>,
}

fn share(share: &str) -> Names<'_> {
    Names { share: Some(share), ..Names::default() }
}

fn storage(name: &str) -> Names<'_> {
    Names { detail: Some(format!("storage location {name}")), ..Names::default() }
}

fn recipient(name: &str) -> Names<'_> {
    Names { detail: Some(format!("recipient {name}")), ..Names::default() }
}

/// A credential request in words, for an event's detail.
fn requested(request: &CredentialRequest) -> String {
    match request {
        CredentialRequest::Direct { kind } => format!("{} issued directly", kind.as_str()),
        CredentialRequest::Activation(a) => {
            format!("activation link for {} valid {} s", a.kind.as_str(), a.lifetime_secs)
        }
        CredentialRequest::None => "no credential".to_owned(),
    }
}

impl AuditedAdmin {
    /// The admin without recording: for reads that are not actions (the console's pages).
    pub(crate) fn inner(&self) -> &Arc<dyn Admin> {
        &self.inner
    }

    pub fn new(inner: Arc<dyn Admin>, context: AdminContext) -> AuditedAdmin {
        AuditedAdmin { inner, context }
    }

    async fn record<T>(
        &self,
        action: &str,
        names: Names<'_>,
        outcome: Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let (status, detail) = match &outcome {
            Ok(_) => (200, names.detail),
            Err(e) => {
                let error = ApiError::from(e.clone());
                let detail =
                    names.detail.map_or_else(|| error.public_message(), |d| format!("{d}: {}", error.public_message()));
                (error.status().as_u16(), Some(detail))
            }
        };
        let event = AuditEvent {
            time_ms: chrono::Utc::now().timestamp_millis(),
            principal: self.context.principal.clone(),
            action: format!("admin.{action}"),
            share: names.share.map(str::to_owned),
            schema: names.schema.map(str::to_owned),
            table: names.table.map(str::to_owned),
            status,
            client_ip: self.context.client_ip.clone(),
            user_agent: self.context.user_agent.clone(),
            request_id: self.context.request_id.clone(),
            detail,
            ..AuditEvent::default()
        };
        if let Err(e) = self.inner.append_audit(&event).await {
            let message = format!(
                "{action}: {} but its audit event could not be written",
                if outcome.is_ok() { "done" } else { "refused" }
            );
            return Err(CatalogError::internal_from(message, e));
        }
        outcome
    }
}

#[async_trait]
impl Admin for AuditedAdmin {
    async fn create_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError> {
        self.record("share.create", share(name), self.inner.create_share(name, comment).await).await
    }

    async fn list_shares(&self) -> Result<Vec<ShareInfo>, CatalogError> {
        self.record("share.list", Names::default(), self.inner.list_shares().await).await
    }

    async fn show_share(&self, name: &str) -> Result<ShareInfo, CatalogError> {
        self.record("share.show", share(name), self.inner.show_share(name).await).await
    }

    async fn comment_share(&self, name: &str, comment: Option<&str>) -> Result<ShareInfo, CatalogError> {
        self.record("share.comment", share(name), self.inner.comment_share(name, comment).await).await
    }

    async fn drop_share(&self, name: &str) -> Result<(), CatalogError> {
        self.record("share.drop", share(name), self.inner.drop_share(name).await).await
    }

    async fn add_table(&self, name: &str, table: TableEntry) -> Result<ShareInfo, CatalogError> {
        let (schema, t) = (table.schema.clone(), table.name.clone());
        let names = Names { schema: Some(&schema), table: Some(&t), ..share(name) };
        self.record("share.add_table", names, self.inner.add_table(name, table).await).await
    }

    async fn import_tables(&self, name: &str, tables: Vec<TableEntry>) -> Result<usize, CatalogError> {
        let count = tables.len();
        let outcome = self.inner.import_tables(name, tables).await;
        let names = Names { detail: Some(format!("{count} tables offered")), ..share(name) };
        self.record("share.import_tables", names, outcome).await
    }

    async fn remove_table(&self, name: &str, schema: &str, table: &str) -> Result<ShareInfo, CatalogError> {
        let names = Names { schema: Some(schema), table: Some(table), ..share(name) };
        self.record("share.remove_table", names, self.inner.remove_table(name, schema, table).await).await
    }

    async fn create_recipient(&self, new: NewRecipient) -> Result<(RecipientInfo, Issued), CatalogError> {
        let names = Names {
            detail: Some(format!("recipient {}, {}", new.name, requested(&new.credential))),
            ..Names::default()
        };
        self.record("recipient.create", names, self.inner.create_recipient(new).await).await
    }

    async fn list_recipients(&self) -> Result<Vec<RecipientInfo>, CatalogError> {
        self.record("recipient.list", Names::default(), self.inner.list_recipients().await).await
    }

    async fn show_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError> {
        self.record("recipient.show", recipient(name), self.inner.show_recipient(name).await).await
    }

    async fn rotate_credential(
        &self,
        name: &str,
        grace_seconds: u64,
        next: CredentialRequest,
    ) -> Result<Issued, CatalogError> {
        let detail = format!("recipient {name}, grace {grace_seconds} s, {}", requested(&next));
        let names = Names { detail: Some(detail), ..Names::default() };
        self.record("recipient.rotate", names, self.inner.rotate_credential(name, grace_seconds, next).await).await
    }

    async fn issue_activation(&self, name: &str, request: ActivationRequest) -> Result<IssuedActivation, CatalogError> {
        let detail = format!("recipient {name}, {}", requested(&CredentialRequest::Activation(request)));
        let names = Names { detail: Some(detail), ..Names::default() };
        self.record("recipient.activation_link", names, self.inner.issue_activation(name, request).await).await
    }

    /// Opening and redeeming a link are the recipient's actions, recorded by the server's
    /// audit layer (`activation.view`, `activation.download`), not admin actions.
    async fn activation(&self, secret: &str) -> Result<ActivationInfo, CatalogError> {
        self.inner.activation(secret).await
    }

    async fn redeem_activation(&self, secret: &str) -> Result<(ActivationInfo, IssuedToken), CatalogError> {
        self.inner.redeem_activation(secret).await
    }

    async fn add_client_key(&self, name: &str, public_key: &str) -> Result<d2o_catalog::TokenInfo, CatalogError> {
        self.record("recipient.client_key", recipient(name), self.inner.add_client_key(name, public_key).await).await
    }

    async fn add_federation_policy(
        &self,
        name: &str,
        policy: NewFederationPolicy,
    ) -> Result<RecipientInfo, CatalogError> {
        let detail =
            format!("recipient {name}, issuer {}, {} = {}", policy.issuer, policy.subject_claim, policy.subject);
        let names = Names { detail: Some(detail), ..Names::default() };
        self.record("recipient.federation.add", names, self.inner.add_federation_policy(name, policy).await).await
    }

    async fn remove_federation_policy(&self, name: &str, policy_id: &str) -> Result<RecipientInfo, CatalogError> {
        let names = Names { detail: Some(format!("recipient {name}, policy {policy_id}")), ..Names::default() };
        let outcome = self.inner.remove_federation_policy(name, policy_id).await;
        self.record("recipient.federation.remove", names, outcome).await
    }

    async fn set_ip_access_list(
        &self,
        name: &str,
        networks: Option<Vec<String>>,
    ) -> Result<RecipientInfo, CatalogError> {
        let detail = match &networks {
            Some(list) => format!("recipient {name}, allow {}", list.join(" ")),
            None => format!("recipient {name}, cleared"),
        };
        let names = Names { detail: Some(detail), ..Names::default() };
        self.record("recipient.ip_access_list", names, self.inner.set_ip_access_list(name, networks).await).await
    }

    async fn set_properties(
        &self,
        name: &str,
        properties: std::collections::BTreeMap<String, String>,
    ) -> Result<RecipientInfo, CatalogError> {
        let keys = properties.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        let names = Names { detail: Some(format!("recipient {name}, keys: {keys}")), ..Names::default() };
        self.record("recipient.properties", names, self.inner.set_properties(name, properties).await).await
    }

    async fn set_rate_limit(&self, name: &str, limit: Option<RateLimit>) -> Result<RecipientInfo, CatalogError> {
        let detail = match limit {
            Some(l) => format!("recipient {name}, {} burst {}", l.rate, l.burst),
            None => format!("recipient {name}, cleared"),
        };
        let names = Names { detail: Some(detail), ..Names::default() };
        self.record("recipient.rate_limit", names, self.inner.set_rate_limit(name, limit).await).await
    }

    async fn revoke_recipient(&self, name: &str) -> Result<RecipientInfo, CatalogError> {
        self.record("recipient.revoke", recipient(name), self.inner.revoke_recipient(name).await).await
    }

    async fn drop_recipient(&self, name: &str) -> Result<(), CatalogError> {
        self.record("recipient.drop", recipient(name), self.inner.drop_recipient(name).await).await
    }

    async fn grant(&self, name: &str, to: &str) -> Result<(), CatalogError> {
        let names = Names { detail: Some(format!("recipient {to}")), ..share(name) };
        self.record("grant", names, self.inner.grant(name, to).await).await
    }

    async fn revoke_grant(&self, name: &str, from: &str) -> Result<(), CatalogError> {
        let names = Names { detail: Some(format!("recipient {from}")), ..share(name) };
        self.record("revoke_grant", names, self.inner.revoke_grant(name, from).await).await
    }

    async fn add_storage(&self, location: StorageLocation) -> Result<StorageLocation, CatalogError> {
        let name = location.name.clone();
        self.record("storage.add", storage(&name), self.inner.add_storage(location).await).await
    }

    async fn list_storage(&self) -> Result<Vec<StorageLocation>, CatalogError> {
        self.record("storage.list", Names::default(), self.inner.list_storage().await).await
    }

    async fn show_storage(&self, name: &str) -> Result<StorageLocation, CatalogError> {
        self.record("storage.show", storage(name), self.inner.show_storage(name).await).await
    }

    async fn drop_storage(&self, name: &str) -> Result<(), CatalogError> {
        self.record("storage.drop", storage(name), self.inner.drop_storage(name).await).await
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, CatalogError> {
        self.record("audit", Names::default(), self.inner.audit(filter).await).await
    }

    async fn import(
        &self,
        spec: &d2o_catalog::ImportSpec,
        dry_run: bool,
    ) -> Result<d2o_catalog::ImportPlan, CatalogError> {
        let outcome = self.inner.import(spec, dry_run).await;
        if dry_run {
            return outcome;
        }
        let changes = outcome.as_ref().map_or(0, |plan| plan.changes.len());
        let detail =
            format!("{} shares, {changes} changes{}", spec.shares.len(), if spec.prune { ", pruned" } else { "" });
        self.record("catalog.import", Names { detail: Some(detail), ..Names::default() }, outcome).await
    }

    async fn prune_audit(&self, before_ms: i64, batch: u32) -> Result<u64, CatalogError> {
        let outcome = self.inner.prune_audit(before_ms, batch).await;
        let when = chrono::DateTime::from_timestamp_millis(before_ms)
            .map_or_else(|| before_ms.to_string(), |t| t.to_rfc3339());
        let detail = format!(
            "before {when}: {}",
            outcome.as_ref().map_or_else(|_| "failed".to_owned(), |n| format!("{n} events"))
        );
        self.record("audit.prune", Names { detail: Some(detail), ..Names::default() }, outcome).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsagePoint>, CatalogError> {
        self.record("usage", Names::default(), self.inner.usage(query).await).await
    }

    /// Appending an event is recording, not an action to record.
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), CatalogError> {
        self.inner.append_audit(event).await
    }
}
