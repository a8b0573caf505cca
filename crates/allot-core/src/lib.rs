//! The pure core of allot: hashing, bucket spaces, allocation, targeting, evaluation and change
//! control.
//!
//! Nothing here does I/O, reads a clock or the environment, or draws global randomness: time and
//! seeds are arguments. Validation and compilation can fail with every error at once, each with a
//! path to its field; evaluation of a compiled snapshot cannot fail and always returns a reason.
//!
//! The whole flow, as `allot apply` and `allot assign` run it:
//!
//! ```
//! use allot_core::{config, eval::{NoSticky, Reason, Snapshot}, plan::{self, Options}, state::State};
//!
//! let raw = config::parse_yaml(r#"
//! units: {user: {attribute: user_id}}
//! surfaces: [home]
//! experiments:
//!   ranking-v2:
//!     unit: user
//!     surfaces: [home]
//!     share: 30%
//!     variants: {control: 1, treatment: 1}
//!     include: {alice: treatment}
//!     state: running
//! "#).unwrap();
//! let cfg = config::validate(&raw).unwrap();
//! let state = plan::apply(&State::default(), &cfg, &raw, &Options::default()).unwrap().state;
//! let snapshot = Snapshot::compile(&state).unwrap();
//!
//! let ctx = serde_json::json!({"user_id": "alice"}).as_object().unwrap().clone();
//! let a = snapshot.evaluate_one(0, &ctx, &NoSticky);
//! assert_eq!(a.reason, Reason::Included);
//! assert_eq!(snapshot.variant_name(0, &a), Some("treatment"));
//! ```
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
pub mod rules;
pub mod salt;
pub mod scope;
pub mod split;
pub mod state;
pub mod targeting;
#[doc(hidden)]
pub mod testing;
pub mod trace;

/// The attributes of one evaluation: a JSON object (`{"user_id": "u1", "country": "SE"}`).
pub type Context = serde_json::Map<String, serde_json::Value>;

pub use error::{Errors, FieldError};
