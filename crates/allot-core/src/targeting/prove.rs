//! Targeting: disjointness prover.

use super::*;

/// An interval bound: the value and whether it is included.
pub(super) type Bound<T> = Option<(T, bool)>;

/// An interval of numbers or instants; no bounds means no constraint.
#[derive(Debug, Clone, Copy)]
pub(super) struct Interval<T> {
    lo: Bound<T>,
    hi: Bound<T>,
}

impl<T> Default for Interval<T> {
    fn default() -> Self {
        Interval { lo: None, hi: None }
    }
}

impl<T: PartialOrd + Copy> Interval<T> {
    pub(super) fn is_bounded(&self) -> bool {
        self.lo.is_some() || self.hi.is_some()
    }

    /// Both intervals at once (the tighter bounds).
    pub(super) fn intersect(self, other: Self) -> Self {
        let tighter = |a: Bound<T>, b: Bound<T>, lower: bool| -> Bound<T> {
            match (a, b) {
                (None, x) | (x, None) => x,
                (Some((x, xi)), Some((y, yi))) => {
                    if x == y {
                        Some((x, xi && yi))
                    } else if (x > y) == lower {
                        Some((x, xi))
                    } else {
                        Some((y, yi))
                    }
                }
            }
        };
        Interval { lo: tighter(self.lo, other.lo, true), hi: tighter(self.hi, other.hi, false) }
    }

    /// The smallest interval holding both (the looser bounds; unbounded if either is).
    pub(super) fn hull(self, other: Self) -> Self {
        let looser = |a: Bound<T>, b: Bound<T>, lower: bool| -> Bound<T> {
            match (a, b) {
                (Some((x, xi)), Some((y, yi))) => {
                    if x == y {
                        Some((x, xi || yi))
                    } else if (x < y) == lower {
                        Some((x, xi))
                    } else {
                        Some((y, yi))
                    }
                }
                _ => None,
            }
        };
        Interval { lo: looser(self.lo, other.lo, true), hi: looser(self.hi, other.hi, false) }
    }

    pub(super) fn is_empty(&self) -> bool {
        match (self.lo, self.hi) {
            (Some((lo, li)), Some((hi, hi_incl))) => lo > hi || (lo == hi && !(li && hi_incl)),
            _ => false,
        }
    }

    pub(super) fn contains(&self, x: T) -> bool {
        let above = match self.lo {
            Some((lo, incl)) => x > lo || (incl && x == lo),
            None => true,
        };
        let below = match self.hi {
            Some((hi, incl)) => x < hi || (incl && x == hi),
            None => true,
        };
        above && below
    }

    /// Whether a value whose coercion is `x` can satisfy the interval.
    pub(super) fn admits(&self, x: Option<T>) -> bool {
        !self.is_bounded() || x.is_some_and(|x| self.contains(x))
    }
}

/// A necessary condition on one attribute's value in every matching context: the conjunction
/// of its parts. Invariant: `allowed` or a bounded interval implies `present`.
#[derive(Debug, Clone, Default)]
pub(super) struct Constraint {
    /// Present and not null.
    present: bool,
    /// Missing (absent or null).
    absent: bool,
    /// A scalar equal to one of these.
    allowed: Option<Vec<Scalar>>,
    /// If present, equal to none of these.
    excluded: Vec<Scalar>,
    /// Coerces (as for `gt`) to a number in this interval.
    num: Interval<f64>,
    /// Coerces (as for `before`) to an instant in this interval.
    time: Interval<i128>,
}

pub(super) fn contains_scalar(list: &[Scalar], s: &Scalar) -> bool {
    list.iter().any(|x| scalar_eq(x, s))
}

impl Constraint {
    pub(super) fn present() -> Self {
        Constraint { present: true, ..Self::default() }
    }

    /// Both constraints at once.
    pub(super) fn meet(self, other: Constraint) -> Constraint {
        let allowed = match (self.allowed, other.allowed) {
            (Some(a), Some(b)) => Some(a.into_iter().filter(|s| contains_scalar(&b, s)).collect()),
            (a, None) => a,
            (None, b) => b,
        };
        let mut excluded = self.excluded;
        excluded.extend(other.excluded);
        Constraint {
            present: self.present || other.present,
            absent: self.absent || other.absent,
            allowed,
            excluded,
            num: self.num.intersect(other.num),
            time: self.time.intersect(other.time),
        }
    }

    /// One constraint or the other (over-approximated).
    pub(super) fn join(self, other: Constraint) -> Constraint {
        let allowed = match (self.allowed, other.allowed) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        let excluded = self.excluded.into_iter().filter(|s| contains_scalar(&other.excluded, s)).collect();
        Constraint {
            present: self.present && other.present,
            absent: self.absent && other.absent,
            allowed,
            excluded,
            num: self.num.hull(other.num),
            time: self.time.hull(other.time),
        }
    }

    /// False only if no value (nor a missing one) can satisfy the constraint.
    pub(super) fn satisfiable(&self) -> bool {
        if self.present && self.absent {
            return false;
        }
        if self.num.is_empty() || self.time.is_empty() {
            return false;
        }
        match &self.allowed {
            Some(candidates) => candidates.iter().any(|s| {
                let v = s.to_json();
                !contains_scalar(&self.excluded, s)
                    && self.num.admits(as_number(&v))
                    && self.time.admits(as_unix_nanos(&v))
            }),
            None => true,
        }
    }
}

/// Necessary per-attribute constraints of an expression; `None` when it can match no one.
pub(super) type Facts = Option<IndexMap<String, Constraint>>;

pub(super) fn single(attribute: &str, c: Constraint) -> Facts {
    let mut m = IndexMap::new();
    m.insert(attribute.to_string(), c);
    Some(m)
}

/// Facts that hold in every context where all of `parts` hold.
pub(super) fn meet_facts(parts: impl IntoIterator<Item = Facts>) -> Facts {
    let mut out: IndexMap<String, Constraint> = IndexMap::new();
    for part in parts {
        for (attr, c) in part? {
            let merged = match out.shift_remove(&attr) {
                Some(prev) => prev.meet(c),
                None => c,
            };
            out.insert(attr, merged);
        }
    }
    if out.values().all(Constraint::satisfiable) {
        Some(out)
    } else {
        None
    }
}

/// Facts that hold in every context where one of `parts` holds.
pub(super) fn join_facts(parts: impl IntoIterator<Item = Facts>) -> Facts {
    let mut acc: Option<IndexMap<String, Constraint>> = None;
    for part in parts.into_iter().flatten() {
        acc = Some(match acc {
            None => part,
            Some(mut prev) => {
                let mut next = IndexMap::new();
                for (attr, c) in part {
                    if let Some(p) = prev.shift_remove(&attr) {
                        next.insert(attr, p.join(c));
                    }
                }
                next
            }
        });
    }
    acc
}

/// Necessary facts of one operator of a criterion on `attribute`.
pub(super) fn operator_fact(op: &Operator) -> Constraint {
    let mut c = Constraint::present();
    let num = |lo: Bound<f64>, hi: Bound<f64>| Interval { lo, hi };
    match op {
        Operator::Eq(s) => c.allowed = Some(vec![s.clone()]),
        Operator::In(l) => c.allowed = Some(l.clone()),
        Operator::Ne(s) => c.excluded = vec![s.clone()],
        Operator::NotIn(l) => c.excluded = l.clone(),
        Operator::Gt(n) => c.num = num(Some((number_f64(n), false)), None),
        Operator::Gte(n) => c.num = num(Some((number_f64(n), true)), None),
        Operator::Lt(n) => c.num = num(None, Some((number_f64(n), false))),
        Operator::Lte(n) => c.num = num(None, Some((number_f64(n), true))),
        Operator::After(t) => c.time = Interval { lo: Some((t.unix_nanos, false)), hi: None },
        Operator::Before(t) => c.time = Interval { lo: None, hi: Some((t.unix_nanos, false)) },
        Operator::Exists(false) => c = Constraint { absent: true, ..Constraint::default() },
        _ => {}
    }
    c
}

/// Necessary facts of the negation of one operator of a criterion.
pub(super) fn negated_operator_fact(op: &Operator) -> Constraint {
    match op {
        Operator::Eq(s) => Constraint { excluded: vec![s.clone()], ..Constraint::default() },
        Operator::In(l) => Constraint { excluded: l.clone(), ..Constraint::default() },
        Operator::Exists(true) => Constraint { absent: true, ..Constraint::default() },
        Operator::Exists(false) => Constraint::present(),
        _ => Constraint::default(),
    }
}

pub(super) fn facts<'a>(
    t: &'a Targeting,
    negated: bool,
    segments: &'a IndexMap<String, Targeting>,
    stack: &mut Vec<&'a str>,
) -> Facts {
    match (t, negated) {
        (Targeting::All(cs), false) | (Targeting::Any(cs), true) => {
            let parts: Vec<Facts> = cs.iter().map(|c| facts(c, negated, segments, stack)).collect();
            meet_facts(parts)
        }
        (Targeting::Any(cs), false) | (Targeting::All(cs), true) => {
            let parts: Vec<Facts> = cs.iter().map(|c| facts(c, negated, segments, stack)).collect();
            join_facts(parts)
        }
        (Targeting::Not(c), _) => facts(c, !negated, segments, stack),
        (Targeting::Segment(name), _) => match segments.get(name) {
            Some(def) if !stack.contains(&name.as_str()) => {
                stack.push(name);
                let f = facts(def, negated, segments, stack);
                stack.pop();
                f
            }
            _ => Some(IndexMap::new()),
        },
        (Targeting::Criterion(c), false) => {
            meet_facts(c.operators.iter().map(|op| single(&c.attribute, operator_fact(op))))
        }
        (Targeting::Criterion(c), true) => {
            join_facts(c.operators.iter().map(|op| single(&c.attribute, negated_operator_fact(op))))
        }
    }
}

/// Why two expressions can never match the same unit, using only what a unit never changes:
/// the attributes (of `stable`) whose constraints on the two sides cannot both hold, or an
/// empty list when one side matches no context at all. `None` when this cannot be shown.
///
/// Exclusive experiments may share buckets only on this proof: a proof that rests on an
/// attribute a unit can change (`plan: free` vs `plan: paid`) would put every unit that
/// upgrades into both experiments.
pub fn disjoint_on(
    a: &Targeting,
    b: &Targeting,
    segments: &IndexMap<String, Targeting>,
    stable: &[String],
) -> Option<Vec<String>> {
    Necessary::of(a, segments).disjoint_on(&Necessary::of(b, segments), stable)
}

/// What every context an expression matches must satisfy, per attribute (the prover's facts),
/// computed once per expression so that comparing many pairs costs no re-derivation.
#[derive(Debug, Clone)]
pub struct Necessary(Facts);

impl Necessary {
    /// The necessary conditions of `t` with `segments` inlined.
    pub fn of(t: &Targeting, segments: &IndexMap<String, Targeting>) -> Necessary {
        Necessary(facts(t, false, segments, &mut Vec::new()))
    }

    /// See [`disjoint_on`].
    pub fn disjoint_on(&self, other: &Necessary, stable: &[String]) -> Option<Vec<String>> {
        let (Some(fa), Some(fb)) = (&self.0, &other.0) else { return Some(vec![]) };
        let attrs: Vec<String> = fa
            .iter()
            .filter(|(attr, _)| stable.contains(attr))
            .filter_map(|(attr, ca)| {
                let cb = fb.get(attr)?;
                (!ca.clone().meet(cb.clone()).satisfiable()).then(|| attr.clone())
            })
            .collect();
        (!attrs.is_empty()).then_some(attrs)
    }
}

/// A sound but incomplete prover: true only if NO context can match both `a` and `b` (with
/// `segments` inlined). When unsure it returns false.
///
/// Each side is reduced to necessary per-attribute constraints (allowed values from `eq`/`in`,
/// excluded values from `ne`/`not_in`/`not eq`/`not in`, numeric and timestamp intervals,
/// presence from any criterion and absence from `exists: false`); `any` keeps only what all of
/// its branches constrain. The sides are disjoint when either can match no one (e.g.
/// `{any: []}`) or some attribute's combined constraints cannot all hold.
pub fn provably_disjoint(a: &Targeting, b: &Targeting, segments: &IndexMap<String, Targeting>) -> bool {
    let fa = facts(a, false, segments, &mut Vec::new());
    let fb = facts(b, false, segments, &mut Vec::new());
    meet_facts([fa, fb]).is_none()
}
