use super::*;

// ---------------------------------------------------------------------------------------------
// Invariants 1–4 and 6 over random sequences
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(64))]

    /// Invariant 1 — Determinism: the same state gives the same results (compiled twice, after a
    /// JSON round trip, one experiment at a time); the same apply twice gives the same plan and
    /// state; the YAML text and its tree validate to the same configuration.
    #[test]
    fn determinism(scn in scenario()) {
        let raw = scn.model.render();
        let text = serde_yaml_ng::to_string(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = config::parse_yaml(&text).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&parsed, &raw);
        prop_assert_eq!(config::load(&text), config::validate(&raw));
        let w = run(&scn, Checks { determinism: true, ..Checks::default() }, UNITS)?;
        check_determinism(&w.state, &w.eval)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Invariant 2 — Exclusivity: after every accepted change, running experiments that must be
    /// exclusive (and whose targeting is not provably disjoint) share no bucket, the audit finds
    /// no violation, group members stay inside their slots, and no sampled unit is ASSIGNED in two
    /// exclusive experiments (only an inclusion may do that).
    #[test]
    fn exclusivity(scn in scenario()) {
        run(&scn, Checks { exclusivity: true, ..Checks::default() }, UNITS)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Invariant 3 — Stability: an accepted non-forced change keeps every bucket of every running
    /// experiment, reports nothing moved, and moves no sampled unit (NOT_ALLOCATED units may join
    /// a grown allocation); a change that would move units is refused, and the moved share it
    /// reports matches the sampled one; the salt machine moves no unit of a running experiment.
    #[test]
    fn stability(scn in scenario()) {
        run(&scn, Checks { stability: true, ..Checks::default() }, UNITS)?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Invariant 4 — Exact traffic: the audit's buckets and reach equal the configured shares
    /// exactly (holdouts avoided), slots and holdouts are exact, shareless group members take all
    /// that is free in their slots, every sampled unit's reason and variant follow from its bucket
    /// and the split, and the sampled reach matches the exact reach.
    #[test]
    fn exact_traffic(scn in scenario()) {
        let w = run(&scn, Checks { traffic: true, ..Checks::default() }, UNITS)?;
        let big = evaluate(&w.state, BIG_UNITS);
        check_traffic(&w.state, &w.cfg, &big, &HashSet::new())?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Invariant 6 — Nothing lost (change control): a refused change leaves the caller's state
    /// untouched and previews exactly what forcing would record; forcing needs a reason; an
    /// invalid change fails the same way forced or not, with errors that name their fields; a
    /// re-applied configuration records nothing.
    #[test]
    fn nothing_lost_changes(scn in scenario()) {
        run(&scn, Checks { nothing_lost: true, ..Checks::default() }, 200)?;
    }
}
