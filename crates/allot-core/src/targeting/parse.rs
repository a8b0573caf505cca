//! Targeting: parsing.

use super::*;

pub(super) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn quoted_list(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

pub(super) fn parse_expr(value: &Value, path: &str, errors: &mut Vec<FieldError>) -> Targeting {
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

pub(super) fn parse_list(value: &Value, path: &str, errors: &mut Vec<FieldError>) -> Vec<Targeting> {
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

pub(super) fn parse_criterion(obj: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) -> Criterion {
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
pub(super) fn parse_operators(
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

pub(super) fn parse_scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::String(s.clone())),
        Value::Number(n) => Some(Scalar::Number(n.clone())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        _ => None,
    }
}

/// `Ok(None)` when errors were pushed for nested fields; `Err` for an error at the operator.
pub(super) fn parse_operator(
    key: &str,
    v: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Result<Option<Operator>, String> {
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
pub(super) fn parse_version(text: &str) -> Option<Version> {
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

pub(super) fn parse_rfc3339(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp_nanos)
}
