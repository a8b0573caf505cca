//! allot's Python SDK: the module `allot._allot`, native bindings (PyO3) over [`allot_sdk`].
//!
//! Nothing is decided here: the snapshot is fetched, polled (ETag), compiled and evaluated by
//! `allot-sdk` and `allot-core`, exposures are deduplicated, queued (bounded, with a dropped
//! counter) and sent by `allot-sdk`. This crate converts Python values to JSON and back, runs the
//! SDK's async calls on a small tokio runtime of its own with the GIL released, and adapts an
//! application's Python sticky store to [`allot_sdk::StickyStore`]. The Python package around it
//! (`python/allot/`: the OpenFeature provider and exposure hook, the stubs) is in this directory.

use allot_core::Context;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

pyo3::create_exception!(
    _allot,
    AllotError,
    PyException,
    "An error of the allot SDK (connection, server answer, snapshot)."
);

fn allot_error(e: allot_sdk::Error) -> PyErr {
    AllotError::new_err(e.to_string())
}

/// A Python value as JSON; `path` names it in errors (`context.country`).
fn to_json(v: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = v.cast::<PyInt>() {
        if let Ok(n) = i.extract::<i64>() {
            return Ok(n.into());
        }
        if let Ok(n) = i.extract::<u64>() {
            return Ok(n.into());
        }
        return Err(PyValueError::new_err(format!("{path}: {i} is out of range for a JSON integer")));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        let x = f.value();
        return serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{path}: {x} is not a finite number")));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        return Ok(Value::Object(object(d, path)?));
    }
    if let Ok(l) = v.cast::<PyList>() {
        return l.iter().enumerate().map(|(k, x)| to_json(&x, &format!("{path}[{k}]"))).collect();
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return t.iter().enumerate().map(|(k, x)| to_json(&x, &format!("{path}[{k}]"))).collect();
    }
    Err(PyTypeError::new_err(format!("{path}: a {} is not a JSON value", v.get_type().name()?)))
}

/// A dict with string keys as a JSON object.
fn object(d: &Bound<'_, PyDict>, path: &str) -> PyResult<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in d.iter() {
        let Ok(k) = k.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!("{path}: keys must be strings, not {}", k.get_type().name()?)));
        };
        let k = k.to_str()?;
        let value = to_json(&v, &format!("{path}.{k}"))?;
        m.insert(k.to_owned(), value);
    }
    Ok(m)
}

/// The evaluation context: a dict of attributes.
fn context(v: &Bound<'_, PyAny>) -> PyResult<Context> {
    let Ok(d) = v.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(format!(
            "context: expected a dict of attributes, not {}",
            v.get_type().name()?
        )));
    };
    object(d, "context")
}

/// JSON as a Python value (objects as dicts, arrays as lists).
fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_bound_py_any(py)?,
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py)?,
            (None, Some(u)) => u.into_bound_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?,
        },
        Value::String(s) => s.into_bound_py_any(py)?,
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(to_py(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// An application's sticky store, a Python object with `get(unit_type, unit, experiment) -> str |
/// None` and optionally `knows(unit_type, unit) -> bool`. The first exception it raises is kept
/// and raised by `evaluate` (whose answer is then discarded): a store that fails never lets a
/// variant through that could contradict a stored one.
struct PySticky<'py> {
    store: &'py Bound<'py, PyAny>,
    has_knows: bool,
    failed: RefCell<Option<PyErr>>,
}

impl PySticky<'_> {
    fn fail(&self, e: PyErr) {
        let mut failed = self.failed.borrow_mut();
        if failed.is_none() {
            *failed = Some(e);
        }
    }
}

impl allot_sdk::StickyStore for PySticky<'_> {
    fn get(&self, unit_type: &str, unit: &str, experiment: &str) -> Option<String> {
        match self.store.call_method1("get", (unit_type, unit, experiment)) {
            Ok(v) if v.is_none() => None,
            Ok(v) => match v.extract::<String>() {
                Ok(s) => Some(s),
                Err(_) => {
                    self.fail(PyTypeError::new_err(format!(
                        "sticky.get({unit_type:?}, {unit:?}, {experiment:?}) must answer a variant name (str) or None"
                    )));
                    None
                }
            },
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn knows(&self, unit_type: &str, unit: &str) -> bool {
        if !self.has_knows {
            return true;
        }
        match self.store.call_method1("knows", (unit_type, unit)).and_then(|v| v.is_truthy()) {
            Ok(k) => k,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }
}

/// The result of evaluating one experiment for one context.
#[pyclass(module = "allot._allot", frozen, get_all, skip_from_py_object)]
struct Evaluation {
    /// The experiment (flag key).
    experiment: String,
    /// The variant, if the unit is assigned one.
    variant: Option<String>,
    /// The variant's value (its declared `value`, else its name), if any.
    value: Py<PyAny>,
    /// allot's reason (`ASSIGNED`, `INCLUDED`, `STICKY`, `HOLDOUT`, `NOT_ALLOCATED`, ...), `None`
    /// for an experiment the snapshot does not have.
    reason: Option<String>,
    /// The OpenFeature reason of `reason` (`SPLIT`, `TARGETING_MATCH`, `DEFAULT`, ...), as OFREP
    /// answers it.
    openfeature_reason: Option<String>,
    /// The configuration version used (0 before the first snapshot).
    version: u64,
    /// The unit the experiment reads from the context (its unit type's attribute), if any: the
    /// unit of its exposures.
    unit: Option<String>,
}

#[pymethods]
impl Evaluation {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let text = |o: &Option<String>| o.as_ref().map_or_else(|| "None".to_owned(), |s| format!("{s:?}"));
        Ok(format!(
            "Evaluation(experiment={:?}, variant={}, value={}, reason={}, version={}, unit={})",
            self.experiment,
            text(&self.variant),
            self.value.bind(py).repr()?,
            text(&self.reason),
            self.version,
            text(&self.unit)
        ))
    }
}

/// A client of one `allot serve` (or of a state file: [`Client::offline`]).
#[pyclass(module = "allot._allot", frozen)]
struct Client {
    sdk: allot_sdk::Client,
    /// The runtime of the SDK's requests and poller (`None` offline, and once closed). A call
    /// that uses it holds the read lock for as long as it does, so `close` (the write lock) waits
    /// for calls in flight on other threads instead of shutting the runtime down under them.
    rt: RwLock<Option<tokio::runtime::Runtime>>,
    /// Made with a server (else [`Client::offline`]).
    online: bool,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

fn options(queue_limit: usize, dedup_limit: usize, timeout: f64) -> PyResult<allot_sdk::Options> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(PyValueError::new_err(format!("timeout: {timeout} is not a positive number of seconds")));
    }
    Ok(allot_sdk::Options {
        queue_limit,
        dedup_limit,
        timeout: Duration::from_secs_f64(timeout),
        ..allot_sdk::Options::default()
    })
}

impl Client {
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl std::future::Future<Output = Result<T, allot_sdk::Error>> + Send,
    ) -> PyResult<T> {
        if !self.online {
            return Err(allot_error(allot_sdk::Error::Offline));
        }
        py.detach(|| {
            let rt = self.rt.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            match rt.as_ref() {
                Some(rt) if !self.closed.load(Ordering::Acquire) => rt.block_on(f).map_err(allot_error),
                _ => Err(AllotError::new_err("this client is closed")),
            }
        })
    }
}

#[pymethods]
impl Client {
    /// Connects to `url` with an evaluator key, fetches the first snapshot, then polls it (and
    /// sends queued exposures) every `poll_interval` seconds (`None` or 0: never; call `refresh`
    /// and `flush`).
    #[new]
    #[pyo3(signature = (url, key, *, poll_interval=Some(5.0), ca_cert=None, only_ca_cert=false,
        queue_limit=allot_sdk::DEFAULT_QUEUE_LIMIT, dedup_limit=allot_sdk::DEFAULT_DEDUP_LIMIT, timeout=10.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &str,
        key: &str,
        poll_interval: Option<f64>,
        ca_cert: Option<&Bound<'_, PyAny>>,
        only_ca_cert: bool,
        queue_limit: usize,
        dedup_limit: usize,
        timeout: f64,
    ) -> PyResult<Client> {
        let mut opts = options(queue_limit, dedup_limit, timeout)?;
        if let Some(ca) = ca_cert {
            let pem = if let Ok(b) = ca.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else {
                let path: std::path::PathBuf = ca
                    .extract()
                    .map_err(|_| PyTypeError::new_err("ca_cert: expected a path to a PEM file, or the PEM's bytes"))?;
                std::fs::read(&path).map_err(|e| PyValueError::new_err(format!("ca_cert: {}: {e}", path.display())))?
            };
            opts.root_certificates.push(pem);
            opts.only_these_roots = only_ca_cert;
        }
        let every = match poll_interval {
            None => None,
            Some(0.0) => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => {
                return Err(PyValueError::new_err(format!("poll_interval: {s} is not a positive number of seconds")))
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("allot-sdk")
            .enable_all()
            .build()
            .map_err(|e| AllotError::new_err(format!("cannot start the SDK's runtime: {e}")))?;
        let handle = rt.handle().clone();
        let sdk =
            py.detach(|| handle.block_on(allot_sdk::Client::connect_with(url, key, opts))).map_err(allot_error)?;
        let poller = every.map(|d| {
            let _in = handle.enter();
            sdk.spawn_polling(d)
        });
        Ok(Client {
            sdk,
            rt: RwLock::new(Some(rt)),
            online: true,
            poller: Mutex::new(poller),
            closed: AtomicBool::new(false),
        })
    }

    /// A client of a state file's JSON (what `allot apply` records or `GET /api/v1/snapshot`
    /// serves), without a server: for tests, golden files and offline tools. `refresh` and
    /// `flush` raise `AllotError`; exposures stay queued (`queued_exposures`).
    #[staticmethod]
    #[pyo3(signature = (state, *, queue_limit=allot_sdk::DEFAULT_QUEUE_LIMIT, dedup_limit=allot_sdk::DEFAULT_DEDUP_LIMIT))]
    fn offline(state: &str, queue_limit: usize, dedup_limit: usize) -> PyResult<Client> {
        let sdk = allot_sdk::Client::offline(state, options(queue_limit, dedup_limit, 10.0)?).map_err(allot_error)?;
        Ok(Client {
            sdk,
            rt: RwLock::new(None),
            online: false,
            poller: Mutex::new(None),
            closed: AtomicBool::new(false),
        })
    }

    /// Evaluates `experiment` for `context` (a dict of attributes) in process. `sticky`: the
    /// application's sticky store (`get(unit_type, unit, experiment) -> str | None`, optionally
    /// `knows(unit_type, unit) -> bool`); without one, sticky experiments answer
    /// `STICKY_UNAVAILABLE` and no variant. `targeting_key`: OpenFeature's, the unit id of every
    /// unit type whose attribute the context lacks.
    #[pyo3(signature = (experiment, context, sticky=None, targeting_key=None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        experiment: &str,
        context: &Bound<'_, PyAny>,
        sticky: Option<&Bound<'_, PyAny>>,
        targeting_key: Option<&str>,
    ) -> PyResult<Evaluation> {
        let mut ctx = self::context(context)?;
        if let Some(k) = targeting_key {
            self.sdk.fill_targeting_key(&mut ctx, k);
        }
        let e = match sticky {
            None => self.sdk.evaluate(experiment, &ctx),
            Some(store) => {
                let adapter = PySticky { store, has_knows: store.hasattr("knows")?, failed: RefCell::new(None) };
                let e = self.sdk.evaluate_with(experiment, &ctx, &adapter);
                if let Some(err) = adapter.failed.into_inner() {
                    return Err(err);
                }
                e
            }
        };
        let value = match &e.value {
            Some(v) => to_py(py, v)?.unbind(),
            None => py.None(),
        };
        Ok(Evaluation {
            experiment: experiment.to_owned(),
            unit: if e.reason.is_some() { self.sdk.unit_of(experiment, &ctx) } else { None },
            variant: e.variant,
            value,
            reason: e.reason.map(|r| r.as_str().to_owned()),
            openfeature_reason: e.reason.map(|r| r.openfeature().to_owned()),
            version: e.version,
        })
    }

    /// The unit's bucket in each bucket space whose attribute the context carries.
    fn buckets(&self, context: &Bound<'_, PyAny>) -> PyResult<std::collections::BTreeMap<String, u32>> {
        Ok(self.sdk.buckets(&self::context(context)?))
    }

    /// Queues an exposure: the unit saw `variant` of `experiment`. Deduplicated per (unit,
    /// experiment, variant, UTC day); never blocks (a full queue drops it and counts it in
    /// `dropped_exposures`). Sent by the poller, by `flush`, and in the background once 500 wait.
    fn expose(&self, unit: &str, experiment: &str, variant: &str) {
        // The SDK starts its background flush on the runtime it runs in.
        // The read lock: `close` cannot shut the runtime down while this spawns on it.
        let rt = self.rt.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _in = rt.as_ref().filter(|_| !self.closed.load(Ordering::Acquire)).map(|rt| rt.enter());
        self.sdk.expose(unit, experiment, variant);
    }

    /// Sends the queued exposures now; returns how many were sent. Raises `AllotError` when the
    /// server cannot take them (they stay queued, within the queue's bound).
    fn flush(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, self.sdk.flush())
    }

    /// Fetches the snapshot if it changed; True when a new version was loaded.
    fn refresh(&self, py: Python<'_>) -> PyResult<bool> {
        self.run(py, self.sdk.refresh())
    }

    /// Stops polling, sends what is queued (best effort: if the server cannot be reached the
    /// exposures are lost, and `queued_exposures` says how many) and stops the client's threads.
    /// Evaluation keeps answering from the last snapshot.
    fn close(&self, py: Python<'_>) {
        if let Ok(mut p) = self.poller.lock() {
            if let Some(p) = p.take() {
                p.abort();
            }
        }
        if self.online && !self.closed.load(Ordering::Acquire) {
            let _ = self.run(py, self.sdk.flush());
        }
        self.closed.store(true, Ordering::Release);
        // Without the GIL: a call in flight on another thread holds the read lock and needs the
        // GIL back to return; this waits for it, then no call can reach the runtime any more.
        let rt = py.detach(|| self.rt.write().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        if let Some(rt) = rt {
            rt.shutdown_background();
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// The configuration version in use (0 before the first snapshot).
    #[getter]
    fn version(&self) -> u64 {
        self.sdk.version()
    }

    /// Exposures dropped because the queue was full, since the start.
    #[getter]
    fn dropped_exposures(&self) -> u64 {
        self.sdk.dropped_exposures()
    }

    /// Exposures not queued because the same (unit, experiment, variant, day) was.
    #[getter]
    fn deduplicated_exposures(&self) -> u64 {
        self.sdk.deduplicated_exposures()
    }

    /// Exposures waiting to be sent.
    #[getter]
    fn queued_exposures(&self) -> usize {
        self.sdk.queued_exposures()
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.sdk)
    }

    /// For `bench/python-sdk.sh`: nanoseconds per evaluation of each of `experiments` for
    /// `rounds` contexts taken in turn from `contexts`, timed in Rust with the contexts converted
    /// once beforehand (allot-sdk's `evaluate` on the same snapshot, no Python in the loop).
    fn _time_rust(
        &self,
        py: Python<'_>,
        experiments: Vec<String>,
        contexts: &Bound<'_, PyList>,
        rounds: usize,
    ) -> PyResult<f64> {
        let ctxs: Vec<Context> = contexts.iter().map(|c| context(&c)).collect::<PyResult<_>>()?;
        if ctxs.is_empty() || experiments.is_empty() || rounds == 0 {
            return Err(PyValueError::new_err("experiments, contexts and rounds must not be empty"));
        }
        let sdk = &self.sdk;
        let (n, elapsed) = py.detach(|| {
            let t = std::time::Instant::now();
            let mut n = 0u64;
            for i in 0..rounds {
                let c = &ctxs[i % ctxs.len()];
                for e in &experiments {
                    std::hint::black_box(sdk.evaluate(e, c));
                    n += 1;
                }
            }
            (n, t.elapsed())
        });
        Ok(elapsed.as_nanos() as f64 / n as f64)
    }
}

/// The native module.
#[pymodule]
fn _allot(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Evaluation>()?;
    m.add("AllotError", m.py().get_type::<AllotError>())?;
    Ok(())
}
