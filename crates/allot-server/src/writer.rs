//! Group commit of the rows evaluation writes: sticky assignments and logged exposures.
//!
//! A request hands its rows to a [`Writer`] and awaits the outcome. One task per kind of row
//! takes everything queued (whole requests, up to [`BATCH`] rows) and writes it with one
//! multi-row insert, the store's uniqueness constraints doing the deduplication. N concurrent
//! requests then cost one round trip instead of N; under load batches grow by themselves, and an
//! idle node writes a request's rows at once (no timer, no added latency).
//!
//! A request that is cancelled after handing its rows over does not lose them: they are written
//! with the batch. The queue is bounded ([`QUEUE`] requests), so a slow database slows requests
//! down rather than growing memory.

use crate::error::ApiError;
use crate::App;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// Most rows one batch takes (whole requests are never split, so a batch may exceed it by one
/// request's rows).
pub(crate) const BATCH: usize = 1000;

/// Most requests waiting for a batch.
pub(crate) const QUEUE: usize = 4096;

/// Where a request's rows went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Written to the database.
    Written,
    /// Kept in this node's memory because the database cannot be reached: written when it is
    /// back, lost if the node stops first (the client is told: `X-Allot-Buffered`).
    Buffered,
}

type Reply = oneshot::Sender<Result<Stored, String>>;

/// What a writer does with one batch: write it (or buffer it when the database cannot be
/// reached); `Err` is the failure of the whole batch.
pub(crate) type WriteFn<T> =
    fn(Arc<App>, Arc<Vec<T>>) -> Pin<Box<dyn Future<Output = Result<Stored, String>> + Send + 'static>>;

/// The sending side of one group-commit task.
pub(crate) struct Writer<T> {
    tx: mpsc::Sender<(Vec<T>, Reply)>,
}

impl<T: Clone + Send + Sync + 'static> Writer<T> {
    /// Starts the task. It stops when the writer (that is, the app) is dropped.
    ///
    /// When a batch of several requests fails (not for want of the database: then `write`
    /// buffers it), each request's rows are written again on their own, so that a row one request
    /// got wrong fails that request only, and the others' rows are not lost.
    pub(crate) fn spawn(app: Weak<App>, write: WriteFn<T>) -> Writer<T> {
        let (tx, mut rx) = mpsc::channel::<(Vec<T>, Reply)>(QUEUE);
        tokio::spawn(async move {
            while let Some((mut rows, reply)) = rx.recv().await {
                // Where each request's rows end in `rows`, and its reply.
                let mut replies = vec![(rows.len(), reply)];
                while rows.len() < BATCH {
                    match rx.try_recv() {
                        Ok((more, reply)) => {
                            rows.extend(more);
                            replies.push((rows.len(), reply));
                        }
                        Err(_) => break,
                    }
                }
                let Some(app) = app.upgrade() else { return };
                let rows = Arc::new(rows);
                let outcome = write(app.clone(), rows.clone()).await;
                match outcome {
                    Err(e) if replies.len() > 1 => {
                        tracing::warn!(error = %e, requests = replies.len(), rows = rows.len(),
                            "a batch write failed: writing its requests one by one");
                        let mut start = 0;
                        for (end, reply) in replies {
                            let own = Arc::new(rows[start..end].to_vec());
                            start = end;
                            let n = own.len();
                            let r = write(app.clone(), own).await;
                            if let Err(e) = &r {
                                tracing::error!(error = %e, rows = n, "a request's rows could not be written");
                            }
                            let _ = reply.send(r);
                        }
                    }
                    outcome => {
                        if let Err(e) = &outcome {
                            tracing::error!(error = %e, rows = rows.len(), "a request's rows could not be written");
                        }
                        for (_, reply) in replies {
                            let _ = reply.send(outcome.clone());
                        }
                    }
                }
            }
        });
        Writer { tx }
    }

    /// Requests waiting for a batch (not counting the one being written).
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Hands `rows` to the task and waits until their batch is written (or buffered).
    pub(crate) async fn submit(&self, rows: Vec<T>) -> Result<Stored, ApiError> {
        if rows.is_empty() {
            return Ok(Stored::Written);
        }
        let (tx, rx) = oneshot::channel();
        self.tx.send((rows, tx)).await.map_err(|_| ApiError::Internal("the store writer has stopped".into()))?;
        rx.await.map_err(|_| ApiError::Internal("the store writer has stopped".into()))?.map_err(ApiError::Internal)
    }
}

/// Rows kept in memory while the database cannot be reached, oldest first, up to a bound beyond
/// which new rows are dropped (and the caller counts them).
#[derive(Debug)]
pub(crate) struct Pending<T> {
    rows: std::sync::Mutex<std::collections::VecDeque<T>>,
    cap: usize,
}

impl<T: Clone> Pending<T> {
    pub(crate) fn new(cap: usize) -> Pending<T> {
        Pending { rows: std::sync::Mutex::new(std::collections::VecDeque::new()), cap }
    }

    /// Rows waiting.
    pub(crate) fn len(&self) -> usize {
        self.rows.lock().map(|p| p.len()).unwrap_or_else(|_| {
            crate::metrics::internal_error(crate::metrics::Site::Lock, &"the buffered rows lock is poisoned");
            0
        })
    }

    /// Keeps what fits of `rows`; returns how many did not.
    pub(crate) fn push(&self, rows: &[T]) -> Result<usize, ApiError> {
        let mut p = self.rows.lock().map_err(|_| ApiError::Internal("write buffer poisoned".into()))?;
        let room = self.cap.saturating_sub(p.len());
        p.extend(rows.iter().take(room).cloned());
        Ok(rows.len().saturating_sub(room))
    }

    /// The oldest `n` rows (left in place).
    pub(crate) fn oldest(&self, n: usize) -> Result<Vec<T>, ApiError> {
        let p = self.rows.lock().map_err(|_| ApiError::Internal("write buffer poisoned".into()))?;
        Ok(p.iter().take(n).cloned().collect())
    }

    /// Forgets the oldest `n` rows (after they were written).
    pub(crate) fn forget(&self, n: usize) -> Result<(), ApiError> {
        let mut p = self.rows.lock().map_err(|_| ApiError::Internal("write buffer poisoned".into()))?;
        let n = n.min(p.len());
        p.drain(..n);
        Ok(())
    }
}
