//! `GET /console/diagnostics`: the exclusivity proof of the current version (the audit's exclusive
//! pairs, each with its shared buckets and verdict), and the units exposed to two exclusive
//! experiments, by cause — inclusion, identity merge, variant jumping, configuration change,
//! unexplained — from the stored exposures, classified by allot-stats' analysis (the diagnostics of
//! `allot analyze`) over the configuration and the recorded state
//! ([`crate::analysis::ConfigDesign`], [`crate::analysis::recorded`]).

use crate::analysis::{recorded, rfc3339_seconds, ConfigDesign};
use crate::console::page::{html, Chrome, Problem};
use crate::App;
use allot_stats::analysis::{self, Design, Exposures, Inputs, Issue, IssueClass, UnitValues};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// Most exposure rows the page reads.
const SCAN: u64 = 1_000_000;

struct Pair {
    a: String,
    b: String,
    shared: u64,
    verdict: String,
    ok: bool,
}

struct Class {
    key: &'static str,
    label: &'static str,
    count: u64,
    examples: Vec<String>,
}

#[derive(Template)]
#[template(path = "diagnostics.html")]
struct Page {
    chrome: Chrome,
    pairs: Vec<Pair>,
    violations: Vec<String>,
    rows: u64,
    units: u64,
    capped: bool,
    classes: Vec<Class>,
    reused: u64,
}

fn label(c: IssueClass) -> &'static str {
    match c {
        IssueClass::Inclusion => "an inclusion in either experiment (allowed: inclusions bypass exclusion)",
        IssueClass::IdentityMerge => {
            "identity merge: unit ids of one person (the service records no identities, so none is found here)"
        }
        IssueClass::VariantJumping => "variant jumping: the unit saw several variants of one experiment",
        IssueClass::ConfigChange => "a configuration change between its exposures to the two",
        IssueClass::Unexplained => "unexplained",
    }
}

fn example(i: &Issue) -> String {
    match i {
        Issue::Overlap { unit, experiments, scope } => format!(
            "{unit} in {} and {}{}",
            experiments[0],
            experiments[1],
            scope.as_ref().filter(|s| !s.is_empty()).map(|s| format!(" (scope {s})")).unwrap_or_default()
        ),
        Issue::VariantJumping { unit, experiment } => format!("{unit} saw several variants of {experiment}"),
        Issue::IdentityMerge { person, units, experiments } => {
            format!("{person}: {} saw {}, {} saw {}", units[0], experiments[0], units[1], experiments[1])
        }
    }
}

/// `GET /console/diagnostics`.
pub(crate) async fn get(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let view = app.console_view().await?;
    let pairs = view
        .audit
        .overlaps
        .iter()
        .filter(|o| o.exclusive)
        .map(|o| Pair {
            a: o.a.clone(),
            b: o.b.clone(),
            shared: o.shared_buckets,
            ok: o.ok,
            verdict: match (o.ok, o.targeting_disjoint) {
                (false, _) => "VIOLATION: exclusive but sharing buckets".into(),
                (true, true) => {
                    format!("shares buckets only where targeting is disjoint on {}", o.disjoint_on.join(", "))
                }
                (true, false) => "disjoint".into(),
            },
        })
        .collect();
    let mut ex = Exposures::new(true, true, std::hash::RandomState::new());
    let (mut after, mut rows, mut capped) = (0, 0u64, false);
    loop {
        let page = app.store.exposures(None, after, 10_000).await?;
        let n = page.len();
        for (id, x) in page {
            after = id;
            rows += 1;
            let t = rfc3339_seconds(&x.time).unwrap_or(f64::NAN);
            ex.add(&x.unit, &x.experiment, &x.variant, t, Some(x.version));
        }
        if n < 10_000 {
            break;
        }
        if rows >= SCAN {
            capped = true;
            break;
        }
    }
    let shown = view.clone();
    let report = tokio::task::spawn_blocking(move || {
        let recorded = recorded(&shown.state);
        let design = ConfigDesign(&shown.cfg);
        let metrics = UnitValues::default();
        analysis::analyze(Inputs {
            exposures: &ex,
            metrics: &metrics,
            covariates: None,
            identities: None,
            design: Some(&design as &dyn Design),
            recorded: Some(&recorded),
            alpha: 0.05,
        })
    });
    let report = report.await.map_err(|e| Problem::internal(format!("diagnostics: {e}")))?;
    let d = &report.diagnostics;
    let classes = IssueClass::ALL
        .iter()
        .map(|c| {
            let e = d.exposure_issues.get(c);
            Class {
                key: c.key(),
                label: label(*c),
                count: e.map_or(0, |e| e.count),
                examples: e.map(|e| e.examples.iter().map(example).collect()).unwrap_or_default(),
            }
        })
        .collect();
    let mut chrome = Chrome::new("Diagnostics", Some(&signed));
    chrome.version = Some(view.version);
    let page = Page {
        chrome,
        pairs,
        violations: view.audit.violations.clone(),
        rows,
        units: d.units,
        capped,
        classes,
        reused: d.reused_after_stop.count,
    };
    Ok(html(StatusCode::OK, &page))
}
