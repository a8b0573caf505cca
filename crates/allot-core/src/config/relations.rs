//! The relations the rest of allot asks a validated configuration about: the tags an experiment
//! carries, which experiments exclude each other, which holdouts apply, which may share buckets.

use super::*;

impl Config {
    /// Tags an experiment carries, including its groups' surfaces.
    pub fn tags_of(&self, e: &Experiment) -> Vec<String> {
        let mut t: Vec<String> = e.all_tags().cloned().collect();
        for g in &e.groups {
            if let Some(group) = self.groups.get(&g.group) {
                t.extend(group.surfaces.iter().cloned());
            }
        }
        t
    }

    /// Tags an experiment is exclusive to, including its groups' surfaces.
    pub fn exclusive_to_of(&self, e: &Experiment) -> Vec<String> {
        let mut t: Vec<String> = e.all_exclusive_to().cloned().collect();
        for g in &e.groups {
            if let Some(group) = self.groups.get(&g.group) {
                t.extend(group.surfaces.iter().cloned());
            }
        }
        t
    }

    /// Whether two experiments must never share a unit (the rule lives in
    /// [`crate::scope::Scope::excludes`]).
    pub fn exclusive(&self, a: &str, b: &str) -> bool {
        let (Some(ea), Some(eb)) = (self.experiments.get(a), self.experiments.get(b)) else { return false };
        if a == b || ea.unit != eb.unit {
            return false;
        }
        crate::scope::Scope::of(self, ea).excludes(&crate::scope::Scope::of(self, eb))
    }

    /// Whether experiment `e` is in the exclusion scope of group `g` (it carries or is exclusive
    /// to one of the group's surfaces): then, unless it is a member, it never draws from the
    /// group's buckets, whether or not the group's slots have members.
    pub fn in_group_scope(&self, e: &Experiment, g: &Group) -> bool {
        e.unit == g.unit && {
            let (tags, excl) = (self.tags_of(e), self.exclusive_to_of(e));
            g.surfaces.iter().any(|s| tags.contains(s) || excl.contains(s))
        }
    }

    /// Why exclusive experiments `a` and `b` may share buckets: the stable attributes (of their
    /// unit type, which include the unit id's own attribute) on which their targeting is
    /// provably disjoint (empty: one matches no one). `None`: they must not share a bucket.
    pub fn sharing(&self, a: &Experiment, b: &Experiment) -> Option<Vec<String>> {
        let (Some(ta), Some(tb)) = (&a.targeting, &b.targeting) else { return None };
        let u = self.units.get(&a.unit)?;
        crate::targeting::disjoint_on(ta, tb, &self.segments, &u.proof_attributes())
    }

    /// Whether holdout `h` applies to experiment `id`.
    pub fn holdout_applies(&self, h: &Holdout, id: &str) -> bool {
        let Some(e) = self.experiments.get(id) else { return false };
        if e.unit != h.unit {
            return false;
        }
        let tags = self.tags_of(e);
        h.applies_to.iter().any(|a| a == "all" || a == id || tags.contains(a) || e.groups.iter().any(|g| &g.group == a))
    }
}
