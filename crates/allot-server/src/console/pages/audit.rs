//! The audit log: `GET /console/audit` (every committed change, newest first, filtered by entity,
//! actor and date), `GET /console/audit/{version}` (one change: who, when, why, forced or not,
//! what it changed, the refusals it overrode, and the line diff of the configuration before and
//! after) and `GET /console/versions/{version}` (the configuration of one version, as YAML).
//! Read from the store's audit log (`Store::audit`), the record the API's `GET /api/v1/audit`
//! serves.

use crate::console::page::{html, Chrome, Problem};
use crate::App;
use allot_store::AuditRecord;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::Arc;

/// The filters of the audit log page (every one optional).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Filter {
    /// An entity: `search-ranking`, or `experiment search-ranking` (matched against each change's
    /// entity and id).
    #[serde(default)]
    entity: String,
    /// Who (the key's name; case-insensitive substring).
    #[serde(default)]
    actor: String,
    /// From this day (`YYYY-MM-DD`, inclusive, UTC).
    #[serde(default)]
    from: String,
    /// To this day (`YYYY-MM-DD`, inclusive, UTC).
    #[serde(default)]
    to: String,
    /// Only versions before this one (the next page).
    before: Option<u64>,
}

/// How many matching entries one page shows.
const PAGE: usize = 50;
/// How many entries one page reads at most while filtering.
const SCAN: usize = 20_000;

pub(crate) struct Row {
    version: u64,
    before: u64,
    time: String,
    actor: String,
    action: String,
    forced: bool,
    reason: String,
    changes: Vec<String>,
    overridden: Vec<String>,
}

/// The changes of an audit entry, one line each (`experiment search-ranking stop: ...`).
fn lines(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|l| {
            l.iter()
                .map(|c| {
                    let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
                    format!("{} {} {}: {}", f("action"), f("entity"), f("id"), f("detail"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn overridden(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|l| {
            l.iter()
                .map(|r| {
                    let f = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                    format!("{} at {}: {}", f("rule"), f("path"), f("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn row(r: &AuditRecord) -> Row {
    Row {
        version: r.after_version,
        before: r.before_version,
        time: r.entry.time.clone(),
        actor: r.entry.actor.clone(),
        action: r.entry.action.clone(),
        forced: r.entry.forced,
        reason: r.entry.reason.clone().unwrap_or_default(),
        changes: lines(&r.entry.changes),
        overridden: overridden(&r.entry.overridden),
    }
}

impl Filter {
    fn matches(&self, r: &AuditRecord) -> bool {
        let entity = self.entity.trim().to_lowercase();
        if !entity.is_empty() {
            let hit = r.entry.changes.as_array().is_some_and(|l| {
                l.iter().any(|c| {
                    let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_lowercase();
                    f("id") == entity || format!("{} {}", f("entity"), f("id")) == entity
                })
            });
            if !hit {
                return false;
            }
        }
        let actor = self.actor.trim().to_lowercase();
        if !actor.is_empty() && !r.entry.actor.to_lowercase().contains(&actor) {
            return false;
        }
        let day = r.entry.time.get(..10).unwrap_or("");
        let from = self.from.trim();
        if !from.is_empty() && day < from {
            return false;
        }
        let to = self.to.trim();
        if !to.is_empty() && day > to {
            return false;
        }
        true
    }

    fn check(&self) -> Vec<String> {
        let mut errors = vec![];
        for (name, v) in [("from", &self.from), ("to", &self.to)] {
            let v = v.trim();
            let ok = v.is_empty()
                || (v.len() == 10
                    && v.bytes()
                        .enumerate()
                        .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() }));
            if !ok {
                errors.push(format!("{name}: a day is written YYYY-MM-DD, e.g. 2026-12-01"));
            }
        }
        errors
    }

    /// The query string of this filter for the page before `version`.
    fn next(&self, version: u64) -> String {
        let enc = |s: &str| super::change::urlencode(s.trim());
        format!(
            "?entity={}&actor={}&from={}&to={}&before={version}",
            enc(&self.entity),
            enc(&self.actor),
            enc(&self.from),
            enc(&self.to)
        )
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct Log {
    chrome: Chrome,
    filter: Filter,
    rows: Vec<Row>,
    errors: Vec<String>,
    next: Option<String>,
    scanned: usize,
}

/// `GET /console/audit`.
pub(crate) async fn log(
    State(app): State<Arc<App>>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let (filter, mut errors) = match q {
        Ok(Query(f)) => (f, vec![]),
        Err(e) => (Filter::default(), vec![e.body_text()]),
    };
    errors.extend(filter.check());
    let mut rows = vec![];
    let mut before = filter.before;
    let mut scanned = 0;
    let mut more = false;
    let mut cursor = 0;
    if errors.is_empty() {
        'pages: loop {
            let page = app.store.audit(before, 500).await?;
            let Some(last) = page.last() else { break };
            before = Some(last.after_version);
            let n = page.len();
            for r in &page {
                scanned += 1;
                if filter.matches(r) {
                    if rows.len() == PAGE {
                        more = true;
                        cursor = rows.last().map_or(0, |r: &Row| r.version);
                        break 'pages;
                    }
                    rows.push(row(r));
                }
            }
            if n < 500 || scanned >= SCAN {
                more = n == 500;
                cursor = last.after_version;
                break;
            }
        }
    }
    let mut chrome = Chrome::new("Audit log", Some(&signed));
    chrome.version = Some(app.live().version);
    let next = more.then(|| filter.next(cursor));
    let page = Log { chrome, filter, rows, errors, next, scanned };
    let status = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(html(status, &page))
}

/// One line of a diff.
pub(crate) struct DiffLine {
    /// `del`, `ins` or `same`.
    kind: &'static str,
    sign: &'static str,
    old: Option<usize>,
    new: Option<usize>,
    text: String,
}

/// The line diff of two YAML texts, in hunks with three lines of context.
fn diff(before: &str, after: &str) -> Vec<Vec<DiffLine>> {
    let d = similar::TextDiff::from_lines(before, after);
    d.grouped_ops(3)
        .iter()
        .map(|group| {
            group
                .iter()
                .flat_map(|op| d.iter_changes(op))
                .map(|c| {
                    let (kind, sign) = match c.tag() {
                        similar::ChangeTag::Delete => ("del", "-"),
                        similar::ChangeTag::Insert => ("ins", "+"),
                        similar::ChangeTag::Equal => ("same", " "),
                    };
                    DiffLine {
                        kind,
                        sign,
                        old: c.old_index().map(|i| i + 1),
                        new: c.new_index().map(|i| i + 1),
                        text: c.value().trim_end_matches('\n').to_string(),
                    }
                })
                .collect()
        })
        .collect()
}

#[derive(Template)]
#[template(path = "audit_entry.html")]
struct Entry {
    chrome: Chrome,
    row: Row,
    hunks: Vec<Vec<DiffLine>>,
}

/// `GET /console/audit/{version}`.
pub(crate) async fn entry(
    State(app): State<Arc<App>>,
    Path(v): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let v: u64 = v.parse().map_err(|_| Problem::not_found(format!("{v}: a version is a number")))?;
    let found = app.store.audit(v.checked_add(1), 1).await?;
    let Some(r) = found.into_iter().find(|r| r.after_version == v) else {
        return Err(Problem::not_found(format!("no audit entry recorded version {v}")));
    };
    let config = |st: Option<allot_core::state::State>| {
        st.and_then(|s| s.config).map(|c| crate::yaml::to_yaml(&c)).unwrap_or_default()
    };
    let before =
        if r.before_version == 0 { String::new() } else { config(app.store.load_version(r.before_version).await?) };
    let after = config(app.store.load_version(v).await?);
    let mut chrome = Chrome::new(format!("Change {v}"), Some(&signed));
    chrome.version = Some(app.live().version);
    Ok(html(StatusCode::OK, &Entry { chrome, row: row(&r), hunks: diff(&before, &after) }))
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    chrome: Chrome,
    version: u64,
    current: u64,
    yaml: String,
}

/// `GET /console/versions/{version}`.
pub(crate) async fn version(
    State(app): State<Arc<App>>,
    Path(v): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let signed = super::signed(&app, &headers).await?;
    let v: u64 = v.parse().map_err(|_| Problem::not_found(format!("{v}: a version is a number")))?;
    let Some(st) = app.store.load_version(v).await? else {
        return Err(Problem::not_found(format!("version {v} does not exist")));
    };
    let yaml = st.config.map(|c| crate::yaml::to_yaml(&c)).unwrap_or_default();
    let current = app.live().version;
    let mut chrome = Chrome::new(format!("Version {v}"), Some(&signed));
    chrome.version = Some(current);
    Ok(html(StatusCode::OK, &VersionPage { chrome, version: v, current, yaml }))
}
