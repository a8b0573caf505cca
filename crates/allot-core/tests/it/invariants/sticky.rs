use super::*;

// ---------------------------------------------------------------------------------------------
// Sticky experiments whose store cannot be read
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(48))]

    /// Service invariant — a sticky unit is never served a variant that could contradict a stored
    /// one: with a sticky store that cannot be read, over random configurations and change
    /// sequences with a random set of experiments made sticky, every variant served is the one
    /// an empty, readable store gives; a sticky experiment that reaches the sticky step answers
    /// `STICKY_UNAVAILABLE` with no variant; one that stops earlier, and every non-sticky
    /// experiment, answer as before, except that a dependant may now fail its prerequisite.
    #[test]
    fn sticky_experiments_serve_nothing_they_cannot_stand_by(scn in scenario(), mask in any::<u64>()) {
        let w = run(&scn, Checks::default(), 200)?;
        let mut snap = compile(&w.state);
        for (i, e) in snap.experiments.iter_mut().enumerate() {
            e.sticky = mask >> (i % 64) & 1 == 1;
        }
        let (mut known, mut unknown) = (vec![], vec![]);
        for ctx in &contexts()[..200] {
            snap.evaluate_all(ctx, &NoSticky, &mut known);
            snap.evaluate_all(ctx, &crate::engine::Unreadable(None), &mut unknown);
            for (i, (a, b)) in known.iter().zip(&unknown).enumerate() {
                let e = &snap.experiments[i];
                if let Some(v) = b.variant {
                    prop_assert_eq!(Some(v), a.variant, "{} served another variant", e.id);
                }
                let before_sticky = matches!(
                    a.reason,
                    Reason::NotRunning | Reason::Paused | Reason::MissingUnit | Reason::Included | Reason::Holdout | Reason::NotAllocated
                );
                if e.sticky && !before_sticky {
                    prop_assert_eq!((b.variant, b.reason), (None, Reason::StickyUnavailable), "{}", e.id);
                } else if b != a {
                    prop_assert_eq!((b.variant, b.reason), (None, Reason::PrerequisiteFailed), "{}: {:?} vs {:?}", e.id, a, b);
                }
            }
        }
    }
}
