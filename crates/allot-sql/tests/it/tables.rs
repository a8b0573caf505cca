//! `tables.yaml`: every error at once, each naming its field.

use allot_sql::parse;
use allot_sql::tables::{duration, Measure, Window};

fn errors(yaml: &str) -> Vec<String> {
    parse(yaml).unwrap_err().iter().map(|e| e.to_string()).collect()
}

#[test]
fn defaults_and_kinds() {
    let t =
        parse("exposures: {table: ex}\nmetrics:\n  m: {table: ev, aggregate: sum, value: v, window: {delay: 1h}}\n")
            .unwrap();
    assert_eq!(t.exposures.unit, "unit");
    assert_eq!(t.exposures.time, "time");
    assert_eq!(t.metrics[0].measure, Measure::Sum("v".into()));
    assert_eq!(t.metrics[0].window, Window::After { delay: 3600.0 });
}

#[test]
fn every_error_names_its_field() {
    let e = errors(
        "exposures: {table: \"a b\", unit: \"1x\"}\nexperiments: {e1: {end: yesterday}}\nmetrics:\n  bad-name: {table: t, aggregate: sum}\n  r: {table: t, aggregate: ratio, numerator: n, cap: 3, cuped: {days: 7}, window: {delay: 0s}}\n  w: {table: t, aggregate: count, value: v, window: {duration: 3 days}}\n  c: {table: t, aggregate: count, cuped: {days: 0}}\n",
    );
    let want = [
        "exposures.table: \"a b\" is not a table name",
        "exposures.unit: \"1x\" is not a plain identifier",
        "experiments.e1.end: \"yesterday\" is not an RFC 3339 time",
        "metrics.bad-name: a metric name must be an identifier",
        "metrics.bad-name.value: required with `aggregate: sum`",
        "metrics.r.denominator: required with `aggregate: ratio`",
        "metrics.r.cap: a ratio metric cannot be capped",
        "metrics.r.cuped: CUPED is not available for ratio metrics",
        "metrics.w.value: not used with `aggregate: count`",
        "metrics.w.window.duration: \"3 days\" is not a duration",
        "metrics.c.cuped.days: must be at least 1",
        "metrics.c.window: CUPED needs a window",
    ];
    let mut missing = vec![];
    for w in want {
        if !e.iter().any(|x| x.starts_with(w)) {
            missing.push(w);
        }
    }
    assert!(missing.is_empty(), "missing {missing:?} in {e:#?}");
    assert_eq!(e.len(), want.len(), "{e:#?}");
}

#[test]
fn unknown_and_mistyped_fields_name_their_path() {
    let e = errors("exposures: {table: x, colour: red}\nmetrics: {m: {table: e, aggregate: count}}\n");
    assert!(e[0].starts_with("exposures.colour: ") && e[0].contains("unknown field `colour`"), "{e:?}");
    let e = errors("exposures: {table: x}\nmetrics: {m: {table: e, aggregate: median}}\n");
    assert!(e[0].starts_with("metrics.m.aggregate: ") && e[0].contains("unknown variant `median`"), "{e:?}");
    let e = errors("exposures: {table: x}\nmetrics: {}\n");
    assert_eq!(e, ["metrics: no metrics: name at least one"]);
}

#[test]
fn durations() {
    assert_eq!(duration("0"), Some(0.0));
    assert_eq!(duration("90s"), Some(90.0));
    assert_eq!(duration("1.5h"), Some(5400.0));
    assert_eq!(duration("7d"), Some(604800.0));
    assert_eq!(duration("2w"), Some(1209600.0));
    assert_eq!(duration("-1d"), None);
    assert_eq!(duration("d"), None);
    assert_eq!(duration("3y"), None);
    // Past 100 years (a sum of two would no longer be a finite number in the SQL).
    assert_eq!(duration("1e308w"), None);
    assert_eq!(duration("5300w"), None);
    assert_eq!(duration("5200w"), Some(5200.0 * 604800.0));
}
