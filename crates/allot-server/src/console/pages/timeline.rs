//! `GET /console/timeline`: every scope's timeline ([`crate::console::timeline`]): experiments and
//! holdouts over the versions from the recorded allocations, re-salts marked, and, when the form
//! gives the traffic (`daily_<unit type>`, a baseline conversion `rate` and a relative `mde`), each
//! draft's planned start and duration from the capacity planner, as `POST /api/v1/capacity`
//! computes them on the live configuration.

use crate::capacity::{self, Traffic};
use crate::console::page::{html, Chrome, Problem};
use crate::console::timeline::{self, ScopeTimeline};
use crate::App;
use allot_core::config::ExpState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "timeline.html")]
struct Page {
    chrome: Chrome,
    scopes: Vec<ScopeTimeline>,
    /// Each unit type and the daily units typed for it.
    units: Vec<(String, String)>,
    rate: String,
    mde: String,
    errors: Vec<String>,
    planned: bool,
}

/// The capacity plan of the traffic a form gives (`None` when it gives none), with the form's
/// errors and the planner's, as the timeline and the bandwidth page show them.
pub(crate) fn planned(
    q: &HashMap<String, String>,
    cfg: &allot_core::config::Config,
) -> (Option<capacity::CapacityReport>, Vec<String>) {
    match traffic(q, cfg) {
        Ok(Some(t)) => match capacity::plan(cfg, &t) {
            Ok(r) => (Some(r), vec![]),
            Err(es) => (None, es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect()),
        },
        Ok(None) => (None, vec![]),
        Err(es) => (None, es),
    }
}

/// The traffic the form gives, if any: what [`capacity::plan`] takes, with every draft of a unit
/// type whose daily units are given (and the bandwidth page's CUPED correlation `rho`).
pub(crate) fn traffic(
    q: &HashMap<String, String>,
    cfg: &allot_core::config::Config,
) -> Result<Option<Traffic>, Vec<String>> {
    let mut daily = Map::new();
    let mut errors = vec![];
    for u in cfg.units.keys() {
        let Some(v) = q.get(&format!("daily_{u}")).map(|v| v.trim()).filter(|v| !v.is_empty()) else { continue };
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => {
                daily.insert(u.clone(), json!(n));
            }
            _ => errors.push(format!("daily_{u}: new units per day is a positive number, e.g. 50000")),
        }
    }
    let number = |name: &str, default: f64, errors: &mut Vec<String>| -> f64 {
        match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => default,
            Some(v) => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && n > 0.0 && n < 1.0 => n,
                _ => {
                    errors.push(format!("{name}: a proportion between 0 and 1, e.g. {default}"));
                    default
                }
            },
        }
    };
    let rate = number("rate", 0.1, &mut errors);
    let mde = number("mde", 0.05, &mut errors);
    let rho = match q.get("rho").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => 0.0,
        Some(v) => match v.parse::<f64>() {
            Ok(n) if (0.0..1.0).contains(&n) => n,
            _ => {
                errors.push("rho: a correlation from 0 up to 1 (not 1), e.g. 0.5".into());
                0.0
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    if daily.is_empty() {
        return Ok(None);
    }
    let drafts: Map<String, Value> = cfg
        .experiments
        .iter()
        .filter(|(_, e)| e.state == ExpState::Draft && daily.contains_key(&e.unit))
        .map(|(id, _)| (id.clone(), json!({"metric": {"rate": rate}, "mde": mde, "rho": rho})))
        .collect();
    serde_json::from_value(json!({"daily_units": daily, "experiments": drafts}))
        .map(Some)
        .map_err(|e| vec![format!("traffic: {e}")])
}

/// `GET /console/timeline`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let view = app.console_view().await?;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let (report, errors) = planned(&q, &view.cfg);
    let scopes = timeline::timelines(&view.state, &view.cfg, &view.spaces, report.as_ref());
    let mut chrome = Chrome::new("Timeline", Some(&signed));
    chrome.version = Some(view.version);
    let page = Page {
        chrome,
        planned: report.is_some(),
        scopes,
        units: view
            .cfg
            .units
            .keys()
            .map(|u| (u.clone(), q.get(&format!("daily_{u}")).cloned().unwrap_or_default()))
            .collect(),
        rate: q.get("rate").cloned().unwrap_or_else(|| "0.1".into()),
        mde: q.get("mde").cloned().unwrap_or_else(|| "0.05".into()),
        errors,
    };
    let status = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(html(status, &page))
}
