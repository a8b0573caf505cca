//! Operations: Prometheus text at `/metrics` (requests and latencies per route and status,
//! evaluations by reason, the configuration version), request ids (`x-request-id`, generated
//! when absent and echoed back) and one `tracing` span per request carrying that id.

use crate::App;
use allot_core::eval::Reason;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Upper bounds (seconds) of the latency histogram.
const BOUNDS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

/// Where a path that a correct program never takes was taken anyway: the closed label set of
/// `allot_internal_errors_total{site}`. Each such place logs at error level and counts here
/// ([`internal_error`]) instead of defaulting silently; the answer it then gives is the one it
/// gave before (a fallback value), so that a bug is seen without taking the service down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// Formatting "now" as RFC 3339 failed ([`crate::now`]).
    Clock,
    /// An entity tag was not a valid header value (configuration version, OFREP bulk tag).
    Etag,
    /// One of our own types did not serialize to JSON.
    Json,
    /// A lock was poisoned (a thread panicked while holding it).
    Lock,
    /// A stored state that compiled has no applied configuration that parses.
    State,
    /// An evaluation answered no result for a flag it was asked for.
    Evaluation,
    /// A console page could not be rendered from its template.
    Console,
}

impl Site {
    /// Every site, in label order.
    pub const ALL: [Site; 7] =
        [Site::Clock, Site::Etag, Site::Json, Site::Lock, Site::State, Site::Evaluation, Site::Console];

    /// The `site` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Site::Clock => "clock",
            Site::Etag => "etag",
            Site::Json => "json",
            Site::Lock => "lock",
            Site::State => "state",
            Site::Evaluation => "evaluation",
            Site::Console => "console",
        }
    }
}

// Process-wide, not per App: some sites (the clock) have no App at hand.
static INTERNAL_ERRORS: [AtomicU64; Site::ALL.len()] = [const { AtomicU64::new(0) }; Site::ALL.len()];

/// Logs an impossible path at error level and counts it in `allot_internal_errors_total{site}`.
pub fn internal_error(site: Site, detail: &dyn std::fmt::Display) {
    tracing::error!(site = site.as_str(), %detail, "internal error: a path a correct program never takes");
    let i = Site::ALL.iter().position(|s| *s == site).unwrap_or(0);
    INTERNAL_ERRORS[i].fetch_add(1, Ordering::Relaxed);
}

/// How many times `site` was counted by [`internal_error`] in this process.
pub fn internal_errors(site: Site) -> u64 {
    let i = Site::ALL.iter().position(|s| *s == site).unwrap_or(0);
    INTERNAL_ERRORS[i].load(Ordering::Relaxed)
}

/// Counters of the service.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By route, then method.
    routes: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
    reasons: [AtomicU64; Reason::ALL.len()],
    errors: AtomicU64,
    version: AtomicU64,
    dropped: AtomicU64,
    sticky_dropped: AtomicU64,
}

impl Metrics {
    /// Counts one evaluation with its reason.
    pub fn evaluated(&self, reason: Reason) {
        match Reason::ALL.iter().position(|r| *r == reason) {
            Some(i) => {
                self.reasons[i].fetch_add(1, Ordering::Relaxed);
            }
            None => internal_error(Site::Evaluation, &format_args!("reason {reason:?} is not in Reason::ALL")),
        }
    }

    /// Counts one evaluation that ended in an error (OFREP `FLAG_NOT_FOUND`, ...).
    pub fn evaluation_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the current configuration version.
    pub fn set_version(&self, v: u64) {
        self.version.store(v, Ordering::Relaxed);
    }

    /// Counts exposures dropped because the in-memory buffer was full.
    pub fn exposures_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts sticky assignments dropped because the in-memory buffer was full.
    pub fn sticky_dropped(&self, n: u64) {
        self.sticky_dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.routes.lock() {
            // No allocation once a route and method have been seen.
            let by_method = match m.get_mut(route) {
                Some(b) => b,
                None => m.entry(route.to_string()).or_default(),
            };
            let s = match by_method.get_mut(method) {
                Some(s) => s,
                None => by_method.entry(method.to_string()).or_default(),
            };
            *s.by_status.entry(status).or_default() += 1;
            s.count += 1;
            s.sum += seconds;
            if let Some(i) = BOUNDS.iter().position(|b| seconds <= *b) {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, app: &App) -> String {
        let (version, store_up) = (app.live().version, app.store_up());
        let (pending_exposures, pending_sticky) = (app.pending_exposures(), app.pending_sticky());
        let mut out = String::new();
        let routes: BTreeMap<(String, String), RouteStats> = self
            .routes
            .lock()
            .map(|m| {
                m.iter()
                    .flat_map(|(route, by)| {
                        by.iter().map(move |(method, s)| ((method.clone(), route.clone()), s.clone()))
                    })
                    .collect()
            })
            .unwrap_or_else(|_| {
                internal_error(Site::Lock, &"the route metrics lock is poisoned");
                BTreeMap::new()
            });
        let _ = writeln!(out, "# HELP allot_http_requests_total HTTP requests by method, route and status.");
        let _ = writeln!(out, "# TYPE allot_http_requests_total counter");
        for ((method, route), s) in &routes {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "allot_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP allot_http_request_duration_seconds HTTP request latency by method and route.");
        let _ = writeln!(out, "# TYPE allot_http_request_duration_seconds histogram");
        for ((method, route), s) in &routes {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (b, n) in BOUNDS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(out, "allot_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}");
            }
            let _ = writeln!(out, "allot_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "allot_http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "allot_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        let _ = writeln!(out, "# HELP allot_evaluations_total Experiment evaluations by allot reason.");
        let _ = writeln!(out, "# TYPE allot_evaluations_total counter");
        for (r, n) in Reason::ALL.iter().zip(&self.reasons) {
            let _ = writeln!(out, "allot_evaluations_total{{reason=\"{}\"}} {}", r.as_str(), n.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "allot_evaluations_total{{reason=\"ERROR\"}} {}", self.errors.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP allot_config_version The configuration version evaluation uses.");
        let _ = writeln!(out, "# TYPE allot_config_version gauge");
        let _ = writeln!(out, "allot_config_version {version}");
        let _ = writeln!(
            out,
            "# HELP allot_store_up Whether the store answered the last operation (1) or could not be reached (0)."
        );
        let _ = writeln!(out, "# TYPE allot_store_up gauge");
        let _ = writeln!(out, "allot_store_up {}", u8::from(store_up));
        let _ = writeln!(out, "# HELP allot_exposures_buffered Exposures kept in memory until the store is back.");
        let _ = writeln!(out, "# TYPE allot_exposures_buffered gauge");
        let _ = writeln!(out, "allot_exposures_buffered {pending_exposures}");
        let _ = writeln!(out, "# HELP allot_exposures_dropped_total Exposures dropped because the store was unreachable and the buffer full.");
        let _ = writeln!(out, "# TYPE allot_exposures_dropped_total counter");
        let _ = writeln!(out, "allot_exposures_dropped_total {}", self.dropped.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP allot_sticky_buffered Sticky assignments served while the store was unreachable, kept in memory until it is back.");
        let _ = writeln!(out, "# TYPE allot_sticky_buffered gauge");
        let _ = writeln!(out, "allot_sticky_buffered {pending_sticky}");
        let _ = writeln!(out, "# HELP allot_sticky_dropped_total Sticky assignments not kept because the store was unreachable and the buffer full.");
        let _ = writeln!(out, "# TYPE allot_sticky_dropped_total counter");
        let _ = writeln!(out, "allot_sticky_dropped_total {}", self.sticky_dropped.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP allot_write_queue Requests waiting for the next batch of sticky assignments or exposures."
        );
        let _ = writeln!(out, "# TYPE allot_write_queue gauge");
        let _ = writeln!(out, "allot_write_queue {}", app.queued_writes());
        let c = app.connections();
        let _ = writeln!(out, "# HELP allot_http_connections HTTP connections open now.");
        let _ = writeln!(out, "# TYPE allot_http_connections gauge");
        let _ = writeln!(out, "allot_http_connections {}", c.open.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP allot_http_connections_limit The most HTTP connections open at once (--max-connections)."
        );
        let _ = writeln!(out, "# TYPE allot_http_connections_limit gauge");
        let _ = writeln!(out, "allot_http_connections_limit {}", c.limit.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP allot_http_connections_waited_total Times the connection limit was reached and accepting waited for a connection to close.");
        let _ = writeln!(out, "# TYPE allot_http_connections_waited_total counter");
        let _ = writeln!(out, "allot_http_connections_waited_total {}", c.waited.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP allot_internal_errors_total Paths a correct program never takes, taken anyway (logged at error level), by site.");
        let _ = writeln!(out, "# TYPE allot_internal_errors_total counter");
        for site in Site::ALL {
            let _ =
                writeln!(out, "allot_internal_errors_total{{site=\"{}\"}} {}", site.as_str(), internal_errors(site));
        }
        out
    }
}

/// The `method` label: one of a closed set, whatever the client sent (`other` for the rest), so
/// that no client can grow `/metrics` by inventing methods.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts every request by route and status, with its latency. Labels come from
/// closed sets only: the method folded by [`method_label`], the route template the router
/// matched (`/api/v1/{collection}/{id}`, never the path sent) or `unmatched`, and the status the
/// service answered.
pub async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    app.metrics.request(method, route, res.status().as_u16(), start.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn render(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Debug, Clone)]
struct Counter {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:012x}", self.prefix)).ok().map(RequestId::new)
    }
}

/// Adds request ids (`x-request-id`: kept if the client sent one, else generated; echoed in the
/// response) and a `tracing` span per request with the method, path and id.
pub fn with_request_ids<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let header = HeaderName::from_static("x-request-id");
    let mut seed = [0u8; 4];
    let _ = getrandom::fill(&mut seed);
    let counter = Counter { prefix: u32::from_le_bytes(seed), next: Arc::new(AtomicU64::new(1)) };
    router
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(header, counter))
}

#[cfg(test)]
mod tests {
    use super::{internal_error, internal_errors, Site};

    #[test]
    fn an_internal_error_is_counted_at_its_site_only() {
        let before: Vec<u64> = Site::ALL.iter().map(|s| internal_errors(*s)).collect();
        internal_error(Site::Lock, &"a test");
        for (site, b) in Site::ALL.iter().zip(before) {
            let want = if *site == Site::Lock { b + 1 } else { b };
            assert_eq!(internal_errors(*site), want, "{}", site.as_str());
        }
    }
}
