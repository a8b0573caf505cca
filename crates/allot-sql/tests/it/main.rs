//! allot-sql's tests: the mapping's validation and each dialect's query (snapshots).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod snapshots;
mod tables;
