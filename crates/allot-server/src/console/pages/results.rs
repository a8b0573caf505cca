//! An experiment's results: `GET /console/experiments/{id}/results[?alpha=…]` shows what
//! `GET /api/v1/experiments/{id}/results` answers ([`App::results`], the same analysis) — per
//! metric each variant's units, mean and standard deviation, and each variant against the control:
//! the difference with its interval, the p-value (and Holm's adjustment over the experiment's
//! comparisons), the relative lift with its interval and CUPED's estimate where the mapping asks
//! for it — beside the sample ratio check. Without metric tables the page says how to get them.

use crate::console::page::{html, Chrome, Problem};
use crate::error::ApiError;
use crate::App;
use allot_stats::analysis::{CupedReport, Srm};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// `?alpha=`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ResultsForm {
    alpha: Option<String>,
}

struct VariantRow {
    name: String,
    n: u64,
    mean: String,
    sd: String,
}

struct ComparisonRow {
    variant: String,
    control: String,
    diff: String,
    ci: String,
    p: String,
    holm: String,
    lift: String,
    cuped: String,
    /// The interval excludes zero at this alpha.
    significant: bool,
}

struct MetricView {
    name: String,
    variants: Vec<VariantRow>,
    comparisons: Vec<ComparisonRow>,
}

#[derive(Template)]
#[template(path = "results.html")]
struct Page {
    chrome: Chrome,
    id: String,
    alpha: String,
    level: String,
    metrics: Vec<MetricView>,
    srm: Option<(String, bool)>,
    jumpers: u64,
    /// Why there are no results (no metrics, no exposures, a failed query).
    unavailable: Option<String>,
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(|| "–".into(), |[a, b]| format!("[{}, {}]", num(a), num(b)))
}

fn pct(x: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match x {
        Some(x) if x.is_finite() => {
            let ci = ci.map_or_else(String::new, |[a, b]| format!(" [{:+.2}%, {:+.2}%]", a * 100.0, b * 100.0));
            format!("{:+.2}%{ci}", x * 100.0)
        }
        _ => "–".into(),
    }
}

/// `GET /console/experiments/{id}/results`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: Result<Query<ResultsForm>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let view = app.console_view().await?;
    if !view.cfg.experiments.contains_key(&id) {
        return Err(Problem::not_found(format!("there is no experiment `{id}` in version {}", view.version)));
    }
    let form = q.map(|Query(f)| f).unwrap_or_default();
    let alpha = match form.alpha.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => 0.05,
        Some(a) => a.parse::<f64>().ok().filter(|x| *x > 0.0 && *x < 1.0).ok_or_else(|| {
            Problem::from(ApiError::field("alpha", format!("{a:?}: expected a number between 0 and 1 (exclusive)")))
        })?,
    };
    let mut chrome = Chrome::new(format!("Results: {id}"), Some(&signed));
    chrome.version = Some(view.version);
    let mut page = Page {
        chrome,
        id: id.clone(),
        alpha: format!("{alpha}"),
        level: format!("{}%", num((1.0 - alpha) * 100.0).trim_end_matches('0').trim_end_matches('.')),
        metrics: vec![],
        srm: None,
        jumpers: 0,
        unavailable: None,
    };
    let report = match app.results(&id, None, alpha).await {
        Ok(r) => r,
        Err(ApiError::Analysis { message, .. }) => {
            page.unavailable = Some(message);
            return Ok(html(StatusCode::OK, &page));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(x) = report.experiments.get(&id) {
        page.jumpers = x.variant_jumpers;
        page.srm = Some(match &x.srm {
            Srm::Tested { p_value, warning: Some(w), .. } => (format!("{w} (p = {})", num(*p_value)), true),
            Srm::Tested { p_value, .. } => (format!("no sample ratio mismatch (p = {})", num(*p_value)), false),
            Srm::Untestable { error, .. } => (format!("not tested: {error}"), false),
        });
        for (name, m) in &x.metrics {
            let variants = m
                .variants
                .iter()
                .map(|(v, s)| VariantRow { name: v.clone(), n: s.n, mean: num(s.mean), sd: num(s.sd) })
                .collect();
            let comparisons = m
                .comparisons
                .iter()
                .map(|c| ComparisonRow {
                    variant: c.variant.clone(),
                    control: c.control.clone(),
                    diff: c.diff.map_or_else(|| c.error.clone().unwrap_or_else(|| "–".into()), num),
                    ci: interval(c.ci),
                    p: c.p_value.map_or_else(|| "–".into(), num),
                    holm: c.p_adjusted.map_or_else(|| "–".into(), |a| num(a.holm)),
                    lift: pct(c.relative, c.relative_ci),
                    cuped: match &c.cuped {
                        Some(CupedReport::Estimate { diff, ci, variance_reduction, .. }) => format!(
                            "{} {} ({:.1}% less variance)",
                            num(*diff),
                            interval(Some(*ci)),
                            variance_reduction * 100.0
                        ),
                        Some(CupedReport::Failed { error }) => error.clone(),
                        None => "–".into(),
                    },
                    significant: c.ci.is_some_and(|[a, b]| a > 0.0 || b < 0.0),
                })
                .collect();
            page.metrics.push(MetricView { name: name.clone(), variants, comparisons });
        }
    }
    Ok(html(StatusCode::OK, &page))
}
