//! The salt machine: re-randomise which units sit in which buckets without moving a unit of
//! anything that runs.
//!
//! With several surfaces running, nearly every bucket is held by *some* running experiment, so
//! freezing held buckets (the first design) re-randomised almost nothing: 384 of 1,000,000
//! buckets in a quarter of 30 experiments on 4 surfaces. A re-salt instead partitions the space
//! into **classes**: buckets that every live allocation (running experiments, holdouts, groups,
//! slots) treats alike — each allocation holds all of a class or none of it. A unit moves only
//! to a bucket of its own class, uniformly at random. Every allocation therefore keeps exactly
//! its units (a class is inside it or outside it), while the units of a stopped experiment's
//! former buckets are spread over every bucket of their class: for a surface, the buckets free
//! on that surface that the other surfaces' experiments treat alike. This is what Spotify's "tree
//! of salts" achieves, computed from the recorded bucket sets instead of nested salts.
//!
//! Frozen rule (part of the bucketing function): a unit's move at a re-salt with salt `s` is
//! `member[⌊mix(h2 ⊕ key(s)) · n / 2⁶⁴⌋]` of its class of `n` buckets, where `h2` is the high half
//! of the unit's hash ([`crate::hash::unit_hash`], the same hash that placed it), `key(s)` is
//! [`crate::rng::seed_from`] of the salt, `mix` the SplitMix64 finaliser, and `member` lists the
//! class's buckets as the compiled tables hold them: first the buckets of the shards (128
//! buckets) that lie wholly in the class, shard by shard in increasing order, then the class's
//! buckets in shards it shares with other classes, in increasing order. One hash per unit serves every re-salt, so a re-salt costs
//! an evaluation a mix, its class's bounds and a one-byte hint when it is linked to the next
//! (see `bench/`), and a compiled re-salt a few tables over the space's shards of 128 buckets
//! (about 40 KB for 1,000,000 buckets, in 16 bits).
//!
//! A re-salt records the ids of the allocations that defined its classes (`classes_by`); the
//! classes are rebuilt from their bucket sets as they stood before the re-salt's version, so the
//! state stays small and the classes are exactly reproducible.

use crate::bucketset::BucketBitmap;
use crate::config::{Config, ExpState};
use crate::error::FieldError;
use crate::rng;
use crate::state::{applied_config, Allocation, LogEntry, OwnerKind, Resalt, State};
use serde::Serialize;
use std::collections::HashMap;

/// A shard entry of a [`Layer`] that points into `mixed` rather than naming a class.
const MIXED: u32 = 1 << 31;
/// Buckets per shard (the allocator's unit of scattering).
const SHARD: u32 = 128;

/// The class of every bucket: buckets with equal ids are held by exactly the same of `sets`.
/// Ids are dense, numbered in order of each class's first bucket.
///
/// Refinement, one set at a time: the buckets of a class that the set holds get a fresh id, the
/// rest keep theirs. Costs the total size of the sets plus a renumbering whenever ids run ahead
/// of the space, so time and memory stay linear; the sets are taken one at a time, so only one
/// bitmap is expanded at once.
pub fn classes(buckets: u32, sets: impl IntoIterator<Item = BucketBitmap>) -> Vec<u32> {
    let mut class = vec![0u32; buckets as usize];
    let mut next = 1u32;
    // remap[c]: the new id of the part of class c inside the current set (u32::MAX: none yet).
    let mut remap = vec![u32::MAX];
    let mut touched = vec![];
    for set in sets {
        for b in set.iter().filter(|&b| b < buckets) {
            let c = class[b as usize] as usize;
            if remap[c] == u32::MAX {
                remap[c] = next;
                next += 1;
                remap.push(u32::MAX);
                touched.push(c);
            }
            class[b as usize] = remap[c];
        }
        for c in touched.drain(..) {
            remap[c] = u32::MAX;
        }
        // Classes left empty waste ids; renumber before they could outgrow u32.
        if u64::from(next) > 2 * u64::from(buckets) + 1 {
            next = renumber(&mut class);
            remap = vec![u32::MAX; next as usize];
        }
    }
    renumber(&mut class);
    class
}

/// Renumbers ids densely in order of first appearance; returns how many there are.
fn renumber(class: &mut [u32]) -> u32 {
    let mut ids: HashMap<u32, u32> = HashMap::new();
    for c in class.iter_mut() {
        let n = ids.len() as u32;
        *c = *ids.entry(*c).or_insert(n);
    }
    ids.len() as u32
}

#[derive(Debug, Clone, Copy)]
struct Class {
    /// Buckets of its whole shards (`128 ×` their count): picks below this land in a whole shard.
    whole: u64,
    /// All its buckets.
    n: u64,
    whole_start: u32,
    loose_start: u32,
}

/// One compiled re-salt: where each bucket's class is, and the class's buckets in order.
///
/// Hand-written because it is the product: a membership table over shards (most classes are
/// unions of whole shards, as the allocator draws whole shards) with per-bucket entries only
/// for the few shards that several classes split, so a re-salt costs tens of kilobytes rather
/// than a 4 MB table per bucket.
///
/// Class ids here are the layer's own (the largest classes first, so the one-byte hints of
/// [`Layer::link`] cover them); they are not part of the frozen rule, which speaks of members
/// only.
#[derive(Debug, Clone)]
pub struct Layer {
    key: u64,
    classes: Vec<Class>,
    /// Buckets of mixed shards of each class, by class then bucket order.
    loose: Vec<u32>,
    tables: Tables,
    /// Beside each entry of the whole-shard table, that shard's class in the next re-salt when
    /// the whole shard is one class there with an id below 255 (else 255); empty when not
    /// linked. A chain of linked re-salts reads only these bytes and the small class table, so
    /// it stays in the first-level cache; the bucket itself is read once, at the end.
    next: Vec<u8>,
}

/// A class hint that says nothing: look the class up.
pub const NO_HINT: u32 = u32::MAX;
/// A one-byte hint that says nothing.
const NO_HINT8: u8 = u8::MAX;

/// Where a move lands, resolved to a bucket only when something needs the bucket
/// ([`Layer::bucket_of`]): `at` indexes the whole-shard table and `low` is the bucket within
/// that shard, or, in a shard several classes split, `low` is the bucket itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landing {
    at: u32,
    low: u32,
}

/// A [`Landing`] in a shard several classes split: `low` is the bucket.
const LOOSE: u32 = u32::MAX;

/// The shard-indexed tables, in 16 bits when the space and its classes allow (a space of up to
/// 8,388,608 buckets with fewer than 32,768 classes and mixed shards: every default space), which
/// halves what evaluation reads per re-salt; else in 32 bits.
#[derive(Debug, Clone)]
enum Tables {
    Narrow(Shards<u16>),
    Wide(Shards<u32>),
}

#[derive(Debug, Clone)]
struct Shards<T> {
    /// Per shard: its class when the whole shard is one class, else `flag | k` (row k of `mixed`).
    shard: Vec<T>,
    /// 128 class ids per mixed shard.
    mixed: Vec<T>,
    /// Whole shards of each class, by class then shard order.
    whole: Vec<T>,
    /// The bit of a `shard` entry that marks a mixed shard.
    flag: u32,
}

impl<T: Copy + Into<u32>> Shards<T> {
    fn bytes(&self) -> usize {
        std::mem::size_of::<T>() * (self.shard.capacity() + self.mixed.capacity() + self.whole.capacity())
    }

    /// The class of bucket `b`.
    #[inline(always)]
    fn class_of(&self, b: u32) -> u32 {
        let e: u32 = self.shard[(b / SHARD) as usize].into();
        if e & self.flag == 0 {
            e
        } else {
            self.mixed[((e & !self.flag) * SHARD + b % SHARD) as usize].into()
        }
    }

    /// The class of shard `s` when the whole shard is one class.
    fn whole_class(&self, s: u32) -> Option<u32> {
        let e: u32 = self.shard[s as usize].into();
        (e & self.flag == 0).then_some(e)
    }
}

/// Narrows 32-bit table entries to 16 bits (the caller checked they fit).
fn narrow(v: &[u32], flag: bool) -> Vec<u16> {
    v.iter().map(|&e| if flag && e & MIXED != 0 { (1 << 15) | (e & !MIXED) as u16 } else { e as u16 }).collect()
}

impl Layer {
    /// Compiles the classes of a re-salt with `salt` over a space of `class.len()` buckets.
    pub fn new(salt: &str, class: &[u32]) -> Layer {
        let buckets = class.len() as u32;
        let shards = buckets.div_ceil(SHARD);
        let n = class.iter().max().map_or(0, |&m| m as usize + 1);
        let range = |s: u32| (s * SHARD) as usize..((s + 1) * SHARD).min(buckets) as usize;
        let whole_class = |s: u32| {
            let ids = &class[range(s)];
            (ids.len() == SHARD as usize && ids.iter().all(|&c| c == ids[0])).then_some(ids[0])
        };
        // The layer's ids: classes by their count of whole shards, largest first (ties in order).
        let mut whole_len = vec![0u32; n];
        let mut loose_len = vec![0u32; n];
        for s in 0..shards {
            match whole_class(s) {
                Some(c) => whole_len[c as usize] += 1,
                None => class[range(s)].iter().for_each(|&c| loose_len[c as usize] += 1),
            }
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&c| std::cmp::Reverse(whole_len[c as usize]));
        let mut id = vec![0u32; n];
        for (k, &c) in order.iter().enumerate() {
            id[c as usize] = k as u32;
        }
        let (mut w, mut l) = (0, 0);
        let mut classes = Vec::with_capacity(n);
        for &c in &order {
            let (wl, ll) = (whole_len[c as usize], loose_len[c as usize]);
            let whole = u64::from(wl) * u64::from(SHARD);
            classes.push(Class { whole, n: whole + u64::from(ll), whole_start: w, loose_start: l });
            w += wl;
            l += ll;
        }
        let mut shard = Vec::with_capacity(shards as usize);
        let mut mixed = vec![];
        let mut whole = vec![0; w as usize];
        let mut loose = vec![0; l as usize];
        let mut fill_w = vec![0u32; n];
        let mut fill_l = vec![0u32; n];
        for s in 0..shards {
            match whole_class(s) {
                Some(c) => {
                    let c = id[c as usize] as usize;
                    shard.push(c as u32);
                    whole[(classes[c].whole_start + fill_w[c]) as usize] = s;
                    fill_w[c] += 1;
                }
                None => {
                    shard.push(MIXED | (mixed.len() / SHARD as usize) as u32);
                    for b in range(s) {
                        let c = id[class[b] as usize] as usize;
                        mixed.push(c as u32);
                        loose[(classes[c].loose_start + fill_l[c]) as usize] = b as u32;
                        fill_l[c] += 1;
                    }
                    // A short last shard is padded; its padding is never looked up.
                    mixed.resize(mixed.len().next_multiple_of(SHARD as usize), 0);
                }
            }
        }
        let mixed_rows = mixed.len() / SHARD as usize;
        let tables = if shards <= 1 << 16 && n < 1 << 15 && mixed_rows < 1 << 15 {
            Tables::Narrow(Shards {
                shard: narrow(&shard, true),
                mixed: narrow(&mixed, false),
                whole: narrow(&whole, false),
                flag: 1 << 15,
            })
        } else {
            Tables::Wide(Shards { shard, mixed, whole, flag: MIXED })
        };
        Layer { key: rng::seed_from(salt), classes, loose, tables, next: vec![] }
    }

    /// The bucket a unit in bucket `b` with hash high half `h2` moves to (possibly `b` itself).
    #[inline]
    pub fn step(&self, b: u32, h2: u64) -> u32 {
        self.bucket_of(self.land(self.class_of(b), h2).0)
    }

    /// The class of bucket `b`.
    #[inline]
    pub fn class_of(&self, b: u32) -> u32 {
        match &self.tables {
            Tables::Narrow(t) => t.class_of(b),
            Tables::Wide(t) => t.class_of(b),
        }
    }

    /// Where a unit whose bucket is in class `c` lands, and the class of that bucket in the
    /// linked next re-salt, or [`NO_HINT`]. Reads the class table and one hint byte only.
    #[inline]
    pub fn land(&self, c: u32, h2: u64) -> (Landing, u32) {
        let cl = self.classes[c as usize];
        let i = ((u128::from(rng::mix(h2 ^ self.key)) * u128::from(cl.n)) >> 64) as u64;
        if i < cl.whole {
            let at = cl.whole_start + (i / u64::from(SHARD)) as u32;
            let hint = match self.next.get(at as usize) {
                Some(&h) if h != NO_HINT8 => u32::from(h),
                _ => NO_HINT,
            };
            (Landing { at, low: (i % u64::from(SHARD)) as u32 }, hint)
        } else {
            (Landing { at: LOOSE, low: self.loose[cl.loose_start as usize + (i - cl.whole) as usize] }, NO_HINT)
        }
    }

    /// The bucket of a landing of this re-salt.
    #[inline]
    pub fn bucket_of(&self, l: Landing) -> u32 {
        if l.at == LOOSE {
            return l.low;
        }
        let s: u32 = match &self.tables {
            Tables::Narrow(t) => t.whole[l.at as usize].into(),
            Tables::Wide(t) => t.whole[l.at as usize],
        };
        s * SHARD + l.low
    }

    /// Links this re-salt to the one after it: records, beside each whole shard, its class there
    /// when that fits a byte (the next re-salt's 255 largest classes).
    pub fn link(&mut self, next: &Layer) {
        let hint = |s: u32| {
            let c = match &next.tables {
                Tables::Narrow(t) => t.whole_class(s),
                Tables::Wide(t) => t.whole_class(s),
            };
            c.filter(|&c| c < u32::from(NO_HINT8)).map_or(NO_HINT8, |c| c as u8)
        };
        self.next = match &self.tables {
            Tables::Narrow(t) => t.whole.iter().map(|&s| hint(u32::from(s))).collect(),
            Tables::Wide(t) => t.whole.iter().map(|&s| hint(s)).collect(),
        };
    }

    /// Heap bytes held (the memory a compiled re-salt costs).
    pub fn heap_bytes(&self) -> usize {
        let tables = match &self.tables {
            Tables::Narrow(t) => t.bytes(),
            Tables::Wide(t) => t.bytes(),
        };
        tables
            + 4 * self.loose.capacity()
            + self.next.capacity()
            + std::mem::size_of::<Class>() * self.classes.capacity()
    }
}

/// The allocations whose bucket sets define a re-salt's classes: every live allocation of the
/// space, except an experiment's that is not running (none should be live).
fn defining<'s>(state: &'s State, cfg: &Config, space: &str) -> Vec<&'s Allocation> {
    state
        .allocations
        .iter()
        .filter(|a| a.is_live() && a.space == space)
        .filter(|a| match a.kind {
            OwnerKind::Experiment => cfg.experiments.get(&a.owner).is_some_and(|e| e.state == ExpState::Running),
            OwnerKind::Holdout | OwnerKind::Group | OwnerKind::Slot => true,
        })
        .collect()
}

/// The classes of a recorded re-salt of a space of `buckets`, rebuilt from the bucket sets of
/// the allocations it names as they stood before its version. `None` for the earlier form.
pub fn classes_of(state: &State, r: &Resalt, buckets: u32) -> Option<Vec<u32>> {
    let ids = r.classes_by.as_ref()?;
    let by_id: HashMap<u64, &Allocation> = state.allocations.iter().map(|a| (a.id, a)).collect();
    // `State::check` guarantees every id names an allocation of the space.
    Some(classes(buckets, ids.iter().filter_map(|id| by_id.get(id)).map(|a| a.held_before(r.version))))
}

/// What a re-salt did for one exclusion scope.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeResalt {
    /// `surface <name>` or `group <name>`.
    pub scope: String,
    /// Buckets free for a new experiment there: held by none of its running experiments, none
    /// of the groups on it (for a surface) and no holdout; for a group, its slots' free buckets.
    pub free_buckets: u64,
    /// Of those, the buckets whose units were re-spread (their class has other buckets).
    pub resalted_buckets: u64,
}

/// What a re-salt did.
#[derive(Debug, Clone, Serialize)]
pub struct ResaltReport {
    /// Space.
    pub space: String,
    /// New version.
    pub version: u64,
    /// Buckets whose units stayed: alone in their class (no other bucket is treated alike).
    pub frozen_buckets: u64,
    /// Buckets whose units were re-randomised within their class.
    pub resalted_buckets: u64,
    /// Classes: sets of buckets every live allocation treats alike.
    pub classes: u64,
    /// Per surface and group of the unit type.
    pub scopes: Vec<ScopeResalt>,
}

/// Re-salts `unit_type`, or every bucket space that allot hashes (spaces that reproduce a foreign
/// engine's buckets, `hash: amplitude`, are left alone) one after another, each its own version:
/// what `allot resalt` and `POST /api/v1/resalt` do. Errors name `unit_type` (and nothing
/// applied yet is one).
pub fn resalt_all(
    state: &State,
    unit_type: Option<&str>,
    time: &str,
    reason: Option<String>,
    actor: Option<String>,
) -> Result<(State, Vec<ResaltReport>), FieldError> {
    if state.version == 0 {
        return Err(FieldError::new("unit_type", "nothing applied yet: there is no bucket space to re-salt"));
    }
    let spaces: Vec<String> = match unit_type {
        Some(u) => vec![u.to_string()],
        None => state
            .spaces
            .iter()
            .filter(|(_, s)| s.hash == crate::config::BucketHash::Allot)
            .map(|(name, _)| name.clone())
            .collect(),
    };
    let mut st = state.clone();
    let mut reports = Vec::with_capacity(spaces.len());
    for s in spaces {
        let (next, r) = resalt(&st, &s, time, reason.clone(), actor.clone()).map_err(|e| {
            // `resalt` names the space `space`; its callers call it the unit type.
            if e.path == "space" {
                FieldError::new("unit_type", e.message)
            } else {
                e
            }
        })?;
        st = next;
        reports.push(r);
    }
    Ok((st, reports))
}

/// Re-salts `space`, recording `reason` and `actor` in the log. The new salt is derived from the
/// space and the version, so the same state re-salts the same way. Returns the new state and a
/// report.
pub fn resalt(
    state: &State,
    space: &str,
    time: &str,
    reason: Option<String>,
    actor: Option<String>,
) -> Result<(State, ResaltReport), FieldError> {
    let cfg = applied_config(state)
        .map_err(|e| e.into_iter().next().unwrap_or_else(|| FieldError::new("state", "invalid")))?
        .unwrap_or_default();
    let Some(s) = state.spaces.get(space) else {
        let known: Vec<&str> = state.spaces.keys().map(String::as_str).collect();
        return Err(FieldError::new(
            "space",
            format!("no bucket space `{space}` in the applied state; known: [{}]", known.join(", ")),
        ));
    };
    if s.hash != crate::config::BucketHash::Allot {
        return Err(FieldError::new(
            "space",
            format!(
                "bucket space `{space}` uses {} hashing (`hash:`), which reproduces a foreign engine's buckets exactly; it cannot be re-salted",
                s.hash.as_str()
            ),
        ));
    }
    let version = state.version.checked_add(1).ok_or_else(|| {
        FieldError::new("state.version", "the recorded version cannot grow any further; the state file is corrupt")
    })?;
    let defining = defining(state, &cfg, space);
    let class = classes(s.buckets, defining.iter().map(|a| a.current()));
    let mut size = vec![0u64; class.iter().max().map_or(0, |&m| m as usize + 1)];
    for &c in &class {
        size[c as usize] += 1;
    }
    let moved = |b: u32| size[class[b as usize] as usize] > 1;
    let resalted = (0..s.buckets).filter(|&b| moved(b)).count() as u64;
    let report = ResaltReport {
        space: space.into(),
        version,
        frozen_buckets: u64::from(s.buckets) - resalted,
        resalted_buckets: resalted,
        classes: size.len() as u64,
        scopes: scopes(state, &cfg, space, s.buckets, &moved),
    };
    let salt = format!("{}~r{version}", s.salt);
    let mut st = state.clone();
    st.version = version;
    if let Some(sp) = st.spaces.get_mut(space) {
        let ids = defining.iter().map(|a| a.id).collect();
        sp.resalts.push(Resalt { version, salt: salt.clone(), classes_by: Some(ids), frozen: None });
    }
    st.log.push(LogEntry {
        version,
        time: time.into(),
        actor,
        forced: false,
        reason,
        changes: vec![format!(
            "resalt unit {space}: units of {resalted} buckets re-randomised with salt `{salt}` within {} classes that every running experiment, holdout and group treats alike; {} buckets kept their units",
            report.classes, report.frozen_buckets
        )],
        overridden: vec![],
    });
    Ok((st, report))
}

/// The per-scope part of a report: each surface and group of the unit type.
fn scopes(state: &State, cfg: &Config, space: &str, buckets: u32, moved: &dyn Fn(u32) -> bool) -> Vec<ScopeResalt> {
    let live = |kind: OwnerKind, id: &str| state.live(kind, id).map(|a| a.current());
    let mut holdouts = BucketBitmap::empty(buckets);
    for (id, _) in cfg.holdouts.iter().filter(|(_, h)| h.unit == space) {
        if let Some(d) = live(OwnerKind::Holdout, id) {
            holdouts.union_with(&d);
        }
    }
    let count = |held: &BucketBitmap, within: Option<&BucketBitmap>| {
        let free = (0..buckets).filter(|&b| !held.contains(b) && within.is_none_or(|w| w.contains(b)));
        free.fold((0, 0), |(f, r), b| (f + 1, r + u64::from(moved(b))))
    };
    let mut out = vec![];
    for surface in &cfg.surfaces {
        let mut held = holdouts.clone();
        for (id, e) in cfg.experiments.iter().filter(|(_, e)| e.unit == space && e.state == ExpState::Running) {
            if cfg.tags_of(e).contains(surface) {
                if let Some(d) = live(OwnerKind::Experiment, id) {
                    held.union_with(&d);
                }
            }
        }
        for (id, g) in cfg.groups.iter().filter(|(_, g)| g.unit == space) {
            if g.surfaces.contains(surface) {
                if let Some(d) = live(OwnerKind::Group, id) {
                    held.union_with(&d);
                }
            }
        }
        let (free_buckets, resalted_buckets) = count(&held, None);
        out.push(ScopeResalt { scope: format!("surface {surface}"), free_buckets, resalted_buckets });
    }
    for id in cfg.groups.iter().filter(|(_, g)| g.unit == space).map(|(id, _)| id) {
        let Some(reserved) = live(OwnerKind::Group, id) else { continue };
        let mut held = holdouts.clone();
        for (eid, e) in cfg.experiments.iter().filter(|(_, e)| e.state == ExpState::Running) {
            if e.groups.iter().any(|m| m.group == *id) {
                if let Some(d) = live(OwnerKind::Experiment, eid) {
                    held.union_with(&d);
                }
            }
        }
        let (free_buckets, resalted_buckets) = count(&held, Some(&reserved));
        out.push(ScopeResalt { scope: format!("group {id}"), free_buckets, resalted_buckets });
    }
    out
}
