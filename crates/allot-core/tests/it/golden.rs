//! Frozen behaviour: the committed state in `spec/assign/` must keep giving exactly the committed
//! assignments, and applying the committed configuration must draw exactly the recorded buckets.

use allot_core::config;
use allot_core::eval::{NoSticky, Snapshot};
use allot_core::plan::{self, Options};
use allot_core::state::State;
use serde_json::{json, Map, Value};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/assign/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).unwrap()
}

#[test]
fn committed_state_gives_the_committed_assignments() {
    let state = State::from_json(&read("allot.state.json")).unwrap();
    let snap = Snapshot::compile(&state).unwrap();
    let units = read("units.jsonl");
    let expected = read("expected.jsonl");
    let mut out = vec![];
    let mut n = 0;
    for (line, want) in units.lines().zip(expected.lines()) {
        let ctx: Map<String, Value> = serde_json::from_str(line).unwrap();
        snap.evaluate_all(&ctx, &NoSticky, &mut out);
        let want: Value = serde_json::from_str(want).unwrap();
        for (i, e) in snap.experiments.iter().enumerate() {
            let got = json!({"variant": snap.variant_name(i, &out[i]), "reason": out[i].reason.as_str()});
            assert_eq!(got, want["assignments"][&e.id], "line {}: experiment {}", n + 1, e.id);
        }
        n += 1;
    }
    assert_eq!(n, 2000);
    assert_eq!(n, expected.lines().count());
}

#[test]
fn applying_the_committed_configuration_draws_the_recorded_buckets() {
    let recorded = State::from_json(&read("allot.state.json")).unwrap();
    let raw = config::parse_yaml(&read("allot.yaml")).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let fresh = plan::apply(&State::default(), &cfg, &raw, &Options::default()).unwrap().state;
    assert_eq!(fresh.allocations.len(), recorded.allocations.len());
    for (a, b) in fresh.allocations.iter().zip(&recorded.allocations) {
        assert_eq!((a.kind, &a.owner), (b.kind, &b.owner));
        assert_eq!(a.draws, b.draws, "allocation {} of {} drew different buckets", a.id, a.owner);
    }
}

/// The salt machine's frozen rule: `resalted.state.json` is `allot.state.json` (one re-salt of
/// the earlier form per space) plus one `allot resalt` of the classes form; every unit of
/// `units.jsonl` must keep exactly the bucket in each space that `buckets-resalted.jsonl` records,
/// and every running experiment the assignment of `expected.jsonl` (the re-salt moved none).
/// `ALLOT_REGENERATE_GOLDEN=1` rewrites the bucket file (only on purpose: a new hash version).
#[test]
fn committed_resalts_keep_every_unit_in_its_bucket() {
    let state = State::from_json(&read("resalted.state.json")).unwrap();
    assert!(state
        .spaces
        .values()
        .all(|s| s.resalts.len() == 2 && s.resalts[0].frozen.is_some() && s.resalts[1].classes_by.is_some()));
    let snap = Snapshot::compile(&state).unwrap();
    let mut lines = vec![];
    for line in read("units.jsonl").lines() {
        let ctx: Map<String, Value> = serde_json::from_str(line).unwrap();
        let mut b = Map::new();
        for s in &snap.spaces {
            if let Some(id) = ctx.get(&s.attribute).and_then(Value::as_str) {
                b.insert(s.name.clone(), json!(s.bucket(id)));
            }
        }
        lines.push(Value::Object(b).to_string());
    }
    let path = format!("{DIR}buckets-resalted.jsonl");
    if std::env::var_os("ALLOT_REGENERATE_GOLDEN").is_some() {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let want = read("buckets-resalted.jsonl");
    assert_eq!(want.lines().count(), 2000);
    for (n, (got, want)) in lines.iter().zip(want.lines()).enumerate() {
        assert_eq!(got, want, "line {}: buckets", n + 1);
    }
    let expected = read("expected.jsonl");
    let mut out = vec![];
    for (line, want) in read("units.jsonl").lines().zip(expected.lines()) {
        let ctx: Map<String, Value> = serde_json::from_str(line).unwrap();
        snap.evaluate_all(&ctx, &NoSticky, &mut out);
        let want: Value = serde_json::from_str(want).unwrap();
        for (i, e) in snap.experiments.iter().enumerate().filter(|(_, e)| e.running) {
            let got = json!({"variant": snap.variant_name(i, &out[i]), "reason": out[i].reason.as_str()});
            assert_eq!(got, want["assignments"][&e.id], "experiment {} moved: {line}", e.id);
        }
    }
}
