use super::*;

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// Which invariants a run checks.
#[derive(Clone, Copy, Default)]
pub(super) struct Checks {
    pub(super) determinism: bool,
    pub(super) exclusivity: bool,
    pub(super) stability: bool,
    pub(super) traffic: bool,
    pub(super) nothing_lost: bool,
}

pub(super) type Check = Result<(), TestCaseError>;

/// A re-salt moves a unit only within its class: no live allocation (running experiment,
/// holdout, group, slot) gains or loses a unit, and the classes are the recorded ones. It is
/// also effective: in classes of at least 128 buckets, most sampled units change bucket.
pub(super) fn check_resalt_classes(
    before: &State,
    after: &State,
    space: &str,
    eb: &Eval,
    ea: &Eval,
) -> Result<(), TestCaseError> {
    let Some(r) = after.spaces[space].resalts.last() else { return Err(TestCaseError::fail("no re-salt recorded")) };
    let buckets = after.spaces[space].buckets;
    let class = salt::classes_of(after, r, buckets).ok_or_else(|| TestCaseError::fail("a new re-salt has classes"))?;
    let mut size: HashMap<u32, u64> = HashMap::new();
    for &c in &class {
        *size.entry(c).or_default() += 1;
    }
    let live: Vec<(String, BucketBitmap)> = before
        .allocations
        .iter()
        .filter(|a| a.is_live() && a.space == space)
        .map(|a| (format!("{:?} {}", a.kind, a.owner), a.current()))
        .collect();
    let (mut big, mut moved) = (0u64, 0u64);
    for (i, (&x, &y)) in eb.buckets[space].iter().zip(&ea.buckets[space]).enumerate() {
        ensure!(class[x as usize] == class[y as usize], "unit {i} left its class: bucket {x} → {y}");
        for (who, set) in &live {
            ensure!(set.contains(x) == set.contains(y), "the re-salt moved unit {i} into or out of {who} ({x} → {y})");
        }
        if size[&class[x as usize]] >= 128 {
            big += 1;
            moved += u64::from(x != y);
        }
    }
    // Each such unit stays put with probability ≤ 1/128: fewer than half moving is a broken machine.
    ensure!(big < 40 || 2 * moved >= big, "only {moved} of {big} sampled units in large classes changed bucket");
    Ok(())
}

/// Invariant 2, on the bucket sets, the audit, the slots and the population.
pub(super) fn check_exclusivity(state: &State, cfg: &Config, ev: &Eval) -> Check {
    let run = running(cfg, state);
    let sets: HashMap<&String, BucketBitmap> =
        run.iter().filter_map(|id| live(state, OwnerKind::Experiment, id).map(|s| (id, s))).collect();
    for (i, a) in run.iter().enumerate() {
        for b in &run[i + 1..] {
            if cfg.exclusive(a, b) && !targeting_disjoint(cfg, a, b) {
                let shared = sets[a].intersection_len(&sets[b]);
                ensure!(shared == 0, "exclusive experiments {a} and {b} share {shared} buckets");
            }
        }
        // A group reserves its whole share from experiments in its scope that are not members.
        let e = &cfg.experiments[a];
        for (name, g) in &cfg.groups {
            if e.groups.iter().any(|r| &r.group == name) || !cfg.in_group_scope(e, g) {
                continue;
            }
            if let Some(gs) = live(state, OwnerKind::Group, name) {
                let inside = sets[a].intersection_len(&gs);
                ensure!(inside == 0, "{a} is not in group {name} but holds {inside} of its buckets");
            }
        }
        if !cfg.experiments[a].groups.is_empty() {
            let w = within(state, cfg, a);
            let outside = sets[a].len() - sets[a].intersection_len(&w);
            ensure!(outside == 0, "group member {a} holds {outside} buckets outside its slots");
        }
    }
    // Groups that share a surface share no bucket.
    let groups: Vec<(&String, &config::Group)> = cfg.groups.iter().collect();
    for (i, (g, gc)) in groups.iter().enumerate() {
        for (h, hc) in &groups[i + 1..] {
            if gc.unit == hc.unit && gc.surfaces.iter().any(|s| hc.surfaces.contains(s)) {
                if let (Some(a), Some(b)) = (live(state, OwnerKind::Group, g), live(state, OwnerKind::Group, h)) {
                    ensure!(a.intersection_len(&b) == 0, "groups {g} and {h} share a surface and buckets");
                }
            }
        }
    }
    let au = audit(state, cfg);
    ensure!(au.violations.is_empty(), "audit violations: {:?}", au.violations);
    // The population: no unit is ASSIGNED (or STICKY) in two exclusive experiments.
    let ids: Vec<&String> = ev.exps.keys().collect();
    for u in 0..ev.n {
        let with: Vec<&String> = ids
            .iter()
            .filter(|id| {
                let r = ev.exps[**id].res[u];
                r.variant.is_some() && r.reason != Reason::Included
            })
            .copied()
            .collect();
        for (i, a) in with.iter().enumerate() {
            for b in &with[i + 1..] {
                ensure!(!cfg.exclusive(a, b), "unit u{u} is assigned in both exclusive experiments {a} and {b}");
            }
        }
    }
    Ok(())
}

/// Invariant 4: exact traffic from the audit, each sampled unit's reason agrees with the bucket
/// sets, and the sampled reach agrees with the exact one.
pub(super) fn check_traffic(state: &State, cfg: &Config, ev: &Eval, started: &HashSet<String>) -> Check {
    let au = audit(state, cfg);
    // The exclusive pairs alone (the console's overview) are the exclusivity proof of the whole
    // audit: the same pairs, the same violations; and each experiment's overlaps asked on their
    // own are the whole audit's pairs with it.
    let proof = allot_core::audit::audit_pairs(state, cfg, allot_core::audit::Pairs::Exclusive);
    let exclusive: Vec<String> = au.overlaps.iter().filter(|o| o.exclusive).map(|o| format!("{o:?}")).collect();
    let listed: Vec<String> = proof.overlaps.iter().map(|o| format!("{o:?}")).collect();
    ensure!(listed == exclusive, "the exclusive pairs differ: {listed:?} vs {exclusive:?}");
    ensure!(proof.violations == au.violations, "violations differ: {:?} vs {:?}", proof.violations, au.violations);
    for id in au.experiments.keys() {
        let with: Vec<String> =
            au.overlaps.iter().filter(|o| o.a == *id || o.b == *id).map(|o| format!("{o:?}")).collect();
        let asked: Vec<String> =
            allot_core::audit::overlaps_with(state, cfg, id).iter().map(|o| format!("{o:?}")).collect();
        ensure!(asked == with, "{id}'s overlaps asked alone differ: {asked:?} vs {with:?}");
    }
    for id in running(cfg, state) {
        let e = &cfg.experiments[&id];
        let b = state.spaces[&e.unit].buckets;
        let a = &au.experiments[&id];
        let set = live(state, OwnerKind::Experiment, &id).unwrap_or_else(|| BucketBitmap::empty(b));
        ensure!(a.buckets == set.len(), "{id}: audit says {} buckets, the allocation holds {}", a.buckets, set.len());
        let held = held_for(state, cfg, &id);
        let mut reach = set.clone();
        reach.subtract(&held);
        ensure!(a.reach_buckets == reach.len(), "{id}: audit reach {} != {}", a.reach_buckets, reach.len());
        match e.share {
            Some(s) => {
                let want = s.buckets(u64::from(b)).unwrap_or(u64::MAX);
                ensure!(a.buckets == want, "{id}: holds {} buckets, configured {want}", a.buckets);
                ensure!(
                    a.reach_buckets == want,
                    "{id}: reaches {} buckets (holdouts not avoided), configured {want}",
                    a.reach_buckets
                );
            }
            None if started.contains(&id) => {
                // Newly started without a share: all of its slots, exactly (a shorter reach is
                // refused, never accepted at less).
                let want = within(state, cfg, &id);
                ensure!(set == want, "{id}: holds {} buckets, its slots have {}", set.len(), want.len());
            }
            None => {}
        }
        // Every sampled unit's reason follows from its bucket; its variant from the split.
        let r = &ev.exps[&id];
        let buckets = &ev.buckets[&e.unit];
        let total: u64 = e.variants.values().map(|v| u64::from(v.weight)).sum::<u64>().max(1);
        let mut reached = 0usize;
        let mut counted = 0usize;
        for (u, &bk) in buckets.iter().enumerate().take(ev.n) {
            if included(cfg, &id, u) {
                continue;
            }
            counted += 1;
            let (variant, reason) = r.at(u);
            let want = if held.contains(bk) {
                Reason::Holdout
            } else if !set.contains(bk) {
                Reason::NotAllocated
            } else {
                reached += 1;
                let matches = match &e.targeting {
                    None => true,
                    Some(_) => {
                        let cs = targeting_countries(cfg, e);
                        cs.contains(&country(u))
                    }
                };
                if matches {
                    Reason::Assigned
                } else {
                    Reason::TargetingMiss
                }
            };
            ensure!(reason == want, "{id}: unit u{u} (bucket {bk}) got {reason:?}, its bucket says {want:?}");
            if reason == Reason::Assigned {
                let h = u64::from(hash::bucket(&e.salt, &unit_id(cfg, &e.unit, u), 1_000_000));
                let mut cum = 0u64;
                let mut want_v = e.variants.len() - 1;
                for (k, v) in e.variants.values().enumerate() {
                    cum += u64::from(v.weight);
                    if h < cum * 1_000_000 / total {
                        want_v = k;
                        break;
                    }
                }
                ensure!(
                    variant == Some(e.variants.get_index(want_v).map_or("", |(n, _)| n.as_str())),
                    "{id}: unit u{u} got variant {variant:?}, the split says {want_v}"
                );
            }
        }
        ensure!(
            within_tolerance(reached, counted, a.reach),
            "{id}: {reached} of {counted} sampled units reached, exact reach {}",
            a.reach
        );
    }
    for (name, h) in &cfg.holdouts {
        let b = state.spaces[&h.unit].buckets;
        let want = h.share.buckets(u64::from(b)).unwrap_or(u64::MAX);
        ensure!(
            au.holdouts[name].buckets == want,
            "holdout {name}: {} buckets, configured {want}",
            au.holdouts[name].buckets
        );
    }
    for (name, g) in &cfg.groups {
        let b = state.spaces[&g.unit].buckets;
        let gb = g.share.buckets(u64::from(b)).unwrap_or(u64::MAX);
        let ga = &au.groups[name];
        ensure!(ga.buckets == gb, "group {name}: {} buckets, configured {gb}", ga.buckets);
        let all = live(state, OwnerKind::Group, name).unwrap_or_else(|| BucketBitmap::empty(b));
        let mut seen = BucketBitmap::empty(b);
        for (i, s) in g.slots.iter().enumerate() {
            let want = s.buckets(gb).unwrap_or(u64::MAX);
            ensure!(
                ga.slots[i].buckets == want,
                "group {name} slot {}: {} buckets, configured {want}",
                i + 1,
                ga.slots[i].buckets
            );
            let slot = live(state, OwnerKind::Slot, &State::slot_id(name, i)).unwrap_or_else(|| BucketBitmap::empty(b));
            ensure!(slot.intersection_len(&all) == slot.len(), "group {name} slot {} is not inside the group", i + 1);
            ensure!(slot.intersection_len(&seen) == 0, "group {name} slot {} overlaps an earlier slot", i + 1);
            seen.union_with(&slot);
        }
    }
    Ok(())
}

/// The countries of an experiment's targeting (the generator only writes `country in [...]`,
/// or a segment that does).
pub(super) fn targeting_countries(cfg: &Config, e: &config::Experiment) -> Vec<&'static str> {
    let mut text = e.targeting.as_ref().map(|t| t.to_json().to_string()).unwrap_or_default();
    for (name, seg) in &cfg.segments {
        if text.contains(&format!("\"segment\":\"{name}\"")) {
            text.push_str(&seg.to_json().to_string());
        }
    }
    COUNTRIES.iter().copied().filter(|c| text.contains(&format!("\"{c}\""))).collect()
}

/// Invariant 3 for an accepted non-forced change: kept allocations only grow, nothing is
/// reported moved, and no sampled unit of a running experiment changes its assignment except
/// by joining a grown allocation (or a holdout added over units the experiment did not hold).
pub(super) fn check_stable(old: &World, st: &State, cfg: &Config, ev: &Eval, plan: Option<&Plan>) -> Check {
    for id in running(&old.cfg, &old.state) {
        let (Some(o), Some(n)) = (old.cfg.experiments.get(&id), cfg.experiments.get(&id)) else { continue };
        if n.state != ExpState::Running || o.unit != n.unit {
            continue;
        }
        let before = live(&old.state, OwnerKind::Experiment, &id).unwrap_or_else(|| BucketBitmap::empty(1));
        let after = live(st, OwnerKind::Experiment, &id);
        ensure!(after.is_some(), "{id}: running before and after but lost its allocation");
        let after = after.unwrap_or_else(|| BucketBitmap::empty(1));
        let lost = before.len() - before.intersection_len(&after);
        ensure!(lost == 0, "{id}: lost {lost} of its {} buckets in an accepted change", before.len());
        if let Some(p) = plan {
            let imp = p.impact.get(&id);
            ensure!(imp.is_some(), "{id}: no impact reported for a running experiment");
            let m = imp.map_or(1.0, |i| i.moved_share);
            ensure!(m == 0.0, "{id}: accepted change reports moved_share {m}");
        }
        let (Some(ro), Some(rn)) = (old.eval.exps.get(&id), ev.exps.get(&id)) else { continue };
        for u in 0..ev.n.min(old.eval.n) {
            if included(&old.cfg, &id, u) || included(cfg, &id, u) {
                continue;
            }
            let (a, b) = (ro.at(u), rn.at(u));
            let ok = match a.1 {
                Reason::Assigned | Reason::Holdout => a == b,
                Reason::NotAllocated => {
                    let bk = ev.buckets[&n.unit][u];
                    b.1 == Reason::NotAllocated
                        || (matches!(b.1, Reason::Assigned | Reason::TargetingMiss)
                            && after.contains(bk)
                            && !before.contains(bk))
                        || (b.1 == Reason::Holdout && !before.contains(bk))
                }
                _ => true,
            };
            ensure!(ok, "{id}: unit u{u} moved from {a:?} to {b:?} in an accepted change");
        }
    }
    // Holdouts are fixed once drawn.
    for (name, _) in &old.cfg.holdouts {
        if let (Some(a), Some(b)) = (live(&old.state, OwnerKind::Holdout, name), live(st, OwnerKind::Holdout, name)) {
            ensure!(a == b, "holdout {name} changed its buckets in an accepted change");
        }
    }
    Ok(())
}

/// Invariant 3, the other way round: for a refused (or forced) change, each running
/// experiment's reported moved share matches the share of its sampled ASSIGNED units that move.
pub(super) fn check_moved_share(old: &World, cfg: &Config, ev: &Eval, plan: &Plan) -> Check {
    for (id, imp) in &plan.impact {
        let (Some(o), Some(n)) = (old.cfg.experiments.get(id), cfg.experiments.get(id)) else { continue };
        let inline =
            |t: &Option<allot_core::targeting::Targeting>, c: &Config| t.as_ref().map(|t| t.inline(&c.segments));
        if inline(&o.targeting, &old.cfg) != inline(&n.targeting, cfg) {
            continue; // its effect depends on the population; reported as `targeting_changed`
        }
        if old.cfg.units[&o.unit].attribute != cfg.units[&n.unit].attribute {
            continue; // every unit id is read from elsewhere: the moved share is the population's
        }
        let (Some(ro), Some(rn)) = (old.eval.exps.get(id), ev.exps.get(id)) else { continue };
        let (mut n_assigned, mut moved) = (0usize, 0usize);
        for u in 0..ev.n.min(old.eval.n) {
            if included(&old.cfg, id, u) || included(cfg, id, u) {
                continue;
            }
            let a = ro.at(u);
            if a.1 == Reason::Assigned {
                n_assigned += 1;
                if rn.at(u) != a {
                    moved += 1;
                }
            }
        }
        let p = imp.moved_share;
        ensure!((0.0..=1.0).contains(&p), "{id}: moved_share {p} out of range");
        if p == 0.0 {
            ensure!(moved == 0, "{id}: reported moved_share 0 but {moved} of {n_assigned} sampled units moved");
        } else if p == 1.0 {
            ensure!(
                moved == n_assigned,
                "{id}: reported moved_share 1 but only {moved} of {n_assigned} sampled units moved"
            );
        } else {
            ensure!(
                within_tolerance(moved, n_assigned, p),
                "{id}: reported moved_share {p} but {moved} of {n_assigned} sampled units moved ({:?})",
                imp
            );
        }
    }
    Ok(())
}

/// Invariant 1: a state's snapshot answers the same twice, after a JSON round trip, and one
/// experiment at a time.
pub(super) fn check_determinism(state: &State, ev: &Eval) -> Check {
    let again = evaluate(state, ev.n);
    ensure!(again == *ev, "compiling the same state twice gives different results");
    let text = serde_json::to_string(state).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = State::from_json(&text).map_err(TestCaseError::fail)?;
    ensure!(back == *state, "the state does not survive a JSON round trip");
    ensure!(evaluate(&back, ev.n) == *ev, "the JSON round trip changes results");
    // `ev` is the evaluation as if nothing were paused (`evaluate_snapshot`); so is this one.
    let mut snap = compile(state);
    snap.experiments.iter_mut().for_each(|e| e.paused = false);
    for (i, e) in snap.experiments.iter().enumerate() {
        for u in (0..ev.n).step_by(7) {
            let one = snap.evaluate_one(i, &contexts()[u], &NoSticky);
            ensure!(one == ev.exps[&e.id].res[u], "{}: evaluate_one {one:?} != evaluate_all for u{u}", e.id);
        }
    }
    Ok(())
}

pub(super) fn plan_json(p: &Plan) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

pub(super) fn same_outcome(a: &Result<Plan, ApplyError>, b: &Result<Plan, ApplyError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x.state == y.state && plan_json(x) == plan_json(y),
        (Err(ApplyError::Refused(x)), Err(ApplyError::Refused(y))) => {
            x.state == y.state && plan_json(x) == plan_json(y)
        }
        (Err(ApplyError::Invalid(x)), Err(ApplyError::Invalid(y))) => x == y,
        _ => false,
    }
}

pub(super) fn outcome(r: &Result<Plan, ApplyError>) -> String {
    match r {
        Ok(p) => format!("Ok(refusals {:?})", p.refusals),
        Err(ApplyError::Refused(p)) => format!("Refused({:?})", p.refusals),
        Err(ApplyError::Invalid(e)) => format!("Invalid({e:?})"),
    }
}

/// The state without its last log entry (to compare a refused plan's preview with the forced
/// apply that records it).
pub(super) fn without_last_log(s: &State) -> State {
    let mut s = s.clone();
    s.log.pop();
    s
}
