//! The per-field entity forms: one input per field of an experiment, surface, segment, group,
//! holdout or unit type, with the validation errors of the API shown at the input they name.
//!
//! The form is a model of strings ([`Values`]: what the inputs hold, by name, as the browser
//! posts them). Three translations connect it to the configuration:
//! - [`values_of`]: an entity of the configuration → the inputs' text. An entity that uses what the
//!   form cannot show field by field (explicit split `ranges`, membership of several groups,
//!   Amplitude's split) is not representable: the page is then the YAML editor, which says why.
//! - [`entity_of`]: the posted text → the entity, exactly as the configuration file would hold it
//!   (it is written out as YAML and goes through the same proposal, preview and change control as
//!   the YAML editor). A value the text cannot be (a variant value that is not YAML) is an error at
//!   its input; anything else the validator judges, and its error paths come back.
//! - [`target`]: an error path of the validator (relative to the entity) → the input it names.
//!
//! Targeting is shown as rows of criteria (attribute, operator, value) combined with `all` when it
//! has that shape exactly (and a segment reference is a row too); any other shape keeps its own
//! YAML field. The rows are written back in the very shape they came from, so an edit that leaves
//! them alone leaves the targeting byte for byte as it was (change control sees no change).
//!
//! What cannot change after creation is shown read-only, with the rule that fixes it: a group's
//! unit type, share and slots (`slots-fixed`), a holdout's unit type and share
//! (`holdout-share-fixed`), a unit type's attribute, buckets, salt and hash while allocations use
//! it, a running experiment's unit type, group and slots. Change control refuses those changes
//! whatever the form sends; the form only says so before anyone tries.

use crate::yaml;
use allot_core::error::FieldError;
use allot_core::targeting::OPERATOR_KEYS;
use serde_json::{json, Map, Value};

/// The inputs' text, by name, in the order the browser posted them (a name may repeat: the
/// checkboxes of a list).
#[derive(Debug, Clone, Default)]
pub(crate) struct Values(Vec<(String, String)>);

impl Values {
    /// The posted pairs; line breaks as browsers send them from a text area (`\r\n`) become
    /// `\n`, as the configuration file has them.
    pub(crate) fn new(pairs: Vec<(String, String)>) -> Values {
        Values(
            pairs.into_iter().map(|(n, v)| (n, if v.contains('\r') { v.replace("\r\n", "\n") } else { v })).collect(),
        )
    }

    /// The text of input `name` (empty when absent).
    fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// Every value posted under `name` (checkboxes).
    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.0.push((name.into(), value));
        }
    }

    /// The number of rows of table `table` (one more than the highest `table[i].…` posted with
    /// text; an operator alone does not fill a row).
    fn rows(&self, table: &str) -> usize {
        let prefix = format!("{table}[");
        self.0
            .iter()
            .filter(|(n, v)| !v.trim().is_empty() && !n.ends_with(".op"))
            .filter_map(|(n, _)| n.strip_prefix(&prefix)?.split(']').next()?.parse::<usize>().ok())
            .filter(|i| *i < MAX_ROWS)
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)
    }
}

/// At most this many rows of a table are read from a post (the configuration's own limits are
/// lower: 1,000 variants); row names past it are ignored, so a hostile post cannot make the
/// server loop over a made-up index.
const MAX_ROWS: usize = 1000;

/// Empty rows offered after the filled ones (more are added in the page by the script, or by
/// previewing).
const SPARE_ROWS: usize = 2;

/// The operators a criterion row offers: the configuration's, without the list quantifiers
/// (`any`/`all` take operators, not a value: such a criterion keeps the YAML field), and
/// `segment` for a reference to a named segment.
fn row_operators() -> impl Iterator<Item = &'static str> {
    OPERATOR_KEYS.iter().copied().filter(|o| *o != "any" && *o != "all").chain(["segment"])
}

/// The text of a scalar or small value in an input: YAML that reads back as exactly this value
/// (`SE` and `50%` stay plain, the string `"18"` is quoted, a list is `[a, b]`).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) if value_of_text(s).ok().flatten().as_ref() == Some(v) => s.clone(),
        _ => yaml::inline(v),
    }
}

/// The text of an item of a comma-separated list: plain when the list reads it back as itself.
fn text_of_item(v: &Value) -> String {
    match v {
        Value::String(s) if list_of_text(s).ok().as_deref() == Some(std::slice::from_ref(v)) => s.clone(),
        _ => yaml::inline(v),
    }
}

/// The value an input's text means, read as YAML (as in the configuration file); `None` for an
/// empty input (no value), `Some(null)` for a typed `null` or `~`.
fn value_of_text(text: &str) -> Result<Option<Value>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let v = allot_core::config::parse_yaml(t).map_err(|e| e.message)?;
    // The configuration's reader makes an empty document an empty mapping; here a document
    // that is not a written mapping and reads as one is YAML's null (`null`, `~`, `Null`).
    if v.as_object().is_some_and(|m| m.is_empty()) && !t.starts_with('{') {
        return Ok(Some(Value::Null));
    }
    Ok(Some(v))
}

/// A comma-separated list (`SE, NO`, or `[SE, NO]`) as its values.
fn list_of_text(text: &str) -> Result<Vec<Value>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(vec![]);
    }
    let flow = if t.starts_with('[') { t.to_string() } else { format!("[{t}]") };
    match allot_core::config::parse_yaml(&flow).map_err(|e| e.message)? {
        Value::Array(a) => Ok(a),
        _ => Err("expected a comma-separated list".into()),
    }
}

/// A list's text: its items, comma-separated.
fn text_of_list(items: &[Value]) -> String {
    items.iter().map(text_of_item).collect::<Vec<_>>().join(", ")
}

/// A scalar for a share or a number: the text as typed, a JSON number when it is one.
fn share_value(text: &str) -> Value {
    let t = text.trim();
    if !t.ends_with('%') {
        if let Ok(n) = t.parse::<u64>() {
            return json!(n);
        }
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            // Only when the number prints as the text (`0.25`; `0.000005` would print `5e-6`,
            // which a share cannot be): else the text, which a share reads exactly.
            if n.to_string() == t {
                return Value::Number(n);
            }
        }
    }
    json!(t)
}

/// A whole number as a JSON number, anything else as the text (the validator names it).
fn integer_value(text: &str) -> Value {
    let t = text.trim();
    t.parse::<u64>().map(|n| json!(n)).unwrap_or_else(|_| json!(t))
}

/// Whether `v` is a list of strings.
fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|s| s.as_str().map(String::from)).collect()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The keys each form shows: the configuration's own (`config::*_KEYS`), but for an experiment's
/// membership of several groups (`groups`), which only YAML shows; an entity with any other key
/// is not representable.
fn shows(c: &str, key: &str) -> bool {
    use allot_core::config::{EXP_KEYS, GROUP_KEYS, HOLDOUT_KEYS, UNIT_KEYS};
    match c {
        "units" => UNIT_KEYS.contains(&key),
        "holdouts" => HOLDOUT_KEYS.contains(&key),
        "groups" => GROUP_KEYS.contains(&key),
        "experiments" => key != "groups" && EXP_KEYS.contains(&key),
        _ => false,
    }
}

/// A criterion row: attribute, operator, the value's text.
type Row = (String, String, String);

/// Criterion rows, and whether they are written back inside `all` whatever their number.
type Criteria = (Vec<Row>, bool);

/// Targeting as criterion rows, when it has exactly a shape the rows write back: none, one
/// single-operator criterion or segment reference, or `all` of any number of them (then
/// `wrapped`: the rows are written back inside `all` even when there is one).
fn criteria_rows(t: Option<&Value>) -> Option<Criteria> {
    fn one(v: &Value) -> Option<Row> {
        let o = v.as_object()?;
        if o.len() == 1 {
            let s = o.get("segment")?.as_str()?;
            return Some((String::new(), "segment".into(), s.to_string()));
        }
        if o.len() != 2 {
            return None;
        }
        let attribute = o.get("attribute")?.as_str()?.to_string();
        let (op, value) = o.iter().find(|(k, _)| k.as_str() != "attribute")?;
        if !row_operators().any(|r| r == op) || op == "segment" {
            return None;
        }
        let text = match (op.as_str(), value) {
            // An empty list is written `[]` (an empty input is no value at all).
            ("in" | "not_in", Value::Array(items)) if items.is_empty() => "[]".to_string(),
            ("in" | "not_in", Value::Array(items)) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
                text_of_list(items)
            }
            ("in" | "not_in", _) => return None,
            (_, v) if v.is_array() || v.is_object() => return None,
            (_, v) => text_of(v),
        };
        Some((attribute, op.clone(), text))
    }
    let Some(t) = t else { return Some((vec![], false)) };
    if let Some(r) = one(t) {
        return Some((vec![r], false));
    }
    let o = t.as_object()?;
    let all = o.get("all")?.as_array()?;
    if o.len() != 1 {
        return None;
    }
    Some((all.iter().map(one).collect::<Option<Vec<_>>>()?, true))
}

/// The targeting of the posted rows (`table` names them), or of the YAML field, in the shape
/// [`criteria_rows`] reads back. Errors name the inputs.
fn targeting_of(v: &Values, table: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
    if v.get("targeting_mode") == "yaml" {
        let text = v.get("targeting_yaml");
        if text.trim().is_empty() {
            return None;
        }
        return match value_of_text(text) {
            Ok(t) => t,
            Err(e) => {
                errors.push(FieldError::new("targeting_yaml", e));
                None
            }
        };
    }
    let mut out = vec![];
    for i in 0..v.rows(table) {
        let attribute = v.get(&format!("{table}[{i}].attribute")).trim();
        let op = v.get(&format!("{table}[{i}].op")).trim();
        let text = v.get(&format!("{table}[{i}].value"));
        if attribute.is_empty() && text.trim().is_empty() {
            continue;
        }
        let at = |f: &str| format!("{table}[{i}].{f}");
        if op == "segment" {
            out.push(json!({"segment": text.trim()}));
            continue;
        }
        if attribute.is_empty() {
            errors.push(FieldError::new(at("attribute"), "a criterion needs the attribute it tests"));
            continue;
        }
        if !row_operators().any(|r| r == op) {
            errors.push(FieldError::new(at("op"), format!("{op:?} is not an operator")));
            continue;
        }
        if text.trim().is_empty() {
            let why = if op == "in" || op == "not_in" {
                "a value is required: the list to test, e.g. SE, NO (an empty list matches nobody: write [] for that)"
            } else {
                "a value is required"
            };
            errors.push(FieldError::new(at("value"), why));
            continue;
        }
        let value = if op == "in" || op == "not_in" {
            list_of_text(text).map(Value::Array)
        } else {
            value_of_text(text).map(|v| v.unwrap_or(Value::Null))
        };
        match value {
            Ok(value) => {
                let mut c = Map::new();
                c.insert("attribute".into(), json!(attribute));
                c.insert(op.into(), value);
                out.push(Value::Object(c));
            }
            Err(e) => errors.push(FieldError::new(at("value"), e)),
        }
    }
    if v.get(&format!("{table}_shape")) == "all" {
        return Some(json!({ "all": out }));
    }
    match out.len() {
        0 => None,
        1 => out.pop(),
        _ => Some(json!({ "all": out })),
    }
}

/// The inputs' text of entity `e` of collection `c`, or why the form cannot show it (the page is
/// then the YAML editor).
pub(crate) fn values_of(c: &str, e: &Value) -> Result<Values, String> {
    let mut v = Values::default();
    if c == "segments" {
        return match criteria_rows(Some(e)) {
            Some(rows) => {
                put_rows(&mut v, "criteria", &rows);
                Ok(v)
            }
            None => {
                v.set("targeting_mode", "yaml");
                v.set("targeting_yaml", yaml::to_yaml(e));
                Ok(v)
            }
        };
    }
    if c == "surfaces" {
        return Ok(v);
    }
    let Some(o) = e.as_object() else { return Err("it is not a mapping".into()) };
    if let Some(k) = o.keys().find(|k| !shows(c, k)) {
        return Err(format!("it uses `{k}`, which the form does not show field by field"));
    }
    for (k, x) in o {
        let k = k.as_str();
        match (k, x) {
            ("variants", Value::Object(vs)) => {
                for (i, (name, w)) in vs.iter().enumerate() {
                    v.set(format!("variants[{i}].name"), name.clone());
                    match w {
                        Value::Object(wo) => {
                            if wo.contains_key("ranges") {
                                return Err(format!(
                                    "variant `{name}` has explicit split ranges, which the form does not show"
                                ));
                            }
                            if let Some(k) =
                                wo.keys().find(|k| !["weight", "value", "description"].contains(&k.as_str()))
                            {
                                return Err(format!("variant `{name}` uses `{k}`"));
                            }
                            if let Some(w) = wo.get("weight") {
                                v.set(format!("variants[{i}].weight"), scalar_text(w).unwrap_or_else(|| text_of(w)));
                            }
                            if let Some(x) = wo.get("value") {
                                v.set(format!("variants[{i}].value"), text_of(x));
                            }
                            if let Some(d) = wo.get("description") {
                                v.set(
                                    format!("variants[{i}].description"),
                                    scalar_text(d).unwrap_or_else(|| text_of(d)),
                                );
                            }
                        }
                        w => v.set(format!("variants[{i}].weight"), scalar_text(w).unwrap_or_else(|| text_of(w))),
                    }
                }
            }
            ("targeting", t) => match criteria_rows(Some(t)) {
                Some(rows) => put_rows(&mut v, "criteria", &rows),
                None => {
                    v.set("targeting_mode", "yaml");
                    v.set("targeting_yaml", yaml::to_yaml(t));
                }
            },
            ("include" | "requires", x) => {
                v.set(k, if x.as_object().is_some_and(|m| m.is_empty()) { String::new() } else { yaml::to_yaml(x) })
            }
            ("split_hash", x) => {
                if x.as_str() != Some("allot") {
                    return Err("it uses Amplitude's variant split (`split_hash`), which only YAML shows".into());
                }
            }
            ("sticky", Value::Bool(b)) => {
                if *b {
                    v.set("sticky", "on");
                }
            }
            ("surfaces", x) if c != "holdouts" => match strings(x) {
                Some(list) => list.into_iter().for_each(|s| v.0.push(("surfaces".into(), s))),
                None => return Err("its `surfaces` is not a list of names".into()),
            },
            ("tags" | "exclusive_to" | "stable" | "applies_to" | "slots", Value::Array(items)) => {
                v.set(k, text_of_list(items));
            }
            (_, x) => match scalar_text(x) {
                Some(s) => v.set(k, s),
                None => return Err(format!("its `{k}` is not a single value")),
            },
        }
    }
    Ok(v)
}

fn put_rows(v: &mut Values, table: &str, (rows, wrapped): &Criteria) {
    if *wrapped {
        v.set(format!("{table}_shape"), "all");
    }
    for (i, (a, op, value)) in rows.iter().enumerate() {
        v.set(format!("{table}[{i}].attribute"), a.clone());
        v.0.push((format!("{table}[{i}].op"), op.clone()));
        v.set(format!("{table}[{i}].value"), value.clone());
    }
}

/// The entity the posted inputs describe, as the configuration file holds it; errors name the
/// inputs whose text cannot be read. What the text can be is for the validator to judge.
pub(crate) fn entity_of(c: &str, v: &Values) -> Result<Value, Vec<FieldError>> {
    let mut errors = vec![];
    let mut o = Map::new();
    let text = |o: &mut Map<String, Value>, k: &str| {
        let t = v.get(k).trim();
        if !t.is_empty() {
            o.insert(k.into(), json!(t));
        }
    };
    let list = |o: &mut Map<String, Value>, k: &str, errors: &mut Vec<FieldError>| match list_of_text(v.get(k)) {
        Ok(items) if items.is_empty() => {}
        Ok(items) => {
            o.insert(k.into(), Value::Array(items));
        }
        Err(e) => errors.push(FieldError::new(k, e)),
    };
    let checks = |o: &mut Map<String, Value>, k: &str| {
        let all: Vec<Value> = v.all(k).into_iter().filter(|s| !s.is_empty()).map(|s| json!(s)).collect();
        if !all.is_empty() {
            o.insert(k.into(), Value::Array(all));
        }
    };
    // Free text as typed (a description may span lines); only an empty one is left out.
    let free = |o: &mut Map<String, Value>, k: &str| {
        let t = v.get(k);
        if !t.trim().is_empty() {
            o.insert(k.into(), json!(t));
        }
    };
    let share = |o: &mut Map<String, Value>| {
        let t = v.get("share").trim();
        if !t.is_empty() {
            o.insert("share".into(), share_value(t));
        }
    };
    match c {
        "segments" => {
            let t = targeting_of(v, "criteria", &mut errors);
            if errors.is_empty() && t.is_none() {
                errors.push(FieldError::new("criteria", "a segment needs at least one criterion"));
            }
            return if errors.is_empty() { Ok(t.unwrap_or(Value::Null)) } else { Err(errors) };
        }
        "surfaces" => return Ok(json!({})),
        "units" => {
            text(&mut o, "attribute");
            let b = v.get("buckets").trim();
            if !b.is_empty() {
                o.insert("buckets".into(), integer_value(b));
            }
            text(&mut o, "salt");
            if v.get("hash") == "amplitude" {
                o.insert("hash".into(), json!("amplitude"));
            }
            list(&mut o, "stable", &mut errors);
        }
        "holdouts" => {
            text(&mut o, "unit");
            share(&mut o);
            list(&mut o, "applies_to", &mut errors);
            free(&mut o, "description");
        }
        "groups" => {
            text(&mut o, "unit");
            share(&mut o);
            match list_of_text(v.get("slots")) {
                Ok(items) if !items.is_empty() => {
                    let items = items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => share_value(s),
                            other => other.clone(),
                        })
                        .collect();
                    o.insert("slots".into(), Value::Array(items));
                }
                Ok(_) => {}
                Err(e) => errors.push(FieldError::new("slots", e)),
            }
            checks(&mut o, "surfaces");
            free(&mut o, "description");
        }
        "experiments" => {
            text(&mut o, "unit");
            checks(&mut o, "surfaces");
            list(&mut o, "tags", &mut errors);
            list(&mut o, "exclusive_to", &mut errors);
            text(&mut o, "group");
            list(&mut o, "slots", &mut errors);
            share(&mut o);
            let mut variants = Map::new();
            for i in 0..v.rows("variants") {
                let name = v.get(&format!("variants[{i}].name")).trim();
                let weight = v.get(&format!("variants[{i}].weight")).trim();
                let value = v.get(&format!("variants[{i}].value"));
                let description = v.get(&format!("variants[{i}].description")).trim();
                if name.is_empty() && weight.is_empty() && value.trim().is_empty() && description.is_empty() {
                    continue;
                }
                if name.is_empty() {
                    errors.push(FieldError::new(format!("variants[{i}].name"), "a variant needs a name"));
                    continue;
                }
                if variants.contains_key(name) {
                    errors.push(FieldError::new(
                        format!("variants[{i}].name"),
                        format!("variant `{name}` is named twice"),
                    ));
                    continue;
                }
                // No weight is the configuration's default (1): left out, as the file had it.
                let weight = (!weight.is_empty()).then(|| integer_value(weight));
                let value = match value_of_text(value) {
                    Ok(x) => x,
                    Err(e) => {
                        errors.push(FieldError::new(format!("variants[{i}].value"), e));
                        continue;
                    }
                };
                let entry = match (weight, value) {
                    (Some(w), None) if description.is_empty() => w,
                    (weight, value) => {
                        let mut w = Map::new();
                        if let Some(weight) = weight {
                            w.insert("weight".into(), weight);
                        }
                        if let Some(value) = value {
                            w.insert("value".into(), value);
                        }
                        if !description.is_empty() {
                            w.insert("description".into(), json!(description));
                        }
                        Value::Object(w)
                    }
                };
                variants.insert(name.to_string(), entry);
            }
            if !variants.is_empty() {
                o.insert("variants".into(), Value::Object(variants));
            }
            if let Some(t) = targeting_of(v, "criteria", &mut errors) {
                o.insert("targeting".into(), t);
            }
            for k in ["include", "requires"] {
                let t = v.get(k);
                if t.trim().is_empty() {
                    continue;
                }
                match value_of_text(t) {
                    Ok(Some(x)) => {
                        o.insert(k.into(), x);
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(FieldError::new(k, e)),
                }
            }
            text(&mut o, "state");
            text(&mut o, "salt");
            if v.get("sticky") == "on" {
                o.insert("sticky".into(), json!(true));
            }
            free(&mut o, "description");
            text(&mut o, "owner");
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(Value::Object(o))
    } else {
        Err(errors)
    }
}

/// The input an error path of the validator names (`path` relative to the entity: `share`,
/// `variants.control.weight`, `targeting.all[1].in`), if the form has it; `None` is the whole form.
pub(crate) fn target(c: &str, path: &str, v: &Values) -> Option<String> {
    let (head, rest) = match path.find(['.', '[']) {
        Some(i) => (&path[..i], path[i..].trim_start_matches('.')),
        None => (path, ""),
    };
    let criteria = |rest: &str| -> String {
        if v.get("targeting_mode") == "yaml" {
            return "targeting_yaml".into();
        }
        let row = rest
            .strip_prefix("all[")
            .and_then(|r| r.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0);
        format!("criteria[{row}].value")
    };
    match (c, head) {
        ("segments", _) => Some(criteria(path)),
        (_, "") => None,
        ("experiments", "targeting") => Some(criteria(rest)),
        ("experiments", "variants") => {
            if rest.is_empty() {
                return Some("variants".into());
            }
            let name = rest.split('.').next().unwrap_or(rest);
            // One pass over the posted pairs (not a lookup per row: a post of many rows with an
            // error each stays linear).
            let i = v.0.iter().find_map(|(n, x)| {
                let i = n.strip_prefix("variants[")?.strip_suffix("].name")?;
                (x.trim() == name).then(|| i.parse::<usize>().ok()).flatten()
            })?;
            let cell = if rest.ends_with(".value") {
                "value"
            } else if rest.ends_with(".description") {
                "description"
            } else {
                "weight"
            };
            Some(format!("variants[{i}].{cell}"))
        }
        (_, head) if shows(c, head) => Some(head.to_string()),
        _ => None,
    }
}

/// One input of a form, as the template draws it.
pub(crate) struct Field {
    /// The posted name (`share`, `variants[0].weight`).
    pub(crate) name: String,
    /// The element id (the name with `[`, `]` and `.` made `-`).
    pub(crate) id: String,
    pub(crate) label: String,
    /// `text`, `select`, `checks` (a checkbox per option, one name), `check` or `area`.
    pub(crate) kind: &'static str,
    pub(crate) value: String,
    pub(crate) options: Vec<Choice>,
    pub(crate) help: Option<String>,
    /// Why it cannot change (shown read-only).
    pub(crate) fixed: Option<String>,
    pub(crate) errors: Vec<String>,
    /// The id of a `<datalist>` of suggestions.
    pub(crate) list: Option<&'static str>,
}

/// An option of a select or a checkbox of a list.
pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) on: bool,
}

/// Rows of inputs (variants, criteria).
pub(crate) struct Rows {
    pub(crate) name: &'static str,
    pub(crate) label: &'static str,
    pub(crate) help: Option<String>,
    pub(crate) heads: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<Field>>,
    pub(crate) errors: Vec<String>,
    /// `all` when criteria rows go back inside `all` whatever their number (posted as
    /// `<name>_shape`), so an edit keeps the targeting's shape.
    pub(crate) shape: String,
}

/// A part of a form: an input, or rows of them.
pub(crate) struct Part {
    pub(crate) field: Option<Field>,
    pub(crate) rows: Option<Rows>,
}

/// A suggestion list of the page.
pub(crate) struct Suggestions {
    pub(crate) id: &'static str,
    pub(crate) items: Vec<String>,
}

/// What the live configuration offers the form: names to choose from, and what is in use.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a Value,
    /// The entity's id (editing) or `None` (creating).
    pub(crate) editing: Option<&'a str>,
}

impl Context<'_> {
    fn names(&self, c: &str) -> Vec<String> {
        match self.config.get(c) {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            Some(Value::Array(l)) => l.iter().filter_map(|s| s.as_str().map(String::from)).collect(),
            _ => vec![],
        }
    }

    /// Whether unit type `u` holds allocations (a running experiment, a holdout or a group).
    fn unit_in_use(&self, u: &str) -> bool {
        let of = |c: &str| {
            self.config.get(c).and_then(Value::as_object).into_iter().flat_map(|m| m.values()).any(|e| {
                e.get("unit").and_then(Value::as_str) == Some(u)
                    && (c != "experiments"
                        || matches!(e.get("state").and_then(Value::as_str), Some("running" | "paused")))
            })
        };
        of("experiments") || of("holdouts") || of("groups")
    }

    /// The state of the experiment being edited.
    fn state(&self) -> Option<&str> {
        self.config.get("experiments")?.get(self.editing?)?.get("state")?.as_str()
    }
}

fn dashed(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect::<String>()
}

fn field(v: &Values, name: &str, label: &str, kind: &'static str) -> Field {
    Field {
        name: name.into(),
        id: format!("f-{}", dashed(name)),
        label: label.into(),
        kind,
        value: v.get(name).to_string(),
        options: vec![],
        help: None,
        fixed: None,
        errors: vec![],
        list: None,
    }
}

impl Field {
    fn help(mut self, h: impl Into<String>) -> Field {
        self.help = Some(h.into());
        self
    }
    fn fixed(mut self, why: Option<String>) -> Field {
        self.fixed = why;
        self
    }
    fn list(mut self, id: &'static str) -> Field {
        self.list = Some(id);
        self
    }
    /// Options of a select: `(value, label)`; the current value is kept even if it is not one
    /// of them (so a bad value shows as it is, with its error).
    fn select(mut self, options: Vec<(String, String)>) -> Field {
        let current = self.value.clone();
        if !current.is_empty() && !options.iter().any(|(o, _)| *o == current) {
            self.options.push(Choice { value: current.clone(), label: current.clone(), on: true });
        }
        self.options.extend(options.into_iter().map(|(value, label)| Choice { on: value == current, value, label }));
        self
    }
    /// A checkbox per option: the checked ones first, in the entity's order (the browser posts
    /// them in page order, so the list comes back as it was), then the others as declared.
    fn checks(mut self, v: &Values, options: Vec<String>) -> Field {
        let on: Vec<&str> = v.all(&self.name).into_iter().filter(|s| !s.is_empty()).collect();
        let mut choices: Vec<Choice> = vec![];
        for s in &on {
            if !choices.iter().any(|c| c.value == *s) {
                choices.push(Choice { value: s.to_string(), label: s.to_string(), on: true });
            }
        }
        for o in options {
            if !choices.iter().any(|c| c.value == o) {
                choices.push(Choice { label: o.clone(), value: o, on: false });
            }
        }
        self.options = choices;
        self
    }
}

fn part(f: Field) -> Part {
    Part { field: Some(f), rows: None }
}

fn same(options: Vec<String>) -> Vec<(String, String)> {
    options.into_iter().map(|o| (o.clone(), o)).collect()
}

/// The targeting rows (or its YAML field) of a form.
fn targeting_part(v: &Values, label: &'static str, help: &str) -> Part {
    if v.get("targeting_mode") == "yaml" {
        let f = field(v, "targeting_yaml", label, "area").help(
            "This targeting is not a plain list of criteria (it uses any, not, nesting or several operators in one criterion), so it is edited as YAML here, as in the configuration file.",
        );
        return part(f);
    }
    let n = v.rows("criteria") + SPARE_ROWS;
    let ops: Vec<(String, String)> = row_operators()
        .map(|o| (o.to_string(), if o == "segment" { "in segment".to_string() } else { o.replace('_', " ") }))
        .collect();
    let rows = (0..n)
        .map(|i| {
            let name = |f: &str| format!("criteria[{i}].{f}");
            let mut op = field(v, &name("op"), "operator", "select");
            if op.value.is_empty() {
                op.value = "in".into();
            }
            vec![
                field(v, &name("attribute"), "attribute", "text").list("attributes"),
                op.select(ops.clone()),
                field(v, &name("value"), "value", "text").list("segment-names"),
            ]
        })
        .collect();
    Part {
        field: None,
        rows: Some(Rows {
            name: "criteria",
            label,
            help: Some(help.into()),
            heads: vec!["attribute", "operator", "value"],
            rows,
            errors: vec![],
            shape: v.get("criteria_shape").to_string(),
        }),
    }
}

/// The form's parts for collection `c` with the inputs' text `v`, and the page's suggestion lists.
pub(crate) fn parts(c: &str, v: &Values, ctx: &Context<'_>) -> (Vec<Part>, Vec<Suggestions>) {
    let units = ctx.names("units");
    let surfaces = ctx.names("surfaces");
    let editing = ctx.editing.is_some();
    let unit_select =
        |why: Option<String>| field(v, "unit", "Unit type", "select").select(same(units.clone())).fixed(why);
    let mut lists = vec![];
    let parts = match c {
        "units" => {
            let used = ctx.editing.is_some_and(|u| ctx.unit_in_use(u));
            let why = used.then(|| {
                "while experiments, holdouts or groups use this unit type: every unit's bucket would change (rules unit-type-fixed, and buckets/salt/hash cannot change while the space holds allocations)".to_string()
            });
            vec![
                part(field(v, "attribute", "Attribute", "text").help("The context attribute that carries the unit id, e.g. user_id.").fixed(why.clone())),
                part(field(v, "buckets", "Buckets", "text").help("Size of the bucket space, 1 to 100,000,000; empty: 1,000,000.").fixed(why.clone())),
                part(field(v, "salt", "Salt", "text").help("Salt of the unit → bucket hash; empty: the unit type's name.").fixed(why.clone())),
                part(
                    field(v, "hash", "Bucket hash", "select")
                        .select(vec![("allot".into(), "allot (default)".into()), ("amplitude".into(), "amplitude (100 buckets)".into())])
                        .fixed(why),
                ),
                part(field(v, "stable", "Stable attributes", "text").help("Comma-separated attributes a unit never changes (country of registration); only these let exclusive experiments share buckets by targeting.")),
            ]
        }
        "holdouts" => {
            let why = editing.then(|| "once created (rule holdout-share-fixed): its buckets never change".to_string());
            let mut targets = vec!["all".to_string()];
            targets.extend(surfaces.iter().cloned());
            targets.extend(ctx.names("groups"));
            targets.extend(ctx.names("experiments"));
            lists.push(Suggestions { id: "holdout-targets", items: targets });
            vec![
                part(unit_select(why.clone())),
                part(
                    field(v, "share", "Share", "text")
                        .help("Share of all units of the type: 5%, 0.5% or 0.05.")
                        .fixed(why),
                ),
                part(
                    field(v, "applies_to", "Applies to", "text")
                        .list("holdout-targets")
                        .help("Comma-separated surfaces, tags, groups or experiment ids, or all."),
                ),
                part(field(v, "description", "Description", "area")),
            ]
        }
        "groups" => {
            let why = editing.then(|| "once created (rule slots-fixed): to change it, create a new group".to_string());
            vec![
                part(unit_select(why.clone())),
                part(
                    field(v, "share", "Share", "text")
                        .help("Share of all units held by the group, reserved from creation.")
                        .fixed(why.clone()),
                ),
                part(
                    field(v, "slots", "Slots", "text")
                        .help(
                            "Comma-separated slot shares, each of the group, adding up to at most 100%: 50%, 30%, 20%.",
                        )
                        .fixed(why),
                ),
                part(
                    field(v, "surfaces", "Surfaces", "checks")
                        .checks(v, surfaces.clone())
                        .help("Surfaces every member is on."),
                ),
                part(field(v, "description", "Description", "area")),
            ]
        }
        "segments" => {
            lists.push(Suggestions { id: "segment-names", items: ctx.names("segments") });
            vec![targeting_part(
                v,
                "Criteria (all must hold)",
                "One criterion per row: the attribute, the operator, the value (a list for in and not in: SE, NO). A row with the operator \u{201c}in segment\u{201d} names another segment in its value.",
            )]
        }
        "experiments" => {
            let running = matches!(ctx.state(), Some("running" | "paused"));
            let why = running.then(|| {
                "while it runs (rules moves-units, group-membership-fixed): stop it and start a new experiment to change it".to_string()
            });
            let states: Vec<&str> = match ctx.state() {
                None | Some("draft") => vec!["draft", "running", "paused"],
                Some("running") => vec!["running", "paused", "stopped"],
                Some("paused") => vec!["paused", "running", "stopped"],
                Some("stopped") => vec!["stopped", "archived"],
                Some(s) => vec![s],
            };
            let mut state = field(v, "state", "State", "select");
            if state.value.is_empty() {
                state.value = "draft".into();
            }
            let groups = ctx.names("groups");
            let mut group_options = vec![(String::new(), "(none)".to_string())];
            group_options.extend(same(groups));
            lists.push(Suggestions { id: "segment-names", items: ctx.names("segments") });
            let n = v.rows("variants").max(1) + SPARE_ROWS;
            let variant_rows = (0..n)
                .map(|i| {
                    let name = |f: &str| format!("variants[{i}].{f}");
                    vec![
                        field(v, &name("name"), "name", "text"),
                        field(v, &name("weight"), "weight", "text"),
                        field(v, &name("value"), "value", "text"),
                        field(v, &name("description"), "description", "text"),
                    ]
                })
                .collect();
            vec![
                part(unit_select(why.clone())),
                part(field(v, "surfaces", "Surfaces", "checks").checks(v, surfaces).help("Exclusion scopes: experiments that share a surface never share a unit.")),
                part(field(v, "share", "Share", "text").help("Share of all units of the type, exact: 10% or 0.1. Required outside a group; in a group, empty takes all of its slots.")),
                Part {
                    field: None,
                    rows: Some(Rows {
                        name: "variants",
                        label: "Variants",
                        help: Some("Weights are whole numbers (the split is by weight). The value is what OFREP and the SDKs serve, as YAML or JSON: blue, 3, true, {color: blue}.".into()),
                        heads: vec!["name", "weight", "value", "description"],
                        rows: variant_rows,
                        errors: vec![],
                        shape: String::new(),
                    }),
                },
                targeting_part(v, "Targeting (all must hold; no row: everyone)", "One criterion per row: the attribute, the operator, the value (a list for in and not in: SE, NO). The operator \u{201c}in segment\u{201d} names a segment in its value."),
                part(state.select(states.into_iter().map(|s| (s.to_string(), s.to_string())).collect())),
                part(field(v, "group", "Group", "select").select(group_options).fixed(why.clone()).help("Membership of one mutual exclusion group.")),
                part(field(v, "slots", "Slots", "text").fixed(why).help("The group's slots it takes, numbered from 1, comma-separated: 1, 2.")),
                part(field(v, "include", "Inclusions", "area").help("One `unit id: variant` per line: forced, evaluated first, bypassing exclusion.")),
                part(field(v, "requires", "Prerequisites", "area").help("One `experiment: [variant, …]` per line: only units that got one of those variants.")),
                part(field(v, "tags", "Tags", "text").help("Comma-separated (Confidence's general form of scopes).")),
                part(field(v, "exclusive_to", "Exclusive to", "text").help("Comma-separated tags this experiment never shares a unit with.")),
                part(field(v, "salt", "Split salt", "text").help("Empty: the experiment id.")),
                part(field(v, "sticky", "Sticky: stored assignments survive later changes of split or targeting", "check")),
                part(field(v, "description", "Description", "area")),
                part(field(v, "owner", "Owner", "text")),
            ]
        }
        _ => vec![],
    };
    (parts, lists)
}

/// Puts each error at the input it names (`errors` have paths relative to the entity, or input
/// names); what names no input is returned, for the top of the form.
pub(crate) fn place(c: &str, parts: &mut [Part], v: &Values, errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut rest = vec![];
    for e in errors {
        let to = if find(parts, &e.path).is_some() { Some(e.path.clone()) } else { target(c, &e.path, v) };
        let Some(to) = to else {
            rest.push(e);
            continue;
        };
        match find(parts, &to) {
            Some(Found::Field(f)) => f.errors.push(e.message),
            Some(Found::Rows(r)) => r.errors.push(e.message),
            None => rest.push(e),
        }
    }
    rest
}

enum Found<'a> {
    Field(&'a mut Field),
    Rows(&'a mut Rows),
}

fn find<'a>(parts: &'a mut [Part], name: &str) -> Option<Found<'a>> {
    for p in parts.iter_mut() {
        if let Some(f) = p.field.as_mut().filter(|f| f.name == name) {
            return Some(Found::Field(f));
        }
        if let Some(r) = p.rows.as_mut() {
            if r.name == name {
                return Some(Found::Rows(r));
            }
            if let Some(f) = r.rows.iter_mut().flatten().find(|f| f.name == name) {
                return Some(Found::Field(f));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: &str, e: Value) {
        let v = values_of(c, &e).unwrap_or_else(|w| panic!("{e}: {w}"));
        assert_eq!(entity_of(c, &v).unwrap(), e, "{v:?}");
    }

    #[test]
    fn entities_come_back_exactly_as_they_were() {
        round_trip(
            "experiments",
            json!({
                "unit": "user", "surfaces": ["home", "search"], "share": "10%",
                "variants": {"control": 1, "NO": 1, "treatment": {"weight": 2, "value": {"color": "blue"}, "description": "the new one"}, "on": {"weight": 1, "value": "18"}},
                "targeting": {"all": [{"attribute": "country", "in": ["SE", "NO", "a, b", "50%", "[x]", "", " y", "true"]}, {"attribute": "plan", "eq": "50%"}, {"attribute": "flag", "eq": true}, {"attribute": "v", "eq": "a: b"}, {"segment": "adults"}, {"attribute": "age", "gte": 18}]},
                "include": {"alice": "treatment"}, "requires": {"other": ["treatment"]},
                "state": "running", "sticky": true, "owner": "ana", "tags": ["t1"],
            }),
        );
        round_trip(
            "experiments",
            json!({"unit": "user", "share": 0.25, "variants": {"a": 1}, "targeting": {"attribute": "plan", "eq": "18"}}),
        );
        round_trip("segments", json!({"attribute": "country", "in": ["SE", "NO"]}));
        // Found by review: a null value, variants without a weight, a tiny decimal share, a
        // null targeting, a description over two lines.
        round_trip(
            "experiments",
            json!({"unit": "user", "share": "0.000005", "variants": {"off": {"weight": 1, "value": null}, "on": {"value": true}, "w": {"value": 2}},
                   "targeting": null, "description": "Line one.\nLine two."}),
        );
        round_trip("segments", json!({"all": [{"attribute": "country", "in": ["SE", "NO"]}]}));
        round_trip("experiments", json!({"unit": "user", "variants": {"a": 1}, "targeting": {"all": []}}));
        round_trip(
            "segments",
            json!({"any": [{"attribute": "country", "in": ["SE"]}, {"attribute": "age", "gte": 18, "lt": 65}]}),
        );
        round_trip(
            "groups",
            json!({"unit": "user", "share": "20%", "slots": ["50%", "50%"], "surfaces": ["checkout"]}),
        );
        round_trip("holdouts", json!({"unit": "user", "share": "1%", "applies_to": ["all"]}));
        round_trip("units", json!({"attribute": "account_id", "buckets": 10000, "salt": "s", "stable": ["country"]}));
    }

    use proptest::prelude::*;

    /// Text a person might type anywhere: YAML's special words and characters, numbers,
    /// spaces, quotes, commas, brackets, RTL text.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9_.-]{0,8}",
            Just("NO".to_string()),
            Just("on".to_string()),
            Just("null".to_string()),
            Just("~".to_string()),
            "[0-9]{1,4}(\\.[0-9]{1,2})?%?",
            "[ -~]{0,12}",
            Just("שלום, \u{202e}x".to_string()),
        ]
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            (0u32..100_000).prop_map(|n| json!(n)),
            (-1000i32..1000).prop_map(|n| json!(n)),
        ]
    }

    fn criterion() -> impl Strategy<Value = Value> {
        let ops: Vec<&'static str> = row_operators().filter(|o| *o != "segment").collect();
        prop_oneof![
            ("[a-z_]{1,8}", proptest::sample::select(ops), scalar()).prop_map(|(a, op, v)| {
                let v = if op == "in" || op == "not_in" { json!([v]) } else { v };
                let mut m = Map::new();
                m.insert("attribute".into(), json!(a));
                m.insert(op.into(), v);
                Value::Object(m)
            }),
            ("[a-z_]{1,8}", proptest::collection::vec(scalar(), 0..5), any::<bool>())
                .prop_map(|(a, l, not)| json!({"attribute": a, (if not { "not_in" } else { "in" }): l})),
            "[a-z-]{1,8}".prop_map(|s| json!({"segment": s})),
        ]
    }

    fn targeting() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            criterion().prop_map(Some),
            proptest::collection::vec(criterion(), 0..4).prop_map(|l| Some(json!({"all": l}))),
        ]
    }

    fn experiment() -> impl Strategy<Value = Value> {
        let variant = prop_oneof![
            (0u32..1_000_000).prop_map(|w| json!(w)),
            ((0u32..100), scalar()).prop_map(|(w, v)| json!({"weight": w, "value": v})),
            // The form trims text and leaves out what is empty (no description is an empty one).
            ((0u32..100), text().prop_filter("trimmed", |d| !d.trim().is_empty() && d.trim() == d))
                .prop_map(|(w, d)| json!({"weight": w, "description": d})),
        ];
        (
            proptest::collection::vec(("[a-zA-Z0-9_-]{1,6}", variant), 1..5),
            targeting(),
            proptest::option::of("[0-9]{1,2}(\\.[0-9])?%"),
            proptest::option::of(text()),
            proptest::collection::vec("[a-z]{1,5}", 0..3),
            any::<bool>(),
        )
            .prop_map(|(variants, t, share, owner, surfaces, sticky)| {
                let mut e = Map::new();
                e.insert("unit".into(), json!("user"));
                if !surfaces.is_empty() {
                    e.insert("surfaces".into(), json!(surfaces));
                }
                if let Some(s) = share {
                    e.insert("share".into(), json!(s));
                }
                let vs: Map<String, Value> = variants.into_iter().collect();
                e.insert("variants".into(), Value::Object(vs));
                if let Some(t) = t {
                    e.insert("targeting".into(), t);
                }
                if sticky {
                    e.insert("sticky".into(), json!(true));
                }
                if let Some(o) = owner.filter(|o| !o.trim().is_empty() && o.trim() == o) {
                    e.insert("owner".into(), json!(o));
                }
                Value::Object(e)
            })
    }

    proptest! {
        /// Editing an entity in the form without touching an input gives back exactly the
        /// entity (so change control sees no change), whatever its text.
        #[test]
        fn an_untouched_form_is_the_entity_itself(e in experiment()) {
            let v = values_of("experiments", &e).unwrap();
            prop_assert_eq!(entity_of("experiments", &v).unwrap(), e);
        }

        #[test]
        fn an_untouched_segment_is_the_segment_itself(t in targeting()) {
            let Some(t) = t else { return Ok(()) };
            let v = values_of("segments", &t).unwrap();
            prop_assert_eq!(entity_of("segments", &v).unwrap(), t);
        }
    }

    #[test]
    fn what_the_form_cannot_show_is_said() {
        let ranges = json!({"unit": "user", "variants": {"a": {"ranges": [[0, 10]]}}});
        assert!(values_of("experiments", &ranges).unwrap_err().contains("ranges"));
        let groups = json!({"unit": "user", "groups": {"g": [1]}, "variants": {"a": 1}});
        assert!(values_of("experiments", &groups).unwrap_err().contains("groups"));
    }

    #[test]
    fn a_bad_input_is_an_error_at_the_input() {
        let v = Values::new(vec![
            ("variants[0].name".into(), "a".into()),
            ("variants[0].value".into(), "{unclosed".into()),
            ("variants[1].weight".into(), "3".into()),
            ("criteria[0].attribute".into(), "country".into()),
            ("criteria[0].op".into(), "in".into()),
            ("criteria[0].value".into(), "[SE".into()),
        ]);
        let es = entity_of("experiments", &v).unwrap_err();
        let paths: Vec<&str> = es.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["variants[0].value", "variants[1].name", "criteria[0].value"]);
    }

    #[test]
    fn validator_paths_reach_their_inputs() {
        let v = values_of(
            "experiments",
            &json!({"unit": "user", "variants": {"a": 1, "b": 2}, "targeting": {"all": [{"attribute": "x", "eq": 1}, {"attribute": "y", "in": ["a"]}]}}),
        )
        .unwrap();
        assert_eq!(target("experiments", "variants.b", &v).as_deref(), Some("variants[1].weight"));
        assert_eq!(target("experiments", "variants.b.value", &v).as_deref(), Some("variants[1].value"));
        assert_eq!(target("experiments", "targeting.all[1].in", &v).as_deref(), Some("criteria[1].value"));
        assert_eq!(target("experiments", "share", &v).as_deref(), Some("share"));
        assert_eq!(target("experiments", "include.alice", &v).as_deref(), Some("include"));
        assert_eq!(target("experiments", "", &v), None);
        assert_eq!(target("segments", "in", &v).as_deref(), Some("criteria[0].value"));
    }

    #[test]
    fn a_criterion_needs_a_value_and_text_areas_lose_their_carriage_returns() {
        let v = Values::new(vec![
            ("criteria[0].attribute".into(), "country".into()),
            ("criteria[0].op".into(), "in".into()),
        ]);
        assert_eq!(entity_of("segments", &v).unwrap_err()[0].path, "criteria[0].value");
        let v = Values::new(vec![("description".into(), "a\r\nb".into())]);
        assert_eq!(entity_of("holdouts", &v).unwrap()["description"], "a\nb");
    }

    #[test]
    fn checked_boxes_keep_the_entitys_order() {
        let v = values_of(
            "groups",
            &json!({"unit": "user", "share": "1%", "slots": ["100%"], "surfaces": ["search", "home"]}),
        )
        .unwrap();
        let f = field(&v, "surfaces", "Surfaces", "checks")
            .checks(&v, vec!["home".into(), "search".into(), "other".into()]);
        let order: Vec<&str> = f.options.iter().map(|o| o.value.as_str()).collect();
        assert_eq!(order, ["search", "home", "other"]);
    }

    #[test]
    fn hostile_row_indices_are_ignored() {
        let v = Values::new(vec![("variants[99999999999].name".into(), "x".into())]);
        assert_eq!(v.rows("variants"), 0);
    }
}
