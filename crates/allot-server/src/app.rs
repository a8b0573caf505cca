//! [`App`], the service's shared state, and the one way a configuration version becomes current:
//! [`App::change`] (plan with the core's change control, commit with its audit entry, publish),
//! [`App::import_state`] and [`App::refresh`] (see [`crate::refresh`]) all end in
//! `App::publish`, which swaps the compiled [`Live`] whole.

use crate::buffered::stored;
use crate::clock::now;
use crate::error::summary;
use crate::{http, keys, metrics, ofrep_events, planner, ratelimit, served, writer};
use crate::{sticky::StickyKnown, ApiError};
use crate::{EXPOSURE_BUFFER, STICKY_BUFFER, STICKY_CACHE_UNITS};
use allot_core::config;
use allot_core::eval::Snapshot;
use allot_core::plan::{self, ApplyError, Options, Plan};
use allot_core::state::State;
use allot_store::{AuditEntry, Exposure, StickyRow, Store, StoreError};
use arc_swap::ArcSwap;
use axum::body::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The compiled configuration version that evaluation uses.
#[derive(Debug)]
pub struct Live {
    /// Configuration version.
    pub version: u64,
    /// The compiled snapshot.
    pub snapshot: Snapshot,
    /// The state reduced to what evaluation needs ([`served::for_evaluation`]), as JSON: what
    /// `GET /api/v1/snapshot` serves.
    pub state_json: Bytes,
    /// The applied configuration's raw tree (`{}` before the first change).
    pub config: serde_json::Value,
    /// Whether any running experiment is sticky (only then does evaluation read the store).
    pub any_sticky: bool,
    /// The OFREP metadata of each experiment, in the snapshot's order.
    pub(crate) ofrep_meta: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Live {
    pub(crate) fn compile(state: &State) -> Result<Live, ApiError> {
        let snapshot = Snapshot::compile(state)
            .map_err(|es| ApiError::Internal(format!("stored state does not compile: {}", summary(&es))))?;
        let served = served::for_evaluation(state);
        let state_json =
            Bytes::from(serde_json::to_vec(&served).map_err(|e| ApiError::Internal(format!("state to JSON: {e}")))?);
        let any_sticky = snapshot.experiments.iter().any(|e| e.sticky && e.running && !e.paused);
        let ofrep_meta = crate::ofrep::flag_metadata(state, &snapshot);
        Ok(Live {
            ofrep_meta,
            version: state.version,
            snapshot,
            state_json,
            config: state.config.clone().unwrap_or_else(|| serde_json::json!({})),
            any_sticky,
        })
    }
}

/// What `If-Match` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `If-Match: *`: whatever version is current when the change is planned.
    Any,
    /// `If-Match: "7"`: only if version 7 is still current.
    Version(u64),
}

/// A change to the configuration, as the API and `serve --config` make it.
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    /// The whole new configuration, as a raw tree.
    pub raw: serde_json::Value,
    /// The version it was made against.
    pub if_match: IfMatch,
    /// Override refusals (needs `reason`).
    pub force: bool,
    /// Why.
    pub reason: Option<String>,
    /// Who (the key's name).
    pub actor: String,
    /// What kind of change, for the audit log (`config.put`, `experiment.start`, ...).
    pub action: String,
}

/// The result of a change.
#[derive(Debug)]
pub struct Changed {
    /// The plan (changes, impact, warnings; refusals that were overridden).
    pub plan: Plan,
    /// Whether a new version was committed (false when nothing changed).
    pub committed: bool,
    /// The current version after the change.
    pub version: u64,
}

/// The service's shared state.
pub struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) live: ArcSwap<Live>,
    publish: Mutex<()>,
    /// Every key this node knows live or revoked (see [`keys`]).
    pub(crate) keys: keys::KeyCache,
    pub(crate) store_up: AtomicBool,
    /// Exposures not yet written because the database could not be reached.
    pub(crate) pending: writer::Pending<Exposure>,
    /// Sticky assignments served but not yet written because the database could not be reached.
    pub(crate) pending_sticky: writer::Pending<StickyRow>,
    /// Group commit of exposures logged by evaluation.
    pub(crate) exposure_writer: writer::Writer<Exposure>,
    /// Group commit of new sticky assignments.
    pub(crate) sticky_writer: writer::Writer<StickyRow>,
    /// The sticky assignments of recently evaluated units, by `(unit type, unit)`: used only while
    /// the database cannot be reached (see [`StickyKnown`]).
    pub(crate) sticky_cache: quick_cache::sync::Cache<(String, String), Arc<StickyKnown>>,
    /// Request and evaluation counters.
    pub metrics: metrics::Metrics,
    /// Connection counters of [`http::serve`] (pass [`App::connections`] to it).
    pub(crate) connections: Arc<http::Connections>,
    /// Where plans, previews and compiles run: off the evaluation path, bounded (see [`planner`]).
    pub(crate) planner: planner::Planner,
    /// OFREP's change events: the versions announced to event streams ([`ofrep_events`]).
    pub(crate) ofrep_events: ofrep_events::Events,
    /// OFREP's answer for units the experiment does not assign, and the per-key request rate.
    pub(crate) policy: ArcSwap<Policy>,
    /// Per-key rate limiting, when [`Policy::rate_limit`] is set.
    pub(crate) rate: ratelimit::PerKey,
    /// The console's view of the current version, computed once per version.
    pub(crate) views: crate::console::Views,
    /// Where experiment results are read ([`crate::results`]); unset: 409 `NO_METRICS`.
    pub(crate) results_source: arc_swap::ArcSwapOption<crate::results::ResultsSource>,
    /// Analyses running at once ([`crate::results::MAX_ANALYSES`]).
    pub(crate) analyses: tokio::sync::Semaphore,
}

/// How this node answers: what `allot serve`'s flags set ([`App::set_policy`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// OFREP's answer for a unit the experiment does not assign (`--ofrep-unassigned`).
    pub ofrep_unassigned: crate::Unassigned,
    /// Requests allowed to each key (`--rate-limit`); `None`: no limit (the default).
    pub rate_limit: Option<crate::RateLimit>,
    /// OFREP event streams open at once on this node (`--max-event-streams`).
    pub max_event_streams: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            ofrep_unassigned: crate::Unassigned::default(),
            rate_limit: None,
            max_event_streams: ofrep_events::DEFAULT_MAX_STREAMS,
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("version", &self.live.load().version).finish_non_exhaustive()
    }
}

impl App {
    /// Loads the current version from the store and compiles it.
    pub async fn new(store: Arc<dyn Store>) -> Result<Arc<App>, ApiError> {
        let (_, state) = store.load_current().await?;
        let live = Live::compile(&state)?;
        let known_keys = store.export_keys().await?;
        let app = Arc::new_cyclic(|me| App {
            store,
            live: ArcSwap::from_pointee(live),
            publish: Mutex::new(()),
            keys: keys::KeyCache::default(),
            store_up: AtomicBool::new(true),
            pending: writer::Pending::new(EXPOSURE_BUFFER),
            pending_sticky: writer::Pending::new(STICKY_BUFFER),
            exposure_writer: writer::Writer::spawn(me.clone(), |app, rows| {
                Box::pin(async move { app.record_exposures(&rows).await.map(stored).map_err(|e| e.to_string()) })
            }),
            sticky_writer: writer::Writer::spawn(me.clone(), |app, rows| {
                Box::pin(async move { app.put_sticky(&rows).await.map(stored).map_err(|e| e.to_string()) })
            }),
            sticky_cache: quick_cache::sync::Cache::new(STICKY_CACHE_UNITS),
            metrics: metrics::Metrics::default(),
            connections: Arc::default(),
            planner: planner::Planner::default(),
            ofrep_events: ofrep_events::Events::default(),
            policy: ArcSwap::from_pointee(Policy::default()),
            rate: ratelimit::PerKey::default(),
            views: Default::default(),
            results_source: arc_swap::ArcSwapOption::empty(),
            analyses: tokio::sync::Semaphore::new(crate::results::MAX_ANALYSES),
        });
        app.keys.replace(known_keys);
        app.ofrep_events.announce(app.live().version, crate::clock::now_unix());
        Ok(app)
    }

    /// The connection counters [`http::serve`] keeps for `/metrics`.
    pub fn connections(&self) -> Arc<http::Connections> {
        self.connections.clone()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the last store operation that tells (version poll, change listener, commit,
    /// exposure write) reached the database.
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    /// Records the outcome of a store operation in the store's health (`/readyz`, `allot_store_up`).
    pub(crate) fn observe<T>(&self, r: &Result<T, StoreError>) {
        match r {
            Ok(_) => {
                if !self.store_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("the database is reachable again");
                }
            }
            Err(e) if e.is_unavailable() => {
                if self.store_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the database cannot be reached: serving the last snapshot");
                }
            }
            Err(_) => {}
        }
    }

    /// The compiled current version.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Makes a compiled version current, unless a newer version already is.
    pub(crate) fn publish(&self, live: Live) -> Result<(), ApiError> {
        let _g = self.publish.lock().map_err(|_| ApiError::Internal("publish lock poisoned".into()))?;
        if live.version > self.live.load().version {
            self.metrics.set_version(live.version);
            let version = live.version;
            self.live.store(Arc::new(live));
            self.ofrep_events.announce(version, crate::clock::now_unix());
        }
        Ok(())
    }

    /// Plans a change with the core's change control and, unless refused, commits it with its
    /// audit entry in one transaction and makes it current. All-or-nothing.
    pub async fn change(&self, req: ChangeRequest) -> Result<Changed, ApiError> {
        if req.force && req.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(ApiError::field(
                "reason",
                "force=true needs a reason (e.g. ?force=true&reason=...), which is recorded in the audit log",
            ));
        }
        let loaded = self.store.load_current().await;
        self.observe(&loaded);
        let (current, state) = loaded?;
        if let IfMatch::Version(expected) = req.if_match {
            if expected != current {
                return Err(ApiError::VersionMismatch { expected, current });
            }
        }
        let opts = Options {
            force: req.force,
            reason: req.reason.clone(),
            time: now(),
            actor: Some(req.actor.clone()),
            sticky_store: true,
        };
        let time = opts.time.clone();
        let raw = req.raw.clone();
        let (plan, state) = self
            .planner
            .run(move || {
                let cfg = config::validate(&raw).map_err(ApiError::Invalid)?;
                let plan = plan::apply(&state, &cfg, &raw, &opts).map_err(|e| match e {
                    ApplyError::Invalid(es) => ApiError::Invalid(es),
                    ApplyError::Refused(p) => ApiError::Refused(p),
                })?;
                Ok((plan, state))
            })
            .await?;
        if plan.state == state {
            return Ok(Changed { plan, committed: false, version: current });
        }
        let entry = AuditEntry {
            actor: req.actor,
            time,
            action: req.action,
            reason: req.reason,
            forced: req.force && !plan.refusals.is_empty(),
            changes: serde_json::to_value(&plan.changes).map_err(|e| ApiError::Internal(e.to_string()))?,
            overridden: serde_json::to_value(&plan.refusals).map_err(|e| ApiError::Internal(e.to_string()))?,
        };
        let committed = self.store.commit(current, &plan.state, &entry).await;
        self.observe(&committed);
        let version = committed?;
        tracing::info!(version, changes = plan.changes.len(), actor = %entry.actor, "configuration committed");
        // Committed: it is published whatever the time it takes (no budget), but off the runtime.
        let compiled = planner::compile_off_runtime(plan.state.clone()).await?;
        self.publish(compiled)?;
        Ok(Changed { plan, committed: true, version })
    }

    /// Plans a change without committing it: the exact report `change` would act on.
    pub async fn preview(
        &self,
        raw: &serde_json::Value,
        force: bool,
        reason: Option<String>,
    ) -> Result<Plan, ApiError> {
        let (_, state) = self.store.load_current().await?;
        let raw = raw.clone();
        let opts = Options { force, reason, time: now(), actor: None, sticky_store: true };
        let mut plan = self
            .planner
            .run(move || {
                let cfg = config::validate(&raw).map_err(ApiError::Invalid)?;
                plan::plan(&state, &cfg, &raw, &opts).map_err(ApiError::Invalid)
            })
            .await?;
        if plan.impact.values().any(|i| i.sticky) {
            // A count that cannot be read leaves `stored_assignments` out; the plan stands.
            match self.store.sticky_counts().await {
                Ok(counts) => {
                    let counts: std::collections::HashMap<String, u64> = counts.into_iter().collect();
                    for (id, i) in plan.impact.iter_mut().filter(|(_, i)| i.sticky) {
                        i.stored_assignments = Some(counts.get(id).copied().unwrap_or(0));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "preview: stored sticky assignments could not be counted"),
            }
        }
        Ok(plan)
    }

    /// Imports the CLI's recorded state (`allot serve --state`): into an empty store as one
    /// version (its number, its whole log), then serves it; a store that already records it is
    /// left as it is; any other store is an error (422 naming `state`), and nothing is written.
    /// The state must compile.
    pub async fn import_state(&self, state: State, actor: &str) -> Result<allot_store::import::Imported, ApiError> {
        let compiled = planner::compile_off_runtime(state.clone())
            .await
            .map_err(|_| ApiError::field("state", "the state file does not compile"))?;
        let r = allot_store::import::import_state(&*self.store, &state, actor, &now()).await;
        self.observe(&r);
        let imported = match r {
            Ok(i) => i,
            Err(StoreError::Invalid(m)) => return Err(ApiError::field("state", m)),
            Err(e) => return Err(e.into()),
        };
        if matches!(imported, allot_store::import::Imported::Imported { .. }) {
            self.publish(compiled)?;
        }
        Ok(imported)
    }

    /// Sets the time budget of plans and previews (default [`planner::DEFAULT_BUDGET`]): past it
    /// the request answers 503 `PLAN_TIMEOUT` (or `PLAN_BUSY` when it waited that long for a
    /// planner) and the work, if started, finishes in the background with its result discarded.
    pub fn set_plan_budget(&self, budget: Duration) {
        self.planner.set_budget(budget);
    }

    /// Sets how this node answers (OFREP's unassigned answer, the per-key rate limit).
    pub fn set_policy(&self, policy: Policy) {
        self.rate.configure(policy.rate_limit);
        if policy.max_event_streams != self.policy.load().max_event_streams {
            self.ofrep_events.set_max_streams(policy.max_event_streams);
        }
        self.policy.store(Arc::new(policy));
    }

    /// Ends OFREP's event streams: called when the server begins to shut down, so that they do
    /// not hold up the drain.
    pub fn close_event_streams(&self) {
        self.ofrep_events.close();
    }

    /// Holds planning: until the guard is dropped, every plan, preview and compile started on
    /// this node waits before it begins. For tests of the budget; not for production use.
    #[doc(hidden)]
    pub async fn pause_planning(&self) -> planner::Paused {
        self.planner.pause().await
    }
}
