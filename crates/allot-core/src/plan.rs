//! Change control: turns (recorded state, new configuration) into a plan — the changes, the exact
//! impact on every running experiment, the refusals — and the state that applying it records.
//!
//! Allocation order within one change: holdouts, then groups and their slots, then experiments
//! in file order — first those already running (they keep their buckets), then their growths,
//! then newly started ones. Every draw takes buckets at random from those free for its owner.

use crate::bucketset::{draw, BucketSet, Dense};
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

/// The impact of a change on one running experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    /// Share of its currently assigned units whose assignment the change would move.
    pub moved_share: f64,
    /// Share moved because their bucket left the experiment (or entered a holdout).
    pub moved_by_buckets: f64,
    /// Share moved by a change of the variant split.
    pub moved_by_split: f64,
    /// Buckets before and after.
    pub buckets_before: u64,
    /// Buckets after.
    pub buckets_after: u64,
    /// Whether the targeting changed (its effect depends on the population; see `refusals`).
    pub targeting_changed: bool,
    /// Sticky experiments: units with a stored assignment keep it whatever moves.
    pub sticky: bool,
    /// The impact measured on sample contexts ([`Plan::measure`]): every cause, a narrowed
    /// targeting's included, which the bucket and split figures cannot see. Absent unless measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    /// Sticky experiments planned where stickiness lives (the service): how many units hold a
    /// stored assignment, which they keep whatever the split or targeting becomes (units whose
    /// bucket leaves lose it: `moved_by_buckets`). Absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_assignments: Option<u64>,
}

/// An experiment's impact measured on sample contexts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    /// Sample contexts the experiment assigns a variant now.
    pub assigned: u64,
    /// Of those, the ones whose variant the change would change or take away.
    pub moved: u64,
    /// `moved / assigned` (0 when none is assigned).
    pub moved_share: f64,
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

    /// Measures the impact on `contexts` (a sample of real units): for every experiment in
    /// `impact`, how many of the contexts it assigns under `before` would get another variant or
    /// none after the change. Sees what the exact figures cannot: a narrowed targeting (a unit that
    /// no longer matches loses its variant) depends on the population.
    pub fn measure(&mut self, before: &State, contexts: &[crate::Context]) -> Result<(), Vec<FieldError>> {
        use crate::eval::{NoSticky, Snapshot};
        let (old, new) = (Snapshot::compile(before)?, Snapshot::compile(&self.state)?);
        let pairs: Vec<(usize, Option<usize>)> =
            self.impact.keys().filter_map(|id| old.index_of(id).map(|i| (i, new.index_of(id)))).collect();
        let mut counts = vec![(0u64, 0u64); pairs.len()];
        let (mut a, mut b) = (vec![], vec![]);
        for ctx in contexts {
            old.evaluate_all(ctx, &NoSticky, &mut a);
            new.evaluate_all(ctx, &NoSticky, &mut b);
            for ((i, j), (assigned, moved)) in pairs.iter().zip(&mut counts) {
                let Some(was) = old.variant_name(*i, &a[*i]) else { continue };
                *assigned += 1;
                let now = j.and_then(|j| new.variant_name(j, &b[j]));
                *moved += u64::from(now != Some(was));
            }
        }
        for ((i, _), (assigned, moved)) in pairs.iter().zip(counts) {
            if let Some(imp) = self.impact.get_mut(&old.experiments[*i].id) {
                let moved_share = if assigned == 0 { 0.0 } else { moved as f64 / assigned as f64 };
                imp.measured = Some(Measured { assigned, moved, moved_share });
            }
        }
        Ok(())
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

    fn record(&mut self, space: &str, kind: OwnerKind, owner: &str, tags: Vec<String>, seed: u64, set: &Dense) {
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

    fn add_draw(&mut self, kind: OwnerKind, owner: &str, seed: u64, op: DrawOp, set: &Dense) {
        let v = self.version;
        if let Some(a) = self.live_mut(kind, owner) {
            a.draws.push(Draw { version: v, seed, op, buckets: set.compact() });
        }
    }

    /// Refuses a new holdout, group or experiment under an id that held buckets before: the
    /// old incarnation's units would come back (an experiment's split salt is its id, so every
    /// returning unit would get its old variant) and a stopped experiment could start again.
    fn refuse_reused_id(&mut self, kind: OwnerKind, id: &str) {
        let past: Vec<&Allocation> = self.st.allocations.iter().filter(|a| a.kind == kind && a.owner == id).collect();
        let (Some(first), Some(last)) = (past.first(), past.last()) else { return };
        let from = first.draws.first().map_or(0, |d| d.version);
        let to = last.released.unwrap_or(self.version);
        let (entity, section) = match kind {
            OwnerKind::Holdout => ("holdout", "holdouts"),
            OwnerKind::Group => ("group", "groups"),
            _ => ("experiment", "experiments"),
        };
        let taken = |c: &str| {
            self.st.allocations.iter().any(|a| a.owner == c)
                || self.cfg.experiments.contains_key(c)
                || self.cfg.holdouts.contains_key(c)
                || self.cfg.groups.contains_key(c)
        };
        let suggestion = (2..1000).map(|k| format!("{id}-{k}")).find(|c| config::is_ident(c) && !taken(c));
        self.refuse(
            join(section, id),
            Rule::IdReused,
            format!(
                "{entity} id `{id}` was used before (it held buckets from version {from} to version {to}); a new {entity} under an old id would bring back the old one's units{}: choose a new id{}",
                if kind == OwnerKind::Experiment { " with their old variants (the split salt is the id)" } else { "" },
                suggestion.map_or(String::new(), |c| format!(" such as `{c}`"))
            ),
        );
    }

    /// An experiment's targeting before the change, with the old segments inlined.
    fn old_targeting(&self, id: &str) -> Option<Targeting> {
        self.old.experiments.get(id)?.targeting.as_ref().map(|t| t.inline(&self.old.segments))
    }

    /// An experiment's targeting after the change, with the new segments inlined.
    fn new_targeting(&self, id: &str) -> Option<Targeting> {
        self.cfg.experiments.get(id)?.targeting.as_ref().map(|t| t.inline(&self.cfg.segments))
    }

    /// Segments and surfaces created, changed or deleted, logged as what they are; a changed
    /// segment names the running experiments whose targeting it changes.
    fn segments_and_surfaces(&mut self) {
        for (name, t) in &self.cfg.segments {
            match self.old.segments.get(name) {
                None => self.change("segment", name, "create", ""),
                Some(o) if o.inline(&self.old.segments) != t.inline(&self.cfg.segments) => {
                    let users: Vec<&str> = self
                        .cfg
                        .experiments
                        .iter()
                        .filter(|(id, e)| {
                            e.state == ExpState::Running
                                && e.targeting.as_ref().is_some_and(|t| t.uses_segment(name, &self.cfg.segments))
                                && self.old_targeting(id) != self.new_targeting(id)
                        })
                        .map(|(id, _)| id.as_str())
                        .collect();
                    let detail = if users.is_empty() {
                        String::new()
                    } else {
                        format!("changes the targeting of running experiments: {}", users.join(", "))
                    };
                    self.change("segment", name, "update", detail);
                }
                Some(_) => {}
            }
        }
        for name in self.old.segments.keys() {
            if !self.cfg.segments.contains_key(name) {
                self.change("segment", name, "delete", "");
            }
        }
        for name in &self.cfg.surfaces {
            if !self.old.surfaces.contains(name) {
                self.change("surface", name, "create", "");
            }
        }
        for name in &self.old.surfaces {
            if !self.cfg.surfaces.contains(name) {
                self.change("surface", name, "delete", "");
            }
        }
    }

    fn live_set(&self, kind: OwnerKind, owner: &str) -> Option<Dense> {
        self.live(kind, owner).map(Allocation::current)
    }

    fn spaces(&mut self) {
        let live_in = |st: &State, space: &str| st.allocations.iter().any(|a| a.is_live() && a.space == space);
        for (name, u) in &self.cfg.units {
            match self.st.spaces.get(name) {
                None => {
                    self.st
                        .spaces
                        .insert(name.clone(), SpaceState { buckets: u.buckets, salt: u.salt.clone(), resalts: vec![] });
                    self.change(
                        "unit",
                        name,
                        "create",
                        format!("{} buckets on attribute `{}`", u.buckets, u.attribute),
                    );
                }
                Some(s) if s.buckets != u.buckets || s.salt != u.salt => {
                    // Live allocations are released first when nothing runs; otherwise the space is frozen.
                    let running =
                        self.old.experiments.values().any(|e| e.unit == *name && e.state == ExpState::Running);
                    if running
                        || self.cfg.holdouts.values().any(|h| h.unit == *name)
                        || self.cfg.groups.values().any(|g| g.unit == *name)
                    {
                        self.errors.push(FieldError::new(
                            join("units", name),
                            "buckets and salt cannot change while the space holds allocations (it would move every unit); create a new unit type instead",
                        ));
                    } else {
                        for a in self.st.allocations.iter_mut().filter(|a| a.is_live() && a.space == *name) {
                            a.released = Some(self.version);
                        }
                        self.index = live_index(&self.st);
                        self.st.spaces.insert(
                            name.clone(),
                            SpaceState { buckets: u.buckets, salt: u.salt.clone(), resalts: vec![] },
                        );
                        self.change("unit", name, "update", format!("{} buckets, salt `{}`", u.buckets, u.salt));
                    }
                }
                Some(_) => {
                    if let Some(o) = self.old.units.get(name).filter(|o| o.stable != u.stable) {
                        self.change(
                            "unit",
                            name,
                            "update",
                            format!("stable [{}] → [{}]", o.stable.join(", "), u.stable.join(", ")),
                        );
                    }
                    if let Some(o) = self.old.units.get(name).filter(|o| o.attribute != u.attribute) {
                        self.change("unit", name, "update", format!("attribute `{}` → `{}`", o.attribute, u.attribute));
                        let running: Vec<&str> = self
                            .old
                            .experiments
                            .iter()
                            .filter(|(id, e)| {
                                e.unit == *name
                                    && e.state == ExpState::Running
                                    && self.cfg.experiments.get(*id).is_some_and(|n| n.state == ExpState::Running)
                            })
                            .map(|(id, _)| id.as_str())
                            .collect();
                        if !running.is_empty() {
                            self.refuse(
                                join(&join("units", name), "attribute"),
                                Rule::UnitTypeFixed,
                                format!(
                                    "the attribute that carries `{name}` ids cannot change while experiments on it run (`{}` → `{}` reads every unit's id from another field, which reassigns their units unless clients send the same ids under the new name): {}",
                                    o.attribute,
                                    u.attribute,
                                    running.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }
        for name in self.old.units.keys() {
            if !self.cfg.units.contains_key(name) {
                if live_in(&self.st, name) && (self.cfg.holdouts.values().any(|h| h.unit == *name)) {
                    self.errors.push(FieldError::new(join("units", name), "still used"));
                }
                self.change("unit", name, "delete", "unit type removed");
            }
        }
    }

    /// Running experiments of the old configuration a holdout applied to.
    fn running_under_old_holdout(&self, name: &str) -> Vec<String> {
        let Some(h) = self.old.holdouts.get(name) else { return vec![] };
        self.old
            .experiments
            .iter()
            .filter(|(id, e)| e.state == ExpState::Running && self.old.holdout_applies(h, id))
            .filter(|(id, _)| self.cfg.experiments.get(*id).is_some_and(|e| e.state == ExpState::Running))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn holdouts(&mut self) {
        for name in self.old.holdouts.keys() {
            if !self.cfg.holdouts.contains_key(name) {
                let running = self.running_under_old_holdout(name);
                if !running.is_empty() {
                    self.refuse(
                        join("holdouts", name),
                        Rule::HoldoutInUse,
                        format!(
                            "holdout `{name}` cannot be deleted while experiments it applies to run: {}",
                            running.join(", ")
                        ),
                    );
                }
                self.release(OwnerKind::Holdout, name);
                self.change("holdout", name, "delete", "buckets return to the free pool");
            }
        }
        // A kept holdout that stops applying to a running experiment (its `applies_to`, or the
        // experiment's surfaces, tags or groups changed) lets its held-back units into the
        // experiment: as good as deleting it for that experiment.
        for (name, h) in &self.cfg.holdouts {
            let Some(o) = self.old.holdouts.get(name).filter(|o| o.unit == h.unit) else { continue };
            if self.live(OwnerKind::Holdout, name).is_none() {
                continue;
            }
            let dropped: Vec<String> = self
                .running_under_old_holdout(name)
                .into_iter()
                .filter(|id| self.old.holdout_applies(o, id) && !self.cfg.holdout_applies(h, id))
                .collect();
            if !dropped.is_empty() {
                self.refuse(
                    join(&join("holdouts", name), "applies_to"),
                    Rule::HoldoutInUse,
                    format!("holdout `{name}` cannot stop applying to running experiments: {}", dropped.join(", ")),
                );
            }
        }
        for (name, h) in &self.cfg.holdouts {
            let path = join("holdouts", name);
            let b = self.space_size(&h.unit);
            let Ok(count) = h.share.buckets(u64::from(b)) else { continue };
            let old = self.old.holdouts.get(name);
            let live = self.live_set(OwnerKind::Holdout, name);
            match (old, live) {
                (Some(o), Some(cur)) if o.unit == h.unit => {
                    if o.share != h.share {
                        self.refuse(
                            join(&path, "share"),
                            Rule::HoldoutShareFixed,
                            format!(
                                "a holdout's share cannot change once created ({} → {})",
                                o.share.percent(),
                                h.share.percent()
                            ),
                        );
                        self.resize(OwnerKind::Holdout, name, &path, &cur, count, None);
                        self.change(
                            "holdout",
                            name,
                            "update",
                            format!("share {} → {}", o.share.percent(), h.share.percent()),
                        );
                    }
                    if o.applies_to != h.applies_to {
                        self.change(
                            "holdout",
                            name,
                            "update",
                            format!("applies_to [{}] → [{}]", o.applies_to.join(", "), h.applies_to.join(", ")),
                        );
                    }
                }
                (o, _) => {
                    if o.is_some() {
                        self.refuse(
                            join(&path, "unit"),
                            Rule::HoldoutShareFixed,
                            "a holdout's unit type cannot change once created",
                        );
                        self.release(OwnerKind::Holdout, name);
                    } else {
                        self.refuse_reused_id(OwnerKind::Holdout, name);
                    }
                    // Avoid the buckets of running experiments it applies to: their units must not move.
                    let mut free = Dense::full(b);
                    for (id, e) in &self.cfg.experiments {
                        if e.state == ExpState::Running && self.cfg.holdout_applies(h, id) {
                            if let Some(a) = self.live(OwnerKind::Experiment, id) {
                                free.subtract(&a.current());
                            }
                        }
                    }
                    let seed = self.seed("holdout", name, 0);
                    match draw(&free, count, seed, None) {
                        Some(set) => {
                            self.record(&h.unit, OwnerKind::Holdout, name, vec![], seed, &set);
                            self.change("holdout", name, "create", format!("{} ({count} buckets) of `{}`", h.share.percent(), h.unit));
                        }
                        None => self.errors.push(FieldError::new(join(&path, "share"), format!(
                            "{} requested ({count} buckets), {} free: the rest is held by running experiments it applies to",
                            h.share.percent(),
                            free.len()
                        ))),
                    }
                }
            }
        }
    }

    /// Grows or (forced) shrinks a live allocation to `count` buckets.
    fn resize(&mut self, kind: OwnerKind, owner: &str, path: &str, cur: &Dense, count: u64, free: Option<&Dense>) {
        let have = cur.len();
        let b = cur.space();
        if count > have {
            let mut f = match free {
                Some(f) => f.clone(),
                None => Dense::full(b),
            };
            f.subtract(cur);
            let seed = self.seed(&format!("{kind:?}"), owner, 1);
            match draw(&f, count - have, seed, None) {
                Some(add) => self.add_draw(kind, owner, seed, DrawOp::Add, &add),
                None => self.errors.push(FieldError::new(
                    join(path, "share"),
                    format!("growing to {count} buckets needs {} more, {} free", count - have, f.len()),
                )),
            }
        } else if count < have {
            let seed = self.seed(&format!("{kind:?}-shrink"), owner, 1);
            if let Some(remove) = draw(cur, have - count, seed, None) {
                self.add_draw(kind, owner, seed, DrawOp::Remove, &remove);
            }
        }
    }

    fn groups(&mut self) {
        for name in self.old.groups.keys() {
            if !self.cfg.groups.contains_key(name) {
                let members: Vec<String> = self
                    .cfg
                    .experiments
                    .iter()
                    .filter(|(_, e)| e.state == ExpState::Running && e.groups.iter().any(|g| &g.group == name))
                    .map(|(id, _)| id.clone())
                    .collect();
                let old_members: Vec<String> = self
                    .old
                    .experiments
                    .iter()
                    .filter(|(id, e)| {
                        e.state == ExpState::Running
                            && e.groups.iter().any(|g| &g.group == name)
                            && self.cfg.experiments.get(*id).is_some_and(|n| n.state == ExpState::Running)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                if !members.is_empty() || !old_members.is_empty() {
                    self.refuse(
                        join("groups", name),
                        Rule::GroupInUse,
                        format!(
                            "group `{name}` cannot be deleted while its experiments run: {}",
                            old_members.join(", ")
                        ),
                    );
                }
                self.release_group(name, self.old.groups[name].slots.len());
                self.change("group", name, "delete", "buckets return to the free pool");
            }
        }
        for (name, g) in &self.cfg.groups {
            let path = join("groups", name);
            let b = self.space_size(&g.unit);
            let old = self.old.groups.get(name);
            let exists = self.live(OwnerKind::Group, name).is_some();
            if let (Some(o), true) = (old, exists) {
                if o == g {
                    continue;
                }
                let running: Vec<String> = self
                    .old
                    .experiments
                    .iter()
                    .filter(|(_, e)| e.state == ExpState::Running && e.groups.iter().any(|r| &r.group == name))
                    .map(|(id, _)| id.clone())
                    .collect();
                if o.share != g.share || o.slots != g.slots || o.unit != g.unit {
                    self.refuse(
                        &path,
                        Rule::SlotsFixed,
                        format!(
                            "a group's share and slots cannot change once created ({} [{}] → {} [{}])",
                            o.share.percent(),
                            o.slots.iter().map(Share::percent).collect::<Vec<_>>().join(", "),
                            g.share.percent(),
                            g.slots.iter().map(Share::percent).collect::<Vec<_>>().join(", ")
                        ),
                    );
                    self.release_group(name, o.slots.len());
                } else if o.surfaces != g.surfaces {
                    if !running.is_empty() {
                        self.warnings.push(format!(
                            "group `{name}`: surfaces changed while experiments run ({})",
                            running.join(", ")
                        ));
                    }
                    self.change("group", name, "update", format!("surfaces [{}]", g.surfaces.join(", ")));
                    continue;
                }
            }
            if old.is_none() {
                self.refuse_reused_id(OwnerKind::Group, name);
            }
            // A new group: its buckets, then its slots carved out of them. It reserves its whole
            // share from creation, so it is drawn clear of what already holds its surfaces:
            // running experiments on them and other groups that share one.
            let Ok(count) = g.share.buckets(u64::from(b)) else { continue };
            let mut free = Dense::full(b);
            let mut blockers: Vec<(String, u64)> = vec![];
            let mut take = |free: &mut Dense, what: String, set: &Dense| {
                let before = free.len();
                free.subtract(set);
                if free.len() < before {
                    blockers.push((what, before - free.len()));
                }
            };
            for (id, e) in &self.cfg.experiments {
                if e.state == ExpState::Running
                    && !e.groups.iter().any(|r| &r.group == name)
                    && self.cfg.in_group_scope(e, g)
                {
                    if let Some(a) = self.live(OwnerKind::Experiment, id) {
                        take(&mut free, format!("experiment {id}"), &a.current());
                    }
                }
            }
            for (other, h) in &self.cfg.groups {
                if other != name && h.unit == g.unit && h.surfaces.iter().any(|s| g.surfaces.contains(s)) {
                    if let Some(a) = self.live(OwnerKind::Group, other) {
                        take(&mut free, format!("group {other}"), &a.current());
                    }
                }
            }
            let seed = self.seed("group", name, 0);
            let Some(set) = draw(&free, count, seed, None) else {
                self.errors.push(FieldError::new(
                    join(&path, "share"),
                    format!(
                        "{} requested ({count} buckets), {} free on its surfaces; the rest is held by: {}",
                        g.share.percent(),
                        free.len(),
                        if blockers.is_empty() {
                            "nothing".to_string()
                        } else {
                            blockers
                                .iter()
                                .map(|(w, n)| format!("{w} {n} ({})", pct(*n as f64 / f64::from(b))))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
                continue;
            };
            self.record(&g.unit, OwnerKind::Group, name, g.surfaces.clone(), seed, &set);
            let mut rest = set;
            for (i, s) in g.slots.iter().enumerate() {
                let Ok(n) = s.buckets(count) else { continue };
                let seed = self.seed("slot", &State::slot_id(name, i), 0);
                if let Some(slot) = draw(&rest, n, seed, None) {
                    rest.subtract(&slot);
                    self.record(&g.unit, OwnerKind::Slot, &State::slot_id(name, i), vec![], seed, &slot);
                }
            }
            let slots = |g: &config::Group| g.slots.iter().map(Share::percent).collect::<Vec<_>>().join(", ");
            match old.filter(|_| exists) {
                // A forced change of a group's share or slots redraws it: an update, before → after.
                Some(o) => self.change(
                    "group",
                    name,
                    "update",
                    format!(
                        "{} [{}] → {} ({count} buckets) [{}]; redrawn",
                        o.share.percent(),
                        slots(o),
                        g.share.percent(),
                        slots(g)
                    ),
                ),
                None => self.change(
                    "group",
                    name,
                    "create",
                    format!("{} ({count} buckets) in {} slots [{}]", g.share.percent(), g.slots.len(), slots(g)),
                ),
            }
        }
    }

    fn release_group(&mut self, name: &str, slots: usize) {
        self.release(OwnerKind::Group, name);
        for i in 0..slots {
            self.release(OwnerKind::Slot, &State::slot_id(name, i));
        }
    }

    /// The buckets an experiment may draw from, before exclusion: the intersection of its slots
    /// over all its groups, or the whole space.
    fn within(&self, e: &Experiment, b: u32) -> Dense {
        let mut within = Dense::full(b);
        for g in &e.groups {
            let mut slots = Dense::empty(b);
            for &i in &g.slots {
                if let Some(a) = self.live(OwnerKind::Slot, &State::slot_id(&g.group, i)) {
                    slots.union_compact(&a.draws[0].buckets);
                }
            }
            within.intersect_with(&slots);
        }
        within
    }

    /// Whether exclusive experiments `a` and `b` may share buckets: their targeting is
    /// provably disjoint on attributes their unit type declares stable.
    /// (By their numbers in the configuration.)
    fn disjoint(&self, ia: usize, ib: usize) -> bool {
        let (Some(Some(na)), Some(Some(nb))) = (self.necessary.get(ia), self.necessary.get(ib)) else { return false };
        let unit = &self.cfg.experiments[ia].unit;
        self.stable.get(unit).is_some_and(|stable| na.disjoint_on(nb, stable).is_some())
    }

    /// Kept running experiments that share buckets on a proof that no longer holds (recorded
    /// before sharing required stable attributes, or an attribute was removed from `stable`):
    /// refused by name until resolved. The plan's state redraws the conflict (what forcing
    /// records, with the moved share in `impact`); nothing changes unless forced.
    fn refuse_legacy_sharing(&mut self, id: &str, other: &str) {
        let (e, o) = (&self.cfg.experiments[id], &self.cfg.experiments[other]);
        let attrs = match (&e.targeting, &o.targeting) {
            (Some(a), Some(b)) => {
                crate::targeting::disjoint_on(a, b, &self.cfg.segments, &attribute_names(a, b, &self.cfg.segments))
            }
            _ => None,
        };
        let on = attrs.map_or("their targeting".to_string(), |a| format!("`{}`", a.join("`, `")));
        self.refuse(
            join(&join("experiments", id), "targeting"),
            Rule::SharesOnMutableAttribute,
            format!(
                "running exclusive experiments `{other}` and `{id}` share buckets because their targeting is disjoint on {on}, which unit type `{}` does not declare `stable`: a unit whose attribute changes is in both. Resolve it: declare the attribute stable (if units never change it) or stop one of them",
                e.unit
            ),
        );
    }

    /// Least-recently-used tiers: per shard, the latest version at which an allocation in this
    /// experiment's exclusion scope released it.
    fn recency(&self, id: &str, e: &Experiment, b: u32) -> Vec<u64> {
        let tags = self.cfg.tags_of(e);
        let excl = self.cfg.exclusive_to_of(e);
        let groups: Vec<&str> = e.groups.iter().map(|g| g.group.as_str()).collect();
        let mut rec = vec![0u64; b.div_ceil(crate::bucketset::SHARD) as usize];
        let released = self.st.allocations.iter().rev().filter(|a| {
            // Cheapest test first: most allocations of a running program are live.
            a.released.is_some()
                && a.kind == OwnerKind::Experiment
                && a.space == e.unit
                && a.owner != id
                // Released before the space was resized: its buckets are not this space's.
                && a.draws.first().is_some_and(|d| d.buckets.space() == b)
                && (a.tags.iter().any(|t| excl.contains(t) || tags.contains(t) || groups.contains(&t.as_str())))
        });
        for a in released.take(RECENCY_WINDOW) {
            let v = a.released.unwrap_or(0);
            a.current().compact().for_each_mask(|s, _| rec[s] = rec[s].max(v));
        }
        rec
    }

    fn experiments(&mut self) {
        // Lifecycle transitions and removals.
        for (id, o) in &self.old.experiments {
            let path = join("experiments", id);
            match self.cfg.experiments.get(id) {
                None => {
                    if o.state == ExpState::Running {
                        self.refuse(
                            &path,
                            Rule::RunningRemoved,
                            format!("running experiment `{id}` was removed from the file; set `state: stopped` first"),
                        );
                    }
                    self.release(OwnerKind::Experiment, id);
                    self.change("experiment", id, "delete", "removed from the configuration");
                }
                Some(n) if n.state != o.state => {
                    use ExpState::*;
                    let ok = matches!(
                        (o.state, n.state),
                        (Draft, Running)
                            | (Draft, Stopped)
                            | (Draft, Archived)
                            | (Running, Stopped)
                            | (Running, Archived)
                            | (Stopped, Archived)
                    );
                    if !ok {
                        self.refuse(
                            join(&path, "state"),
                            Rule::Lifecycle,
                            format!(
                                "`{}` → `{}` is not allowed (draft → running → stopped → archived){}",
                                o.state.as_str(),
                                n.state.as_str(),
                                if o.state == Stopped && n.state == Running {
                                    "; a stopped experiment's units were released: start a copy under a new id"
                                } else {
                                    ""
                                }
                            ),
                        );
                    }
                    if o.state == Running {
                        self.release(OwnerKind::Experiment, id);
                    }
                    let action = match n.state {
                        Running => "start",
                        Stopped => "stop",
                        Archived => "archive",
                        Draft => "update",
                    };
                    let detail = if o.state == Running { "buckets return to the free pool" } else { "" };
                    self.change(
                        "experiment",
                        id,
                        action,
                        format!(
                            "{} → {}{}{}",
                            o.state.as_str(),
                            n.state.as_str(),
                            if detail.is_empty() { "" } else { "; " },
                            detail
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        // Settings changes, and the rules for running experiments.
        for (id, n) in &self.cfg.experiments {
            let path = join("experiments", id);
            let Some(o) = self.old.experiments.get(id) else {
                self.refuse_reused_id(OwnerKind::Experiment, id);
                self.change(
                    "experiment",
                    id,
                    "create",
                    format!("{} ({})", n.state.as_str(), n.share.map_or("its slots".into(), |s| s.percent())),
                );
                continue;
            };
            let both_running = o.state == ExpState::Running && n.state == ExpState::Running;
            let mut what = vec![];
            if o.unit != n.unit {
                what.push(format!("unit {} → {}", o.unit, n.unit));
                if both_running {
                    self.refuse(
                        join(&path, "unit"),
                        Rule::MovesUnits,
                        "changing the unit type of a running experiment reassigns every unit",
                    );
                }
            }
            if o.groups != n.groups {
                what.push("groups/slots".into());
                if both_running {
                    self.refuse(
                        join(&path, "group"),
                        Rule::GroupMembershipFixed,
                        "a running experiment cannot join or leave a group or change slots",
                    );
                }
            }
            if o.share != n.share {
                what.push(format!(
                    "share {} → {}",
                    o.share.map_or("slots".into(), |s| s.percent()),
                    n.share.map_or("slots".into(), |s| s.percent())
                ));
            }
            if !same_variants(&o.variants, &n.variants) {
                what.push("variants".into());
            }
            if o.salt != n.salt {
                what.push("salt".into());
            }
            if o.include != n.include {
                what.push("inclusions".into());
            }
            if o.surfaces != n.surfaces || o.tags != n.tags || o.exclusive_to != n.exclusive_to {
                what.push("exclusion scopes".into());
            }
            if o.requires != n.requires {
                what.push("prerequisites".into());
                if both_running {
                    self.refuse(
                        join(&path, "requires"),
                        Rule::MovesUnits,
                        "changing the prerequisites of a running experiment moves the units they admit or exclude",
                    );
                }
            }
            if o.sticky != n.sticky {
                what.push(format!("sticky {}", n.sticky));
            }
            // Compared with segments inlined: a change to a segment is a change to every
            // experiment whose targeting uses it.
            let (ot, nt) = (self.old_targeting(id), self.new_targeting(id));
            if ot != nt {
                let through = if o.targeting == n.targeting { " (through its segments)" } else { "" };
                what.push(format!("targeting{through}"));
                let kept_by_store = self.sticky_store && o.sticky && n.sticky;
                if both_running && !kept_by_store && !widens(ot.as_ref(), nt.as_ref(), &IndexMap::new()) {
                    self.refuse(join(&path, "targeting"), Rule::MovesUnits, format!("the new targeting{through} may exclude units that are assigned now (allot can prove only widening changes safe); their share depends on your population"));
                }
            }
            if !what.is_empty() {
                self.change("experiment", id, "update", what.join(", "));
            }
        }
        // Drafts that can never fit: more than what holdouts and reserved groups leave them.
        for (id, e) in &self.cfg.experiments {
            let Some(share) = e.share.filter(|_| e.state == ExpState::Draft) else { continue };
            let b = self.space_size(&e.unit);
            let Ok(want) = share.buckets(u64::from(b)) else { continue };
            let nothing_placed = Placed::default();
            let (room, _, fixed) = self.free_for(id, e, b, &nothing_placed);
            if want > room.len() {
                let held: Vec<String> = fixed.iter().map(|(kind, w, n)| format!("{kind} {w} {n}")).collect();
                self.warnings.push(format!(
                    "experiments.{id}: {} ({want} buckets) can never fit: at most {} ({}) is outside {}",
                    share.percent(),
                    room.len(),
                    pct(room.len() as f64 / f64::from(b)),
                    if held.is_empty() { "its slots".to_string() } else { held.join(", ") }
                ));
            }
        }
        // Allocation: kept ones first, then growths, then new ones. Sets stay compact unless
        // they change: an untouched running experiment costs a few bitmap intersections.
        let running: Vec<String> = self
            .cfg
            .experiments
            .iter()
            .filter(|(_, e)| e.state == ExpState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        let mut placed = Placed::default();
        let mut pending: Vec<(String, Option<BucketSet>)> = vec![];
        // Live holdouts: an explicit share must stay clear of those that apply to it.
        let holdout_sets: Vec<(&String, BucketSet)> = self
            .cfg
            .holdouts
            .keys()
            .filter_map(|name| self.live(OwnerKind::Holdout, name).map(|a| (name, a.current_compact())))
            .collect();
        for id in &running {
            let e = &self.cfg.experiments[id];
            let scope = Scope::of(self.cfg, e);
            let kept = self.old.experiments.get(id).is_some_and(|o| o.state == ExpState::Running && o.unit == e.unit);
            match (kept, self.live(OwnerKind::Experiment, id).map(Allocation::current_compact)) {
                (true, Some(cur)) => {
                    let b = cur.space();
                    let before = cur.len();
                    let outside_slots = !e.groups.is_empty() && {
                        let within = self.within(e, b).compact();
                        cur.intersection_len(&within) < before
                    };
                    let mut legacy: Vec<String> = vec![];
                    let me = self.cfg.experiments.get_index_of(id).unwrap_or(usize::MAX);
                    let conflicts: Vec<&BucketSet> = placed
                        .excluded_by(me, &scope)
                        .filter(|(other, oi, set)| {
                            let conflict = cur.intersection_len(set) > 0 && !self.disjoint(me, *oi);
                            // Shared under the rules the state was recorded with (exclusive then,
                            // and disjoint by any attribute), no longer allowed now.
                            let was_shared = conflict
                                && self.old_live.contains_key(*other)
                                && self.old.exclusive(id, other)
                                && matches!(
                                    (self.old.experiments.get(id), self.old.experiments.get(*other)),
                                    (Some(x), Some(y)) if matches!((&x.targeting, &y.targeting),
                                        (Some(a), Some(b)) if provably_disjoint(a, b, &self.old.segments))
                                );
                            if was_shared {
                                legacy.push(other.to_string());
                            }
                            conflict
                        })
                        .map(|(_, _, set)| set)
                        .collect();
                    for other in &legacy {
                        self.refuse_legacy_sharing(id, other);
                    }
                    // Buckets of holdouts that now apply to it (its scope or the holdout's
                    // changed): an explicit share is exact, so they are redrawn elsewhere.
                    let held: Vec<&BucketSet> = holdout_sets
                        .iter()
                        .filter(|(name, set)| {
                            e.share.is_some()
                                && self.cfg.holdout_applies(&self.cfg.holdouts[*name], id)
                                && cur.intersection_len(set) > 0
                        })
                        .map(|(_, set)| set)
                        .collect();
                    // Groups whose scope it entered in this change: they reserve their buckets.
                    // (A recorded state from before groups reserved their share may have
                    // outsiders in them; those are left where they are rather than moved.)
                    let group_sets: Vec<BucketSet> = self
                        .cfg
                        .groups
                        .iter()
                        .filter(|(name, g)| {
                            !e.groups.iter().any(|r| &r.group == *name)
                                && self.cfg.in_group_scope(e, g)
                                && !matches!(
                                    (self.old.experiments.get(id), self.old.groups.get(*name)),
                                    (Some(oe), Some(og)) if self.old.in_group_scope(oe, og)
                                )
                        })
                        .filter_map(|(name, _)| self.live(OwnerKind::Group, name).map(Allocation::current_compact))
                        .filter(|set| cur.intersection_len(set) > 0)
                        .collect();
                    let cur = if outside_slots || !conflicts.is_empty() || !held.is_empty() || !group_sets.is_empty() {
                        let mut d = cur.dense();
                        if outside_slots {
                            d.intersect_with(&self.within(e, b));
                        }
                        for set in conflicts.into_iter().chain(held).chain(&group_sets) {
                            d.subtract_compact(set);
                        }
                        let lost = before - d.len();
                        // Whether this moves assigned units (or only buckets whose units a holdout
                        // already held back) is measured in `impact`, which refuses any move.
                        self.change(
                            "experiment",
                            id,
                            "redraw",
                            format!(
                                "{lost} of its buckets ({}) conflict with its new slots, exclusion scopes or holdouts and are redrawn elsewhere",
                                pct(lost as f64 / before as f64)
                            ),
                        );
                        let seed = self.seed("experiment-conflict", id, 0);
                        let mut gone = cur.dense();
                        gone.subtract(&d);
                        self.add_draw(OwnerKind::Experiment, id, seed, DrawOp::Remove, &gone);
                        d.compact()
                    } else {
                        cur
                    };
                    placed.push(id, me, &scope, cur.clone());
                    pending.push((id.clone(), Some(cur)));
                }
                _ => {
                    // Not running before (or its space was reset): a fresh draw.
                    self.release(OwnerKind::Experiment, id);
                    pending.push((id.clone(), None));
                }
            }
        }
        // Growths (and refills after conflicts) before new experiments draw.
        pending.sort_by_key(|(_, cur)| cur.is_none());
        for (id, cur) in pending {
            let e = &self.cfg.experiments[&id];
            let path = join("experiments", &id);
            let b = self.space_size(&e.unit);
            let have = cur.as_ref().map_or(0, BucketSet::len);
            // Buckets held before this change (conflicts may have removed some since).
            let orig = match self.old_live.get(&id) {
                Some(n) => *n,
                None => have,
            };
            let target = match (e.share, &cur) {
                (Some(s), _) => s.buckets(u64::from(b)).unwrap_or(0),
                (None, Some(_)) => orig.max(have),
                (None, None) => u64::MAX, // all that is free in its slots
            };
            if e.groups.len() > 1 && cur.is_none() {
                let within = self.within(e, b);
                self.warnings.push(format!(
                    "experiments.{id}: it is in {} groups, so it reaches only the intersection of their slots ({} of units); one group is simpler and wastes less traffic",
                    e.groups.len(),
                    pct(within.len() as f64 / f64::from(b))
                ));
            }
            if let Some(cur) = cur {
                if target == have {
                    continue;
                }
                let mut cur = cur.dense();
                if target < have {
                    self.refuse(
                        join(&path, "share"),
                        Rule::NoShrink,
                        format!(
                            "a running allocation cannot shrink ({orig} → {target} buckets): {} of its units would lose their variant",
                            pct((orig - target.min(orig)) as f64 / orig.max(1) as f64)
                        ),
                    );
                    let seed = self.seed("experiment-shrink", &id, 0);
                    if let Some(remove) = draw(&cur, have - target, seed, None) {
                        self.add_draw(OwnerKind::Experiment, &id, seed, DrawOp::Remove, &remove);
                        cur.subtract(&remove);
                    }
                } else {
                    let (mut free, within, blockers) = self.free_for(&id, e, b, &placed);
                    free.subtract(&cur);
                    // Without a share it holds "its slots": whatever of them is free.
                    let need = if e.share.is_none() { (target - have).min(free.len()) } else { target - have };
                    let seed = self.seed("experiment-grow", &id, 0);
                    let rec = self.recency(&id, e, b);
                    match draw(&free, need, seed, Some(&rec)) {
                        Some(add) => {
                            self.add_draw(OwnerKind::Experiment, &id, seed, DrawOp::Add, &add);
                            if target > orig {
                                self.change(
                                    "experiment",
                                    &id,
                                    "grow",
                                    format!("{orig} → {target} buckets (adds units only)"),
                                );
                            }
                            cur.union_with(&add);
                        }
                        None => self.errors.push(no_space(&path, e.share, target, need, &free, &within, &blockers)),
                    }
                }
                placed.update(&id, cur.compact());
            } else {
                let (free, within, blockers) = self.free_for(&id, e, b, &placed);
                if target == u64::MAX && free.len() < within.len() {
                    // It takes its slots whole: anything less is a short reach nobody asked for.
                    let mut err = no_space(&path, None, within.len(), within.len(), &free, &within, &blockers);
                    err.message.push_str(
                        "; an experiment without a share takes all of its slots: give it a share it can have, or free its slots first",
                    );
                    self.errors.push(err);
                    continue;
                }
                let target = if target == u64::MAX { free.len() } else { target };
                let seed = self.seed("experiment", &id, 0);
                let rec = self.recency(&id, e, b);
                match draw(&free, target, seed, Some(&rec)) {
                    Some(set) => {
                        let sc = Scope::of(self.cfg, e);
                        let tags = sc.tags.iter().chain(&sc.groups).cloned().collect();
                        self.record(&e.unit, OwnerKind::Experiment, &id, tags, seed, &set);
                        let me = self.cfg.experiments.get_index_of(&id).unwrap_or(usize::MAX);
                        placed.push(&id, me, &sc, set.compact());
                    }
                    None => self.errors.push(no_space(&path, e.share, target, target, &free, &within, &blockers)),
                }
            }
        }
    }

    /// The buckets experiment `id` may draw from now: inside its slots, outside every placed
    /// allocation it must be exclusive to (unless targeting is provably disjoint), and — when it
    /// has an explicit share — outside the holdouts that apply to it. Also returns its slots and
    /// what blocks the rest, for error messages.
    fn free_for<'p>(&self, id: &str, e: &Experiment, b: u32, placed: &'p Placed) -> (Dense, Dense, Vec<Holder<'p>>)
    where
        'a: 'p,
    {
        let cfg: &'a Config = self.cfg;
        let within = self.within(e, b);
        let mut free = within.clone();
        let mut blockers: Vec<Holder<'p>> = vec![];
        let me = cfg.experiments.get_index_of(id).unwrap_or(usize::MAX);
        for (other, oi, set) in placed.excluded_by(me, &Scope::of(cfg, e)) {
            if self.disjoint(me, oi) {
                continue;
            }
            let removed = free.subtract_compact_counted(set);
            if removed > 0 {
                blockers.push(("experiment", other, removed));
            }
        }
        // A group reserves its whole share, members or not: an experiment in its scope that is
        // not a member never draws from it.
        for (name, g) in &cfg.groups {
            if g.unit != e.unit || e.groups.iter().any(|r| &r.group == name) || !cfg.in_group_scope(e, g) {
                continue;
            }
            if let Some(a) = self.live(OwnerKind::Group, name) {
                let before = free.len();
                free.subtract(&a.current());
                if free.len() < before {
                    blockers.push(("group", name, before - free.len()));
                }
            }
        }
        if e.share.is_some() {
            for (name, h) in &cfg.holdouts {
                if self.cfg.holdout_applies(h, id) {
                    if let Some(a) = self.live(OwnerKind::Holdout, name) {
                        let before = free.len();
                        free.subtract(&a.current());
                        if free.len() < before {
                            blockers.push(("holdout", name, before - free.len()));
                        }
                    }
                }
            }
        }
        (free, within, blockers)
    }

    /// Exact impact on every experiment running before and after.
    fn impact(&self, before: &State) -> IndexMap<String, Impact> {
        let old_index = live_index(before);
        let old_live =
            |kind: OwnerKind, id: &str| old_index.get(&(kind, id.to_string())).map(|&i| &before.allocations[i]);
        // The live holdout allocation ids that apply to an experiment, before and after.
        let applying = |live: &dyn Fn(OwnerKind, &str) -> Option<u64>, cfg: &Config, id: &str| -> Vec<u64> {
            cfg.holdouts
                .iter()
                .filter(|(_, h)| cfg.holdout_applies(h, id))
                .filter_map(|(name, _)| live(OwnerKind::Holdout, name))
                .collect()
        };
        let mut out = IndexMap::new();
        for (id, n) in &self.cfg.experiments {
            if n.state != ExpState::Running {
                continue;
            }
            let Some(o) = self.old.experiments.get(id).filter(|o| o.state == ExpState::Running) else { continue };
            let b = self.space_size(&n.unit);
            let (Some(old_a), Some(new_a)) =
                (old_live(OwnerKind::Experiment, id), self.live(OwnerKind::Experiment, id))
            else {
                continue;
            };
            let old_h = applying(&|k, x| old_live(k, x).map(|a| a.id), self.old, id);
            let new_h = applying(&|k, x| self.live(k, x).map(|a| a.id), self.cfg, id);
            let unchanged = old_a.id == new_a.id && old_a.draws == new_a.draws && old_h == new_h;
            let (buckets_before, buckets_after, by_buckets) = if unchanged {
                let n = old_a.current_compact().len();
                (n, n, 0.0)
            } else {
                let (mut eff_old, mut eff_new) = (old_a.current(), new_a.current());
                let counts = (eff_old.len(), eff_new.len());
                eff_old.subtract(&holdout_union(before, self.old, id, b));
                eff_new.subtract(&holdout_union(&self.st, self.cfg, id, b));
                let base = eff_old.len();
                eff_old.subtract(&eff_new);
                (counts.0, counts.1, if base == 0 { 0.0 } else { eff_old.len() as f64 / base as f64 })
            };
            // Ids read from another attribute: every unit is, as far as allot can tell, another.
            let attribute_changed =
                self.old.units.get(&o.unit).map(|u| &u.attribute) != self.cfg.units.get(&n.unit).map(|u| &u.attribute);
            let by_split = if o.unit != n.unit || attribute_changed {
                1.0
            } else if o.salt == n.salt && same_variants(&o.variants, &n.variants) {
                0.0
            } else {
                Split::new(&o.salt, &o.variants).moved_share(&Split::new(&n.salt, &n.variants))
            };
            let moved =
                if o.unit != n.unit || attribute_changed { 1.0 } else { by_buckets + (1.0 - by_buckets) * by_split };
            out.insert(
                id.clone(),
                Impact {
                    moved_share: moved,
                    moved_by_buckets: by_buckets,
                    moved_by_split: by_split,
                    buckets_before,
                    buckets_after,
                    targeting_changed: self.old_targeting(id) != self.new_targeting(id),
                    sticky: n.sticky,
                    measured: None,
                    stored_assignments: None,
                },
            );
        }
        out
    }
}

/// Every attribute either expression constrains (to name what a disjointness proof used).
fn attribute_names(a: &Targeting, b: &Targeting, segments: &IndexMap<String, Targeting>) -> Vec<String> {
    let mut out = Compiled::compile(a, segments).attributes();
    out.extend(Compiled::compile(b, segments).attributes());
    out
}

/// Variants equal in order too: the split's ranges follow the order they are written in, so a
/// reordering moves units (IndexMap's own equality ignores order).
fn same_variants(a: &IndexMap<String, config::Variant>, b: &IndexMap<String, config::Variant>) -> bool {
    a.len() == b.len() && a.iter().eq(b.iter())
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

/// Whether `new` provably admits every context `old` admits.
fn widens(old: Option<&Targeting>, new: Option<&Targeting>, segments: &IndexMap<String, Targeting>) -> bool {
    match (old, new) {
        (_, None) => true,
        (None, Some(n)) => n.is_always(),
        (Some(o), Some(n)) => {
            if n.is_always() {
                return true;
            }
            // old ⊆ new  ⇔  no context matches old and (not new).
            let neg = Targeting::parse(&serde_json::json!({"not": n.to_json()}), "").ok();
            neg.is_some_and(|neg| provably_disjoint(o, &neg, segments))
        }
    }
}

/// What holds buckets an experiment asked for: (kind, id, buckets).
type Holder<'p> = (&'static str, &'p str, u64);

fn no_space(
    path: &str,
    share: Option<Share>,
    target: u64,
    need: u64,
    free: &Dense,
    within: &Dense,
    blockers: &[Holder<'_>],
) -> FieldError {
    let b = f64::from(free.space());
    let mut held: Vec<String> =
        blockers.iter().map(|(kind, w, n)| format!("{kind} {w} {n} ({})", pct(*n as f64 / b))).collect();
    let outside = u64::from(free.space()) - within.len();
    if outside > 0 {
        held.push(format!("outside its slots {outside} ({})", pct(outside as f64 / b)));
    }
    FieldError::new(
        join(path, "share"),
        format!(
            "{} requested ({target} buckets, {need} to draw), {} free ({}); the rest is held by: {}",
            share.map_or("its slots".into(), |s| s.percent()),
            free.len(),
            pct(free.len() as f64 / b),
            if held.is_empty() { "nothing".into() } else { held.join(", ") }
        ),
    )
}
