//! The lifecycle of `allot serve`, in-process: [`start`] (load the store's version, create the
//! first admin key on an empty store, import `--state`, apply `--config` through change control,
//! catch up and start the refresh loop) and [`Started::serve`] (serve until `shutdown`, drain,
//! then one last bounded write of what is buffered in memory).
//!
//! `allot serve` (crates/allot-cli/src/serve.rs) parses flags, sets up logging, binds and opens
//! the store, then calls these; tests call them the same way. [`start`] takes the bound listener:
//! a server that cannot listen never gets as far as creating the first admin key.

use crate::http::{Limits, Tls};
use crate::{summary, ApiError, App, Bootstrap, ChangeRequest, IfMatch};
use allot_core::state::State;
use allot_store::import::Imported;
use allot_store::Store;
use axum::Router;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What `allot serve` does at start, besides serving the store's current version.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ALLOT_BOOTSTRAP_ADMIN_KEY`: the first admin key on an empty key table (else one is
    /// generated); ignored, with a warning, on a store that has keys.
    pub bootstrap_key: Option<String>,
    /// `--state FILE`, already read: imported into an empty store, or found already there.
    pub state: Option<(PathBuf, State)>,
    /// `--config FILE` when given: applied through change control after the import.
    pub config: Option<PathBuf>,
    /// `--force` (with `reason`): apply the file despite refusals.
    pub force: bool,
    /// `--reason`.
    pub reason: Option<String>,
    /// `--actor`: who imports and applies (default `state-import`, `config-file`).
    pub actor: Option<String>,
    /// `--plan-budget-ms`.
    pub plan_budget: Duration,
    /// `--version-poll-ms`.
    pub poll: Duration,
    /// `--ofrep-unassigned`, `--rate-limit`.
    pub policy: crate::Policy,
    /// Shows a generated first admin key, once (the CLI prints it to stderr); called before the
    /// import and the apply.
    pub show_generated_key: fn(&str),
}

/// Why [`start`] stopped: the service must not serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store's current version could not be loaded or compiled.
    #[error("loading the configuration: {0}")]
    Load(ApiError),
    /// `ALLOT_BOOTSTRAP_ADMIN_KEY` is unfit (too short, control characters): the field error.
    #[error("{0}")]
    BootstrapKey(String),
    /// The first admin key could not be created.
    #[error("creating the first admin key: {0}")]
    Bootstrap(ApiError),
    /// `--state`: does not compile, or the store records something else.
    #[error("--state {}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `--config` could not be read.
    #[error("reading {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--config` could not be applied for a reason other than the file itself (the store).
    #[error("applying {}: {error}", path.display())]
    ApplyConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ApiError,
    },
}

/// A started service, not yet serving.
#[derive(Debug)]
pub struct Started {
    /// The service.
    pub app: Arc<App>,
    /// What became of the first admin key.
    pub bootstrap: Bootstrap,
    /// The bound listener.
    listener: TcpListener,
    /// The refresh loop (stops when the app is dropped).
    refresh: tokio::task::JoinHandle<()>,
}

/// What the last write before stopping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing was buffered.
    Nothing,
    /// Every buffered row was written.
    Written {
        /// Exposures written.
        exposures: usize,
        /// Sticky assignments written.
        sticky: usize,
    },
    /// The database could not be reached in time: these rows are lost.
    Lost {
        /// Exposures lost.
        exposures: usize,
        /// Sticky assignments lost.
        sticky: usize,
    },
}

/// How long [`Started::serve`] tries to write buffered rows after the last request.
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the service over `store` on the bound `listener`: loads the current version, creates
/// the first admin key on an empty key table, imports `opts.state`, applies `opts.config`, picks
/// up any version committed meanwhile and starts the refresh loop. A refused or invalid
/// configuration file is logged and not applied (the store's version is served); a `--state`
/// that does not fit the store is an error.
pub async fn start(listener: TcpListener, store: Arc<dyn Store>, opts: Options) -> Result<Started, StartError> {
    let app = App::new(store).await.map_err(StartError::Load)?;
    app.set_plan_budget(opts.plan_budget);
    app.set_policy(opts.policy.clone());
    let bootstrap = match app.bootstrap(opts.bootstrap_key.as_deref()).await {
        Ok(b) => b,
        Err(ApiError::Invalid(es)) => return Err(StartError::BootstrapKey(summary(&es))),
        Err(e) => return Err(StartError::Bootstrap(e)),
    };
    match &bootstrap {
        Bootstrap::Existing => {}
        Bootstrap::Ignored => tracing::warn!(
            "ALLOT_BOOTSTRAP_ADMIN_KEY is ignored: the store already has keys and this is not one of its live keys (create keys with POST /api/v1/keys)"
        ),
        Bootstrap::FromEnvironment => tracing::info!("ALLOT_BOOTSTRAP_ADMIN_KEY is the first admin key"),
        Bootstrap::Generated(secret) => (opts.show_generated_key)(secret),
    }
    if let Some((path, state)) = opts.state.clone() {
        import_state(&app, &opts, path, state).await?;
    }
    if let Some(path) = &opts.config {
        apply_file(&app, &opts, path).await?;
    }
    // Serve at least the version the store has now (another node may have committed since the
    // app was loaded, e.g. the same file, found applied above).
    if let Err(e) = app.refresh().await {
        tracing::warn!(error = %e, "refresh from the store failed");
    }
    let refresh = app.spawn_refresh(opts.poll);
    Ok(Started { app, bootstrap, listener, refresh })
}

impl Started {
    /// The address the service listens on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `router` (built over [`Started::app`]; HTTPS with `tls`) until `shutdown`
    /// completes, drains in-flight requests, then writes what is buffered ([`final_flush`]).
    pub async fn serve(
        self,
        router: Router,
        tls: Option<Tls>,
        limits: Limits,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Flushed {
        let Started { app, listener, refresh, .. } = self;
        // Event streams end as the shutdown begins, so that they do not hold up the drain.
        let closing = app.clone();
        let shutdown = async move {
            shutdown.await;
            closing.close_event_streams();
        };
        if let Ok(addr) = listener.local_addr() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            // A wildcard address is not one a browser can open: the console's URL names loopback.
            let mut local = addr;
            if local.ip().is_unspecified() {
                local.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
            }
            let console = format!("{scheme}://{local}/console");
            tracing::info!(%addr, version = app.live().version, %console, "allot serving on {scheme}://{addr}; open the console at {console}");
        }
        match tls {
            Some(tls) => crate::http::serve_tls(listener, tls, router, limits, app.connections(), shutdown).await,
            None => crate::http::serve(listener, router, limits, app.connections(), shutdown).await,
        };
        let flushed = final_flush(&app, FINAL_FLUSH_TIMEOUT).await;
        refresh.abort();
        tracing::info!("stopped");
        flushed
    }
}

/// Rows kept in memory during an outage: one last try, bounded by `timeout`, then says (and
/// logs) what is lost.
pub async fn final_flush(app: &App, timeout: Duration) -> Flushed {
    let (exposures, sticky) = (app.pending_exposures(), app.pending_sticky());
    if exposures + sticky == 0 {
        return Flushed::Nothing;
    }
    match tokio::time::timeout(timeout, app.flush_pending()).await {
        Ok(Ok(())) => {
            tracing::info!(exposures, sticky, "buffered rows written before stopping");
            Flushed::Written { exposures, sticky }
        }
        _ => {
            let (exposures, sticky) = (app.pending_exposures(), app.pending_sticky());
            tracing::warn!(
                exposures,
                sticky,
                "the database cannot be reached: buffered exposures and sticky assignments are lost"
            );
            Flushed::Lost { exposures, sticky }
        }
    }
}

/// Imports the CLI's recorded state (`--state FILE`): into an empty store, or found already there;
/// any other store refuses to start (it would serve other assignments than `allot assign`).
async fn import_state(app: &App, opts: &Options, path: PathBuf, state: State) -> Result<(), StartError> {
    let actor = opts.actor.clone().unwrap_or_else(|| "state-import".into());
    match app.import_state(state, &actor).await {
        Ok(Imported::Imported { version }) => {
            tracing::info!(file = %path.display(), version, "recorded state imported: serving it")
        }
        Ok(Imported::AlreadyThere { version, current }) => {
            tracing::info!(file = %path.display(), version, current, "recorded state already in the store")
        }
        Err(ApiError::Invalid(es)) => return Err(StartError::State { path, message: summary(&es) }),
        Err(e) => return Err(StartError::State { path, message: e.to_string() }),
    }
    Ok(())
}

/// Applies the configuration file through change control. A refused or invalid file is reported
/// and nothing of it is applied; the service keeps serving the version it has.
async fn apply_file(app: &App, opts: &Options, path: &std::path::Path) -> Result<(), StartError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| StartError::ReadConfig { path: path.to_path_buf(), source })?;
    let raw = match allot_core::config::parse_yaml(&text) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "configuration file not applied");
            return Ok(());
        }
    };
    let req = ChangeRequest {
        raw,
        if_match: IfMatch::Any,
        force: opts.force,
        reason: opts.reason.clone(),
        actor: opts.actor.clone().unwrap_or_else(|| "config-file".into()),
        action: "config.file".into(),
    };
    // Another node may commit between our plan and our commit (several nodes started with the
    // same file): re-plan over the new version, where the file is usually found applied.
    let mut outcome = app.change(req.clone()).await;
    for _ in 0..5 {
        if !matches!(outcome, Err(ApiError::VersionMismatch { .. })) {
            break;
        }
        outcome = app.change(req.clone()).await;
    }
    match outcome {
        Ok(c) if c.committed => {
            tracing::info!(file = %path.display(), version = c.version, changes = c.plan.changes.len(), "configuration file applied")
        }
        Ok(c) => {
            tracing::info!(file = %path.display(), version = c.version, "configuration file already applied")
        }
        Err(ApiError::Refused(plan)) => {
            for r in &plan.refusals {
                tracing::error!(path = %r.path, rule = %r.rule, "refused: {}", r.message);
            }
            tracing::error!(
                file = %path.display(),
                version = app.live().version,
                "configuration file refused by change control; nothing of it was applied (fix it, or serve with --force --reason TEXT)"
            );
        }
        Err(ApiError::Invalid(es)) => {
            for e in &es {
                tracing::error!(path = %e.path, "invalid: {}", e.message);
            }
            tracing::error!(file = %path.display(), "configuration file invalid; nothing of it was applied");
        }
        Err(e @ (ApiError::PlanTimeout { .. } | ApiError::PlanBusy { .. })) => {
            // Not a reason to stay down: the store's version is served, the file can be applied
            // later (raise --plan-budget-ms, or PUT it).
            tracing::error!(file = %path.display(), version = app.live().version, "configuration file not applied: {e}");
        }
        Err(error) => return Err(StartError::ApplyConfig { path: path.to_path_buf(), error }),
    }
    Ok(())
}
