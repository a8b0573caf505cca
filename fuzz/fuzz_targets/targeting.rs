//! Targeting expressions and segments, built with `arbitrary` from allot's own vocabulary
//! (operators, attribute names, values of every JSON type) plus arbitrary keys and values: parse,
//! the segment checks (references, cycles, size), compile (with shared segments), evaluate on
//! arbitrary contexts. Also checks the prover's soundness on every context: two expressions it
//! calls disjoint never both match (a false "disjoint" would break exclusivity), and the inlined
//! form evaluates as the compiled one.
#![no_main]

use allot_core::targeting::{self, Compiled, Compiler, Necessary, Targeting};
use allot_core::Context;
use arbitrary::Arbitrary;
use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Number, Value};

const ATTRS: &[&str] = &["country", "age", "app_version", "plan", "created", "tags", "email", "user_id", ""];
/// The operator keys, in the order the committed corpus was made with.
const OPS: &[&str] = allot_core::targeting::OPERATOR_KEYS;
const STRINGS: &[&str] = &[
    "SE",
    "NO",
    "US",
    "free",
    "paid",
    "1.2.3",
    "8.2.0",
    "1.0.0-alpha.1",
    "2.0.0+build.5",
    "10.0.0-rc.1.2.3.4.5",
    "2026-01-01T00:00:00Z",
    "2025-06-30T12:00:00+02:00",
    "1970-01-01T00:00:00.000000001Z",
    "@example.com",
    "",
    "é",
];

#[derive(Arbitrary, Debug)]
enum Val {
    Known(u8),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<Val>),
    Obj(Vec<(String, Val)>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Known(u8, Val),
    Nested(bool, Vec<Op>),
    Other(String, Val),
}

#[derive(Arbitrary, Debug)]
enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Segment(u8),
    Criterion(u8, Vec<Op>),
    Raw(String, Val),
}

#[derive(Arbitrary, Debug)]
struct Input {
    segments: Vec<Expr>,
    a: Expr,
    b: Expr,
    contexts: Vec<Vec<(u8, Val)>>,
}

/// Deeper trees than this are cut: YAML and JSON parsers bound nesting well below it, so deeper
/// trees are not inputs allot can receive.
const DEPTH: usize = 48;

fn val(v: &Val, d: usize) -> Value {
    match v {
        Val::Known(k) => json!(STRINGS[*k as usize % STRINGS.len()]),
        Val::Str(s) => json!(s),
        Val::Int(i) => json!(i),
        Val::Float(f) => Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        Val::Bool(b) => json!(b),
        Val::Null => Value::Null,
        Val::List(l) if d < DEPTH => Value::Array(l.iter().map(|x| val(x, d + 1)).collect()),
        Val::Obj(o) if d < DEPTH => Value::Object(o.iter().map(|(k, x)| (k.clone(), val(x, d + 1))).collect()),
        _ => Value::Null,
    }
}

fn ops(os: &[Op], d: usize) -> Map<String, Value> {
    let mut m = Map::new();
    for o in os {
        match o {
            Op::Known(k, v) => {
                m.insert(OPS[*k as usize % OPS.len()].into(), val(v, d + 1));
            }
            Op::Nested(all, inner) if d < DEPTH => {
                m.insert(if *all { "all" } else { "any" }.into(), Value::Object(ops(inner, d + 1)));
            }
            Op::Nested(..) => {}
            Op::Other(k, v) => {
                m.insert(k.clone(), val(v, d + 1));
            }
        }
    }
    m
}

fn expr(e: &Expr, nseg: usize, d: usize) -> Value {
    if d >= DEPTH {
        return json!({"attribute": "country", "eq": "SE"});
    }
    match e {
        Expr::All(cs) => json!({"all": cs.iter().map(|c| expr(c, nseg, d + 1)).collect::<Vec<_>>()}),
        Expr::Any(cs) => json!({"any": cs.iter().map(|c| expr(c, nseg, d + 1)).collect::<Vec<_>>()}),
        Expr::Not(c) => json!({"not": expr(c, nseg, d + 1)}),
        // One more than the segments defined: references to an unknown segment too.
        Expr::Segment(k) => json!({"segment": format!("s{}", *k as usize % (nseg + 1))}),
        Expr::Criterion(a, os) => {
            let mut m = ops(os, d);
            m.insert("attribute".into(), json!(ATTRS[*a as usize % ATTRS.len()]));
            Value::Object(m)
        }
        Expr::Raw(k, v) => json!({ k.clone(): val(v, d + 1) }),
    }
}

fn context(attrs: &[(u8, Val)]) -> Context {
    attrs.iter().map(|(a, v)| (ATTRS[*a as usize % ATTRS.len()].to_string(), val(v, 0))).collect()
}

fuzz_target!(|input: Input| {
    let nseg = input.segments.len().min(16);
    let mut segments: IndexMap<String, Targeting> = IndexMap::new();
    for (i, s) in input.segments.iter().take(nseg).enumerate() {
        let path = format!("segments.s{i}");
        match Targeting::parse(&expr(s, nseg, 0), &path) {
            Ok(t) => {
                segments.insert(format!("s{i}"), t);
            }
            Err(errors) => assert!(errors.iter().all(|e| e.path.starts_with(&path)), "{errors:?}"),
        }
    }
    // The service compiles only what validation accepted.
    if !targeting::check_segments(&segments).is_empty() {
        return;
    }
    let mut parsed = vec![];
    for (name, e) in [("a", &input.a), ("b", &input.b)] {
        let path = format!("experiments.{name}.targeting");
        let Ok(t) = Targeting::parse(&expr(e, nseg, 0), &path) else { return };
        if !targeting::check_references(&t, &path, &segments).is_empty()
            || targeting::check_size(&t, &path, &segments).is_some()
        {
            return;
        }
        parsed.push(t);
    }
    let (a, b) = (&parsed[0], &parsed[1]);
    let mut compiler = Compiler::new(&segments);
    let (ca, cb) = (compiler.compile(a), compiler.compile(b));
    let (ia, ib) = (
        Compiled::compile(&a.inline(&segments), &IndexMap::new()),
        Compiled::compile(&b.inline(&segments), &IndexMap::new()),
    );
    let _ = (ca.attributes(), a.to_json(), a.is_always(), a.uses_segment("s0", &segments));
    let disjoint = targeting::provably_disjoint(a, b, &segments);
    let stable: Vec<String> = ATTRS.iter().map(|s| s.to_string()).collect();
    let on = Necessary::of(a, &segments).disjoint_on(&Necessary::of(b, &segments), &stable);
    // Re-parsing what `to_json` prints gives the same expression (configs are stored as JSON).
    let again =
        Targeting::parse(&a.to_json(), "again").unwrap_or_else(|e| panic!("to_json does not parse back: {e:?}"));
    assert_eq!(&again, a, "to_json does not round-trip");
    for attrs in input.contexts.iter().take(8) {
        let ctx = context(attrs);
        let (ma, mb) = (ca.matches(&ctx), cb.matches(&ctx));
        assert_eq!(ma, ia.matches(&ctx), "compiled with shared segments and inlined disagree on {ctx:?}");
        assert_eq!(mb, ib.matches(&ctx), "compiled with shared segments and inlined disagree on {ctx:?}");
        if disjoint || on.is_some() {
            assert!(!(ma && mb), "the prover called them disjoint, yet both match {ctx:?}");
        }
    }
});
