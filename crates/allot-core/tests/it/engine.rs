//! Example-based tests of allocation, change control and evaluation, one behaviour each.

use allot_core::audit::audit;
use allot_core::bucketset::{draw, BucketBitmap, BucketSet};
use allot_core::config::{self, Config};
use allot_core::eval::{NoSticky, Reason, Snapshot};
use allot_core::history::bucket_history;
use allot_core::plan::{self, ApplyError, Options, Plan};
use allot_core::salt::resalt;
use allot_core::state::{OwnerKind, State};
use allot_core::testing::edit;
use allot_core::Context;
use serde_json::json;
use std::collections::HashMap;

fn cfg(yaml: &str) -> (Config, serde_json::Value) {
    let raw = config::parse_yaml(yaml).unwrap();
    let c = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    (c, raw)
}

fn apply(st: &State, yaml: &str) -> Result<Plan, ApplyError> {
    let (c, raw) = cfg(yaml);
    plan::apply(st, &c, &raw, &Options { time: "2026-01-01T00:00:00Z".into(), ..Options::default() })
}

fn forced(st: &State, yaml: &str) -> Plan {
    let (c, raw) = cfg(yaml);
    plan::apply(st, &c, &raw, &Options { force: true, reason: Some("test".into()), ..Options::default() }).unwrap()
}

fn ok(st: &State, yaml: &str) -> State {
    match apply(st, yaml) {
        Ok(p) => p.state,
        Err(ApplyError::Refused(p)) => panic!("refused: {:?}", p.refusals),
        Err(ApplyError::Invalid(e)) => panic!("invalid: {}", allot_core::Errors(e)),
    }
}

fn refused(st: &State, yaml: &str) -> Plan {
    match apply(st, yaml) {
        Err(ApplyError::Refused(p)) => *p,
        Ok(_) => panic!("expected a refusal"),
        Err(ApplyError::Invalid(e)) => panic!("invalid: {}", allot_core::Errors(e)),
    }
}

fn ctx(v: serde_json::Value) -> Context {
    v.as_object().unwrap().clone()
}

fn set(st: &State, id: &str) -> BucketBitmap {
    st.live(OwnerKind::Experiment, id).unwrap().current()
}

const BASE: &str = r#"
units: {user: {attribute: user_id, buckets: 100000}}
surfaces: [home, search]
experiments:
  a: {unit: user, surfaces: [home], share: 40%, variants: {c: 1, t: 1}, state: running}
  b: {unit: user, surfaces: [home], share: 60%, variants: {c: 1, t: 1}, state: running}
  s: {unit: user, surfaces: [search], share: 50%, variants: {c: 1, t: 1}, state: running}
"#;

#[test]
fn exact_shares_exclusive_surfaces_and_independent_overlap() {
    let st = ok(&State::default(), BASE);
    let (a, b, s) = (set(&st, "a"), set(&st, "b"), set(&st, "s"));
    assert_eq!((a.len(), b.len(), s.len()), (40_000, 60_000, 50_000));
    assert_eq!(a.intersection_len(&b), 0, "same surface: disjoint");
    // Different surfaces: overlap like independent samples (≈ 20,000 of a's 40,000 with s).
    let shared = a.intersection_len(&s) as f64;
    assert!((shared - 20_000.0).abs() < 2_000.0, "{shared}");
}

#[test]
fn not_enough_space_fails_whole_and_names_holders() {
    let yaml = edit(BASE, "share: 60%", "share: 61%");
    match apply(&State::default(), &yaml) {
        Err(ApplyError::Invalid(e)) => {
            assert_eq!(e[0].path, "experiments.b.share");
            assert!(e[0].message.contains("60000 free"), "{}", e[0].message);
            assert!(e[0].message.contains("experiment a 40000"), "{}", e[0].message);
        }
        other => panic!("{:?}", other.map(|p| p.changes)),
    }
}

#[test]
fn allocations_are_compact_and_reproducible_from_their_seed() {
    let st = ok(&State::default(), &edit(BASE, "buckets: 100000", "buckets: 1000000"));
    for a in &st.allocations {
        let text = serde_json::to_string(&a.draws[0].buckets).unwrap();
        assert!(text.len() < 2048, "{} bytes", text.len());
    }
    // Redraw `s` from its recorded seed over the same free set (the whole space): same buckets.
    let rec = st.live(OwnerKind::Experiment, "s").unwrap();
    let redrawn = draw(&BucketBitmap::full(1_000_000), 500_000, rec.draws[0].seed, Some(&vec![0; 7813])).unwrap();
    assert_eq!(redrawn.compact(), rec.draws[0].buckets);
    let round: BucketSet = serde_json::from_str(&serde_json::to_string(&rec.draws[0].buckets).unwrap()).unwrap();
    assert_eq!(round, rec.draws[0].buckets);
}

#[test]
fn growing_adds_only_and_shrinking_is_refused_with_exact_share() {
    let st = ok(&State::default(), edit(BASE, "share: 60%", "share: 30%").as_str());
    let before = set(&st, "b");
    let st2 = ok(&st, &edit(BASE, "share: 60%", "share: 45%"));
    let after = set(&st2, "b");
    assert_eq!(after.len(), 45_000);
    assert_eq!(after.intersection_len(&before), before.len(), "growth keeps every bucket");
    let p = refused(&st2, edit(BASE, "share: 60%", "share: 15%").as_str());
    let imp = &p.impact["b"];
    assert!((imp.moved_share - 2.0 / 3.0).abs() < 1e-12, "{}", imp.moved_share);
    assert_eq!(p.refusals[0].rule, "no-shrink");
    assert_eq!(p.impact["a"].moved_share, 0.0);
}

#[test]
fn reweighting_a_running_experiment_reports_the_split_share() {
    let st = ok(&State::default(), BASE);
    let p = refused(&st, &edit(BASE, "share: 40%, variants: {c: 1, t: 1}", "share: 40%, variants: {c: 1, t: 3}"));
    // c: [0, .5) → [0, .25): a quarter of units move from c to t.
    assert!((p.impact["a"].moved_by_split - 0.25).abs() < 1e-6);
    assert_eq!(p.refusals[0].path, "experiments.a");
    // Forced, the change is recorded with its reason and the refusals it overrode.
    let f = forced(&st, &edit(BASE, "share: 40%, variants: {c: 1, t: 1}", "share: 40%, variants: {c: 1, t: 3}"));
    let log = f.state.log.last().unwrap();
    assert!(log.forced);
    assert_eq!(log.reason.as_deref(), Some("test"));
    assert_eq!(log.overridden.len(), 1);
}

#[test]
fn force_needs_a_reason() {
    let (c, raw) = cfg(BASE);
    let e = plan::apply(&State::default(), &c, &raw, &Options { force: true, ..Options::default() });
    assert!(matches!(e, Err(ApplyError::Invalid(ref es)) if es[0].path == "reason"));
}

#[test]
fn lifecycle_rules() {
    let st = ok(&State::default(), BASE);
    // Stop returns buckets.
    let stopped = ok(
        &st,
        &edit(
            BASE,
            "share: 40%, variants: {c: 1, t: 1}, state: running",
            "share: 40%, variants: {c: 1, t: 1}, state: stopped",
        ),
    );
    assert!(stopped.live(OwnerKind::Experiment, "a").is_none());
    let a_old = st.live(OwnerKind::Experiment, "a").unwrap().id;
    assert_eq!(stopped.allocations.iter().find(|x| x.id == a_old).unwrap().released, Some(2));
    // Stopped → running and running → draft are refused; removing a running experiment too.
    let p = refused(&stopped, BASE);
    assert_eq!(p.refusals[0].rule, "lifecycle");
    let p = refused(
        &st,
        &edit(
            BASE,
            "share: 40%, variants: {c: 1, t: 1}, state: running",
            "share: 40%, variants: {c: 1, t: 1}, state: draft",
        ),
    );
    assert_eq!(p.refusals[0].rule, "lifecycle");
    let without_a: String = BASE.lines().filter(|l| !l.trim_start().starts_with("a:")).collect::<Vec<_>>().join("\n");
    let p = refused(&st, &without_a);
    assert_eq!(p.refusals[0].rule, "running-removed");
}

const GROUPED: &str = r#"
units: {user: {attribute: user_id, buckets: 100000}}
surfaces: [home]
holdouts:
  h: {unit: user, share: 5%, applies_to: [all]}
groups:
  g: {unit: user, share: 60%, slots: [50%, 30%, 20%]}
  k: {unit: user, share: 50%, slots: [50%, 50%]}
experiments:
  x: {unit: user, group: g, slots: [1], variants: {c: 1, t: 1}, state: running}
  y: {unit: user, group: g, slots: [2, 3], share: 10%, variants: {c: 1, t: 1}, state: running}
"#;

#[test]
fn groups_slots_and_holdouts_compose() {
    let st = ok(&State::default(), GROUPED);
    let (c, _) = cfg(GROUPED);
    let au = audit(&st, &c);
    assert!(au.violations.is_empty(), "{:?}", au.violations);
    // x takes slot 1 whole (30,000 buckets); the holdout composes: reach ≈ 95% of it.
    assert_eq!(au.experiments["x"].buckets, 30_000);
    let reach = au.experiments["x"].reach_buckets as f64;
    assert!((reach - 28_500.0).abs() < 1_000.0, "{reach}");
    // y has an explicit share: exactly 10,000 buckets, inside slots 2-3, none in the holdout.
    assert_eq!(au.experiments["y"].buckets, 10_000);
    assert_eq!(au.experiments["y"].reach_buckets, 10_000);
    let slot1 = st.live(OwnerKind::Slot, "g#1").unwrap().current();
    assert_eq!(set(&st, "x"), slot1);
    assert_eq!(set(&st, "y").intersection_len(&slot1), 0);
    assert_eq!(au.groups["g"].slots.iter().map(|s| s.buckets).collect::<Vec<_>>(), vec![30_000, 18_000, 12_000]);
}

#[test]
fn group_rules_are_refused() {
    let st = ok(&State::default(), GROUPED);
    let p = refused(&st, &edit(GROUPED, "slots: [50%, 30%, 20%]", "slots: [40%, 40%, 20%]"));
    assert!(p.refusals.iter().any(|r| r.rule == "slots-fixed"));
    let p =
        refused(&st, &edit(GROUPED, "x: {unit: user, group: g, slots: [1]", "x: {unit: user, group: g, slots: [2]"));
    assert!(p.refusals.iter().any(|r| r.rule == "group-membership-fixed"));
    let p = refused(&st, &edit(GROUPED, "share: 5%, applies_to", "share: 6%, applies_to"));
    assert!(p.refusals.iter().any(|r| r.rule == "holdout-share-fixed"));
}

#[test]
fn two_groups_reach_the_intersection_with_a_warning() {
    let yaml = edit(GROUPED, "  y: {unit: user, group: g, slots: [2, 3], share: 10%", "  z: {unit: user, groups: {g: [2, 3], k: [1]}, variants: {c: 1}, state: running}\n  y: {unit: user, group: g, slots: [2, 3], share: 10%");
    let p = apply(&State::default(), &yaml).unwrap();
    assert!(p.warnings.iter().any(|w| w.contains("experiments.z") && w.contains("2 groups")), "{:?}", p.warnings);
    let st = p.state;
    let mut both = st.live(OwnerKind::Slot, "g#2").unwrap().current();
    both.union_with(&st.live(OwnerKind::Slot, "g#3").unwrap().current());
    both.intersect_with(&st.live(OwnerKind::Slot, "k#1").unwrap().current());
    let z = set(&st, "z");
    let mut outside = z.clone();
    outside.subtract(&both);
    assert!(outside.is_empty());
    let (c, _) = cfg(&yaml);
    let au = audit(&st, &c);
    assert!(au.warnings.iter().any(|w| w.contains("z is in 2 groups")));
    assert!(au.violations.is_empty(), "{:?}", au.violations);
}

const TARGETED: &str = r#"
units: {user: {attribute: user_id, buckets: 100000, stable: [country]}}
surfaces: [home]
experiments:
  us: {unit: user, surfaces: [home], share: 80%, variants: {c: 1}, targeting: {attribute: country, in: [US]}, state: running}
  se: {unit: user, surfaces: [home], share: 70%, variants: {c: 1}, targeting: {attribute: country, in: [SE]}, state: running}
"#;

#[test]
fn targeting_aware_space_lets_disjoint_experiments_share_buckets() {
    let st = ok(&State::default(), TARGETED);
    assert!(set(&st, "us").intersection_len(&set(&st, "se")) > 0);
    let (c, _) = cfg(TARGETED);
    let au = audit(&st, &c);
    assert!(au.violations.is_empty());
    assert!(au.overlaps[0].exclusive && au.overlaps[0].targeting_disjoint);
    // Overlapping targeting is not disjoint: then 80% + 70% cannot fit.
    let e = apply(&State::default(), &edit(TARGETED, "in: [SE]", "in: [SE, US]"));
    assert!(matches!(e, Err(ApplyError::Invalid(_))));
    // No unit is ever ASSIGNED by both.
    let snap = Snapshot::compile(&st).unwrap();
    let mut out = vec![];
    for i in 0..5000 {
        for country in ["US", "SE"] {
            snap.evaluate_all(&ctx(json!({"user_id": format!("u{i}"), "country": country})), &NoSticky, &mut out);
            assert!(out.iter().filter(|a| a.reason == Reason::Assigned).count() <= 1);
        }
    }
}

#[test]
fn widening_targeting_is_allowed_narrowing_is_refused() {
    let st = ok(&State::default(), edit(TARGETED, "share: 80%", "share: 20%").as_str());
    let wider = edit(&edit(TARGETED, "share: 80%", "share: 20%"), "in: [SE]}", "in: [SE, NO]}");
    let p = apply(&st, &wider);
    assert!(p.is_ok(), "{:?}", p.err().map(|e| e.to_string()));
    let p = refused(
        &st,
        &edit(
            &edit(TARGETED, "share: 80%", "share: 20%"),
            "targeting: {attribute: country, in: [SE]}",
            "targeting: {all: [{attribute: country, in: [SE]}, {attribute: age, gte: 18}]}",
        ),
    );
    assert!(p.refusals.iter().any(|r| r.path == "experiments.se.targeting"));
}

#[test]
fn evaluation_order_and_reasons() {
    let yaml = r#"
units: {user: {attribute: user_id, buckets: 1000}, device: {attribute: device_id, buckets: 1000}}
surfaces: [home]
holdouts:
  h: {unit: user, share: 10%, applies_to: [home]}
experiments:
  gate: {unit: user, share: 100%, variants: {off: 0, on: 1}, state: running}
  a:
    unit: user
    surfaces: [home]
    share: 50%
    variants: {c: 1, t: 1}
    targeting: {attribute: country, eq: SE}
    include: {vip: t}
    requires: [{experiment: gate, variants: [on]}]
    state: running
  d: {unit: device, share: 100%, variants: {c: 1}, state: running}
  off: {unit: user, share: 10%, variants: {c: 1}, state: draft}
"#;
    let st = ok(&State::default(), yaml);
    let snap = Snapshot::compile(&st).unwrap();
    let i = snap.index_of("a").unwrap();
    let mut seen = HashMap::new();
    for n in 0..3000 {
        for country in ["SE", "US"] {
            let c = ctx(json!({"user_id": format!("u{n}"), "country": country}));
            let r = snap.evaluate_one(i, &c, &NoSticky);
            *seen.entry(r.reason).or_insert(0) += 1;
            let mut all = vec![];
            snap.evaluate_all(&c, &NoSticky, &mut all);
            assert_eq!(all[i], r, "evaluate_one agrees with evaluate_all");
            assert_eq!(all[snap.index_of("d").unwrap()].reason, Reason::MissingUnit);
            assert_eq!(all[snap.index_of("off").unwrap()].reason, Reason::NotRunning);
        }
    }
    for r in [Reason::Assigned, Reason::Holdout, Reason::NotAllocated, Reason::TargetingMiss] {
        assert!(seen.contains_key(&r), "{r:?} never seen: {seen:?}");
    }
    let vip = snap.evaluate_one(i, &ctx(json!({"user_id": "vip", "country": "US"})), &NoSticky);
    assert_eq!((vip.reason, snap.variant_name(i, &vip)), (Reason::Included, Some("t")));
    assert_eq!(snap.evaluate_one(i, &ctx(json!({"country": "SE"})), &NoSticky).reason, Reason::MissingUnit);
    // Numeric ids are ids too.
    assert_ne!(snap.evaluate_one(i, &ctx(json!({"user_id": 42})), &NoSticky).reason, Reason::MissingUnit);
    // Prerequisite: make the gate give `off` to everyone.
    let st2 = forced(&st, &edit(yaml, "variants: {off: 0, on: 1}", "variants: {off: 1, on: 0}")).state;
    let snap2 = Snapshot::compile(&st2).unwrap();
    let mut reasons = HashMap::new();
    for n in 0..2000 {
        let r = snap2.evaluate_one(i, &ctx(json!({"user_id": format!("u{n}"), "country": "SE"})), &NoSticky);
        *reasons.entry(r.reason).or_insert(0) += 1;
    }
    assert!(
        reasons.contains_key(&Reason::PrerequisiteFailed) && !reasons.contains_key(&Reason::Assigned),
        "{reasons:?}"
    );
}

#[test]
fn sticky_assignments_survive_a_reweight() {
    let yaml = r#"
units: {user: {attribute: user_id, buckets: 1000}}
experiments:
  a: {unit: user, share: 100%, variants: {c: 1, t: 1}, sticky: true, state: running}
"#;
    let st = ok(&State::default(), yaml);
    let mut store: HashMap<(String, String, String), String> = HashMap::new();
    store.insert(("user".into(), "u1".into(), "a".into()), "t".into());
    let snap = Snapshot::compile(&st).unwrap();
    let r = snap.evaluate_one(0, &ctx(json!({"user_id": "u1"})), &store);
    assert_eq!((r.reason, snap.variant_name(0, &r)), (Reason::Sticky, Some("t")));
    let p = refused(&st, &edit(yaml, "{c: 1, t: 1}", "{c: 1, t: 0}"));
    assert!(p.impact["a"].sticky);
    let st2 = forced(&st, &edit(yaml, "{c: 1, t: 1}", "{c: 1, t: 0}")).state;
    let snap2 = Snapshot::compile(&st2).unwrap();
    let r = snap2.evaluate_one(0, &ctx(json!({"user_id": "u1"})), &store);
    assert_eq!(snap2.variant_name(0, &r), Some("t"), "the stored variant survives");
    let r = snap2.evaluate_one(0, &ctx(json!({"user_id": "u2"})), &store);
    assert_eq!(snap2.variant_name(0, &r), Some("c"));
}

/// A sticky store with nothing in it that could not read one unit's assignments (`Some`), or
/// any unit's (`None`).
pub(crate) struct Unreadable(pub(crate) Option<&'static str>);

impl allot_core::eval::StickyStore for Unreadable {
    fn get(&self, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
    fn knows(&self, _: &str, unit: &str) -> bool {
        self.0.is_some_and(|u| u != unit)
    }
}

#[test]
fn a_sticky_experiment_serves_nothing_when_its_store_cannot_be_read() {
    let yaml = r#"
units: {user: {attribute: user_id, buckets: 1000}}
surfaces: [s]
experiments:
  a: {unit: user, share: 100%, variants: {c: 1, t: 1}, sticky: true, state: running}
  b: {unit: user, share: 100%, variants: {c: 1, t: 1}, state: running}
  c: {unit: user, share: 100%, variants: {x: 1}, requires: [{experiment: a, variants: [c, t]}], state: running}
  d: {unit: user, surfaces: [s], share: 50%, variants: {c: 1}, sticky: true, state: running}
"#;
    let st = ok(&State::default(), yaml);
    let snap = Snapshot::compile(&st).unwrap();
    let store = Unreadable(Some("u1"));
    let mut out = vec![];
    snap.evaluate_all(&ctx(json!({"user_id": "u1"})), &store, &mut out);
    assert_eq!((out[0].variant, out[0].reason), (None, Reason::StickyUnavailable));
    assert_eq!(out[1].reason, Reason::Assigned, "a non-sticky experiment is not affected");
    assert_eq!(out[2].reason, Reason::PrerequisiteFailed, "a dependant sees no variant");
    // Units outside the allocation are told so, as always; the store is not needed for them.
    let outside = (0..200)
        .map(|i| format!("v{i}"))
        .find(|u| snap.evaluate_one(3, &ctx(json!({"user_id": u})), &NoSticky).reason == Reason::NotAllocated)
        .unwrap();
    let unreadable = Unreadable(None);
    assert_eq!(snap.evaluate_one(3, &ctx(json!({"user_id": outside})), &unreadable).reason, Reason::NotAllocated);
    // A unit the store knows is evaluated as usual.
    let r = snap.evaluate_one(0, &ctx(json!({"user_id": "u2"})), &store);
    assert_eq!(r.reason, Reason::Assigned);
}

#[test]
fn prerequisite_cycles_are_rejected() {
    let raw = config::parse_yaml(
        r#"
units: {user: {attribute: user_id}}
experiments:
  a: {unit: user, share: 1%, variants: {c: 1}, requires: {b: [c]}}
  b: {unit: user, share: 1%, variants: {c: 1}, requires: {a: [c]}}
"#,
    )
    .unwrap();
    let e = config::validate(&raw).unwrap_err();
    assert!(e.iter().any(|e| e.message.contains("cycle")), "{e:?}");
}

#[test]
fn the_allocator_prefers_least_recently_used_buckets() {
    let base = edit(BASE, "share: 60%", "share: 10%");
    let st = ok(&State::default(), &base);
    let a_old = set(&st, "a");
    let stopped_yaml = edit(
        &base,
        "share: 40%, variants: {c: 1, t: 1}, state: running",
        "share: 40%, variants: {c: 1, t: 1}, state: stopped",
    );
    let stopped = ok(&st, &stopped_yaml);
    // `a` really stopped: its buckets are free, so only the preference keeps `n` off them.
    assert!(stopped.live(OwnerKind::Experiment, "a").is_none());
    // A new home experiment of 30% fits in the 50% never used on home: it avoids a's old buckets.
    let yaml = format!(
        "{}\n  n: {{unit: user, surfaces: [home], share: 30%, variants: {{c: 1}}, state: running}}\n",
        stopped_yaml.trim_end()
    );
    let st3 = ok(&stopped, &yaml);
    assert_eq!(set(&st3, "n").intersection_len(&a_old), 0);
    // Without the preference (a draw from every free bucket) it could not avoid them: 30% of the
    // 90% free on home would take about a third of its buckets from a's 40%.
    let mut free = BucketBitmap::full(100_000);
    free.subtract(&set(&st3, "b"));
    let blind = draw(&free, 30_000, 7, None).unwrap();
    assert!(blind.intersection_len(&a_old) > 10_000, "{}", blind.intersection_len(&a_old));
}

#[test]
fn bucket_reuse_has_no_carry_over() {
    let base = edit(BASE, "share: 60%", "share: 10%");
    let st = ok(&State::default(), &base);
    let stopped_yaml = edit(
        &base,
        "share: 40%, variants: {c: 1, t: 1}, state: running",
        "share: 40%, variants: {c: 1, t: 1}, state: stopped",
    );
    let stopped = ok(&st, &stopped_yaml);
    let yaml = format!(
        "{}\n  n: {{unit: user, surfaces: [home], share: 90%, variants: {{c: 1, t: 1}}, state: running}}\n",
        stopped_yaml.trim_end()
    );
    let st3 = ok(&stopped, &yaml);
    let (old, new) = (Snapshot::compile(&st).unwrap(), Snapshot::compile(&st3).unwrap());
    let (ia, in_) = (old.index_of("a").unwrap(), new.index_of("n").unwrap());
    let mut table = [[0f64; 2]; 2];
    for u in 0..40_000 {
        let c = ctx(json!({"user_id": format!("u{u}")}));
        let (x, y) = (old.evaluate_one(ia, &c, &NoSticky), new.evaluate_one(in_, &c, &NoSticky));
        if let (Some(vx), Some(vy)) = (x.variant, y.variant) {
            table[vx as usize][vy as usize] += 1.0;
        }
    }
    let n: f64 = table.iter().flatten().sum();
    assert!(n > 10_000.0);
    let mut chi = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, o) in row.iter().enumerate() {
            let e = (table[i][0] + table[i][1]) * (table[0][j] + table[1][j]) / n;
            chi += (o - e).powi(2) / e;
        }
    }
    assert!(chi < 15.14, "old and new variants are dependent: chi² = {chi}");
}

#[test]
fn history_and_resalt() {
    let st = ok(&State::default(), BASE);
    let b = st.live(OwnerKind::Experiment, "a").unwrap().current().iter().next().unwrap();
    let h = bucket_history(&st, "user", b);
    assert!(h.iter().any(|s| s.owner == "a" && s.from_version == 1 && s.until_version.is_none()));
    let stopped = ok(
        &st,
        &edit(
            BASE,
            "share: 40%, variants: {c: 1, t: 1}, state: running",
            "share: 40%, variants: {c: 1, t: 1}, state: stopped",
        ),
    );
    let h = bucket_history(&stopped, "user", b);
    assert!(h.iter().any(|s| s.owner == "a" && s.until_version == Some(2)));

    let (st2, report) = resalt(&stopped, "user", "now", None, None).unwrap();
    let mut held = set(&stopped, "b");
    held.union_with(&set(&stopped, "s"));
    assert_eq!(report.frozen_buckets + report.resalted_buckets, 100_000);
    assert!(report.resalted_buckets > 99_000, "classes are large: {report:?}");
    let (before, after) = (Snapshot::compile(&stopped).unwrap(), Snapshot::compile(&st2).unwrap());
    let mut moved_free = 0;
    for u in 0..20_000 {
        let c = ctx(json!({"user_id": format!("u{u}")}));
        let (mut x, mut y) = (vec![], vec![]);
        before.evaluate_all(&c, &NoSticky, &mut x);
        after.evaluate_all(&c, &NoSticky, &mut y);
        for (k, (p, q)) in x.iter().zip(&y).enumerate() {
            if p.reason == Reason::Assigned {
                assert_eq!(p, q, "resalt moved a running unit of {}", before.experiments[k].id);
            }
        }
        let (sb, sa) = (before.spaces[0].bucket(&format!("u{u}")), after.spaces[0].bucket(&format!("u{u}")));
        assert_eq!(held.contains(sb), held.contains(sa), "u{u} moved into or out of running b or s");
        if sb != sa {
            moved_free += 1;
        }
    }
    assert!(moved_free > 1000, "{moved_free}");
}

#[test]
fn reordering_variants_moves_units_and_is_refused() {
    let st = ok(&State::default(), BASE);
    let p = refused(&st, &edit(BASE, "share: 40%, variants: {c: 1, t: 1}", "share: 40%, variants: {t: 1, c: 1}"));
    assert!((p.impact["a"].moved_by_split - 1.0).abs() < 1e-9, "{}", p.impact["a"].moved_by_split);
}

#[test]
fn inputs_found_by_review_are_errors_not_surprises() {
    let errs = |yaml: &str| config::load(yaml).unwrap_err();
    let e = errs("units: {user: {attribute: user_id}}\nexperiments:\n  e: {unit: user, share: 5%, variants: {}}\n");
    assert_eq!(e[0].path, "experiments.e.variants");
    for share in ["", "null", "~", ".inf", ".nan"] {
        let e = errs(&format!("units: {{user: {{attribute: user_id}}}}\nexperiments:\n  e: {{unit: user, share: {share}, variants: {{a: 1}}}}\n"));
        assert_eq!(e[0].path, "experiments.e.share", "share: {share}");
    }
    let e = errs("units: {user: {attribute: user_id}}\nexperiments:\n  e: {unit: user, share: 5%, variants: {a: 1}}\n  e: {unit: user, share: 6%, variants: {a: 1}}\n");
    assert!(e[0].message.contains("duplicate entry"), "{}", e[0].message);
    // A state whose recorded version cannot grow is an error, not an overflow.
    let mut st = ok(&State::default(), BASE);
    st.version = u64::MAX;
    assert!(matches!(apply(&st, &edit(BASE, "40%", "41%")), Err(ApplyError::Invalid(_))));
    // A state that lost the allocations its configuration says are live is rejected.
    let mut broken = ok(&State::default(), BASE);
    broken.allocations.clear();
    assert!(Snapshot::compile(&broken).is_err());
}
