//! Shared pieces of allot's fuzz targets: a fixed recorded state, a few contexts, and an
//! in-process service (the real axum `Router` over a SQLite store) for the HTTP body targets.
//!
//! Every target asserts what must hold for *any* input (no panic, no 5xx, an accepted change
//! compiles and reloads), so a violated property shows up as a crash libFuzzer records.

use allot_core::config::{self, Config};
use allot_core::eval::{NoSticky, Snapshot};
use allot_core::plan::{self, Options};
use allot_core::state::State;
use allot_core::Context;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

/// The larger example configuration (groups, holdouts, segments, prerequisites, two unit types).
pub const ADVANCED_YAML: &str = include_str!("../../examples/advanced.yaml");

/// Options with a fixed time: planning is pure, so the same input always does the same thing.
pub fn opts(force: bool) -> Options {
    Options {
        time: "2026-01-01T00:00:00Z".into(),
        force,
        reason: force.then(|| "fuzz".to_string()),
        ..Options::default()
    }
}

/// The state recorded by applying [`ADVANCED_YAML`] to an empty state.
pub fn fixed_state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| {
        let raw = config::parse_yaml(ADVANCED_YAML).unwrap_or_else(|e| panic!("{e}"));
        let cfg = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
        plan::apply(&State::default(), &cfg, &raw, &opts(false)).unwrap_or_else(|e| panic!("{e:?}")).state
    })
}

/// A few contexts that reach different paths of the examples (targeting hits and misses, no unit).
pub fn contexts() -> &'static [Context] {
    static C: OnceLock<Vec<Context>> = OnceLock::new();
    C.get_or_init(|| {
        let v = serde_json::json!([
            {"user_id": "u1", "country": "SE", "age": 30, "app_version": "8.3.0", "email": "a@b.se"},
            {"user_id": "u2", "country": "US", "age": 17, "app_version": "7.0.0", "device_id": "d2"},
            {"user_id": "alice", "device_id": "test-device-1"},
            {"device_id": "d9", "country": null, "age": "x"},
            {},
        ]);
        v.as_array().map(|a| a.iter().filter_map(|c| c.as_object().cloned()).collect()).unwrap_or_default()
    })
}

/// Evaluates every experiment of `snap` for each context; evaluation cannot fail, only panic.
pub fn evaluate_all(snap: &Snapshot, ctxs: &[Context]) {
    let mut out = Vec::new();
    for c in ctxs {
        out.clear();
        snap.evaluate_all(c, &NoSticky, &mut out);
        for (i, a) in out.iter().enumerate() {
            let _ = snap.variant_name(i, a);
        }
        for i in 0..snap.experiments.len() {
            let _ = snap.evaluate_one(i, c, &NoSticky);
        }
    }
}

/// What must hold of a state that change control accepted: it compiles (the service starts on
/// it), it round-trips through its file format, and it evaluates.
pub fn check_accepted(state: &State, cfg: &Config) {
    let snap = match Snapshot::compile(state) {
        Ok(s) => s,
        Err(e) => panic!("an accepted state does not compile: {}", allot_core::Errors(e)),
    };
    evaluate_all(&snap, contexts());
    let text = match serde_json::to_string(state) {
        Ok(t) => t,
        Err(e) => panic!("an accepted state does not serialise: {e}"),
    };
    if let Err(e) = State::from_json(&text) {
        panic!("an accepted state does not load back: {e}");
    }
    let _ = allot_core::audit::audit(state, cfg);
}

/// The admin key of the in-process service.
pub const ADMIN: &str = "admin-secret-for-the-fuzz-targets-000001";

/// The configuration the in-process service runs: a holdout, values of several types, an
/// inclusion, a draft, a sticky experiment on its own unit type (so only contexts carrying a
/// `device_id` or a `targetingKey` touch the store), and targeting.
pub const SERVER_CONFIG: &str = r##"
units:
  user: {attribute: user_id}
  device: {attribute: device_id}
surfaces: [home, search]
holdouts:
  hold: {unit: user, share: 10%, applies_to: [home]}
experiments:
  banner:
    unit: user
    surfaces: [home]
    share: 50%
    variants:
      control: {weight: 1, value: false}
      treatment: {weight: 1, value: true}
    include: {alice: treatment}
    state: running
  color:
    unit: user
    surfaces: [search]
    share: 100%
    variants: {blue: 1, green: {weight: 1, value: {hex: "#0f0", n: 2}}}
    targeting: {any: [{attribute: country, in: [SE, NO]}, {attribute: age, gte: 18}]}
    state: running
  later:
    unit: user
    surfaces: [search]
    share: 10%
    variants: {a: 1}
  onboarding:
    unit: device
    share: 50%
    sticky: true
    variants: {short: 1, long: 1}
    state: running
"##;

/// An in-process allot service over a SQLite store in a temporary directory.
pub struct Service {
    rt: tokio::runtime::Runtime,
    app: Arc<allot_server::App>,
    _dir: tempfile::TempDir,
}

/// One answer: status and body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Service {
    /// The service, started once per process with [`SERVER_CONFIG`] applied (version 1).
    pub fn get() -> &'static Service {
        static S: OnceLock<Service> = OnceLock::new();
        S.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("allot.db").display());
            let app = rt.block_on(async {
                let store = allot_store::open(&url).await.unwrap_or_else(|e| panic!("store: {e}"));
                let app = allot_server::App::new(store).await.unwrap_or_else(|e| panic!("app: {e:?}"));
                app.bootstrap(Some(ADMIN)).await.unwrap_or_else(|e| panic!("bootstrap: {e:?}"));
                app
            });
            let s = Service { rt, app, _dir: dir };
            let r = s.call("PUT", "/api/v1/config", &[("if-match", "*")], SERVER_CONFIG.as_bytes());
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            s
        })
    }

    /// One request through the whole router (authentication, limits, metrics) with the admin key.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.rt.block_on(async {
            let mut b = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {ADMIN}"));
            for (h, v) in headers {
                b = b.header(*h, *v);
            }
            let req = b.body(Body::from(body.to_vec())).unwrap_or_else(|e| panic!("request: {e}"));
            let res = allot_server::router(self.app.clone()).oneshot(req).await.unwrap_or_else(|e| match e {});
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            Reply { status, body }
        })
    }

    /// The configuration version the service serves.
    pub fn version(&self) -> u64 {
        self.app.live().version
    }
}
