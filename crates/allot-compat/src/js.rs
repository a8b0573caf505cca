//! The few JavaScript coercions Amplitude's evaluation engine relies on (`String(x)`,
//! `Number(s)`, truthiness), so that the adapter gives the engine's answers on the same input.

use serde_json::Value;

/// JavaScript truthiness of a JSON value (`null`, `false`, `0`, `""` are falsy).
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `String(n)` for a JavaScript number.
pub(crate) fn number_to_string(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else if f == 0.0 {
        "0".to_string()
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        // Shortest round-trip digits, as JavaScript; the exponent forms differ only outside
        // 1e-7..1e21, which Amplitude's properties do not reach in practice.
        format!("{f}")
    }
}

/// `String(v)` for a JSON value that is not null (objects and arrays as `JSON.stringify`).
pub(crate) fn coerce_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => number_to_string(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}' | '\u{a}' | '\u{b}' | '\u{c}' | '\u{d}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// `Number(s)`: whitespace-trimmed decimal, `0x`/`0o`/`0b` integers, `Infinity`; `""` is 0;
/// anything else is NaN.
pub(crate) fn parse_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits
                .chars()
                .fold(0.0, |acc, c| acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0)));
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    // A StrDecimalLiteral: digits with at most one dot (at least one digit), optional exponent.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let dots = mantissa.matches('.').count();
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    if dots > 1 || digits == 0 || digits + dots != mantissa.len() {
        return f64::NAN;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()) {
            return f64::NAN;
        }
    }
    t.parse().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_javascript() {
        assert_eq!(parse_number(" 12 "), 12.0);
        assert_eq!(parse_number(""), 0.0);
        assert_eq!(parse_number("1e3"), 1000.0);
        assert_eq!(parse_number(".5"), 0.5);
        assert_eq!(parse_number("5."), 5.0);
        assert_eq!(parse_number("0x10"), 16.0);
        assert_eq!(parse_number("-Infinity"), f64::NEG_INFINITY);
        assert!(parse_number("inf").is_nan());
        assert!(parse_number("1.2.3").is_nan());
        assert!(parse_number("abc").is_nan());
        assert!(parse_number("NaN").is_nan());
    }

    #[test]
    fn strings_like_javascript() {
        assert_eq!(number_to_string(51.0), "51");
        assert_eq!(number_to_string(51.5), "51.5");
        assert_eq!(coerce_string(&serde_json::json!(["a", 1])), "[\"a\",1]");
        assert_eq!(coerce_string(&serde_json::json!(true)), "true");
    }
}
