//! Batching of the store work evaluation does: reading sticky assignments, writing new ones and
//! logged exposures (group commit).
//!
//! A request hands its input to a [`Batcher`] and awaits its answer. One task per kind of work
//! takes everything queued (whole requests, up to [`BATCH`] rows or keys) and does it in one
//! statement: one multi-row insert for writes, the store's uniqueness constraints doing the
//! deduplication; one `SELECT` over all the requests' units for sticky reads. N concurrent
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

/// Most rows (or keys) one batch takes (whole requests are never split, so a batch may exceed it
/// by one request's rows).
pub const BATCH: usize = 1000;

/// Most requests waiting for a batch.
pub const QUEUE: usize = 4096;

/// What a batcher does with one batch: the requests' inputs in arrival order in, one answer per
/// request in the same order out.
pub(crate) type BatchFn<Req, Resp> = fn(Arc<App>, Vec<Req>) -> Pin<Box<dyn Future<Output = Vec<Resp>> + Send>>;

/// The sending side of one batching task: requests go in, each gets its own answer back.
pub(crate) struct Batcher<Req, Resp> {
    tx: mpsc::Sender<(Req, oneshot::Sender<Resp>)>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the task; `size` is what a request counts against [`BATCH`]. The task stops when
    /// the batcher (that is, the app) is dropped.
    pub(crate) fn spawn(app: Weak<App>, size: fn(&Req) -> usize, run: BatchFn<Req, Resp>) -> Batcher<Req, Resp> {
        let (tx, mut rx) = mpsc::channel::<(Req, oneshot::Sender<Resp>)>(QUEUE);
        tokio::spawn(async move {
            while let Some((first, reply)) = rx.recv().await {
                let mut n = size(&first);
                let (mut reqs, mut replies) = (vec![first], vec![reply]);
                while n < BATCH {
                    match rx.try_recv() {
                        Ok((req, reply)) => {
                            n += size(&req);
                            reqs.push(req);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let answers = match app.upgrade() {
                    Some(app) => run(app, reqs).await,
                    None => return,
                };
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
        });
        Batcher { tx }
    }

    /// Requests waiting for a batch (not counting the batch being run).
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Hands `req` to the task and waits for its answer.
    pub(crate) async fn call(&self, req: Req) -> Result<Resp, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((req, tx)).await.map_err(|_| ApiError::Internal("the store batcher has stopped".into()))?;
        rx.await.map_err(|_| ApiError::Internal("the store batcher has stopped".into()))
    }
}

/// A batcher of writes: every request's rows go into one write; all get its outcome.
pub(crate) type Writer<T> = Batcher<Vec<T>, Result<(), String>>;

impl<T: Send + 'static> Batcher<Vec<T>, Result<(), String>> {
    /// Hands `rows` to the task and waits until their batch is written (or buffered).
    pub(crate) async fn submit(&self, rows: Vec<T>) -> Result<(), ApiError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.call(rows).await?.map_err(ApiError::Internal)
    }
}

/// Runs `write` once over the rows of every request; each request gets its outcome.
pub(crate) async fn write_all<T, F>(reqs: Vec<Vec<T>>, write: impl FnOnce(Vec<T>) -> F) -> Vec<Result<(), String>>
where
    F: Future<Output = Result<(), ApiError>>,
{
    let n = reqs.len();
    let outcome = write(reqs.into_iter().flatten().collect()).await.map_err(|e| e.to_string());
    vec![outcome; n]
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
        self.rows.lock().map(|p| p.len()).unwrap_or(0)
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
