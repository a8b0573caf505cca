//! `timeline`: whether two experiments ran at the same time, and whether a unit seen in both was
//! reused after a stop, on each axis and in the order of precision.

use allot_stats::timeline::{overlap, ran_together, reused_after_stop, stopped_by, Basis, Interval, Runs, Seen};

fn rec(start: u64, end: Option<u64>) -> Interval<u64> {
    Interval::recorded(start, end)
}

fn state(spans: &[(u64, Option<u64>)]) -> Runs {
    Runs { state_versions: Some(spans.iter().map(|&(s, e)| rec(s, e)).collect()), ..Runs::default() }
}

#[test]
fn recorded_intervals_are_half_open() {
    // A released at version 3, B drawn at version 3: never at once.
    assert!(!rec(1, Some(3)).overlaps(&rec(3, None)));
    assert!(!rec(3, None).overlaps(&rec(1, Some(3))));
    assert!(rec(1, Some(4)).overlaps(&rec(3, None)));
    assert!(rec(1, None).overlaps(&rec(7, None)));
    assert!(rec(2, Some(5)).overlaps(&rec(3, Some(4))));
    assert!(!rec(5, Some(6)).overlaps(&rec(1, Some(5))));
}

#[test]
fn seen_intervals_are_closed_and_open_while_running() {
    let a = Interval::seen(10.0, 20.0, false);
    assert!(a.overlaps(&Interval::seen(20.0, 30.0, false)), "the same second counts as together");
    assert!(!a.overlaps(&Interval::seen(20.5, 30.0, false)));
    // Still running per the configuration: it reaches everything after its start.
    let running = Interval::seen(10.0, 20.0, true);
    assert!(running.overlaps(&Interval::seen(100.0, 200.0, false)));
    assert!(!running.overlaps(&Interval::seen(1.0, 9.0, false)));
}

#[test]
fn several_intervals_and_stopped_by() {
    let a = [rec(1, Some(3)), rec(5, Some(6))];
    assert!(!overlap(&a, &[rec(3, Some(5))]));
    assert!(overlap(&a, &[rec(3, Some(6))]));
    assert!(stopped_by(&a, 6));
    assert!(!stopped_by(&a, 5));
    assert!(!stopped_by(&[rec(1, None)], 1_000));
    assert!(!stopped_by::<u64>(&[], 1_000), "no interval says nothing");
    assert!(stopped_by(&[Interval::seen(1.0, 2.0, false)], 2.5));
    assert!(!stopped_by(&[Interval::seen(1.0, 2.0, false)], 2.0));
}

#[test]
fn the_most_precise_axis_known_for_both_decides() {
    // The state says never together; the exposures' versions and times say together.
    let seen = |a: &mut Runs| {
        a.seen_versions = Some(Interval::seen(1, 5, false));
        a.seen_times = Some(Interval::seen(0.0, 100.0, false));
    };
    let (mut a, mut b) = (state(&[(1, Some(3))]), state(&[(3, None)]));
    seen(&mut a);
    seen(&mut b);
    let t = ran_together(&a, &b);
    assert_eq!((t.basis, t.overlapped), (Basis::State, false));
    // Without the state of one of them: versions decide, before times.
    b.state_versions = None;
    b.seen_versions = Some(Interval::seen(6, 9, false));
    let t = ran_together(&a, &b);
    assert_eq!((t.basis, t.overlapped), (Basis::Versions, false));
    a.seen_versions = None;
    let t = ran_together(&a, &b);
    assert_eq!((t.basis, t.overlapped), (Basis::ExposureTimes, true));
    b.seen_times = Some(Interval::seen(100.5, 200.0, false));
    assert!(!ran_together(&a, &b).overlapped);
    a.seen_times = None;
    let t = ran_together(&a, &b);
    assert_eq!((t.basis, t.overlapped), (Basis::Unknown, true), "nothing known: assumed together");
}

#[test]
fn a_unit_is_reused_only_if_the_first_had_stopped_when_it_saw_the_second() {
    // A ran at versions 1..3, B from 2 on: together at version 2.
    let (a, b) = (state(&[(1, Some(3))]), state(&[(2, None)]));
    assert!(ran_together(&a, &b).overlapped);
    let v = |first, last| Seen { versions: Some((first, last)), times: None };
    // Saw A at 1, B at 3 (after A's release at 3): reused, in either order of arguments.
    assert_eq!(reused_after_stop(&a, &v(1, 1), &b, &v(3, 4)), Some(Basis::State));
    assert_eq!(reused_after_stop(&b, &v(3, 4), &a, &v(1, 1)), Some(Basis::State));
    // Saw B at 2 while A still ran: in both at once.
    assert_eq!(reused_after_stop(&a, &v(1, 1), &b, &v(2, 4)), None);
    // Saw A again after it first saw B: in both at once.
    assert_eq!(reused_after_stop(&a, &v(1, 3), &b, &v(3, 4)), None);
    // B never stops: a unit that saw B first and A later was in both at once.
    assert_eq!(reused_after_stop(&a, &v(2, 2), &b, &v(2, 2)), None);
    // Nothing known about the unit's versions, nor times in the state: no reuse shown.
    assert_eq!(reused_after_stop(&a, &Seen::default(), &b, &Seen::default()), None);
}

#[test]
fn a_unit_by_state_times_then_versions_then_times() {
    let t = |first, last| Seen { versions: None, times: Some((first, last)) };
    // The state in times: A ran [100, 300), B from 200.
    let mut a = state(&[(1, Some(3))]);
    let mut b = state(&[(2, None)]);
    a.state_times = Some(vec![Interval::recorded(100.0, Some(300.0))]);
    b.state_times = Some(vec![Interval::recorded(200.0, None)]);
    assert_eq!(reused_after_stop(&a, &t(120.0, 150.0), &b, &t(300.0, 400.0)), Some(Basis::State));
    assert_eq!(reused_after_stop(&a, &t(120.0, 150.0), &b, &t(250.0, 400.0)), None);
    // The state's verdict stands even where the exposures alone would show a reuse.
    a.seen_times = Some(Interval::seen(100.0, 150.0, false));
    b.seen_times = Some(Interval::seen(250.0, 400.0, false));
    assert_eq!(reused_after_stop(&a, &t(120.0, 150.0), &b, &t(250.0, 400.0)), None);
    // Without a state: the exposures' versions, then their times.
    let (mut a, mut b) = (Runs::default(), Runs::default());
    a.seen_versions = Some(Interval::seen(1, 4, false));
    b.seen_versions = Some(Interval::seen(2, 9, true));
    let both = |v: (u64, u64), tm: (f64, f64)| Seen { versions: Some(v), times: Some(tm) };
    assert_eq!(reused_after_stop(&a, &both((1, 1), (0.0, 0.0)), &b, &both((5, 6), (0.0, 0.0))), Some(Basis::Versions));
    assert_eq!(reused_after_stop(&a, &both((1, 1), (0.0, 0.0)), &b, &both((4, 6), (0.0, 0.0))), None);
    a.seen_versions = None;
    a.seen_times = Some(Interval::seen(0.0, 10.0, false));
    b.seen_times = Some(Interval::seen(5.0, 20.0, true));
    assert_eq!(reused_after_stop(&a, &t(1.0, 2.0), &b, &t(11.0, 12.0)), Some(Basis::ExposureTimes));
    assert_eq!(reused_after_stop(&a, &t(1.0, 2.0), &b, &t(10.0, 12.0)), None, "closed: A was seen at 10");
    // A still running per the configuration: never stopped, so never a reuse.
    a.seen_times = Some(Interval::seen(0.0, 10.0, true));
    assert_eq!(reused_after_stop(&a, &t(1.0, 2.0), &b, &t(11.0, 12.0)), None);
}
