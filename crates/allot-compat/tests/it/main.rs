//! Conformance of the adapters: every case of the Confidence resolver specification and of the
//! Amplitude data in `spec/`, and malformed inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod amplitude;
mod amplitude_differential;
mod amplitude_import;
mod amplitude_oracle;
mod confidence;
mod confidence_differential;
mod confidence_import;
mod confidence_oracle;
mod malformed;

use std::path::PathBuf;

pub fn spec(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
