//! Targeting: value coercions shared by evaluation and the prover.

use super::*;

/// The attribute's value, or `None` when it is missing (absent or null). Every read of a context
/// attribute in evaluation goes through here (targeting and the unit id).
#[inline]
pub(crate) fn lookup<'a>(ctx: &'a Context, key: &str) -> Option<&'a Value> {
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
pub(super) fn number_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// The value as a number for ordering operators: a JSON number or a finite numeric string.
#[inline]
pub(super) fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(number_f64(n)),
        Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// The value as an instant: an RFC 3339 string or a number of Unix seconds.
#[inline]
pub(super) fn as_unix_nanos(v: &Value) -> Option<i128> {
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
pub(super) fn scalar_eq(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::String(x), Scalar::String(y)) => x == y,
        (Scalar::Number(x), Scalar::Number(y)) => number_f64(x) == number_f64(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => x == y,
        _ => false,
    }
}
