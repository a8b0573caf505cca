//! `GET /console/bandwidth`: the capacity planner ([`crate::capacity::plan`], as `allot capacity`
//! and `POST /api/v1/capacity`) on the live configuration, with the traffic the form gives (new
//! units per day for each unit type, a baseline conversion rate, a relative MDE, and CUPED's
//! pre-period correlation): for each draft, the units and days it needs and when it can start; for
//! each scope, how many run at once and the schedule; what CUPED buys (units and days saved).

use crate::capacity::CapacityReport;
use crate::console::page::{html, Chrome, Problem};
use crate::console::space::pct;
use crate::App;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;

struct Draft {
    id: String,
    unit: String,
    reach: String,
    daily: String,
    needed: String,
    days: String,
    without: String,
    saved: String,
    status: String,
    window: String,
    why: String,
}

struct Scope {
    name: String,
    at_once: usize,
    start_now: String,
    wait: String,
    cannot_run: String,
    done: String,
}

#[derive(Template)]
#[template(path = "bandwidth.html")]
struct Page {
    chrome: Chrome,
    units: Vec<(String, String)>,
    rate: String,
    mde: String,
    rho: String,
    errors: Vec<String>,
    drafts: Vec<Draft>,
    scopes: Vec<Scope>,
    running: Vec<String>,
    planned: bool,
}

fn days(d: Option<f64>) -> String {
    d.map(|d| format!("{d:.1}")).unwrap_or_else(|| "never".into())
}

fn rows(r: &CapacityReport) -> (Vec<Draft>, Vec<Scope>) {
    let drafts = r
        .experiments
        .iter()
        .map(|(id, p)| Draft {
            id: id.clone(),
            unit: p.unit.clone(),
            reach: pct(p.reach),
            daily: format!("{:.0}", p.daily_units),
            needed: format!("{:.0}", p.units_needed),
            days: days(p.days),
            without: format!("{:.0} units, {} days", p.without_cuped.units_needed, days(p.without_cuped.days)),
            saved: format!("{:.0} units, {} days", p.cuped_saves.units, days(p.cuped_saves.days)),
            status: p.status.to_string(),
            window: match (p.start_day, p.end_day) {
                (Some(s), Some(e)) => format!("day {s:.1} to day {e:.1}"),
                (Some(s), None) => format!("from day {s:.1}"),
                _ => "–".into(),
            },
            why: match (&p.reason, p.waits_for.is_empty()) {
                (Some(r), _) => r.clone(),
                (None, false) => format!("waits for {}", p.waits_for.join(", ")),
                (None, true) => String::new(),
            },
        })
        .collect();
    let scopes = r
        .scopes
        .iter()
        .map(|(name, s)| Scope {
            name: name.clone(),
            at_once: s.at_once,
            start_now: if s.start_now.is_empty() { "–".into() } else { s.start_now.join(", ") },
            wait: if s.wait.is_empty() {
                "–".into()
            } else {
                s.wait
                    .iter()
                    .map(|w| format!("{} (day {:.1})", w.experiment, w.start_day))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            cannot_run: if s.cannot_run.is_empty() { "–".into() } else { s.cannot_run.join(", ") },
            done: format!("day {:.1}", s.all_done_day),
        })
        .collect();
    (drafts, scopes)
}

/// `GET /console/bandwidth`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let view = app.console_view().await?;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let (report, errors) = super::timeline::planned(&q, &view.cfg);
    let (drafts, scopes) = report.as_ref().map(rows).unwrap_or_default();
    let mut chrome = Chrome::new("Bandwidth", Some(&signed));
    chrome.version = Some(view.version);
    let page = Page {
        chrome,
        units: view
            .cfg
            .units
            .keys()
            .map(|u| (u.clone(), q.get(&format!("daily_{u}")).cloned().unwrap_or_default()))
            .collect(),
        rate: q.get("rate").cloned().unwrap_or_else(|| "0.1".into()),
        mde: q.get("mde").cloned().unwrap_or_else(|| "0.05".into()),
        rho: q.get("rho").cloned().unwrap_or_else(|| "0.5".into()),
        errors,
        drafts,
        scopes,
        running: report.as_ref().map(|r| r.already_running.clone()).unwrap_or_default(),
        planned: report.is_some(),
    };
    let status = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(html(status, &page))
}
