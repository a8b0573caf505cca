//! `GET /console`: the bucket space of every unit type, scope by scope, and the experiments.

use crate::console::page::{html, Chrome, Problem};
use crate::console::space::{pct, UnitView};
use crate::console::View;
use crate::App;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// A row of the experiments table.
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) state: &'static str,
    pub(crate) unit: String,
    pub(crate) scopes: String,
    /// Exact share held (running: from the audit), else the requested share.
    pub(crate) share: String,
    pub(crate) buckets: String,
    pub(crate) reach: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview<'a> {
    chrome: Chrome,
    spaces: &'a [UnitView],
    experiments: Vec<Row>,
    violations: &'a [String],
    warnings: &'a [String],
    exclusive_pairs: usize,
    exclusive_disjoint: usize,
}

/// The rows of the experiments table.
pub(crate) fn rows(view: &View) -> Vec<Row> {
    view.cfg
        .experiments
        .iter()
        .map(|(id, e)| {
            let mut scopes: Vec<String> = e.surfaces.iter().map(|s| format!("surface {s}")).collect();
            scopes.extend(e.tags.iter().map(|t| format!("tag {t}")));
            scopes.extend(e.exclusive_to.iter().map(|t| format!("exclusive to {t}")));
            scopes.extend(e.groups.iter().map(|g| {
                let slots: Vec<String> = g.slots.iter().map(|s| (s + 1).to_string()).collect();
                format!("group {} (slots {})", g.group, slots.join(", "))
            }));
            let audited = view.audit.experiments.get(id);
            Row {
                id: id.clone(),
                state: e.state_name(),
                unit: e.unit.clone(),
                scopes: scopes.join("; "),
                share: match (audited, e.share) {
                    (Some(a), _) => pct(a.share),
                    (None, Some(s)) => format!("{} requested", s.percent()),
                    (None, None) => "its slots".into(),
                },
                buckets: audited.map(|a| a.buckets.to_string()).unwrap_or_else(|| "–".into()),
                reach: audited
                    .map(|a| format!("{} ({} buckets)", pct(a.reach), a.reach_buckets))
                    .unwrap_or_else(|| "–".into()),
            }
        })
        .collect()
}

/// The overview page.
pub(crate) async fn get(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let view = app.console_view().await?;
    Ok(render(&view, Chrome::new("Bucket space", Some(&signed))))
}

/// The overview of `view` (also what the benchmark renders).
pub(crate) fn render(view: &View, mut chrome: Chrome) -> Response {
    chrome.version = Some(view.version);
    let exclusive: Vec<_> = view.audit.overlaps.iter().filter(|o| o.exclusive).collect();
    let page = Overview {
        chrome,
        spaces: &view.spaces,
        experiments: rows(view),
        violations: &view.audit.violations,
        warnings: &view.audit.warnings,
        exclusive_pairs: exclusive.len(),
        exclusive_disjoint: exclusive.iter().filter(|o| o.shared_buckets == 0).count(),
    };
    html(StatusCode::OK, &page)
}
