use super::*;

// ---------------------------------------------------------------------------------------------
// Evaluating the population
// ---------------------------------------------------------------------------------------------

/// One experiment's results over the population.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExpResults {
    pub(super) names: Vec<String>,
    pub(super) res: Vec<Assignment>,
}

impl ExpResults {
    /// The variant name and reason of unit `i`.
    pub(super) fn at(&self, i: usize) -> (Option<&str>, Reason) {
        let a = self.res[i];
        (a.variant.map(|v| self.names[v as usize].as_str()), a.reason)
    }
}

/// Every experiment's results, and every unit's bucket per space, over the first `n` units.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Eval {
    pub(super) n: usize,
    pub(super) exps: IndexMap<String, ExpResults>,
    pub(super) buckets: IndexMap<String, Vec<u32>>,
}

pub(super) fn compile(state: &State) -> Snapshot {
    match Snapshot::compile(state) {
        Ok(s) => s,
        Err(e) => panic!("a recorded state does not compile: {e:?}"),
    }
}

/// The evaluation of `snap` over the first `n` contexts, **as if no experiment were paused**
/// (what resuming serves: every invariant — stability, exclusivity, traffic — is checked on it,
/// so a pause or a resume that moved a unit fails them). Pausing itself is checked here: a paused
/// experiment gives every unit `PAUSED` and no variant, one that requires it (directly or not)
/// gets no more than it would unpaused, and every other experiment gives exactly what it gives
/// unpaused.
pub(super) fn evaluate_snapshot(snap: &Snapshot, n: usize) -> Eval {
    let mut unpaused = snap.clone();
    unpaused.experiments.iter_mut().for_each(|e| e.paused = false);
    let eval = evaluate_unpaused(&unpaused, n);
    if snap.experiments.iter().any(|e| e.paused) {
        let ctxs = &contexts()[..n];
        let mut out = vec![];
        let mut free = vec![];
        for ctx in ctxs {
            snap.evaluate_all(ctx, &NoSticky, &mut out);
            unpaused.evaluate_all(ctx, &NoSticky, &mut free);
            for (i, e) in snap.experiments.iter().enumerate() {
                if e.paused && e.running {
                    assert_eq!(out[i], Assignment { variant: None, reason: Reason::Paused }, "{} is paused", e.id);
                } else if out[i] != free[i] {
                    assert!(
                        out[i].variant.is_none() && out[i].reason == Reason::PrerequisiteFailed,
                        "{}: {:?} paused, {:?} unpaused: only a prerequisite that is paused may change it",
                        e.id,
                        out[i],
                        free[i]
                    );
                }
            }
        }
    }
    eval
}

fn evaluate_unpaused(snap: &Snapshot, n: usize) -> Eval {
    let ctxs = &contexts()[..n];
    let mut per: Vec<Vec<Assignment>> = vec![Vec::with_capacity(n); snap.experiments.len()];
    let mut out = vec![];
    for ctx in ctxs {
        snap.evaluate_all(ctx, &NoSticky, &mut out);
        for (i, a) in out.iter().enumerate() {
            per[i].push(*a);
        }
    }
    let exps = snap
        .experiments
        .iter()
        .zip(per)
        .map(|(e, res)| (e.id.clone(), ExpResults { names: e.split.names.clone(), res }))
        .collect();
    let buckets = snap
        .spaces
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                ctxs.iter().map(|c| s.bucket(c.get(&s.attribute).and_then(Value::as_str).unwrap_or("-"))).collect(),
            )
        })
        .collect();
    Eval { n, exps, buckets }
}

pub(super) fn evaluate(state: &State, n: usize) -> Eval {
    evaluate_snapshot(&compile(state), n)
}

pub(super) fn unit_id(cfg: &Config, unit: &str, i: usize) -> String {
    let attr = &cfg.units[unit].attribute;
    contexts()[i][attr].as_str().unwrap_or_default().to_string()
}

/// Whether unit `i` is individually included in experiment `id` under `cfg`.
pub(super) fn included(cfg: &Config, id: &str, i: usize) -> bool {
    cfg.experiments.get(id).is_some_and(|e| !e.include.is_empty() && e.include.contains_key(&unit_id(cfg, &e.unit, i)))
}

pub(super) fn running(cfg: &Config, state: &State) -> Vec<String> {
    cfg.experiments
        .iter()
        .filter(|(id, e)| e.state == ExpState::Running && state.live(OwnerKind::Experiment, id).is_some())
        .map(|(id, _)| id.clone())
        .collect()
}

pub(super) fn live(state: &State, kind: OwnerKind, id: &str) -> Option<BucketBitmap> {
    state.live(kind, id).map(|a| a.current())
}

/// Whether exclusive experiments `a` and `b` may share buckets: their targeting is provably
/// disjoint and the one attribute the generator targets, `country`, is declared stable for
/// their unit type (sharing on a mutable attribute would put a unit that changes it in both).
pub(super) fn targeting_disjoint(cfg: &Config, a: &str, b: &str) -> bool {
    let (ea, eb) = (&cfg.experiments[a], &cfg.experiments[b]);
    let stable = cfg.units[&ea.unit].stable.iter().any(|s| s == "country");
    match (&ea.targeting, &eb.targeting) {
        (Some(x), Some(y)) => stable && provably_disjoint(x, y, &cfg.segments),
        _ => false,
    }
}

/// The union of the live holdouts that apply to `id`.
pub(super) fn held_for(state: &State, cfg: &Config, id: &str) -> BucketBitmap {
    let b = state.spaces[&cfg.experiments[id].unit].buckets;
    let mut held = BucketBitmap::empty(b);
    for (name, h) in &cfg.holdouts {
        if cfg.holdout_applies(h, id) {
            if let Some(a) = live(state, OwnerKind::Holdout, name) {
                held.union_with(&a);
            }
        }
    }
    held
}

/// The buckets of an experiment's slots (the whole space outside groups).
pub(super) fn within(state: &State, cfg: &Config, id: &str) -> BucketBitmap {
    let e = &cfg.experiments[id];
    let b = state.spaces[&e.unit].buckets;
    let mut w = BucketBitmap::full(b);
    for g in &e.groups {
        let mut slots = BucketBitmap::empty(b);
        for &i in &g.slots {
            if let Some(s) = live(state, OwnerKind::Slot, &State::slot_id(&g.group, i)) {
                slots.union_with(&s);
            }
        }
        w.intersect_with(&slots);
    }
    w
}

/// `k` successes in `n` trials are within [`SIGMAS`] of probability `p` (plus one unit of slack
/// for the granularity of small samples).
pub(super) fn within_tolerance(k: usize, n: usize, p: f64) -> bool {
    let (k, n) = (k as f64, n as f64);
    (k - n * p).abs() <= SIGMAS * (n * p * (1.0 - p)).sqrt() + 1.0
}
