//! Targeting: which evaluation contexts an experiment (or segment) applies to.
//!
//! A targeting expression is parsed from JSON (converted from YAML by the caller) into a
//! [`Targeting`] tree, checked against the named segments with [`check_segments`], compiled into
//! a [`Compiled`] form (segments inlined, values pre-parsed) and evaluated with
//! [`Compiled::matches`], which cannot fail and does not allocate (save to read a context
//! version whose pre-release or build label is longer than 8 bytes).
//!
//! # Missing attributes
//!
//! **An attribute that is absent from the context, or is JSON `null`, is *missing*. A criterion
//! on a missing attribute does not match — except `exists: false`, which matches. This includes
//! `ne` and `not_in`: they mean "present and different", so they do NOT match a missing
//! attribute.** `not` inverts its whole sub-expression as usual, so
//! `{not: {attribute: country, eq: SE}}` matches a context without `country`, while
//! `{attribute: country, ne: SE}` does not. Inside a quantifier (`any`/`all` over a list), a
//! `null` element is missing in the same sense.
//!
//! # Grammar
//!
//! An expression is an object, either a *logical node* (no `attribute` key, exactly one of):
//!
//! | node | meaning |
//! | --- | --- |
//! | `{all: [expr, ...]}` | every sub-expression matches (an empty list matches everyone) |
//! | `{any: [expr, ...]}` | some sub-expression matches (an empty list matches no one) |
//! | `{not: expr}` | the sub-expression does not match |
//! | `{segment: name}` | the named segment (defined elsewhere) matches |
//!
//! or a *criterion*: `{attribute: name, op: value, ...}` with one or more operators, all of which
//! must hold (`{attribute: age, gte: 18, lt: 65}`):
//!
//! | operator | value | holds when the attribute's value ... |
//! | --- | --- | --- |
//! | `eq` / `ne` | string, number or boolean | equals / does not equal it |
//! | `in` / `not_in` | list of those | equals one / none of them |
//! | `gt` `gte` `lt` `lte` | number | is a number (or numeric string) `>` `>=` `<` `<=` it |
//! | `semver_eq` `semver_gt` `semver_gte` `semver_lt` `semver_lte` | version string | is a version string comparing so |
//! | `before` / `after` | RFC 3339 timestamp | is a timestamp strictly before / after it |
//! | `starts_with` `ends_with` `contains` | string | is a string that does so (case-sensitive) |
//! | `exists` | boolean | `true`: is present and not null; `false`: is missing |
//! | `any` / `all` | object of operators | is a list some / every element of which satisfies all of them |
//!
//! ## Comparisons
//!
//! - **Equality** (`eq`, `ne`, `in`, `not_in`) never coerces between types: strings equal strings
//!   exactly (case-sensitive), numbers equal numbers numerically (context `18` equals criterion
//!   `18.0`), booleans equal booleans. A context string `"18"` does NOT equal criterion number
//!   `18`. Lists and objects equal nothing (so `ne` holds for them). Numbers compare as 64-bit
//!   floats: integers beyond 2^53 may equal their neighbours, so keep large identifiers in strings.
//! - **Ordering** (`gt`, `gte`, `lt`, `lte`): the criterion is a number; the context value must be
//!   a JSON number, or a string that parses as a finite number (`"18"`, `"2.5"`, `"1e3"`; no
//!   surrounding spaces). Anything else does not match.
//! - **Versions** (`semver_*`): the criterion must be a version; the context value must be a
//!   string. Both are read leniently: a leading `v`, and a missing minor or patch (`"1.2"` is
//!   `1.2.0`, `"2"` is `2.0.0`) are accepted. Comparison follows SemVer precedence: pre-releases
//!   sort before their release, build metadata is ignored. An unreadable context value does not
//!   match.
//! - **Timestamps** (`before`, `after`, both strict): the criterion is an RFC 3339 string; the
//!   context value is an RFC 3339 string or a number of Unix seconds (fractions allowed,
//!   compared to within a microsecond).
//! - **Quantifiers** (`any`, `all`): `any` holds when some element satisfies every inner operator;
//!   `all` holds when the list is non-empty and every element satisfies them. A context value that
//!   is not a list is treated as a one-element list.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use semver::{BuildMetadata, Prerelease, Version};
use serde_json::{Map, Number, Value};

use crate::error::{index, join, FieldError};
use crate::Context;

mod coerce;
pub(crate) use coerce::lookup;
mod compile;
mod parse;
mod prove;
mod segments;

use coerce::*;
pub use compile::*;
use parse::*;
pub use prove::*;
pub use segments::*;

/// The keys of a logical node.
pub(super) const LOGICAL_KEYS: &[&str] = &["all", "any", "not", "segment"];

/// The operator keys of a criterion, in documentation order.
pub const OPERATOR_KEYS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "semver_eq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "before",
    "after",
    "starts_with",
    "ends_with",
    "contains",
    "exists",
    "any",
    "all",
];

/// Contexts with at most this many attributes are searched linearly rather than hashed.
pub(super) const LINEAR_LOOKUP: usize = 16;

/// Above this many strings an `in` list is compiled to a hash set instead of a linear scan.
pub(super) const SMALL_SET: usize = 8;

// ---------------------------------------------------------------------------------------------
// The parsed form
// ---------------------------------------------------------------------------------------------

/// A parsed targeting expression. Its shape mirrors the JSON it came from, so it converts back
/// with [`Targeting::to_json`] (or `serde::Serialize`) and compares with `==` to detect changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Targeting {
    /// `{all: [...]}`: every sub-expression matches; empty matches everyone.
    All(Vec<Targeting>),
    /// `{any: [...]}`: some sub-expression matches; empty matches no one.
    Any(Vec<Targeting>),
    /// `{not: expr}`: the sub-expression does not match.
    Not(Box<Targeting>),
    /// `{segment: name}`: the named segment matches.
    Segment(String),
    /// `{attribute: name, op: value, ...}`: every operator holds for the attribute.
    Criterion(Criterion),
}

/// A criterion: operators that must all hold for one attribute of the context.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The name of the context attribute.
    pub attribute: String,
    /// The operators, in the order written; all must hold.
    pub operators: Vec<Operator>,
}

/// A value that equality operators compare with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string, compared exactly.
    String(String),
    /// A number, compared numerically.
    Number(Number),
    /// A boolean.
    Bool(bool),
}

/// An instant given as RFC 3339 text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// The text as written.
    pub text: String,
    /// Nanoseconds since the Unix epoch.
    pub unix_nanos: i128,
}

/// One operator of a criterion (see the module documentation for the semantics).
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// `eq`: equals the value.
    Eq(Scalar),
    /// `ne`: present and does not equal the value.
    Ne(Scalar),
    /// `in`: equals one of the values.
    In(Vec<Scalar>),
    /// `not_in`: present and equals none of the values.
    NotIn(Vec<Scalar>),
    /// `gt`: numerically greater.
    Gt(Number),
    /// `gte`: numerically greater or equal.
    Gte(Number),
    /// `lt`: numerically less.
    Lt(Number),
    /// `lte`: numerically less or equal.
    Lte(Number),
    /// `semver_eq`: a version of equal precedence.
    SemverEq(Version),
    /// `semver_gt`: a version of greater precedence.
    SemverGt(Version),
    /// `semver_gte`: a version of greater or equal precedence.
    SemverGte(Version),
    /// `semver_lt`: a version of lower precedence.
    SemverLt(Version),
    /// `semver_lte`: a version of lower or equal precedence.
    SemverLte(Version),
    /// `before`: an instant strictly before.
    Before(Timestamp),
    /// `after`: an instant strictly after.
    After(Timestamp),
    /// `starts_with`: a string with this prefix.
    StartsWith(String),
    /// `ends_with`: a string with this suffix.
    EndsWith(String),
    /// `contains`: a string containing this.
    Contains(String),
    /// `exists`: `true` = present and not null; `false` = missing.
    Exists(bool),
    /// `any: {...}`: some element of the list satisfies all these operators.
    AnyElement(Vec<Operator>),
    /// `all: {...}`: the list is non-empty and every element satisfies all these operators.
    AllElements(Vec<Operator>),
}

impl Operator {
    /// The key this operator is written with.
    pub fn key(&self) -> &'static str {
        match self {
            Operator::Eq(_) => "eq",
            Operator::Ne(_) => "ne",
            Operator::In(_) => "in",
            Operator::NotIn(_) => "not_in",
            Operator::Gt(_) => "gt",
            Operator::Gte(_) => "gte",
            Operator::Lt(_) => "lt",
            Operator::Lte(_) => "lte",
            Operator::SemverEq(_) => "semver_eq",
            Operator::SemverGt(_) => "semver_gt",
            Operator::SemverGte(_) => "semver_gte",
            Operator::SemverLt(_) => "semver_lt",
            Operator::SemverLte(_) => "semver_lte",
            Operator::Before(_) => "before",
            Operator::After(_) => "after",
            Operator::StartsWith(_) => "starts_with",
            Operator::EndsWith(_) => "ends_with",
            Operator::Contains(_) => "contains",
            Operator::Exists(_) => "exists",
            Operator::AnyElement(_) => "any",
            Operator::AllElements(_) => "all",
        }
    }

    /// The operator's value as JSON.
    fn value_json(&self) -> Value {
        match self {
            Operator::Eq(s) | Operator::Ne(s) => s.to_json(),
            Operator::In(l) | Operator::NotIn(l) => Value::Array(l.iter().map(Scalar::to_json).collect()),
            Operator::Gt(n) | Operator::Gte(n) | Operator::Lt(n) | Operator::Lte(n) => Value::Number(n.clone()),
            Operator::SemverEq(v)
            | Operator::SemverGt(v)
            | Operator::SemverGte(v)
            | Operator::SemverLt(v)
            | Operator::SemverLte(v) => Value::String(v.to_string()),
            Operator::Before(t) | Operator::After(t) => Value::String(t.text.clone()),
            Operator::StartsWith(s) | Operator::EndsWith(s) | Operator::Contains(s) => Value::String(s.clone()),
            Operator::Exists(b) => Value::Bool(*b),
            Operator::AnyElement(ops) | Operator::AllElements(ops) => Value::Object(operators_json(ops)),
        }
    }
}

fn operators_json(ops: &[Operator]) -> Map<String, Value> {
    ops.iter().map(|op| (op.key().to_string(), op.value_json())).collect()
}

impl Scalar {
    /// The value as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::String(s) => Value::String(s.clone()),
            Scalar::Number(n) => Value::Number(n.clone()),
            Scalar::Bool(b) => Value::Bool(*b),
        }
    }
}

impl Targeting {
    /// Parses the expression at `path` (used to locate errors, e.g.
    /// `experiments.ranking-v2.targeting`); returns every error found, not just the first.
    pub fn parse(value: &Value, path: &str) -> Result<Targeting, Vec<FieldError>> {
        let mut errors = Vec::new();
        let t = parse_expr(value, path, &mut errors);
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(errors)
        }
    }

    /// The names of the segments this expression references directly (not through other
    /// segments), each once, in order of appearance.
    pub fn segment_refs(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Targeting::All(cs) | Targeting::Any(cs) => cs.iter().for_each(|c| c.collect_refs(out)),
            Targeting::Not(c) => c.collect_refs(out),
            Targeting::Segment(name) => {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
            Targeting::Criterion(_) => {}
        }
    }

    /// True when the expression certainly matches everyone (e.g. `{all: []}`), judged without
    /// looking into segments.
    pub fn is_always(&self) -> bool {
        self.truth() == Some(true)
    }

    /// `Some(b)`: the expression is constantly `b`; `None`: it depends on the context.
    fn truth(&self) -> Option<bool> {
        match self {
            Targeting::All(cs) => {
                let ts: Vec<_> = cs.iter().map(Targeting::truth).collect();
                if ts.contains(&Some(false)) {
                    Some(false)
                } else if ts.iter().all(|t| *t == Some(true)) {
                    Some(true)
                } else {
                    None
                }
            }
            Targeting::Any(cs) => {
                let ts: Vec<_> = cs.iter().map(Targeting::truth).collect();
                if ts.contains(&Some(true)) {
                    Some(true)
                } else if ts.iter().all(|t| *t == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
            Targeting::Not(c) => c.truth().map(|b| !b),
            Targeting::Segment(_) => None,
            Targeting::Criterion(c) => {
                c.operators.iter().any(|op| matches!(op, Operator::In(l) if l.is_empty())).then_some(false)
            }
        }
    }

    /// The expression as JSON, in the shape it is parsed from.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            Targeting::All(cs) => {
                m.insert("all".into(), Value::Array(cs.iter().map(Self::to_json).collect()));
            }
            Targeting::Any(cs) => {
                m.insert("any".into(), Value::Array(cs.iter().map(Self::to_json).collect()));
            }
            Targeting::Not(c) => {
                m.insert("not".into(), c.to_json());
            }
            Targeting::Segment(name) => {
                m.insert("segment".into(), Value::String(name.clone()));
            }
            Targeting::Criterion(c) => {
                m.insert("attribute".into(), Value::String(c.attribute.clone()));
                m.extend(operators_json(&c.operators));
            }
        }
        Value::Object(m)
    }
}

impl serde::Serialize for Targeting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}
