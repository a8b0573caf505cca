//! The configuration file (`allot.yaml`): parsed into a raw JSON tree, then validated into typed
//! form with every error at once, each naming its field.
//!
//! See `docs/config.md` for the reference. Parsing never panics on any input.

use crate::error::{index, join, FieldError};
use crate::hash::{AMPLITUDE_BUCKETS, AMPLITUDE_SPLIT_BUCKETS};
use crate::targeting::{check_segments, Targeting};
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::HashMap;

mod relations;
mod validate;

pub use validate::*;

/// Most buckets a unit type's space may have.
pub const MAX_BUCKETS: u32 = 100_000_000;

/// Default number of buckets of a unit type's space.
pub const DEFAULT_BUCKETS: u32 = 1_000_000;
/// Most slots a mutual exclusion group may have (Amplitude's limit).
pub const MAX_SLOTS: usize = 20;
/// Most variants an experiment may have. Evaluation indexes variants with 16 bits; the limit
/// is far below that so the split (1,000,000 split buckets) still gives each variant traffic.
pub const MAX_VARIANTS: usize = 1_000;

/// A share of a population, kept exactly as a fraction `num / den` (from text like `30%`,
/// `12.5%` or `0.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Numerator.
    pub num: u128,
    /// Denominator (a power of ten).
    pub den: u128,
}

impl Share {
    /// The whole population.
    pub const ALL: Share = Share { num: 1, den: 1 };

    /// Parses `30%`, `12.5%`, `0.3` or `1`. Plain numbers are fractions and must be ≤ 1.
    pub fn parse(v: &Value) -> Result<Share, String> {
        let written = match v {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        };
        let (text, percent) = match v {
            Value::String(s) => match s.trim().strip_suffix('%') {
                Some(p) => (p.trim().to_string(), true),
                None => (s.trim().to_string(), false),
            },
            Value::Number(n) => (n.to_string(), false),
            _ => return Err(format!("expected a share such as \"30%\" or 0.3, found {}", kind(v))),
        };
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let digits_ok = !int.is_empty() || !frac.is_empty();
        if !digits_ok
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 12
            || int.len() > 6
        {
            return Err(format!("`{written}` is not a share such as \"30%\" or 0.3"));
        }
        let mut num: u128 = format!("{int}{frac}").parse().map_err(|_| format!("`{written}` is not a number"))?;
        let mut den: u128 = 10u128.pow(frac.len() as u32);
        if percent {
            den *= 100;
        }
        let g = gcd(num, den);
        if g > 1 {
            num /= g;
            den /= g;
        }
        let share = Share { num, den };
        if share.num > share.den {
            return Err(if percent {
                format!("{text}% is more than 100%")
            } else {
                format!("{text} is more than 1 (write a percentage as \"{text}%\")")
            });
        }
        Ok(share)
    }

    /// The exact number of buckets of a `space`-bucket space, or an error when it is not whole.
    pub fn buckets(&self, space: u64) -> Result<u64, String> {
        let n = self.num * u128::from(space);
        if !n.is_multiple_of(self.den) {
            return Err(format!("{} of {space} buckets is not a whole number of buckets", self.percent()));
        }
        Ok((n / self.den) as u64)
    }

    /// As a float fraction.
    pub fn fraction(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// As a percentage text, e.g. `30%`.
    pub fn percent(&self) -> String {
        format!("{}%", fmt_num(self.fraction() * 100.0))
    }
}

pub(super) fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Formats a number without trailing zeros.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Which hash places units in buckets (`hash:` on a unit type) or in split buckets
/// (`split_hash:` on an experiment). Written by `allot compat amplitude import` to reproduce
/// Amplitude's bucketing exactly; allot's own is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketHash {
    /// allot's frozen bucketing ([`crate::hash::bucket`]): `(h1 >> 4) mod B` of MurmurHash3
    /// x64_128 over `"<salt>|<unit>"`.
    #[default]
    Allot,
    /// Amplitude's ([`crate::hash::amplitude_hash`]): MurmurHash3 x86_32 over `"<salt>/<unit>"`;
    /// the bucket is `hash % 100` (a space of exactly 100 buckets), the split bucket `hash / 100`
    /// (explicit ranges tiling exactly `0..42,949,673`).
    Amplitude,
}

impl BucketHash {
    /// Its name in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            BucketHash::Allot => "allot",
            BucketHash::Amplitude => "amplitude",
        }
    }

    /// Whether it is allot's own (the default, left out of recorded states).
    pub fn is_allot(&self) -> bool {
        *self == BucketHash::Allot
    }
}

/// A unit type: what is randomised, and the context attribute carrying its id.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitType {
    /// Context attribute holding the unit id, e.g. `user_id`.
    pub attribute: String,
    /// Buckets in its space.
    pub buckets: u32,
    /// Salt of the unit → bucket hash.
    pub salt: String,
    /// The unit → bucket hash (`hash:`; allot's by default).
    pub hash: BucketHash,
    /// Context attributes a unit of this type never changes (country of registration, not
    /// plan). Only these may prove two exclusive experiments' targeting disjoint and let them
    /// share buckets. None by default.
    pub stable: Vec<String>,
}

impl UnitType {
    /// The attributes that may prove two exclusive experiments' targeting disjoint (and so let
    /// them share buckets): its `stable` ones and the unit id's own attribute.
    pub fn proof_attributes(&self) -> Vec<String> {
        self.stable.iter().chain([&self.attribute]).cloned().collect()
    }
}

/// A holdout: a random set of buckets that the experiments it applies to may not use.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    /// Unit type.
    pub unit: String,
    /// Share of all units of the type.
    pub share: Share,
    /// Surfaces, tags, groups or experiment ids it applies to; `all` for everything.
    pub applies_to: Vec<String>,
}

/// A mutual exclusion group: a share of the space cut into fixed slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Unit type.
    pub unit: String,
    /// Share of all units of the type.
    pub share: Share,
    /// Slot shares, each a share of the group.
    pub slots: Vec<Share>,
    /// Surfaces every member is on.
    pub surfaces: Vec<String>,
}

/// Lifecycle state of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpState {
    /// Being prepared; holds no buckets.
    Draft,
    /// Live: holds its allocation and assigns units.
    Running,
    /// Ended: its buckets are back in the free pool.
    Stopped,
    /// Ended and put away.
    Archived,
}

impl ExpState {
    /// Its name in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExpState::Draft => "draft",
            ExpState::Running => "running",
            ExpState::Stopped => "stopped",
            ExpState::Archived => "archived",
        }
    }
}

/// Why lifecycle action `action` (`pause`, `resume`) does not apply to an experiment whose
/// `state` is `now`, if it does not: only a running experiment is paused and only a paused one
/// resumed (a draft starts with `start`, or `state: paused` to start paused). Other actions are
/// for change control to judge.
pub fn lifecycle_action_refused(action: &str, now: &str) -> Option<&'static str> {
    match (action, now) {
        ("pause", "running") | ("resume", "paused") => None,
        ("pause", _) => Some("only a running experiment can be paused"),
        ("resume", _) => Some("only a paused experiment can be resumed (a draft starts with `start`)"),
        _ => None,
    }
}

/// A variant: a relative weight and an optional JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Relative weight.
    pub weight: u32,
    /// Value served with the variant (OFREP and SDKs), if any.
    pub value: Option<Value>,
    /// Explicit split ranges `[lo, hi)` (`ranges` in the file): when the variants of an
    /// experiment carry them, together they tile `0..N` and the split is `bucket(salt, unit, N)`
    /// looked up in them instead of ranges by weight ([`crate::split::Split::new`]). Written by
    /// `allot compat … import` to reproduce a foreign engine's split exactly; `weight` is then
    /// the number of split buckets the ranges hold. `None`: the split by weight.
    pub ranges: Option<Vec<(u32, u32)>>,
}

/// Largest explicit split space (`ranges` bounds): a proto `int32`, as Confidence's bucket count.
pub const MAX_SPLIT_BUCKETS: u64 = i32::MAX as u64;

/// Membership of an experiment in a group: which slots (0-based here; 1-based in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRef {
    /// Group id.
    pub group: String,
    /// Slot indices, 0-based.
    pub slots: Vec<usize>,
}

/// A prerequisite: the experiment runs only for units given one of `variants` of `experiment`.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// The required experiment.
    pub experiment: String,
    /// Its variants that qualify.
    pub variants: Vec<String>,
}

/// An experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Unit type.
    pub unit: String,
    /// Surfaces: exclusion scopes (each is both a tag and an `exclusive_to` entry).
    pub surfaces: Vec<String>,
    /// Confidence-style tags this experiment carries.
    pub tags: Vec<String>,
    /// Tags this experiment must not share a unit with.
    pub exclusive_to: Vec<String>,
    /// Groups and slots.
    pub groups: Vec<GroupRef>,
    /// Share of all units of the type; `None` = all of its slots.
    pub share: Option<Share>,
    /// Variants in order.
    pub variants: IndexMap<String, Variant>,
    /// Who is eligible.
    pub targeting: Option<Targeting>,
    /// Individual inclusions: unit id → variant.
    pub include: IndexMap<String, String>,
    /// Lifecycle state.
    pub state: ExpState,
    /// Salt of the variant split (default: the experiment id).
    pub salt: String,
    /// The split's hash (`split_hash:`; allot's by default). With Amplitude's, the split bucket
    /// is `amplitude_hash(salt, unit) / 100` and the variants carry explicit `ranges`.
    pub split_hash: BucketHash,
    /// Prerequisites.
    pub requires: Vec<Requirement>,
    /// Whether assignments are kept in the sticky store.
    pub sticky: bool,
    /// `state: paused`: running (it keeps its allocation and every rule of a running
    /// experiment) but serving nobody (`PAUSED`); resuming (`state: running`) serves every unit
    /// exactly what it had. `state` is then [`ExpState::Running`].
    pub paused: bool,
}

impl Experiment {
    /// Its lifecycle state as the configuration names it: `paused` for a paused running one.
    pub fn state_name(&self) -> &'static str {
        if self.paused {
            "paused"
        } else {
            self.state.as_str()
        }
    }

    /// Every tag it carries: its surfaces and tags (and its groups' surfaces, resolved by the caller).
    pub fn all_tags(&self) -> impl Iterator<Item = &String> {
        self.surfaces.iter().chain(&self.tags)
    }

    /// Every tag it is exclusive to.
    pub fn all_exclusive_to(&self) -> impl Iterator<Item = &String> {
        self.surfaces.iter().chain(&self.exclusive_to)
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Unit types.
    pub units: IndexMap<String, UnitType>,
    /// Declared surfaces.
    pub surfaces: Vec<String>,
    /// Named targeting segments.
    pub segments: IndexMap<String, Targeting>,
    /// Holdouts.
    pub holdouts: IndexMap<String, Holdout>,
    /// Mutual exclusion groups.
    pub groups: IndexMap<String, Group>,
    /// Experiments.
    pub experiments: IndexMap<String, Experiment>,
}
