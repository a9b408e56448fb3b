//! Group execution: many concurrent callers, one database round trip.
//!
//! A [`Batcher`] owns a background task. Callers submit an item and wait; the task takes every
//! item queued so far, runs one operation over the whole batch, and answers each caller with
//! its outcome. An item is always handled by an operation that *starts after it was submitted*,
//! which is what lets callers rely on the result reflecting the database as of their call.
//!
//! Two uses: the audit log (one write transaction per batch of events instead of one per
//! request) and the catalog's generation check (one `SELECT` per batch of requests).

use std::future::Future;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, db_err, placeholders};
use crate::{AuditEvent, CatalogError};

type Reply<R> = oneshot::Sender<Result<R, CatalogError>>;

/// The most items handled by one operation.
const MAX_BATCH: usize = 256;

/// A handle to a background batch runner; cheap to clone.
#[derive(Debug)]
pub(crate) struct Batcher<T, R> {
    queue: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher { queue: self.queue.clone() }
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> Batcher<T, R> {
    /// Starts the runner on the current runtime. `run` gets each batch (never empty, at most
    /// [`MAX_BATCH`] items, in submission order); its outcome is every item's outcome.
    pub(crate) fn start<F, Fut>(mut run: F) -> Batcher<T, R>
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, CatalogError>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<(T, Reply<R>)>(4096);
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(MAX_BATCH);
            let mut replies = Vec::with_capacity(MAX_BATCH);
            while let Some((item, reply)) = rx.recv().await {
                items.push(item);
                replies.push(reply);
                while items.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((item, reply)) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let outcome = run(std::mem::take(&mut items)).await;
                for reply in replies.drain(..) {
                    let _ = reply.send(match &outcome {
                        Ok(r) => Ok(r.clone()),
                        Err(e) => Err(CatalogError::Internal(e.to_string())),
                    });
                }
            }
        });
        Batcher { queue }
    }

    /// Submits one item; returns the outcome of the batch that handled it.
    pub(crate) async fn submit(&self, item: T) -> Result<R, CatalogError> {
        let (reply, done) = oneshot::channel();
        let stopped = || CatalogError::Internal("the catalog's background task has stopped".into());
        self.queue.send((item, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

/// The most audit events inserted by one statement (14 parameters each, well under the
/// databases' limits).
const ROWS_PER_INSERT: usize = 64;

/// The audit writer: each batch of events is inserted in one transaction, by multi-row
/// `INSERT`s (one statement per [`ROWS_PER_INSERT`] events rather than one per event).
pub(crate) fn audit_writer(pool: AnyPool, backend: Backend) -> Batcher<AuditEvent, ()> {
    let row = format!("({})", ["?"; 14].join(", "));
    // statements[n - 1] inserts n rows.
    let statements: std::sync::Arc<[std::sync::Arc<str>]> = (1..=ROWS_PER_INSERT)
        .map(|n| {
            let sql = format!(
                "INSERT INTO audit_events (id, time_ms, principal, action, share_name, schema_name, table_name, version,
                 files, bytes, status, client_ip, user_agent, request_id) VALUES {}",
                vec![row.as_str(); n].join(", ")
            );
            placeholders(&sql, backend).into()
        })
        .collect();
    Batcher::start(move |events: Vec<AuditEvent>| {
        let (pool, statements) = (pool.clone(), statements.clone());
        async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            for chunk in events.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(statements[chunk.len() - 1].clone()));
                for e in chunk {
                    insert = insert
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
                        .bind(&e.request_id);
                }
                insert.execute(&mut *tx).await.map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)
        }
    })
}
