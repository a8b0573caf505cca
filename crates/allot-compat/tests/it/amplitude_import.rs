//! `allot compat amplitude import`: the imported configuration, evaluated by allot-core's own
//! evaluation (`Snapshot::compile` over the recorded state, the path of `allot assign`) on the
//! flattened contexts, gives every imported flag the variant Amplitude gives: compared with the
//! adapter (`allot compat amplitude evaluate`) and with Amplitude's engine itself
//! (`@amplitude/experiment-core` under Node, or the answers it recorded in
//! `spec/amplitude/generated-cases.json`), on the conformance data and on the differential
//! test's random configurations and hostile contexts (`PROPTEST_CASES`, `ALLOT_DIFF_SEED`).
//!
//! Every comparison must agree; they are counted and printed.

use crate::amplitude_differential::case;
use crate::amplitude_oracle::{Oracle, Outcome};
use crate::spec;
use allot_compat::amplitude::{answer, flatten_context, Flags, ImportOptions, Report};
use allot_core::eval::{Assignment, NoSticky, Snapshot};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use std::collections::BTreeMap;

/// A configuration imported and compiled as `allot assign` compiles it.
struct Native {
    snap: Snapshot,
    report: Report,
}

fn import(flags: &Flags) -> Native {
    let imported =
        flags.import(&ImportOptions { time: "2026-01-01T00:00:00Z".into() }).unwrap_or_else(|e| panic!("{e}"));
    let cfg = allot_core::config::validate(&imported.config).unwrap();
    // Written as YAML, it reads back as the very configuration the state records (as the CLI checks).
    let yaml = serde_yaml_ng::to_string(&imported.config).unwrap();
    assert_eq!(allot_core::config::parse_yaml(&yaml).unwrap(), imported.config, "{yaml}");
    assert!(cfg.units.values().all(|u| u.hash.is_allot() || u.attribute.ends_with("#id")), "{:?}", cfg.units);
    let snap = Snapshot::compile(&imported.state).unwrap();
    Native { snap, report: imported.report }
}

impl Native {
    /// Each imported flag's variant for one Amplitude context.
    fn answers(&self, ctx: &Value) -> BTreeMap<String, Option<String>> {
        let flat = flatten_context(ctx);
        let mut out: Vec<Assignment> = vec![];
        self.snap.evaluate_all(&flat, &NoSticky, &mut out);
        self.report
            .flags
            .iter()
            .map(|f| {
                let names = f.experiments.iter().map(|id| {
                    let i = self.snap.index_of(id).unwrap();
                    self.snap.variant_name(i, &out[i])
                });
                (f.flag.clone(), answer(names))
            })
            .collect()
    }
}

#[derive(Default, Debug)]
struct Tally {
    configurations: usize,
    refused: usize,
    flags: usize,
    imported: usize,
    comparisons: usize,
    with_variant: usize,
    agree_adapter: usize,
    agree_engine: usize,
    engine_compared: usize,
    disagreements: Vec<String>,
    /// Why flags did not map (the start of each reason), and how often.
    reasons: BTreeMap<String, usize>,
}

impl Tally {
    /// Compares one configuration's imported answers with the adapter's and, when given, the
    /// engine's (per context: flag key → variant key, absent for none).
    fn compare(&mut self, flags_json: &Value, contexts: &[Value], engine: Option<&[BTreeMap<String, Option<String>>]>) {
        self.configurations += 1;
        let Ok(flags) = Flags::from_json(flags_json.clone()) else {
            self.refused += 1;
            return;
        };
        let native = import(&flags);
        self.flags += flags.len();
        self.imported += native.report.flags.len();
        for e in native.report.unmapped.iter().filter(|e| e.flag.is_some()) {
            let why: String = e.reason.split([':', '`']).next().unwrap_or("").chars().take(60).collect();
            *self.reasons.entry(why).or_default() += 1;
        }
        for (k, ctx) in contexts.iter().enumerate() {
            let ours = native.answers(ctx);
            let adapter = flags.evaluate_json(ctx);
            for (flag, got) in &ours {
                let want = adapter[flag].as_str().map(str::to_string);
                self.comparisons += 1;
                self.with_variant += usize::from(got.is_some());
                if let Some(e) = engine {
                    self.engine_compared += 1;
                    let by_engine = e[k].get(flag).cloned().flatten();
                    if by_engine == *got {
                        self.agree_engine += 1;
                    } else {
                        self.disagreements.push(format!(
                            "flag {flag}, context {ctx}: engine {by_engine:?}, allot import {got:?}\n  flags {flags_json}"
                        ));
                    }
                }
                if *got == want {
                    self.agree_adapter += 1;
                } else {
                    self.disagreements.push(format!(
                        "flag {flag}, context {ctx}: adapter {want:?}, allot import {got:?}\n  flags {flags_json}"
                    ));
                }
            }
        }
    }

    fn finish(&self, what: &str) {
        eprintln!(
            "amplitude import, {what}: {} configurations ({} refused by the adapter), {} of {} flags imported; \
             {} comparisons ({} with a variant): {} agree with the adapter, {} of {} with the engine",
            self.configurations,
            self.refused,
            self.imported,
            self.flags,
            self.comparisons,
            self.with_variant,
            self.agree_adapter,
            self.agree_engine,
            self.engine_compared,
        );
        for (why, n) in &self.reasons {
            eprintln!("  not mapped {n}×: {why}");
        }
        assert!(
            self.disagreements.is_empty(),
            "{} disagreements, the first 10:\n{}",
            self.disagreements.len(),
            self.disagreements.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

fn engine_keys(outcomes: &[Outcome]) -> Vec<BTreeMap<String, Option<String>>> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Refused => BTreeMap::new(),
            Outcome::Flags(m) => m.iter().map(|(k, v)| (k.clone(), v["key"].as_str().map(str::to_string))).collect(),
        })
        .collect()
}

/// Every configuration and context of the conformance data: against the adapter and the
/// engine's recorded answers.
#[test]
fn the_conformance_data_imports_and_assigns_as_amplitude() {
    let data: Value = serde_json::from_str(&spec("amplitude/generated-cases.json")).unwrap();
    let mut t = Tally::default();
    for case in data["cases"].as_array().unwrap() {
        let contexts = case["contexts"].as_array().unwrap();
        let engine: Vec<BTreeMap<String, Option<String>>> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string))).collect())
            .collect();
        t.compare(&case["flags"], contexts, Some(&engine));
    }
    let sdk: Value = serde_json::from_str(&spec("amplitude/flags.json")).unwrap();
    let exp: Value = serde_json::from_str(&spec("amplitude/expectations.json")).unwrap();
    let contexts: Vec<Value> = exp["cases"].as_array().unwrap().iter().map(|c| c["context"].clone()).collect();
    t.compare(&sdk, &contexts, None);
    t.finish("spec/amplitude");
    // The conformance data is Amplitude as it writes flags: all of it maps.
    assert_eq!(t.imported, t.flags, "{:?}", t.reasons);
    assert!(t.comparisons >= 30 * 200, "{t:?}");
}

/// The differential test's random configurations and hostile contexts: against the adapter
/// always, and against the engine when Node and the package are there.
#[test]
fn random_configurations_import_and_assign_as_amplitude() {
    let run = std::thread::Builder::new().stack_size(64 << 20).spawn(random).unwrap();
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

fn random() {
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("ALLOT_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_201);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let strategy = case();
    let drawn: Vec<_> = (0..cases).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
    let engine = Oracle::start().map(|mut o| {
        let batch: Vec<(&Value, &[Value])> = drawn.iter().map(|c| (&c.flags, c.contexts.as_slice())).collect();
        o.evaluate(&batch).iter().map(|outs| engine_keys(outs)).collect::<Vec<_>>()
    });
    let mut t = Tally::default();
    for (i, c) in drawn.iter().enumerate() {
        t.compare(&c.flags, &c.contexts, engine.as_ref().map(|e| e[i].as_slice()));
    }
    t.finish(&format!(
        "random (seed {seed}, {})",
        if engine.is_some() { "engine and adapter" } else { "adapter only" }
    ));
    assert!(t.imported * 4 > t.flags, "most random flags should map: {t:?}");
}

#[test]
fn flattening_follows_the_documented_convention() {
    let ctx = serde_json::json!({"user": {
        "user_id": "u1",
        "device_id": null,
        "user_properties": {"plan": "Gold", "age": 31, "tags": ["a", null, "", 2], "json": "[\"x\"]", "a.b": 1},
        "on": true
    }});
    let flat = flatten_context(&ctx);
    assert_eq!(flat["user_id"], "u1");
    assert!(!flat.contains_key("device_id"), "null is left out");
    assert_eq!(flat["user_properties.plan"], "Gold");
    assert_eq!(flat["user_properties.plan#lower"], "gold");
    assert_eq!(flat["user_properties.age"], "31");
    assert_eq!(flat["user_properties.age#number"], 31.0);
    assert_eq!(flat["user_properties.tags"], serde_json::json!(["a", "2"]));
    assert_eq!(flat["user_properties.tags#number"], serde_json::json!([null, 2.0]));
    assert_eq!(flat["user_properties.json"], serde_json::json!(["x"]), "a string holding a JSON array is a list");
    assert!(!flat.contains_key("user_properties.a.b"), "keys holding `.` are left out");
    assert_eq!(flat["on"], "true");
    assert!(flat["user_properties"].as_str().unwrap().starts_with("{\""), "objects as JSON.stringify writes them");
    assert_eq!(flat["amplitude_context"], "1");
    // Versions order as Amplitude compares them: by number, a pre-release first; texts below.
    let key =
        |v: &str| flatten_context(&serde_json::json!({"user": {"v": v}}))["v#version"].as_str().unwrap().to_string();
    let order = ["", "abc", "1.2.3-rc.1", "1.2.3", "1.10"];
    let keys: Vec<semver::Version> = order.iter().map(|v| semver::Version::parse(&key(v)).unwrap()).collect();
    for w in keys.windows(2) {
        assert_eq!(w[0].cmp_precedence(&w[1]), std::cmp::Ordering::Less, "{w:?}");
    }
}

/// Configuration 0 of the conformance data: experiments read their mutual exclusion group's
/// slot, which becomes prerequisites on the group flag's experiments.
#[test]
fn group_slots_become_prerequisites_and_unmapped_flags_are_named() {
    let data: Value = serde_json::from_str(&spec("amplitude/generated-cases.json")).unwrap();
    let mut flags = data["cases"][0]["flags"].clone();
    // One flag that does not map, and one that reads it.
    flags.as_array_mut().unwrap().push(serde_json::json!({"key": "pattern", "variants": {"on": {"key": "on"}},
        "segments": [{"conditions": [[{"selector": ["context", "user", "user_id"], "op": "regex match", "values": ["^u"]}]], "variant": "on"}]}));
    flags.as_array_mut().unwrap().push(serde_json::json!({"key": "reader", "variants": {"on": {"key": "on"}}, "dependencies": ["pattern"],
        "segments": [{"conditions": [[{"selector": ["result", "pattern", "key"], "op": "is", "values": ["on"]}]], "variant": "on"}]}));
    let compiled = Flags::from_json(flags).unwrap();
    let imported = compiled.import(&ImportOptions { time: "2026-01-01T00:00:00Z".into() }).unwrap();
    let exps = imported.config["experiments"].as_object().unwrap();
    let requires: Vec<&Value> = exps
        .iter()
        .filter(|(id, _)| id.starts_with("exp-56zc4pz0."))
        .filter_map(|(_, e)| e.get("requires"))
        .flat_map(|r| r.as_array().unwrap())
        .collect();
    assert!(
        requires.iter().any(|r| r["experiment"].as_str().unwrap().starts_with("mutex-1b7o259o.s0.")),
        "{requires:?}"
    );
    let units = imported.config["units"].as_object().unwrap();
    assert!(units.values().any(|u| u["hash"] == "amplitude" && u["attribute"] == "device_id#id"), "{units:?}");
    let unmapped: Vec<&str> = imported.report.unmapped.iter().map(|e| e.name.as_str()).collect();
    assert!(unmapped.contains(&"pattern") && unmapped.contains(&"reader"), "{unmapped:?}");
    assert!(!exps.keys().any(|id| id.starts_with("pattern.") || id.starts_with("reader.")));
    assert!(!imported.report.complete());
}
