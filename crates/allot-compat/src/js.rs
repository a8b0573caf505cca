//! The few JavaScript coercions Amplitude's evaluation engine relies on (`String(x)`,
//! `JSON.stringify`, `Number(s)`, array-index keys), so that the adapter gives the engine's
//! answers on the same input.

use serde_json::Value;

/// `String(n)` for a JavaScript number (ECMAScript's `Number::toString`: the shortest digits
/// that round-trip, in decimal from 1e-6 up to 1e21 and in exponent form outside).
pub(crate) fn number_to_string(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if f == 0.0 {
        // `-0` prints as `0`.
        return "0".to_string();
    }
    if f < 0.0 {
        return format!("-{}", number_to_string(-f));
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `d[.ddd]e<exp>`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    // The position of the decimal point after the first digit (ECMAScript's `n`).
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(n as usize);
        format!("{a}.{b}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n - 1 < 0 { '-' } else { '+' };
        let e = (n - 1).abs();
        if k == 1 {
            format!("{digits}e{sign}{e}")
        } else {
            format!("{}.{}e{sign}{e}", &digits[..1], &digits[1..])
        }
    }
}

/// `String(n)` for a JSON number: JavaScript reads every number as a double.
fn json_number_to_string(n: &serde_json::Number) -> String {
    number_to_string(n.as_f64().unwrap_or(f64::NAN))
}

/// Whether a property key is an array index (`0`, `17`; not `01`, `+1`, `4294967295`): such
/// keys come first, in numeric order, when JavaScript enumerates an object's keys.
pub(crate) fn is_array_index(key: &str) -> bool {
    array_index(key).is_some()
}

/// The array index a property key names, if it is one.
pub(crate) fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u32>().ok().filter(|&i| i != u32::MAX)
}

/// `JSON.stringify(v)`: numbers as JavaScript prints them, object keys in JavaScript's order
/// (array indices first, ascending; then the others in insertion order).
pub(crate) fn stringify(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // `JSON.stringify` writes non-finite numbers as null (a JSON number is never one).
            if f.is_finite() {
                out.push_str(&number_to_string(f));
            } else {
                out.push_str("null");
            }
        }
        Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut indices: Vec<(u32, &String, &Value)> =
                m.iter().filter_map(|(k, v)| array_index(k).map(|i| (i, k, v))).collect();
            indices.sort_by_key(|(i, _, _)| *i);
            let others = m.iter().filter(|(k, _)| !is_array_index(k));
            out.push('{');
            for (n, (k, v)) in indices.into_iter().map(|(_, k, v)| (k, v)).chain(others).enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// The engine's `coerceString` of a value that is not null: objects and arrays as
/// `JSON.stringify`, everything else as `String(x)`.
pub(crate) fn coerce_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => json_number_to_string(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(_) | Value::Object(_) => stringify(v),
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
        assert_eq!(
            coerce_string(&serde_json::json!([1.0, {"b": 1, "10": 2, "2": 3}])),
            "[1,{\"2\":3,\"10\":2,\"b\":1}]"
        );
    }

    #[test]
    fn numbers_print_like_javascript() {
        for (f, js) in [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.5e21, "1.5e+21"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e-6, "0.000001"),
            (0.1, "0.1"),
            (-0.0, "0"),
            (-2.5, "-2.5"),
            (123456789012345680000.0, "123456789012345680000"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (123.456, "123.456"),
        ] {
            assert_eq!(number_to_string(f), js, "{f:e}");
        }
        assert_eq!(coerce_string(&serde_json::json!(12345678901234567890u64)), "12345678901234567000");
    }
}
