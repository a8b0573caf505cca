//! Rows written with evaluation (exposures, new sticky assignments) while the database cannot be
//! reached: kept in memory, bounded, written again by [`App::flush_pending`] (from the refresh
//! loop, and once more when `serve` stops). Batching of the normal path is [`crate::writer`].

use crate::error::ApiError;
use crate::{metrics, writer, App};
use allot_store::{Exposure, StoreError};

/// Most exposures kept in memory while the database cannot be reached; beyond, new ones are
/// dropped and counted (`allot_exposures_dropped_total`).
pub const EXPOSURE_BUFFER: usize = 100_000;

/// The response header that tells a client some of its request's rows are only in the node's
/// memory (the database cannot be reached): `exposures`, `sticky`, or both.
pub const BUFFERED_HEADER: &str = "x-allot-buffered";

/// `Some` (written) or `None` (buffered) as a [`writer::Stored`].
pub(crate) fn stored<V>(r: Option<V>) -> writer::Stored {
    if r.is_some() {
        writer::Stored::Written
    } else {
        writer::Stored::Buffered
    }
}

impl App {
    /// Exposures waiting in memory for the database.
    pub fn pending_exposures(&self) -> usize {
        self.pending.len()
    }

    /// Requests waiting for their sticky assignments or exposures to be written with the next
    /// batch (`allot_write_queue`).
    pub fn queued_writes(&self) -> usize {
        self.exposure_writer.queued() + self.sticky_writer.queued()
    }

    /// New sticky assignments waiting in memory for the database.
    pub fn pending_sticky(&self) -> usize {
        self.pending_sticky.len()
    }

    /// Records exposures; when the database cannot be reached, keeps them in memory (up to
    /// [`EXPOSURE_BUFFER`], beyond which they are dropped and counted) for
    /// [`App::flush_pending`]. Returns how many were new; `None` when they were buffered.
    pub async fn record_exposures(&self, rows: &[Exposure]) -> Result<Option<u64>, ApiError> {
        let r = self.store.record_exposures(rows).await;
        self.keep_if_unavailable(r, &self.pending, rows, metrics::Metrics::exposures_dropped)
    }

    /// The outcome of writing `rows`: `Some` when written; `None` when the database could not be
    /// reached and they were kept in `pending` (what did not fit counted by `dropped`).
    pub(crate) fn keep_if_unavailable<T: Clone, V>(
        &self,
        r: Result<V, StoreError>,
        pending: &writer::Pending<T>,
        rows: &[T],
        dropped: fn(&metrics::Metrics, u64),
    ) -> Result<Option<V>, ApiError> {
        self.observe(&r);
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_unavailable() => {
                let n = pending.push(rows)?;
                if n > 0 {
                    dropped(&self.metrics, n as u64);
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records exposures logged by evaluation: with those of concurrent requests, in one batch
    /// (buffered like [`App::record_exposures`] when the database cannot be reached).
    pub(crate) async fn log_exposures(&self, rows: Vec<Exposure>) -> Result<writer::Stored, ApiError> {
        self.exposure_writer.submit(rows).await
    }

    /// Writes what was buffered while the database could not be reached (sticky assignments,
    /// then exposures), oldest first, in batches; stops at the first failure (what was not
    /// written stays buffered).
    pub async fn flush_pending(&self) -> Result<(), ApiError> {
        let store = &self.store;
        self.flush(&self.pending_sticky, |rows| async move { store.sticky_put(&rows).await }).await?;
        self.flush(&self.pending, |rows| async move { store.record_exposures(&rows).await.map(|_| ()) }).await
    }

    /// Writes `pending` with `write`, oldest first, in batches, until it is empty or a write fails.
    async fn flush<T: Clone, F>(
        &self,
        pending: &writer::Pending<T>,
        write: impl Fn(Vec<T>) -> F,
    ) -> Result<(), ApiError>
    where
        F: std::future::Future<Output = Result<(), StoreError>>,
    {
        loop {
            let batch = pending.oldest(writer::BATCH)?;
            if batch.is_empty() {
                return Ok(());
            }
            let n = batch.len();
            let r = write(batch).await;
            self.observe(&r);
            r?;
            pending.forget(n)?;
        }
    }
}
