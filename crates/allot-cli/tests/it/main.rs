//! End-to-end tests of the `allot` binary, run as a user would: files in a scratch directory.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod analyze_golden;
mod analyze_time;
mod cli;
mod compat;
mod load;
mod node_sdk;
mod postgres;
mod python_sdk;
mod sequential;
mod serve;
mod stats;
mod tls;
mod warehouse;
