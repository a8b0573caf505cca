//! `analysis::analyze` without files: rows added by hand, the configuration given through a
//! `Design` of the test's own, the recorded state as `Recorded`.

use allot_stats::analysis::{self, Design, Exposures, Identities, Inputs, IssueClass, Recorded, Srm, UnitValues};
use allot_stats::timeline::{Basis, Interval};

/// Two experiments `a` and `b` that exclude each other (one surface), `c` beside them; `u7` is
/// included in `a`.
struct Surface;

impl Design for Surface {
    fn experiments(&self) -> Vec<&str> {
        vec!["c", "a", "b"]
    }
    fn variants(&self, experiment: &str) -> Option<Vec<(&str, f64)>> {
        ["a", "b", "c"].contains(&experiment).then(|| vec![("control", 1.0), ("treatment", 3.0)])
    }
    fn running(&self, experiment: &str) -> bool {
        experiment != "a"
    }
    fn included(&self, experiment: &str, unit: &str) -> bool {
        experiment == "a" && unit == "u7"
    }
    fn exclusive(&self, x: &str, y: &str) -> bool {
        x != y && ["a", "b"].contains(&x) && ["a", "b"].contains(&y)
    }
    fn scope(&self, _: &str, _: &str) -> String {
        "home".into()
    }
}

/// 40 units in `a` (at time 10) and `b` (at 20), all at version 1 (`u0`–`u39`), 40 more in `c`;
/// every unit has `revenue` = its number.
fn rows() -> (Exposures, UnitValues) {
    let mut ex = Exposures::new(true, true, std::hash::RandomState::new());
    for i in 0..40 {
        let u = format!("u{i}");
        let v = if i % 4 == 0 { "control" } else { "treatment" };
        ex.add(&u, "a", v, 10.0, Some(1));
        ex.add(&u, "b", v, 20.0, Some(1));
    }
    for i in 40..80 {
        ex.add(&format!("u{i}"), "c", if i % 4 == 0 { "control" } else { "treatment" }, 10.0, Some(1));
    }
    let mut m = UnitValues::default();
    for i in 0..80 {
        m.add(&ex, &format!("u{i}"), "revenue", f64::from(i));
    }
    m.add(&ex, "ghost", "revenue", 1.0);
    (ex, m)
}

fn inputs<'a>(
    ex: &'a Exposures,
    m: &'a UnitValues,
    design: Option<&'a dyn Design>,
    recorded: Option<&'a Recorded>,
) -> Inputs<'a> {
    Inputs { exposures: ex, metrics: m, covariates: None, identities: None, design, recorded, alpha: 0.05 }
}

#[test]
fn exclusive_experiments_that_ran_together_are_issues_with_their_reason() {
    let (ex, m) = rows();
    let r = analysis::analyze(inputs(&ex, &m, Some(&Surface), None));
    // Configured order, configured split (1:3).
    assert_eq!(r.experiments.keys().collect::<Vec<_>>(), ["c", "a", "b"]);
    let Srm::Tested { split, p_value, .. } = &r.experiments["a"].srm else { panic!("{:?}", r.experiments["a"].srm) };
    assert_eq!(*split, analysis::Split::Configured);
    assert!(*p_value > 0.5, "10 : 30 is the configured 1 : 3");
    let issues = &r.diagnostics.exposure_issues;
    // No state, no change log: a's exposures end before b's begin, so a configuration change;
    // u7 was included in a.
    assert_eq!(issues[&IssueClass::Inclusion].count, 1);
    assert_eq!(issues[&IssueClass::ConfigChange].count, 39);
    assert_eq!(issues[&IssueClass::Unexplained].count, 0);
    assert_eq!(r.diagnostics.metric_rows_without_exposure, 1);
    let i = &r.interactions[0];
    assert_eq!((i.experiments.clone(), i.units, i.should_be_exclusive), (["a".into(), "b".into()], 40, Some(true)));
    // The wire form: keys in order, NaN as null.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["diagnostics"]["exposure_issues"]["inclusion"]["examples"][0]["unit"], "u7");
    assert_eq!(json["diagnostics"]["runs"]["b"]["seen_versions"], serde_json::json!([1, null]), "running: open");
    assert_eq!(json["diagnostics"]["runs"]["a"]["seen_versions"], serde_json::json!([1, 1]));
}

#[test]
fn a_recorded_stop_makes_the_overlap_bucket_reuse() {
    let (ex, m) = rows();
    let mut recorded = Recorded { any_allocations: true, ..Recorded::default() };
    recorded.runs.insert("a".into(), vec![Interval::recorded(1, Some(2))]);
    recorded.runs.insert("b".into(), vec![Interval::recorded(2, None)]);
    let mut ids = Identities::default();
    ids.add(&ex, "u1", "ann");
    ids.add(&ex, "u41", "ann");
    ids.add(&ex, "nobody-saw-this", "bob");
    let r = analysis::analyze(Inputs { identities: Some(&ids), ..inputs(&ex, &m, Some(&Surface), Some(&recorded)) });
    assert_eq!(r.diagnostics.reused_after_stop.count, 40);
    assert_eq!(r.diagnostics.reused_after_stop.examples[0].basis, Basis::State);
    let issues = &r.diagnostics.exposure_issues;
    assert_eq!(IssueClass::ALL.iter().map(|c| issues[c].count).sum::<u64>(), 0);
    assert_eq!(r.diagnostics.identities, Some(1));
    assert!(r.interactions.is_empty());
    assert_eq!(r.interactions_skipped.len(), 1);
    assert!(r.interactions_skipped[0].reason.contains("by the recorded state"), "{:?}", r.interactions_skipped);
    // Without a design the same rows are not checked for exclusivity at all.
    let r = analysis::analyze(inputs(&ex, &m, None, Some(&recorded)));
    assert_eq!(r.diagnostics.reused_after_stop.count, 0);
    assert!(!r.diagnostics.config);
    assert_eq!(r.interactions_skipped[0].should_be_exclusive, None);
}
