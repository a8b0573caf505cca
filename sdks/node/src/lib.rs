//! Node.js bindings over [`allot_sdk`]: the native half of the `@allot/sdk` npm package.
//!
//! Nothing here decides anything: every call is a thin conversion to and from
//! [`allot_sdk::Client`] (snapshot polling with ETag, evaluation by `allot-core`, deduplicated
//! and bounded exposure batching). The JavaScript half (`index.js`) gives it its public shape
//! (`Client.connect`, the sticky store object, the OpenFeature provider and hook).
//!
//! Contexts cross the boundary as JSON text (one `JSON.stringify` in JavaScript, one parse
//! here): cheaper than walking a JavaScript object property by property through N-API.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use allot_sdk::{Client, Evaluation, Options, StickyStore};
use napi::bindgen_prelude::{FnArgs, Function};
use napi::{Error, Result, Status};
use napi_derive::napi;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::sync::Mutex;
use std::time::Duration;

/// How a client connects and queues (every field optional).
#[napi(object)]
#[derive(Default)]
pub struct NativeOptions {
    /// Poll the snapshot (and flush exposures) this often; 0 or absent: no polling.
    pub poll_interval_ms: Option<u32>,
    /// PEM certificate(s) to trust for `https://` servers, beside the Mozilla roots.
    pub ca_cert: Option<String>,
    /// Exposures waiting to be sent at most (default 100,000); past it they are dropped and counted.
    pub queue_limit: Option<u32>,
    /// Exposure keys remembered for deduplication (default 100,000; 0: off).
    pub dedup_limit: Option<u32>,
    /// Timeout of each request in milliseconds (default 10,000).
    pub timeout_ms: Option<u32>,
}

impl NativeOptions {
    fn sdk(&self) -> Options {
        let mut o = Options::default();
        if let Some(pem) = &self.ca_cert {
            o.root_certificates.push(pem.clone().into_bytes());
        }
        if let Some(n) = self.queue_limit {
            o.queue_limit = n as usize;
        }
        if let Some(n) = self.dedup_limit {
            o.dedup_limit = n as usize;
        }
        if let Some(ms) = self.timeout_ms {
            o.timeout = Duration::from_millis(u64::from(ms));
        }
        o
    }
}

/// One experiment's answer.
#[napi(object, use_nullable = true)]
pub struct NativeEvaluation {
    /// The variant, if the unit is assigned one.
    pub variant: Option<String>,
    /// Its value (the declared `value`, else the variant name), if assigned.
    pub value: Option<Value>,
    /// allot's reason (`ASSIGNED`, `NOT_ALLOCATED`, …); absent for an unknown experiment.
    pub reason: Option<String>,
    /// The configuration version used (0 before the first snapshot).
    pub version: i64,
}

impl From<Evaluation> for NativeEvaluation {
    fn from(e: Evaluation) -> NativeEvaluation {
        NativeEvaluation {
            variant: e.variant,
            value: e.value,
            reason: e.reason.map(|r| r.as_str().to_string()),
            version: i64::try_from(e.version).unwrap_or(i64::MAX),
        }
    }
}

/// One experiment's answer for an OpenFeature evaluation context (the provider's input).
#[napi(object, use_nullable = true)]
pub struct NativeFlag {
    /// The variant, if the unit is assigned one.
    pub variant: Option<String>,
    /// Its value, if assigned.
    pub value: Option<Value>,
    /// allot's reason; absent for an unknown experiment (`FLAG_NOT_FOUND`).
    pub reason: Option<String>,
    /// OpenFeature's reason for it (`Reason::openfeature`).
    pub openfeature_reason: Option<String>,
    /// The configuration version used.
    pub version: i64,
    /// The experiment's unit type.
    pub unit_type: Option<String>,
}

/// `get(unitType, unit, experiment)` of the application's sticky store.
type GetFn<'a> = Function<'a, FnArgs<(String, String, String)>, Option<String>>;
/// `knows(unitType, unit)` of the application's sticky store.
type KnowsFn<'a> = Function<'a, FnArgs<(String, String)>, bool>;

/// The application's sticky store, called synchronously during evaluation. A JavaScript
/// exception cannot cross [`StickyStore`], so the first one is kept and thrown once the
/// evaluation is over (its answer discarded): a store that fails is loud, never silently empty.
struct JsSticky<'a> {
    get: GetFn<'a>,
    knows: Option<KnowsFn<'a>>,
    failed: RefCell<Option<Error>>,
}

impl JsSticky<'_> {
    fn keep(&self, e: Error) {
        let mut f = self.failed.borrow_mut();
        if f.is_none() {
            *f = Some(e);
        }
    }
}

impl StickyStore for JsSticky<'_> {
    fn get(&self, unit_type: &str, unit: &str, experiment: &str) -> Option<String> {
        if self.failed.borrow().is_some() {
            return None;
        }
        match self.get.call(FnArgs::from((unit_type.to_string(), unit.to_string(), experiment.to_string()))) {
            Ok(v) => v,
            Err(e) => {
                self.keep(e);
                None
            }
        }
    }

    fn knows(&self, unit_type: &str, unit: &str) -> bool {
        let Some(knows) = &self.knows else { return true };
        if self.failed.borrow().is_some() {
            return false;
        }
        match knows.call(FnArgs::from((unit_type.to_string(), unit.to_string()))) {
            Ok(v) => v,
            Err(e) => {
                self.keep(e);
                false
            }
        }
    }
}

fn bad_context(e: impl std::fmt::Display) -> Error {
    Error::new(Status::InvalidArg, format!("context: {e}"))
}

fn context(json: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(json).map_err(bad_context)? {
        Value::Object(m) => Ok(m),
        _ => Err(bad_context("expected an object")),
    }
}

/// An OpenFeature evaluation context (JSON) as allot reads it (OFREP's rule): `targetingKey`
/// (removed) is the unit id of every unit type whose attribute the context does not carry.
fn openfeature_context(client: &Client, json: &str) -> Result<Map<String, Value>> {
    let mut ctx = context(json)?;
    match ctx.remove("targetingKey") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) => client.fill_targeting_key(&mut ctx, &k),
        Some(_) => return Err(bad_context("targetingKey: expected a string")),
    }
    Ok(ctx)
}

fn sdk_error(e: allot_sdk::Error) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

/// Runs `f` with the application's sticky store when one is given (`None`: sticky experiments
/// answer `STICKY_UNAVAILABLE`), then throws the store's first exception, if any.
fn with_sticky<T>(
    get: Option<GetFn<'_>>,
    knows: Option<KnowsFn<'_>>,
    f: impl FnOnce(Option<&dyn StickyStore>) -> T,
) -> Result<T> {
    let Some(get) = get else { return Ok(f(None)) };
    let store = JsSticky { get, knows, failed: RefCell::new(None) };
    let out = f(Some(&store));
    match store.failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// An answer packed into one number, so that an evaluation crosses napi as two strings in and a
/// double out (building a JS object with strings costs more than the evaluation itself):
/// `version * 2^21 + (variant + 1) * 16 + reason`, where `reason` indexes [`reason_names`]
/// (15: the snapshot does not serve the experiment) and `variant` indexes the experiment's
/// variants in [`NativeClient::variant_table`] of that version (0: no variant). −1 when the
/// version does not fit (past 2^32): the caller asks [`NativeClient::evaluate`] instead.
fn pack(version: u64, a: Option<allot_core::eval::Assignment>) -> f64 {
    if version >= 1 << 32 {
        return -1.0;
    }
    let code = match a {
        None => 15,
        Some(a) => {
            let r = allot_core::eval::Reason::ALL.iter().position(|r| *r == a.reason).unwrap_or(15) as u64;
            r + 16 * a.variant.map_or(0, |v| u64::from(v) + 1)
        }
    };
    (version * (1 << 21) + code) as f64
}

/// The reasons a packed answer indexes (allot-core's `Reason::ALL` order).
#[napi]
pub fn reason_names() -> Vec<String> {
    allot_core::eval::Reason::ALL.iter().map(|r| r.as_str().to_string()).collect()
}

/// A client of one `allot serve` (or of a state file): `connect` or `NativeClient.offline`.
#[napi]
pub struct NativeClient {
    client: Client,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Connects to `url` with an evaluator key; resolves once the first snapshot is loaded.
#[napi]
pub async fn connect(url: String, key: String, options: Option<NativeOptions>) -> Result<NativeClient> {
    let options = options.unwrap_or_default();
    let client = Client::connect_with(&url, &key, options.sdk()).await.map_err(sdk_error)?;
    // Inside napi's Tokio runtime here, so the poller can be spawned.
    let poller = match options.poll_interval_ms {
        Some(ms) if ms > 0 => Some(client.spawn_polling(Duration::from_millis(u64::from(ms)))),
        _ => None,
    };
    Ok(NativeClient { client, poller: Mutex::new(poller) })
}

impl NativeClient {
    fn eval(&self, experiment: &str, ctx: &Map<String, Value>, sticky: Option<&dyn StickyStore>) -> Evaluation {
        match sticky {
            None => self.client.evaluate(experiment, ctx),
            Some(s) => self.client.evaluate_with(experiment, ctx, s),
        }
    }
}

#[napi]
impl NativeClient {
    /// A client that never connects, evaluating the state (or snapshot) JSON it is given.
    #[napi(factory)]
    pub fn offline(state_json: String, options: Option<NativeOptions>) -> Result<NativeClient> {
        let options = options.unwrap_or_default();
        let client = Client::offline(&state_json, options.sdk()).map_err(sdk_error)?;
        Ok(NativeClient { client, poller: Mutex::new(None) })
    }

    /// Evaluates one experiment for a context given as JSON text, with the application's sticky
    /// store when given (else sticky experiments answer `STICKY_UNAVAILABLE`).
    #[napi]
    pub fn evaluate(
        &self,
        experiment: String,
        context_json: String,
        sticky_get: Option<GetFn<'_>>,
        sticky_knows: Option<KnowsFn<'_>>,
    ) -> Result<NativeEvaluation> {
        let ctx = context(&context_json)?;
        with_sticky(sticky_get, sticky_knows, |s| self.eval(&experiment, &ctx, s).into())
    }

    /// [`NativeClient::evaluate`] packed into one number (`pack`), without a sticky store.
    #[napi]
    pub fn evaluate_packed(&self, experiment: String, context_json: String) -> Result<f64> {
        let ctx = context(&context_json)?;
        let (version, a) = self.client.evaluate_index(&experiment, &ctx, None);
        Ok(pack(version, a))
    }

    /// [`NativeClient::evaluate_many`] packed (`pack`), one number per experiment.
    #[napi]
    pub fn evaluate_many_packed(&self, experiments: Vec<String>, context_json: String) -> Result<Vec<f64>> {
        let ctx = context(&context_json)?;
        Ok(experiments
            .iter()
            .map(|id| {
                let (version, a) = self.client.evaluate_index(id, &ctx, None);
                pack(version, a)
            })
            .collect())
    }

    /// The variants (name and served value, in index order) of every served experiment, as JSON
    /// `{"version": N, "experiments": {"id": [["name", value], …]}}`: what packed answers index.
    #[napi]
    pub fn variant_table(&self) -> Result<String> {
        let (version, table) = self.client.variant_table();
        let experiments: Map<String, Value> = table
            .into_iter()
            .map(|(id, vs)| {
                (id, Value::Array(vs.into_iter().map(|(n, v)| Value::Array(vec![Value::String(n), v])).collect()))
            })
            .collect();
        serde_json::to_string(&serde_json::json!({"version": version, "experiments": experiments}))
            .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))
    }

    /// Evaluates several experiments (every experiment of the snapshot when `experiments` is
    /// absent) for one context: one parse of the context for all of them.
    #[napi]
    pub fn evaluate_many(
        &self,
        experiments: Option<Vec<String>>,
        context_json: String,
        sticky_get: Option<GetFn<'_>>,
        sticky_knows: Option<KnowsFn<'_>>,
    ) -> Result<Vec<NativeEvaluation>> {
        let ctx = context(&context_json)?;
        let ids = experiments.unwrap_or_else(|| self.client.experiments());
        with_sticky(sticky_get, sticky_knows, |s| ids.iter().map(|id| self.eval(id, &ctx, s).into()).collect())
    }

    /// Evaluates one experiment (an OpenFeature flag) for an OpenFeature evaluation context
    /// ([`NativeClient::openfeature_context`]'s reading of `targetingKey`), with OpenFeature's
    /// reason: the provider's one native call per flag.
    #[napi]
    pub fn evaluate_openfeature(
        &self,
        flag_key: String,
        context_json: String,
        sticky_get: Option<GetFn<'_>>,
        sticky_knows: Option<KnowsFn<'_>>,
    ) -> Result<NativeFlag> {
        let ctx = openfeature_context(&self.client, &context_json)?;
        let e = with_sticky(sticky_get, sticky_knows, |s| self.eval(&flag_key, &ctx, s))?;
        Ok(NativeFlag {
            openfeature_reason: e.reason.map(|r| r.openfeature().to_string()),
            reason: e.reason.map(|r| r.as_str().to_string()),
            unit_type: e.reason.and_then(|_| self.client.unit_type_of(&flag_key)),
            variant: e.variant,
            value: e.value,
            version: i64::try_from(e.version).unwrap_or(i64::MAX),
        })
    }

    /// The ids of the experiments the current snapshot serves, in its order.
    #[napi]
    pub fn experiments(&self) -> Vec<String> {
        self.client.experiments()
    }

    /// An OpenFeature evaluation context (JSON) as an allot context (JSON): `targetingKey` is the
    /// unit id of every unit type whose attribute the context does not carry itself.
    #[napi]
    pub fn openfeature_context(&self, context_json: String) -> Result<String> {
        let ctx = openfeature_context(&self.client, &context_json)?;
        serde_json::to_string(&ctx).map_err(bad_context)
    }

    /// The unit id `experiment`'s unit type reads from the context, if it carries one.
    #[napi]
    pub fn unit_of(&self, experiment: String, context_json: String) -> Result<Option<String>> {
        Ok(self.client.unit_of(&experiment, &context(&context_json)?))
    }

    /// The unit type of `experiment`, if the snapshot serves it.
    #[napi]
    pub fn unit_type_of(&self, experiment: String) -> Option<String> {
        self.client.unit_type_of(&experiment)
    }

    /// The unit's bucket in each bucket space whose attribute the context carries.
    #[napi]
    pub fn buckets(&self, context_json: String) -> Result<Value> {
        let b = self.client.buckets(&context(&context_json)?);
        Ok(Value::Object(b.into_iter().map(|(k, v)| (k, Value::from(v))).collect()))
    }

    /// Queues an exposure (batched, deduplicated per unit, experiment, variant and UTC day).
    #[napi]
    pub fn expose(&self, unit: String, experiment: String, variant: String) {
        // In the runtime, so that a full batch is flushed in the background.
        napi::bindgen_prelude::within_runtime_if_available(|| self.client.expose(&unit, &experiment, &variant));
    }

    /// Sends the queued exposures; resolves to how many were sent.
    #[napi]
    pub async fn flush(&self) -> Result<u32> {
        let n = self.client.flush().await.map_err(sdk_error)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Fetches the snapshot if it changed; resolves to true when a new version was loaded.
    #[napi]
    pub async fn refresh(&self) -> Result<bool> {
        self.client.refresh().await.map_err(sdk_error)
    }

    /// Stops polling (the client still evaluates its last snapshot).
    #[napi]
    pub fn stop_polling(&self) {
        if let Ok(mut p) = self.poller.lock() {
            if let Some(h) = p.take() {
                h.abort();
            }
        }
    }

    /// The configuration version in use.
    #[napi(getter)]
    pub fn version(&self) -> i64 {
        i64::try_from(self.client.version()).unwrap_or(i64::MAX)
    }

    /// Exposures dropped because the queue was full, since the start.
    #[napi(getter)]
    pub fn dropped_exposures(&self) -> i64 {
        i64::try_from(self.client.dropped_exposures()).unwrap_or(i64::MAX)
    }

    /// Exposures not queued because the same (unit, experiment, variant, day) was.
    #[napi(getter)]
    pub fn deduplicated_exposures(&self) -> i64 {
        i64::try_from(self.client.deduplicated_exposures()).unwrap_or(i64::MAX)
    }

    /// Exposures waiting to be sent.
    #[napi(getter)]
    pub fn queued_exposures(&self) -> i64 {
        i64::try_from(self.client.queued_exposures()).unwrap_or(i64::MAX)
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        self.stop_polling();
    }
}
