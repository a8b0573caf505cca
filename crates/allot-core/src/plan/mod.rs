//! Change control: turns (recorded state, new configuration) into a plan — the changes, the exact
//! impact on every running experiment, the refusals — and the state that applying it records.
//!
//! Allocation order within one change: holdouts, then groups and their slots, then experiments
//! in file order — first those already running (they keep their buckets), then their growths,
//! then newly started ones. Every draw takes buckets at random from those free for its owner.
//!
//! Along its seams: this module holds the types, the entry points and the planner's bookkeeping;
//! `allocation` replays the file over the state (spaces, holdouts, groups, experiments: what
//! each may draw from); `rules` the checks that refuse a change ([`crate::rules::Rule`]);
//! [`impact`] what a change does to the units of every running experiment.

mod allocation;
pub mod impact;
mod rules;

pub use impact::{Impact, Measured};

use crate::bucketset::{draw, BucketBitmap, BucketSet};
use crate::config::{self, Config, ExpState, Experiment, Share};
use crate::error::{join, FieldError};
use crate::rng::seed_from;
use crate::rules::Rule;
use crate::scope::{Placed, Scope};
use crate::split::Split;
use crate::state::{Allocation, Draw, DrawOp, LogEntry, OwnerKind, SpaceState, State};
use crate::targeting::{provably_disjoint, Compiled, Necessary, Targeting};
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::HashMap;

/// How many of the most recently released allocations in an experiment's exclusion scope the
/// allocator looks at to prefer least recently used buckets.
pub const RECENCY_WINDOW: usize = 64;

/// Options of one apply.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Override refusals.
    pub force: bool,
    /// Why (required with `force`).
    pub reason: Option<String>,
    /// When (RFC 3339), recorded in the log.
    pub time: String,
    /// Who, recorded in the log.
    pub actor: Option<String>,
    /// The caller stores every assignment its sticky experiments serve (the service does; the
    /// CLI has no store). Then a sticky experiment's split, salt or targeting change moves no
    /// unit that was ever served (each keeps its stored variant), so only what moves its
    /// buckets is refused; `impact` still reports what would move for units never served.
    pub sticky_store: bool,
}

/// One change the plan makes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `experiment`, `holdout`, `group`, `unit` or `surface`.
    pub entity: String,
    /// Its id.
    pub id: String,
    /// `create`, `update`, `start`, `grow`, `stop`, `archive`, `delete`, `release`.
    pub action: String,
    /// What exactly.
    pub detail: String,
}

/// A change that change control refuses unless forced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// Field the refusal is about.
    pub path: String,
    /// Which rule: the wire id of a [`Rule`].
    pub rule: String,
    /// Why, with numbers.
    pub message: String,
}

/// What applying a configuration would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Version the plan would record.
    pub version: u64,
    /// Changes.
    pub changes: Vec<Change>,
    /// Impact on every experiment running before and after.
    pub impact: IndexMap<String, Impact>,
    /// Refusals; a non-forced apply with any is refused.
    pub refusals: Vec<Refusal>,
    /// Warnings that do not stop the change.
    pub warnings: Vec<String>,
    /// The state that applying records.
    #[serde(skip)]
    pub state: State,
}

impl Plan {
    /// True when the configuration equals the applied one and nothing would be recorded.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why an apply did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// The configuration or the space cannot support it; forcing does not help.
    #[error("{}", crate::Errors(.0.clone()))]
    Invalid(Vec<FieldError>),
    /// Change control refused it; `--force --reason` overrides.
    #[error("change refused: {} refusal(s)", .0.refusals.len())]
    Refused(Box<Plan>),
}

pub use crate::state::{applied_config, holdout_union};

/// Plans applying `cfg` (whose raw tree is `raw`) over `state`.
pub fn plan(state: &State, cfg: &Config, raw: &serde_json::Value, opts: &Options) -> Result<Plan, Vec<FieldError>> {
    let old = applied_config(state)?.unwrap_or_default();
    let Some(next_version) = state.version.checked_add(1) else {
        return Err(vec![FieldError::new(
            "state.version",
            "the recorded version cannot grow any further; the state file is corrupt",
        )]);
    };
    let mut p = Planner {
        sticky_store: opts.sticky_store,
        necessary: cfg
            .experiments
            .values()
            .map(|e| e.targeting.as_ref().map(|t| Necessary::of(t, &cfg.segments)))
            .collect(),
        stable: cfg.units.iter().map(|(name, u)| (name.clone(), u.proof_attributes())).collect(),
        index: live_index(state),
        old_live: state
            .allocations
            .iter()
            .filter(|a| a.is_live() && a.kind == OwnerKind::Experiment)
            .map(|a| (a.owner.clone(), a.current_compact().len()))
            .collect(),
        old: &old,
        cfg,
        st: state.clone(),
        version: next_version,
        changes: vec![],
        refusals: vec![],
        warnings: vec![],
        errors: vec![],
    };
    p.st.version = p.version;
    p.st.config = Some(raw.clone());
    p.spaces();
    p.segments_and_surfaces();
    p.holdouts();
    p.groups();
    p.experiments();
    if !p.errors.is_empty() {
        // Separating experiments that share on a mutable attribute may not fit: say why they
        // had to be separated, not only that they do not fit.
        let named = p.refusals.iter().filter(|r| r.rule == Rule::SharesOnMutableAttribute.as_str());
        p.errors.extend(named.map(|r| FieldError::new(&r.path, r.message.clone())));
        return Err(p.errors);
    }
    let impact = p.impact(state);
    for (id, imp) in &impact {
        let prefix = join("experiments", id);
        let kept_by_store = opts.sticky_store && imp.sticky && imp.moved_by_buckets == 0.0;
        if imp.moved_share > 0.0
            && !kept_by_store
            && !p.refusals.iter().any(|r| r.path == prefix || r.path.starts_with(&format!("{prefix}.")))
        {
            p.refuse(
                prefix,
                Rule::MovesUnits,
                format!(
                    "the change would move {} of the running experiment's assigned units ({} by buckets and holdouts, {} by the variant split)",
                    pct(imp.moved_share),
                    pct(imp.moved_by_buckets),
                    pct(imp.moved_by_split)
                ),
            );
        }
    }
    if p.changes.is_empty() && state.config.as_ref() != Some(raw) {
        p.change(
            "configuration",
            "",
            "update",
            "text changed without effect on allocations (descriptions, order or formatting)",
        );
    }
    let mut plan = Plan {
        version: p.version,
        changes: p.changes,
        impact,
        refusals: p.refusals,
        warnings: p.warnings,
        state: p.st,
    };
    if plan.changes.is_empty() && state.config.as_ref() == Some(raw) {
        plan.state = state.clone();
        plan.version = state.version;
    } else {
        plan.state.log.push(LogEntry {
            version: plan.version,
            time: opts.time.clone(),
            actor: opts.actor.clone(),
            forced: opts.force && !plan.refusals.is_empty(),
            reason: opts.reason.clone(),
            changes: plan.changes.iter().map(|c| format!("{} {} {}: {}", c.action, c.entity, c.id, c.detail)).collect(),
            overridden: if opts.force {
                plan.refusals.iter().map(|r| format!("{}: {}", r.path, r.message)).collect()
            } else {
                vec![]
            },
        });
    }
    Ok(plan)
}

/// Plans and, unless refused, returns the new state to record. All-or-nothing: on error the
/// caller keeps the old state untouched.
pub fn apply(state: &State, cfg: &Config, raw: &serde_json::Value, opts: &Options) -> Result<Plan, ApplyError> {
    if opts.force && opts.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ApplyError::Invalid(vec![FieldError::new(
            "reason",
            "--force needs --reason TEXT, which is recorded",
        )]));
    }
    let plan = plan(state, cfg, raw, opts).map_err(ApplyError::Invalid)?;
    if !plan.refusals.is_empty() && !opts.force {
        return Err(ApplyError::Refused(Box::new(plan)));
    }
    Ok(plan)
}

struct Planner<'a> {
    /// [`Options::sticky_store`].
    sticky_store: bool,
    /// Per experiment of `cfg` (by index), its targeting's necessary conditions.
    necessary: Vec<Option<Necessary>>,
    /// Per unit type, the attributes that may prove sharing (its `stable` ones and its id).
    stable: HashMap<String, Vec<String>>,
    /// Buckets each experiment held before this change.
    old_live: HashMap<String, u64>,
    /// Live allocations by owner: index into `st.allocations`.
    index: HashMap<(OwnerKind, String), usize>,
    old: &'a Config,
    cfg: &'a Config,
    st: State,
    version: u64,
    changes: Vec<Change>,
    refusals: Vec<Refusal>,
    warnings: Vec<String>,
    errors: Vec<FieldError>,
}

fn pct(x: f64) -> String {
    format!("{}%", config::fmt_num(x * 100.0))
}

impl<'a> Planner<'a> {
    fn change(&mut self, entity: &str, id: &str, action: &str, detail: impl Into<String>) {
        self.changes.push(Change {
            entity: entity.into(),
            id: id.into(),
            action: action.into(),
            detail: detail.into(),
        });
    }

    fn refuse(&mut self, path: impl Into<String>, rule: Rule, message: impl Into<String>) {
        self.refusals.push(Refusal { path: path.into(), rule: rule.as_str().into(), message: message.into() });
    }

    fn space_size(&self, unit: &str) -> u32 {
        self.st.spaces.get(unit).map_or(config::DEFAULT_BUCKETS, |s| s.buckets)
    }

    fn seed(&self, kind: &str, id: &str, n: usize) -> u64 {
        seed_from(&format!("{kind}:{id}|v{}|{n}", self.version))
    }

    fn live(&self, kind: OwnerKind, owner: &str) -> Option<&Allocation> {
        self.index.get(&(kind, owner.to_string())).map(|&i| &self.st.allocations[i])
    }

    fn live_mut(&mut self, kind: OwnerKind, owner: &str) -> Option<&mut Allocation> {
        self.index.get(&(kind, owner.to_string())).map(|&i| &mut self.st.allocations[i])
    }

    fn release(&mut self, kind: OwnerKind, id: &str) {
        let v = self.version;
        if let Some(i) = self.index.remove(&(kind, id.to_string())) {
            self.st.allocations[i].released = Some(v);
        }
    }

    fn record(&mut self, space: &str, kind: OwnerKind, owner: &str, tags: Vec<String>, seed: u64, set: &BucketBitmap) {
        let id = self.st.next_id();
        self.index.insert((kind, owner.to_string()), self.st.allocations.len());
        self.st.allocations.push(Allocation {
            id,
            space: space.to_string(),
            kind,
            owner: owner.to_string(),
            tags,
            draws: vec![Draw { version: self.version, seed, op: DrawOp::Add, buckets: set.compact() }],
            released: None,
        });
    }

    fn add_draw(&mut self, kind: OwnerKind, owner: &str, seed: u64, op: DrawOp, set: &BucketBitmap) {
        let v = self.version;
        if let Some(a) = self.live_mut(kind, owner) {
            a.draws.push(Draw { version: v, seed, op, buckets: set.compact() });
        }
    }

    fn live_set(&self, kind: OwnerKind, owner: &str) -> Option<BucketBitmap> {
        self.live(kind, owner).map(Allocation::current)
    }
}

/// Live allocations by owner.
fn live_index(st: &State) -> HashMap<(OwnerKind, String), usize> {
    st.allocations
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_live())
        .map(|(i, a)| ((a.kind, a.owner.clone()), i))
        .collect()
}
