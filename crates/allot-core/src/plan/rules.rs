//! The checks of change control that are not allocation: ids reused, legacy sharing, what a
//! segment or targeting change does, and whether a targeting widens.

use super::*;

impl<'a> Planner<'a> {
    /// Refuses a new holdout, group or experiment under an id that held buckets before: the
    /// old incarnation's units would come back (an experiment's split salt is its id, so every
    /// returning unit would get its old variant) and a stopped experiment could start again.
    pub(super) fn refuse_reused_id(&mut self, kind: OwnerKind, id: &str) {
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
    pub(super) fn old_targeting(&self, id: &str) -> Option<Targeting> {
        self.old.experiments.get(id)?.targeting.as_ref().map(|t| t.inline(&self.old.segments))
    }

    /// An experiment's targeting after the change, with the new segments inlined.
    pub(super) fn new_targeting(&self, id: &str) -> Option<Targeting> {
        self.cfg.experiments.get(id)?.targeting.as_ref().map(|t| t.inline(&self.cfg.segments))
    }

    /// Segments and surfaces created, changed or deleted, logged as what they are; a changed
    /// segment names the running experiments whose targeting it changes.
    pub(super) fn segments_and_surfaces(&mut self) {
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

    /// Running experiments of the old configuration a holdout applied to.
    pub(super) fn running_under_old_holdout(&self, name: &str) -> Vec<String> {
        let Some(h) = self.old.holdouts.get(name) else { return vec![] };
        self.old
            .experiments
            .iter()
            .filter(|(id, e)| e.state == ExpState::Running && self.old.holdout_applies(h, id))
            .filter(|(id, _)| self.cfg.experiments.get(*id).is_some_and(|e| e.state == ExpState::Running))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Kept running experiments that share buckets on a proof that no longer holds (recorded
    /// before sharing required stable attributes, or an attribute was removed from `stable`):
    /// refused by name until resolved. The plan's state redraws the conflict (what forcing
    /// records, with the moved share in `impact`); nothing changes unless forced.
    pub(super) fn refuse_legacy_sharing(&mut self, id: &str, other: &str) {
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
}

/// Every attribute either expression constrains (to name what a disjointness proof used).
pub(super) fn attribute_names(a: &Targeting, b: &Targeting, segments: &IndexMap<String, Targeting>) -> Vec<String> {
    let mut out = Compiled::compile(a, segments).attributes();
    out.extend(Compiled::compile(b, segments).attributes());
    out
}

/// Variants equal in order too: the split's ranges follow the order they are written in, so a
/// reordering moves units (IndexMap's own equality ignores order).
pub(super) fn same_variants(a: &IndexMap<String, config::Variant>, b: &IndexMap<String, config::Variant>) -> bool {
    a.len() == b.len() && a.iter().eq(b.iter())
}

/// Whether `new` provably admits every context `old` admits.
pub(super) fn widens(old: Option<&Targeting>, new: Option<&Targeting>, segments: &IndexMap<String, Targeting>) -> bool {
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
