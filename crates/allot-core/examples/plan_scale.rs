//! Times validation and planning of a large configuration read from a file (as `allot check`
//! does, without the CLI): `cargo run --release -p allot-core --example plan_scale -- FILE`.
//! `bench/plan.sh` generates the files and reports the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use allot_core::config;
use allot_core::plan::{self, Options};
use allot_core::state::State;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: plan_scale FILE [STATE]");
    let text = std::fs::read_to_string(&path).unwrap();
    let t = Instant::now();
    let raw = config::parse_yaml(&text).unwrap();
    let parsed = t.elapsed();
    let cfg = config::validate(&raw).unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    let validated = t.elapsed();
    let p = plan::plan(&State::default(), &cfg, &raw, &Options::default())
        .unwrap_or_else(|e| panic!("{}", allot_core::Errors(e)));
    let planned = t.elapsed();
    // A second plan over the applied state: every experiment kept (what `allot plan` does on a
    // running program).
    let again = plan::plan(&p.state, &cfg, &raw, &Options::default()).unwrap();
    let replanned = t.elapsed();
    println!(
        "{} experiments: parse {:.2} s, validate {:.2} s, plan from empty {:.2} s, plan over the applied state {:.2} s ({} changes)",
        cfg.experiments.len(),
        parsed.as_secs_f64(),
        (validated - parsed).as_secs_f64(),
        (planned - validated).as_secs_f64(),
        (replanned - planned).as_secs_f64(),
        again.changes.len()
    );
}
