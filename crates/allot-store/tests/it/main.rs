//! Store tests, written against the `Store` trait so that every backend runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod backend;
mod copy;
mod log;
mod store;
mod tls;
