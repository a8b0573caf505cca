//! "Why is this unit in this experiment?": `GET /console/experiments/{id}/why?unit=…&context=…`
//! traces one context through the experiment's evaluation, step by step — running, the unit's
//! bucket and who holds it, inclusion, holdouts, allocation and slots, sticky, prerequisites,
//! targeting condition by condition, the split — with the final variant and reason, through
//! [`App::trace`] (what `POST /api/v1/evaluate/trace` answers). Nothing is recorded.

use crate::console::page::{html, Chrome, Problem};
use crate::error::ApiError;
use crate::App;
use allot_core::trace::Step;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::Arc;

/// The form: the unit id and more attributes (`country=SE, age=31`).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct WhyForm {
    #[serde(default)]
    unit: String,
    #[serde(default)]
    context: String,
}

#[derive(Template)]
#[template(path = "why.html")]
struct Page {
    chrome: Chrome,
    id: String,
    attribute: String,
    unit: String,
    context: String,
    /// Each step: its name, whether it let the unit through, and what it found.
    steps: Vec<(String, bool, String)>,
    outcome: Option<String>,
    errors: Vec<String>,
}

/// `country=SE, age=31` → attributes: a value that reads as JSON (numbers, booleans, quoted
/// strings, lists) is that; anything else is a string.
fn attributes(text: &str) -> Result<serde_json::Map<String, Value>, String> {
    let mut m = serde_json::Map::new();
    for part in text.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("context: `{part}` is not attribute=value"));
        };
        let v = v.trim();
        m.insert(k.trim().to_string(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())));
    }
    Ok(m)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// One step in words: (step, passed, what).
fn words(s: &Step) -> (String, bool, String) {
    match s {
        Step::Running { running, paused } => (
            "running".into(),
            *running && !*paused,
            match (running, paused) {
                (true, true) => "the experiment is paused: it keeps its buckets and serves nobody (PAUSED)",
                (true, false) => "the experiment runs",
                (false, _) => "the experiment is not running",
            }
            .into(),
        ),
        Step::Unit { unit_type, attribute, unit, bucket, held_by } => (
            "unit".into(),
            unit.is_some(),
            match (unit, bucket) {
                (Some(u), Some(b)) => {
                    let holders: Vec<String> =
                        held_by.iter().map(|h| format!("{:?} {}", h.kind, h.owner).to_lowercase()).collect();
                    format!("{unit_type} {u} (attribute {attribute}) is in bucket {b}, held by {}", list(&holders))
                }
                _ => format!("the context has no {attribute}: no {unit_type} to assign"),
            },
        ),
        Step::Inclusion { included, variant } => (
            "inclusion".into(),
            true,
            match variant {
                Some(v) if *included => format!("included in variant {v}: this decides, whatever follows"),
                _ => "not individually included".into(),
            },
        ),
        Step::Holdout { held_out, holdouts } => (
            "holdouts".into(),
            !*held_out,
            if *held_out { format!("held out by {}", list(holdouts)) } else { "in no holdout that applies".into() },
        ),
        Step::Allocation { bucket, allocated, slots } => (
            "allocation".into(),
            *allocated,
            if *allocated {
                format!(
                    "bucket {bucket} is the experiment's{}",
                    if slots.is_empty() { String::new() } else { format!(" (slots {})", list(slots)) }
                )
            } else {
                format!("bucket {bucket} is not the experiment's")
            },
        ),
        Step::Sticky { stored, known } => (
            "sticky".into(),
            *known,
            match (stored, known) {
                (Some(v), _) => format!("a stored assignment: {v}"),
                (None, true) => "no stored assignment".into(),
                (None, false) => "the store could not be read for this unit".into(),
            },
        ),
        Step::Prerequisite { experiment, variants, variant, reason, ok } => (
            "prerequisite".into(),
            *ok,
            format!(
                "{experiment} must give {}; it gives {} ({})",
                variants.join(" or "),
                variant.as_deref().unwrap_or("nothing"),
                reason.as_str()
            ),
        ),
        Step::Targeting { matched, conditions } => {
            let cs: Vec<String> = conditions
                .iter()
                .map(|c| {
                    format!(
                        "{}{} with {}: {}",
                        c.segment.as_ref().map(|s| format!("segment {s}: ")).unwrap_or_default(),
                        c.criterion,
                        c.value,
                        if c.matched { "matches" } else { "does not match" }
                    )
                })
                .collect();
            ("targeting".into(), *matched, if cs.is_empty() { "everyone".into() } else { cs.join("; ") })
        }
        Step::Split { split_bucket, variant } => {
            ("split".into(), true, format!("split bucket {split_bucket} gives variant {variant}"))
        }
    }
}

/// `GET /console/experiments/{id}/why`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: Result<Query<WhyForm>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let live = app.live();
    let cfg = allot_core::config::validate(&live.config)
        .map_err(|_| Problem::internal("the live configuration does not validate"))?;
    let Some(e) = cfg.experiments.get(&id) else {
        return Err(Problem::not_found(format!("there is no experiment `{id}` in version {}", live.version)));
    };
    let attribute = cfg.units.get(&e.unit).map(|u| u.attribute.clone()).unwrap_or_else(|| e.unit.clone());
    let form = q.map(|Query(f)| f).unwrap_or_default();
    let mut chrome = Chrome::new(format!("Why: {id}"), Some(&signed));
    chrome.version = Some(live.version);
    let mut page = Page {
        chrome,
        id: id.clone(),
        attribute: attribute.clone(),
        unit: form.unit.clone(),
        context: form.context.clone(),
        steps: vec![],
        outcome: None,
        errors: vec![],
    };
    if form.unit.trim().is_empty() {
        return Ok(html(StatusCode::OK, &page));
    }
    let mut ctx = match attributes(&form.context) {
        Ok(c) => c,
        Err(e) => {
            page.errors.push(e);
            return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    ctx.insert(attribute, Value::String(form.unit.trim().to_string()));
    match app.trace(ctx, Some(vec![id.clone()])).await {
        Ok((_, t)) => {
            if let Some(x) = t.experiments.get(&id) {
                page.steps = x.steps.iter().map(words).collect();
                page.outcome = Some(match &x.variant {
                    Some(v) => format!("variant {v} ({})", x.reason.as_str()),
                    None => format!("no variant ({})", x.reason.as_str()),
                });
            }
            Ok(html(StatusCode::OK, &page))
        }
        Err(ApiError::Invalid(es)) => {
            page.errors = es.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e.into()),
    }
}
