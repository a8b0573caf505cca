//! Evaluation: a compiled snapshot of the applied state that answers "which variant does this
//! unit get?" for every experiment, with a reason. Compiling can fail (a corrupt state);
//! evaluating cannot.
//!
//! Order of operations for one experiment (Amplitude's documented order, with allot's
//! prerequisites beside targeting):
//! 1. not running → `NOT_RUNNING`; paused → `PAUSED` (it keeps its allocation; no unit, not even
//!    an included one, gets a variant); no unit id in the context → `MISSING_UNIT`;
//! 2. individual inclusion → `INCLUDED` (bypasses everything below, exclusion included);
//! 3. a holdout that applies holds the unit's bucket → `HOLDOUT`;
//! 4. the experiment's allocation does not hold the bucket → `NOT_ALLOCATED`;
//! 5. a stored sticky assignment → `STICKY`; for a sticky experiment whose store could not be read
//!    for this unit ([`StickyStore::knows`] is false) → `STICKY_UNAVAILABLE`, no variant: the unit
//!    may hold an assignment that a fresh split would contradict, so none is served;
//! 6. a prerequisite experiment did not give one of the required variants → `PREREQUISITE_FAILED`;
//! 7. targeting does not match → `TARGETING_MISS`;
//! 8. the variant split → `ASSIGNED`.
//!
//! A unit's bucket: `bucket(salt, unit)` over the space, then through each re-salt in order: the
//! unit moves to a uniform pick among the buckets of its class, the buckets that every allocation
//! live at that re-salt treats alike ([`crate::salt`]), so no such allocation gains or loses a
//! unit. (A re-salt recorded in the earlier form froze the buckets held by running experiments
//! and holdouts and moved the others' units to `free[bucket(resalt salt, unit) mod |free|]`; it
//! keeps that meaning.)

use crate::bucketset::BucketSet;
use crate::config::{dependency_order, BucketHash, Config, ExpState};
use crate::error::FieldError;
use crate::hash;
use crate::salt::{classes_of, Landing, Layer, NO_HINT};
use crate::split::Split;
use crate::state::{OwnerKind, State};
use crate::targeting::{Compiled, Compiler};
use crate::Context;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// Why an experiment gave a unit the variant it did (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// Forced by an individual inclusion.
    Included,
    /// Assigned by the variant split.
    Assigned,
    /// From a stored sticky assignment.
    Sticky,
    /// In a holdout that applies to the experiment.
    Holdout,
    /// Its bucket is not in the experiment's allocation.
    NotAllocated,
    /// Targeting does not match.
    TargetingMiss,
    /// A prerequisite experiment did not give a required variant.
    PrerequisiteFailed,
    /// The experiment is not running.
    NotRunning,
    /// The experiment is paused: it holds its allocation but serves no variant (resuming serves
    /// every unit what it had).
    Paused,
    /// The context has no id for the experiment's unit type.
    MissingUnit,
    /// A sticky experiment whose stored assignments could not be read for this unit (the store
    /// is unreachable): no variant is served rather than one that may contradict a stored one.
    StickyUnavailable,
}

impl Reason {
    /// All reasons, in documentation order.
    pub const ALL: [Reason; 11] = [
        Reason::Included,
        Reason::Assigned,
        Reason::Sticky,
        Reason::Holdout,
        Reason::NotAllocated,
        Reason::TargetingMiss,
        Reason::PrerequisiteFailed,
        Reason::NotRunning,
        Reason::Paused,
        Reason::MissingUnit,
        Reason::StickyUnavailable,
    ];

    /// The wire name, e.g. `NOT_ALLOCATED`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Included => "INCLUDED",
            Reason::Assigned => "ASSIGNED",
            Reason::Sticky => "STICKY",
            Reason::Holdout => "HOLDOUT",
            Reason::NotAllocated => "NOT_ALLOCATED",
            Reason::TargetingMiss => "TARGETING_MISS",
            Reason::PrerequisiteFailed => "PREREQUISITE_FAILED",
            Reason::NotRunning => "NOT_RUNNING",
            Reason::Paused => "PAUSED",
            Reason::MissingUnit => "MISSING_UNIT",
            Reason::StickyUnavailable => "STICKY_UNAVAILABLE",
        }
    }

    /// The OpenFeature reason of this one (what OFREP answers and every SDK's OpenFeature
    /// provider reports): `ASSIGNED` → `SPLIT`; `INCLUDED` → `TARGETING_MATCH`; `STICKY` →
    /// `STATIC` (a stored assignment, no longer computed); `NOT_RUNNING`, `PAUSED` → `DISABLED`;
    /// `HOLDOUT`, `NOT_ALLOCATED`, `TARGETING_MISS`, `PREREQUISITE_FAILED` → `DEFAULT` (the code
    /// default); `MISSING_UNIT`, `STICKY_UNAVAILABLE` → `ERROR`.
    pub fn openfeature(&self) -> &'static str {
        match self {
            Reason::Assigned => "SPLIT",
            Reason::Included => "TARGETING_MATCH",
            Reason::Sticky => "STATIC",
            Reason::NotRunning | Reason::Paused => "DISABLED",
            Reason::Holdout | Reason::NotAllocated | Reason::TargetingMiss | Reason::PrerequisiteFailed => "DEFAULT",
            Reason::MissingUnit | Reason::StickyUnavailable => "ERROR",
        }
    }
}

/// The result of one experiment for one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Variant index into the experiment's variants, if any.
    pub variant: Option<u16>,
    /// Why.
    pub reason: Reason,
}

/// Where stored sticky assignments come from (none in the CLI; the service keeps them).
pub trait StickyStore {
    /// The stored variant of `unit` (of `unit_type`) in `experiment`, if any.
    fn get(&self, unit_type: &str, unit: &str, experiment: &str) -> Option<String>;

    /// Whether this store knows the stored assignments of `unit` (of `unit_type`), so that
    /// [`StickyStore::get`] answering `None` means "none stored". False when they could not be
    /// read; sticky experiments then answer `STICKY_UNAVAILABLE`. Default: true.
    fn knows(&self, _unit_type: &str, _unit: &str) -> bool {
        true
    }
}

/// A store with nothing in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSticky;

impl StickyStore for NoSticky {
    fn get(&self, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
}

impl StickyStore for HashMap<(String, String, String), String> {
    fn get(&self, unit_type: &str, unit: &str, experiment: &str) -> Option<String> {
        HashMap::get(self, &(unit_type.to_string(), unit.to_string(), experiment.to_string())).cloned()
    }
}

/// One compiled re-salt.
#[derive(Debug, Clone)]
enum ResaltEval {
    /// By classes ([`crate::salt`]).
    Classes(Layer),
    /// The earlier form: units outside `frozen` move to `free[bucket(salt, unit) mod |free|]`.
    Frozen { salt: String, frozen: BucketSet, free: Vec<u32> },
}

/// A compiled bucket space.
#[derive(Debug, Clone)]
pub struct CompiledSpace {
    /// Unit type name.
    pub name: String,
    /// Context attribute holding the unit id.
    pub attribute: String,
    /// Buckets.
    pub buckets: u32,
    salt: String,
    /// allot's hash, or Amplitude's (`hash % 100`; such a space is never re-salted).
    hash: BucketHash,
    resalts: Vec<ResaltEval>,
}

impl CompiledSpace {
    /// The unit's bucket, through every re-salt.
    #[inline]
    pub fn bucket(&self, unit: &str) -> u32 {
        self.bucket_after(unit, self.resalts.len())
    }

    /// The unit's bucket through the first `resalts` re-salts only: its bucket at the versions
    /// before the next re-salt (bucket history uses it).
    #[inline]
    pub fn bucket_after(&self, unit: &str, resalts: usize) -> u32 {
        let (mut b, h2) = match self.hash {
            BucketHash::Allot => {
                let (h1, h2) = hash::unit_hash(&self.salt, unit);
                (hash::bucket_of_hash(h1, self.buckets), h2)
            }
            // `allot resalt` refuses such a space, so no re-salt below reads `h2`.
            BucketHash::Amplitude => (hash::amplitude_hash(&self.salt, unit) % self.buckets.max(1), 0),
        };
        // The class of the unit's bucket in the next re-salt, when the previous one knew it
        // (`Layer::link`); then the bucket itself is not needed, and is read only at the end.
        let mut hint = NO_HINT;
        let mut landed: Option<(&Layer, Landing)> = None;
        for r in self.resalts.iter().take(resalts) {
            match r {
                ResaltEval::Classes(layer) => {
                    let c = if hint != NO_HINT {
                        hint
                    } else {
                        if let Some((l, at)) = landed.take() {
                            b = l.bucket_of(at);
                        }
                        layer.class_of(b)
                    };
                    let (at, next) = layer.land(c, h2);
                    landed = Some((layer, at));
                    hint = next;
                }
                ResaltEval::Frozen { salt, frozen, free } => {
                    if let Some((l, at)) = landed.take() {
                        b = l.bucket_of(at);
                    }
                    hint = NO_HINT;
                    if !free.is_empty() && !frozen.contains(b) {
                        b = free[hash::bucket(salt, unit, free.len() as u32) as usize];
                    }
                }
            }
        }
        match landed {
            Some((l, at)) => l.bucket_of(at),
            None => b,
        }
    }

    /// Heap bytes held by its compiled re-salts.
    pub fn resalt_bytes(&self) -> usize {
        self.resalts
            .iter()
            .map(|r| match r {
                ResaltEval::Classes(layer) => layer.heap_bytes(),
                ResaltEval::Frozen { frozen, free, .. } => frozen.heap_bytes() + 4 * free.capacity(),
            })
            .sum()
    }
}

/// A compiled experiment.
#[derive(Debug, Clone)]
pub struct CompiledExperiment {
    /// Id.
    pub id: String,
    /// Index of its space.
    pub space: usize,
    /// Running?
    pub running: bool,
    /// Paused (running, holding its allocation, serving nobody)?
    pub paused: bool,
    /// Sticky?
    pub sticky: bool,
    pub(crate) includes: HashMap<String, u16>,
    pub(crate) holdout: Option<BucketSet>,
    pub(crate) alloc: BucketSet,
    pub(crate) targeting: Option<Compiled>,
    pub(crate) requires: Vec<(usize, Vec<u16>)>,
    /// The variant split.
    pub split: Split,
    /// Variant values.
    pub values: Vec<Option<Value>>,
}

/// A compiled, immutable snapshot of one configuration version.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Configuration version.
    pub version: u64,
    /// Spaces.
    pub spaces: Vec<CompiledSpace>,
    /// Experiments, in configuration order.
    pub experiments: Vec<CompiledExperiment>,
    pub(crate) order: Vec<usize>,
    by_id: HashMap<String, usize>,
}

impl Snapshot {
    /// Compiles the applied state. Fails only on a state whose configuration no longer validates.
    pub fn compile(state: &State) -> Result<Snapshot, Vec<FieldError>> {
        let cfg = crate::state::applied_config(state)?.unwrap_or_default();
        Ok(Self::compile_with(state, &cfg))
    }

    /// Compiles with an already validated configuration (the state's own).
    pub fn compile_with(state: &State, cfg: &Config) -> Snapshot {
        let mut spaces = vec![];
        for (name, u) in &cfg.units {
            let (buckets, salt, hash, resalts) = match state.spaces.get(name) {
                Some(s) => (s.buckets, s.salt.clone(), s.hash, s.resalts.clone()),
                None => (u.buckets, u.salt.clone(), u.hash, vec![]),
            };
            let mut resalts: Vec<ResaltEval> = resalts
                .into_iter()
                .map(|r| match (classes_of(state, &r, buckets), r.frozen) {
                    (Some(class), _) => ResaltEval::Classes(Layer::new(&r.salt, &class)),
                    (None, frozen) => {
                        // The state's check guarantees one of the two forms; an empty set is the
                        // loud fallback (every unit moves) that cannot be reached from a checked state.
                        let frozen = frozen.unwrap_or_else(|| BucketSet::empty(buckets));
                        let free: Vec<u32> = frozen.dense().complement().iter().collect();
                        ResaltEval::Frozen { salt: r.salt, frozen, free }
                    }
                })
                .collect();
            for k in 1..resalts.len() {
                let (before, after) = resalts.split_at_mut(k);
                if let (ResaltEval::Classes(a), ResaltEval::Classes(b)) = (&mut before[k - 1], &after[0]) {
                    a.link(b);
                }
            }
            spaces.push(CompiledSpace {
                name: name.clone(),
                attribute: u.attribute.clone(),
                buckets,
                salt,
                hash,
                resalts,
            });
        }
        let by_id: HashMap<String, usize> = cfg.experiments.keys().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        let mut experiments = vec![];
        // One compiler for every experiment: a segment is compiled once and shared.
        let mut compiler = Compiler::new(&cfg.segments);
        for (id, e) in &cfg.experiments {
            let space = spaces.iter().position(|s| s.name == e.unit).unwrap_or(0);
            let b = spaces.get(space).map_or(1, |s| s.buckets);
            let names: Vec<&String> = e.variants.keys().collect();
            let idx = |v: &str| names.iter().position(|n| *n == v).map(|i| i as u16);
            let running = e.state == ExpState::Running;
            let alloc = state.live(OwnerKind::Experiment, id).filter(|_| running).map(|a| a.current().compact());
            let held = crate::state::holdout_union(state, cfg, id, b);
            experiments.push(CompiledExperiment {
                id: id.clone(),
                space,
                running: running && alloc.is_some(),
                paused: e.paused,
                sticky: e.sticky,
                includes: e.include.iter().filter_map(|(u, v)| idx(v).map(|i| (u.clone(), i))).collect(),
                holdout: if held.is_empty() { None } else { Some(held.compact()) },
                alloc: alloc.unwrap_or_else(|| BucketSet::empty(b)),
                targeting: e.targeting.as_ref().map(|t| compiler.compile(t)),
                requires: e
                    .requires
                    .iter()
                    .filter_map(|r| {
                        let j = *by_id.get(&r.experiment)?;
                        let other = &cfg.experiments[&r.experiment];
                        let ok = r
                            .variants
                            .iter()
                            .filter_map(|v| other.variants.get_index_of(v).map(|i| i as u16))
                            .collect();
                        Some((j, ok))
                    })
                    .collect(),
                split: Split::of(e),
                values: e.variants.values().map(|v| v.value.clone()).collect(),
            });
        }
        let order = dependency_order(cfg).iter().filter_map(|id| by_id.get(id).copied()).collect();
        Snapshot { version: state.version, spaces, experiments, order, by_id }
    }

    /// Index of an experiment by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The variant name of an assignment of experiment `i`.
    pub fn variant_name(&self, i: usize, a: &Assignment) -> Option<&str> {
        a.variant.map(|v| self.experiments[i].split.names[v as usize].as_str())
    }

    /// The served value of the assignment's variant: its configured `value`, else its name as a
    /// JSON string (the one rule for the HTTP API, OFREP and the SDK).
    pub fn variant_value(&self, i: usize, a: &Assignment) -> Option<Value> {
        let v = a.variant? as usize;
        let e = &self.experiments[i];
        Some(e.values.get(v).cloned().flatten().unwrap_or_else(|| Value::String(e.split.names[v].clone())))
    }

    /// The unit id for a space from the context: strings as they are, numbers and booleans as
    /// their JSON text; absent, null, empty or other types → none.
    #[inline]
    pub fn unit_id<'c>(&self, space: usize, ctx: &'c Context) -> Option<Cow<'c, str>> {
        match crate::targeting::lookup(ctx, &self.spaces[space].attribute)? {
            Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    /// OpenFeature's `targetingKey`: `key` becomes the unit id of every unit type whose attribute
    /// `ctx` does not carry itself (the context's own attribute wins). OFREP and the SDKs'
    /// OpenFeature providers map it so.
    pub fn fill_targeting_key(&self, ctx: &mut Context, key: &str) {
        for s in &self.spaces {
            if !ctx.contains_key(&s.attribute) {
                ctx.insert(s.attribute.clone(), Value::String(key.to_string()));
            }
        }
    }

    /// Evaluates every experiment for one context; `out[i]` is experiment `i`'s assignment.
    pub fn evaluate_all(&self, ctx: &Context, sticky: &dyn StickyStore, out: &mut Vec<Assignment>) {
        out.clear();
        out.resize(self.experiments.len(), Assignment { variant: None, reason: Reason::NotRunning });
        let mut units: Vec<Option<(Cow<'_, str>, u32)>> = Vec::with_capacity(self.spaces.len());
        for s in 0..self.spaces.len() {
            units.push(self.unit_id(s, ctx).map(|u| {
                let b = self.spaces[s].bucket(&u);
                (u, b)
            }));
        }
        for &i in &self.order {
            let at = units[self.experiments[i].space].as_ref().map(|(u, b)| (u.as_ref(), *b));
            let a = self.eval_at(i, ctx, sticky, at, &|j| out[j]);
            out[i] = a;
        }
    }

    /// Evaluates one experiment (and, first, its prerequisites, each with its own unit).
    pub fn evaluate_one(&self, i: usize, ctx: &Context, sticky: &dyn StickyStore) -> Assignment {
        let e = &self.experiments[i];
        let unit = self.unit_id(e.space, ctx);
        let at = unit.as_deref().map(|u| (u, self.spaces[e.space].bucket(u)));
        self.eval_at(i, ctx, sticky, at, &|j| self.evaluate_one(j, ctx, sticky))
    }

    #[inline]
    fn eval_at(
        &self,
        i: usize,
        ctx: &Context,
        sticky: &dyn StickyStore,
        unit: Option<(&str, u32)>,
        prior: &dyn Fn(usize) -> Assignment,
    ) -> Assignment {
        let e = &self.experiments[i];
        let none = |reason| Assignment { variant: None, reason };
        if !e.running {
            return none(Reason::NotRunning);
        }
        if e.paused {
            return none(Reason::Paused);
        }
        let Some((unit, b)) = unit else {
            return none(Reason::MissingUnit);
        };
        if !e.includes.is_empty() {
            if let Some(&v) = e.includes.get(unit) {
                return Assignment { variant: Some(v), reason: Reason::Included };
            }
        }
        if e.holdout.as_ref().is_some_and(|h| h.contains(b)) {
            return none(Reason::Holdout);
        }
        if !e.alloc.contains(b) {
            return none(Reason::NotAllocated);
        }
        if e.sticky {
            let space = &self.spaces[e.space].name;
            if let Some(v) = sticky.get(space, unit, &e.id) {
                if let Some(v) = e.split.names.iter().position(|n| *n == v) {
                    return Assignment { variant: Some(v as u16), reason: Reason::Sticky };
                }
            } else if !sticky.knows(space, unit) {
                return none(Reason::StickyUnavailable);
            }
        }
        for (j, ok) in &e.requires {
            match prior(*j).variant {
                Some(v) if ok.contains(&v) => {}
                _ => return none(Reason::PrerequisiteFailed),
            }
        }
        if let Some(t) = &e.targeting {
            if !t.matches(ctx) {
                return none(Reason::TargetingMiss);
            }
        }
        Assignment { variant: Some(e.split.variant(unit) as u16), reason: Reason::Assigned }
    }

    /// Heap bytes held by allocations and holdout sets (for the memory benchmark).
    pub fn allocation_bytes(&self) -> usize {
        self.experiments
            .iter()
            .map(|e| e.alloc.heap_bytes() + e.holdout.as_ref().map_or(0, BucketSet::heap_bytes))
            .sum()
    }
}
