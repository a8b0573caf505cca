//! Run other systems' configurations on allot's core: Spotify Confidence resolver states and
//! Amplitude Experiment flag configurations, with the assignments those systems give.
//!
//! Each adapter parses the foreign format (every error names its JSON path), compiles it once
//! into structures built from allot-core's pieces (the frozen hashes of [`allot_core::hash`],
//! compact [`allot_core::bucketset::BucketSet`]s for Confidence's segment bitsets), and then
//! evaluates without allocating more than the answer. Where the foreign semantics differ from
//! allot's own targeting (type coercions, missing values, case rules), the adapter keeps the
//! foreign semantics exactly; ARCHITECTURE.md ("Compatibility adapters") lists what reuses the
//! core and what stays here, and why.
//!
//! Pure: no I/O. The `allot compat` commands read the files and print.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod amplitude;
pub mod confidence;
mod error;
mod js;

pub use error::CompatError;

/// Parses JSON text into `T`, naming the JSON path of the first error (`flags[2].segments[0].bucket`).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, CompatError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(CompatError::from_path)?;
    de.end().map_err(|e| CompatError::invalid("(end)", e.to_string()))?;
    Ok(value)
}

/// Deserializes an already parsed JSON value into `T`, naming the JSON path of the first error.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, CompatError> {
    serde_path_to_error::deserialize(value).map_err(CompatError::from_path)
}
