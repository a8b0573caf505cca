//! HTTP tests of the service, in-process on the axum `Router`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod admin;
mod auth;
mod evaluate;
mod ofrep;
mod ops;
mod support;
mod writes;
