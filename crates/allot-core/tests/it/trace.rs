//! The evaluation trace on a hand-made case: every kind of step says what it saw.

use allot_core::config;
use allot_core::eval::{NoSticky, Reason, Snapshot};
use allot_core::plan::{self, Options};
use allot_core::state::State;
use allot_core::trace::{trace, Step};
use serde_json::json;

const CONFIG: &str = r#"
units: {user: {attribute: user_id}}
surfaces: [home]
segments:
  nordic: {attribute: country, in: [SE, NO]}
groups:
  g: {unit: user, share: 100%, slots: [50%, 50%]}
experiments:
  gate: {unit: user, share: 100%, variants: {on: 1}, state: running}
  member:
    unit: user
    group: g
    slots: [1]
    variants: {a: 1, b: 1}
    requires: [{experiment: gate, variants: [on]}]
    targeting: {all: [{segment: nordic}, {attribute: age, gte: 18}]}
    include: {vip: b}
    state: running
"#;

#[test]
fn each_step_says_what_it_saw() {
    let raw = config::parse_yaml(CONFIG).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let state = plan::apply(&State::default(), &cfg, &raw, &Options::default()).unwrap().state;
    let snap = Snapshot::compile(&state).unwrap();
    let member = snap.index_of("member").unwrap();
    let ctx =
        |u: &str, country: &str| json!({"user_id": u, "country": country, "age": 20}).as_object().unwrap().clone();
    // A unit in the member's slot.
    let unit = (0..1000)
        .map(|k| format!("u{k}"))
        .find(|u| snap.evaluate_one(member, &ctx(u, "SE"), &NoSticky).reason == Reason::Assigned)
        .unwrap();
    let t = trace(&snap, &state, &cfg, &ctx(&unit, "SE"), &NoSticky, Some(&[member]));
    let m = &t.experiments["member"];
    assert_eq!(m.reason, Reason::Assigned);
    let kinds: Vec<String> =
        m.steps.iter().map(|s| serde_json::to_value(s).unwrap()["step"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["running", "unit", "inclusion", "holdout", "allocation", "prerequisite", "targeting", "split"]);
    let Step::Unit { held_by, bucket: Some(b), .. } = &m.steps[1] else { panic!("{:?}", m.steps[1]) };
    assert!(held_by.iter().any(|h| h.owner == "g#1"), "{held_by:?}");
    assert!(held_by.iter().any(|h| h.owner == "member"), "{held_by:?}");
    let Step::Allocation { bucket, allocated: true, slots } = &m.steps[4] else { panic!("{:?}", m.steps[4]) };
    assert_eq!((bucket, slots.as_slice()), (b, &["g#1".to_string()][..]));
    let Step::Prerequisite { experiment, variant, ok: true, .. } = &m.steps[5] else { panic!("{:?}", m.steps[5]) };
    assert_eq!((experiment.as_str(), variant.as_deref()), ("gate", Some("on")));
    let Step::Targeting { matched: true, conditions } = &m.steps[6] else { panic!("{:?}", m.steps[6]) };
    assert_eq!(conditions.len(), 2);
    assert_eq!(conditions[0].segment.as_deref(), Some("nordic"));
    assert_eq!(conditions[0].criterion, json!({"attribute": "country", "in": ["SE", "NO"]}));
    assert_eq!(conditions[1].value, json!(20));
    assert!(conditions.iter().all(|c| c.matched));
    // Another country: the segment's condition fails, the other holds; the trace stops there.
    let t = trace(&snap, &state, &cfg, &ctx(&unit, "US"), &NoSticky, Some(&[member]));
    let m = &t.experiments["member"];
    assert_eq!(m.reason, Reason::TargetingMiss);
    let Some(Step::Targeting { matched: false, conditions }) = m.steps.last() else { panic!("{:?}", m.steps) };
    assert_eq!((conditions[0].matched, &conditions[0].value), (false, &json!("US")));
    assert!(conditions[1].matched);
    // An included unit stops at the inclusion, with its variant.
    let t = trace(&snap, &state, &cfg, &ctx("vip", "US"), &NoSticky, None);
    let m = &t.experiments["member"];
    assert_eq!((m.variant.as_deref(), m.reason), (Some("b"), Reason::Included));
    assert_eq!(m.steps.last(), Some(&Step::Inclusion { included: true, variant: Some("b".into()) }));
    assert_eq!(t.experiments.keys().collect::<Vec<_>>(), ["gate", "member"]);
    // The JSON the API and `allot trace` print.
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["experiments"]["member"]["reason"], "INCLUDED");
    assert_eq!(v["experiments"]["member"]["steps"][0], json!({"step": "running", "running": true}));
}
