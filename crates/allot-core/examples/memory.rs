//! The memory row of the performance table: 1,000 live allocations over 1,000,000 buckets.
//!
//! Builds 1,000 running experiments (100 surfaces × 10 experiments × 5%, under a 5% holdout) and
//! applies them to the empty state; then a child process (this example again, `--evaluate`) reads
//! that state from standard input, compiles the evaluation snapshot and prints the bytes its
//! bucket sets hold and its resident memory (Linux `/proc/self/status`; 0 elsewhere). The peak of
//! the applying process is printed too: it is not the target's figure but worth watching.
//!
//! Run: `cargo run --release -p allot-core --example memory`. Target: ≤ 64 MB.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use allot_core::config;
use allot_core::eval::Snapshot;
use allot_core::plan::{self, Options};
use allot_core::state::State;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};

const EXPERIMENTS: usize = 1000;
const SURFACES: usize = 100;

fn yaml() -> String {
    let mut y = String::from("units:\n  user: {attribute: user_id}\nsurfaces: [");
    for s in 0..SURFACES {
        let _ = write!(y, "{}s{s}", if s == 0 { "" } else { ", " });
    }
    y.push_str("]\nholdouts:\n  holdback: {unit: user, share: 5%, applies_to: [s0]}\nexperiments:\n");
    for i in 0..EXPERIMENTS {
        let _ = writeln!(
            y,
            "  exp-{i:04}:\n    unit: user\n    surfaces: [s{}]\n    share: 5%\n    variants: {{control: 1, treatment: 1}}\n    state: running",
            i % SURFACES
        );
    }
    y
}

/// A `/proc/self/status` field in kB (`VmRSS`, `VmHWM`), or 0 where there is none.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix(field)?
                        .strip_prefix(':')
                        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

fn mb(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--evaluate") {
        evaluate_node();
        return;
    }
    // Allocating: apply the 1,000 experiments to the empty state, as `allot apply` would.
    let raw = config::parse_yaml(&yaml()).unwrap();
    let cfg = config::validate(&raw).unwrap();
    let state = plan::apply(&State::default(), &cfg, &raw, &Options::default()).unwrap().state;
    let live = state.allocations.iter().filter(|a| a.is_live()).count();
    let text = serde_json::to_string(&state).unwrap();
    println!("live allocations:              {live} ({EXPERIMENTS} experiments + 1 holdout) over 1,000,000 buckets");
    println!("state file (JSON):             {}", mb(text.len() as f64));
    println!("apply process peak (VmHWM):    {}", mb(status_kb("VmHWM") as f64 * 1024.0));
    drop(state);

    // Evaluating: a fresh process loads the state, as `allot assign` or a service node would, so
    // that its resident memory is not inflated by what the allocator kept from the apply.
    let mut child =
        Command::new(std::env::current_exe().unwrap()).arg("--evaluate").stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    std::process::exit(status.code().unwrap_or(1));
}

/// Reads the state from standard input, compiles the snapshot and reports its memory.
fn evaluate_node() {
    let rss_start = status_kb("VmRSS");
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).unwrap();
    let state = State::from_json(&text).unwrap();
    drop(text);
    let snap = Snapshot::compile(&state).unwrap();
    let bytes = snap.allocation_bytes();
    let rss = status_kb("VmRSS");
    let hwm = status_kb("VmHWM");
    println!(
        "snapshot allocation bytes:     {bytes} ({}, {:.0} B per experiment)",
        mb(bytes as f64),
        bytes as f64 / EXPERIMENTS as f64
    );
    println!(
        "evaluating process VmRSS:      {} (state + snapshot; {} at start)",
        mb(rss as f64 * 1024.0),
        mb(rss_start as f64 * 1024.0)
    );
    println!("evaluating process peak VmHWM: {}", mb(hwm as f64 * 1024.0));
    let ok = bytes as f64 <= 64e6 && hwm as f64 * 1024.0 <= 64e6;
    println!("target <= 64 MB: {}", if ok { "met" } else { "MISSED" });
    drop(snap);
}
