//! The pure core of allot: hashing, bucket spaces, allocation, targeting, evaluation and change
//! control.
//!
//! Nothing here does I/O, reads a clock or the environment, or draws global randomness: time and
//! seeds are arguments. Validation and compilation can fail with every error at once, each with a
//! path to its field; evaluation of a compiled snapshot cannot fail and always returns a reason.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod bucketset;
pub mod config;
pub mod error;
pub mod eval;
pub mod hash;
pub mod history;
pub mod plan;
pub mod rng;
pub mod split;
pub mod state;
pub mod targeting;

/// The attributes of one evaluation: a JSON object (`{"user_id": "u1", "country": "SE"}`).
pub type Context = serde_json::Map<String, serde_json::Value>;

pub use error::{Errors, FieldError};
