//! YAML for people: the configuration export (`GET /api/v1/config`).
//!
//! Written by hand, not with `serde_yaml_ng::to_string`, because that emitter follows YAML 1.2 and
//! leaves `on`, `off`, `yes`, `no`, `y` and `n` unquoted, which YAML 1.1 readers (PyYAML, many
//! CI tools) turn into booleans: a variant named `on` would come back as `true`. Here a string is
//! written plain only when every YAML reader must read it back as that string (letters first,
//! a conservative set of characters, not one of the words either version gives a meaning);
//! anything else is double-quoted with JSON escapes, which YAML accepts. Maps are written in
//! block style, lists of scalars in flow style (`[SE, NO]`), other lists in block style.

use serde_json::Value;
use std::fmt::Write;

/// The value as YAML text.
pub(crate) fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// Words that YAML 1.1 or 1.2 reads as booleans or null.
const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];

fn scalar_string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/@+ ".contains(c))
        && !s.ends_with(' ')
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

fn is_scalar(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
        _ => true,
    }
}

/// A scalar, an empty map, or a list of scalars, on one line.
/// A value on one line (flow style), as [`to_yaml`] writes scalars and short lists.
pub(crate) fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_string(s),
        Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", scalar_string(k), inline(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        let key = scalar_string(k);
        if is_scalar(v) {
            let _ = writeln!(out, "{:indent$}{key}: {}", "", inline(v));
        } else {
            let _ = writeln!(out, "{:indent$}{key}:", "");
            block(out, v, indent + 2);
        }
    }
}

fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) => map(out, m, indent),
        Value::Array(a) => {
            for item in a {
                if is_scalar(item) {
                    let _ = writeln!(out, "{:indent$}- {}", "", inline(item));
                } else {
                    let _ = writeln!(out, "{:indent$}-", "");
                    block(out, item, indent + 2);
                }
            }
        }
        other => {
            let _ = writeln!(out, "{:indent$}{}", "", inline(other));
        }
    }
}
