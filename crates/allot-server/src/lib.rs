//! The allot service: admin API, evaluation API, OFREP, snapshots, exposures, health and metrics,
//! over any [`Store`].
//!
//! [`App`] holds the store, the compiled snapshot of the current configuration version (in an
//! [`ArcSwap`], replaced whole after each commit, so that no request ever sees half a change),
//! the key cache and the metrics. [`router`] builds the axum `Router`; tests drive it in-process.
//!
//! Every change goes through the core's change control ([`App::change`]): validate, plan,
//! refuse or apply, then commit the new state and its audit entry in one store transaction,
//! checked against the version the change was planned from.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod auth;
pub mod body;
pub mod error;
mod evaluate;
pub mod http;
mod keys;
pub mod metrics;
mod ofrep;
pub mod openapi;
pub mod planner;
pub mod served;
mod tls;
mod writer;
mod yaml;

use allot_core::config;
use allot_core::eval::Snapshot;
use allot_core::plan::{self, ApplyError, Options, Plan};
use allot_core::state::State;
use allot_core::FieldError;
use allot_store::{AuditEntry, KeyInfo, Role, Store};
use allot_store::{Exposure, StickyRow, StoreError};
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::Router;
pub use error::ApiError;
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
}

impl Live {
    fn compile(state: &State) -> Result<Live, ApiError> {
        let snapshot = Snapshot::compile(state)
            .map_err(|es| ApiError::Internal(format!("stored state does not compile: {}", summary(&es))))?;
        let served = served::for_evaluation(state);
        let state_json =
            Bytes::from(serde_json::to_vec(&served).map_err(|e| ApiError::Internal(format!("state to JSON: {e}")))?);
        let any_sticky = snapshot.experiments.iter().any(|e| e.sticky && e.running);
        Ok(Live {
            version: state.version,
            snapshot,
            state_json,
            config: state.config.clone().unwrap_or_else(|| serde_json::json!({})),
            any_sticky,
        })
    }
}

/// One line for a list of field errors.
pub fn summary(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// The current time, RFC 3339 (UTC).
pub fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
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
    store: Arc<dyn Store>,
    live: ArcSwap<Live>,
    publish: Mutex<()>,
    /// Every key this node knows live or revoked (see [`keys`]).
    keys: keys::KeyCache,
    store_up: AtomicBool,
    /// Exposures not yet written because the database could not be reached.
    pending: writer::Pending<Exposure>,
    /// Sticky assignments served but not yet written because the database could not be reached.
    pending_sticky: writer::Pending<StickyRow>,
    /// Group commit of exposures logged by evaluation.
    exposure_writer: writer::Writer<Exposure>,
    /// Group commit of new sticky assignments.
    sticky_writer: writer::Writer<StickyRow>,
    /// The sticky assignments of recently evaluated units, by `(unit type, unit)`: used only while
    /// the database cannot be reached (see [`StickyKnown`]).
    sticky_cache: quick_cache::sync::Cache<(String, String), Arc<StickyKnown>>,
    /// Request and evaluation counters.
    pub metrics: metrics::Metrics,
    /// Connection counters of [`http::serve`] (pass [`App::connections`] to it).
    connections: Arc<http::Connections>,
    /// Where plans, previews and compiles run: off the evaluation path, bounded (see [`planner`]).
    planner: planner::Planner,
}

/// Every sticky assignment of one unit that this node read from the store (or wrote to it) while
/// serving configuration version `version`.
///
/// While the database cannot be reached, a unit's entry stands in for the store only if it was
/// recorded at the version the node still serves. Then it is the whole truth but for rows other
/// nodes wrote since, and those were computed from the same version, so they are what evaluation
/// computes here anyway. Otherwise (no entry, or an older one) the unit's sticky experiments answer
/// `STICKY_UNAVAILABLE` rather than risk contradicting a stored assignment.
#[derive(Debug, Clone, Default)]
pub(crate) struct StickyKnown {
    version: u64,
    rows: Vec<(String, String)>,
}

/// Most exposures kept in memory while the database cannot be reached; beyond, new ones are
/// dropped and counted (`allot_exposures_dropped_total`).
pub const EXPOSURE_BUFFER: usize = 100_000;

/// Most new sticky assignments kept in memory while the database cannot be reached; beyond, new
/// ones are dropped and counted (`allot_sticky_dropped_total`).
pub const STICKY_BUFFER: usize = 100_000;

/// Units whose sticky assignments each node remembers, to keep serving them through an outage of
/// the database (a few hundred bytes each: the ids and the stored variants).
pub const STICKY_CACHE_UNITS: usize = 100_000;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("version", &self.live.load().version).finish_non_exhaustive()
    }
}

/// How the first admin key came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The store already had keys: nothing was created.
    Existing,
    /// The store already had keys and `ALLOT_BOOTSTRAP_ADMIN_KEY` is set to something that is not
    /// one of its live keys: it was ignored (worth a warning: whoever set it may think it works).
    Ignored,
    /// `ALLOT_BOOTSTRAP_ADMIN_KEY` became the first admin key.
    FromEnvironment,
    /// A key was generated: print it once, it is not stored in clear.
    Generated(String),
}

/// Fewest characters of a first admin key given in `ALLOT_BOOTSTRAP_ADMIN_KEY` (generated keys
/// have 70).
pub const MIN_BOOTSTRAP_KEY_CHARS: usize = 32;

/// A new random secret: `allot_` and 64 hex digits.
pub fn new_secret() -> Result<String, ApiError> {
    Ok(format!("allot_{}", random_hex(32)?))
}

fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| ApiError::Internal(format!("random: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new key id: `k_` and 16 hex digits.
pub fn new_key_id() -> Result<String, ApiError> {
    Ok(format!("k_{}", random_hex(8)?))
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
        });
        app.keys.replace(known_keys);
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
    fn observe<T>(&self, r: &Result<T, StoreError>) {
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
    fn keep_if_unavailable<T: Clone, V>(
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

    /// The stored sticky assignments of a unit, `(experiment, variant)`.
    pub(crate) async fn sticky_for_unit(&self, unit_type: &str, unit: &str) -> Result<Vec<(String, String)>, ApiError> {
        let r = self.store.sticky_for_unit(unit_type, unit).await;
        self.observe(&r);
        Ok(r?)
    }

    /// Stores new sticky assignments `(unit type, unit, experiment, variant)`, an existing one
    /// kept; when the database cannot be reached, keeps them in memory (up to [`STICKY_BUFFER`],
    /// beyond which they are dropped and counted) for [`App::flush_pending`].
    async fn put_sticky(&self, rows: &[StickyRow]) -> Result<Option<()>, ApiError> {
        let r = self.store.sticky_put(rows).await;
        self.keep_if_unavailable(r, &self.pending_sticky, rows, metrics::Metrics::sticky_dropped)
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

    /// The compiled current version.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// On an empty key table: makes `env_key` (or a generated key) the first admin key. A key from
    /// the environment must have at least [`MIN_BOOTSTRAP_KEY_CHARS`] characters and no control
    /// characters (422 naming `ALLOT_BOOTSTRAP_ADMIN_KEY` otherwise).
    pub async fn bootstrap(&self, env_key: Option<&str>) -> Result<Bootstrap, ApiError> {
        let env_key = env_key.map(str::trim).filter(|k| !k.is_empty());
        if self.store.key_count().await? > 0 {
            return Ok(match env_key {
                Some(k) if self.store.find_key(k).await?.is_none() => Bootstrap::Ignored,
                _ => Bootstrap::Existing,
            });
        }
        if let Some(k) = env_key {
            let n = k.chars().count();
            if n < MIN_BOOTSTRAP_KEY_CHARS {
                return Err(ApiError::field(
                    "ALLOT_BOOTSTRAP_ADMIN_KEY",
                    format!("the first admin key needs at least {MIN_BOOTSTRAP_KEY_CHARS} characters, this one has {n} (e.g. `openssl rand -hex 32`)"),
                ));
            }
            if k.chars().any(char::is_control) {
                return Err(ApiError::field("ALLOT_BOOTSTRAP_ADMIN_KEY", "a key cannot contain control characters"));
            }
        }
        let (secret, outcome) = match env_key {
            Some(k) => (k.to_string(), Bootstrap::FromEnvironment),
            None => {
                let s = new_secret()?;
                (s.clone(), Bootstrap::Generated(s))
            }
        };
        let info = KeyInfo {
            id: new_key_id()?,
            name: "bootstrap-admin".into(),
            role: Role::Admin,
            created_at: now(),
            revoked_at: None,
        };
        if self.store.bootstrap_key(&info, &secret).await? {
            Ok(outcome)
        } else {
            Ok(Bootstrap::Existing)
        }
    }

    /// The live key with this secret: from what this node knows of the key table (module `keys`),
    /// else from the store. `None` for a key unknown or revoked; 503 `STORE_UNAVAILABLE` for a
    /// key this node has never seen while the database cannot be reached.
    pub async fn key(&self, secret: &str) -> Result<Option<Arc<KeyInfo>>, ApiError> {
        let hash = self.store.hash_secret(secret);
        match self.keys.get(&hash) {
            keys::Known::Live(k) => return Ok(Some(k)),
            keys::Known::Revoked => return Ok(None),
            keys::Known::Unknown => {}
        }
        let found = self.store.find_key(secret).await;
        self.observe(&found);
        let found = found?.map(Arc::new);
        if let Some(k) = &found {
            self.keys.live(hash, k.clone());
        }
        Ok(found)
    }

    /// Reads the whole key table again, so that keys created or revoked on other nodes are known
    /// here (periodically, from [`App::spawn_refresh`]). While the database cannot be reached,
    /// what was known stays.
    pub async fn refresh_keys(&self) -> Result<(), ApiError> {
        let all = self.store.export_keys().await;
        self.observe(&all);
        self.keys.replace(all?);
        Ok(())
    }

    /// Records a key created on this node: known live from now on, also while the database cannot
    /// be reached.
    pub(crate) fn key_created(&self, secret: &str, info: KeyInfo) {
        self.keys.live(self.store.hash_secret(secret), Arc::new(info));
    }

    /// Records a revocation made on this node: the key is refused from now on, also while the
    /// database cannot be reached.
    pub(crate) fn key_revoked(&self, id: &str) {
        self.keys.revoked(id);
    }

    /// Makes a compiled version current, unless a newer version already is.
    fn publish(&self, live: Live) -> Result<(), ApiError> {
        let _g = self.publish.lock().map_err(|_| ApiError::Internal("publish lock poisoned".into()))?;
        if live.version > self.live.load().version {
            self.metrics.set_version(live.version);
            self.live.store(Arc::new(live));
        }
        Ok(())
    }

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
    /// again every 64 polls (so that a revocation on another node takes effect). Runs until the
    /// app is dropped.
    ///
    /// When the store announces commits ([`Store::changes`]: PostgreSQL's `LISTEN`/`NOTIFY`), each
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
            let counts: std::collections::HashMap<String, u64> =
                self.store.sticky_counts().await?.into_iter().collect();
            for (id, i) in plan.impact.iter_mut().filter(|(_, i)| i.sticky) {
                i.stored_assignments = Some(counts.get(id).copied().unwrap_or(0));
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

    /// Holds planning: until the guard is dropped, every plan, preview and compile started on
    /// this node waits before it begins. For tests of the budget; not for production use.
    #[doc(hidden)]
    pub async fn pause_planning(&self) -> planner::Paused {
        self.planner.pause().await
    }
}

/// `Some` (written) or `None` (buffered) as a [`writer::Stored`].
fn stored<V>(r: Option<V>) -> writer::Stored {
    if r.is_some() {
        writer::Stored::Written
    } else {
        writer::Stored::Buffered
    }
}

/// The response header that tells a client some of its request's rows are only in the node's
/// memory (the database cannot be reached): `exposures`, `sticky`, or both.
pub const BUFFERED_HEADER: &str = "x-allot-buffered";

/// The whole HTTP interface over `app`.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .merge(admin::routes())
        .merge(evaluate::routes())
        .merge(ofrep::routes())
        .merge(openapi::routes())
        .route("/healthz", axum::routing::get(health))
        .route("/readyz", axum::routing::get(ready))
        .route("/metrics", axum::routing::get(metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(app.clone(), metrics::track));
    metrics::with_request_ids(api).with_state(app)
}

/// `router` answering cross-origin requests from `origins` (`https://app.example.com`, or `*` for
/// any origin): CORS preflights are answered before authentication, and the API's request and
/// response headers (`Authorization`, `If-Match`, `ETag`, ...) are allowed. No origins: `router`
/// unchanged, and browsers refuse cross-origin calls (the default). Errors name a malformed origin.
pub fn with_cors(router: Router, origins: &[String]) -> Result<Router, String> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(router);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let mut list = Vec::with_capacity(origins.len());
        for o in origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/');
            match HeaderValue::from_str(o) {
                Ok(v) if ok => list.push(v),
                _ => {
                    return Err(format!("--cors-origin {o}: expected an origin such as https://app.example.com, or *"))
                }
            }
        }
        AllowOrigin::list(list)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-allot-buffered"),
        ])
        .max_age(Duration::from_secs(600));
    Ok(router.layer(layer))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{}: {method} is not allowed here", uri.path()))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("{}: no such endpoint", uri.path()))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: a configuration version is loaded, so evaluation can answer. `{"status": "ready"}`
/// when the store answers too; `{"status": "degraded"}` (still 200: evaluation keeps serving the
/// last snapshot) when it does not, and then admin writes get 503 `STORE_UNAVAILABLE`.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready, or degraded: the store does not answer but evaluation serves the last snapshot")))]
pub async fn ready(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::Json<serde_json::Value> {
    let pinged = app.store.ping().await;
    app.observe(&pinged);
    let version = app.live().version;
    match pinged {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready", "version": version})),
        Err(e) => {
            tracing::warn!(error = %e, "store ping failed");
            axum::Json(serde_json::json!({
                "status": "degraded",
                "version": version,
                "store": "unavailable",
                "message": "the store does not answer: evaluation serves the last snapshot, admin writes get 503",
                "pending_exposures": app.pending_exposures(),
                "pending_sticky": app.pending_sticky(),
            }))
        }
    }
}
