//! The inputs of the analysis, held compactly: interned unit ids, every unit's exposures (one
//! linked list of entries per unit), per-unit sums of each metric, and persons with their unit
//! ids. The caller reads its files (the CLI reads CSV) and adds one row at a time.

use crate::timeline::Seen;
use indexmap::{IndexMap, IndexSet};
use std::hash::{BuildHasher as _, RandomState};

pub(super) const NONE: u32 = u32::MAX;

/// One unit's exposure to one experiment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) exp: u32,
    pub(super) var: u32,
    pub(super) next: u32,
    pub(super) jumped: bool,
    pub(super) first: f64,
    pub(super) last: f64,
}

/// Interned unit ids: the bytes of all ids in one buffer and a hash table of their indices, about
/// 20 bytes per unit beyond the id itself (a set of boxed strings costs several times that).
struct UnitIds {
    table: hashbrown::HashTable<u32>,
    bytes: Vec<u8>,
    ends: Vec<usize>,
    hasher: RandomState,
}

impl UnitIds {
    fn span(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The index of `id`, if seen.
    fn get(&self, id: &str) -> Option<usize> {
        let h = self.hasher.hash_one(id.as_bytes());
        self.table.find(h, |&i| self.span(i as usize) == id.as_bytes()).map(|&i| i as usize)
    }

    /// The index of `id`, added if new.
    fn get_or_insert(&mut self, id: &str) -> usize {
        let h = self.hasher.hash_one(id.as_bytes());
        let (bytes, ends) = (&self.bytes, &self.ends);
        let span = |i: usize| &bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        if let Some(&i) = self.table.find(h, |&i| span(i as usize) == id.as_bytes()) {
            return i as usize;
        }
        let i = self.ends.len();
        self.bytes.extend_from_slice(id.as_bytes());
        self.ends.push(self.bytes.len());
        let (hasher, bytes, ends) = (&self.hasher, &self.bytes, &self.ends);
        self.table.insert_unique(h, i as u32, |&j| {
            let j = j as usize;
            hasher.hash_one(&bytes[if j == 0 { 0 } else { ends[j - 1] }..ends[j]])
        });
        i
    }

    /// The id of unit `i`.
    fn name(&self, i: usize) -> &str {
        std::str::from_utf8(self.span(i)).unwrap_or("")
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Every unit's experiments and variants, compactly: one linked list of entries per unit. Grows
/// with the distinct units and their experiments, not with the rows.
pub struct Exposures {
    units: UnitIds,
    head: Vec<u32>,
    pub(super) entries: Vec<Entry>,
    /// First and last configuration version of each entry, when the rows carry versions (kept
    /// beside the entries so that rows without one cost nothing more).
    versions: Vec<[u64; 2]>,
    pub(super) experiments: IndexSet<Box<str>>,
    pub(super) variants: Vec<IndexSet<Box<str>>>,
    /// First and last exposure time of each experiment (NaN without times).
    pub(super) exp_times: Vec<[f64; 2]>,
    /// First and last configuration version of each experiment (with versions).
    pub(super) exp_versions: Vec<[u64; 2]>,
    pub(super) has_times: bool,
    pub(super) has_versions: bool,
    rows: u64,
}

impl Exposures {
    /// No exposures yet. `has_times` and `has_versions` say whether the rows carry a time and a
    /// configuration version; `hasher` keys the table of unit ids (the caller chooses: a
    /// randomly keyed one keeps crafted ids from degrading it, and nothing reported depends on it).
    pub fn new(has_times: bool, has_versions: bool, hasher: RandomState) -> Exposures {
        Exposures {
            units: UnitIds { table: hashbrown::HashTable::new(), bytes: vec![], ends: vec![], hasher },
            head: vec![],
            entries: vec![],
            versions: vec![],
            experiments: IndexSet::new(),
            variants: vec![],
            exp_times: vec![],
            exp_versions: vec![],
            has_times,
            has_versions,
            rows: 0,
        }
    }

    /// Adds one exposure row: `unit` saw `variant` of `experiment` at `time` (seconds since the
    /// epoch; NaN without times), evaluated at configuration `version` (with versions).
    pub fn add(&mut self, unit: &str, exp: &str, var: &str, time: f64, version: Option<u64>) {
        self.rows += 1;
        let u = self.units.get_or_insert(unit);
        if u == self.head.len() {
            self.head.push(NONE);
        }
        let e = match self.experiments.get_index_of(exp) {
            Some(e) => e,
            None => {
                self.experiments.insert(exp.into());
                self.variants.push(IndexSet::new());
                self.exp_times.push([time, time]);
                self.exp_versions.push(version.map_or([0, 0], |v| [v, v]));
                self.experiments.len() - 1
            }
        };
        let span = &mut self.exp_times[e];
        *span = [span[0].min(time), span[1].max(time)];
        if let Some(v) = version {
            let span = &mut self.exp_versions[e];
            *span = [span[0].min(v), span[1].max(v)];
        }
        let vs = &mut self.variants[e];
        let v = match vs.get_index_of(var) {
            Some(v) => v,
            None => vs.insert_full(var.into()).0,
        };
        let (e, v) = (e as u32, v as u32);
        let mut i = self.head[u];
        while i != NONE {
            let en = &mut self.entries[i as usize];
            if en.exp == e {
                if en.var != v {
                    en.jumped = true;
                }
                en.first = en.first.min(time);
                en.last = en.last.max(time);
                if let (Some(v), Some(span)) = (version, self.versions.get_mut(i as usize)) {
                    *span = [span[0].min(v), span[1].max(v)];
                }
                return;
            }
            i = en.next;
        }
        self.entries.push(Entry { exp: e, var: v, next: self.head[u], jumped: false, first: time, last: time });
        if let Some(v) = version {
            self.versions.push([v, v]);
        }
        self.head[u] = (self.entries.len() - 1) as u32;
    }

    /// The number of rows added.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The number of distinct units.
    pub fn units(&self) -> usize {
        self.units.len()
    }

    /// The index of unit `id`, if it was exposed.
    pub(super) fn unit(&self, id: &str) -> Option<usize> {
        self.units.get(id)
    }

    /// The id of unit `u`.
    pub(super) fn unit_name(&self, u: usize) -> &str {
        self.units.name(u)
    }

    /// The unit's entries with their indices, in experiment order.
    pub(super) fn of_unit(&self, u: usize, out: &mut Vec<(u32, Entry)>) {
        out.clear();
        let mut i = self.head[u];
        while i != NONE {
            let e = self.entries[i as usize];
            out.push((i, e));
            i = e.next;
        }
        // Lists are built newest first; experiments in index order make pairs canonical.
        out.sort_by_key(|e| e.1.exp);
    }

    /// What the exposures of entry `i` say about when its unit saw its experiment.
    pub(super) fn seen(&self, i: u32, e: &Entry) -> Seen {
        Seen {
            versions: self.versions.get(i as usize).map(|v| (v[0], v[1])),
            times: self.has_times.then_some((e.first, e.last)),
        }
    }
}

/// Per-unit sums of each metric (or covariate) over the exposed units: `values[metric][unit]`.
/// Rows of units that were never exposed are counted and left out.
#[derive(Debug, Default)]
pub struct UnitValues {
    pub(super) names: IndexSet<Box<str>>,
    pub(super) values: Vec<Vec<f64>>,
    pub(super) rows: u64,
    pub(super) orphan_rows: u64,
}

impl UnitValues {
    /// Adds one row: `value` of `metric` for `unit` (summed with the unit's other rows).
    pub fn add(&mut self, exposures: &Exposures, unit: &str, metric: &str, value: f64) {
        self.rows += 1;
        let Some(u) = exposures.unit(unit) else {
            self.orphan_rows += 1;
            return;
        };
        let m = match self.names.get_index_of(metric) {
            Some(m) => m,
            None => {
                self.names.insert(metric.into());
                self.values.push(vec![0.0; exposures.units()]);
                self.names.len() - 1
            }
        };
        self.values[m][u] += value;
    }

    /// The number of rows added.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// Persons and their exposed unit ids (unit ids that belong to one person).
#[derive(Debug, Default)]
pub struct Identities {
    pub(super) people: IndexMap<Box<str>, Vec<u32>>,
}

impl Identities {
    /// Adds one row: `unit` belongs to `person` (ignored when the unit was never exposed).
    pub fn add(&mut self, exposures: &Exposures, unit: &str, person: &str) {
        if let Some(u) = exposures.unit(unit) {
            let v = self.people.entry(person.into()).or_default();
            if !v.contains(&(u as u32)) {
                v.push(u as u32);
            }
        }
    }
}
