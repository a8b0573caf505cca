//! The Rust side of `bench/node-sdk.sh`: the cost of one evaluation through `allot_sdk::Client`
//! on a snapshot file (what `GET /api/v1/snapshot` served), on the contexts the Node and Python
//! benches use (`user_id` u0…u9999, `country` SE/US/DE in turn). Prints one JSON line.
//!   cargo run --release -p allot-sdk --example evaluate_snapshot -- SNAPSHOT.json [EXPERIMENT]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let file = args.next().expect("usage: evaluate_snapshot SNAPSHOT.json [EXPERIMENT]");
    let experiment = args.next().unwrap_or_else(|| "home-2".into());
    let text = std::fs::read_to_string(&file).unwrap();
    let c = allot_sdk::Client::offline(&text, allot_sdk::Options::default()).unwrap();
    let ids = c.experiments();
    let countries = ["SE", "US", "DE"];
    let contexts: Vec<allot_core::Context> = (0..10_000)
        .map(|i| {
            let v = serde_json::json!({"user_id": format!("u{i}"), "country": countries[i % 3]});
            v.as_object().unwrap().clone()
        })
        .collect();
    let best = |n: usize, f: &dyn Fn(usize)| {
        f(1000);
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f(n);
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let one = best(1_000_000, &|n| {
        for i in 0..n {
            black_box(c.evaluate(&experiment, &contexts[i % contexts.len()]));
        }
    });
    let twenty = best(50_000, &|n| {
        for i in 0..n {
            for id in &ids {
                black_box(c.evaluate(id, &contexts[i % contexts.len()]));
            }
        }
    }) / ids.len() as f64;
    println!("{{\"rust_one_flag_ns\": {one:.0}, \"rust_per_flag_of_{}_ns\": {twenty:.0}}}", ids.len());
}
