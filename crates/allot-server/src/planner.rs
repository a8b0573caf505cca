//! Where plans, previews and compiles run: on tokio's blocking pool, never on the runtime's
//! worker threads that answer evaluation, at most [`PLANNERS`] at once, within a time budget.
//!
//! A plan of a large or adversarial configuration can take seconds of CPU. Run on a worker thread
//! it would stall every evaluation request queued behind it; run unbounded, a few previews would
//! take every core. So a plan waits for one of [`PLANNERS`] permits (503 `PLAN_BUSY` if none frees
//! within the budget), runs on the blocking pool, and the request answers 503 `PLAN_TIMEOUT` if the
//! result is not there within the budget. The work itself cannot be interrupted: it finishes in
//! the background holding its permit (so runaway plans never exceed [`PLANNERS`]) and its result
//! is discarded; a timed-out change therefore commits nothing.

use crate::error::ApiError;
use crate::Live;
use allot_core::state::State;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{RwLock, Semaphore};

/// Plans (changes and previews) that run at once on a node. One, so that on a small machine
/// one core stays free for evaluation whatever the admin API is asked.
pub const PLANNERS: usize = 1;

/// Default time budget of one plan or preview, waiting for a planner included.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// The bounded planning pool of one [`crate::App`].
#[derive(Debug)]
pub(crate) struct Planner {
    permits: Arc<Semaphore>,
    budget_ms: AtomicU64,
    /// Held for writing by [`Planner::pause`] (tests); every job takes it for reading first.
    pause: Arc<RwLock<()>>,
}

impl Default for Planner {
    fn default() -> Self {
        Planner {
            permits: Arc::new(Semaphore::new(PLANNERS)),
            budget_ms: AtomicU64::new(millis(DEFAULT_BUDGET)),
            pause: Arc::default(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// While held, planning on the node waits (see [`crate::App::pause_planning`]).
#[derive(Debug)]
pub struct Paused(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>);

impl Planner {
    pub(crate) fn set_budget(&self, budget: Duration) {
        self.budget_ms.store(millis(budget), Ordering::Relaxed);
    }

    pub(crate) fn budget(&self) -> Duration {
        Duration::from_millis(self.budget_ms.load(Ordering::Relaxed))
    }

    pub(crate) async fn pause(&self) -> Paused {
        Paused(self.pause.clone().write_owned().await)
    }

    /// Runs `job` on the blocking pool with a permit, within the budget.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let budget = self.budget();
        let budget_ms = millis(budget);
        let started = tokio::time::Instant::now();
        let permit = match tokio::time::timeout(budget, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(ApiError::Internal("the planner's semaphore is closed".into())),
            Err(_) => return Err(ApiError::PlanBusy { budget_ms }),
        };
        let pause = self.pause.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _unpaused = pause.blocking_read();
            job()
        });
        let left = budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(ApiError::Internal(format!("a plan failed: {e}"))),
            Err(_) => {
                tracing::warn!(
                    budget_ms,
                    "a plan ran past its budget: answered PLAN_TIMEOUT, its result will be discarded"
                );
                Err(ApiError::PlanTimeout { budget_ms })
            }
        }
    }
}

/// Compiles a state on the blocking pool, without a budget: used for versions already committed,
/// which must be served however long they take to compile.
pub(crate) async fn compile_off_runtime(state: State) -> Result<Live, ApiError> {
    tokio::task::spawn_blocking(move || Live::compile(&state))
        .await
        .map_err(|e| ApiError::Internal(format!("a compile failed: {e}")))?
}
