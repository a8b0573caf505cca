//! HTTP tests of the service, in-process on the axum `Router`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod admin;
mod auth;
mod browser;
mod conn;
mod console;
mod console_changes;
mod evaluate;
mod lifecycle;
mod limits;
mod ofrep;
mod ops;
mod planning;
mod postgres;
mod reports;
mod results;
mod start;
mod support;
mod tls;
mod writes;
