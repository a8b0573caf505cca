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

/// The keys of a logical node.
const LOGICAL_KEYS: &[&str] = &["all", "any", "not", "segment"];

/// The operator keys of a criterion, in documentation order.
const OPERATOR_KEYS: &[&str] = &[
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
const LINEAR_LOOKUP: usize = 16;

/// Above this many strings an `in` list is compiled to a hash set instead of a linear scan.
const SMALL_SET: usize = 8;

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

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn quoted_list(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

fn parse_expr(value: &Value, path: &str, errors: &mut Vec<FieldError>) -> Targeting {
    let placeholder = Targeting::All(Vec::new());
    let Some(obj) = value.as_object() else {
        errors.push(FieldError::new(
            path,
            format!(
                "expected a targeting expression (an object with `attribute` and operators, or \
                 one of {}), found {}",
                quoted_list(LOGICAL_KEYS),
                describe(value)
            ),
        ));
        return placeholder;
    };
    if obj.contains_key("attribute") {
        return Targeting::Criterion(parse_criterion(obj, path, errors));
    }
    if obj.is_empty() {
        errors.push(FieldError::new(
            path,
            format!(
                "empty targeting expression; expected `attribute` with operators, or one of {} \
                 (`all: []` matches everyone)",
                quoted_list(LOGICAL_KEYS)
            ),
        ));
        return placeholder;
    }
    let mut logical = Vec::new();
    let mut result = None;
    for (key, v) in obj {
        let p = join(path, key);
        let node = match key.as_str() {
            "all" => Some(Targeting::All(parse_list(v, &p, errors))),
            "any" => Some(Targeting::Any(parse_list(v, &p, errors))),
            "not" => Some(Targeting::Not(Box::new(parse_expr(v, &p, errors)))),
            "segment" => match v.as_str() {
                Some(s) if !s.is_empty() => Some(Targeting::Segment(s.to_string())),
                _ => {
                    errors.push(FieldError::new(
                        p,
                        format!("expected a segment name (a non-empty string), found {}", describe(v)),
                    ));
                    None
                }
            },
            other if OPERATOR_KEYS.contains(&other) => {
                errors.push(FieldError::new(p, format!("operator `{other}` needs an `attribute` in the same object")));
                None
            }
            other => {
                errors.push(FieldError::new(
                    p,
                    format!(
                        "unknown key `{other}`; expected one of {}, or `attribute` with operators",
                        quoted_list(LOGICAL_KEYS)
                    ),
                ));
                None
            }
        };
        if LOGICAL_KEYS.contains(&key.as_str()) {
            logical.push(key.as_str());
        }
        if result.is_none() {
            result = node;
        }
    }
    if logical.len() > 1 {
        errors.push(FieldError::new(
            path,
            format!(
                "expected exactly one of {} in one object, found {}; combine them with `all: [...]`",
                quoted_list(LOGICAL_KEYS),
                quoted_list(&logical)
            ),
        ));
    }
    result.unwrap_or(placeholder)
}

fn parse_list(value: &Value, path: &str, errors: &mut Vec<FieldError>) -> Vec<Targeting> {
    match value {
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| parse_expr(v, &index(path, i), errors)).collect(),
        other => {
            errors.push(FieldError::new(
                path,
                format!("expected a list of targeting expressions, found {}", describe(other)),
            ));
            Vec::new()
        }
    }
}

fn parse_criterion(obj: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) -> Criterion {
    let attribute = match obj.get("attribute") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            errors.push(FieldError::new(
                join(path, "attribute"),
                format!("expected an attribute name (a non-empty string), found {}", describe(other)),
            ));
            String::new()
        }
        None => String::new(),
    };
    let operators = parse_operators(obj, path, false, errors);
    if obj.len() == 1 {
        errors.push(FieldError::new(
            path,
            format!(
                "criterion on `{attribute}` has no operator; expected one or more of {}",
                quoted_list(OPERATOR_KEYS)
            ),
        ));
    }
    Criterion { attribute, operators }
}

/// Parses the operators of `obj` (skipping `attribute` unless `in_quantifier`).
fn parse_operators(
    obj: &Map<String, Value>,
    path: &str,
    in_quantifier: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<Operator> {
    let mut ops = Vec::new();
    for (key, v) in obj {
        let p = join(path, key);
        if key == "attribute" {
            if in_quantifier {
                errors.push(FieldError::new(
                    p,
                    "`attribute` is not allowed inside a quantifier: its operators apply to each \
                     element of the list",
                ));
            }
            continue;
        }
        match parse_operator(key, v, &p, errors) {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => {}
            Err(message) => errors.push(FieldError::new(p, message)),
        }
    }
    ops
}

fn parse_scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::String(s.clone())),
        Value::Number(n) => Some(Scalar::Number(n.clone())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        _ => None,
    }
}

/// `Ok(None)` when errors were pushed for nested fields; `Err` for an error at the operator.
fn parse_operator(key: &str, v: &Value, path: &str, errors: &mut Vec<FieldError>) -> Result<Option<Operator>, String> {
    let scalar =
        || parse_scalar(v).ok_or_else(|| format!("expected a string, number or boolean, found {}", describe(v)));
    let list = |errors: &mut Vec<FieldError>| -> Result<Option<Vec<Scalar>>, String> {
        let Value::Array(items) = v else {
            return Err(format!("expected a list of strings, numbers or booleans, found {}", describe(v)));
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match parse_scalar(item) {
                Some(s) => out.push(s),
                None => {
                    ok = false;
                    errors.push(FieldError::new(
                        index(path, i),
                        format!("expected a string, number or boolean, found {}", describe(item)),
                    ));
                }
            }
        }
        Ok(ok.then_some(out))
    };
    let number = || match v {
        Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(n.clone()),
        _ => Err(format!("expected a number, found {}", describe(v))),
    };
    let version = || match v {
        Value::String(s) => parse_version(s).ok_or_else(|| {
            format!(
                "invalid version `{s}`: expected a semantic version like \"1.2.3\" (\"1.2\" and a \
                 leading \"v\" are accepted)"
            )
        }),
        _ => Err(format!("expected a version string like \"1.2.3\", found {}", describe(v))),
    };
    let timestamp = || match v {
        Value::String(s) => parse_rfc3339(s)
            .map(|unix_nanos| Timestamp { text: s.clone(), unix_nanos })
            .ok_or_else(|| format!("invalid timestamp `{s}`: expected RFC 3339 like \"2024-01-31T12:00:00Z\"")),
        _ => Err(format!("expected an RFC 3339 timestamp like \"2024-01-31T12:00:00Z\", found {}", describe(v))),
    };
    let string = || match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("expected a string, found {}", describe(v))),
    };
    let quantifier = |errors: &mut Vec<FieldError>| -> Result<Option<Vec<Operator>>, String> {
        let Value::Object(m) = v else {
            return Err(format!(
                "expected an object of operators applied to each element of the list (e.g. \
                 `{{eq: \"x\"}}`), found {}",
                describe(v)
            ));
        };
        if m.is_empty() {
            return Err(format!(
                "expected one or more operators applied to each element; one of {}",
                quoted_list(OPERATOR_KEYS)
            ));
        }
        let before = errors.len();
        let ops = parse_operators(m, path, true, errors);
        Ok((errors.len() == before).then_some(ops))
    };
    Ok(Some(match key {
        "eq" => Operator::Eq(scalar()?),
        "ne" => Operator::Ne(scalar()?),
        "in" => return list(errors).map(|l| l.map(Operator::In)),
        "not_in" => return list(errors).map(|l| l.map(Operator::NotIn)),
        "gt" => Operator::Gt(number()?),
        "gte" => Operator::Gte(number()?),
        "lt" => Operator::Lt(number()?),
        "lte" => Operator::Lte(number()?),
        "semver_eq" => Operator::SemverEq(version()?),
        "semver_gt" => Operator::SemverGt(version()?),
        "semver_gte" => Operator::SemverGte(version()?),
        "semver_lt" => Operator::SemverLt(version()?),
        "semver_lte" => Operator::SemverLte(version()?),
        "before" => Operator::Before(timestamp()?),
        "after" => Operator::After(timestamp()?),
        "starts_with" => Operator::StartsWith(string()?),
        "ends_with" => Operator::EndsWith(string()?),
        "contains" => Operator::Contains(string()?),
        "exists" => match v {
            Value::Bool(b) => Operator::Exists(*b),
            _ => return Err(format!("expected true or false, found {}", describe(v))),
        },
        "any" => return quantifier(errors).map(|o| o.map(Operator::AnyElement)),
        "all" => return quantifier(errors).map(|o| o.map(Operator::AllElements)),
        other => return Err(format!("unknown operator `{other}`; expected one of {}", quoted_list(OPERATOR_KEYS))),
    }))
}

/// Reads a version leniently: surrounding spaces, a leading `v`/`V`, and a missing minor or
/// patch number are accepted (`"v1.2"` is `1.2.0`). Does not allocate for short identifiers.
fn parse_version(text: &str) -> Option<Version> {
    let s = text.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let (rest, build) = match s.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let number = |p: &str| -> Option<u64> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let mut parts = core.split('.');
    let major = number(parts.next()?)?;
    let minor = match parts.next() {
        Some(p) => number(p)?,
        None => 0,
    };
    let patch = match parts.next() {
        Some(p) => number(p)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    let pre = match pre {
        Some("") => return None,
        Some(p) => Prerelease::new(p).ok()?,
        None => Prerelease::EMPTY,
    };
    let build = match build {
        Some("") => return None,
        Some(b) => BuildMetadata::new(b).ok()?,
        None => BuildMetadata::EMPTY,
    };
    Some(Version { major, minor, patch, pre, build })
}

fn parse_rfc3339(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp_nanos)
}

// ---------------------------------------------------------------------------------------------
// Value coercions shared by evaluation and the prover
// ---------------------------------------------------------------------------------------------

/// The attribute's value, or `None` when it is missing (absent or null).
#[inline]
fn lookup<'a>(ctx: &'a Context, key: &str) -> Option<&'a Value> {
    // Contexts are small: a scan comparing lengths first beats hashing the key.
    let found = if ctx.len() <= LINEAR_LOOKUP {
        ctx.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        ctx.get(key)
    };
    match found {
        None | Some(Value::Null) => None,
        v => v,
    }
}

#[inline]
fn number_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// The value as a number for ordering operators: a JSON number or a finite numeric string.
#[inline]
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(number_f64(n)),
        Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// The value as an instant: an RFC 3339 string or a number of Unix seconds.
#[inline]
fn as_unix_nanos(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse_rfc3339(s),
        Value::Number(n) => {
            let secs = number_f64(n);
            secs.is_finite().then(|| (secs * 1e9).round() as i128)
        }
        _ => None,
    }
}

/// Equality of two criterion scalars, the same relation evaluation uses against context values.
fn scalar_eq(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::String(x), Scalar::String(y)) => x == y,
        (Scalar::Number(x), Scalar::Number(y)) => number_f64(x) == number_f64(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => x == y,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Segment checks
// ---------------------------------------------------------------------------------------------

/// Checks that every `segment:` reference inside `segments` (name → parsed definition) resolves
/// and that segments reference each other without cycles. An unknown reference is reported at
/// the referencing field (`segments.<name>.all[0].segment`), a cycle at `segments.<name>` of the
/// segment where it starts. Check experiments' own references with [`check_references`].
pub fn check_segments(segments: &IndexMap<String, Targeting>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (name, t) in segments {
        errors.extend(check_references(t, &join("segments", name), segments));
    }
    // Depth-first search for cycles; each back edge is reported once.
    let mut state = vec![0u8; segments.len()]; // 0 unvisited, 1 on the stack, 2 done
    let mut stack = Vec::new();
    for i in 0..segments.len() {
        if state[i] == 0 {
            find_cycles(i, segments, &mut state, &mut stack, &mut errors);
        }
    }
    // Sizes with segments inlined: only the first segment of a chain past the bound is
    // reported (those that use it are past it too, for the same reason).
    let mut memo = HashMap::new();
    for (name, t) in segments {
        let n = size_of(t, segments, &mut memo, &mut Vec::new());
        let within = |r: &str| segments.get(r).is_none_or(|d| expanded_size(d, segments) <= MAX_TARGETING_NODES);
        if n > MAX_TARGETING_NODES && t.segment_refs().into_iter().all(within) {
            errors.extend(check_size(t, &join("segments", name), segments));
        }
    }
    errors
}

fn find_cycles(
    i: usize,
    segments: &IndexMap<String, Targeting>,
    state: &mut [u8],
    stack: &mut Vec<usize>,
    errors: &mut Vec<FieldError>,
) {
    state[i] = 1;
    stack.push(i);
    if let Some((_, t)) = segments.get_index(i) {
        for r in t.segment_refs() {
            let Some(j) = segments.get_index_of(r) else {
                continue;
            };
            match state[j] {
                0 => find_cycles(j, segments, state, stack, errors),
                1 => {
                    let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let names: Vec<&str> = stack[start..]
                        .iter()
                        .chain(std::iter::once(&j))
                        .filter_map(|&k| segments.get_index(k).map(|(n, _)| n.as_str()))
                        .collect();
                    errors.push(FieldError::new(
                        join("segments", r),
                        format!("segments reference each other in a cycle: {}", names.join(" -> ")),
                    ));
                }
                _ => {}
            }
        }
    }
    stack.pop();
    state[i] = 2;
}

/// Checks that every `segment:` reference in `t` (parsed at `path`) names one of `segments`;
/// each unknown one is reported at its own field, e.g. `experiments.x.targeting.any[1].segment`.
pub fn check_references(t: &Targeting, path: &str, segments: &IndexMap<String, Targeting>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk_references(t, path, segments, &mut errors);
    errors
}

fn walk_references(t: &Targeting, path: &str, segments: &IndexMap<String, Targeting>, errors: &mut Vec<FieldError>) {
    match t {
        Targeting::All(cs) => {
            let p = join(path, "all");
            for (i, c) in cs.iter().enumerate() {
                walk_references(c, &index(&p, i), segments, errors);
            }
        }
        Targeting::Any(cs) => {
            let p = join(path, "any");
            for (i, c) in cs.iter().enumerate() {
                walk_references(c, &index(&p, i), segments, errors);
            }
        }
        Targeting::Not(c) => walk_references(c, &join(path, "not"), segments, errors),
        Targeting::Segment(name) => {
            if !segments.contains_key(name) {
                let known = if segments.is_empty() {
                    "no segments are defined".to_string()
                } else {
                    let names: Vec<&str> = segments.keys().map(String::as_str).collect();
                    format!("defined segments: {}", quoted_list(&names))
                };
                errors.push(FieldError::new(join(path, "segment"), format!("unknown segment `{name}`; {known}")));
            }
        }
        Targeting::Criterion(_) => {}
    }
}

/// The most nodes (criteria, `all`/`any`/`not` and segment references) one targeting expression
/// may have with its segments inlined: a segment used twice counts twice. Evaluation walks the
/// inlined expression, so this bounds the time of one evaluation; a chain of segments that each
/// use the previous one twice would otherwise double per level (26 levels: 2^26 nodes from
/// 1.5 KB of text).
pub const MAX_TARGETING_NODES: u64 = 10_000;

/// The number of nodes of `t` with `segments` inlined, saturating; a reference that closes a
/// cycle or names no segment counts one (both are reported by the other checks).
pub fn expanded_size(t: &Targeting, segments: &IndexMap<String, Targeting>) -> u64 {
    let mut memo = HashMap::new();
    size_of(t, segments, &mut memo, &mut Vec::new())
}

fn size_of<'a>(
    t: &'a Targeting,
    segments: &'a IndexMap<String, Targeting>,
    memo: &mut HashMap<&'a str, u64>,
    stack: &mut Vec<&'a str>,
) -> u64 {
    match t {
        Targeting::All(cs) | Targeting::Any(cs) => {
            cs.iter().fold(1u64, |n, c| n.saturating_add(size_of(c, segments, memo, stack)))
        }
        Targeting::Not(c) => size_of(c, segments, memo, stack).saturating_add(1),
        Targeting::Criterion(_) => 1,
        Targeting::Segment(name) => {
            if let Some(&n) = memo.get(name.as_str()) {
                return n;
            }
            let Some((key, def)) = segments.get_key_value(name) else { return 1 };
            if stack.contains(&key.as_str()) {
                return 1;
            }
            stack.push(key);
            let n = size_of(def, segments, memo, stack).saturating_add(1);
            stack.pop();
            memo.insert(key, n);
            n
        }
    }
}

/// An error at `path` when `t` expands past [`MAX_TARGETING_NODES`] with `segments` inlined.
pub fn check_size(t: &Targeting, path: &str, segments: &IndexMap<String, Targeting>) -> Option<FieldError> {
    let n = expanded_size(t, segments);
    (n > MAX_TARGETING_NODES).then(|| {
        FieldError::new(
            path,
            format!(
                "expands to {} nodes with its segments inlined (a segment used twice counts twice); at most {MAX_TARGETING_NODES}: use each segment once, or flatten the chain",
                if n == u64::MAX { "more than 2^64".to_string() } else { n.to_string() }
            ),
        )
    })
}

impl Targeting {
    /// Whether the expression uses segment `name`, directly or through other segments.
    pub fn uses_segment(&self, name: &str, segments: &IndexMap<String, Targeting>) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut todo: Vec<&Targeting> = vec![self];
        while let Some(t) = todo.pop() {
            for r in t.segment_refs() {
                if r == name {
                    return true;
                }
                if !seen.contains(&r) {
                    seen.push(r);
                    todo.extend(segments.get(r));
                }
            }
        }
        false
    }

    /// The expression with every segment reference replaced by the segment's definition, as
    /// evaluation sees it. Change control compares inlined expressions, so that a change to a
    /// segment is a change to every expression that uses it. A reference that names no segment
    /// or closes a cycle is kept as it is. Expressions that passed [`check_size`] stay within
    /// [`MAX_TARGETING_NODES`].
    pub fn inline(&self, segments: &IndexMap<String, Targeting>) -> Targeting {
        fn go<'a>(t: &'a Targeting, segments: &'a IndexMap<String, Targeting>, stack: &mut Vec<&'a str>) -> Targeting {
            match t {
                Targeting::All(cs) => Targeting::All(cs.iter().map(|c| go(c, segments, stack)).collect()),
                Targeting::Any(cs) => Targeting::Any(cs.iter().map(|c| go(c, segments, stack)).collect()),
                Targeting::Not(c) => Targeting::Not(Box::new(go(c, segments, stack))),
                Targeting::Criterion(_) => t.clone(),
                Targeting::Segment(name) => match segments.get_key_value(name) {
                    Some((key, def)) if !stack.contains(&key.as_str()) => {
                        stack.push(key);
                        let out = go(def, segments, stack);
                        stack.pop();
                        out
                    }
                    _ => t.clone(),
                },
            }
        }
        go(self, segments, &mut Vec::new())
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

/// A targeting expression ready for evaluation: segments inlined, values pre-parsed, constant
/// parts folded. Evaluation cannot fail and does not allocate.
#[derive(Debug, Clone)]
pub struct Compiled {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Const(bool),
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Crit(Crit),
    /// A segment, compiled once and shared by every expression that uses it (a DAG, not
    /// inlined copies): memory stays linear in the configuration's text.
    Shared(Arc<Node>),
}

#[derive(Debug, Clone)]
struct Crit {
    attribute: Box<str>,
    ops: Box<[Op]>,
    /// The result when the attribute is missing: true only if every operator is `exists: false`.
    if_missing: bool,
}

#[derive(Debug, Clone)]
enum CScalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

impl CScalar {
    fn new(s: &Scalar) -> Self {
        match s {
            Scalar::String(s) => CScalar::Str(s.as_str().into()),
            Scalar::Number(n) => CScalar::Num(number_f64(n)),
            Scalar::Bool(b) => CScalar::Bool(*b),
        }
    }

    #[inline]
    fn eq_value(&self, v: &Value) -> bool {
        match (self, v) {
            (CScalar::Str(a), Value::String(b)) => **a == **b,
            (CScalar::Num(a), Value::Number(b)) => *a == number_f64(b),
            (CScalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
enum StrSet {
    Small(Box<[Box<str>]>),
    Large(HashSet<Box<str>>),
}

#[derive(Debug, Clone)]
struct Set {
    strs: StrSet,
    nums: Box<[f64]>,
    has_true: bool,
    has_false: bool,
}

impl Set {
    fn new(items: &[Scalar]) -> Self {
        let mut strs: Vec<Box<str>> = Vec::new();
        let mut nums = Vec::new();
        let (mut has_true, mut has_false) = (false, false);
        for item in items {
            match item {
                Scalar::String(s) => {
                    if !strs.iter().any(|x| **x == **s) {
                        strs.push(s.as_str().into());
                    }
                }
                Scalar::Number(n) => nums.push(number_f64(n)),
                Scalar::Bool(true) => has_true = true,
                Scalar::Bool(false) => has_false = true,
            }
        }
        let strs = if strs.len() > SMALL_SET {
            StrSet::Large(strs.into_iter().collect())
        } else {
            StrSet::Small(strs.into_boxed_slice())
        };
        Set { strs, nums: nums.into_boxed_slice(), has_true, has_false }
    }

    #[inline]
    fn contains(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => match &self.strs {
                StrSet::Small(items) => items.iter().any(|x| **x == **s),
                StrSet::Large(set) => set.contains(s.as_str()),
            },
            Value::Number(n) => {
                let n = number_f64(n);
                self.nums.contains(&n)
            }
            Value::Bool(true) => self.has_true,
            Value::Bool(false) => self.has_false,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SemverTest {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(CScalar),
    Ne(CScalar),
    In(Set),
    NotIn(Set),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Semver(SemverTest, Version),
    Before(i128),
    After(i128),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Exists(bool),
    AnyElement(Box<[Op]>),
    AllElements(Box<[Op]>),
}

impl Op {
    fn new(op: &Operator) -> Op {
        let ops = |l: &[Operator]| l.iter().map(Op::new).collect();
        match op {
            Operator::Eq(s) => Op::Eq(CScalar::new(s)),
            Operator::Ne(s) => Op::Ne(CScalar::new(s)),
            Operator::In(l) => Op::In(Set::new(l)),
            Operator::NotIn(l) => Op::NotIn(Set::new(l)),
            Operator::Gt(n) => Op::Gt(number_f64(n)),
            Operator::Gte(n) => Op::Gte(number_f64(n)),
            Operator::Lt(n) => Op::Lt(number_f64(n)),
            Operator::Lte(n) => Op::Lte(number_f64(n)),
            Operator::SemverEq(v) => Op::Semver(SemverTest::Eq, v.clone()),
            Operator::SemverGt(v) => Op::Semver(SemverTest::Gt, v.clone()),
            Operator::SemverGte(v) => Op::Semver(SemverTest::Gte, v.clone()),
            Operator::SemverLt(v) => Op::Semver(SemverTest::Lt, v.clone()),
            Operator::SemverLte(v) => Op::Semver(SemverTest::Lte, v.clone()),
            Operator::Before(t) => Op::Before(t.unix_nanos),
            Operator::After(t) => Op::After(t.unix_nanos),
            Operator::StartsWith(s) => Op::StartsWith(s.as_str().into()),
            Operator::EndsWith(s) => Op::EndsWith(s.as_str().into()),
            Operator::Contains(s) => Op::Contains(s.as_str().into()),
            Operator::Exists(b) => Op::Exists(*b),
            Operator::AnyElement(l) => Op::AnyElement(ops(l)),
            Operator::AllElements(l) => Op::AllElements(ops(l)),
        }
    }

    /// Whether the operator holds for a value that may be missing (`None`).
    #[inline]
    fn holds(&self, v: Option<&Value>) -> bool {
        match v {
            Some(v) => self.holds_present(v),
            None => matches!(self, Op::Exists(false)),
        }
    }

    /// Whether the operator holds for a present, non-null value.
    #[inline]
    fn holds_present(&self, v: &Value) -> bool {
        match self {
            Op::Eq(s) => s.eq_value(v),
            Op::Ne(s) => !s.eq_value(v),
            Op::In(set) => set.contains(v),
            Op::NotIn(set) => !set.contains(v),
            Op::Gt(x) => as_number(v).is_some_and(|n| n > *x),
            Op::Gte(x) => as_number(v).is_some_and(|n| n >= *x),
            Op::Lt(x) => as_number(v).is_some_and(|n| n < *x),
            Op::Lte(x) => as_number(v).is_some_and(|n| n <= *x),
            Op::Semver(test, want) => v.as_str().and_then(parse_version).is_some_and(|have| {
                let ord = have.cmp_precedence(want);
                match test {
                    SemverTest::Eq => ord == Ordering::Equal,
                    SemverTest::Gt => ord == Ordering::Greater,
                    SemverTest::Gte => ord != Ordering::Less,
                    SemverTest::Lt => ord == Ordering::Less,
                    SemverTest::Lte => ord != Ordering::Greater,
                }
            }),
            Op::Before(t) => as_unix_nanos(v).is_some_and(|n| n < *t),
            Op::After(t) => as_unix_nanos(v).is_some_and(|n| n > *t),
            Op::StartsWith(p) => v.as_str().is_some_and(|s| s.starts_with(&**p)),
            Op::EndsWith(p) => v.as_str().is_some_and(|s| s.ends_with(&**p)),
            Op::Contains(p) => v.as_str().is_some_and(|s| s.contains(&**p)),
            Op::Exists(b) => *b,
            Op::AnyElement(ops) => match v {
                Value::Array(items) => items.iter().any(|e| all_hold(ops, element(e))),
                other => all_hold(ops, Some(other)),
            },
            Op::AllElements(ops) => match v {
                Value::Array(items) => !items.is_empty() && items.iter().all(|e| all_hold(ops, element(e))),
                other => all_hold(ops, Some(other)),
            },
        }
    }
}

#[inline]
fn element(e: &Value) -> Option<&Value> {
    (!e.is_null()).then_some(e)
}

#[inline]
fn all_hold(ops: &[Op], v: Option<&Value>) -> bool {
    ops.iter().all(|op| op.holds(v))
}

impl Node {
    #[inline]
    fn eval(&self, ctx: &Context) -> bool {
        match self {
            Node::Crit(c) => match lookup(ctx, &c.attribute) {
                Some(v) => c.ops.iter().all(|op| op.holds_present(v)),
                None => c.if_missing,
            },
            Node::All(cs) => cs.iter().all(|c| c.eval(ctx)),
            Node::Any(cs) => cs.iter().any(|c| c.eval(ctx)),
            Node::Not(c) => !c.eval(ctx),
            Node::Const(b) => *b,
            Node::Shared(n) => n.eval(ctx),
        }
    }

    fn collect_attributes(&self, out: &mut Vec<String>) {
        match self {
            Node::Crit(c) => {
                if !out.iter().any(|a| **a == *c.attribute) {
                    out.push(c.attribute.to_string());
                }
            }
            Node::All(cs) | Node::Any(cs) => cs.iter().for_each(|c| c.collect_attributes(out)),
            Node::Not(c) => c.collect_attributes(out),
            Node::Shared(n) => n.collect_attributes(out),
            Node::Const(_) => {}
        }
    }
}

/// Compiled segments by name, shared by the expressions of one compilation.
type SegmentMemo<'a> = HashMap<&'a str, Node>;

fn compile_node<'a>(
    t: &'a Targeting,
    segments: &'a IndexMap<String, Targeting>,
    stack: &mut Vec<&'a str>,
    memo: &mut SegmentMemo<'a>,
) -> Node {
    match t {
        Targeting::All(cs) => {
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                match compile_node(c, segments, stack, memo) {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::All(inner) => out.extend(inner.into_vec()),
                    n => out.push(n),
                }
            }
            match out.len() {
                0 => Node::Const(true),
                1 => out.pop().unwrap_or(Node::Const(true)),
                _ => Node::All(out.into_boxed_slice()),
            }
        }
        Targeting::Any(cs) => {
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                match compile_node(c, segments, stack, memo) {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Any(inner) => out.extend(inner.into_vec()),
                    n => out.push(n),
                }
            }
            match out.len() {
                0 => Node::Const(false),
                1 => out.pop().unwrap_or(Node::Const(false)),
                _ => Node::Any(out.into_boxed_slice()),
            }
        }
        Targeting::Not(c) => match compile_node(c, segments, stack, memo) {
            Node::Const(b) => Node::Const(!b),
            Node::Not(inner) => *inner,
            n => Node::Not(Box::new(n)),
        },
        Targeting::Segment(name) => {
            // Unknown or cyclic references cannot pass `check_segments`; never match them.
            if stack.contains(&name.as_str()) {
                return Node::Const(false);
            }
            if let Some(n) = memo.get(name.as_str()) {
                return n.clone();
            }
            match segments.get_key_value(name) {
                Some((key, def)) => {
                    stack.push(key);
                    let n = match compile_node(def, segments, stack, memo) {
                        Node::Const(b) => Node::Const(b),
                        Node::Shared(n) => Node::Shared(n),
                        n => Node::Shared(Arc::new(n)),
                    };
                    stack.pop();
                    memo.insert(key, n.clone());
                    n
                }
                None => Node::Const(false),
            }
        }
        Targeting::Criterion(c) => {
            if c.operators.iter().any(|op| matches!(op, Operator::In(l) if l.is_empty())) {
                return Node::Const(false);
            }
            let ops: Box<[Op]> = c.operators.iter().map(Op::new).collect();
            let if_missing = ops.iter().all(|op| matches!(op, Op::Exists(false)));
            Node::Crit(Crit { attribute: c.attribute.as_str().into(), ops, if_missing })
        }
    }
}

/// Compiles many expressions over one set of segments, each segment once: expressions that use
/// the same segment share its compiled form.
#[derive(Debug)]
pub struct Compiler<'a> {
    segments: &'a IndexMap<String, Targeting>,
    memo: SegmentMemo<'a>,
}

impl<'a> Compiler<'a> {
    /// A compiler over `segments`, which should have passed [`check_segments`].
    pub fn new(segments: &'a IndexMap<String, Targeting>) -> Self {
        Compiler { segments, memo: HashMap::new() }
    }

    /// Compiles `t`; see [`Compiled::compile`].
    pub fn compile(&mut self, t: &'a Targeting) -> Compiled {
        Compiled { root: compile_node(t, self.segments, &mut Vec::new(), &mut self.memo) }
    }
}

impl Compiled {
    /// Compiles `t`, inlining `segments`, which should have passed [`check_segments`]: a
    /// reference to an unknown segment, or one closing a cycle, compiles to never-match.
    pub fn compile(t: &Targeting, segments: &IndexMap<String, Targeting>) -> Compiled {
        Compiler::new(segments).compile(t)
    }

    /// An expression that matches every context.
    pub fn always() -> Compiled {
        Compiled { root: Node::Const(true) }
    }

    /// Whether the context matches. Never fails; allocates nothing (save to read a context
    /// version with a pre-release or build label longer than 8 bytes).
    #[inline]
    pub fn matches(&self, ctx: &Context) -> bool {
        self.root.eval(ctx)
    }

    /// The attribute names this expression reads, each once, in order of appearance.
    pub fn attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.collect_attributes(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Disjointness prover
// ---------------------------------------------------------------------------------------------

/// An interval bound: the value and whether it is included.
type Bound<T> = Option<(T, bool)>;

/// An interval of numbers or instants; no bounds means no constraint.
#[derive(Debug, Clone, Copy)]
struct Interval<T> {
    lo: Bound<T>,
    hi: Bound<T>,
}

impl<T> Default for Interval<T> {
    fn default() -> Self {
        Interval { lo: None, hi: None }
    }
}

impl<T: PartialOrd + Copy> Interval<T> {
    fn is_bounded(&self) -> bool {
        self.lo.is_some() || self.hi.is_some()
    }

    /// Both intervals at once (the tighter bounds).
    fn intersect(self, other: Self) -> Self {
        let tighter = |a: Bound<T>, b: Bound<T>, lower: bool| -> Bound<T> {
            match (a, b) {
                (None, x) | (x, None) => x,
                (Some((x, xi)), Some((y, yi))) => {
                    if x == y {
                        Some((x, xi && yi))
                    } else if (x > y) == lower {
                        Some((x, xi))
                    } else {
                        Some((y, yi))
                    }
                }
            }
        };
        Interval { lo: tighter(self.lo, other.lo, true), hi: tighter(self.hi, other.hi, false) }
    }

    /// The smallest interval holding both (the looser bounds; unbounded if either is).
    fn hull(self, other: Self) -> Self {
        let looser = |a: Bound<T>, b: Bound<T>, lower: bool| -> Bound<T> {
            match (a, b) {
                (Some((x, xi)), Some((y, yi))) => {
                    if x == y {
                        Some((x, xi || yi))
                    } else if (x < y) == lower {
                        Some((x, xi))
                    } else {
                        Some((y, yi))
                    }
                }
                _ => None,
            }
        };
        Interval { lo: looser(self.lo, other.lo, true), hi: looser(self.hi, other.hi, false) }
    }

    fn is_empty(&self) -> bool {
        match (self.lo, self.hi) {
            (Some((lo, li)), Some((hi, hi_incl))) => lo > hi || (lo == hi && !(li && hi_incl)),
            _ => false,
        }
    }

    fn contains(&self, x: T) -> bool {
        let above = match self.lo {
            Some((lo, incl)) => x > lo || (incl && x == lo),
            None => true,
        };
        let below = match self.hi {
            Some((hi, incl)) => x < hi || (incl && x == hi),
            None => true,
        };
        above && below
    }

    /// Whether a value whose coercion is `x` can satisfy the interval.
    fn admits(&self, x: Option<T>) -> bool {
        !self.is_bounded() || x.is_some_and(|x| self.contains(x))
    }
}

/// A necessary condition on one attribute's value in every matching context: the conjunction
/// of its parts. Invariant: `allowed` or a bounded interval implies `present`.
#[derive(Debug, Clone, Default)]
struct Constraint {
    /// Present and not null.
    present: bool,
    /// Missing (absent or null).
    absent: bool,
    /// A scalar equal to one of these.
    allowed: Option<Vec<Scalar>>,
    /// If present, equal to none of these.
    excluded: Vec<Scalar>,
    /// Coerces (as for `gt`) to a number in this interval.
    num: Interval<f64>,
    /// Coerces (as for `before`) to an instant in this interval.
    time: Interval<i128>,
}

fn contains_scalar(list: &[Scalar], s: &Scalar) -> bool {
    list.iter().any(|x| scalar_eq(x, s))
}

impl Constraint {
    fn present() -> Self {
        Constraint { present: true, ..Self::default() }
    }

    /// Both constraints at once.
    fn meet(self, other: Constraint) -> Constraint {
        let allowed = match (self.allowed, other.allowed) {
            (Some(a), Some(b)) => Some(a.into_iter().filter(|s| contains_scalar(&b, s)).collect()),
            (a, None) => a,
            (None, b) => b,
        };
        let mut excluded = self.excluded;
        excluded.extend(other.excluded);
        Constraint {
            present: self.present || other.present,
            absent: self.absent || other.absent,
            allowed,
            excluded,
            num: self.num.intersect(other.num),
            time: self.time.intersect(other.time),
        }
    }

    /// One constraint or the other (over-approximated).
    fn join(self, other: Constraint) -> Constraint {
        let allowed = match (self.allowed, other.allowed) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        let excluded = self.excluded.into_iter().filter(|s| contains_scalar(&other.excluded, s)).collect();
        Constraint {
            present: self.present && other.present,
            absent: self.absent && other.absent,
            allowed,
            excluded,
            num: self.num.hull(other.num),
            time: self.time.hull(other.time),
        }
    }

    /// False only if no value (nor a missing one) can satisfy the constraint.
    fn satisfiable(&self) -> bool {
        if self.present && self.absent {
            return false;
        }
        if self.num.is_empty() || self.time.is_empty() {
            return false;
        }
        match &self.allowed {
            Some(candidates) => candidates.iter().any(|s| {
                let v = s.to_json();
                !contains_scalar(&self.excluded, s)
                    && self.num.admits(as_number(&v))
                    && self.time.admits(as_unix_nanos(&v))
            }),
            None => true,
        }
    }
}

/// Necessary per-attribute constraints of an expression; `None` when it can match no one.
type Facts = Option<IndexMap<String, Constraint>>;

fn single(attribute: &str, c: Constraint) -> Facts {
    let mut m = IndexMap::new();
    m.insert(attribute.to_string(), c);
    Some(m)
}

/// Facts that hold in every context where all of `parts` hold.
fn meet_facts(parts: impl IntoIterator<Item = Facts>) -> Facts {
    let mut out: IndexMap<String, Constraint> = IndexMap::new();
    for part in parts {
        for (attr, c) in part? {
            let merged = match out.shift_remove(&attr) {
                Some(prev) => prev.meet(c),
                None => c,
            };
            out.insert(attr, merged);
        }
    }
    if out.values().all(Constraint::satisfiable) {
        Some(out)
    } else {
        None
    }
}

/// Facts that hold in every context where one of `parts` holds.
fn join_facts(parts: impl IntoIterator<Item = Facts>) -> Facts {
    let mut acc: Option<IndexMap<String, Constraint>> = None;
    for part in parts.into_iter().flatten() {
        acc = Some(match acc {
            None => part,
            Some(mut prev) => {
                let mut next = IndexMap::new();
                for (attr, c) in part {
                    if let Some(p) = prev.shift_remove(&attr) {
                        next.insert(attr, p.join(c));
                    }
                }
                next
            }
        });
    }
    acc
}

/// Necessary facts of one operator of a criterion on `attribute`.
fn operator_fact(op: &Operator) -> Constraint {
    let mut c = Constraint::present();
    let num = |lo: Bound<f64>, hi: Bound<f64>| Interval { lo, hi };
    match op {
        Operator::Eq(s) => c.allowed = Some(vec![s.clone()]),
        Operator::In(l) => c.allowed = Some(l.clone()),
        Operator::Ne(s) => c.excluded = vec![s.clone()],
        Operator::NotIn(l) => c.excluded = l.clone(),
        Operator::Gt(n) => c.num = num(Some((number_f64(n), false)), None),
        Operator::Gte(n) => c.num = num(Some((number_f64(n), true)), None),
        Operator::Lt(n) => c.num = num(None, Some((number_f64(n), false))),
        Operator::Lte(n) => c.num = num(None, Some((number_f64(n), true))),
        Operator::After(t) => c.time = Interval { lo: Some((t.unix_nanos, false)), hi: None },
        Operator::Before(t) => c.time = Interval { lo: None, hi: Some((t.unix_nanos, false)) },
        Operator::Exists(false) => c = Constraint { absent: true, ..Constraint::default() },
        _ => {}
    }
    c
}

/// Necessary facts of the negation of one operator of a criterion.
fn negated_operator_fact(op: &Operator) -> Constraint {
    match op {
        Operator::Eq(s) => Constraint { excluded: vec![s.clone()], ..Constraint::default() },
        Operator::In(l) => Constraint { excluded: l.clone(), ..Constraint::default() },
        Operator::Exists(true) => Constraint { absent: true, ..Constraint::default() },
        Operator::Exists(false) => Constraint::present(),
        _ => Constraint::default(),
    }
}

fn facts<'a>(
    t: &'a Targeting,
    negated: bool,
    segments: &'a IndexMap<String, Targeting>,
    stack: &mut Vec<&'a str>,
) -> Facts {
    match (t, negated) {
        (Targeting::All(cs), false) | (Targeting::Any(cs), true) => {
            let parts: Vec<Facts> = cs.iter().map(|c| facts(c, negated, segments, stack)).collect();
            meet_facts(parts)
        }
        (Targeting::Any(cs), false) | (Targeting::All(cs), true) => {
            let parts: Vec<Facts> = cs.iter().map(|c| facts(c, negated, segments, stack)).collect();
            join_facts(parts)
        }
        (Targeting::Not(c), _) => facts(c, !negated, segments, stack),
        (Targeting::Segment(name), _) => match segments.get(name) {
            Some(def) if !stack.contains(&name.as_str()) => {
                stack.push(name);
                let f = facts(def, negated, segments, stack);
                stack.pop();
                f
            }
            _ => Some(IndexMap::new()),
        },
        (Targeting::Criterion(c), false) => {
            meet_facts(c.operators.iter().map(|op| single(&c.attribute, operator_fact(op))))
        }
        (Targeting::Criterion(c), true) => {
            join_facts(c.operators.iter().map(|op| single(&c.attribute, negated_operator_fact(op))))
        }
    }
}

/// Why two expressions can never match the same unit, using only what a unit never changes:
/// the attributes (of `stable`) whose constraints on the two sides cannot both hold, or an
/// empty list when one side matches no context at all. `None` when this cannot be shown.
///
/// Exclusive experiments may share buckets only on this proof: a proof that rests on an
/// attribute a unit can change (`plan: free` vs `plan: paid`) would put every unit that
/// upgrades into both experiments.
pub fn disjoint_on(
    a: &Targeting,
    b: &Targeting,
    segments: &IndexMap<String, Targeting>,
    stable: &[String],
) -> Option<Vec<String>> {
    Necessary::of(a, segments).disjoint_on(&Necessary::of(b, segments), stable)
}

/// What every context an expression matches must satisfy, per attribute (the prover's facts),
/// computed once per expression so that comparing many pairs costs no re-derivation.
#[derive(Debug, Clone)]
pub struct Necessary(Facts);

impl Necessary {
    /// The necessary conditions of `t` with `segments` inlined.
    pub fn of(t: &Targeting, segments: &IndexMap<String, Targeting>) -> Necessary {
        Necessary(facts(t, false, segments, &mut Vec::new()))
    }

    /// See [`disjoint_on`].
    pub fn disjoint_on(&self, other: &Necessary, stable: &[String]) -> Option<Vec<String>> {
        let (Some(fa), Some(fb)) = (&self.0, &other.0) else { return Some(vec![]) };
        let attrs: Vec<String> = fa
            .iter()
            .filter(|(attr, _)| stable.contains(attr))
            .filter_map(|(attr, ca)| {
                let cb = fb.get(attr)?;
                (!ca.clone().meet(cb.clone()).satisfiable()).then(|| attr.clone())
            })
            .collect();
        (!attrs.is_empty()).then_some(attrs)
    }
}

/// A sound but incomplete prover: true only if NO context can match both `a` and `b` (with
/// `segments` inlined). When unsure it returns false.
///
/// Each side is reduced to necessary per-attribute constraints (allowed values from `eq`/`in`,
/// excluded values from `ne`/`not_in`/`not eq`/`not in`, numeric and timestamp intervals,
/// presence from any criterion and absence from `exists: false`); `any` keeps only what all of
/// its branches constrain. The sides are disjoint when either can match no one (e.g.
/// `{any: []}`) or some attribute's combined constraints cannot all hold.
pub fn provably_disjoint(a: &Targeting, b: &Targeting, segments: &IndexMap<String, Targeting>) -> bool {
    let fa = facts(a, false, segments, &mut Vec::new());
    let fb = facts(b, false, segments, &mut Vec::new());
    meet_facts([fa, fb]).is_none()
}
