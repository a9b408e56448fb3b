//! Group commit for audit events.
//!
//! Every request waits until its event is stored, but concurrent requests share one
//! transaction: a background task takes whatever events are queued, inserts them together and
//! answers each waiter with the outcome. Under load this turns one write transaction per request
//! into one per batch, which is what keeps auditing from dominating a request.

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, db_err, placeholders};
use crate::{AuditEvent, CatalogError};

type Reply = oneshot::Sender<Result<(), CatalogError>>;

/// The most events written in one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the background writer; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AuditWriter {
    queue: mpsc::Sender<(AuditEvent, Reply)>,
}

impl AuditWriter {
    /// Starts the writer on the current runtime.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> AuditWriter {
        let (queue, rx) = mpsc::channel(4096);
        tokio::spawn(run(pool, backend, rx));
        AuditWriter { queue }
    }

    /// Stores one event; returns once it is committed (or failed).
    pub(crate) async fn append(&self, event: AuditEvent) -> Result<(), CatalogError> {
        let (reply, done) = oneshot::channel();
        let stopped = || CatalogError::Internal("the audit writer has stopped".into());
        self.queue.send((event, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn run(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<(AuditEvent, Reply)>) {
    let sql = placeholders(
        "INSERT INTO audit_events (id, time_ms, principal, action, share_name, schema_name, table_name, version, files,
         bytes, status, client_ip, user_agent, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        backend,
    );
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let result = write(&pool, &sql, &batch).await;
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| CatalogError::Internal(e.clone())));
        }
    }
}

async fn write(pool: &AnyPool, sql: &str, batch: &[(AuditEvent, Reply)]) -> Result<(), String> {
    let go = async {
        let mut tx = pool.begin().await.map_err(db_err)?;
        for (e, _) in batch {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(e.time_ms)
                .bind(&e.principal)
                .bind(&e.action)
                .bind(&e.share)
                .bind(&e.schema)
                .bind(&e.table)
                .bind(e.version)
                .bind(e.files)
                .bind(e.bytes)
                .bind(i64::from(e.status))
                .bind(&e.client_ip)
                .bind(&e.user_agent)
                .bind(&e.request_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    };
    go.await.map_err(|e: CatalogError| e.to_string())
}
