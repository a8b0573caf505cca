//! Explicit split ranges (`variants.<v>.ranges`): what `allot compat confidence import` writes
//! to reproduce Confidence's rule split. Validated (they tile `0..N`), evaluated as
//! `bucket(salt, unit, N)` looked up in them, and compared by change control like weights.

use allot_core::config;
use allot_core::eval::{NoSticky, Reason, Snapshot};
use allot_core::hash;
use allot_core::plan::{self, Options};
use allot_core::state::State;
use allot_core::testing::edit;
use serde_json::json;

const BASE: &str = r#"
units:
  user: {attribute: user_id, salt: MegaSalt-acct}
experiments:
  a:
    unit: user
    share: 100%
    salt: seg
    state: running
    variants:
      on: {ranges: [[0, 3], [8, 10]], value: {"on": true}}
      _none: {ranges: [[3, 8]]}
"#;

fn errors(yaml: &str) -> Vec<String> {
    let raw = config::parse_yaml(yaml).unwrap();
    match config::validate(&raw) {
        Ok(_) => vec![],
        Err(es) => es.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
    }
}

fn applied(yaml: &str) -> State {
    let raw = config::parse_yaml(yaml).unwrap();
    let cfg = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    plan::apply(&State::default(), &cfg, &raw, &Options { time: "2026-01-01T00:00:00Z".into(), ..Options::default() })
        .unwrap()
        .state
}

#[test]
fn explicit_ranges_split_over_their_own_bucket_count() {
    let state = applied(BASE);
    let snap = Snapshot::compile(&state).unwrap();
    let (mut on, mut none) = (0, 0);
    for i in 0..2000 {
        let unit = format!("u{i}");
        let a = snap.evaluate_one(0, json!({"user_id": unit}).as_object().unwrap(), &NoSticky);
        assert_eq!(a.reason, Reason::Assigned);
        let b = hash::bucket("seg", &unit, 10);
        let want = if (3..8).contains(&b) { "_none" } else { "on" };
        assert_eq!(snap.variant_name(0, &a), Some(want), "{unit}: split bucket {b}");
        if want == "on" {
            on += 1;
        } else {
            none += 1;
        }
    }
    assert!(on > 800 && none > 800, "{on} / {none}");
    // The weight is the number of split buckets the ranges hold.
    let cfg = config::load(BASE).unwrap();
    assert_eq!(cfg.experiments["a"].variants["on"].weight, 5);
}

#[test]
fn ranges_must_tile_and_every_variant_needs_them() {
    let gap = edit(BASE, "[[3, 8]]", "[[4, 8]]");
    assert!(
        errors(&gap).iter().any(|e| e.contains("experiments.a.variants") && e.contains("3..4")),
        "{:?}",
        errors(&gap)
    );
    let overlap = edit(BASE, "[[3, 8]]", "[[2, 8]]");
    assert!(errors(&overlap).iter().any(|e| e.contains("overlaps")), "{:?}", errors(&overlap));
    let mixed = edit(BASE, "_none: {ranges: [[3, 8]]}", "_none: 1");
    assert!(errors(&mixed).iter().any(|e| e.contains("all do")), "{:?}", errors(&mixed));
    let weight = edit(BASE, "_none: {ranges: [[3, 8]]}", "_none: {ranges: [[3, 8]], weight: 4}");
    assert!(
        errors(&weight).iter().any(|e| e.starts_with("experiments.a.variants._none.weight")),
        "{:?}",
        errors(&weight)
    );
    let bad = edit(BASE, "[[3, 8]]", "[[8, 3]]");
    assert!(errors(&bad).iter().any(|e| e.starts_with("experiments.a.variants._none.ranges")), "{:?}", errors(&bad));
    assert!(errors(BASE).is_empty());
}

#[test]
fn explicit_experiments_may_share_a_salt_weighted_ones_may_not() {
    let two = format!(
        "{BASE}  b:\n    unit: user\n    share: 100%\n    salt: seg\n    state: running\n    variants:\n      x: {{ranges: [[0, 10]]}}\n"
    );
    assert!(errors(&two).is_empty(), "{:?}", errors(&two));
    let weighted = format!("{BASE}  b:\n    unit: user\n    share: 100%\n    salt: seg\n    variants: {{x: 1}}\n");
    assert!(errors(&weighted).iter().any(|e| e.contains("perfectly correlated")), "{:?}", errors(&weighted));
}

#[test]
fn change_control_sees_a_change_of_ranges() {
    let state = applied(BASE);
    let moved = edit(&edit(BASE, "[[0, 3], [8, 10]]", "[[0, 2], [8, 10]]"), "[[3, 8]]", "[[2, 8]]");
    let raw = config::parse_yaml(&moved).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let p =
        plan::plan(&state, &cfg, &raw, &Options { time: "2026-01-02T00:00:00Z".into(), ..Options::default() }).unwrap();
    assert!(p.changes.iter().any(|c| c.id == "a" && c.detail.contains("variants")), "{:?}", p.changes);
    assert!((p.impact["a"].moved_by_split - 0.1).abs() < 1e-9, "{:?}", p.impact["a"]);
    assert!(!p.refusals.is_empty(), "moving units of a running experiment is refused");
    // The same file again: no change.
    let raw = config::parse_yaml(BASE).unwrap();
    let cfg = config::validate(&raw).unwrap();
    assert!(plan::plan(&state, &cfg, &raw, &Options::default()).unwrap().is_empty());
}
