//! Audit retention: events older than the configured number of days are deleted, in small
//! batches, at start and then every hour, so that the log stops growing without a pause in
//! the requests that record into it. Every replica may run it; deleting twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use d2o_catalog::{Admin, CatalogError};

/// Events deleted per statement.
const BATCH: u32 = 5_000;
/// The pause between two batches, in which requests record their events.
const BREATHER: Duration = Duration::from_millis(20);
/// How often the log is pruned.
const EVERY: Duration = Duration::from_secs(3600);

/// Deletes every event older than `before_ms`, `batch` at a time; returns how many went.
pub async fn prune(admin: &dyn Admin, before_ms: i64, batch: u32) -> Result<u64, CatalogError> {
    let mut total = 0;
    loop {
        let deleted = admin.prune_audit(before_ms, batch).await?;
        total += deleted;
        if deleted < u64::from(batch) {
            return Ok(total);
        }
        tokio::time::sleep(BREATHER).await;
    }
}

/// Prunes events older than `keep` now and then every hour, until the task is dropped.
pub(crate) async fn run(admin: Arc<dyn Admin>, keep: Duration) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let before_ms = chrono::Utc::now().timestamp_millis() - keep.as_millis() as i64;
        match prune(admin.as_ref(), before_ms, BATCH).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("d2o_audit_events_pruned_total").increment(n);
                tracing::info!(deleted = n, keep_days = keep.as_secs() / 86_400, "audit log pruned");
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
        }
    }
}
