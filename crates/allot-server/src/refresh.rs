//! Keeping a node current: [`App::refresh`] picks up versions committed by other nodes, and
//! [`App::spawn_refresh`] runs it on a poll and on the store's change notifications, writes
//! buffered rows when the database is back and re-reads the key table.

use crate::error::ApiError;
use crate::{planner, App};
use std::sync::Arc;
use std::time::Duration;

impl App {
    /// Picks up versions committed by other processes. Cheap when nothing changed.
    /// Updates the store's health either way.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let v = self.store.current_version().await;
        self.observe(&v);
        if v? > self.live.load().version {
            let r = self.store.load_current().await;
            self.observe(&r);
            let (_, state) = r?;
            let compiled = planner::compile_off_runtime(state).await?;
            self.publish(compiled)?;
        }
        Ok(())
    }

    /// Polls the store every `every` for versions committed elsewhere, and reads the key table
    /// again every 64 polls (so that a revocation on another node takes effect); keeps the
    /// console's view computed ahead while the console is in use. Runs until the app is dropped.
    ///
    /// When the store announces commits ([`Store::changes`](allot_store::Store::changes): PostgreSQL's `LISTEN`/`NOTIFY`), each
    /// announcement also triggers a refresh at once; the poll stays as the fallback for a missed
    /// notification.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        if let Some(mut changes) = self.store.changes() {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(version) = changes.recv().await {
                    let Some(app) = weak.upgrade() else { return };
                    if version == 0 || version > app.live.load().version {
                        if let Err(e) = app.refresh().await {
                            tracing::warn!(error = %e, "refresh after a change notification failed");
                        }
                    }
                }
            });
        }
        crate::console::spawn_ahead(self, every);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { return };
                if let Err(e) = app.refresh().await {
                    if app.store_up() {
                        tracing::warn!(error = %e, "refresh from the store failed");
                    }
                } else if app.pending_exposures() + app.pending_sticky() > 0 {
                    match app.flush_pending().await {
                        Ok(()) => tracing::info!("buffered sticky assignments and exposures written"),
                        Err(e) => tracing::warn!(error = %e, "writing buffered rows failed"),
                    }
                }
                n += 1;
                if n.is_multiple_of(64) {
                    if let Err(e) = app.refresh_keys().await {
                        if app.store_up() {
                            tracing::warn!(error = %e, "reading the key table failed");
                        }
                    }
                }
            }
        })
    }
}
