use super::*;
use allot_core::eval::StickyStore;
use allot_core::trace::{trace, Step};

// ---------------------------------------------------------------------------------------------
// The evaluation trace cannot drift from evaluation
// ---------------------------------------------------------------------------------------------

/// The configuration of `state` with prerequisites added where `mask` says (each experiment may
/// require an earlier one's first variant), or `None` if that does not validate.
fn with_prerequisites(state: &State, mask: u64) -> Option<Config> {
    let mut raw = state.config.clone()?;
    let exps = raw.get_mut("experiments")?.as_object_mut()?;
    let ids: Vec<String> = exps.keys().cloned().collect();
    let first: Vec<Option<String>> = ids
        .iter()
        .map(|id| exps[id].get("variants").and_then(Value::as_object).and_then(|v| v.keys().next().cloned()))
        .collect();
    for (j, id) in ids.iter().enumerate().skip(1) {
        if mask >> (j % 64) & 1 == 0 {
            continue;
        }
        let i = (mask >> 32) as usize % j;
        let Some(v) = &first[i] else { continue };
        exps.get_mut(id)?.as_object_mut()?.insert("requires".into(), json!([{"experiment": ids[i], "variants": [v]}]));
    }
    config::validate(&raw).ok()
}

proptest! {
    #![proptest_config(config(48))]

    /// The trace's final (variant, reason) is evaluation's, for every experiment and context, over
    /// random configurations and change sequences (re-salts, holdouts, groups, inclusions,
    /// targeting through segments), with random experiments made sticky against stores that hold
    /// assignments, hold stale ones, or cannot be read, random prerequisites, and contexts without
    /// a unit id; its last step is the one that decided, and tracing a subset traces it alike.
    #[test]
    fn the_trace_ends_where_evaluation_does(scn in scenario(), mask in any::<u64>(), sticky_mask in any::<u64>()) {
        let w = run(&scn, Checks::default(), 100)?;
        let cfg = with_prerequisites(&w.state, mask).unwrap_or_else(|| w.cfg.clone());
        let mut snap = Snapshot::compile_with(&w.state, &cfg);
        for (i, e) in snap.experiments.iter_mut().enumerate() {
            e.sticky = sticky_mask >> (i % 64) & 1 == 1;
        }
        let mut stored: HashMap<(String, String, String), String> = HashMap::new();
        for (k, e) in snap.experiments.iter().enumerate() {
            for u in (k % 3..100).step_by(3) {
                let v = if u % 2 == 0 { e.split.names[u % e.split.names.len()].clone() } else { "gone".to_string() };
                let space = &snap.spaces[e.space].name;
                let attr = &snap.spaces[e.space].attribute;
                let unit = contexts()[u].get(attr).and_then(Value::as_str).unwrap_or_default().to_string();
                stored.insert((space.clone(), unit, e.id.clone()), v);
            }
        }
        let unreadable = crate::engine::Unreadable(Some("u4"));
        let stores: [&dyn StickyStore; 3] = [&NoSticky, &stored, &unreadable];
        let mut out = vec![];
        let mut compared = 0usize;
        for (k, ctx) in contexts()[..100].iter().enumerate() {
            let mut ctx = ctx.clone();
            if k % 7 == 3 {
                ctx.remove("user_id");
            }
            for store in stores {
                snap.evaluate_all(&ctx, store, &mut out);
                let t = trace(&snap, &w.state, &cfg, &ctx, store, None);
                prop_assert_eq!(t.experiments.len(), snap.experiments.len());
                for (i, e) in snap.experiments.iter().enumerate() {
                    let got = &t.experiments[&e.id];
                    prop_assert_eq!(got.assignment(&snap, i), out[i], "{} for {:?}: {:?}", &e.id, &ctx, got);
                    prop_assert_eq!(got.assignment(&snap, i), snap.evaluate_one(i, &ctx, store));
                    let last = got.steps.last().cloned();
                    let decided = matches!(
                        (out[i].reason, &last),
                        (Reason::NotRunning, Some(Step::Running { running: false, .. }))
                            | (Reason::Paused, Some(Step::Running { running: true, paused: true }))
                            | (Reason::MissingUnit, Some(Step::Unit { unit: None, .. }))
                            | (Reason::Included, Some(Step::Inclusion { included: true, .. }))
                            | (Reason::Holdout, Some(Step::Holdout { held_out: true, .. }))
                            | (Reason::NotAllocated, Some(Step::Allocation { allocated: false, .. }))
                            | (Reason::Sticky | Reason::StickyUnavailable, Some(Step::Sticky { .. }))
                            | (Reason::PrerequisiteFailed, Some(Step::Prerequisite { ok: false, .. }))
                            | (Reason::TargetingMiss, Some(Step::Targeting { matched: false, .. }))
                            | (Reason::Assigned, Some(Step::Split { .. }))
                    );
                    prop_assert!(decided, "{}: {:?} ends with {:?}", &e.id, out[i], last);
                    compared += 1;
                }
                let subset: Vec<usize> = (0..snap.experiments.len()).rev().step_by(2).collect();
                let part = trace(&snap, &w.state, &cfg, &ctx, store, Some(&subset));
                let ids: Vec<&String> = part.experiments.keys().collect();
                let want: Vec<&String> = subset.iter().map(|&i| &snap.experiments[i].id).collect();
                prop_assert_eq!(ids, want);
                for (id, x) in &part.experiments {
                    prop_assert_eq!(x, &t.experiments[id]);
                }
            }
        }
        prop_assert!(compared > 0 || snap.experiments.is_empty());
    }
}
