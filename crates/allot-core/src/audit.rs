//! The exact audit: from the recorded bucket sets, each experiment's share and reach, every
//! pair's shared buckets (exclusive pairs must share none unless their targeting is provably
//! disjoint), holdouts, groups and free space. Nothing is sampled.

use crate::bucketset::{BucketBitmap, BucketSet};
use crate::config::{Config, ExpState};
use crate::scope::Scope;
use crate::state::{OwnerKind, State};
use crate::targeting::provably_disjoint;
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::HashMap;

/// One experiment's exact traffic.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentAudit {
    /// Unit type.
    pub unit: String,
    /// Lifecycle state.
    pub state: ExpState,
    /// Paused (`state: paused`): running, holding its buckets, serving nobody.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Buckets held / buckets in the space.
    pub share: f64,
    /// Buckets held.
    pub buckets: u64,
    /// Share it can reach: held buckets not in a holdout that applies to it.
    pub reach: f64,
    /// Buckets it can reach.
    pub reach_buckets: u64,
    /// Share the configuration asked for, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<f64>,
}

/// Two running experiments of one space.
#[derive(Debug, Clone, Serialize)]
pub struct Overlap {
    /// One experiment.
    pub a: String,
    /// The other.
    pub b: String,
    /// Whether they must never share a unit.
    pub exclusive: bool,
    /// Buckets both hold.
    pub shared_buckets: u64,
    /// What independent draws would share on average: |a|·|b| / B.
    pub expected_shared_buckets: f64,
    /// Exclusive but allowed to share buckets because their targeting cannot both match on
    /// attributes their unit type declares `stable`.
    pub targeting_disjoint: bool,
    /// The stable attributes that proof rests on (empty when one side matches no one, or when
    /// they may not share).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disjoint_on: Vec<String>,
    /// False when exclusivity is violated.
    pub ok: bool,
}

/// A holdout's exact size.
#[derive(Debug, Clone, Serialize)]
pub struct HoldoutAudit {
    /// Unit type.
    pub unit: String,
    /// Share of the space.
    pub share: f64,
    /// Buckets.
    pub buckets: u64,
    /// Running experiments it applies to.
    pub experiments: Vec<String>,
}

/// One slot of a group.
#[derive(Debug, Clone, Serialize)]
pub struct SlotAudit {
    /// Slot number, from 1.
    pub slot: usize,
    /// Share of the whole space.
    pub share: f64,
    /// Buckets.
    pub buckets: u64,
    /// Buckets held by running experiments.
    pub used_buckets: u64,
    /// Running experiments in it.
    pub experiments: Vec<String>,
}

/// A group's exact layout.
#[derive(Debug, Clone, Serialize)]
pub struct GroupAudit {
    /// Share of the space.
    pub share: f64,
    /// Buckets.
    pub buckets: u64,
    /// Slots.
    pub slots: Vec<SlotAudit>,
}

/// A space's use.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceAudit {
    /// Buckets.
    pub buckets: u64,
    /// Buckets held by at least one running experiment.
    pub used_by_experiments: u64,
    /// Buckets in at least one holdout.
    pub in_holdouts: u64,
    /// Re-salts so far.
    pub resalts: usize,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// Configuration version audited.
    pub version: u64,
    /// Running experiments.
    pub experiments: IndexMap<String, ExperimentAudit>,
    /// Every pair of running experiments in one space.
    pub overlaps: Vec<Overlap>,
    /// Holdouts.
    pub holdouts: IndexMap<String, HoldoutAudit>,
    /// Groups.
    pub groups: IndexMap<String, GroupAudit>,
    /// Spaces.
    pub spaces: IndexMap<String, SpaceAudit>,
    /// Things worth knowing.
    pub warnings: Vec<String>,
    /// Broken invariants (should never happen); `allot audit` exits 1 when there are any.
    pub violations: Vec<String>,
}

fn pct(x: f64) -> String {
    format!("{}%", crate::config::fmt_num(x * 100.0))
}

/// Which pairs of running experiments an audit lists in [`Audit::overlaps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    /// Every pair of one space (what `allot audit` and `GET /api/v1/traffic` report).
    All,
    /// Only the exclusive pairs: the exclusivity proof, with every violation [`Pairs::All`]
    /// finds (a pair that is not exclusive can violate nothing). The independent pairs' shared
    /// buckets are then asked per experiment ([`overlaps_with`]): a program of 1,000 experiments
    /// has 499,500 pairs, most of them independent, and the console's overview needs none.
    Exclusive,
}

/// Audits the applied state.
pub fn audit(state: &State, cfg: &Config) -> Audit {
    audit_pairs(state, cfg, Pairs::All)
}

/// The running experiments of `cfg` with their current buckets.
fn running<'a>(state: &State, cfg: &'a Config) -> Vec<(&'a String, BucketSet)> {
    cfg.experiments
        .iter()
        .filter(|(_, e)| e.state == ExpState::Running)
        .filter_map(|(id, _)| state.live(OwnerKind::Experiment, id).map(|a| (id, a.current_compact())))
        .collect()
}

/// One pair's overlap and, when it breaks exclusivity, the violation.
fn pair(
    cfg: &Config,
    (a, ea, sa): (&str, &crate::config::Experiment, &BucketSet),
    (b, eb, sb): (&str, &crate::config::Experiment, &BucketSet),
    exclusive: bool,
    space: u32,
) -> (Overlap, Option<String>) {
    let shared = sa.intersection_len(sb);
    let sharing = if exclusive { cfg.sharing(ea, eb) } else { None };
    let disjoint = sharing.is_some();
    let ok = !exclusive || shared == 0 || disjoint;
    let violation = (!ok).then(|| {
        let mutable = match (&ea.targeting, &eb.targeting) {
            (Some(x), Some(y)) if provably_disjoint(x, y, &cfg.segments) => {
                " on targeting that is disjoint only on attributes not declared `stable` (a unit that changes them is in both)"
            }
            _ => "",
        };
        format!("exclusive experiments {a} and {b} share {shared} buckets{mutable}")
    });
    let overlap = Overlap {
        a: a.to_string(),
        b: b.to_string(),
        exclusive,
        shared_buckets: shared,
        expected_shared_buckets: sa.len() as f64 * sb.len() as f64 / f64::from(space),
        targeting_disjoint: disjoint,
        disjoint_on: sharing.unwrap_or_default(),
        ok,
    };
    (overlap, violation)
}

/// The overlaps of running experiment `id` with every other running experiment of its space, in
/// the order [`audit`] lists them (each pair as `audit` writes it: `a` before `b` in the
/// configuration). Empty when `id` is not running.
pub fn overlaps_with(state: &State, cfg: &Config, id: &str) -> Vec<Overlap> {
    let running = running(state, cfg);
    let Some(i) = running.iter().position(|(r, _)| r.as_str() == id) else { return vec![] };
    let e = &cfg.experiments[id];
    let scope = Scope::of(cfg, e);
    let space = state.spaces.get(&e.unit).map_or(1, |s| s.buckets);
    let (_, set) = &running[i];
    running
        .iter()
        .enumerate()
        .filter(|(j, (other, _))| *j != i && cfg.experiments[*other].unit == e.unit)
        .map(|(j, (other, oset))| {
            let o = &cfg.experiments[*other];
            let exclusive = scope.excludes(&Scope::of(cfg, o));
            let me = (id, e, set);
            let them = (other.as_str(), o, oset);
            if j < i {
                pair(cfg, them, me, exclusive, space).0
            } else {
                pair(cfg, me, them, exclusive, space).0
            }
        })
        .collect()
}

/// [`audit`], listing the pairs `pairs` says.
pub fn audit_pairs(state: &State, cfg: &Config, pairs: Pairs) -> Audit {
    let mut out = Audit {
        version: state.version,
        experiments: IndexMap::new(),
        overlaps: vec![],
        holdouts: IndexMap::new(),
        groups: IndexMap::new(),
        spaces: IndexMap::new(),
        warnings: vec![],
        violations: vec![],
    };
    let size = |unit: &str| state.spaces.get(unit).map_or(1, |s| s.buckets);
    let running = running(state, cfg);
    // The union of the holdouts that apply, once per distinct set of holdouts (most experiments
    // of a scope share theirs), compact: an experiment's reach is its buckets minus their
    // intersection, counted without a dense copy of the space per experiment.
    let mut unions: HashMap<(String, Vec<&String>), BucketSet> = HashMap::new();
    for (id, set) in &running {
        let e = &cfg.experiments[*id];
        let b = size(&e.unit);
        let applying: Vec<&String> = cfg
            .holdouts
            .iter()
            .filter(|(name, h)| cfg.holdout_applies(h, id) && state.live(OwnerKind::Holdout, name).is_some())
            .map(|(name, _)| name)
            .collect();
        let reach_len = if applying.is_empty() {
            set.len()
        } else {
            let held = unions
                .entry((e.unit.clone(), applying))
                .or_insert_with(|| crate::state::holdout_union(state, cfg, id, b).compact());
            set.len() - set.intersection_len(held)
        };
        let bf = f64::from(b);
        let requested = e.share.map(|s| s.fraction());
        if let Some(r) = e.share.and_then(|s| s.buckets(u64::from(b)).ok()) {
            if reach_len != r {
                out.violations.push(format!("experiment {id}: reaches {} buckets, configured {r}", reach_len));
            }
        }
        if e.groups.len() > 1 {
            out.warnings.push(format!(
                "experiment {id} is in {} groups: it reaches {} (the intersection of its slots); consider one group",
                e.groups.len(),
                pct(reach_len as f64 / bf)
            ));
        }
        if e.share.is_none() && reach_len < set.len() {
            out.warnings.push(format!(
                "experiment {id}: holdouts take {} of its slots' buckets, so it reaches {}",
                set.len() - reach_len,
                pct(reach_len as f64 / bf)
            ));
        }
        out.experiments.insert(
            (*id).clone(),
            ExperimentAudit {
                unit: e.unit.clone(),
                state: e.state,
                paused: e.paused,
                share: set.len() as f64 / bf,
                buckets: set.len(),
                reach: reach_len as f64 / bf,
                reach_buckets: reach_len,
                requested,
            },
        );
    }
    // Each running experiment's scope once, not once per pair: the pairs are quadratic
    // (`Config::exclusive` is the same rule, `Scope::excludes`, on scopes it builds each time).
    let exps: Vec<&crate::config::Experiment> = running.iter().map(|(id, _)| &cfg.experiments[*id]).collect();
    let scopes: Vec<Scope> = exps.iter().map(|e| Scope::of(cfg, e)).collect();
    for (i, (a, sa)) in running.iter().enumerate() {
        let ea = exps[i];
        for (j, (b, sb)) in running.iter().enumerate().skip(i + 1) {
            let eb = exps[j];
            if ea.unit != eb.unit {
                continue;
            }
            let exclusive = scopes[i].excludes(&scopes[j]);
            if !exclusive && pairs == Pairs::Exclusive {
                continue;
            }
            let (overlap, violation) = pair(cfg, (a, ea, sa), (b, eb, sb), exclusive, size(&ea.unit));
            out.violations.extend(violation);
            out.overlaps.push(overlap);
        }
    }
    for (name, h) in &cfg.holdouts {
        let n = state.live(OwnerKind::Holdout, name).map_or(0, |a| a.current().len());
        out.holdouts.insert(
            name.clone(),
            HoldoutAudit {
                unit: h.unit.clone(),
                share: n as f64 / f64::from(size(&h.unit)),
                buckets: n,
                experiments: running
                    .iter()
                    .filter(|(id, _)| cfg.holdout_applies(h, id))
                    .map(|(id, _)| (*id).clone())
                    .collect(),
            },
        );
    }
    for (name, g) in &cfg.groups {
        let b = size(&g.unit);
        let n = state.live(OwnerKind::Group, name).map_or(0, |a| a.current().len());
        let mut slots = vec![];
        for i in 0..g.slots.len() {
            let slot = state.live(OwnerKind::Slot, &State::slot_id(name, i)).map(|a| a.current());
            let slot_len = slot.as_ref().map_or(0, BucketBitmap::len);
            let mut used = BucketBitmap::empty(b);
            let mut members = vec![];
            for (id, set) in &running {
                let e = &cfg.experiments[*id];
                if e.groups.iter().any(|r| &r.group == name && r.slots.contains(&i)) {
                    members.push((*id).clone());
                    if let Some(s) = &slot {
                        let mut x = set.dense();
                        x.intersect_with(s);
                        used.union_with(&x);
                    }
                }
            }
            for (id, set) in &running {
                let e = &cfg.experiments[*id];
                if let Some(r) = e.groups.iter().find(|r| &r.group == name) {
                    if let Some(s) = &slot {
                        if !r.slots.contains(&i) && set.dense().intersection_len(s) > 0 {
                            out.violations.push(format!(
                                "experiment {id} holds buckets of slot {} of group {name}, which it does not occupy",
                                i + 1
                            ));
                        }
                    }
                }
            }
            slots.push(SlotAudit {
                slot: i + 1,
                share: slot_len as f64 / f64::from(b),
                buckets: slot_len,
                used_buckets: used.len(),
                experiments: members,
            });
        }
        out.groups.insert(name.clone(), GroupAudit { share: n as f64 / f64::from(b), buckets: n, slots });
    }
    for (name, s) in &state.spaces {
        if !cfg.units.contains_key(name) {
            continue;
        }
        let mut used = BucketBitmap::empty(s.buckets);
        let mut held = BucketBitmap::empty(s.buckets);
        for (id, set) in &running {
            if cfg.experiments[*id].unit == *name {
                used.union_compact(set);
            }
        }
        for a in state.allocations.iter().filter(|a| a.is_live() && a.kind == OwnerKind::Holdout && a.space == *name) {
            held.union_with(&a.current());
        }
        out.spaces.insert(
            name.clone(),
            SpaceAudit {
                buckets: u64::from(s.buckets),
                used_by_experiments: used.len(),
                in_holdouts: held.len(),
                resalts: s.resalts.len(),
            },
        );
    }
    out
}
