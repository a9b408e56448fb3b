//! Group execution: many concurrent callers, one database round trip.
//!
//! A [`Batcher`] owns a background task. Callers submit an item and wait; the task takes every
//! item queued so far, runs one operation over the whole batch, and answers each caller with
//! its outcome. An item is always handled by an operation that *starts after it was submitted*,
//! which is what lets callers rely on the result reflecting the database as of their call.
//!
//! The catalog runs one: [`database_task`], which stores audit events and reads the catalog
//! generation for all concurrent requests together.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, db_err, placeholders};
use crate::{AuditEvent, CatalogError};

type Reply<R> = oneshot::Sender<Result<R, CatalogError>>;

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
    /// `max_batch` items, in submission order); its outcome is every item's outcome.
    pub(crate) fn start<F, Fut>(max_batch: usize, mut run: F) -> Batcher<T, R>
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, CatalogError>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<(T, Reply<R>)>(4096);
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(max_batch);
            let mut replies = Vec::with_capacity(max_batch);
            while let Some((item, reply)) = rx.recv().await {
                items.push(item);
                replies.push(reply);
                while items.len() < max_batch {
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
                        Err(e) => Err(e.clone()),
                    });
                }
            }
        });
        Batcher { queue }
    }

    /// Submits one item; returns the outcome of the batch that handled it.
    pub(crate) async fn submit(&self, item: T) -> Result<R, CatalogError> {
        let (reply, done) = oneshot::channel();
        let stopped = || CatalogError::internal("the catalog's background task has stopped");
        self.queue.send((item, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

/// The generation read by the latest statement of the database task, and when that statement
/// started.
#[derive(Debug, Default)]
pub(crate) struct RecentGeneration(Mutex<Option<(Instant, i64)>>);

impl RecentGeneration {
    /// The generation read by a statement that started at most `max_age` ago.
    pub(crate) fn within(&self, max_age: Duration) -> Option<i64> {
        let (started, generation) = (*self.0.lock().ok()?)?;
        (started.elapsed() <= max_age).then_some(generation)
    }

    fn set(&self, started: Instant, generation: i64) {
        if let Ok(mut recent) = self.0.lock() {
            // Statements run one at a time, so a later start is a newer read.
            if recent.is_none_or(|(at, _)| at <= started) {
                *recent = Some((started, generation));
            }
        }
    }
}

/// An audit event on its way to the database: `d2o_audit_queue_depth` counts those submitted
/// and not yet stored (waiting in the queue or in the statement being run). A guard, so that
/// the gauge never drifts, even when a caller stops waiting (its event then leaves the count
/// early).
pub(crate) struct QueuedAuditEvent(metrics::Gauge);

impl QueuedAuditEvent {
    pub(crate) fn new() -> QueuedAuditEvent {
        let depth = metrics::gauge!("d2o_audit_queue_depth");
        depth.increment(1.0);
        QueuedAuditEvent(depth)
    }
}

impl Drop for QueuedAuditEvent {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What the catalog's database task is asked for.
#[derive(Debug)]
pub(crate) enum Io {
    /// Store an audit event.
    Record(Box<AuditEvent>),
    /// Read the catalog generation.
    Generation,
}

/// The most requests served by one statement; an `INSERT` then carries at most this many
/// events (15 parameters each, well under the databases' limits).
const MAX_BATCH: usize = 64;

/// The catalog's database task. Each batch is one statement: a multi-row `INSERT` of the
/// queued audit events (atomic on its own) that also returns the catalog generation, or, with no
/// events queued, a `SELECT` of the generation. Every item's outcome is the generation the
/// statement read. Under load, a request thus costs the database a share of one statement
/// for its generation check and a share of another for its event. Each generation read is
/// also published in `recent`.
pub(crate) fn database_task(pool: AnyPool, backend: Backend, recent: Arc<RecentGeneration>) -> Batcher<Io, i64> {
    let row = format!("({})", ["?"; 15].join(", "));
    // inserts[n - 1] inserts n events.
    let inserts: Arc<[Arc<str>]> = (1..=MAX_BATCH)
        .map(|n| {
            let sql = format!(
                "INSERT INTO audit_events (id, time_ms, principal, action, share_name, schema_name, table_name, version,
                 files, bytes, status, client_ip, user_agent, request_id, detail) VALUES {}
                 RETURNING (SELECT generation FROM catalog_generation WHERE id = 1) AS generation",
                vec![row.as_str(); n].join(", ")
            );
            placeholders(&sql, backend).into()
        })
        .collect();
    Batcher::start(MAX_BATCH, move |batch: Vec<Io>| {
        let (pool, inserts, recent) = (pool.clone(), inserts.clone(), recent.clone());
        async move {
            let started = Instant::now();
            let generation = run_batch(&pool, &inserts, &batch).await?;
            recent.set(started, generation);
            Ok(generation)
        }
    })
}

/// One statement for a batch; returns the generation it read.
async fn run_batch(pool: &AnyPool, inserts: &[Arc<str>], batch: &[Io]) -> Result<i64, CatalogError> {
    let events: Vec<&AuditEvent> = batch
        .iter()
        .filter_map(|io| match io {
            Io::Record(e) => Some(e.as_ref()),
            Io::Generation => None,
        })
        .collect();
    if events.is_empty() {
        return sqlx::query_scalar("SELECT generation FROM catalog_generation WHERE id = 1")
            .fetch_one(pool)
            .await
            .map_err(db_err);
    }
    let mut insert = sqlx::query_scalar(sqlx::AssertSqlSafe(inserts[events.len() - 1].clone()));
    for e in events {
        insert = insert
            // Time-ordered ids keep the primary-key index append-only.
            .bind(uuid::Uuid::now_v7().to_string())
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
            .bind(&e.detail);
    }
    // Every row, not just the first: SQLite runs its automatic checkpoint only when a statement
    // runs to its end, and a statement reset after its first row left the journal growing.
    let generations: Vec<i64> = insert.fetch_all(pool).await.map_err(db_err)?;
    generations.first().copied().ok_or_else(|| CatalogError::internal("storing audit events returned no row"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_run_one_at_a_time_and_answer_each_item_with_its_own_batch() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let batcher = {
            let (running, most) = (running.clone(), most.clone());
            Batcher::start(4, move |items: Vec<usize>| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(items)
                }
            })
        };
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (i, batcher.submit(i).await) })
            })
            .collect();
        let mut batches = std::collections::HashSet::new();
        for call in calls {
            let (i, outcome) = call.await.expect("the caller ran");
            let batch = outcome.expect("the batch succeeded");
            assert!(batch.contains(&i) && batch.len() <= 4, "item {i} was answered with batch {batch:?}");
            batches.insert(batch);
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "batches overlapped");
        assert!(batches.len() < 40, "40 items queued together never shared a batch");
    }
}
