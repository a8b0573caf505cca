//! Exclusion scopes: which experiments must never share a unit — one rule, used by validation
//! ([`crate::config::Config::exclusive`]), planning and the audit — and an index of placed
//! allocations by scope, so that finding what an experiment must avoid costs the number of
//! allocations in its scopes rather than of all placed ones (planning 10,000 experiments).

use crate::bucketset::BucketSet;
use crate::config::{Config, Experiment};
use std::collections::HashMap;

/// An experiment's exclusion scope: its unit type, the tags it carries (surfaces, tags, its
/// groups' surfaces), the tags it is exclusive to, and its groups.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Unit type.
    pub unit: String,
    /// Tags it carries.
    pub tags: Vec<String>,
    /// Tags it must not share a unit with.
    pub exclusive_to: Vec<String>,
    /// Groups it is a member of.
    pub groups: Vec<String>,
}

impl Scope {
    /// The scope of `e` under `cfg`.
    pub fn of(cfg: &Config, e: &Experiment) -> Scope {
        Scope {
            unit: e.unit.clone(),
            tags: cfg.tags_of(e),
            exclusive_to: cfg.exclusive_to_of(e),
            groups: e.groups.iter().map(|g| g.group.clone()).collect(),
        }
    }

    /// Whether two experiments with these scopes must never share a unit: same unit type, and
    /// a shared group, or one's `exclusive_to` meets the other's tags.
    pub fn excludes(&self, other: &Scope) -> bool {
        self.unit == other.unit
            && (self.groups.iter().any(|g| other.groups.contains(g))
                || self.exclusive_to.iter().any(|t| other.tags.contains(t))
                || other.exclusive_to.iter().any(|t| self.tags.contains(t)))
    }
}

impl Scope {
    /// Whether an allocation recorded with `tags` (its owner's tags and groups, as the state
    /// records them) was in this scope: it carried a tag this scope carries or is exclusive to,
    /// or was in one of its groups. The allocator's least-recently-used preference counts only
    /// such releases, so experiments on other surfaces stay independent of it.
    pub fn meets_recorded(&self, tags: &[String]) -> bool {
        tags.iter().any(|t| self.exclusive_to.contains(t) || self.tags.contains(t) || self.groups.contains(t))
    }
}

/// Allocations placed so far in a plan, indexed by (unit type, tag or group) of their scopes.
#[derive(Debug, Default)]
pub(crate) struct Placed {
    ids: Vec<String>,
    /// Index of each in the configuration's experiments.
    index: Vec<usize>,
    sets: Vec<BucketSet>,
    position: HashMap<String, usize>,
    /// By (unit type, tag or group): only allocations of one unit type exclude each other.
    carrying: HashMap<(String, String), Vec<usize>>,
    exclusive_to: HashMap<(String, String), Vec<usize>>,
    in_group: HashMap<(String, String), Vec<usize>>,
}

impl Placed {
    /// Records `id`'s allocation.
    pub(crate) fn push(&mut self, id: &str, index: usize, scope: &Scope, set: BucketSet) {
        let i = self.ids.len();
        let key = |t: &String| (scope.unit.clone(), t.clone());
        for t in &scope.tags {
            self.carrying.entry(key(t)).or_default().push(i);
        }
        for t in &scope.exclusive_to {
            self.exclusive_to.entry(key(t)).or_default().push(i);
        }
        for g in &scope.groups {
            self.in_group.entry(key(g)).or_default().push(i);
        }
        self.position.insert(id.to_string(), i);
        self.ids.push(id.to_string());
        self.index.push(index);
        self.sets.push(set);
    }

    /// Replaces `id`'s allocation (after it grew).
    pub(crate) fn update(&mut self, id: &str, set: BucketSet) {
        if let Some(&i) = self.position.get(id) {
            self.sets[i] = set;
        }
    }

    /// The placed allocations (other than that of experiment number `index`) that `scope`
    /// excludes, in placement order: (id, experiment number, allocation).
    pub(crate) fn excluded_by<'a>(
        &'a self,
        index: usize,
        scope: &Scope,
    ) -> impl Iterator<Item = (&'a str, usize, &'a BucketSet)> + 'a {
        let none: &[usize] = &[];
        let get = |m: &'a HashMap<(String, String), Vec<usize>>, t: &String| {
            m.get(&(scope.unit.clone(), t.clone())).map_or(none, Vec::as_slice)
        };
        let mut hits: Vec<usize> = scope
            .exclusive_to
            .iter()
            .flat_map(|t| get(&self.carrying, t))
            .chain(scope.tags.iter().flat_map(|t| get(&self.exclusive_to, t)))
            .chain(scope.groups.iter().flat_map(|g| get(&self.in_group, g)))
            .copied()
            .filter(|&i| self.index[i] != index)
            .collect();
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().map(|i| (self.ids[i].as_str(), self.index[i], &self.sets[i]))
    }
}
