//! In-process evaluation for Rust services: [`Client`] polls `GET /api/v1/snapshot` of an
//! `allot serve` (with `If-None-Match`, so an unchanged configuration costs a 304), compiles it
//! with the same `allot-core` code the server uses, evaluates locally without a network round
//! trip, and sends exposures to `POST /api/v1/exposures` in batches.
//!
//! ```no_run
//! # async fn demo() -> Result<(), allot_sdk::Error> {
//! let allot = allot_sdk::Client::connect("http://127.0.0.1:8080", "allot_…evaluator key…").await?;
//! let _poller = allot.spawn_polling(std::time::Duration::from_secs(5));
//! let ctx = serde_json::json!({"user_id": "u1", "country": "SE"});
//! let a = allot.evaluate("ranking-v2", ctx.as_object().unwrap());
//! if a.variant.as_deref() == Some("treatment") {
//!     allot.expose("u1", "ranking-v2", "treatment"); // batched; flushed by the poller
//! }
//! # Ok(()) }
//! ```
//!
//! Sticky experiments keep each unit's stored variant, and the store is the server's: this
//! client never serves a sticky experiment's variant that could contradict a stored one. By
//! default ([`Client::evaluate`]) a sticky experiment answers [`Reason::StickyUnavailable`] with
//! no variant wherever the unit would be assigned (its dependants see no variant either): ask
//! the server's `/api/v1/evaluate` for those, or pass the application's own copy of the stored
//! assignments to [`Client::evaluate_with`] (any [`StickyStore`]).
//!
//! Exposure times come from a [`Clock`]: the system clock ([`SystemClock`]) unless the
//! application gives its own to [`Client::connect_with_clock`] (tests pin time with it; an app
//! with its own time source, or one that logs exposures with a request's own time, uses it too).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use allot_core::eval::StickyStore;
use allot_core::eval::{Reason, Snapshot};
use allot_core::state::State;
use allot_core::Context;
use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Errors of the SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request failed (connection, timeout).
    #[error("request to allot failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("allot answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: String,
    },
    /// The snapshot could not be read or compiled.
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    /// An offline client ([`Client::offline`]) has no server to fetch from or send to.
    #[error("this client is offline (built from a state file): it has no server to fetch from or send exposures to")]
    Offline,
}

/// Each served experiment's id and its variants (name, served value) in index order.
pub type VariantTable = Vec<(String, Vec<(String, Value)>)>;

/// The result of evaluating one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The variant, if any.
    pub variant: Option<String>,
    /// Its value (declared `value`, else the variant name), if any.
    pub value: Option<Value>,
    /// Why (`None` for an experiment the snapshot does not have, or before the first snapshot).
    pub reason: Option<Reason>,
    /// The configuration version used (0 before the first snapshot).
    pub version: u64,
}

/// The stored sticky assignments live in the server: this process knows none of them, so
/// sticky experiments answer `STICKY_UNAVAILABLE` rather than a variant that could contradict
/// the stored one.
struct NotLocal;

impl StickyStore for NotLocal {
    fn get(&self, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }

    fn knows(&self, _: &str, _: &str) -> bool {
        false
    }
}

/// Where the client's exposure times come from. Any `Fn() -> OffsetDateTime` is one:
/// `Arc::new(|| time::macros::datetime!(2026-01-01 0:00 UTC))`.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> time::OffsetDateTime;
}

/// The system clock (UTC): the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

impl<F: Fn() -> time::OffsetDateTime + Send + Sync> Clock for F {
    fn now(&self) -> time::OffsetDateTime {
        self()
    }
}

/// Exposures per request.
const CHUNK: usize = 500;

#[derive(Debug, Clone, Serialize)]
struct Exposure {
    unit: String,
    experiment: String,
    variant: String,
    time: String,
    version: u64,
}

struct Compiled {
    version: u64,
    etag: Option<String>,
    snapshot: Snapshot,
}

struct Inner {
    base: String,
    key: String,
    http: reqwest::Client,
    current: ArcSwapOption<Compiled>,
    queue: Mutex<Vec<Exposure>>,
    batch: usize,
    clock: Arc<dyn Clock>,
    /// At most this many exposures wait to be sent; past it new ones are dropped and counted.
    queue_limit: usize,
    dropped: AtomicU64,
    /// A background flush is under way (at most one at a time).
    flushing: AtomicBool,
    /// Keys of the exposures queued or sent lately ([`exposure_key`]): the same (unit,
    /// experiment, variant, day) is queued once.
    seen: Mutex<HashSet<Box<str>>>,
    /// At most this many keys are kept; past it the set starts over (the server keeps one per
    /// day anyway: a repeat costs a row in a batch, never a second exposure).
    seen_limit: usize,
    deduplicated: AtomicU64,
    /// Exposures never sent: an experiment or variant the snapshot does not have, or a batch the
    /// server refused for good (a 400, 413 or 422).
    rejected: AtomicU64,
    /// Built from a state file: never fetches, never sends.
    offline: bool,
}

/// The deduplication key of an exposure: the day first, then the unit and experiment with their
/// lengths, so that no two distinct (unit, experiment, variant, day) give the same key.
fn exposure_key(day: &str, unit: &str, experiment: &str, variant: &str) -> Box<str> {
    format!("{day}|{}:{unit}{}:{experiment}{variant}", unit.len(), experiment.len()).into_boxed_str()
}

/// How a [`Client`] connects and queues: [`Client::connect_with`].
#[derive(Clone)]
pub struct Options {
    /// Where exposure times come from (default [`SystemClock`]).
    pub clock: Arc<dyn Clock>,
    /// Exposures waiting to be sent at most (default [`DEFAULT_QUEUE_LIMIT`]): while the server
    /// cannot be reached the queue stops growing there; newer exposures are dropped and counted
    /// ([`Client::dropped_exposures`]).
    pub queue_limit: usize,
    /// PEM certificates to trust for `https://` servers, beside the Mozilla roots (for a private
    /// CA).
    pub root_certificates: Vec<Vec<u8>>,
    /// Only the certificates in `root_certificates` (not the Mozilla roots).
    pub only_these_roots: bool,
    /// Timeout of each request (default 10 s).
    pub timeout: Duration,
    /// Exposure keys (unit, experiment, variant, day) remembered for deduplication at most
    /// (default [`DEFAULT_DEDUP_LIMIT`]); 0 turns client-side deduplication off.
    pub dedup_limit: usize,
}

/// Default of [`Options::dedup_limit`].
pub const DEFAULT_DEDUP_LIMIT: usize = 100_000;

/// Default of [`Options::queue_limit`].
pub const DEFAULT_QUEUE_LIMIT: usize = 100_000;

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: Arc::new(SystemClock),
            queue_limit: DEFAULT_QUEUE_LIMIT,
            root_certificates: vec![],
            only_these_roots: false,
            timeout: Duration::from_secs(10),
            dedup_limit: DEFAULT_DEDUP_LIMIT,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("queue_limit", &self.queue_limit)
            .field("root_certificates", &self.root_certificates.len())
            .field("only_these_roots", &self.only_these_roots)
            .field("timeout", &self.timeout)
            .field("dedup_limit", &self.dedup_limit)
            .finish_non_exhaustive()
    }
}

/// A client of one `allot serve`. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.inner.base).field("version", &self.version()).finish()
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://host:port`) with an `evaluator` key; fetches
    /// the first snapshot before returning.
    pub async fn connect(base_url: &str, key: &str) -> Result<Client, Error> {
        Client::connect_with_clock(base_url, key, Arc::new(SystemClock)).await
    }

    /// [`Client::connect`] with the clock exposure times are read from.
    pub async fn connect_with_clock(base_url: &str, key: &str, clock: Arc<dyn Clock>) -> Result<Client, Error> {
        Client::connect_with(base_url, key, Options { clock, ..Options::default() }).await
    }

    /// [`Client::connect`] with [`Options`]: `https://` servers (rustls; a private CA through
    /// `root_certificates`), the exposure queue's bound, the clock.
    pub async fn connect_with(base_url: &str, key: &str, options: Options) -> Result<Client, Error> {
        let c = Client::build(base_url, key, options, false)?;
        c.refresh().await?;
        Ok(c)
    }

    /// A client that never connects: it evaluates the state in `state_json` (what
    /// `GET /api/v1/snapshot` or `allot apply` gives) and queues exposures without sending them
    /// (their count is [`Client::queued_exposures`]). For tests, golden files and tools that
    /// evaluate offline; [`Client::refresh`] and [`Client::flush`] answer [`Error::Offline`].
    pub fn offline(state_json: &str, options: Options) -> Result<Client, Error> {
        let c = Client::build("", "", options, true)?;
        c.load(state_json, None)?;
        Ok(c)
    }

    fn build(base_url: &str, key: &str, options: Options, offline: bool) -> Result<Client, Error> {
        let mut b =
            reqwest::Client::builder().timeout(options.timeout).tls_built_in_root_certs(!options.only_these_roots);
        for pem in &options.root_certificates {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        let http = b.build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                base: base_url.trim_end_matches('/').to_string(),
                key: key.to_string(),
                http,
                current: ArcSwapOption::empty(),
                queue: Mutex::new(vec![]),
                batch: 500,
                clock: options.clock,
                queue_limit: options.queue_limit,
                dropped: AtomicU64::new(0),
                flushing: AtomicBool::new(false),
                seen: Mutex::new(HashSet::new()),
                seen_limit: options.dedup_limit,
                deduplicated: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                offline,
            }),
        })
    }

    /// Compiles a state and makes it current unless the current one is as new. True when loaded.
    fn load(&self, text: &str, etag: Option<String>) -> Result<bool, Error> {
        let state = State::from_json(text).map_err(Error::Snapshot)?;
        let current = self.inner.current.load();
        if current.as_ref().is_some_and(|c| c.version >= state.version) {
            return Ok(false);
        }
        let snapshot = Snapshot::compile(&state).map_err(|es| Error::Snapshot(allot_core::Errors(es).to_string()))?;
        self.inner.current.store(Some(Arc::new(Compiled { version: state.version, etag, snapshot })));
        Ok(true)
    }

    /// The configuration version in use (0 before the first snapshot).
    pub fn version(&self) -> u64 {
        self.inner.current.load().as_ref().map_or(0, |c| c.version)
    }

    /// The ids of the experiments the current snapshot serves, in its order (none before the
    /// first snapshot).
    pub fn experiments(&self) -> Vec<String> {
        let cur = self.inner.current.load();
        cur.as_ref().map_or_else(Vec::new, |c| c.snapshot.experiments.iter().map(|e| e.id.clone()).collect())
    }

    /// The unit type (bucket space name) of `experiment`, if the snapshot serves it.
    pub fn unit_type_of(&self, experiment: &str) -> Option<String> {
        let cur = self.inner.current.load();
        let c = cur.as_ref()?;
        let i = c.snapshot.index_of(experiment)?;
        Some(c.snapshot.spaces[c.snapshot.experiments[i].space].name.clone())
    }

    /// Fetches the snapshot if it changed. True when a new version was loaded.
    pub async fn refresh(&self) -> Result<bool, Error> {
        if self.inner.offline {
            return Err(Error::Offline);
        }
        let current = self.inner.current.load_full();
        let mut req = self.inner.http.get(format!("{}/api/v1/snapshot", self.inner.base)).bearer_auth(&self.inner.key);
        if let Some(tag) = current.as_ref().and_then(|c| c.etag.clone()) {
            req = req.header("if-none-match", tag);
        }
        let res = req.send().await?;
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(false);
        }
        if !res.status().is_success() {
            return Err(Error::Status { status: res.status().as_u16(), body: res.text().await.unwrap_or_default() });
        }
        let etag = res.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = res.text().await?;
        self.load(&text, etag)
    }

    /// Evaluates one experiment for a context, in process (and its prerequisites). A sticky
    /// experiment cannot be decided here without the stored assignments: it answers
    /// `STICKY_UNAVAILABLE` and no variant (see [`Client::evaluate_with`]).
    pub fn evaluate(&self, experiment: &str, ctx: &Context) -> Evaluation {
        self.evaluate_with(experiment, ctx, &NotLocal)
    }

    /// Evaluates one experiment with the stored sticky assignments `sticky` supplies (for
    /// example a copy the application keeps of the server's). Where `sticky` does not know a
    /// unit ([`StickyStore::knows`] false) sticky experiments answer `STICKY_UNAVAILABLE`.
    pub fn evaluate_with(&self, experiment: &str, ctx: &Context, sticky: &dyn StickyStore) -> Evaluation {
        let cur = self.inner.current.load();
        let Some(c) = cur.as_ref() else {
            return Evaluation { variant: None, value: None, reason: None, version: 0 };
        };
        let Some(i) = c.snapshot.index_of(experiment) else {
            return Evaluation { variant: None, value: None, reason: None, version: c.version };
        };
        let a = c.snapshot.evaluate_one(i, ctx, sticky);
        let variant = c.snapshot.variant_name(i, &a).map(str::to_string);
        let value = c.snapshot.variant_value(i, &a);
        Evaluation { variant, value, reason: Some(a.reason), version: c.version }
    }

    /// [`Client::evaluate_with`] without building strings: the version used and, when the
    /// snapshot serves `experiment`, its [`Assignment`](allot_core::eval::Assignment) (a variant index into
    /// [`Client::variant_table`]'s list for that version). For bindings whose answer crosses a
    /// language boundary: they pass two numbers and keep the names and values on their side.
    pub fn evaluate_index(
        &self,
        experiment: &str,
        ctx: &Context,
        sticky: Option<&dyn StickyStore>,
    ) -> (u64, Option<allot_core::eval::Assignment>) {
        let cur = self.inner.current.load();
        let Some(c) = cur.as_ref() else { return (0, None) };
        let Some(i) = c.snapshot.index_of(experiment) else { return (c.version, None) };
        (c.version, Some(c.snapshot.evaluate_one(i, ctx, sticky.unwrap_or(&NotLocal))))
    }

    /// Every served experiment's variants, each with its served value, in index order, and the
    /// version they belong to (see [`Client::evaluate_index`]).
    pub fn variant_table(&self) -> (u64, VariantTable) {
        let cur = self.inner.current.load();
        let Some(c) = cur.as_ref() else { return (0, vec![]) };
        let snap = &c.snapshot;
        let table = snap
            .experiments
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let variants = (0..e.split.names.len())
                    .map(|v| {
                        let a = allot_core::eval::Assignment {
                            variant: Some(v as u16),
                            reason: allot_core::eval::Reason::Assigned,
                        };
                        (e.split.names[v].clone(), snap.variant_value(i, &a).unwrap_or(Value::Null))
                    })
                    .collect();
                (e.id.clone(), variants)
            })
            .collect();
        (c.version, table)
    }

    /// The unit `experiment` reads from `ctx` (the value of its unit type's attribute), under the
    /// current snapshot: the unit of its exposures. `None` for an unknown experiment or a context
    /// without that attribute.
    pub fn unit_of(&self, experiment: &str, ctx: &Context) -> Option<String> {
        let cur = self.inner.current.load();
        let c = cur.as_ref()?;
        let i = c.snapshot.index_of(experiment)?;
        c.snapshot.unit_id(c.snapshot.experiments[i].space, ctx).map(|u| u.into_owned())
    }

    /// OpenFeature's `targetingKey` as OFREP maps it ([`Snapshot::fill_targeting_key`]): `key`
    /// becomes the unit id of every unit type whose attribute `ctx` lacks.
    pub fn fill_targeting_key(&self, ctx: &mut Context, key: &str) {
        if let Some(c) = self.inner.current.load().as_ref() {
            c.snapshot.fill_targeting_key(ctx, key);
        }
    }

    /// The unit's bucket in each bucket space whose unit attribute the context carries (space
    /// name → bucket), under the current snapshot: what the golden suites of every SDK compare.
    pub fn buckets(&self, ctx: &Context) -> std::collections::BTreeMap<String, u32> {
        let cur = self.inner.current.load();
        let Some(c) = cur.as_ref() else { return Default::default() };
        c.snapshot
            .spaces
            .iter()
            .filter_map(|s| ctx.get(&s.attribute).and_then(Value::as_str).map(|id| (s.name.clone(), s.bucket(id))))
            .collect()
    }

    /// Queues an exposure (the unit saw `variant` of `experiment`) at the client's clock's time;
    /// sent by [`Client::flush`], which the poller calls, and in the background once 500 are
    /// queued. The same (unit, experiment, variant, UTC day) is queued once
    /// ([`Client::deduplicated_exposures`] counts the repeats; [`Options::dedup_limit`]).
    pub fn expose(&self, unit: &str, experiment: &str, variant: &str) {
        // An experiment or variant the current snapshot does not have would make the server
        // refuse the whole batch it travels in: it is counted and never queued.
        if let Some(c) = self.inner.current.load().as_ref() {
            let known = c
                .snapshot
                .index_of(experiment)
                .is_some_and(|i| c.snapshot.experiments[i].split.names.iter().any(|n| n == variant));
            if !known {
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    experiment,
                    variant,
                    "exposure of an experiment or variant the snapshot does not have: not sent"
                );
                return;
            }
        }
        let now = self.inner.clock.now().to_offset(time::UtcOffset::UTC);
        let key = (self.inner.seen_limit > 0).then(|| exposure_key(&now.date().to_string(), unit, experiment, variant));
        if let Some(key) = &key {
            if self.inner.seen.lock().is_ok_and(|seen| seen.contains(key)) {
                self.inner.deduplicated.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let time = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let x = Exposure {
            unit: unit.into(),
            experiment: experiment.into(),
            variant: variant.into(),
            time,
            version: self.version(),
        };
        let full = match self.inner.queue.lock() {
            Ok(q) if q.len() >= self.inner.queue_limit => {
                drop(q);
                self.dropped(1);
                false
            }
            Ok(mut q) => {
                q.push(x);
                // Seen only once queued: a dropped exposure is not suppressed for the day.
                if let (Some(key), Ok(mut seen)) = (key, self.inner.seen.lock()) {
                    if seen.len() >= self.inner.seen_limit {
                        seen.clear();
                    }
                    seen.insert(key);
                }
                q.len() >= self.inner.batch
            }
            Err(_) => false,
        };
        // One background flush at a time: a burst of exposures past the batch size does not start
        // a flush per call.
        if full && !self.inner.flushing.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let c = self.clone();
                    rt.spawn(async move {
                        if let Err(e) = c.flush().await {
                            tracing::warn!(error = %e, "sending exposures failed");
                        }
                        c.inner.flushing.store(false, Ordering::Release);
                    });
                }
                Err(_) => self.inner.flushing.store(false, Ordering::Release),
            }
        }
    }

    /// Exposures dropped because the queue was full ([`Options::queue_limit`]), since the start.
    pub fn dropped_exposures(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Exposures not queued because the same (unit, experiment, variant, day) was, since the
    /// start.
    pub fn deduplicated_exposures(&self) -> u64 {
        self.inner.deduplicated.load(Ordering::Relaxed)
    }

    /// Exposures never sent because they could not be valid, since the start: an experiment or
    /// variant the snapshot does not have (not queued), or a batch the server refused for good
    /// (a 400, 413 or 422; dropped instead of blocking every later batch).
    pub fn rejected_exposures(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Exposures waiting to be sent.
    pub fn queued_exposures(&self) -> usize {
        self.inner.queue.lock().map_or(0, |q| q.len())
    }

    fn dropped(&self, n: u64) {
        let before = self.inner.dropped.fetch_add(n, Ordering::Relaxed);
        // Said once per power of two, not per exposure.
        if (before + n).next_power_of_two() != before.next_power_of_two() || before == 0 {
            tracing::warn!(
                dropped = before + n,
                limit = self.inner.queue_limit,
                "the exposure queue is full: exposures dropped"
            );
        }
    }

    /// Sends queued exposures in batches; returns how many were sent. A batch the server
    /// refuses for good (a 400, 413 or 422) is dropped and counted
    /// ([`Client::rejected_exposures`]) and the rest are still sent (the first such refusal is
    /// the error returned); on any other failure the unsent ones are queued again.
    pub async fn flush(&self) -> Result<usize, Error> {
        if self.inner.offline {
            return Err(Error::Offline);
        }
        let pending: Vec<Exposure> = match self.inner.queue.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return Ok(0),
        };
        let mut sent = 0;
        let mut refused = None;
        for (k, chunk) in pending.chunks(CHUNK).enumerate() {
            let res = self
                .inner
                .http
                .post(format!("{}/api/v1/exposures", self.inner.base))
                .bearer_auth(&self.inner.key)
                .json(&serde_json::json!({"exposures": chunk}))
                .send()
                .await;
            let failed = match res {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => {
                    let status = r.status().as_u16();
                    let e = Error::Status { status, body: r.text().await.unwrap_or_default() };
                    if matches!(status, 400 | 413 | 422) {
                        // The batch itself is refused (an unknown experiment or variant, too
                        // large): sending it again would fail again and hold back every batch
                        // behind it. Dropped and counted. (A 401, 403 or 404 is the deployment's
                        // problem, not the batch's: kept for the next try.)
                        self.inner.rejected.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        tracing::warn!(error = %e, exposures = chunk.len(), "the server refused a batch of exposures: dropped");
                        refused.get_or_insert(e);
                        continue;
                    }
                    Some(e)
                }
                Err(e) => Some(Error::Http(e)),
            };
            if let Some(e) = failed {
                if let Ok(mut q) = self.inner.queue.lock() {
                    let rest = pending[k * CHUNK..].to_vec();
                    q.splice(0..0, rest);
                    // The oldest are kept (they were first); what no longer fits is dropped,
                    // and forgotten by the deduplication (so the unit's next one is queued).
                    let over = q.len().saturating_sub(self.inner.queue_limit);
                    if over > 0 {
                        let lost: Vec<Exposure> = q.drain(self.inner.queue_limit..).collect();
                        drop(q);
                        self.forget(&lost);
                        self.dropped(over as u64);
                    }
                }
                return Err(e);
            }
            sent += chunk.len();
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Removes dropped exposures' keys from the deduplication set.
    fn forget(&self, lost: &[Exposure]) {
        if let Ok(mut seen) = self.inner.seen.lock() {
            for x in lost {
                let day = x.time.get(..10).unwrap_or_default();
                seen.remove(&exposure_key(day, &x.unit, &x.experiment, &x.variant));
            }
        }
    }

    /// Polls the snapshot and flushes exposures every `every`, until the client is dropped.
    pub fn spawn_polling(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        if self.inner.offline {
            return tokio::spawn(async {});
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let c = Client { inner };
                if let Err(e) = c.refresh().await {
                    tracing::warn!(error = %e, "refreshing the allot snapshot failed");
                }
                if let Err(e) = c.flush().await {
                    tracing::warn!(error = %e, "sending exposures failed");
                }
            }
        })
    }
}
