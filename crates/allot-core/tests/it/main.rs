#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Integration tests of allot-core: golden data, examples and property tests.

mod amplitude_hash;
mod coordination;
mod engine;
mod golden;
mod hardening;
mod hash;
mod invariants;
mod split_ranges;
mod targeting;
mod trace;
