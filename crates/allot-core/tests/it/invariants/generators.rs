use super::*;

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// An experiment before it is fitted to a model.
#[derive(Clone, Debug)]
pub(super) struct ExpSpec {
    pub(super) unit: u8,
    pub(super) surfaces: u8,
    pub(super) tags: u8,
    pub(super) excl: u8,
    pub(super) group: Option<(u8, u8)>,
    pub(super) two_groups: bool,
    pub(super) share_pm: u16,
    pub(super) share_none: bool,
    pub(super) weights: Vec<u8>,
    pub(super) countries: Option<u8>,
    pub(super) state: u8,
    pub(super) salt: Option<u8>,
    pub(super) include: Option<(u8, u8)>,
}

pub(super) fn exp_spec() -> impl Strategy<Value = ExpSpec> {
    (
        (any::<u8>(), prop_oneof![3 => (0u8..4).prop_map(|i| 1u8 << i), 1 => any::<u8>()], any::<u8>(), any::<u8>()),
        (
            proptest::option::weighted(0.35, (any::<u8>(), 1u8..=255)),
            proptest::bool::weighted(0.3),
            prop_oneof![4 => 10u16..=250, 1 => 250u16..=700],
            any::<bool>(),
        ),
        (
            proptest::collection::vec(0u8..=4, 1..=3),
            proptest::option::weighted(0.35, country_mask()),
            0u8..20,
            proptest::option::weighted(0.15, 0u8..3),
            proptest::option::weighted(0.2, (0u8..50, any::<u8>())),
        ),
    )
        .prop_map(
            |(
                (unit, surfaces, tags, excl),
                (group, two_groups, share_pm, share_none),
                (weights, countries, state, salt, include),
            )| {
                ExpSpec {
                    unit,
                    surfaces,
                    tags,
                    excl,
                    group,
                    two_groups,
                    share_pm,
                    share_none,
                    weights,
                    countries,
                    state,
                    salt,
                    include,
                }
            },
        )
}

/// Mostly one or two countries, so that targeting is often provably disjoint.
pub(super) fn country_mask() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => (0u8..5).prop_map(|i| 1u8 << i),
        2 => (0u8..5, 0u8..5).prop_map(|(i, j)| (1u8 << i) | (1u8 << j)),
        1 => 1u8..32,
    ]
}

pub(super) fn pick_bits<T: Clone>(mask: u8, from: &[T]) -> Vec<T> {
    from.iter().enumerate().filter(|(i, _)| (mask >> i) & 1 == 1).map(|(_, x)| x.clone()).collect()
}

pub(super) fn countries_of(mask: u8) -> Option<Vec<&'static str>> {
    let cs = pick_bits(mask, &COUNTRIES);
    (!cs.is_empty()).then_some(cs)
}

pub(super) fn variants_of(weights: &[u8]) -> Vec<(String, u32)> {
    let mut vs: Vec<(String, u32)> =
        weights.iter().enumerate().map(|(i, w)| (VARIANTS[i].to_string(), u32::from(*w))).collect();
    if vs.iter().all(|(_, w)| *w == 0) {
        vs[0].1 = 1;
    }
    vs
}

impl Model {
    /// Fits an experiment spec to the model under a fresh id.
    pub(super) fn fit(&mut self, s: &ExpSpec, state: Option<ExpState>) -> ExpM {
        let id = format!("e{}", self.next);
        self.next += 1;
        let mut unit = s.unit as usize % self.units.len();
        let slots_of = |g: usize, mask: u8| {
            let n = self.groups[g].slots.len();
            let mut chosen: Vec<usize> = (0..n).filter(|i| (mask >> (i % 8)) & 1 == 1).map(|i| i + 1).collect();
            if chosen.is_empty() {
                chosen.push(mask as usize % n + 1);
            }
            chosen
        };
        let (group, group2) = match s.group {
            Some((g, slots)) if !self.groups.is_empty() => {
                let g = g as usize % self.groups.len();
                unit = self.groups[g].unit;
                let h = 1 - g.min(1);
                let second = (s.two_groups && self.groups.len() >= 2 && self.groups[h].unit == unit)
                    .then(|| (h, slots_of(h, slots.rotate_left(3))));
                (Some((g, slots_of(g, slots))), second)
            }
            _ => (None, None),
        };
        // Salts are per experiment: two that can share units may not share one.
        let salt = s.salt.map(|k| format!("{id}-salt-{k}"));
        let mut e = ExpM {
            id,
            unit,
            surfaces: pick_bits(s.surfaces, &self.surfaces),
            tags: pick_bits(s.tags & 0b11 & (s.tags >> 4), &TAGS.map(String::from)),
            exclusive_to: pick_bits(s.excl & 0b11 & (s.excl >> 3), &TAGS.map(String::from)),
            group,
            group2,
            share: None,
            variants: variants_of(&s.weights),
            countries: s.countries.and_then(countries_of),
            state: state.unwrap_or(match s.state {
                0..=3 => ExpState::Draft,
                4..=17 => ExpState::Running,
                18 => ExpState::Stopped,
                _ => ExpState::Archived,
            }),
            paused: false,
            salt,
            include: s.include.map(|(u, v)| (usize::from(u), usize::from(v))),
        };
        let room = self.room(&e);
        if e.group.is_none() || (!s.share_none && e.group2.is_none()) {
            e.share = Some((room * u64::from(s.share_pm) / 1000).max(1));
        }
        e
    }
}

#[derive(Clone, Debug)]
pub(super) struct HoldoutSpec {
    pub(super) unit: u8,
    pub(super) share_pm: u16,
    pub(super) kind: u8,
    pub(super) pick: u8,
}

pub(super) fn holdout_spec() -> impl Strategy<Value = HoldoutSpec> {
    (any::<u8>(), 5u16..=150, 0u8..5, any::<u8>()).prop_map(|(unit, share_pm, kind, pick)| HoldoutSpec {
        unit,
        share_pm,
        kind,
        pick,
    })
}

impl Model {
    /// What a holdout applies to: all, a surface, an experiment, a group or a tag.
    pub(super) fn applies_to(&self, kind: u8, pick: u8) -> Vec<String> {
        let p = pick as usize;
        let tags: Vec<&String> = self.exps.iter().flat_map(|e| &e.tags).collect();
        match kind {
            1 if !self.exps.is_empty() => vec![self.exps[p % self.exps.len()].id.clone()],
            2 if !self.groups.is_empty() => vec![self.groups[p % self.groups.len()].name.clone()],
            3 if !tags.is_empty() => vec![tags[p % tags.len()].clone()],
            4 => vec!["all".into()],
            _ => vec![self.surfaces[p % self.surfaces.len()].clone()],
        }
    }

    pub(super) fn add_group(&mut self, g: &GroupSpec) {
        let unit = g.unit as usize % self.units.len();
        let surfaces =
            g.surface.map(|s| vec![self.surfaces[s as usize % self.surfaces.len()].clone()]).unwrap_or_default();
        let name = format!("g{}", self.next);
        self.next += 1;
        self.groups.push(GroupM { name, unit, pct: g.pct, slots: slot_percents(&g.slots), surfaces });
    }

    /// Stops every experiment of unit type `u` and removes its holdouts and groups.
    pub(super) fn clear_space(&mut self, u: usize) {
        self.holdouts.retain(|h| h.unit != u);
        let keep: Vec<Option<usize>> = {
            let mut n = 0;
            self.groups
                .iter()
                .map(|g| {
                    (g.unit != u).then(|| {
                        n += 1;
                        n - 1
                    })
                })
                .collect()
        };
        self.groups.retain(|g| g.unit != u);
        let space = self.space(u);
        for e in &mut self.exps {
            if e.unit == u && e.state == ExpState::Running {
                e.state = ExpState::Stopped;
            }
            let remap = |g: &mut Option<(usize, Vec<usize>)>| {
                if let Some((i, slots)) = g.take() {
                    *g = keep[i].map(|j| (j, slots));
                }
            };
            remap(&mut e.group);
            remap(&mut e.group2);
            if e.group.is_none() {
                e.group = e.group2.take();
            }
            if e.group.is_none() && e.share.is_none() {
                e.share = Some(space / 10);
            }
        }
    }

    pub(super) fn add_holdout(&mut self, s: &HoldoutSpec) {
        let unit = s.unit as usize % self.units.len();
        let name = format!("h{}", self.next);
        self.next += 1;
        let buckets = (self.space(unit) * u64::from(s.share_pm) / 1000).max(1);
        let applies_to = self.applies_to(s.kind, s.pick);
        self.holdouts.push(HoldoutM { name, unit, buckets, applies_to });
    }
}

#[derive(Clone, Debug)]
pub(super) struct GroupSpec {
    pub(super) unit: u8,
    pub(super) pct: u64,
    pub(super) slots: Vec<u8>,
    pub(super) surface: Option<u8>,
}

pub(super) fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (
        any::<u8>(),
        prop_oneof![Just(10u64), Just(20), Just(30), Just(40), Just(50)],
        proptest::collection::vec(1u8..=10, 1..=5),
        proptest::option::of(any::<u8>()),
    )
        .prop_map(|(unit, pct, slots, surface)| GroupSpec { unit, pct, slots, surface })
}

/// Whole percents from relative sizes, summing to at most 100 and each at least 1.
pub(super) fn slot_percents(parts: &[u8]) -> Vec<u64> {
    let total: u64 = parts.iter().map(|p| u64::from(*p)).sum();
    parts.iter().map(|p| (u64::from(*p) * 100 / total).max(1)).collect()
}

pub(super) fn model() -> impl Strategy<Value = Model> {
    (
        proptest::collection::vec((0usize..BUCKETS.len(), any::<bool>()), 1..=2),
        prop_oneof![3 => 1usize..=2, 1 => 3usize..=4],
        proptest::collection::vec(group_spec(), 0..=2),
        proptest::collection::vec(exp_spec(), 3..=8),
        proptest::collection::vec(holdout_spec(), 0..=2),
    )
        .prop_map(|(sizes, n_surfaces, groups, exps, holdouts)| {
            let names = [("user", "user_id"), ("device", "device_id")];
            let units = sizes
                .iter()
                .enumerate()
                .map(|(i, (s, stable))| UnitM {
                    name: names[i].0,
                    attr: names[i].1,
                    buckets: BUCKETS[*s],
                    stable_country: *stable,
                })
                .collect();
            let mut m = Model {
                units,
                surfaces: (0..n_surfaces).map(|i| format!("s{i}")).collect(),
                holdouts: vec![],
                groups: vec![],
                exps: vec![],
                segments: [vec!["SE", "NO"], vec!["US"]],
                next: 0,
            };
            for g in &groups {
                m.add_group(g);
            }
            for s in &exps {
                let e = m.fit(s, None);
                m.exps.push(e);
            }
            for h in &holdouts {
                m.add_holdout(h);
            }
            m
        })
}

/// One change to the model.
#[derive(Clone, Debug)]
pub(super) enum Change {
    Start(u8),
    /// `state: paused`: a running one keeps its buckets and serves nobody; a draft starts paused.
    Pause(u8),
    /// `state: running` again after a pause.
    Resume(u8),
    Stop(u8),
    Archive(u8),
    Grow(u8, u16),
    Shrink(u8, u16),
    Reweight(u8, Vec<u8>),
    Salt(u8, u8),
    Add(ExpSpec, bool),
    Remove(u8),
    Surfaces(u8, u8),
    /// Moves a group member to other slots of its group.
    Slots(u8, u8),
    /// A new mutual exclusion group.
    AddGroup(GroupSpec),
    /// A new size for a unit type's space (allowed only while nothing holds buckets in it);
    /// with `true`, preceded by a change that stops every experiment on it and removes its
    /// holdouts and groups, so that the resize can happen.
    Rebucket(u8, u8, bool),
    /// Stops every experiment of a unit type and removes its holdouts and groups.
    ClearSpace(u8),
    AddHoldout(HoldoutSpec),
    HoldoutAppliesTo(u8, u8, u8),
    Targeting(u8, Option<u8>),
    /// Redefines segment `nordic` (0) or `us` (1) as other countries: a change to the targeting
    /// of every experiment that uses it.
    Segment(u8, u8),
    /// Reads a unit type's ids from the other attribute (`user_id` ↔ `device_id`).
    UnitAttribute(u8),
    /// Declares `country` stable for a unit type, or no longer.
    Stable(u8),
    /// The salt machine on a space (`salt::resalt`), not a configuration change.
    Resalt(u8),
    /// The same configuration again.
    Reapply,
}

pub(super) fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => any::<u8>().prop_map(Change::Start),
        2 => any::<u8>().prop_map(Change::Pause),
        2 => any::<u8>().prop_map(Change::Resume),
        3 => any::<u8>().prop_map(Change::Stop),
        1 => any::<u8>().prop_map(Change::Archive),
        3 => (any::<u8>(), 1u16..=600).prop_map(|(i, d)| Change::Grow(i, d)),
        2 => (any::<u8>(), 1u16..=300).prop_map(|(i, d)| Change::Shrink(i, d)),
        2 => (any::<u8>(), proptest::collection::vec(0u8..=4, 1..=3)).prop_map(|(i, w)| Change::Reweight(i, w)),
        1 => (any::<u8>(), 0u8..3).prop_map(|(i, s)| Change::Salt(i, s)),
        3 => (exp_spec(), any::<bool>()).prop_map(|(s, run)| Change::Add(s, run)),
        1 => any::<u8>().prop_map(Change::Remove),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(i, m)| Change::Surfaces(i, m)),
        1 => (any::<u8>(), 1u8..=255).prop_map(|(i, m)| Change::Slots(i, m)),
        1 => group_spec().prop_map(Change::AddGroup),
        2 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(u, k, clear)| Change::Rebucket(u, k, clear)),
        1 => holdout_spec().prop_map(Change::AddHoldout),
        2 => (any::<u8>(), 0u8..5, any::<u8>()).prop_map(|(h, k, p)| Change::HoldoutAppliesTo(h, k, p)),
        1 => (any::<u8>(), proptest::option::of(country_mask())).prop_map(|(i, c)| Change::Targeting(i, c)),
        1 => (0u8..2, country_mask()).prop_map(|(k, c)| Change::Segment(k, c)),
        1 => any::<u8>().prop_map(Change::UnitAttribute),
        1 => any::<u8>().prop_map(Change::Stable),
        1 => any::<u8>().prop_map(Change::Resalt),
        1 => Just(Change::Reapply),
    ]
}

#[derive(Clone, Debug)]
pub(super) struct Step {
    pub(super) change: Change,
    pub(super) force: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Scenario {
    pub(super) model: Model,
    pub(super) steps: Vec<Step>,
}

pub(super) fn scenario() -> impl Strategy<Value = Scenario> {
    (model(), proptest::collection::vec((change(), proptest::bool::weighted(0.25)), 3..=8)).prop_map(
        |(model, steps)| Scenario {
            model,
            steps: steps.into_iter().map(|(change, force)| Step { change, force }).collect(),
        },
    )
}

/// What change control must do with a non-forced change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Expect {
    /// Allowed: it may fail for lack of space, but never be refused.
    NotRefused,
    /// It would move units of a running experiment (or break a lifecycle rule): refused or invalid.
    NotAccepted,
    /// It would move units of a running experiment and nothing else changes: refused.
    Refused,
    /// Depends on the state.
    Any,
}

/// Whether a same-salt reweight gives some unit another variant, computed independently of
/// `split.rs`.
pub(super) fn reweight_moves(old: &[(String, u32)], new: &[(String, u32)]) -> bool {
    let bounds = |vs: &[(String, u32)]| -> Vec<(u64, String)> {
        let total: u64 = vs.iter().map(|(_, w)| u64::from(*w)).sum::<u64>().max(1);
        let mut cum = 0;
        vs.iter()
            .map(|(n, w)| {
                cum += u64::from(*w);
                (cum * 1_000_000 / total, n.clone())
            })
            .collect()
    };
    let (a, b) = (bounds(old), bounds(new));
    let name_at = |bs: &[(u64, String)], x: u64| {
        bs.iter().find(|(u, _)| x < *u).map_or(bs[bs.len() - 1].1.clone(), |(_, n)| n.clone())
    };
    let mut cuts: Vec<u64> = a.iter().chain(&b).map(|(u, _)| *u).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut lo = 0;
    for hi in cuts {
        if hi > lo && name_at(&a, lo) != name_at(&b, lo) {
            return true;
        }
        lo = hi;
    }
    false
}

impl Model {
    pub(super) fn pick(&self, i: u8) -> Option<usize> {
        (!self.exps.is_empty()).then(|| i as usize % self.exps.len())
    }

    /// Applies a change; returns what change control must do with it.
    pub(super) fn mutate(&mut self, c: &Change) -> Expect {
        use ExpState::*;
        match c {
            // Start, or start paused (`state: paused` from a draft, or pausing a running one).
            Change::Start(i) | Change::Pause(i) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let e = &mut self.exps[i];
                let before = e.state;
                e.state = Running;
                e.paused = matches!(c, Change::Pause(_));
                match before {
                    Draft | Running => Expect::NotRefused,
                    Stopped | Archived => Expect::NotAccepted,
                }
            }
            Change::Resume(i) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                self.exps[i].paused = false;
                Expect::NotRefused
            }
            Change::Stop(i) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let e = &mut self.exps[i];
                let before = e.state;
                e.state = Stopped;
                if before == Archived {
                    Expect::NotAccepted
                } else {
                    Expect::NotRefused
                }
            }
            Change::Archive(i) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                self.exps[i].state = Archived;
                Expect::NotRefused
            }
            Change::Grow(i, d) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let room = self.room(&self.exps[i]);
                let e = &mut self.exps[i];
                if let Some(k) = e.share {
                    e.share = Some((k + room * u64::from(*d) / 1000).min(room));
                }
                Expect::NotRefused
            }
            Change::Shrink(i, d) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let room = self.room(&self.exps[i]);
                let e = &mut self.exps[i];
                let Some(k) = e.share else { return Expect::Any };
                let new = k.saturating_sub((room * u64::from(*d) / 1000).max(1)).max(1);
                e.share = Some(new);
                if e.state == Running && new < k {
                    Expect::Refused
                } else {
                    Expect::NotRefused
                }
            }
            Change::Reweight(i, w) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let e = &mut self.exps[i];
                let new = variants_of(w);
                let moves = reweight_moves(&e.variants, &new);
                e.variants = new;
                if e.state == Running && moves {
                    Expect::Refused
                } else if e.state == Running {
                    Expect::Any
                } else {
                    Expect::NotRefused
                }
            }
            Change::Salt(i, s) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let e = &mut self.exps[i];
                let before = e.salt().to_string();
                e.salt = Some(format!("{}-salt-{s}", e.id));
                // A one-variant experiment gives every unit the same variant whatever the salt.
                let moves = before != e.salt() && e.variants.iter().filter(|(_, w)| *w > 0).count() > 1;
                if e.state == Running && moves {
                    Expect::Refused
                } else if e.state == Running {
                    Expect::Any
                } else {
                    Expect::NotRefused
                }
            }
            Change::Add(s, run) => {
                let e = self.fit(s, Some(if *run { Running } else { Draft }));
                self.exps.push(e);
                Expect::NotRefused
            }
            Change::Remove(i) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let e = self.exps.remove(i);
                if e.state == Running {
                    Expect::Refused
                } else {
                    Expect::Any
                }
            }
            Change::Surfaces(i, m) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                self.exps[i].surfaces = pick_bits(*m, &self.surfaces);
                Expect::Any
            }
            Change::Slots(i, mask) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let Some((g, slots)) = self.exps[i].group.clone() else { return Expect::NotRefused };
                let n = self.groups[g].slots.len();
                let mut new: Vec<usize> = (0..n).filter(|k| (mask >> (k % 8)) & 1 == 1).map(|k| k + 1).collect();
                if new.is_empty() {
                    new.push(*mask as usize % n + 1);
                }
                let e = &mut self.exps[i];
                let changed = new != slots;
                e.group = Some((g, new));
                let room = self.room(&self.exps[i]);
                let e = &mut self.exps[i];
                if let Some(k) = e.share {
                    e.share = Some(k.min(room));
                }
                // A running experiment cannot join or leave a group or change slots.
                if changed && e.state == Running {
                    Expect::NotAccepted
                } else {
                    Expect::Any
                }
            }
            Change::AddGroup(g) => {
                self.add_group(g);
                Expect::NotRefused
            }
            Change::ClearSpace(u) => {
                let u = *u as usize % self.units.len();
                self.clear_space(u);
                Expect::Any
            }
            Change::Rebucket(u, k, _) => {
                let u = *u as usize % self.units.len();
                let (old, new) = (self.space(u), u64::from(BUCKETS[*k as usize % BUCKETS.len()]));
                self.units[u].buckets = new as u32;
                let scale = |k: u64| (k * new / old).clamp(1, new);
                for h in self.holdouts.iter_mut().filter(|h| h.unit == u) {
                    h.buckets = scale(h.buckets);
                }
                for i in 0..self.exps.len() {
                    if self.exps[i].unit == u {
                        let room = self.room(&self.exps[i]);
                        let e = &mut self.exps[i];
                        e.share = e.share.map(|k| scale(k).min(room));
                    }
                }
                Expect::Any
            }
            Change::AddHoldout(s) => {
                self.add_holdout(s);
                Expect::NotRefused
            }
            Change::HoldoutAppliesTo(h, kind, pick) => {
                if self.holdouts.is_empty() {
                    return Expect::NotRefused;
                }
                let h = *h as usize % self.holdouts.len();
                self.holdouts[h].applies_to = self.applies_to(*kind, *pick);
                Expect::Any
            }
            Change::Targeting(i, c) => {
                let Some(i) = self.pick(*i) else { return Expect::NotRefused };
                let e = &mut self.exps[i];
                e.countries = c.and_then(countries_of);
                // Even widening can conflict: an exclusive experiment whose targeting was
                // provably disjoint from the old one may share its buckets.
                if e.state != Running {
                    Expect::NotRefused
                } else {
                    Expect::Any
                }
            }
            Change::Segment(k, c) => {
                let Some(cs) = countries_of(*c) else { return Expect::NotRefused };
                self.segments[*k as usize % 2] = cs;
                // Narrowing moves units of the running experiments that use it (refused);
                // widening may conflict (as a targeting change does).
                Expect::Any
            }
            Change::UnitAttribute(u) => {
                let u = *u as usize % self.units.len();
                let unit = &mut self.units[u];
                unit.attr = if unit.attr == "user_id" { "device_id" } else { "user_id" };
                if self.exps.iter().any(|e| e.unit == u && e.state == Running) {
                    Expect::NotAccepted
                } else {
                    Expect::Any
                }
            }
            Change::Stable(u) => {
                let u = *u as usize % self.units.len();
                self.units[u].stable_country = !self.units[u].stable_country;
                // No longer stable while two running experiments share on it: refused.
                Expect::Any
            }
            Change::Resalt(_) | Change::Reapply => Expect::NotRefused,
        }
    }
}
