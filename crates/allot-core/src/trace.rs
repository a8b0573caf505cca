//! The evaluation trace of one context: for each experiment, the steps evaluation went through in
//! its order of operations ([`crate::eval`]) — running?, the unit id and its bucket (and who holds
//! that bucket), inclusion, holdout, allocation (with the group slots holding the bucket), sticky,
//! each prerequisite, targeting with the result of each condition, the split — and the final
//! variant and reason.
//!
//! The trace walks the same compiled [`Snapshot`] as evaluation, with the same tests in the same
//! order, so its final `(variant, reason)` is evaluation's; a property test over random
//! configurations and contexts holds it to that (`crates/allot-core/tests/it/invariants/`,
//! `the_trace_ends_where_evaluation_does`). It is for people (`allot trace`,
//! `POST /api/v1/evaluate/trace`), not for the hot path: it allocates, reads the state for the
//! holders of a bucket, and explains every condition of a targeting.

use crate::config::Config;
use crate::eval::{Assignment, Reason, Snapshot, StickyStore};
use crate::history::bucket_history;
use crate::state::{OwnerKind, State};
use crate::targeting::{Compiled, Targeting};
use crate::Context;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

/// A live allocation that holds a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// `experiment`, `holdout`, `group` or `slot`.
    pub kind: OwnerKind,
    /// Its owner (a slot is `<group>#<n>`, 1-based).
    pub owner: String,
}

/// One condition (criterion) of a targeting, with segments expanded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// The criterion as written (`{"attribute": "country", "in": ["SE"]}`).
    pub criterion: Value,
    /// The segment it belongs to (the innermost), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The context's value of its attribute (`null` when missing).
    pub value: Value,
    /// Whether it holds for this context.
    pub matched: bool,
}

/// One step of an experiment's evaluation, in the order evaluation takes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Whether the experiment is running with an allocation (else `NOT_RUNNING`), and whether it
    /// is paused (then `PAUSED`).
    Running {
        /// Running?
        running: bool,
        /// Paused? (Written only when true.)
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        paused: bool,
    },
    /// The unit id read from the unit type's attribute, and its bucket (else `MISSING_UNIT`).
    Unit {
        /// The unit type.
        unit_type: String,
        /// The context attribute that carries the id.
        attribute: String,
        /// The id, if the context has one.
        unit: Option<String>,
        /// Its bucket (through every re-salt).
        bucket: Option<u32>,
        /// Every live allocation holding that bucket.
        held_by: Vec<Holder>,
    },
    /// An individual inclusion (`INCLUDED`, bypassing everything below).
    Inclusion {
        /// Whether the unit is included.
        included: bool,
        /// The variant it is included in.
        variant: Option<String>,
    },
    /// The holdouts that apply to the experiment (`HOLDOUT` when one holds the bucket).
    Holdout {
        /// Whether the bucket is held out.
        held_out: bool,
        /// The holdouts that apply and hold the bucket.
        holdouts: Vec<String>,
    },
    /// The experiment's allocation (`NOT_ALLOCATED` when it does not hold the bucket).
    Allocation {
        /// The bucket.
        bucket: u32,
        /// Whether the allocation holds it.
        allocated: bool,
        /// The experiment's group slots that hold the bucket (`<group>#<n>`).
        slots: Vec<String>,
    },
    /// A sticky experiment's stored assignment (`STICKY`; `STICKY_UNAVAILABLE` when unknown).
    Sticky {
        /// The stored variant, if any.
        stored: Option<String>,
        /// Whether the store could tell (false: the store could not be read for this unit).
        known: bool,
    },
    /// One prerequisite, in order (`PREREQUISITE_FAILED` at the first that fails).
    Prerequisite {
        /// The experiment required.
        experiment: String,
        /// The variants it must give.
        variants: Vec<String>,
        /// The variant it gave, if any.
        variant: Option<String>,
        /// Why it gave it.
        reason: Reason,
        /// Whether the requirement holds.
        ok: bool,
    },
    /// Targeting (`TARGETING_MISS` when it does not match).
    Targeting {
        /// Whether the whole expression matches.
        matched: bool,
        /// Each condition, segments expanded, in order of appearance.
        conditions: Vec<Condition>,
    },
    /// The variant split (`ASSIGNED`).
    Split {
        /// The unit's bucket of the split (of the split's buckets, 1,000,000 by default).
        split_bucket: u32,
        /// The variant of that bucket.
        variant: String,
    },
}

/// The trace of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentTrace {
    /// The steps, in order; the last decided.
    pub steps: Vec<Step>,
    /// The final variant, if any.
    pub variant: Option<String>,
    /// The final reason.
    pub reason: Reason,
}

/// The trace of one context over a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The configuration version.
    pub version: u64,
    /// By experiment id, in configuration order (or the order asked).
    pub experiments: IndexMap<String, ExperimentTrace>,
}

impl ExperimentTrace {
    /// The final answer as evaluation gives it.
    pub fn assignment(&self, snap: &Snapshot, i: usize) -> Assignment {
        let variant = self
            .variant
            .as_ref()
            .and_then(|v| snap.experiments[i].split.names.iter().position(|n| n == v))
            .map(|v| v as u16);
        Assignment { variant, reason: self.reason }
    }
}

/// Traces experiments `which` (every one when `None`, in configuration order) for `ctx`.
/// `snap` must be compiled from `state` with `cfg`, its configuration (the holders of a bucket,
/// the holdouts' names and the targeting's conditions come from them; every decision from `snap`).
pub fn trace(
    snap: &Snapshot,
    state: &State,
    cfg: &Config,
    ctx: &Context,
    sticky: &dyn StickyStore,
    which: Option<&[usize]>,
) -> Trace {
    // Per space: the unit and its bucket, as evaluation computes them, and who holds the bucket.
    let units: Vec<Option<(String, u32)>> = (0..snap.spaces.len())
        .map(|s| snap.unit_id(s, ctx).map(|u| (u.to_string(), snap.spaces[s].bucket(&u))))
        .collect();
    let holders: Vec<Vec<Holder>> = units
        .iter()
        .enumerate()
        .map(|(s, u)| match u {
            Some((_, b)) => bucket_history(state, &snap.spaces[s].name, *b)
                .into_iter()
                .filter(|span| span.until_version.is_none())
                .map(|span| Holder { kind: span.kind, owner: span.owner })
                .collect(),
            None => vec![],
        })
        .collect();
    let all: Vec<usize>;
    let which = match which {
        Some(w) => w,
        None => {
            all = (0..snap.experiments.len()).collect();
            &all
        }
    };
    // The experiments asked and, transitively, their prerequisites.
    let mut needed = vec![false; snap.experiments.len()];
    let mut todo: Vec<usize> = which.iter().copied().filter(|&i| i < needed.len()).collect();
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut needed[i], true) {
            todo.extend(snap.experiments[i].requires.iter().map(|(j, _)| *j));
        }
    }
    let mut done: Vec<Option<ExperimentTrace>> = vec![None; snap.experiments.len()];
    // Prerequisites first, as evaluation takes them.
    for &i in snap.order.iter().filter(|&&i| needed[i]) {
        let t = one(snap, cfg, ctx, sticky, &units, &holders, i, &done);
        done[i] = Some(t);
    }
    let experiments =
        which.iter().filter_map(|&i| Some((snap.experiments.get(i)?.id.clone(), done.get(i)?.clone()?))).collect();
    Trace { version: snap.version, experiments }
}

#[allow(clippy::too_many_arguments)]
fn one(
    snap: &Snapshot,
    cfg: &Config,
    ctx: &Context,
    sticky: &dyn StickyStore,
    units: &[Option<(String, u32)>],
    holders: &[Vec<Holder>],
    i: usize,
    done: &[Option<ExperimentTrace>],
) -> ExperimentTrace {
    let e = &snap.experiments[i];
    let name = |v: u16| e.split.names.get(usize::from(v)).cloned();
    let mut steps = vec![];
    let end = |steps: Vec<Step>, variant: Option<String>, reason| ExperimentTrace { steps, variant, reason };
    steps.push(Step::Running { running: e.running, paused: e.running && e.paused });
    if !e.running {
        return end(steps, None, Reason::NotRunning);
    }
    if e.paused {
        return end(steps, None, Reason::Paused);
    }
    let space = &snap.spaces[e.space];
    let unit = units[e.space].as_ref();
    steps.push(Step::Unit {
        unit_type: space.name.clone(),
        attribute: space.attribute.clone(),
        unit: unit.map(|(u, _)| u.clone()),
        bucket: unit.map(|(_, b)| *b),
        held_by: holders[e.space].clone(),
    });
    let Some((unit, b)) = unit else {
        return end(steps, None, Reason::MissingUnit);
    };
    let b = *b;
    let included = e.includes.get(unit.as_str()).copied();
    steps.push(Step::Inclusion { included: included.is_some(), variant: included.and_then(name) });
    if let Some(v) = included {
        return end(steps, name(v), Reason::Included);
    }
    let econf = cfg.experiments.get(&e.id);
    let held_out = e.holdout.as_ref().is_some_and(|h| h.contains(b));
    let holdouts = holders[e.space]
        .iter()
        .filter(|h| h.kind == OwnerKind::Holdout)
        .filter(|h| cfg.holdouts.get(&h.owner).is_some_and(|ho| cfg.holdout_applies(ho, &e.id)))
        .map(|h| h.owner.clone())
        .collect();
    steps.push(Step::Holdout { held_out, holdouts });
    if held_out {
        return end(steps, None, Reason::Holdout);
    }
    let allocated = e.alloc.contains(b);
    let slots = econf
        .map(|c| {
            c.groups
                .iter()
                .flat_map(|g| g.slots.iter().map(|&k| State::slot_id(&g.group, k)))
                .filter(|id| holders[e.space].iter().any(|h| h.kind == OwnerKind::Slot && h.owner == *id))
                .collect()
        })
        .unwrap_or_default();
    steps.push(Step::Allocation { bucket: b, allocated, slots });
    if !allocated {
        return end(steps, None, Reason::NotAllocated);
    }
    if e.sticky {
        let stored = sticky.get(&space.name, unit, &e.id);
        let known = stored.is_some() || sticky.knows(&space.name, unit);
        steps.push(Step::Sticky { stored: stored.clone(), known });
        match stored {
            Some(v) if e.split.names.contains(&v) => return end(steps, Some(v), Reason::Sticky),
            // A stored variant the experiment no longer has is passed over, as evaluation does.
            Some(_) => {}
            None if !known => return end(steps, None, Reason::StickyUnavailable),
            None => {}
        }
    }
    for (j, ok) in &e.requires {
        let other = &snap.experiments[*j];
        let got = done[*j].as_ref().map(|t| t.assignment(snap, *j));
        let got = got.unwrap_or(Assignment { variant: None, reason: Reason::NotRunning });
        let pass = got.variant.is_some_and(|v| ok.contains(&v));
        steps.push(Step::Prerequisite {
            experiment: other.id.clone(),
            variants: ok.iter().filter_map(|&v| other.split.names.get(usize::from(v)).cloned()).collect(),
            variant: got.variant.and_then(|v| other.split.names.get(usize::from(v)).cloned()),
            reason: got.reason,
            ok: pass,
        });
        if !pass {
            return end(steps, None, Reason::PrerequisiteFailed);
        }
    }
    if let Some(t) = &e.targeting {
        let matched = t.matches(ctx);
        let mut conditions = vec![];
        if let Some(tree) = econf.and_then(|c| c.targeting.as_ref()) {
            explain(tree, cfg, ctx, None, &mut Vec::new(), &mut conditions);
        }
        steps.push(Step::Targeting { matched, conditions });
        if !matched {
            return end(steps, None, Reason::TargetingMiss);
        }
    }
    let split_bucket = crate::hash::bucket(&e.split.salt, unit, e.split.buckets);
    let v = e.split.variant_of_bucket(split_bucket);
    let variant = e.split.names.get(v).cloned().unwrap_or_default();
    steps.push(Step::Split { split_bucket, variant: variant.clone() });
    end(steps, Some(variant), Reason::Assigned)
}

/// Every criterion of `t`, segments expanded (each segment once per path: cycles cannot pass
/// validation, and `stack` guards against them anyway), with its result on `ctx`.
fn explain<'a>(
    t: &'a Targeting,
    cfg: &'a Config,
    ctx: &Context,
    segment: Option<&'a str>,
    stack: &mut Vec<&'a str>,
    out: &mut Vec<Condition>,
) {
    match t {
        Targeting::All(cs) | Targeting::Any(cs) => {
            for c in cs {
                explain(c, cfg, ctx, segment, stack, out);
            }
        }
        Targeting::Not(c) => explain(c, cfg, ctx, segment, stack, out),
        Targeting::Segment(name) => {
            if stack.contains(&name.as_str()) {
                return;
            }
            if let Some((key, def)) = cfg.segments.get_key_value(name) {
                stack.push(key);
                explain(def, cfg, ctx, Some(key), stack, out);
                stack.pop();
            }
        }
        Targeting::Criterion(c) => {
            let matched = Compiled::compile(t, &cfg.segments).matches(ctx);
            let value = ctx.get(&c.attribute).cloned().unwrap_or(Value::Null);
            out.push(Condition { criterion: t.to_json(), segment: segment.map(str::to_string), value, matched });
        }
    }
}
