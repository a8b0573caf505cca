//! `allot compat confidence import` against Spotify's resolver (`confidence_resolver` 0.26.1):
//! import a resolver state, compile the written allot state with allot-core (`Snapshot::compile`,
//! the path `allot assign` takes), evaluate, and compare every imported flag's answer (variant
//! and value, or a match without one, or no match) with what the resolver gives, on the
//! specification's cases and on the differential test's random states and hostile contexts.
//!
//! Exactness is claimed for contexts whose unit ids are absent or non-empty strings of at most
//! 100 bytes (see the import's caveats); the other contexts are compared and counted apart, not
//! asserted. Requests the resolver refuses (an attribute its rule cannot convert) have no flag
//! answers and are counted.

use crate::confidence_differential::{case, ACCOUNT};
use crate::confidence_oracle::{load_native, normalize, resolve_native, spec_state_as_proto, Outcome};
use crate::spec;
use allot_compat::confidence::{answer, Answer, ImportOptions, Imported, State};
use allot_core::eval::{Assignment, NoSticky, Snapshot};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;

const DEFAULT_CASES: u32 = 100;

struct Native {
    imported: Imported,
    snap: Snapshot,
}

fn import(state: &State, secret: &str) -> Native {
    try_import(state, secret).unwrap_or_else(|| panic!("no client has secret {secret}"))
}

/// The import for `secret`, `None` when no client has it.
fn try_import(state: &State, secret: &str) -> Option<Native> {
    let opts = ImportOptions { client_secret: Some(secret.to_string()), time: "2026-12-01T00:00:00Z".into() };
    let imported = match state.import(&opts) {
        Ok(i) => i,
        Err(e) if e.path() == "client-secret" => return None,
        Err(e) => panic!("import for {secret}: {e}"),
    };
    // The written configuration must be what validation accepts, and compile from the state.
    let snap = Snapshot::compile(&imported.state).unwrap_or_else(|e| panic!("compile: {e:?}"));
    // What `allot compat confidence import` writes as allot.yaml reads back as this configuration.
    let yaml = serde_yaml_ng::to_string(&imported.config).unwrap();
    assert_eq!(allot_core::config::parse_yaml(&yaml).unwrap(), imported.config, "{yaml}");
    Some(Native { imported, snap })
}

#[derive(Default)]
struct Tally {
    states: usize,
    requests: usize,
    refused_by_resolver: usize,
    flags_imported: usize,
    flags_unmapped: usize,
    rules_dropped: usize,
    compared: usize,
    agreed: usize,
    outside: usize,
    outside_agreed: usize,
    outcomes: std::collections::BTreeMap<&'static str, usize>,
    disagreements: Vec<String>,
}

fn lookup<'v>(ctx: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut parts = path.split('.');
    let mut v = ctx.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// Whether the context is inside the import's exactness domain for `flag`: every targeting key
/// any of the flag's rules reads is absent or a non-empty string of at most 100 bytes, and
/// `targeting_key` is present when the resolver would assign without one.
fn in_domain(selectors: &[String], keyless: bool, ctx: &Map<String, Value>) -> bool {
    for sel in selectors {
        match lookup(ctx, sel) {
            None | Some(Value::Null) => {
                if keyless && sel == "targeting_key" {
                    return false;
                }
            }
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 100 => {}
            Some(_) => return false,
        }
    }
    true
}

/// Selectors (blank → `targeting_key`) of every rule of every flag in a proto3-JSON state.
fn selectors(state: &Value) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for f in state["flags"].as_array().into_iter().flatten() {
        let sels = f["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| match r["targetingKeySelector"].as_str().unwrap_or("") {
                "" => "targeting_key".to_string(),
                s => s.to_string(),
            })
            .collect();
        out.insert(f["name"].as_str().unwrap_or_default().to_string(), sels);
    }
    out
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Compares one request: the resolver's answer for every flag the import wrote.
fn compare(native: &Native, sels: &HashMap<String, Vec<String>>, oracle: &Outcome, req: &Value, t: &mut Tally) {
    t.requests += 1;
    let Outcome::Flags(flags) = oracle else {
        t.refused_by_resolver += 1;
        return;
    };
    let ctx = req["evaluationContext"].as_object().cloned().unwrap_or_default();
    let mut out: Vec<Assignment> = vec![];
    native.snap.evaluate_all(&ctx, &NoSticky, &mut out);
    for fr in &native.imported.report.flags {
        let Some(want) = flags.get(&fr.flag) else { continue };
        let mut value = Value::Null;
        let got = answer(fr.experiments.iter().map(|id| {
            let i = native.snap.index_of(id).unwrap();
            let name = native.snap.variant_name(i, &out[i]);
            if let Some(v) = out[i].variant {
                if value.is_null() {
                    if let Some(Some(x)) = native.snap.experiments[i].values.get(usize::from(v)) {
                        if !matches!(name, Some("_fallthrough" | "_none")) {
                            value = x.clone();
                        }
                    }
                }
            }
            name
        }));
        let got = match got {
            Answer::Variant(v) => ("MATCH", v, normalize(value)),
            Answer::ClientDefault => ("MATCH", String::new(), json!({})),
            Answer::NoMatch => ("NO_SEGMENT_MATCH", String::new(), Value::Null),
        };
        let reason = want.reason.trim_start_matches("RESOLVE_REASON_");
        let expected = (reason, short(&want.variant).to_string(), want.value.clone());
        let agree = (got.0, &got.1, &got.2) == (expected.0, &expected.1, &expected.2);
        let inside = in_domain(&sels[&fr.flag], !fr.keyless.is_empty(), &ctx);
        if inside {
            t.compared += 1;
            if agree {
                t.agreed += 1;
                *t.outcomes.entry(if got.0 == "MATCH" { "MATCH" } else { "NO_SEGMENT_MATCH" }).or_default() += 1;
            } else {
                t.disagreements.push(format!(
                    "{}: resolver {expected:?}, allot {got:?}\n  experiments {:?}\n  request {req}",
                    fr.flag, fr.experiments
                ));
            }
        } else {
            t.outside += 1;
            if agree {
                t.outside_agreed += 1;
            }
        }
    }
}

/// Imports `state_json` for every client secret of the requests and compares each request.
fn run_state(state_json: &str, requests: &[Value], t: &mut Tally) {
    let (Ok(native_state), Ok(state)) = (load_native(state_json, ACCOUNT), State::parse(state_json, Some(ACCOUNT)))
    else {
        return;
    };
    t.states += 1;
    let raw: Value = serde_json::from_str(state_json).unwrap();
    let sels = selectors(&raw);
    let mut by_secret: HashMap<String, Option<Native>> = HashMap::new();
    for req in requests {
        let secret = req["clientSecret"].as_str().unwrap_or_default().to_string();
        let native = by_secret.entry(secret.clone()).or_insert_with(|| {
            let n = try_import(&state, &secret)?; // an unknown secret: nothing to import for
            t.flags_imported += n.imported.report.flags.len();
            t.flags_unmapped += n.imported.report.unmapped.iter().filter(|e| e.kind == "flag").count();
            t.rules_dropped += n.imported.report.dropped.iter().filter(|e| e.kind == "rule").count();
            Some(n)
        });
        let Some(native) = native else { continue };
        let oracle = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resolve_native(&native_state, req)))
        {
            Ok(o) => o,
            Err(_) => continue,
        };
        compare(native, &sels, &oracle, req, t);
    }
}

fn report(what: &str, t: &Tally) {
    eprintln!(
        "{what}: {} states, {} requests ({} refused by the resolver), {} flags imported, {} not mapped, {} rules dropped; \
         {} flag answers compared, {} agree; outside the domain {} compared, {} agree; outcomes {:?}",
        t.states,
        t.requests,
        t.refused_by_resolver,
        t.flags_imported,
        t.flags_unmapped,
        t.rules_dropped,
        t.compared,
        t.agreed,
        t.outside,
        t.outside_agreed,
        t.outcomes
    );
}

/// Every case of the specification, for the flags the import maps: `allot assign`'s path gives
/// what the resolver gives.
#[test]
fn imported_specification_state_assigns_as_the_resolver() {
    let spec_state: Value = serde_json::from_str(&spec("confidence/state.json")).unwrap();
    let (state, account) = spec_state_as_proto(&spec_state);
    let cases: Vec<Value> = serde_json::from_str(&spec("confidence/tests.json")).unwrap();
    let requests: Vec<Value> = cases.iter().map(crate::confidence::request_of).collect();
    let mut t = Tally { states: 1, ..Tally::default() };
    // The specification names its own account.
    let (Ok(native_state), Ok(parsed)) = (load_native(&state, &account), State::parse(&state, Some(&account))) else {
        panic!("the specification state must load")
    };
    let raw: Value = serde_json::from_str(&state).unwrap();
    let sels = selectors(&raw);
    let mut natives: HashMap<String, Option<Native>> = HashMap::new();
    for req in &requests {
        let secret = req["clientSecret"].as_str().unwrap().to_string();
        let Some(native) = natives.entry(secret.clone()).or_insert_with(|| try_import(&parsed, &secret)) else {
            continue;
        };
        compare(native, &sels, &resolve_native(&native_state, req), req, &mut t);
    }
    for n in natives.values().flatten() {
        t.flags_imported += n.imported.report.flags.len();
        t.flags_unmapped += n.imported.report.unmapped.iter().filter(|e| e.kind == "flag").count();
    }
    report("import (specification)", &t);
    assert!(t.disagreements.is_empty(), "{} disagree:\n{}", t.disagreements.len(), t.disagreements.join("\n"));
    assert!(t.compared >= 50, "too few comparisons to mean anything: {}", t.compared);
}

/// Random resolver states and hostile contexts from the differential test's generator.
#[test]
fn imported_random_states_assign_as_the_resolver() {
    let run = std::thread::Builder::new().stack_size(256 << 20).spawn(random).unwrap();
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

fn random() {
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("ALLOT_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_201);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let tally = RefCell::new(Tally::default());
    let _ = runner.run(&case(), |c| {
        run_state(&c.state.to_string(), &c.requests, &mut tally.borrow_mut());
        Ok(())
    });
    let t = tally.into_inner();
    report("import (random states)", &t);
    assert!(
        t.disagreements.is_empty(),
        "{} of {} flag answers disagree, the first 10:\n{}",
        t.disagreements.len(),
        t.compared,
        t.disagreements.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(t.compared >= 100, "too few comparisons to mean anything: {}", t.compared);
}

/// Every operator the import translates, over hostile values (types Confidence coerces: numbers
/// under string rules, numeric strings, "true"/"TRUE", lists, nested lists, objects, null): the
/// imported flag must answer as the resolver, value by value.
#[test]
fn each_translated_operator_over_hostile_values() {
    use crate::confidence_differential::pinned_state;
    let rules = [
        json!({"eqRule": {"value": {"stringValue": "SE"}}}),
        json!({"eqRule": {"value": {"stringValue": "42"}}}),
        json!({"eqRule": {"value": {"stringValue": "true"}}}),
        json!({"eqRule": {"value": {"stringValue": "1000000000000000000000"}}}),
        json!({"eqRule": {"value": {"numberValue": 42}}}),
        json!({"eqRule": {"value": {"numberValue": 0}}}),
        json!({"eqRule": {"value": {"boolValue": true}}}),
        json!({"eqRule": {"value": {"boolValue": false}}}),
        json!({"eqRule": {"value": {}}}),
        json!({"setRule": {"values": [{"stringValue": "SE"}, {"stringValue": "42"}]}}),
        json!({"setRule": {"values": [{"numberValue": 42}, {"stringValue": "SE"}]}}),
        json!({"setRule": {"values": []}}),
        json!({"rangeRule": {"startInclusive": {"numberValue": 1}, "endExclusive": {"numberValue": 50}}}),
        json!({"rangeRule": {"startExclusive": {"numberValue": 40}}}),
        json!({"rangeRule": {"endInclusive": {"numberValue": 0}}}),
        json!({"rangeRule": {"startInclusive": {"numberValue": 1}, "endExclusive": {"stringValue": "x"}}}),
        json!({"rangeRule": {"startInclusive": {"boolValue": false}}}),
        json!({"rangeRule": {}}),
        json!({"startsWithRule": {"value": "S"}}),
        json!({"endsWithRule": {"value": "E"}}),
        json!({"containsRule": {"value": ""}}),
        json!({"anyRule": {"rule": {"eqRule": {"value": {"stringValue": "SE"}}}}}),
        json!({"anyRule": {"rule": {"rangeRule": {"startInclusive": {"numberValue": 1}}}}}),
        json!({"anyRule": {"rule": {"eqRule": {"value": {}}}}}),
        json!({"anyRule": {"rule": {"startsWithRule": {"value": "g"}}}}),
        json!({"anyRule": {"rule": {"eqRule": {"value": {"boolValue": false}}}}}),
        json!({"allRule": {"rule": {"eqRule": {"value": {"stringValue": "SE"}}}}}),
        json!({"allRule": {"rule": {"rangeRule": {"startInclusive": {"numberValue": 1}}}}}),
        json!({"allRule": {"rule": {"startsWithRule": {"value": "S"}}}}),
        json!({"allRule": {"rule": {"eqRule": {"value": {}}}}}),
        json!({"allRule": {"rule": {"setRule": {"values": []}}}}),
    ];
    let values = [
        None,
        Some(json!(null)),
        Some(json!(true)),
        Some(json!(false)),
        Some(json!(0)),
        Some(json!(-0.0)),
        Some(json!(1)),
        Some(json!(42)),
        Some(json!(42.0)),
        Some(json!(42.5)),
        Some(json!(-1)),
        Some(json!(1e21)),
        Some(json!("42")),
        Some(json!("42.0")),
        Some(json!("4.2e1")),
        Some(json!("SE")),
        Some(json!("se")),
        Some(json!("")),
        Some(json!("true")),
        Some(json!("TRUE")),
        Some(json!("false")),
        Some(json!("null")),
        Some(json!("gold")),
        Some(json!([])),
        Some(json!([null])),
        Some(json!(["SE"])),
        Some(json!([1, "SE"])),
        Some(json!([["SE"]])),
        Some(json!([true, "gold"])),
        Some(json!(["42", 42])),
        Some(json!({"a": "SE"})),
        Some(json!([{"a": 1}])),
        Some(json!(["SE", "SEK"])),
        Some(json!(["SE", null])),
        Some(json!([5, "7"])),
    ];
    let mut t = Tally::default();
    for rule in &rules {
        let mut attribute = json!({"attributeName": "x"});
        for (k, v) in rule.as_object().unwrap() {
            attribute[k] = v.clone();
        }
        let state_json = pinned_state(attribute, json!({}));
        let state = State::parse(&state_json, Some(ACCOUNT)).unwrap();
        let native = import(&state, "sa");
        assert_eq!(native.imported.report.unmapped, vec![], "{rule} must map");
        t.states += 1;
        t.flags_imported += native.imported.report.flags.len();
        let oracle_state = load_native(&state_json, ACCOUNT).unwrap();
        let sels = selectors(&serde_json::from_str(&state_json).unwrap());
        for v in &values {
            let mut ctx = json!({"targeting_key": "u1"});
            if let Some(v) = v {
                ctx["x"] = v.clone();
            }
            let req = json!({"clientSecret": "sa", "evaluationContext": ctx});
            let before = t.disagreements.len();
            compare(&native, &sels, &resolve_native(&oracle_state, &req), &req, &mut t);
            if t.disagreements.len() > before {
                let d = t.disagreements.pop().unwrap();
                t.disagreements.push(format!("rule {rule}: {d}"));
            }
        }
    }
    report("import (each operator)", &t);
    assert!(t.disagreements.is_empty(), "{} disagree:\n{}", t.disagreements.len(), t.disagreements.join("\n"));
    assert!(t.compared >= 600 && t.outcomes.get("MATCH").copied().unwrap_or(0) >= 100, "{:?}", t.outcomes);
}

/// The documented difference: under a one-sided numeric range the resolver reads "inf" as an
/// infinity; allot's ordering operators do not.
#[test]
fn an_infinity_under_a_one_sided_range_is_the_documented_difference() {
    use crate::confidence_differential::pinned_state;
    let attribute = json!({"attributeName": "x", "rangeRule": {"startExclusive": {"numberValue": 40}}});
    let state_json = pinned_state(attribute, json!({}));
    let native = import(&State::parse(&state_json, Some(ACCOUNT)).unwrap(), "sa");
    let req = json!({"clientSecret": "sa", "evaluationContext": {"targeting_key": "u1", "x": "inf"}});
    let mut t = Tally::default();
    let sels = selectors(&serde_json::from_str(&state_json).unwrap());
    compare(&native, &sels, &resolve_native(&load_native(&state_json, ACCOUNT).unwrap(), &req), &req, &mut t);
    assert_eq!(t.disagreements.len(), 1, "if they now agree, drop the caveat");
    assert!(native.imported.report.caveats.iter().any(|c| c.contains("infinity")));
}
