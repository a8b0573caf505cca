//! When experiments ran, and whether two of them ever ran at the same time.
//!
//! Two exclusive experiments whose units overlap are a violation only if they ran at once: when
//! one stopped and the next started on its buckets (bucket reuse), the units of the first are
//! expected to show up in the second. `allot analyze` describes each experiment by its
//! [`Runs`] on up to four axes and asks [`ran_together`] about each pair and, for a pair that did
//! run together, [`reused_after_stop`] about each unit seen in both.
//!
//! The axes, most precise first (the first one known for both experiments decides):
//!
//! 1. [`Basis::State`]: the recorded state's allocations, `[version drawn, version released)`.
//!    Exact: at the version an experiment is stopped its buckets are free, so the next one may
//!    draw them at that very version without the two ever running together.
//! 2. [`Basis::Versions`]: the configuration versions the exposures were evaluated at, first to
//!    last seen (open-ended while the configuration says the experiment runs). Preferred to times
//!    because a version is the configuration the unit was evaluated at: with several nodes, the
//!    old version is still served for a moment after a commit, so exposure times of a stopped
//!    experiment and of its successor may interleave by that moment while their versions do not.
//! 3. [`Basis::ExposureTimes`]: the exposures' own times, first to last seen (open-ended while
//!    the configuration says the experiment runs). Closed at both ends: two experiments seen in
//!    the same second count as having run together.
//! 4. [`Basis::Unknown`]: nothing to tell; assumed to have run together (a false "never together"
//!    would hide a violation, a false "together" only reports one to look at).
//!
//! Everything here is pure: times are seconds since the epoch, versions are configuration
//! versions, both given by the caller.

use serde::Serialize;

/// What decided whether two experiments ran at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The recorded state's allocations, in configuration versions.
    State,
    /// The configuration versions of the exposures.
    Versions,
    /// The times of the exposures.
    ExposureTimes,
    /// Nothing: assumed to have run together.
    Unknown,
}

impl Basis {
    /// How the report says it, after "by".
    pub fn describe(self) -> &'static str {
        match self {
            Basis::State => "the recorded state",
            Basis::Versions => "the configuration versions of their exposures",
            Basis::ExposureTimes => "the times of their exposures",
            Basis::Unknown => "nothing (no state, versions or times): assumed together",
        }
    }
}

/// How an interval ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End<T> {
    /// Still running.
    Open,
    /// Ran until just before this point (a recorded release).
    Before(T),
    /// Ran up to and including this point (the last exposure seen).
    At(T),
}

/// One interval during which an experiment ran: from `start` (included) to `end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval<T> {
    /// First point at which it ran.
    pub start: T,
    /// How it ends.
    pub end: End<T>,
}

impl<T: PartialOrd + Copy> Interval<T> {
    /// A recorded interval `[start, end)`; `None` while running.
    pub fn recorded(start: T, end: Option<T>) -> Interval<T> {
        Interval { start, end: end.map_or(End::Open, End::Before) }
    }

    /// An observed interval `[first, last]`, open-ended when it is known to be running still.
    pub fn seen(first: T, last: T, running: bool) -> Interval<T> {
        Interval { start: first, end: if running { End::Open } else { End::At(last) } }
    }

    /// Whether it was running at `t` or later: `t` is before its end.
    fn reaches(&self, t: T) -> bool {
        match self.end {
            End::Open => true,
            End::Before(e) => t < e,
            End::At(e) => t <= e,
        }
    }

    /// Whether the two intervals share a point.
    pub fn overlaps(&self, other: &Interval<T>) -> bool {
        self.reaches(other.start) && other.reaches(self.start)
    }
}

/// Whether some interval of `a` shares a point with some interval of `b`.
pub fn overlap<T: PartialOrd + Copy>(a: &[Interval<T>], b: &[Interval<T>]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.overlaps(y)))
}

/// Whether every interval of `runs` had ended by `t` (so it did not run at `t` or after). Empty
/// `runs` say nothing: false.
pub fn stopped_by<T: PartialOrd + Copy>(runs: &[Interval<T>], t: T) -> bool {
    !runs.is_empty() && runs.iter().all(|r| !r.reaches(t))
}

/// When one experiment ran, on each axis known for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs {
    /// From the recorded state, in versions: `None` when the state does not know the experiment.
    pub state_versions: Option<Vec<Interval<u64>>>,
    /// The same intervals in seconds, when the change log gives the time of every version used.
    pub state_times: Option<Vec<Interval<f64>>>,
    /// First to last configuration version of its exposures, when they carry versions.
    pub seen_versions: Option<Interval<u64>>,
    /// First to last time of its exposures, when they carry times.
    pub seen_times: Option<Interval<f64>>,
}

/// Whether two experiments ran at the same time, and what decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Together {
    /// What decided.
    pub basis: Basis,
    /// Whether they ran at the same time (true when the basis is [`Basis::Unknown`]).
    pub overlapped: bool,
}

/// Whether `a` and `b` ever ran at the same time, on the most precise axis known for both.
pub fn ran_together(a: &Runs, b: &Runs) -> Together {
    let (basis, overlapped) = if let (Some(x), Some(y)) = (&a.state_versions, &b.state_versions) {
        (Basis::State, overlap(x, y))
    } else if let (Some(x), Some(y)) = (&a.seen_versions, &b.seen_versions) {
        (Basis::Versions, x.overlaps(y))
    } else if let (Some(x), Some(y)) = (&a.seen_times, &b.seen_times) {
        (Basis::ExposureTimes, x.overlaps(y))
    } else {
        (Basis::Unknown, true)
    };
    Together { basis, overlapped }
}

/// One unit's exposures to one experiment: first and last configuration version and time, when
/// the exposures carry them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    /// First and last version.
    pub versions: Option<(u64, u64)>,
    /// First and last time, in seconds.
    pub times: Option<(f64, f64)>,
}

/// Whether a unit seen in `a` (as `ua`) and in `b` (as `ub`) was reused after a stop: the unit
/// saw one of them only before it first saw the other, and that one had stopped by then. For two
/// experiments that ran together for a while, this tells the units that came to the second one
/// when the first stopped (bucket reuse) from those that were in both at once (a violation).
/// Decided on the most precise axis known for both experiments and for the unit (its verdict
/// stands, a less precise axis is not asked); `None` when that axis shows no reuse, or no axis
/// is known.
pub fn reused_after_stop(a: &Runs, ua: &Seen, b: &Runs, ub: &Seen) -> Option<Basis> {
    fn after<T: PartialOrd + Copy>(x: &[Interval<T>], ux: (T, T), y: &[Interval<T>], uy: (T, T)) -> bool {
        (ux.1 < uy.0 && stopped_by(x, uy.0)) || (uy.1 < ux.0 && stopped_by(y, ux.0))
    }
    let verdict = |basis: Basis, reused: bool| reused.then_some(basis);
    if let (Some(x), Some(y), Some(ux), Some(uy)) = (&a.state_versions, &b.state_versions, ua.versions, ub.versions) {
        return verdict(Basis::State, after(x, ux, y, uy));
    }
    if let (Some(x), Some(y), Some(ux), Some(uy)) = (&a.state_times, &b.state_times, ua.times, ub.times) {
        return verdict(Basis::State, after(x, ux, y, uy));
    }
    if let (Some(x), Some(y), Some(ux), Some(uy)) = (a.seen_versions, b.seen_versions, ua.versions, ub.versions) {
        return verdict(Basis::Versions, after(&[x], ux, &[y], uy));
    }
    if let (Some(x), Some(y), Some(ux), Some(uy)) = (a.seen_times, b.seen_times, ua.times, ub.times) {
        return verdict(Basis::ExposureTimes, after(&[x], ux, &[y], uy));
    }
    None
}
