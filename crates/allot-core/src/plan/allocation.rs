//! Allocation: the new file replayed over the recorded state — spaces, holdouts, groups and
//! their slots, then experiments — and what each owner may draw from.

use super::rules::{same_variants, widens};
use super::*;

impl<'a> Planner<'a> {
    pub(super) fn spaces(&mut self) {
        let live_in = |st: &State, space: &str| st.allocations.iter().any(|a| a.is_live() && a.space == space);
        for (name, u) in &self.cfg.units {
            match self.st.spaces.get(name) {
                None => {
                    self.st.spaces.insert(
                        name.clone(),
                        SpaceState { buckets: u.buckets, salt: u.salt.clone(), hash: u.hash, resalts: vec![] },
                    );
                    self.change(
                        "unit",
                        name,
                        "create",
                        format!("{} buckets on attribute `{}`", u.buckets, u.attribute),
                    );
                }
                Some(s) if s.buckets != u.buckets || s.salt != u.salt || s.hash != u.hash => {
                    // Live allocations are released first when nothing runs; otherwise the space is frozen.
                    let running =
                        self.old.experiments.values().any(|e| e.unit == *name && e.state == ExpState::Running);
                    if running
                        || self.cfg.holdouts.values().any(|h| h.unit == *name)
                        || self.cfg.groups.values().any(|g| g.unit == *name)
                    {
                        self.errors.push(FieldError::new(
                            join("units", name),
                            "buckets, salt and hash cannot change while the space holds allocations (it would move every unit); create a new unit type instead",
                        ));
                    } else {
                        for a in self.st.allocations.iter_mut().filter(|a| a.is_live() && a.space == *name) {
                            a.released = Some(self.version);
                        }
                        self.index = live_index(&self.st);
                        self.st.spaces.insert(
                            name.clone(),
                            SpaceState { buckets: u.buckets, salt: u.salt.clone(), hash: u.hash, resalts: vec![] },
                        );
                        self.change(
                            "unit",
                            name,
                            "update",
                            format!("{} buckets, salt `{}`, hash {}", u.buckets, u.salt, u.hash.as_str()),
                        );
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

    pub(super) fn holdouts(&mut self) {
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
                    let mut free = BucketBitmap::full(b);
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
    pub(super) fn resize(
        &mut self,
        kind: OwnerKind,
        owner: &str,
        path: &str,
        cur: &BucketBitmap,
        count: u64,
        free: Option<&BucketBitmap>,
    ) {
        let have = cur.len();
        let b = cur.space();
        if count > have {
            let mut f = match free {
                Some(f) => f.clone(),
                None => BucketBitmap::full(b),
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

    pub(super) fn groups(&mut self) {
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
            let mut free = BucketBitmap::full(b);
            let mut blockers: Vec<(String, u64)> = vec![];
            let mut take = |free: &mut BucketBitmap, what: String, set: &BucketBitmap| {
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

    pub(super) fn release_group(&mut self, name: &str, slots: usize) {
        self.release(OwnerKind::Group, name);
        for i in 0..slots {
            self.release(OwnerKind::Slot, &State::slot_id(name, i));
        }
    }

    /// The buckets an experiment may draw from, before exclusion: the intersection of its slots
    /// over all its groups, or the whole space.
    pub(super) fn within(&self, e: &Experiment, b: u32) -> BucketBitmap {
        let mut within = BucketBitmap::full(b);
        for g in &e.groups {
            let mut slots = BucketBitmap::empty(b);
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
    pub(super) fn disjoint(&self, ia: usize, ib: usize) -> bool {
        let (Some(Some(na)), Some(Some(nb))) = (self.necessary.get(ia), self.necessary.get(ib)) else { return false };
        let unit = &self.cfg.experiments[ia].unit;
        self.stable.get(unit).is_some_and(|stable| na.disjoint_on(nb, stable).is_some())
    }

    /// Least-recently-used tiers: per shard, the latest version at which an allocation in this
    /// experiment's exclusion scope released it.
    pub(super) fn recency(&self, id: &str, e: &Experiment, b: u32) -> Vec<u64> {
        let scope = Scope::of(self.cfg, e);
        let mut rec = vec![0u64; b.div_ceil(crate::bucketset::SHARD) as usize];
        let released = self.st.allocations.iter().rev().filter(|a| {
            // Cheapest test first: most allocations of a running program are live.
            a.released.is_some()
                && a.kind == OwnerKind::Experiment
                && a.space == e.unit
                && a.owner != id
                // Released before the space was resized: its buckets are not this space's.
                && a.draws.first().is_some_and(|d| d.buckets.space() == b)
                && scope.meets_recorded(&a.tags)
        });
        for a in released.take(RECENCY_WINDOW) {
            let v = a.released.unwrap_or(0);
            a.current().compact().for_each_mask(|s, _| rec[s] = rec[s].max(v));
        }
        rec
    }

    pub(super) fn experiments(&mut self) {
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
                                "`{}` → `{}` is not allowed (draft → running ⇄ paused → stopped → archived){}",
                                o.state_name(),
                                n.state_name(),
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
                        Running if n.paused => "start paused",
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
                            o.state_name(),
                            n.state_name(),
                            if detail.is_empty() { "" } else { "; " },
                            detail
                        ),
                    );
                }
                // Pausing and resuming keep the allocation: nothing is drawn or released, so no
                // unit moves; the experiment only stops (or starts again) serving.
                Some(n) if n.paused != o.paused => {
                    let (action, detail) = if n.paused {
                        ("pause", "running → paused; keeps its buckets, serves nobody (PAUSED) until resumed")
                    } else {
                        ("resume", "paused → running; every unit gets the variant it had")
                    };
                    self.change("experiment", id, action, detail);
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
                    format!("{} ({})", n.state_name(), n.share.map_or("its slots".into(), |s| s.percent())),
                );
                continue;
            };
            let both_running = o.state == ExpState::Running && n.state == ExpState::Running;
            let mut what = vec![];
            for check in FIELD_CHECKS.iter().filter(|c| (c.differs)(o, n)) {
                what.push((check.describe)(o, n));
                if let (true, Some((rule, why))) = (both_running, check.refuse_while_running) {
                    self.refuse(join(&path, check.field), rule, why);
                }
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
    pub(super) fn free_for<'p>(
        &self,
        id: &str,
        e: &Experiment,
        b: u32,
        placed: &'p Placed,
    ) -> (BucketBitmap, BucketBitmap, Vec<Holder<'p>>)
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
}

/// What holds buckets an experiment asked for: (kind, id, buckets).
pub(super) type Holder<'p> = (&'static str, &'p str, u64);

pub(super) fn no_space(
    path: &str,
    share: Option<Share>,
    target: u64,
    need: u64,
    free: &BucketBitmap,
    within: &BucketBitmap,
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

/// One field of an experiment that change control compares: what its change is called in the
/// plan, and the refusal when it changes under a running experiment (`None`: allowed here, or
/// decided by the allocation itself — a share's growth or shrink, a split's moved share).
/// Targeting is compared apart, with segments inlined.
struct FieldCheck {
    field: &'static str,
    differs: fn(&Experiment, &Experiment) -> bool,
    describe: fn(&Experiment, &Experiment) -> String,
    refuse_while_running: Option<(Rule, &'static str)>,
}

/// Every field compared, in the order the plan lists their changes.
const FIELD_CHECKS: &[FieldCheck] = &[
    FieldCheck {
        field: "unit",
        differs: |o, n| o.unit != n.unit,
        describe: |o, n| format!("unit {} → {}", o.unit, n.unit),
        refuse_while_running: Some((
            Rule::MovesUnits,
            "changing the unit type of a running experiment reassigns every unit",
        )),
    },
    FieldCheck {
        field: "group",
        differs: |o, n| o.groups != n.groups,
        describe: |_, _| "groups/slots".into(),
        refuse_while_running: Some((
            Rule::GroupMembershipFixed,
            "a running experiment cannot join or leave a group or change slots",
        )),
    },
    FieldCheck {
        field: "share",
        differs: |o, n| o.share != n.share,
        describe: |o, n| {
            let s = |e: &Experiment| e.share.map_or("slots".into(), |s| s.percent());
            format!("share {} → {}", s(o), s(n))
        },
        refuse_while_running: None,
    },
    FieldCheck {
        field: "variants",
        differs: |o, n| !same_variants(&o.variants, &n.variants),
        describe: |_, _| "variants".into(),
        refuse_while_running: None,
    },
    FieldCheck {
        field: "salt",
        differs: |o, n| o.salt != n.salt,
        describe: |_, _| "salt".into(),
        refuse_while_running: None,
    },
    FieldCheck {
        field: "split_hash",
        differs: |o, n| o.split_hash != n.split_hash,
        describe: |o, n| format!("split hash {} → {}", o.split_hash.as_str(), n.split_hash.as_str()),
        refuse_while_running: None,
    },
    FieldCheck {
        field: "include",
        differs: |o, n| o.include != n.include,
        describe: |_, _| "inclusions".into(),
        refuse_while_running: None,
    },
    FieldCheck {
        field: "surfaces",
        differs: |o, n| o.surfaces != n.surfaces || o.tags != n.tags || o.exclusive_to != n.exclusive_to,
        describe: |_, _| "exclusion scopes".into(),
        refuse_while_running: None,
    },
    FieldCheck {
        field: "requires",
        differs: |o, n| o.requires != n.requires,
        describe: |_, _| "prerequisites".into(),
        refuse_while_running: Some((
            Rule::MovesUnits,
            "changing the prerequisites of a running experiment moves the units they admit or exclude",
        )),
    },
    FieldCheck {
        field: "sticky",
        differs: |o, n| o.sticky != n.sticky,
        describe: |_, n| format!("sticky {}", n.sticky),
        refuse_while_running: None,
    },
];
