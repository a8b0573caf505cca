//! Exposure intake into PostgreSQL at the store level (issue 6, item 4, first measurement):
//! `PgStore::record_exposures` with batches of 1,000 (the most `POST /api/v1/exposures` takes),
//! from several concurrent writers, as one node would write them. Not through HTTP.
//!
//! Run: `cargo run --release -p allot-store --example pg_exposures [EXPOSURES] [WRITERS]`
//! with `ALLOT_TEST_POSTGRES_URL` set (default 400,000 exposures, 8 writers). Works in a fresh
//! schema, dropped at the end. Prints exposures/s for new exposures and for a second pass of the
//! same exposures (all duplicates). Target (whole node, over HTTP): ≥ 20,000 exposures/s.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use allot_store::postgres::PgStore;
use allot_store::{Exposure, Store};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 1000;

async fn pass(store: &Arc<PgStore>, total: usize, writers: usize) -> (f64, u64) {
    let t = Instant::now();
    let mut tasks = vec![];
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut new = 0;
            let mut start = w * BATCH;
            while start < total {
                let end = (start + BATCH).min(total);
                let batch: Vec<Exposure> = (start..end)
                    .map(|i| Exposure {
                        unit: format!("user-{i}"),
                        experiment: format!("exp-{}", i % 20),
                        variant: if i % 2 == 0 { "control".into() } else { "treatment".into() },
                        day: "2026-01-01".into(),
                        time: "2026-01-01T12:00:00Z".into(),
                        version: 7,
                    })
                    .collect();
                new += store.record_exposures(&batch).await.unwrap();
                start += writers * BATCH;
            }
            new
        }));
    }
    let mut new = 0;
    for t in tasks {
        new += t.await.unwrap();
    }
    (total as f64 / t.elapsed().as_secs_f64(), new)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).map(|a| a.parse().unwrap()).unwrap_or(400_000);
    let writers: usize = args.get(2).map(|a| a.parse().unwrap()).unwrap_or(8);
    let url = std::env::var("ALLOT_TEST_POSTGRES_URL").expect("set ALLOT_TEST_POSTGRES_URL");
    let schema = format!("allot_bench_{}", std::process::id());
    let store = Arc::new(PgStore::open_in_schema(&url, Some(&schema)).await.unwrap());
    let (rate, new) = pass(&store, total, writers).await;
    println!(
        "new exposures:       {total} in batches of {BATCH}, {writers} writers: {rate:.0} exposures/s ({new} new)"
    );
    let (rate, new) = pass(&store, total, writers).await;
    println!(
        "duplicate exposures: {total} in batches of {BATCH}, {writers} writers: {rate:.0} exposures/s ({new} new)"
    );
    drop(store);
    PgStore::drop_schema(&url, &schema).await.unwrap();
}
