//! Matching one context value against a targeting rule: Confidence's conversions of context
//! values to a rule's type, ranges, and the comparisons.

use super::resolve::FlagError;
use super::{timestamp, version, Bound, Expected, Op, TypedValue};
use serde_json::Value;
use std::borrow::Cow;

pub(super) fn inner(op: &Op, v: &TypedValue<'_>) -> Result<bool, FlagError> {
    match op {
        Op::Unrecognized => Err(FlagError::Unrecognized),
        Op::Eq(e) => Ok(e == v),
        // Conversions never give the kindless value a top-level null equality compares with.
        Op::NullEq => Ok(false),
        Op::Set(set) => Ok(set.contains(v)),
        Op::Range(start, end) => Ok(in_range(start.as_ref(), end.as_ref(), v)),
        Op::StartsWith(p) => Ok(matches!(v, TypedValue::Str(s) if s.starts_with(p.as_str()))),
        Op::EndsWith(p) => Ok(matches!(v, TypedValue::Str(s) if s.ends_with(p.as_str()))),
        Op::Contains(p) => Ok(matches!(v, TypedValue::Str(s) if s.contains(p.as_str()))),
    }
}

pub(super) fn in_range(start: Option<&Bound>, end: Option<&Bound>, v: &TypedValue<'_>) -> bool {
    if start.is_none() && end.is_none() {
        // A range without bounds matches nothing.
        return false;
    }
    let after = match start {
        None => true,
        Some(b) => b.value.as_ref().is_some_and(|s| if b.inclusive { lte(s, v) } else { lt(s, v) }),
    };
    let before = match end {
        None => true,
        Some(b) => b.value.as_ref().is_some_and(|e| if b.inclusive { lte(v, e) } else { lt(v, e) }),
    };
    after && before
}

pub(super) fn lt(a: &TypedValue<'_>, b: &TypedValue<'_>) -> bool {
    match (a, b) {
        (TypedValue::Number(a), TypedValue::Number(b)) => a < b,
        (TypedValue::Str(a), TypedValue::Str(b)) => a < b,
        (TypedValue::Timestamp(a), TypedValue::Timestamp(b)) => a < b,
        (TypedValue::Version(a), TypedValue::Version(b)) => version::key(a) < version::key(b),
        _ => false,
    }
}

pub(super) fn lte(a: &TypedValue<'_>, b: &TypedValue<'_>) -> bool {
    match (a, b) {
        (TypedValue::Number(a), TypedValue::Number(b)) => a <= b,
        (TypedValue::Str(a), TypedValue::Str(b)) => a <= b,
        (TypedValue::Timestamp(a), TypedValue::Timestamp(b)) => a <= b,
        (TypedValue::Version(a), TypedValue::Version(b)) => version::key(a) <= version::key(b),
        _ => false,
    }
}

pub(super) const NULL_TEXT: TypedValue<'static> = TypedValue::Str(Cow::Borrowed("null"));

/// Converts a context value to the rule's type, as Confidence's `convert_to_targeting_value`
/// does: missing, null, objects and values of another type read as the string `"null"` (so a
/// string rule's `"null"` matches them), numbers print as Rust prints an `f64` under a string
/// rule, text parses into the rule's type (a number that does not parse fails the request, a
/// timestamp that does not parse reads as `"null"`), lists convert element-wise. The string
/// operators convert strictly: only strings are strings ([`strict`]).
pub(super) fn convert<'v>(v: Option<&'v Value>, expected: Expected) -> Result<TypedValue<'v>, String> {
    if expected == Expected::StrictString {
        return Ok(strict(v));
    }
    Ok(match v {
        None | Some(Value::Null) | Some(Value::Object(_)) => NULL_TEXT,
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            match expected {
                Expected::Number => TypedValue::Number(f),
                Expected::String => TypedValue::Str(Cow::Owned(f.to_string())),
                Expected::Timestamp => timestamp::from_number(f).map_or(NULL_TEXT, TypedValue::Timestamp),
                _ => NULL_TEXT,
            }
        }
        Some(Value::String(s)) => match expected {
            Expected::Bool => TypedValue::Bool(s.parse().unwrap_or(s == "TRUE")),
            Expected::Number => {
                TypedValue::Number(s.parse().map_err(|_| format!("cannot convert {s:?} to a number for targeting"))?)
            }
            Expected::String | Expected::StrictString => TypedValue::Str(Cow::Borrowed(s)),
            Expected::Timestamp => timestamp::context(s).map_or(NULL_TEXT, TypedValue::Timestamp),
            Expected::Version => TypedValue::Version(Cow::Borrowed(s)),
            Expected::None => NULL_TEXT,
        },
        Some(Value::Bool(b)) => match expected {
            Expected::Bool => TypedValue::Bool(*b),
            _ => NULL_TEXT,
        },
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(convert(Some(item), expected)?);
            }
            TypedValue::List(out)
        }
    })
}

/// A context value under a string operator (`startsWith`, `endsWith`, `contains`, also inside
/// `any`/`all`): strings stay strings, lists convert element-wise, and anything else (missing,
/// null, a number, a bool, an object) is [`TypedValue::Invalid`], which no operator matches.
pub(super) fn strict(v: Option<&Value>) -> TypedValue<'_> {
    match v {
        Some(Value::String(s)) => TypedValue::Str(Cow::Borrowed(s)),
        Some(Value::Array(items)) => TypedValue::List(items.iter().map(|i| strict(Some(i))).collect()),
        _ => TypedValue::Invalid,
    }
}
