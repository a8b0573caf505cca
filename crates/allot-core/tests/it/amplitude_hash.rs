//! Amplitude's bucketing (`units.<u>.hash: amplitude`, `experiments.<e>.split_hash: amplitude`):
//! what `allot compat amplitude import` writes to reproduce Amplitude's engine. Validated (100
//! buckets; ranges tiling `0..42,949,673`), evaluated as `x86_32("<salt>/<unit>") % 100` and
//! `/ 100`, guarded by change control like `salt` and `buckets`, and never re-salted.

use allot_core::config;
use allot_core::eval::{NoSticky, Reason, Snapshot};
use allot_core::hash::{self, AMPLITUDE_SPLIT_BUCKETS};
use allot_core::plan::{self, Options};
use allot_core::state::State;
use allot_core::testing::edit;
use serde_json::json;

// Allocation: buckets 0..30 (hash % 100 < 30); split: hash / 100 < 21474836 → control.
const BASE: &str = r#"
units:
  amp: {attribute: user_id, salt: ctzkk6oam89o, hash: amplitude}
experiments:
  a:
    unit: amp
    share: 30%
    salt: ctzkk6oam89o
    split_hash: amplitude
    state: running
    variants:
      control: {ranges: [[0, 21474836]]}
      treatment: {ranges: [[21474836, 42949673]]}
"#;

fn errors(yaml: &str) -> Vec<String> {
    let raw = config::parse_yaml(yaml).unwrap();
    match config::validate(&raw) {
        Ok(_) => vec![],
        Err(es) => es.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
    }
}

fn opts(time: &str) -> Options {
    Options { time: time.into(), ..Options::default() }
}

/// Applies `yaml`, then records experiment `a`'s allocation as exactly the buckets `0..30`
/// (as the import does with Amplitude's allocation ranges).
fn applied(yaml: &str) -> State {
    let raw = config::parse_yaml(yaml).unwrap();
    let cfg = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    let mut state = plan::apply(&State::default(), &cfg, &raw, &opts("2026-01-01T00:00:00Z")).unwrap().state;
    let a = state.live_mut(allot_core::state::OwnerKind::Experiment, "a").unwrap();
    let mut bits = allot_core::bucketset::BucketBitmap::empty(100);
    for b in 0..30 {
        bits.insert(b);
    }
    a.draws[0].buckets = bits.compact();
    assert!(plan::plan(&state, &cfg, &raw, &opts("2026-01-02T00:00:00Z")).unwrap().is_empty());
    state
}

#[test]
fn amplitude_hashing_places_and_splits_as_amplitude() {
    let state = applied(BASE);
    let snap = Snapshot::compile(&state).unwrap();
    assert_eq!(snap.spaces[0].buckets, 100);
    let (mut assigned, mut control) = (0, 0);
    for i in 0..3000 {
        let unit = format!("user-{i}");
        let h = hash::murmur3_x86_32(format!("ctzkk6oam89o/{unit}").as_bytes(), 0);
        assert_eq!(snap.spaces[0].bucket(&unit), h % 100, "{unit}");
        let a = snap.evaluate_one(0, json!({"user_id": unit}).as_object().unwrap(), &NoSticky);
        if h % 100 >= 30 {
            assert_eq!(a.reason, Reason::NotAllocated, "{unit}");
            continue;
        }
        assigned += 1;
        let want = if h / 100 < 21_474_836 { "control" } else { "treatment" };
        control += usize::from(want == "control");
        assert_eq!(snap.variant_name(0, &a), Some(want), "{unit}: hash {h}");
    }
    assert!(assigned > 700 && control > 250 && control < assigned - 250, "{assigned} / {control}");
    assert_eq!(AMPLITUDE_SPLIT_BUCKETS, 42_949_673);
}

#[test]
fn the_hashing_options_are_validated_naming_the_field() {
    assert!(errors(BASE).is_empty(), "{:?}", errors(BASE));
    let buckets = edit(BASE, "hash: amplitude}", "hash: amplitude, buckets: 1000}");
    assert!(
        errors(&buckets).iter().any(|e| e.starts_with("units.amp.buckets: with `hash: amplitude`")),
        "{:?}",
        errors(&buckets)
    );
    let unknown = edit(BASE, "hash: amplitude}", "hash: md5}");
    assert!(errors(&unknown).iter().any(|e| e.starts_with("units.amp.hash: expected `allot` or `amplitude`")));
    let short = edit(BASE, "[[21474836, 42949673]]", "[[21474836, 42949672]]");
    assert!(errors(&short).iter().any(|e| e.starts_with("experiments.a.split_hash")), "{:?}", errors(&short));
    let weights = edit(
        &edit(BASE, "control: {ranges: [[0, 21474836]]}", "control: 1"),
        "treatment: {ranges: [[21474836, 42949673]]}",
        "treatment: 1",
    );
    assert!(errors(&weights).iter().any(|e| e.starts_with("experiments.a.split_hash")), "{:?}", errors(&weights));
    let bad = edit(BASE, "split_hash: amplitude", "split_hash: 3");
    assert!(errors(&bad).iter().any(|e| e.starts_with("experiments.a.split_hash: expected")), "{:?}", errors(&bad));
    // The split may share the unit type's salt only when both hash as Amplitude does.
    let native_split =
        edit(&edit(BASE, "    split_hash: amplitude\n", ""), "[[21474836, 42949673]]", "[[21474836, 42949673]]");
    assert!(
        errors(&native_split).iter().any(|e| e.contains("is the bucket salt of unit type `amp`")),
        "{:?}",
        errors(&native_split)
    );
}

#[test]
fn change_control_guards_the_hash() {
    let state = applied(BASE);
    // The unit type's hash cannot change under a running experiment.
    let native = edit(
        &edit(BASE, "salt: ctzkk6oam89o, hash: amplitude}", "salt: ctzkk6oam89o, hash: allot, buckets: 100}"),
        "    salt: ctzkk6oam89o\n    split_hash: amplitude\n",
        "    salt: other\n",
    );
    let raw = config::parse_yaml(&native).unwrap();
    let cfg = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    let err = plan::plan(&state, &cfg, &raw, &opts("2026-01-03T00:00:00Z")).unwrap_err();
    assert!(format!("{err:?}").contains("buckets, salt and hash cannot change"), "{err:?}");
    // The split's hash is part of the split: changing it moves (about) half the units and is refused.
    let split =
        edit(&edit(BASE, "    split_hash: amplitude\n", ""), "salt: ctzkk6oam89o\n    state", "salt: other\n    state");
    let raw = config::parse_yaml(&split).unwrap();
    let cfg = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    let p = plan::plan(&state, &cfg, &raw, &opts("2026-01-03T00:00:00Z")).unwrap();
    assert!(
        p.changes.iter().any(|c| c.id == "a" && c.detail.contains("split hash amplitude → allot")),
        "{:?}",
        p.changes
    );
    assert!(p.impact["a"].moved_by_split > 0.4, "{:?}", p.impact["a"]);
    assert!(!p.refusals.is_empty());
}

#[test]
fn an_amplitude_space_is_never_resalted_and_the_state_names_its_hash() {
    let state = applied(BASE);
    let err = allot_core::salt::resalt(&state, "amp", "2026-01-03T00:00:00Z", None, None).unwrap_err();
    assert_eq!(err.path, "space");
    assert!(err.message.contains("cannot be re-salted"), "{}", err.message);
    let text = serde_json::to_string(&state).unwrap();
    assert!(text.contains(r#""hash":"amplitude""#), "{text}");
    let back: State = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
}

#[test]
fn an_empty_salt_is_amplitude_s_only() {
    let empty =
        edit(&edit(BASE, "salt: ctzkk6oam89o, hash", "salt: \"\", hash"), "salt: ctzkk6oam89o\n", "salt: \"\"\n");
    assert!(errors(&empty).is_empty(), "{:?}", errors(&empty));
    let native = edit(&empty, ", hash: amplitude}", "}");
    assert!(
        errors(&native).iter().any(|e| e.starts_with("units.amp.salt: must not be empty")),
        "{:?}",
        errors(&native)
    );
    let weights = edit(&empty, "    split_hash: amplitude\n", "");
    assert!(
        errors(&weights).iter().any(|e| e.starts_with("experiments.a.salt: must not be empty")),
        "{:?}",
        errors(&weights)
    );
}
