use super::*;

// ---------------------------------------------------------------------------------------------
// Running a scenario
// ---------------------------------------------------------------------------------------------

pub(super) struct World {
    pub(super) model: Model,
    pub(super) state: State,
    pub(super) cfg: Config,
    pub(super) eval: Eval,
}

pub(super) fn opts(force: bool) -> Options {
    Options {
        force,
        reason: force.then(|| "property test".to_string()),
        time: TIME.into(),
        actor: Some("proptest".into()),
        sticky_store: false,
    }
}

pub(super) fn validate(m: &Model) -> Result<(Config, Value), Vec<allot_core::FieldError>> {
    let raw = m.render();
    config::validate(&raw).map(|c| (c, raw))
}

/// The first applied state: the model as generated, or — when that does not fit — with every
/// running experiment drafted (which always fits an empty state).
pub(super) fn initial(m: &Model, n: usize) -> Result<World, TestCaseError> {
    let mut m = m.clone();
    for attempt in 0..2 {
        let (cfg, raw) = validate(&m)
            .map_err(|e| TestCaseError::fail(format!("generated configuration is invalid: {e:?}\n{}", m.render())))?;
        match plan::apply(&State::default(), &cfg, &raw, &opts(false)) {
            Ok(p) => {
                let eval = evaluate(&p.state, n);
                return Ok(World { model: m, state: p.state, cfg, eval });
            }
            Err(ApplyError::Refused(p)) => {
                return Err(TestCaseError::fail(format!("first apply refused: {:?}", p.refusals)))
            }
            Err(ApplyError::Invalid(es)) => {
                ensure_paths(&es)?;
                if attempt == 1 {
                    return Err(TestCaseError::fail(format!("an all-draft configuration does not fit: {es:?}")));
                }
                for e in &mut m.exps {
                    if e.state == ExpState::Running {
                        e.state = ExpState::Draft;
                    }
                }
            }
        }
    }
    Err(TestCaseError::fail("unreachable"))
}

pub(super) fn ensure_paths(es: &[allot_core::FieldError]) -> Check {
    ensure!(!es.is_empty(), "an error with no field errors");
    for e in es {
        ensure!(!e.path.is_empty(), "error without a path: {e:?}");
        ensure!(!e.message.is_empty(), "error without a message: {e:?}");
    }
    Ok(())
}

/// Runs a scenario, checking what `checks` asks for after every step. Returns the final world.
pub(super) fn run(scn: &Scenario, checks: Checks, n: usize) -> Result<World, TestCaseError> {
    let mut w = initial(&scn.model, n)?;
    if checks.exclusivity {
        check_exclusivity(&w.state, &w.cfg, &w.eval)?;
    }
    if checks.traffic {
        check_traffic(&w.state, &w.cfg, &w.eval, &running(&w.cfg, &w.state).into_iter().collect())?;
    }
    // A resize that needs its space cleared first is two changes.
    let steps: Vec<Step> = scn
        .steps
        .iter()
        .flat_map(|s| match s.change {
            Change::Rebucket(u, _, true) => vec![Step { change: Change::ClearSpace(u), force: s.force }, s.clone()],
            _ => vec![s.clone()],
        })
        .collect();
    for (k, step) in steps.iter().enumerate() {
        let ctx = |e: TestCaseError| TestCaseError::fail(format!("step {k} {step:?}: {e}"));
        if let Change::Resalt(u) = step.change {
            let space = w.model.units[u as usize % w.model.units.len()].name;
            let (st, report) = salt::resalt(&w.state, space, TIME, Some("property test".into()), None)
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            if checks.determinism {
                let (again, _) = salt::resalt(&w.state, space, TIME, Some("property test".into()), None)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                ensure!(again == st, "step {k}: the salt machine is not deterministic");
            }
            ensure!(
                report.frozen_buckets + report.resalted_buckets == u64::from(st.spaces[space].buckets),
                "step {k}: resalt report does not add up"
            );
            let ev = evaluate(&st, n);
            if checks.stability {
                // No unit of a running experiment changes anything.
                for id in running(&w.cfg, &w.state) {
                    ensure!(
                        w.eval.exps[&id] == ev.exps[&id],
                        "step {k}: the salt machine moved units of running experiment {id}"
                    );
                }
                check_resalt_classes(&w.state, &st, space, &w.eval, &ev).map_err(ctx)?;
            }
            if checks.exclusivity {
                check_exclusivity(&st, &w.cfg, &ev).map_err(ctx)?;
            }
            if checks.traffic {
                check_traffic(&st, &w.cfg, &ev, &HashSet::new()).map_err(ctx)?;
            }
            w.state = st;
            w.eval = ev;
            continue;
        }
        let mut m = w.model.clone();
        let expect = m.mutate(&step.change);
        let (cfg, raw) = match validate(&m) {
            Ok(x) => x,
            Err(es) => {
                // E.g. a holdout naming a removed experiment: a clear error, nothing applied.
                ensure_paths(&es).map_err(ctx)?;
                continue;
            }
        };
        let res = plan::apply(&w.state, &cfg, &raw, &opts(step.force));
        if checks.determinism {
            let again = plan::apply(&w.state, &cfg, &raw, &opts(step.force));
            ensure!(
                same_outcome(&res, &again),
                "step {k}: the same apply twice differs: {} vs {}",
                outcome(&res),
                outcome(&again)
            );
            if let Ok(p) = &res {
                let pl = plan::plan(&w.state, &cfg, &raw, &opts(step.force))
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                ensure!(pl.state == p.state, "step {k}: plan and apply record different states");
            }
        }
        // What change control must do.
        match (&res, step.force, expect) {
            (Err(ApplyError::Refused(p)), true, _) => {
                return Err(ctx(TestCaseError::fail(format!("a forced apply was refused: {:?}", p.refusals))))
            }
            (Err(ApplyError::Refused(p)), false, Expect::NotRefused) => {
                return Err(ctx(TestCaseError::fail(format!("an allowed change was refused: {:?}", p.refusals))))
            }
            (Ok(p), false, Expect::NotAccepted | Expect::Refused) => {
                return Err(ctx(TestCaseError::fail(format!(
                    "a change that moves units was accepted: changes {:?} impact {:?}",
                    p.changes, p.impact
                ))))
            }
            (Err(ApplyError::Invalid(es)), false, Expect::Refused) => {
                return Err(ctx(TestCaseError::fail(format!(
                    "a change that moves units failed instead of being refused: {es:?}"
                ))))
            }
            _ => {}
        }
        match res {
            Ok(p) => {
                if !step.force {
                    ensure!(p.refusals.is_empty(), "step {k}: accepted with refusals {:?}", p.refusals);
                }
                if checks.nothing_lost {
                    if let Some(last) = p.state.log.last().filter(|_| p.state.version > w.state.version) {
                        ensure!(
                            last.version == p.state.version,
                            "step {k}: log entry version {} != {}",
                            last.version,
                            p.state.version
                        );
                        ensure!(
                            last.forced == (step.force && !p.refusals.is_empty()),
                            "step {k}: log entry forced = {}",
                            last.forced
                        );
                    }
                    ensure!(
                        p.state.version == w.state.version || p.state.version == w.state.version + 1,
                        "step {k}: version jumps"
                    );
                    if matches!(step.change, Change::Reapply) {
                        ensure!(p.state == w.state, "step {k}: re-applying the same configuration changed the state");
                    }
                }
                let ev = evaluate(&p.state, n);
                if checks.stability {
                    if step.force && !p.refusals.is_empty() {
                        check_moved_share(&w, &cfg, &ev, &p).map_err(ctx)?;
                    } else {
                        check_stable(&w, &p.state, &cfg, &ev, Some(&p)).map_err(ctx)?;
                    }
                }
                if checks.exclusivity {
                    check_exclusivity(&p.state, &cfg, &ev).map_err(ctx)?;
                }
                if checks.traffic {
                    let before: HashSet<String> = running(&w.cfg, &w.state).into_iter().collect();
                    let started: HashSet<String> =
                        running(&cfg, &p.state).into_iter().filter(|id| !before.contains(id)).collect();
                    check_traffic(&p.state, &cfg, &ev, &started).map_err(ctx)?;
                }
                w = World { model: m, state: p.state, cfg, eval: ev };
            }
            Err(ApplyError::Refused(p)) => {
                ensure!(!p.refusals.is_empty(), "step {k}: refused without a refusal");
                // The refused plan's state is what forcing would record: it must keep the other
                // invariants too.
                if checks.stability || checks.exclusivity || checks.traffic {
                    let ev = evaluate(&p.state, n);
                    if checks.stability {
                        check_moved_share(&w, &cfg, &ev, &p).map_err(ctx)?;
                    }
                    if checks.exclusivity {
                        check_exclusivity(&p.state, &cfg, &ev).map_err(ctx)?;
                    }
                    if checks.traffic {
                        let before: HashSet<String> = running(&w.cfg, &w.state).into_iter().collect();
                        let started: HashSet<String> =
                            running(&cfg, &p.state).into_iter().filter(|id| !before.contains(id)).collect();
                        check_traffic(&p.state, &cfg, &ev, &started).map_err(ctx)?;
                    }
                }
                if checks.nothing_lost {
                    // The caller's state is untouched, and the refused plan previews exactly
                    // what forcing would record.
                    let snapshot = w.state.clone();
                    let forced = plan::apply(&w.state, &cfg, &raw, &opts(true));
                    ensure!(w.state == snapshot, "step {k}: apply changed the caller's state");
                    match forced {
                        Ok(f) => {
                            ensure!(
                                without_last_log(&f.state) == without_last_log(&p.state),
                                "step {k}: forcing records something else than the refused plan showed"
                            );
                            let last = f.state.log.last();
                            ensure!(
                                last.is_some_and(|l| l.forced && l.reason.is_some() && !l.overridden.is_empty()),
                                "step {k}: forced apply not recorded as forced: {last:?}"
                            );
                        }
                        Err(e) => {
                            return Err(ctx(TestCaseError::fail(format!(
                                "forcing a refused change failed: {}",
                                outcome(&Err(e))
                            ))))
                        }
                    }
                    let no_reason = plan::apply(
                        &w.state,
                        &cfg,
                        &raw,
                        &Options {
                            force: true,
                            reason: Some("  ".into()),
                            time: TIME.into(),
                            actor: None,
                            sticky_store: false,
                        },
                    );
                    ensure!(
                        matches!(&no_reason, Err(ApplyError::Invalid(es)) if es.iter().any(|e| e.path == "reason")),
                        "step {k}: --force without a reason: {}",
                        outcome(&no_reason)
                    );
                }
            }
            Err(ApplyError::Invalid(es)) => {
                ensure_paths(&es).map_err(ctx)?;
                if checks.nothing_lost {
                    let other = plan::apply(&w.state, &cfg, &raw, &opts(!step.force));
                    ensure!(
                        matches!(&other, Err(ApplyError::Invalid(x)) if *x == es),
                        "step {k}: forcing changes an invalid change's outcome: {}",
                        outcome(&other)
                    );
                }
            }
        }
    }
    if checks.determinism {
        check_determinism(&w.state, &w.eval)?;
    }
    Ok(w)
}
