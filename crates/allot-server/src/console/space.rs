//! The bucket space as the console draws it: for each unit type, each exclusion scope (surface,
//! tag, group) cut into exact, disjoint segments of buckets — running experiments (their reach),
//! holdouts, groups' reserved and free slots, stopped experiments' buckets that are free again,
//! free space — computed from the recorded bucket sets with the same rules as the audit
//! ([`allot_core::audit::audit`], whose numbers the tables beside the pictures show).
//!
//! A bucket belongs to the first of these that holds it, in this order: so the segments of a
//! scope never overlap and add up to the space. Running experiments come first, each with its
//! reach (its buckets less the holdouts that apply to it: for an experiment with a `share`, the
//! share itself); two members that share buckets (exclusive ones whose targeting is provably
//! disjoint on stable attributes, or tags that do not exclude) are drawn once, and the second's
//! segment says how many it shares.

use allot_core::audit::Audit;
use allot_core::bucketset::BucketBitmap;
use allot_core::config::{Config, ExpState, Experiment};
use allot_core::state::{holdout_union, OwnerKind, State};

/// What a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A running experiment's reach.
    Experiment,
    /// A holdout's buckets that no member of the scope holds.
    Holdout,
    /// A group's buckets that no member uses (reserved: non-members never draw from them).
    Reserved,
    /// A stopped experiment's former buckets, free again.
    Released,
    /// Free: a new experiment of the scope could draw these.
    Free,
    /// Outside the group (for a group's scope).
    Outside,
}

impl Kind {
    /// The CSS class of its picture (each kind its own pattern, not colour alone).
    pub(crate) fn class(self) -> &'static str {
        match self {
            Kind::Experiment => "seg-exp",
            Kind::Holdout => "seg-holdout",
            Kind::Reserved => "seg-reserved",
            Kind::Released => "seg-released",
            Kind::Free => "seg-free",
            Kind::Outside => "seg-outside",
        }
    }

    /// Its name for people.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Experiment => "running experiment",
            Kind::Holdout => "holdout",
            Kind::Reserved => "group, reserved and unused",
            Kind::Released => "stopped experiment: free again",
            Kind::Free => "free",
            Kind::Outside => "outside the group",
        }
    }
}

/// One segment of a scope's bar: exact buckets, and where it is drawn (in tenths of a percent
/// of the bar, 0..1000).
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// Its number in the picture and the table (from 1).
    pub(crate) n: usize,
    pub(crate) kind: Kind,
    /// The owner's id (experiment, holdout, group); empty for free space.
    pub(crate) owner: String,
    /// Exact buckets of this segment.
    pub(crate) buckets: u64,
    /// Buckets of its owner drawn in an earlier segment (shared with it).
    pub(crate) overlap: u64,
    /// Share of the space, as text (`12.5%`).
    pub(crate) share: String,
    /// More, for the tooltip and the table (`share 50% (500000 buckets), reach 45%`).
    pub(crate) detail: String,
    /// Colour index of an experiment (0..6), for its class `c0`..`c5`.
    pub(crate) colour: usize,
    pub(crate) x: f64,
    pub(crate) width: f64,
}

impl Segment {
    /// The SVG class list of its rectangle.
    pub(crate) fn classes(&self) -> String {
        match self.kind {
            Kind::Experiment => format!("{} c{}", self.kind.class(), self.colour),
            k => k.class().to_string(),
        }
    }

    /// Whether it is wide enough (in the picture) to carry its number.
    pub(crate) fn labelled(&self) -> bool {
        self.width >= 24.0
    }

    /// Where its number is drawn.
    pub(crate) fn label_x(&self) -> f64 {
        self.x + self.width / 2.0
    }

    /// The tooltip: what, its share and detail.
    pub(crate) fn title(&self) -> String {
        let who = if self.owner.is_empty() { String::new() } else { format!(" {}", self.owner) };
        format!(
            "{}. {}{}: {} of the space ({} buckets){}",
            self.n,
            self.kind.label(),
            who,
            self.share,
            self.buckets,
            self.detail
        )
    }
}

/// A slot of a group, as the audit reports it.
#[derive(Debug, Clone)]
pub(crate) struct SlotRow {
    pub(crate) slot: usize,
    pub(crate) share: String,
    pub(crate) buckets: u64,
    pub(crate) used_buckets: u64,
    pub(crate) free_buckets: u64,
    pub(crate) experiments: Vec<String>,
}

/// One exclusion scope of one unit type.
#[derive(Debug, Clone)]
pub(crate) struct ScopeView {
    /// `surface`, `tag` or `group`.
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// An id for anchors (`scope-user-surface-3`): names may hold anything.
    pub(crate) anchor: String,
    pub(crate) segments: Vec<Segment>,
    /// Experiments of the scope (any state).
    pub(crate) members: Vec<String>,
    /// Running ones.
    pub(crate) running: Vec<String>,
    /// What a new experiment of this scope could still take (surfaces, tags), in buckets.
    pub(crate) can_start: u64,
    pub(crate) can_start_share: String,
    /// A group's slots.
    pub(crate) slots: Vec<SlotRow>,
}

impl ScopeView {
    /// Its experiments that are not running (they hold nothing here).
    pub(crate) fn idle(&self) -> Vec<&String> {
        self.members.iter().filter(|m| !self.running.contains(m)).collect()
    }
}

/// Two scopes of one unit type with no experiment in common: their running experiments overlap as
/// independent samples.
#[derive(Debug, Clone)]
pub(crate) struct ScopeOverlap {
    pub(crate) a: String,
    pub(crate) b: String,
    pub(crate) a_buckets: u64,
    pub(crate) b_buckets: u64,
    /// Exact shared buckets.
    pub(crate) shared: u64,
    /// What independent draws share on average: |a|·|b| / B.
    pub(crate) expected: f64,
    pub(crate) shared_share: String,
    pub(crate) expected_share: String,
}

/// A unit type's space.
#[derive(Debug, Clone)]
pub(crate) struct UnitView {
    pub(crate) unit: String,
    pub(crate) buckets: u64,
    pub(crate) scopes: Vec<ScopeView>,
    pub(crate) overlaps: Vec<ScopeOverlap>,
}

/// `x` as a percentage, as `allot audit` prints it.
pub(crate) fn pct(x: f64) -> String {
    format!("{}%", allot_core::config::fmt_num(x * 100.0))
}

fn share_of(n: u64, b: u64) -> String {
    pct(n as f64 / b.max(1) as f64)
}

struct Painter {
    taken: BucketBitmap,
    segments: Vec<Segment>,
    buckets: u64,
}

impl Painter {
    fn new(space: u32) -> Painter {
        Painter { taken: BucketBitmap::empty(space), segments: vec![], buckets: u64::from(space) }
    }

    /// Paints what of `set` is not painted yet; returns how many buckets that was. What of `set`
    /// an earlier part holds is its segment's `overlap` (so `buckets + overlap = |set|`).
    fn paint(&mut self, set: &BucketBitmap, kind: Kind, owner: &str, mut detail: String, colour: usize) -> u64 {
        let mut x = set.clone();
        x.subtract(&self.taken);
        let n = x.len();
        let overlap = set.len() - n;
        self.taken.union_with(&x);
        if overlap > 0 {
            detail.push_str(&format!("; {overlap} more of its buckets are drawn in a part before it (shared)"));
        }
        if n > 0 {
            self.push(kind, owner, n, overlap, detail, colour);
        }
        n
    }

    fn push(&mut self, kind: Kind, owner: &str, n: u64, overlap: u64, detail: String, colour: usize) {
        self.segments.push(Segment {
            n: self.segments.len() + 1,
            kind,
            owner: owner.to_string(),
            buckets: n,
            overlap,
            share: share_of(n, self.buckets),
            detail,
            colour,
            x: 0.0,
            width: 0.0,
        });
    }

    /// The rest of the space, then the positions.
    fn finish(mut self, rest: Kind) -> Vec<Segment> {
        let n = self.buckets - self.taken.len();
        if n > 0 {
            self.push(rest, "", n, 0, String::new(), 0);
        }
        let mut x = 0.0;
        let b = self.buckets.max(1) as f64;
        for s in &mut self.segments {
            s.x = x;
            s.width = s.buckets as f64 * 1000.0 / b;
            x += s.width;
        }
        self.segments
    }
}

/// The union of the holdouts that apply to an experiment ([`holdout_union`]), computed once
/// per distinct set of holdouts: experiments of one scope nearly always share theirs.
#[derive(Default)]
struct Holdouts {
    unions: std::collections::HashMap<(String, Vec<String>), BucketBitmap>,
}

impl Holdouts {
    fn of(&mut self, state: &State, cfg: &Config, id: &str, b: u32) -> &BucketBitmap {
        let unit = cfg.experiments.get(id).map(|e| e.unit.clone()).unwrap_or_default();
        let names: Vec<String> =
            cfg.holdouts.iter().filter(|(_, h)| cfg.holdout_applies(h, id)).map(|(n, _)| n.clone()).collect();
        self.unions.entry((unit, names)).or_insert_with(|| holdout_union(state, cfg, id, b))
    }
}

enum Which<'a> {
    Tag(&'a str),
    Group(&'a str),
}

fn member(cfg: &Config, e: &Experiment, unit: &str, which: &Which) -> bool {
    e.unit == unit
        && match which {
            Which::Tag(t) => cfg.tags_of(e).iter().any(|x| x == t) || cfg.exclusive_to_of(e).iter().any(|x| x == t),
            Which::Group(g) => e.groups.iter().any(|r| r.group == *g),
        }
}

/// Every unit type's scopes, drawn from `state` under `cfg` with the numbers of `audit`.
pub(crate) fn spaces(state: &State, cfg: &Config, audit: &Audit) -> Vec<UnitView> {
    let mut out = vec![];
    let mut holdouts = Holdouts::default();
    for unit in cfg.units.keys() {
        let Some(space) = state.spaces.get(unit) else { continue };
        let b = space.buckets;
        let mut tags: Vec<(&'static str, String)> = vec![];
        let mut add = |kind: &'static str, t: &String| {
            if !tags.iter().any(|(_, x)| x == t) {
                tags.push((kind, t.clone()));
            }
        };
        for e in cfg.experiments.values().filter(|e| &e.unit == unit) {
            for s in cfg.tags_of(e).iter().chain(&cfg.exclusive_to_of(e)) {
                add(if cfg.surfaces.contains(s) { "surface" } else { "tag" }, s);
            }
        }
        for g in cfg.groups.values().filter(|g| &g.unit == unit) {
            for s in &g.surfaces {
                add("surface", s);
            }
        }
        // Surfaces first, in declaration order; then tags as met.
        tags.sort_by_key(|(k, t)| (*k != "surface", cfg.surfaces.iter().position(|s| s == t).unwrap_or(usize::MAX)));
        let mut scopes = vec![];
        let mut unions: Vec<(String, Vec<String>, BucketBitmap)> = vec![];
        for (i, (kind, t)) in tags.iter().enumerate() {
            let (view, union) =
                scope(state, cfg, audit, &mut holdouts, unit, b, kind, t, &Which::Tag(t), format!("{i}"));
            unions.push((format!("{kind} {t}"), view.running.clone(), union));
            scopes.push(view);
        }
        for (i, (g, _)) in cfg.groups.iter().enumerate().filter(|(_, (_, g))| &g.unit == unit) {
            let (view, union) =
                scope(state, cfg, audit, &mut holdouts, unit, b, "group", g, &Which::Group(g), format!("g{i}"));
            unions.push((format!("group {g}"), view.running.clone(), union));
            scopes.push(view);
        }
        let mut overlaps = vec![];
        for (i, (a, ma, ua)) in unions.iter().enumerate() {
            for (bn, mb, ub) in &unions[i + 1..] {
                if ma.is_empty() || mb.is_empty() || ma.iter().any(|m| mb.contains(m)) {
                    continue;
                }
                let shared = ua.intersection_len(ub);
                let expected = ua.len() as f64 * ub.len() as f64 / f64::from(b);
                overlaps.push(ScopeOverlap {
                    a: a.clone(),
                    b: bn.clone(),
                    a_buckets: ua.len(),
                    b_buckets: ub.len(),
                    shared,
                    expected,
                    shared_share: share_of(shared, u64::from(b)),
                    expected_share: pct(expected / f64::from(b)),
                });
            }
        }
        out.push(UnitView { unit: unit.clone(), buckets: u64::from(b), scopes, overlaps });
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn scope(
    state: &State,
    cfg: &Config,
    audit: &Audit,
    holdouts: &mut Holdouts,
    unit: &str,
    b: u32,
    kind: &'static str,
    name: &str,
    which: &Which,
    anchor: String,
) -> (ScopeView, BucketBitmap) {
    let members: Vec<&String> =
        cfg.experiments.iter().filter(|(_, e)| member(cfg, e, unit, which)).map(|(id, _)| id).collect();
    let running: Vec<&String> =
        members.iter().copied().filter(|id| audit.experiments.contains_key(id.as_str())).collect();
    let mut p = Painter::new(b);
    let mut union = BucketBitmap::empty(b);
    for (i, id) in running.iter().enumerate() {
        let Some(a) = state.live(OwnerKind::Experiment, id) else { continue };
        let held = a.current();
        union.union_with(&held);
        let mut reach = held;
        reach.subtract(holdouts.of(state, cfg, id, b));
        let ea = &audit.experiments[id.as_str()];
        let detail = format!(
            "; share {} ({} buckets), reach {} ({} buckets)",
            pct(ea.share),
            ea.buckets,
            pct(ea.reach),
            ea.reach_buckets
        );
        p.paint(&reach, Kind::Experiment, id, detail, i % 6);
    }
    for (h, ho) in cfg.holdouts.iter().filter(|(_, h)| h.unit == unit) {
        let applies = ho.applies_to.iter().any(|a| a == "all" || a == name)
            || running.iter().any(|id| cfg.holdout_applies(ho, id));
        if !applies {
            continue;
        }
        if let Some(a) = state.live(OwnerKind::Holdout, h) {
            let ha = audit.holdouts.get(h);
            let detail =
                ha.map(|x| format!("; the holdout holds {} ({} buckets)", pct(x.share), x.buckets)).unwrap_or_default();
            p.paint(&a.current(), Kind::Holdout, h, detail, 0);
        }
    }
    let mut slots = vec![];
    let mut can_start = 0;
    let rest = match which {
        Which::Tag(t) => {
            for (g, _) in cfg.groups.iter().filter(|(_, g)| g.unit == unit && g.surfaces.iter().any(|s| s == t)) {
                if let Some(a) = state.live(OwnerKind::Group, g) {
                    p.paint(&a.current(), Kind::Reserved, g, "; only the group's members draw from it".into(), 0);
                }
            }
            can_start = u64::from(b) - p.taken.len();
            released(state, cfg, unit, t, &mut p);
            Kind::Free
        }
        Which::Group(g) => {
            if let Some(ga) = audit.groups.get(*g) {
                for s in &ga.slots {
                    let free = s.buckets.saturating_sub(s.used_buckets);
                    if let Some(a) = state.live(OwnerKind::Slot, &State::slot_id(g, s.slot - 1)) {
                        let detail = format!(
                            "; slot {} holds {} ({} buckets), {} used by [{}]",
                            s.slot,
                            pct(s.share),
                            s.buckets,
                            s.used_buckets,
                            s.experiments.join(", ")
                        );
                        p.paint(&a.current(), Kind::Reserved, &format!("slot {}", s.slot), detail, 0);
                    }
                    can_start += free;
                    slots.push(SlotRow {
                        slot: s.slot,
                        share: pct(s.share),
                        buckets: s.buckets,
                        used_buckets: s.used_buckets,
                        free_buckets: free,
                        experiments: s.experiments.clone(),
                    });
                }
            }
            Kind::Outside
        }
    };
    let view = ScopeView {
        kind,
        name: name.to_string(),
        anchor: format!("scope-{anchor}-{}", cfg.units.get_index_of(unit).unwrap_or(0)),
        segments: p.finish(rest),
        members: members.into_iter().cloned().collect(),
        running: running.into_iter().cloned().collect(),
        can_start,
        can_start_share: share_of(can_start, u64::from(b)),
        slots,
    };
    (view, union)
}

/// Paints the buckets that stopped experiments of scope `t` held and that nothing holds now,
/// most recently released first.
fn released(state: &State, cfg: &Config, unit: &str, t: &str, p: &mut Painter) {
    let mut gone: Vec<_> = state
        .allocations
        .iter()
        .filter(|a| a.kind == OwnerKind::Experiment && a.space == unit && !a.is_live())
        .filter(|a| a.tags.iter().any(|x| x == t))
        .filter(|a| cfg.experiments.get(&a.owner).is_none_or(|e| e.state != ExpState::Running))
        .collect();
    gone.sort_by_key(|a| std::cmp::Reverse(a.released));
    for a in gone {
        let detail = format!("; released at version {}", a.released.unwrap_or_default());
        p.paint(&a.current(), Kind::Released, &a.owner, detail, 0);
    }
}
