//! The console: the service's web interface for people, served by `allot serve` itself
//! (`/console`; `/` redirects there). Server-rendered HTML from askama templates
//! (`templates/`), a stylesheet and a little progressive script embedded in the binary
//! (`assets/`); nothing is loaded from elsewhere and every page works without script.
//!
//! Askama rather than maud: the pages are HTML files a reader can open beside the code, checked
//! and compiled into the binary like maud's, and escaped by default (every `{{ }}` in an `.html`
//! template is HTML-escaped unless marked `|safe`, which no template here uses).
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | `session` | sign-in with an API key, the session cookie, CSRF and same-origin checks |
//! | `page` | the shared chrome, error pages, the security headers (CSP, nosniff, ...) |
//! | `assets` | the embedded stylesheet and script, served under content-hashed paths |
//! | `space` | the bucket space per unit type and scope, drawn exactly from the bucket sets |
//! | `timeline` | each scope's Gantt chart: allocations over versions, re-salts, planned drafts |
//! | `pages` | the handlers: sign-in, overview, experiment, every change through its preview (lifecycle, grow, entity forms, import, re-salt), the configuration and its YAML export |
//!
//! Every page reads one [`View`] of the current version (its state, configuration, audit and
//! space), computed once per version and shared.

mod assets;
mod page;
mod pages;
mod session;
mod space;
mod timeline;

use crate::error::ApiError;
use crate::App;
use allot_core::audit::Audit;
use allot_core::config::Config;
use allot_core::state::State;
use axum::routing::{get, post};
use axum::Router;
use std::sync::{Arc, Mutex};

/// The console's routes (merged into [`crate::router`]; the API key middleware lets them
/// through, see [`crate::auth::Need::Console`]).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/console") }))
        .route("/console", get(pages::overview::get))
        .route("/console/", get(|| async { axum::response::Redirect::to("/console") }))
        .route("/console/sign-in", get(pages::sign_in::form).post(pages::sign_in::post))
        .route("/console/sign-out", post(pages::sign_in::sign_out))
        .route("/console/experiments/{id}", get(pages::experiment::get))
        .route("/console/experiments/{id}/why", get(pages::why::get))
        .route("/console/experiments/{id}/results", get(pages::results::get))
        .route("/console/experiments/{id}/{action}", post(pages::change::preview))
        .route("/console/experiments/{id}/{action}/confirm", post(pages::change::confirm))
        .route("/console/config", get(pages::editor::config))
        .route("/console/timeline", get(pages::timeline::get))
        .route("/console/diagnostics", get(pages::diagnostics::get))
        .route("/console/bandwidth", get(pages::bandwidth::get))
        .route("/console/keys", get(pages::keys::list).post(pages::keys::create))
        .route("/console/keys/{id}/revoke", post(pages::keys::revoke))
        .route("/console/audit", get(pages::audit::log))
        .route("/console/audit/{version}", get(pages::audit::entry))
        .route("/console/versions/{version}", get(pages::audit::version))
        .route("/console/new/{collection}", get(pages::editor::new_form).post(pages::editor::new_preview))
        .route("/console/new/{collection}/confirm", post(pages::editor::new_confirm))
        .route("/console/edit/{collection}/{id}", get(pages::editor::edit_form).post(pages::editor::edit_preview))
        .route("/console/edit/{collection}/{id}/confirm", post(pages::editor::edit_confirm))
        .route("/console/import", get(pages::editor::import_form).post(pages::editor::import_preview))
        .route("/console/import/confirm", post(pages::editor::import_confirm))
        .route("/console/export.yaml", get(pages::editor::export))
        .route("/console/resalt", get(pages::resalt::form).post(pages::resalt::preview))
        .route("/console/resalt/confirm", post(pages::resalt::confirm))
        .route("/console/assets/{name}", get(assets::serve))
        .route("/console/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(axum::middleware::from_fn(page::secure))
}

/// One configuration version as the console shows it.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) version: u64,
    pub(crate) state: State,
    pub(crate) cfg: Config,
    pub(crate) audit: Audit,
    pub(crate) spaces: Vec<space::UnitView>,
}

impl View {
    /// Computes the view of `state` (its applied configuration, the audit with the exclusive
    /// pairs, the spaces).
    pub(crate) fn of(state: State) -> Result<View, ApiError> {
        let t0 = std::time::Instant::now();
        let cfg = allot_core::state::applied_config(&state)
            .map_err(|es| {
                ApiError::Internal(format!("the stored configuration does not validate: {}", crate::summary(&es)))
            })?
            .unwrap_or_default();
        let t1 = std::time::Instant::now();
        // The exclusivity proof and every number of the pages, without the independent pairs'
        // shared buckets (quadratic, read only by the experiment page, which asks its own).
        let audit = allot_core::audit::audit_pairs(&state, &cfg, allot_core::audit::Pairs::Exclusive);
        let t2 = std::time::Instant::now();
        let spaces = space::spaces(&state, &cfg, &audit);
        tracing::debug!(
            version = state.version,
            config_ms = (t1 - t0).as_millis(),
            audit_ms = (t2 - t1).as_millis(),
            spaces_ms = t2.elapsed().as_millis(),
            "console view computed"
        );
        Ok(View { version: state.version, state, cfg, audit, spaces })
    }
}

/// The last [`View`] computed on this node.
#[derive(Debug, Default)]
pub(crate) struct Views {
    last: Mutex<Option<Arc<View>>>,
    /// Held while a view is computed: requests that arrive meanwhile wait for it instead of
    /// computing the same view again.
    computing: tokio::sync::Mutex<()>,
    /// When a page last asked for a view: only a console in use is kept computed ahead.
    asked: Mutex<Option<std::time::Instant>>,
}

/// How long after its last page the console's view is still computed ahead of requests.
const KEEP_AHEAD: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Keeps the console's view of the current version computed ahead of its pages while the
/// console is in use (a page in the last [`KEEP_AHEAD`]): checked every `every`, so that the
/// first page after a change rarely pays for the audit. Runs until the app is dropped.
pub(crate) fn spawn_ahead(app: &Arc<App>, every: std::time::Duration) {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(50)));
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            let in_use = app.views.asked.lock().ok().and_then(|a| *a).is_some_and(|t| t.elapsed() < KEEP_AHEAD);
            if in_use && app.views.at_least(app.live().version).is_none() {
                if let Err(e) = app.compute_view().await {
                    tracing::debug!(error = %e, "computing the console's view ahead failed");
                }
            }
        }
    });
}

impl Views {
    fn at_least(&self, version: u64) -> Option<Arc<View>> {
        self.last.lock().ok().and_then(|l| l.clone()).filter(|v| v.version >= version)
    }
}

impl App {
    /// Forgets the console's view, so that the next page computes it again. For the benchmark
    /// of a page's first request after a change; not for production use.
    #[doc(hidden)]
    pub fn forget_console_view(&self) {
        if let Ok(mut l) = self.views.last.lock() {
            *l = None;
        }
    }

    /// The version of the console's view computed last on this node, if any. For tests.
    #[doc(hidden)]
    pub fn console_view_version(&self) -> Option<u64> {
        self.views.last.lock().ok().and_then(|l| l.as_ref().map(|v| v.version))
    }

    /// The view of the current version: the one computed last if it is still current, else
    /// computed now (off the runtime: the audit is CPU work).
    pub(crate) async fn console_view(&self) -> Result<Arc<View>, ApiError> {
        if let Ok(mut a) = self.views.asked.lock() {
            *a = Some(std::time::Instant::now());
        }
        self.compute_view().await
    }

    /// [`App::console_view`] without counting as a page's request.
    async fn compute_view(&self) -> Result<Arc<View>, ApiError> {
        let current = self.live().version;
        if let Some(v) = self.views.at_least(current) {
            return Ok(v);
        }
        let _computing = self.views.computing.lock().await;
        if let Some(v) = self.views.at_least(current) {
            return Ok(v);
        }
        let loaded = self.store.load_current().await;
        self.observe(&loaded);
        let (_, state) = loaded?;
        let view = tokio::task::spawn_blocking(move || View::of(state))
            .await
            .map_err(|e| ApiError::Internal(format!("console view: {e}")))??;
        let view = Arc::new(view);
        if let Ok(mut l) = self.views.last.lock() {
            if l.as_ref().is_none_or(|old| old.version <= view.version) {
                *l = Some(view.clone());
            }
        }
        Ok(view)
    }
}
