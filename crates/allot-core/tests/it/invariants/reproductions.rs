use super::*;

// ---------------------------------------------------------------------------------------------
// Minimal reproductions of the failures these properties found (proptest's persisted seeds
// replay only while the generators stay the same; these do not depend on them)
// ---------------------------------------------------------------------------------------------

pub(super) fn apply_yaml(state: &State, yaml: &str, force: bool) -> Result<Plan, ApplyError> {
    let cfg = match config::load(yaml) {
        Ok(c) => c,
        Err(e) => panic!("invalid test configuration: {e:?}"),
    };
    let raw = config::parse_yaml(yaml).unwrap_or_default();
    plan::apply(state, &cfg, &raw, &opts(force))
}

pub(super) fn applied(state: &State, yaml: &str, force: bool) -> Plan {
    match apply_yaml(state, yaml, force) {
        Ok(p) => p,
        Err(e) => panic!("{}", outcome(&Err(e))),
    }
}

pub(super) const HOLDOUT_OVER_GROUP: &str = r#"
units: {user: {attribute: user_id, buckets: 10000}}
surfaces: [s0]
holdouts:
  h: {unit: user, share: 5%, applies_to: [APPLIES]}
groups:
  g: {unit: user, share: 50%, slots: [100%]}
experiments:
  e0: {unit: user, group: g, slots: [1], variants: {control: 1}, state: running}
"#;

/// Stability: a holdout that stops applying to a running experiment (here by narrowing its
/// `applies_to` from `all` to a surface the experiment is not on) lets its held-back units into
/// the experiment — HOLDOUT becomes ASSIGNED for a shareless group member. It must be refused
/// like deleting the holdout is.
#[test]
pub(super) fn regression_holdout_cannot_stop_applying_to_a_running_experiment() {
    let st = applied(&State::default(), &edit(HOLDOUT_OVER_GROUP, "APPLIES", "all"), false).state;
    let narrowed = edit(HOLDOUT_OVER_GROUP, "APPLIES", "s0");
    match apply_yaml(&st, &narrowed, false) {
        Err(ApplyError::Refused(p)) => {
            assert!(
                p.refusals.iter().any(|r| r.rule == "holdout-in-use" && r.path == "holdouts.h.applies_to"),
                "{:?}",
                p.refusals
            );
            // What forcing it would do: held-back units of e0 get a variant.
            let (before, after) = (evaluate(&st, 2_000), evaluate(&p.state, 2_000));
            let moved = (0..2_000)
                .filter(|&u| {
                    before.exps["e0"].res[u].reason == Reason::Holdout
                        && after.exps["e0"].res[u].reason == Reason::Assigned
                })
                .count();
            assert!(moved > 0);
        }
        other => panic!("expected a refusal, got {}", outcome(&other)),
    }
}

pub(super) const HOLDOUT_SCOPE: &str = r#"
units: {user: {attribute: user_id, buckets: 10000}}
surfaces: [s0]
holdouts:
  h3: {unit: user, share: 2.6%, applies_to: [APPLIES]}
experiments:
  e0: {unit: user, surfaces: [s0], share: 6.5%, variants: {control: 1}, state: running}
  e1: {unit: user, surfaces: [s0], share: 1%, variants: {control: 1}, state: draft}
"#;

/// Exact traffic: when a holdout comes to apply to a running experiment with an explicit share
/// (its `applies_to` or the experiment's scope changed) and the change is forced, the
/// experiment's buckets inside the holdout are redrawn elsewhere, so that it still reaches
/// exactly its share and the audit finds no violation. Not forced, it is refused.
#[test]
pub(super) fn regression_forced_holdout_scope_change_keeps_the_share_exact() {
    let st = applied(&State::default(), &edit(HOLDOUT_SCOPE, "APPLIES", "e1"), false).state;
    let e0 = live(&st, OwnerKind::Experiment, "e0").unwrap_or_else(|| BucketBitmap::empty(1));
    let h3 = live(&st, OwnerKind::Holdout, "h3").unwrap_or_else(|| BucketBitmap::empty(1));
    assert!(e0.intersection_len(&h3) > 0, "the example needs e0 and h3 to overlap");
    let widened = edit(HOLDOUT_SCOPE, "APPLIES", "s0");
    assert!(matches!(apply_yaml(&st, &widened, false), Err(ApplyError::Refused(_))));
    let p = applied(&st, &widened, true);
    let cfg = config::load(&widened).unwrap_or_default();
    let au = audit(&p.state, &cfg);
    assert!(au.violations.is_empty(), "{:?}", au.violations);
    assert_eq!(au.experiments["e0"].reach_buckets, 650);
    assert_eq!(au.experiments["e0"].buckets, 650);
}

/// Nothing lost: a state file whose bucket space disagrees with its bucket sets (or is empty)
/// is rejected by `State::from_json` with an error naming the field, instead of parsing and then
/// panicking in `audit` (index out of bounds) or in evaluation (remainder by zero).
#[test]
pub(super) fn regression_state_file_with_an_inconsistent_space_is_rejected() {
    let yaml = "units: {user: {attribute: user_id, buckets: 10000}}\nsurfaces: [s]\nexperiments:\n  a: {unit: user, surfaces: [s], share: 50%, variants: {c: 1}, state: running}\n";
    let st = applied(&State::default(), yaml, false).state;
    let v = serde_json::to_value(&st).unwrap_or_default();
    for (buckets, path) in [(5_000, "allocations[0].draws[0].buckets"), (0, "spaces.user.buckets")] {
        let mut v = v.clone();
        v["spaces"]["user"]["buckets"] = json!(buckets);
        match State::from_json(&v.to_string()) {
            Err(e) => assert!(e.starts_with(path), "{e}"),
            Ok(st) => {
                use_state(&v.to_string()).ok();
                panic!("accepted a state over {} buckets", st.spaces["user"].buckets)
            }
        }
    }
    let mut v = v;
    v["allocations"][0]["draws"] = json!([]);
    assert!(State::from_json(&v.to_string()).is_err_and(|e| e.starts_with("allocations[0].draws")));
}

/// Nothing lost: after a unit type's space is resized (allowed while nothing holds buckets in
/// it), starting an experiment in the scope of one released before the resize must not index
/// the old, larger allocation into the new space's recency table (it panicked: index out of
/// bounds in `plan::recency`). The released allocations stay in the state file as history.
#[test]
pub(super) fn regression_start_after_a_space_was_resized() {
    let y = |b: u32, a: &str, c: &str| {
        format!(
            "units: {{user: {{attribute: user_id, buckets: {b}}}}}\nsurfaces: [s]\nexperiments:\n  a: {{unit: user, surfaces: [s], share: 50%, variants: {{c: 1}}, state: {a}}}\n  b: {{unit: user, surfaces: [s], share: 10%, variants: {{c: 1}}, state: {c}}}\n"
        )
    };
    let st = applied(&State::default(), &y(40_000, "running", "draft"), false).state;
    let st = applied(&st, &y(40_000, "stopped", "draft"), false).state;
    let st = applied(&st, &y(10_000, "stopped", "draft"), false).state;
    let text = serde_json::to_string(&st).unwrap_or_default();
    assert_eq!(State::from_json(&text).as_ref(), Ok(&st), "the resized state does not read back");
    let p = applied(&st, &y(10_000, "stopped", "running"), false);
    assert_eq!(live(&p.state, OwnerKind::Experiment, "b").map(|s| s.len()), Some(1_000));
}

/// Independence: an experiment whose split salt is its bucket space's salt — here by default,
/// an experiment named like its unit type — hashes `<salt>|<unit>` exactly as the bucket does,
/// so its variant is a function of the bucket (over 1,000,000 buckets: the lower half of the
/// space gets `c`, the upper half `t`). Validation refuses it and names the field.
#[test]
pub(super) fn regression_split_salt_must_differ_from_the_bucket_salt() {
    let yaml = "units: {user: {attribute: user_id}}\nsurfaces: [s]\nexperiments:\n  user: {unit: user, surfaces: [s], share: 50%, variants: {c: 1, t: 1}, state: running}\n";
    let es = config::load(yaml).err().unwrap_or_default();
    assert!(es.iter().any(|e| e.path == "experiments.user.salt"), "{es:?}");
    let explicit = edit(yaml, "  user: {unit: user,", "  e: {unit: user, salt: user,");
    let es = config::load(&explicit).err().unwrap_or_default();
    assert!(es.iter().any(|e| e.path == "experiments.e.salt"), "{es:?}");
    assert!(config::load(&edit(&explicit, "salt: user,", "salt: e-2026,")).is_ok());
}
