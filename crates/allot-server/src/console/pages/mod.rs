//! The console's pages, one module each.

pub(crate) mod audit;
pub(crate) mod bandwidth;
pub(crate) mod change;
pub(crate) mod diagnostics;
pub(crate) mod editor;
pub(crate) mod experiment;
pub(crate) mod form;
pub(crate) mod keys;
pub(crate) mod overview;
pub(crate) mod resalt;
pub(crate) mod results;
pub(crate) mod sign_in;
pub(crate) mod timeline;
pub(crate) mod why;

use super::page::Problem;
use super::session::{self, Signed};
use crate::App;
use axum::http::HeaderMap;

/// Any other path under `/console`.
pub(crate) async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("{}: no such page", uri.path()))
}

/// The signed-in caller, or to the sign-in page.
pub(crate) async fn signed(app: &App, headers: &HeaderMap) -> Result<Signed, Problem> {
    session::current(app, headers).await?.ok_or_else(Problem::sign_in)
}
