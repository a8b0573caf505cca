//! Property tests for the six invariants of DESIGN.md ("Invariants"), over random configurations
//! and random sequences of changes driven through `plan::apply`.
//!
//! A scenario is a random model of a configuration — 1–2 unit types with small bucket spaces
//! (10,000–50,000 buckets), 1–4 surfaces, 0–2 holdouts (applying to all, a surface, a tag, a group
//! or an experiment), 0–2 mutual exclusion groups with 1–5 slots, 3–8 experiments with surfaces,
//! Confidence-style `tags` + `exclusive_to`, one or two groups, whole-bucket shares, weighted
//! variants, an inclusion, country targeting (directly or through a segment) — and 3–8 changes:
//! start, stop, archive, grow, shrink, reweight, re-salt, add, remove, move surfaces or slots, add
//! a group or a holdout, change what a holdout applies to, change targeting, resize a space, run
//! the salt machine, re-apply. A quarter of the changes are forced with a reason. Every change is
//! rendered to a configuration tree, validated and applied to the recorded state; the properties
//! are checked on the bucket sets (exactly) and on a fixed population of units `u0`, `u1`, … (by
//! sampling).
//!
//! Case counts are small so that the module runs in well under a minute in a debug build; set
//! `PROPTEST_CASES` to raise them. Failures are persisted in `proptest-regressions/invariants.txt`
//! beside this file.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use allot_core::audit::audit;
use allot_core::bucketset::BucketBitmap;
use allot_core::config::{self, Config, ExpState};
use allot_core::eval::{Assignment, NoSticky, Reason, Snapshot};
use allot_core::hash;
use allot_core::plan::{self, ApplyError, Options, Plan};
use allot_core::rng::mix;
use allot_core::salt;
use allot_core::state::{OwnerKind, State};
use allot_core::targeting::provably_disjoint;
use allot_core::testing::edit;
use allot_core::Context;
use indexmap::IndexMap;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)*)));
        }
    };
}

mod bad_input;
mod checks;
mod generators;
mod independence;
mod population;
mod properties;
mod reproductions;
mod scenario;
mod sticky;
mod trace;

#[allow(unused_imports)]
use bad_input::*;
#[allow(unused_imports)]
use checks::*;
#[allow(unused_imports)]
use generators::*;
#[allow(unused_imports)]
use independence::*;
#[allow(unused_imports)]
use population::*;
#[allow(unused_imports)]
use properties::*;
#[allow(unused_imports)]
use reproductions::*;
#[allow(unused_imports)]
use scenario::*;
#[allow(unused_imports)]
use sticky::*;

// ---------------------------------------------------------------------------------------------
// Test configuration
// ---------------------------------------------------------------------------------------------

/// Where proptest records failing seeds: a committed file beside this module (absolute, so it
/// does not depend on the working directory of the test run).
pub(super) const REGRESSIONS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/proptest-regressions/invariants.txt");

/// `cases` unless `PROPTEST_CASES` says otherwise.
pub(super) fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        // A failing sequence shrinks well within this; do not let shrinking run away.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// Sampled units per evaluation while a sequence runs.
pub(super) const UNITS: usize = 1_500;
/// Sampled units for the statistical checks at the end of a sequence.
pub(super) const BIG_UNITS: usize = 12_000;
/// Tolerance of sampled proportions, in standard deviations. 5σ rather than 4σ: a full run makes
/// a few thousand such comparisons, and a false alarm should stay far below one per run.
pub(super) const SIGMAS: f64 = 5.0;

pub(super) const TIME: &str = "2026-01-01T00:00:00Z";
pub(super) const COUNTRIES: [&str; 5] = ["SE", "NO", "US", "DE", "FI"];
pub(super) const BUCKETS: [u32; 4] = [10_000, 20_000, 40_000, 50_000];
pub(super) const TAGS: [&str; 2] = ["t0", "t1"];
pub(super) const VARIANTS: [&str; 3] = ["control", "treatment", "t2"];

/// The fixed population: `user_id = u<i>`, `device_id = d<i>`, and a country drawn from `i`
/// independently of both ids' hashes.
pub(super) fn contexts() -> &'static [Context] {
    static C: OnceLock<Vec<Context>> = OnceLock::new();
    C.get_or_init(|| {
        (0..BIG_UNITS)
            .map(|i| {
                let mut c = Map::new();
                c.insert("user_id".into(), Value::String(format!("u{i}")));
                c.insert("device_id".into(), Value::String(format!("d{i}")));
                c.insert("country".into(), Value::String(country(i).into()));
                c
            })
            .collect()
    })
}

pub(super) fn country(i: usize) -> &'static str {
    COUNTRIES[(mix(i as u64 ^ 0xC0_FFEE) % COUNTRIES.len() as u64) as usize]
}

// ---------------------------------------------------------------------------------------------
// The model of a configuration, rendered to the configuration tree
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(super) struct UnitM {
    pub(super) name: &'static str,
    pub(super) attr: &'static str,
    pub(super) buckets: u32,
    /// Whether `country` is declared stable (exclusive experiments may then share buckets
    /// when their country targeting is disjoint).
    pub(super) stable_country: bool,
}

#[derive(Clone, Debug)]
pub(super) struct HoldoutM {
    pub(super) name: String,
    pub(super) unit: usize,
    pub(super) buckets: u64,
    pub(super) applies_to: Vec<String>,
}

#[derive(Clone, Debug)]
pub(super) struct GroupM {
    pub(super) name: String,
    pub(super) unit: usize,
    /// Whole percent of the space.
    pub(super) pct: u64,
    /// Whole percents of the group.
    pub(super) slots: Vec<u64>,
    pub(super) surfaces: Vec<String>,
}

#[derive(Clone, Debug)]
pub(super) struct ExpM {
    pub(super) id: String,
    pub(super) unit: usize,
    pub(super) surfaces: Vec<String>,
    pub(super) tags: Vec<String>,
    pub(super) exclusive_to: Vec<String>,
    /// Group and its slots, 1-based.
    pub(super) group: Option<(usize, Vec<usize>)>,
    /// A second group (then written as `groups: {g0: [..], g1: [..]}`); it reaches only the
    /// intersection of the two groups' slots.
    pub(super) group2: Option<(usize, Vec<usize>)>,
    /// Whole buckets.
    pub(super) share: Option<u64>,
    pub(super) variants: Vec<(String, u32)>,
    pub(super) countries: Option<Vec<&'static str>>,
    pub(super) state: ExpState,
    /// Written as `state: paused` while running.
    pub(super) paused: bool,
    pub(super) salt: Option<String>,
    pub(super) include: Option<(usize, usize)>,
}

impl ExpM {
    pub(super) fn salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) units: Vec<UnitM>,
    pub(super) surfaces: Vec<String>,
    pub(super) holdouts: Vec<HoldoutM>,
    pub(super) groups: Vec<GroupM>,
    pub(super) exps: Vec<ExpM>,
    /// The countries of the segments `nordic` and `us` (which experiments' targeting uses).
    pub(super) segments: [Vec<&'static str>; 2],
    /// Next fresh id number.
    pub(super) next: usize,
}

/// `k / b` as exact share text: a fraction (`0.0125`) or a percentage (`1.25%`).
pub(super) fn share_text(k: u64, b: u64, percent: bool) -> String {
    assert!(k > 0 && k <= b, "share {k} of {b}");
    let mut d = 0u32;
    while !(u128::from(k) * 10u128.pow(d)).is_multiple_of(u128::from(b)) {
        d += 1;
        assert!(d <= 12, "{k}/{b} has no short decimal");
    }
    let n = u128::from(k) * 10u128.pow(d) / u128::from(b);
    let (n, d) = if percent { (n, d.saturating_sub(2)) } else { (n, d) };
    let n = if percent && d == 0 { u128::from(k) * 100 / u128::from(b) } else { n };
    let body = if d == 0 {
        n.to_string()
    } else {
        let p = 10u128.pow(d);
        format!("{}.{:0w$}", n / p, n % p, w = d as usize)
    };
    if percent {
        format!("{body}%")
    } else {
        body
    }
}

impl Model {
    pub(super) fn space(&self, unit: usize) -> u64 {
        u64::from(self.units[unit].buckets)
    }

    pub(super) fn group_buckets(&self, g: usize) -> u64 {
        self.space(self.groups[g].unit) * self.groups[g].pct / 100
    }

    pub(super) fn slot_buckets(&self, g: usize, slot0: usize) -> u64 {
        self.group_buckets(g) * self.groups[g].slots[slot0] / 100
    }

    /// Buckets of an experiment's slots (all of the space outside a group).
    pub(super) fn room(&self, e: &ExpM) -> u64 {
        match &e.group {
            Some((g, slots)) => slots.iter().map(|s| self.slot_buckets(*g, s - 1)).sum(),
            None => self.space(e.unit),
        }
    }

    pub(super) fn render(&self) -> Value {
        let mut units = Map::new();
        for u in &self.units {
            let mut m = json!({"attribute": u.attr, "buckets": u.buckets});
            if u.stable_country {
                m["stable"] = json!(["country"]);
            }
            units.insert(u.name.into(), m);
        }
        let mut holdouts = Map::new();
        for h in &self.holdouts {
            let b = self.space(h.unit);
            holdouts.insert(
                h.name.clone(),
                json!({"unit": self.units[h.unit].name, "share": share_text(h.buckets, b, h.buckets % 2 == 0), "applies_to": h.applies_to}),
            );
        }
        let mut groups = Map::new();
        for g in &self.groups {
            let slots: Vec<String> = g.slots.iter().map(|s| format!("{s}%")).collect();
            let mut m = json!({"unit": self.units[g.unit].name, "share": format!("{}%", g.pct), "slots": slots});
            if !g.surfaces.is_empty() {
                m["surfaces"] = json!(g.surfaces);
            }
            groups.insert(g.name.clone(), m);
        }
        let mut exps = Map::new();
        for e in &self.exps {
            let mut m = Map::new();
            m.insert("unit".into(), json!(self.units[e.unit].name));
            m.insert("surfaces".into(), json!(e.surfaces));
            if !e.tags.is_empty() {
                m.insert("tags".into(), json!(e.tags));
            }
            if !e.exclusive_to.is_empty() {
                m.insert("exclusive_to".into(), json!(e.exclusive_to));
            }
            match (&e.group, &e.group2) {
                (Some((g, slots)), None) => {
                    m.insert("group".into(), json!(self.groups[*g].name));
                    m.insert("slots".into(), json!(slots));
                }
                (Some((g, slots)), Some((h, slots2))) => {
                    m.insert(
                        "groups".into(),
                        json!({ self.groups[*g].name.clone(): slots, self.groups[*h].name.clone(): slots2 }),
                    );
                }
                _ => {}
            }
            if let Some(k) = e.share {
                let b = self.space(e.unit);
                m.insert("share".into(), json!(share_text(k, b, k % 3 != 0)));
            }
            let vars: Map<String, Value> = e.variants.iter().map(|(n, w)| (n.clone(), json!(w))).collect();
            m.insert("variants".into(), Value::Object(vars));
            if let Some(cs) = &e.countries {
                let crit = match cs.as_slice() {
                    ["SE", "NO"] => json!({"segment": "nordic"}),
                    ["US"] => json!({"segment": "us"}),
                    _ => json!({"attribute": "country", "in": cs}),
                };
                m.insert("targeting".into(), if cs.len() % 2 == 0 { json!({"all": [crit]}) } else { crit });
            }
            if let Some((u, v)) = e.include {
                let unit = format!("{}{u}", &self.units[e.unit].attr[..1]);
                m.insert("include".into(), json!({ unit: e.variants[v % e.variants.len()].0 }));
            }
            let state = if e.paused && e.state == ExpState::Running { "paused" } else { e.state.as_str() };
            m.insert("state".into(), json!(state));
            if let Some(s) = &e.salt {
                m.insert("salt".into(), json!(s));
            }
            exps.insert(e.id.clone(), Value::Object(m));
        }
        json!({
            "units": units,
            "surfaces": self.surfaces,
            "segments": {
                "nordic": {"attribute": "country", "in": self.segments[0]},
                "us": match self.segments[1].as_slice() {
                    [one] => json!({"attribute": "country", "eq": one}),
                    more => json!({"attribute": "country", "in": more}),
                },
            },
            "holdouts": holdouts,
            "groups": groups,
            "experiments": exps,
        })
    }
}
