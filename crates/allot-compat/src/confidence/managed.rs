//! A client's managed context: flat dot-paths set by the Confidence service, merged into every
//! request's evaluation context the way the resolver's `managed_context::merge` does.

use serde_json::{Map, Value};

/// `{"a.b": 1, "c": 2}` as `{"a": {"b": 1}, "c": 2}`. Paths are applied in byte order (the
/// resolver keeps them in a `BTreeMap`), so `"a"` then `"a.b"` leaves `{"a": {"b": ...}}`.
pub(super) fn unflatten(flat: Map<String, Value>) -> Map<String, Value> {
    let mut paths: Vec<(String, Value)> = flat.into_iter().collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    let mut root = Map::new();
    for (path, value) in paths {
        let parts: Vec<&str> = path.split('.').collect();
        set_nested(&mut root, &parts, value);
    }
    root
}

fn set_nested(current: &mut Map<String, Value>, parts: &[&str], value: Value) {
    let Some((key, rest)) = parts.split_first() else { return };
    if rest.is_empty() {
        current.insert((*key).to_string(), value);
        return;
    }
    // A scalar on the way is replaced by a struct, as the resolver does.
    let mut nested = match current.get(*key) {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    set_nested(&mut nested, rest, value);
    current.insert((*key).to_string(), Value::Object(nested));
}

/// The request's context with the managed values over it: managed values win on the same path,
/// and where both sides hold a struct the two are merged, keeping the siblings of both.
pub(super) fn merge(managed: &Map<String, Value>, request: &Map<String, Value>) -> Map<String, Value> {
    let mut out = request.clone();
    for (key, managed_value) in managed {
        match (managed_value, out.get(key)) {
            (Value::Object(m), Some(Value::Object(r))) => {
                let merged = merge(m, r);
                out.insert(key.clone(), Value::Object(merged));
            }
            _ => {
                out.insert(key.clone(), managed_value.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn managed_values_win_and_structs_merge() {
        let managed = unflatten(obj(json!({"user.tier": "gold", "platform": "ios"})));
        let merged = merge(&managed, &obj(json!({"user": {"id": "u1", "tier": "free"}, "platform": {"os": 1}})));
        assert_eq!(Value::Object(merged), json!({"user": {"id": "u1", "tier": "gold"}, "platform": "ios"}));
    }

    #[test]
    fn a_longer_path_replaces_a_scalar() {
        let managed = unflatten(obj(json!({"a.b": 1, "a": 2})));
        assert_eq!(Value::Object(managed), json!({"a": {"b": 1}}));
    }
}
