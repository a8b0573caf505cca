//! `GET /console/experiments/{id}`: one experiment — state, scopes, exact share and reach,
//! variants, targeting in words, inclusions, prerequisites, its history, its overlaps — and, for
//! roles that may change the configuration, its lifecycle actions (through the preview).

use crate::console::page::{html, Chrome, Problem};
use crate::console::space::pct;
use crate::App;
use allot_core::config::{ExpState, Experiment};
use allot_core::targeting::{Operator, Scalar, Targeting};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

struct VariantRow {
    name: String,
    weight: u32,
    percent: String,
    value: String,
}

struct OverlapRow {
    other: String,
    exclusive: bool,
    shared: u64,
    expected: String,
    verdict: String,
}

/// Exposures per variant so far, and the SRM check.
struct Exposures {
    rows: Vec<(String, u64, String, String)>,
    total: u64,
    scanned: u64,
    capped: bool,
    /// Units exposed to a variant the configuration no longer has.
    other: u64,
    srm: Option<String>,
    mismatch: bool,
}

/// Most exposure rows one page reads.
const EXPOSURE_SCAN: u64 = 1_000_000;

/// Distinct units exposed per variant (included units left out: the split did not choose their
/// variant), from the stored exposures, and Pearson's chi-square test of them against the split
/// (allot-stats' `srm`, the check `allot analyze` runs).
async fn exposures(app: &App, id: &str, e: &Experiment) -> Result<Exposures, Problem> {
    let mut units: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    let (mut after, mut scanned, mut capped) = (0, 0u64, false);
    loop {
        let rows = app.store.exposures(Some(id), after, 10_000).await?;
        let n = rows.len();
        for (rid, x) in rows {
            after = rid;
            scanned += 1;
            if !e.include.contains_key(&x.unit) {
                units.entry(x.variant).or_default().insert(x.unit);
            }
        }
        if n < 10_000 {
            break;
        }
        if scanned >= EXPOSURE_SCAN {
            capped = true;
            break;
        }
    }
    let counts: Vec<u64> = e.variants.keys().map(|v| units.get(v).map_or(0, |u| u.len() as u64)).collect();
    let weights: Vec<f64> = e.variants.values().map(|v| f64::from(v.weight)).collect();
    let total: u64 = counts.iter().sum();
    let other = units.iter().filter(|(v, _)| !e.variants.contains_key(*v)).map(|(_, u)| u.len() as u64).sum();
    let test = allot_stats::srm::srm(&counts, &weights).ok();
    let rows = e
        .variants
        .keys()
        .zip(&counts)
        .enumerate()
        .map(|(i, (v, c))| {
            let expected =
                test.as_ref().and_then(|t| t.expected.get(i)).map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
            (v.clone(), *c, expected, pct(*c as f64 / total.max(1) as f64))
        })
        .collect();
    let mismatch = test.as_ref().is_some_and(|t| t.p_value < allot_stats::srm::SRM_THRESHOLD);
    let srm = test.map(|t| {
        format!(
            "χ² = {:.2} with {} degrees of freedom, p = {:.4}: {}",
            t.chi2,
            t.df,
            t.p_value,
            if mismatch {
                format!("SAMPLE RATIO MISMATCH (p < {}): the exposures do not follow the split; do not trust the results until the cause is found", allot_stats::srm::SRM_THRESHOLD)
            } else {
                format!("no sample ratio mismatch (p ≥ {})", allot_stats::srm::SRM_THRESHOLD)
            }
        )
    });
    Ok(Exposures { rows, total, scanned, capped, other, srm, mismatch })
}

struct Action {
    action: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "experiment.html")]
struct Page {
    chrome: Chrome,
    id: String,
    state: &'static str,
    unit: String,
    surfaces: Vec<String>,
    tags: Vec<String>,
    exclusive_to: Vec<String>,
    groups: Vec<String>,
    requested: String,
    share: String,
    reach: String,
    variants: Vec<VariantRow>,
    targeting: String,
    inclusions: Vec<(String, String)>,
    requires: Vec<String>,
    sticky: bool,
    salt: String,
    history: Vec<(u64, String, String, bool, String, Vec<String>)>,
    overlaps: Vec<OverlapRow>,
    actions: Vec<Action>,
    /// The share a grow form starts from (a running experiment with a share, for roles that act).
    grow: Option<String>,
    exposures: Exposures,
    attribute: String,
    done: Option<String>,
}

/// What `?done=` says after a change.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Done {
    done: Option<u64>,
}

/// The experiment page.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let view = app.console_view().await?;
    let Some(e) = view.cfg.experiments.get(&id) else {
        return Err(Problem::not_found(format!("there is no experiment `{id}` in version {}", view.version)));
    };
    let mut chrome = Chrome::new(format!("Experiment {id}"), Some(&signed));
    chrome.version = Some(view.version);
    let audited = view.audit.experiments.get(&id);
    let total: u64 = e.variants.values().map(|v| u64::from(v.weight)).sum();
    let variants = e
        .variants
        .iter()
        .map(|(name, v)| VariantRow {
            name: name.clone(),
            weight: v.weight,
            percent: pct(f64::from(v.weight) / total.max(1) as f64),
            value: v.value.as_ref().map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
        })
        .collect();
    let prefix = format!(" experiment {id}:");
    let history = view
        .state
        .log
        .iter()
        .filter_map(|l| {
            let lines: Vec<String> = l
                .changes
                .iter()
                .filter(|c| c.split_once(' ').is_some_and(|(_, rest)| format!(" {rest}").starts_with(&prefix)))
                .cloned()
                .collect();
            (!lines.is_empty()).then(|| {
                (
                    l.version,
                    l.time.clone(),
                    l.actor.clone().unwrap_or_else(|| "–".into()),
                    l.forced,
                    l.reason.clone().unwrap_or_default(),
                    lines,
                )
            })
        })
        .rev()
        .collect();
    // The view's audit holds only the exclusive pairs (the proof); this experiment's pairs with
    // every other one are asked of the core here, one experiment's worth.
    let overlaps = allot_core::audit::overlaps_with(&view.state, &view.cfg, &id)
        .iter()
        .filter_map(|o| {
            let other = if o.a == id {
                &o.b
            } else if o.b == id {
                &o.a
            } else {
                return None;
            };
            let verdict = match (o.exclusive, o.ok, o.targeting_disjoint) {
                (true, false, _) => "VIOLATION: exclusive but sharing buckets".to_string(),
                (true, true, true) => {
                    format!("exclusive; shares buckets by targeting disjoint on {}", o.disjoint_on.join(", "))
                }
                (true, true, false) => "exclusive: disjoint".to_string(),
                (false, _, _) => "independent samples".to_string(),
            };
            Some(OverlapRow {
                other: other.clone(),
                exclusive: o.exclusive,
                shared: o.shared_buckets,
                expected: format!("{:.0}", o.expected_shared_buckets),
                verdict,
            })
        })
        .collect();
    let actions = if signed.can_act() { actions(e) } else { vec![] };
    let exposures = exposures(&app, &id, e).await?;
    let attribute = view.cfg.units.get(&e.unit).map(|u| u.attribute.clone()).unwrap_or_else(|| e.unit.clone());
    let page = Page {
        chrome,
        id: id.clone(),
        state: e.state_name(),
        unit: e.unit.clone(),
        surfaces: e.surfaces.clone(),
        tags: e.tags.clone(),
        exclusive_to: e.exclusive_to.clone(),
        groups: e
            .groups
            .iter()
            .map(|g| {
                let slots: Vec<String> = g.slots.iter().map(|s| (s + 1).to_string()).collect();
                format!("{} (slots {})", g.group, slots.join(", "))
            })
            .collect(),
        requested: e.share.map(|s| s.percent()).unwrap_or_else(|| "all of its slots".into()),
        share: audited
            .map(|a| format!("{} ({} buckets)", pct(a.share), a.buckets))
            .unwrap_or_else(|| "holds no buckets".into()),
        reach: audited
            .map(|a| format!("{} ({} buckets)", pct(a.reach), a.reach_buckets))
            .unwrap_or_else(|| "reaches no one".into()),
        variants,
        targeting: e.targeting.as_ref().map(words).unwrap_or_else(|| "everyone".into()),
        inclusions: e.include.iter().map(|(u, v)| (u.clone(), v.clone())).collect(),
        requires: e.requires.iter().map(|r| format!("{} gives {}", r.experiment, r.variants.join(" or "))).collect(),
        sticky: e.sticky,
        salt: e.salt.clone(),
        history,
        overlaps,
        actions,
        exposures,
        attribute,
        grow: (signed.can_act() && e.state == ExpState::Running).then(|| e.share.map(|s| s.percent())).flatten(),
        done: done.ok().and_then(|Query(d)| d.done).map(|v| format!("Committed as version {v}.")),
    };
    Ok(html(StatusCode::OK, &page))
}

/// The lifecycle actions open to an experiment in its state.
fn actions(e: &Experiment) -> Vec<Action> {
    match e.state {
        ExpState::Draft => vec![Action { action: "start", label: "Start…" }],
        ExpState::Running if e.paused => {
            vec![Action { action: "resume", label: "Resume…" }, Action { action: "stop", label: "Stop…" }]
        }
        ExpState::Running => {
            vec![Action { action: "pause", label: "Pause…" }, Action { action: "stop", label: "Stop…" }]
        }
        ExpState::Stopped => vec![Action { action: "archive", label: "Archive…" }],
        ExpState::Archived => vec![],
    }
}

fn scalar(s: &Scalar) -> String {
    match s {
        Scalar::String(s) => format!("\"{s}\""),
        Scalar::Number(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }
}

fn list(l: &[Scalar]) -> String {
    let items: Vec<String> = l.iter().map(scalar).collect();
    format!("[{}]", items.join(", "))
}

fn op(o: &Operator) -> String {
    match o {
        Operator::Eq(s) => format!("= {}", scalar(s)),
        Operator::Ne(s) => format!("≠ {}", scalar(s)),
        Operator::In(l) => format!("is one of {}", list(l)),
        Operator::NotIn(l) => format!("is none of {}", list(l)),
        Operator::Gt(n) => format!("> {n}"),
        Operator::Gte(n) => format!("≥ {n}"),
        Operator::Lt(n) => format!("< {n}"),
        Operator::Lte(n) => format!("≤ {n}"),
        Operator::SemverEq(v) => format!("is version {v}"),
        Operator::SemverGt(v) => format!("is a version after {v}"),
        Operator::SemverGte(v) => format!("is version {v} or later"),
        Operator::SemverLt(v) => format!("is a version before {v}"),
        Operator::SemverLte(v) => format!("is version {v} or earlier"),
        Operator::Before(t) => format!("is before {}", t.text),
        Operator::After(t) => format!("is after {}", t.text),
        Operator::StartsWith(s) => format!("starts with \"{s}\""),
        Operator::EndsWith(s) => format!("ends with \"{s}\""),
        Operator::Contains(s) => format!("contains \"{s}\""),
        Operator::Exists(true) => "is present".into(),
        Operator::Exists(false) => "is missing".into(),
        Operator::AnyElement(ops) => {
            format!("has an element that {}", ops.iter().map(op).collect::<Vec<_>>().join(" and "))
        }
        Operator::AllElements(ops) => {
            format!("has only elements that {}", ops.iter().map(op).collect::<Vec<_>>().join(" and "))
        }
    }
}

/// Targeting in words: `country is one of ["US", "SE"] and not (plan = "free")`.
pub(crate) fn words(t: &Targeting) -> String {
    match t {
        Targeting::All(cs) if cs.is_empty() => "everyone".into(),
        Targeting::Any(cs) if cs.is_empty() => "no one".into(),
        Targeting::All(cs) => cs.iter().map(grouped).collect::<Vec<_>>().join(" and "),
        Targeting::Any(cs) => cs.iter().map(grouped).collect::<Vec<_>>().join(" or "),
        Targeting::Not(c) => format!("not {}", grouped(c)),
        Targeting::Segment(s) => format!("in segment {s}"),
        Targeting::Criterion(c) => {
            c.operators.iter().map(|o| format!("{} {}", c.attribute, op(o))).collect::<Vec<_>>().join(" and ")
        }
    }
}

fn grouped(t: &Targeting) -> String {
    match t {
        Targeting::All(cs) | Targeting::Any(cs) if cs.len() > 1 => format!("({})", words(t)),
        _ => words(t),
    }
}
