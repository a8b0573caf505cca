//! Coordination that experimenters can trust (issue 10): groups reserve their slots, short
//! reach is refused, ids are never silently reused, salts never collide. Each test is the case
//! that found the defect.

use allot_core::audit::audit;
use allot_core::config;
use allot_core::plan::{self, ApplyError, Options, Plan};
use allot_core::state::State;
use allot_core::testing::edit;

fn opts() -> Options {
    Options { time: "2026-01-01T00:00:00Z".into(), ..Options::default() }
}

fn apply(st: &State, yaml: &str) -> Result<Plan, ApplyError> {
    let raw = config::parse_yaml(yaml).unwrap();
    let c = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    plan::apply(st, &c, &raw, &opts())
}

fn ok(st: &State, yaml: &str) -> State {
    match apply(st, yaml) {
        Ok(p) => p.state,
        Err(ApplyError::Refused(p)) => panic!("refused: {:?}", p.refusals),
        Err(ApplyError::Invalid(e)) => panic!("invalid: {}", allot_core::Errors(e)),
    }
}

fn invalid(st: &State, yaml: &str) -> Vec<allot_core::FieldError> {
    match apply(st, yaml) {
        Err(ApplyError::Invalid(e)) => e,
        Ok(p) => panic!("expected an error, got changes {:?}", p.changes),
        Err(ApplyError::Refused(p)) => panic!("expected an error, got refusals {:?}", p.refusals),
    }
}

fn refused(st: &State, yaml: &str) -> Plan {
    match apply(st, yaml) {
        Err(ApplyError::Refused(p)) => *p,
        Ok(p) => panic!("expected a refusal, got changes {:?}", p.changes),
        Err(ApplyError::Invalid(e)) => panic!("invalid: {}", allot_core::Errors(e)),
    }
}

fn share(st: &State, yaml: &str, id: &str) -> f64 {
    let cfg = config::load(yaml).unwrap();
    audit(st, &cfg).experiments[id].share
}

const GROUP: &str = r#"
units: {user: {attribute: user_id}}
surfaces: [checkout]
groups: {g: {unit: user, share: 60%, slots: [50%, 50%], surfaces: [checkout]}}
experiments:
  one: {unit: user, group: g, slots: [1], variants: {c: 1, t: 1}, state: running}
"#;

#[test]
fn a_group_reserves_its_empty_slots_from_experiments_on_its_surfaces() {
    let st = ok(&State::default(), GROUP);
    // A checkout experiment outside the group can only use the 40% outside it.
    let outside = format!(
        "{GROUP}  other: {{unit: user, surfaces: [checkout], share: 40%, variants: {{c: 1, t: 1}}, state: running}}\n"
    );
    let st = ok(&st, &outside);
    // The later slot-2 member reaches exactly its slot: 30%.
    let two =
        format!("{outside}  two: {{unit: user, group: g, slots: [2], variants: {{c: 1, t: 1}}, state: running}}\n");
    let st = ok(&st, &two);
    assert_eq!(share(&st, &two, "two"), 0.3);
    assert_eq!(share(&st, &two, "one"), 0.3);
    // And nothing on checkout can take more than the 40% outside the group.
    let greedy = GROUP.to_string()
        + "  other: {unit: user, surfaces: [checkout], share: 41%, variants: {c: 1, t: 1}, state: running}\n";
    let errs = invalid(&ok(&State::default(), GROUP), &greedy);
    assert_eq!(errs[0].path, "experiments.other.share", "{errs:?}");
    assert!(errs[0].message.contains("400000 free") && errs[0].message.contains("group g"), "{}", errs[0].message);
}

#[test]
fn a_group_whose_share_is_not_free_is_refused_naming_the_holders() {
    let base = r#"
units: {user: {attribute: user_id}}
surfaces: [checkout]
experiments:
  big: {unit: user, surfaces: [checkout], share: 70%, variants: {c: 1, t: 1}, state: running}
"#;
    let st = ok(&State::default(), base);
    let with_group = edit(
        base,
        "experiments:",
        "groups: {g: {unit: user, share: 60%, slots: [50%, 50%], surfaces: [checkout]}}\nexperiments:",
    );
    let errs = invalid(&st, &with_group);
    assert_eq!(errs[0].path, "groups.g.share");
    assert!(errs[0].message.contains("experiment big 700000 (70%)"), "{}", errs[0].message);
    // Two groups on one surface do not overlap either.
    let two = r#"
units: {user: {attribute: user_id}}
surfaces: [checkout]
groups:
  g: {unit: user, share: 60%, slots: [100%], surfaces: [checkout]}
  h: {unit: user, share: 50%, slots: [100%], surfaces: [checkout]}
"#;
    let errs = invalid(&State::default(), two);
    assert_eq!(errs[0].path, "groups.h.share");
    assert!(errs[0].message.contains("group g"), "{}", errs[0].message);
}

#[test]
fn short_or_zero_reach_is_refused_not_warned() {
    let st = ok(&State::default(), GROUP);
    // A second member taking all of slot 1 would reach nothing.
    let second =
        format!("{GROUP}  again: {{unit: user, group: g, slots: [1], variants: {{c: 1, t: 1}}, state: running}}\n");
    let errs = invalid(&st, &second);
    assert_eq!(errs[0].path, "experiments.again.share", "{errs:?}");
    assert!(errs[0].message.contains("experiment one 300000"), "{}", errs[0].message);
    assert!(errs[0].message.contains("give it a share"), "{}", errs[0].message);
    // With a share that fits beside a member with a share, both run.
    let halves = edit(GROUP, "slots: [1], variants", "slots: [1], share: 15%, variants")
        + "  again: {unit: user, group: g, slots: [1], share: 15%, variants: {c: 1, t: 1}, state: running}\n";
    let st = ok(&State::default(), &halves);
    assert_eq!(share(&st, &halves, "again"), 0.15);
}

#[test]
fn check_warns_about_a_draft_that_can_never_fit() {
    let yaml = r#"
units: {user: {attribute: user_id}}
surfaces: [home]
holdouts: {h: {unit: user, share: 5%, applies_to: [home]}}
experiments:
  huge: {unit: user, surfaces: [home], share: 96%, variants: {c: 1, t: 1}}
"#;
    let raw = config::parse_yaml(yaml).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let p = plan::plan(&State::default(), &cfg, &raw, &opts()).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("experiments.huge") && w.contains("can never fit") && w.contains("holdout h")),
        "{:?}",
        p.warnings
    );
}

const PROMO: &str = r#"
units: {user: {attribute: user_id, buckets: 10000}}
experiments:
  promo: {unit: user, share: 50%, variants: {c: 1, t: 1}, state: running}
"#;

#[test]
fn a_deleted_id_is_never_silently_reused() {
    let st = ok(&State::default(), PROMO);
    let st = ok(&st, &edit(PROMO, "running", "stopped"));
    let st = ok(&st, &edit(PROMO, "running", "archived"));
    let st = ok(&st, "units: {user: {attribute: user_id, buckets: 10000}}\n");
    let p = refused(&st, PROMO);
    let r = &p.refusals[0];
    assert_eq!((r.path.as_str(), r.rule.as_str()), ("experiments.promo", "id-reused"));
    assert!(r.message.contains("from version 1 to version 2") && r.message.contains("`promo-2`"), "{}", r.message);
    // Under a new id it starts, independently of the old one.
    ok(&st, &edit(PROMO, "promo:", "promo-2:"));
    // Holdouts and groups too.
    let h = "units: {user: {attribute: user_id, buckets: 10000}}\nholdouts: {h: {unit: user, share: 5%, applies_to: [all]}}\n";
    let st = ok(&ok(&State::default(), h), "units: {user: {attribute: user_id, buckets: 10000}}\n");
    assert_eq!(refused(&st, h).refusals[0].rule, "id-reused");
}

#[test]
fn salts_of_experiments_that_can_share_units_cannot_collide() {
    let yaml = r#"
units: {user: {attribute: user_id}}
surfaces: [home, search]
experiments:
  a: {unit: user, surfaces: [home], share: 50%, salt: shared, variants: {c: 1, t: 1}, state: running}
  b: {unit: user, surfaces: [search], share: 50%, salt: shared, variants: {c: 1, t: 1}, state: running}
  c: {unit: user, surfaces: [home], share: 50%, salt: shared, variants: {c: 1, t: 1}}
  x: {unit: user, surfaces: [home], share: 10%, variants: {c: 1, t: 1}}
  d: {unit: user, surfaces: [search], share: 10%, salt: x, variants: {c: 1, t: 1}}
"#;
    let errs = config::load(yaml).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    // b overlaps a (other surface); c is exclusive to a (home) but overlaps b; d's salt is x's
    // default salt (its id).
    assert_eq!(paths, ["experiments.b.salt", "experiments.c.salt", "experiments.d.salt"], "{errs:?}");
    assert!(errs[0].message.contains("`a`") && errs[0].message.contains("`b`"), "{}", errs[0].message);
    // Exclusive experiments, or an ended one, may keep a salt.
    let fine = edit(
        &edit(yaml, "surfaces: [search], share: 50%", "surfaces: [home], share: 40%"),
        "  d: {unit: user, surfaces: [search], share: 10%, salt: x, variants: {c: 1, t: 1}}\n",
        "  d: {unit: user, surfaces: [search], share: 10%, salt: x, variants: {c: 1, t: 1}, state: stopped}\n",
    );
    let fine =
        edit(&fine, "  c: {unit: user, surfaces: [home], share: 50%, salt: shared, variants: {c: 1, t: 1}}\n", "");
    config::load(&fine).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
}

const PLANS: &str = r#"
units: {user: {attribute: user_id, buckets: 100000}}
surfaces: [pricing]
experiments:
  free: {unit: user, surfaces: [pricing], share: 60%, variants: {c: 1, t: 1}, targeting: {attribute: plan, eq: free}, state: running}
  paid: {unit: user, surfaces: [pricing], share: 60%, variants: {c: 1, t: 1}, targeting: {attribute: plan, eq: paid}, state: running}
"#;

#[test]
fn sharing_buckets_on_disjoint_targeting_needs_a_stable_attribute() {
    // `plan` changes when a user upgrades: no sharing, so 60% + 60% cannot both run.
    let errs = invalid(&State::default(), PLANS);
    assert_eq!(errs[0].path, "experiments.paid.share", "{errs:?}");
    assert!(errs[0].message.contains("experiment free"), "{}", errs[0].message);
    // Declared stable (an attribute a unit never changes), they share, and the audit says on what.
    let stable = edit(PLANS, "buckets: 100000}", "buckets: 100000, stable: [plan]}");
    let st = ok(&State::default(), &stable);
    let cfg = config::load(&stable).unwrap();
    let au = audit(&st, &cfg);
    assert!(au.violations.is_empty(), "{:?}", au.violations);
    let o = &au.overlaps[0];
    assert!(o.exclusive && o.targeting_disjoint && o.shared_buckets > 0);
    assert_eq!(o.disjoint_on, ["plan"]);
    // Taking `plan` out of `stable` while they share: 60% + 60% cannot be separated, and the
    // error says why they must be.
    let errs = invalid(&st, PLANS);
    assert!(errs.iter().any(|e| e.message.contains("`free` and `paid`") && e.message.contains("`plan`")), "{errs:?}");
    let au = audit(&st, &config::load(PLANS).unwrap());
    assert_eq!(au.violations.len(), 1, "{:?}", au.violations);
    assert!(au.violations[0].contains("not declared `stable`"), "{}", au.violations[0]);
    // At 40% + 40% they can be separated: refused by name (never redrawn silently), with the
    // units that separating them would move.
    let small = |y: &str| edit(y, "share: 60%", "share: 40%");
    let st40 = ok(&State::default(), &small(&stable));
    let p = refused(&st40, &small(PLANS));
    let r = p.refusals.iter().find(|r| r.rule == "shares-on-mutable-attribute").expect("named refusal");
    assert_eq!(r.path, "experiments.paid.targeting");
    assert!(r.message.contains("`free` and `paid`") && r.message.contains("`plan`"), "{}", r.message);
    assert!(p.impact["paid"].moved_share > 0.0, "{:?}", p.impact);
    // Stopping one of them resolves it.
    ok(&st, &edit(PLANS, "eq: paid}, state: running", "eq: paid}, state: stopped"));
}

#[test]
fn unit_history_follows_the_unit_across_resalts() {
    use allot_core::eval::Snapshot;
    use allot_core::history::unit_history;
    use allot_core::salt::resalt;
    let exp = |id: &str, share: &str, state: &str| {
        format!("  {id}: {{unit: user, surfaces: [home], share: {share}, variants: {{c: 1, t: 1}}, state: {state}}}\n")
    };
    let head = "units: {user: {attribute: user_id, buckets: 10000}}\nsurfaces: [home]\nexperiments:\n";
    let mut states = vec![State::default()];
    let mut push = |st: State| states.push(st);
    let s1 = ok(&State::default(), &format!("{head}{}", exp("a", "50%", "running")));
    push(s1.clone());
    let s2 = ok(&s1, &format!("{head}{}", exp("a", "50%", "stopped")));
    push(s2.clone());
    let (s3, _) = resalt(&s2, "user", "2026-01-02T00:00:00Z", None, None).unwrap();
    push(s3.clone());
    let s4 = ok(&s3, &format!("{head}{}{}", exp("a", "50%", "stopped"), exp("b", "50%", "running")));
    push(s4.clone());
    let (s5, _) = resalt(&s4, "user", "2026-01-03T00:00:00Z", None, None).unwrap();
    push(s5.clone());
    let s6 = ok(
        &s5,
        &format!("{head}{}{}{}", exp("a", "50%", "stopped"), exp("b", "50%", "stopped"), exp("c", "30%", "running")),
    );
    push(s6.clone());
    for (v, st) in states.iter().enumerate() {
        assert_eq!(st.version, v as u64);
    }
    let last = states.last().unwrap();
    let mut moved = 0;
    for u in 0..300 {
        let unit = format!("u{u}");
        let spans = unit_history(last, "user", &unit).unwrap();
        let mut buckets = std::collections::BTreeSet::new();
        for st in &states[1..] {
            let snap = Snapshot::compile(st).unwrap();
            let b = snap.spaces[0].bucket(&unit);
            buckets.insert(b);
            // What the saved state of this version says held the unit's bucket.
            let mut want: Vec<String> = st
                .allocations
                .iter()
                .filter(|a| a.is_live() && a.current().contains(b))
                .map(|a| a.owner.clone())
                .collect();
            want.sort();
            let mut got: Vec<String> = spans
                .iter()
                .filter(|s| s.span.from_version <= st.version && s.span.until_version.is_none_or(|e| st.version < e))
                .inspect(|s| assert_eq!(s.bucket, b, "{unit} at v{}: history bucket", st.version))
                .map(|s| s.span.owner.clone())
                .collect();
            got.sort();
            assert_eq!(got, want, "{unit} at version {}: {spans:?}", st.version);
        }
        if buckets.len() > 1 {
            moved += 1;
        }
    }
    assert!(moved > 100, "re-salts moved only {moved} of 300 units");
}

#[test]
fn messages_name_the_cause() {
    // A negative slot keeps the `%` it was written with.
    let errs =
        config::load("units: {user: {attribute: user_id}}\ngroups: {g: {unit: user, share: 10%, slots: [-5%]}}\n")
            .unwrap_err();
    assert_eq!(errs[0].path, "groups.g.slots[0]");
    assert!(errs[0].message.contains("`-5%`"), "{}", errs[0].message);
    // A changed group is an update with before → after, not a creation.
    let st = ok(&State::default(), GROUP);
    let raw = config::parse_yaml(&edit(GROUP, "slots: [50%, 50%]", "slots: [40%, 60%]")).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let p = plan::plan(&st, &cfg, &raw, &opts()).unwrap();
    let c = p.changes.iter().find(|c| c.entity == "group").unwrap();
    assert_eq!(c.action, "update", "{c:?}");
    assert!(c.detail.contains("60% [50%, 50%] → 60%") && c.detail.contains("[40%, 60%]"), "{}", c.detail);
    assert!(p.refusals.iter().any(|r| r.rule == "slots-fixed"));
}

/// Every change-control rule has a change that makes it fire (and `Rule::ALL` is the list).
#[test]
fn every_rule_fires() {
    use allot_core::rules::Rule;
    use std::collections::BTreeSet;
    let base = r#"
units: {user: {attribute: user_id, buckets: 10000}}
surfaces: [home, search]
holdouts: {h: {unit: user, share: 5%, applies_to: [home]}}
groups: {g: {unit: user, share: 20%, slots: [50%, 50%]}}
experiments:
  a: {unit: user, surfaces: [home], share: 10%, variants: {c: 1, t: 1}, state: running}
  m: {unit: user, group: g, slots: [1], variants: {c: 1, t: 1}, state: running}
"#;
    let st = ok(&State::default(), base);
    let mut fired: BTreeSet<String> = BTreeSet::new();
    let mut fire = |st: &State, yaml: String, want: Rule| {
        assert_ne!(yaml, base, "{want}: the edit must change the file");
        let p = refused(st, &yaml);
        assert!(p.refusals.iter().any(|r| r.rule == want.as_str()), "{want}: {:?}", p.refusals);
        fired.extend(p.refusals.iter().map(|r| r.rule.clone()));
    };
    fire(&st, edit(base, "share: 10%, variants: {c: 1, t: 1}", "share: 10%, variants: {c: 1, t: 3}"), Rule::MovesUnits);
    fire(&st, edit(base, "share: 10%", "share: 5%"), Rule::NoShrink);
    fire(&st, edit(base, "slots: [1]", "slots: [2]"), Rule::GroupMembershipFixed);
    fire(&st, edit(base, "slots: [50%, 50%]", "slots: [40%, 60%]"), Rule::SlotsFixed);
    fire(
        &st,
        edit(
            &edit(base, "groups: {g: {unit: user, share: 20%, slots: [50%, 50%]}}\n", ""),
            "group: g, slots: [1],",
            "share: 10%,",
        ),
        Rule::GroupInUse,
    );
    fire(&st, edit(base, "share: 5%", "share: 6%"), Rule::HoldoutShareFixed);
    fire(&st, edit(base, "applies_to: [home]", "applies_to: [search]"), Rule::HoldoutInUse);
    fire(
        &st,
        edit(base, "  a: {unit: user, surfaces: [home], share: 10%, variants: {c: 1, t: 1}, state: running}\n", ""),
        Rule::RunningRemoved,
    );
    fire(&st, edit(base, "t: 1}, state: running}\n  m:", "t: 1}, state: draft}\n  m:"), Rule::Lifecycle);
    fire(&st, edit(base, "attribute: user_id", "attribute: account_id"), Rule::UnitTypeFixed);
    // An id that held buckets, re-created.
    let gone = edit(base, "t: 1}, state: running}\n  m:", "t: 1}, state: stopped}\n  m:");
    let st2 = ok(&st, &gone);
    let st2 = ok(
        &st2,
        &edit(&gone, "  a: {unit: user, surfaces: [home], share: 10%, variants: {c: 1, t: 1}, state: stopped}\n", ""),
    );
    let p = refused(&st2, base);
    assert!(p.refusals.iter().any(|r| r.rule == Rule::IdReused.as_str()), "{:?}", p.refusals);
    fired.extend(p.refusals.iter().map(|r| r.rule.clone()));
    // Two exclusive experiments sharing on an attribute that is no longer stable.
    let plans = edit(PLANS, "share: 60%", "share: 40%");
    let st3 = ok(&State::default(), &edit(&plans, "buckets: 100000}", "buckets: 100000, stable: [plan]}"));
    let p = refused(&st3, &plans);
    fired.extend(p.refusals.iter().map(|r| r.rule.clone()));
    let all: BTreeSet<String> = Rule::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(fired, all, "rules that fired vs Rule::ALL");
}

/// The quarter of issue 10: 30 experiments on 4 surfaces, a mutual exclusion group and a
/// holdout, over 13 versions. Returns the configuration text at each version.
fn quarter() -> Vec<String> {
    let head = "units: {user: {attribute: user_id}}\nsurfaces: [home, search, feed, checkout]\n\
                holdouts: {hold: {unit: user, share: 5%, applies_to: [all]}}\n\
                groups: {pay: {unit: user, share: 40%, slots: [50%, 50%], surfaces: [checkout]}}\n\
                experiments:\n";
    // (id, placement, start version, stop version): three at a time per surface, a new one
    // every few versions as another stops; checkout's run in the group's slots.
    let mut exps: Vec<(String, String, u64, u64)> = vec![];
    for (s, surface) in ["home", "search", "feed"].iter().enumerate() {
        for k in 0..8u64 {
            let start = 1 + k * 3 / 2 + s as u64 % 2;
            let share = ["20%", "25%", "30%"][(k as usize + s) % 3];
            exps.push((format!("{surface}-{k}"), format!("surfaces: [{surface}], share: {share}"), start, start + 4));
        }
    }
    for k in 0..6u64 {
        let start = 1 + 2 * k;
        exps.push((format!("pay-{k}"), format!("group: pay, slots: [{}]", 1 + k % 2), start, start + 2));
    }
    (1..=13)
        .map(|v| {
            let mut y = head.to_string();
            for (id, place, start, stop) in &exps {
                let state = match v {
                    v if v < *start => continue,
                    v if v < *stop => "running",
                    _ => "stopped",
                };
                y.push_str(&format!("  {id}: {{unit: user, {place}, variants: {{c: 1, t: 1}}, state: {state}}}\n"));
            }
            y
        })
        .collect()
}

/// Issue 10 req 6: in the quarter, nearly every bucket is held by some running experiment of
/// some surface, so freezing held buckets re-randomised 384 of 1,000,000 buckets and none of a
/// stopped experiment's former units. With classes, every running experiment, holdout and group
/// keeps exactly its units and the stopped experiment's former units are spread afresh.
#[test]
fn the_salt_machine_works_in_a_real_program() {
    use allot_core::eval::Snapshot;
    use allot_core::salt::resalt;
    let mut st = State::default();
    for y in quarter() {
        st = ok(&st, &y);
    }
    assert_eq!(st.version, 13);
    // The experiment that stopped last on home, and what it held.
    let gone = st
        .allocations
        .iter()
        .filter(|a| a.owner.starts_with("home-") && a.released.is_some())
        .max_by_key(|a| (a.released, a.id))
        .expect("an experiment on home stopped");
    let former = gone.current();
    let (after, report) = resalt(&st, "user", "2026-04-01T00:00:00Z", Some("quarterly".into()), None).unwrap();
    let (before_s, after_s) = (Snapshot::compile(&st).unwrap(), Snapshot::compile(&after).unwrap());
    let live: Vec<_> = st.allocations.iter().filter(|a| a.is_live()).map(|a| (a.owner.clone(), a.current())).collect();
    assert!(live.len() >= 10, "{} live allocations", live.len());
    let (mut formers, mut changed, mut stayed_in_former) = (0u64, 0u64, 0u64);
    for u in 0..200_000 {
        let unit = format!("u{u}");
        let (x, y) = (before_s.spaces[0].bucket(&unit), after_s.spaces[0].bucket(&unit));
        for (who, set) in &live {
            assert_eq!(set.contains(x), set.contains(y), "{unit} moved into or out of {who}");
        }
        if former.contains(x) {
            formers += 1;
            changed += u64::from(x != y);
            stayed_in_former += u64::from(former.contains(y));
        }
    }
    let pct = |a: u64, b: u64| 100.0 * a as f64 / b as f64;
    println!(
        "quarter: {} live allocations; re-salt: {} of {} buckets re-randomised ({:.2}%) in {} classes; \
         {} of {formers} former units of {} changed bucket ({:.2}%), {:.2}% still in its former buckets (it held {:.2}% of the space)",
        live.len(),
        report.resalted_buckets,
        report.resalted_buckets + report.frozen_buckets,
        pct(report.resalted_buckets, 1_000_000),
        report.classes,
        changed,
        gone.owner,
        pct(changed, formers),
        pct(stayed_in_former, formers),
        pct(former.len(), 1_000_000),
    );
    for s in &report.scopes {
        println!("  {}: {} free, {} re-randomised", s.scope, s.free_buckets, s.resalted_buckets);
        assert_eq!(s.resalted_buckets, s.free_buckets, "{}: every free bucket is re-randomised", s.scope);
    }
    assert!(formers > 10_000, "{formers}");
    assert!(2 * changed >= formers, "only {changed} of {formers} former units changed bucket");
    // Spread uniformly over the buckets free on home, not kept together: the share still in its
    // former buckets is the share those are of home's free buckets (with no re-salt: 100%).
    let home = report.scopes.iter().find(|s| s.scope == "surface home").unwrap();
    let expected = pct(former.len(), home.free_buckets);
    assert!(
        (pct(stayed_in_former, formers) - expected).abs() < 1.5,
        "{} vs {expected}",
        pct(stayed_in_former, formers)
    );
    // Every running experiment answers exactly as before.
    let ctxs: Vec<_> = (0..20_000).map(|u| serde_json::json!({"user_id": format!("u{u}")})).collect();
    let (mut x, mut y) = (vec![], vec![]);
    for c in &ctxs {
        let c = c.as_object().unwrap();
        before_s.evaluate_all(c, &allot_core::eval::NoSticky, &mut x);
        after_s.evaluate_all(c, &allot_core::eval::NoSticky, &mut y);
        for (k, e) in before_s.experiments.iter().enumerate() {
            if e.running {
                assert_eq!(x[k], y[k], "{} changed for {c:?}", e.id);
            }
        }
    }
    // A second re-salt composes: still nothing running moves.
    let (again, _) = resalt(&after, "user", "2026-07-01T00:00:00Z", None, None).unwrap();
    let again_s = Snapshot::compile(&again).unwrap();
    for u in 0..20_000 {
        let unit = format!("u{u}");
        let (x, y) = (after_s.spaces[0].bucket(&unit), again_s.spaces[0].bucket(&unit));
        for (who, set) in &live {
            assert_eq!(set.contains(x), set.contains(y), "{unit} moved into or out of {who} at the second re-salt");
        }
    }
}

/// Issue 10 req 12: a narrowing targeting change shows its real impact, measured on a sample of
/// units, not 0%.
#[test]
fn a_narrowed_targeting_shows_its_real_impact_on_a_sample() {
    let yaml = |countries: &str| {
        format!(
            "units: {{user: {{attribute: user_id}}}}\nsurfaces: [home]\nexperiments:\n  a: {{unit: user, surfaces: [home], share: 50%, variants: {{c: 1, t: 1}}, targeting: {{attribute: country, in: [{countries}]}}, state: running}}\n"
        )
    };
    let st = ok(&State::default(), &yaml("SE, NO"));
    let mut p = refused(&st, &yaml("NO"));
    assert_eq!(p.impact["a"].moved_share, 0.0, "the exact figures cannot see targeting");
    assert!(p.impact["a"].targeting_changed);
    let contexts: Vec<allot_core::Context> = (0..4000)
        .map(|i| {
            let c = serde_json::json!({"user_id": format!("u{i}"), "country": if i % 2 == 0 { "SE" } else { "NO" }});
            c.as_object().unwrap().clone()
        })
        .collect();
    p.measure(&st, &contexts).unwrap();
    let m = p.impact["a"].measured.unwrap();
    // Half the sample is allocated (50%), and of those the SE half loses its variant.
    assert!((m.assigned as f64 - 2000.0).abs() < 200.0, "{m:?}");
    assert!((m.moved_share - 0.5).abs() < 0.05, "{m:?}");
    // Every SE unit assigned before moves, no NO unit does.
    let se_assigned = contexts.iter().step_by(2).count();
    assert!(m.moved as usize <= se_assigned);
}

/// Issue 10 req 15: evaluation, the audit, history and the salt machine do not depend on change
/// control; they read what they need from `state`.
#[test]
fn eval_audit_history_and_salt_do_not_depend_on_plan() {
    for file in ["eval.rs", "audit.rs", "history.rs", "salt.rs", "state.rs", "scope.rs"] {
        let path = format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("crate::plan") && !text.contains("plan::"), "{path} depends on plan");
    }
}

/// Compiled re-salts are linked (each knows the next one's class of its whole shards): the linked
/// evaluation gives exactly the buckets of the re-salts applied one by one, unlinked.
#[test]
fn linked_resalts_give_the_buckets_of_each_resalt_in_turn() {
    use allot_core::eval::Snapshot;
    use allot_core::salt::{classes_of, resalt, Layer};
    let yamls = quarter();
    let mut st = State::default();
    for (k, y) in yamls.iter().enumerate() {
        st = ok(&st, y);
        if k % 3 == 2 {
            st = resalt(&st, "user", "2026-01-01T00:00:00Z", None, None).unwrap().0;
        }
    }
    let space = &st.spaces["user"];
    assert!(space.resalts.len() >= 4);
    let layers: Vec<Layer> =
        space.resalts.iter().map(|r| Layer::new(&r.salt, &classes_of(&st, r, space.buckets).unwrap())).collect();
    let snap = Snapshot::compile(&st).unwrap();
    for u in 0..20_000 {
        let unit = format!("u{u}");
        let (h1, h2) = allot_core::hash::unit_hash(&space.salt, &unit);
        let mut b = allot_core::hash::bucket_of_hash(h1, space.buckets);
        for l in &layers {
            b = l.step(b, h2);
        }
        assert_eq!(snap.spaces[0].bucket(&unit), b, "{unit}");
    }
}

/// A chain of linked layers lands every unit where the layers applied one by one put it, for
/// any classes: more than the 255 a one-byte hint names (the rest are looked up), classes split
/// inside shards, and spaces whose tables need 32 bits (32,768 classes or more).
mod linked_layers {
    use allot_core::salt::{Layer, NO_HINT};
    use proptest::prelude::*;

    /// Classes over `shards` shards of 128 buckets: `whole` distinct whole-shard classes dealt
    /// over the shards, and `split` shards cut into `pieces` runs of their own classes.
    fn classes(shards: u32, whole: u32, split: u32, pieces: u32, seed: u64) -> Vec<u32> {
        let mut g = seed;
        let mut next = || {
            g = g.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = g;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut class = Vec::with_capacity((shards * 128) as usize);
        let mut fresh = whole;
        for s in 0..shards {
            if s < split {
                for b in 0..128 {
                    class.push(fresh + b * pieces / 128);
                }
                fresh += pieces;
            } else {
                let c = (next() % u64::from(whole)) as u32;
                class.extend(std::iter::repeat_n(c, 128));
            }
        }
        // Dense ids in order of first bucket, as `salt::classes` gives them.
        let mut ids = std::collections::HashMap::new();
        class
            .iter()
            .map(|c| {
                let n = ids.len() as u32;
                *ids.entry(*c).or_insert(n)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn they_land_where_the_layers_one_by_one_do(
            shards in 2u32..400,
            whole in 1u32..400,
            split in 0u32..300,
            pieces in prop_oneof![Just(1u32), 2u32..8, Just(128u32)],
            layers in 2usize..5,
            seed in any::<u64>(),
        ) {
            let split = split.min(shards);
            let built: Vec<Vec<u32>> =
                (0..layers).map(|k| classes(shards, whole, split, pieces, seed ^ k as u64)).collect();
            let plain: Vec<Layer> =
                built.iter().enumerate().map(|(k, c)| Layer::new(&format!("s{k}"), c)).collect();
            let mut linked = plain.clone();
            for k in 1..layers {
                let (a, b) = linked.split_at_mut(k);
                a[k - 1].link(&b[0]);
            }
            let buckets = shards * 128;
            for u in 0..2_000u64 {
                let h2 = u.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ seed;
                let b0 = ((u * 7919) % u64::from(buckets)) as u32;
                let mut want = b0;
                for l in &plain {
                    want = l.step(want, h2);
                }
                let (mut b, mut hint, mut landed) = (b0, NO_HINT, None);
                for l in &linked {
                    let c = if hint != NO_HINT {
                        prop_assert_eq!(hint, l.class_of(landed.map_or(b, |(p, at): (&Layer, _)| p.bucket_of(at))));
                        hint
                    } else {
                        if let Some((p, at)) = landed.take() { b = p.bucket_of(at); }
                        l.class_of(b)
                    };
                    let (at, h) = l.land(c, h2);
                    landed = Some((l, at));
                    hint = h;
                }
                let got = landed.map_or(b, |(p, at)| p.bucket_of(at));
                prop_assert_eq!(got, want);
            }
        }
    }

    /// 40,000 classes: 32-bit tables, linked.
    #[test]
    fn wide_tables_link_too() {
        let class: Vec<u32> = (0..40_960u32).map(|b| if b < 5_120 { b / 128 } else { b }).collect();
        let mut a = Layer::new("a", &class);
        let b = Layer::new("b", &class);
        a.link(&b);
        for u in 0..5_000u64 {
            let h2 = u.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let start = (u * 31 % 40_960) as u32;
            let (at, hint) = a.land(a.class_of(start), h2);
            let mid = a.bucket_of(at);
            assert_eq!(mid, a.step(start, h2));
            if hint != NO_HINT {
                assert_eq!(hint, b.class_of(mid));
            }
        }
    }
}
