//! Impact: the exact share of every running experiment's units a change moves (by buckets and by
//! split), and the same measured on sample contexts.

use super::rules::same_variants;
use super::*;

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

impl Plan {
    /// Measures the impact on `contexts` (a sample of real units): for every experiment in
    /// `impact`, how many of the contexts it assigns under `before` would get another variant or
    /// none after the change. Sees what the exact figures cannot: a narrowed targeting (a unit that
    /// no longer matches loses its variant) depends on the population.
    pub fn measure(&mut self, before: &State, contexts: &[crate::Context]) -> Result<(), Vec<FieldError>> {
        use crate::eval::{NoSticky, Snapshot};
        let (mut old, mut new) = (Snapshot::compile(before)?, Snapshot::compile(&self.state)?);
        // Movement is of units between variants: a pause or a resume moves nobody (a paused
        // experiment keeps every unit's variant for its resume), so both sides are read unpaused.
        for e in old.experiments.iter_mut().chain(new.experiments.iter_mut()) {
            e.paused = false;
        }
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

impl<'a> Planner<'a> {
    /// Exact impact on every experiment running before and after.
    pub(super) fn impact(&self, before: &State) -> IndexMap<String, Impact> {
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
            } else if o.salt == n.salt && o.split_hash == n.split_hash && same_variants(&o.variants, &n.variants) {
                0.0
            } else {
                Split::of(o).moved_share(&Split::of(n))
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
