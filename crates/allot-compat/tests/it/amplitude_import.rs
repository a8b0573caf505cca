//! `allot compat amplitude import`: the imported configuration, evaluated by allot-core's own
//! evaluation (`Snapshot::compile` over the recorded state, the path of `allot assign`) on the
//! flattened contexts, gives every imported flag the variant Amplitude gives: compared with the
//! adapter (`allot compat amplitude evaluate`) and with Amplitude's engine itself
//! (`@amplitude/experiment-core` under Node, or the answers it recorded in
//! `spec/amplitude/generated-cases.json`), on the conformance data and on the differential
//! test's random configurations and hostile contexts (`PROPTEST_CASES`, `ALLOT_DIFF_SEED`).
//!
//! Inside the import's domain (no bucketing id is a list, see the report's caveats) every
//! comparison must agree; outside it the agreement is counted and printed.

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
    /// Attributes of the Amplitude-hashed unit types (bucketing ids).
    ids: Vec<String>,
}

fn import(flags: &Flags) -> Native {
    let imported =
        flags.import(&ImportOptions { time: "2026-01-01T00:00:00Z".into() }).unwrap_or_else(|e| panic!("{e}"));
    let cfg = allot_core::config::validate(&imported.config).unwrap();
    let ids = cfg.units.values().filter(|u| !u.hash.is_allot()).map(|u| u.attribute.clone()).collect();
    let snap = Snapshot::compile(&imported.state).unwrap();
    Native { snap, report: imported.report, ids }
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

    /// Whether the context is inside the import's domain: no bucketing id is a list.
    fn in_domain(&self, ctx: &Value) -> bool {
        let flat = flatten_context(ctx);
        self.ids.iter().all(|a| !flat.get(a).is_some_and(Value::is_array))
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
    outside: usize,
    outside_agree: usize,
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
            let inside = native.in_domain(ctx);
            for (flag, got) in &ours {
                let want = adapter[flag].as_str().map(str::to_string);
                self.comparisons += 1;
                self.with_variant += usize::from(got.is_some());
                let mut agree = *got == want;
                if let Some(e) = engine {
                    self.engine_compared += 1;
                    let by_engine = e[k].get(flag).cloned().flatten();
                    if by_engine == *got {
                        self.agree_engine += usize::from(inside);
                    } else {
                        agree = false;
                    }
                    if inside && by_engine != *got {
                        self.disagreements.push(format!(
                            "flag {flag}, context {ctx}: engine {by_engine:?}, allot import {got:?}\n  flags {flags_json}"
                        ));
                    }
                }
                if !inside {
                    self.outside += 1;
                    self.outside_agree += usize::from(agree);
                    continue;
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
             {} comparisons inside the domain ({} with a variant): {} agree with the adapter, {} of {} with the engine; \
             outside the domain {} of {} agree",
            self.configurations,
            self.refused,
            self.imported,
            self.flags,
            self.comparisons - self.outside,
            self.with_variant,
            self.agree_adapter,
            self.agree_engine,
            self.engine_compared.saturating_sub(self.outside),
            self.outside_agree,
            self.outside,
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
