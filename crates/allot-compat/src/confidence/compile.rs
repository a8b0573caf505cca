//! Compilation: a parsed resolver state (either form) into the compiled [`State`], with every
//! error naming its JSON path.

use super::raw::*;
use super::{
    managed, timestamp, Assignment, AttrRule, Attribute, Bits, Bloom, Bound, Client, Criterion, Expected, Expr, Flag,
    Kind, MatSpec, Op, Rule, Segment, Spec, State, Targeting, TypedValue, BUCKETS, TARGETING_KEY,
};
use crate::{from_value, parse_json, CompatError};
use allot_core::bucketset::BucketBitmap;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read as _;

impl State {
    /// Parses and compiles a state in either form. `account` is the account id (`confidence-demo-june`)
    /// for the proto3-JSON form, which does not carry it; the specification form names its account.
    pub fn parse(text: &str, account: Option<&str>) -> Result<State, CompatError> {
        let value: Value = parse_json(text)?;
        let Some(obj) = value.as_object() else {
            return Err(CompatError::invalid(".", "a resolver state must be a JSON object"));
        };
        if obj.contains_key("account") {
            let spec: SpecState = from_value(value)?;
            State::from_spec(spec)
        } else {
            let Some(account) = account else {
                return Err(CompatError::invalid(
                    "account",
                    "this state does not name its account; give the account id (e.g. --account confidence-demo-june)",
                ));
            };
            let proto: ProtoState = from_value(value)?;
            State::from_proto(proto, account)
        }
    }

    pub(super) fn from_spec(spec: SpecState) -> Result<State, CompatError> {
        let account = account_id(&spec.account.name)
            .ok_or_else(|| CompatError::invalid("account.name", "expected accounts/<id>"))?;
        let mut flags = Vec::new();
        for (key, v) in spec.flags {
            let raw: RawFlag = from_value(v).map_err(|e| nest(&format!("flags.{key}"), e))?;
            flags.push(raw);
        }
        let mut segments = Vec::new();
        for (key, v) in spec.segments {
            let raw: RawSegment = from_value(v).map_err(|e| nest(&format!("segments.{key}"), e))?;
            segments.push(raw);
        }
        let mut bitsets = HashMap::new();
        for (key, v) in spec.bitsets {
            let path = format!("bitsets.{key}");
            let set = match v {
                Value::String(s) if s == "ALL" => None,
                Value::Array(items) => {
                    let mut dense = BucketBitmap::empty(BUCKETS);
                    for (i, item) in items.iter().enumerate() {
                        match item.as_u64() {
                            Some(b) if b < u64::from(BUCKETS) => dense.insert(b as u32),
                            _ => {
                                return Err(CompatError::invalid(
                                    format!("{path}[{i}]"),
                                    format!("expected a bucket in 0..{BUCKETS}, got {item}"),
                                ))
                            }
                        }
                    }
                    let full = dense.len() == u64::from(BUCKETS);
                    Some((dense, full))
                }
                other => {
                    return Err(CompatError::invalid(
                        path,
                        format!("expected \"ALL\" or a list of buckets, got {other}"),
                    ))
                }
            };
            bitsets.insert(key, set);
        }
        let mut blooms = HashMap::new();
        for (key, v) in spec.bloom_filters {
            let path = format!("bloomFilters.{key}");
            let raw: RawBloom = from_value(v).map_err(|e| nest(&path, e))?;
            if let Some(b) = Bloom::compile(raw, &path)? {
                blooms.insert(key, b);
            }
        }
        let mut clients = HashMap::new();
        for (secret, v) in spec.clients {
            let raw: SpecClient = from_value(v).map_err(|e| nest(&format!("clients.{secret}"), e))?;
            let flat = raw
                .client
                .managed_context
                .into_iter()
                .map(|(k, v)| (k, if v.is_object() || v.is_array() { Value::Null } else { v }))
                .collect();
            clients.insert(
                secret,
                Client {
                    name: raw.client.name,
                    environments: raw.client_credential.environments,
                    managed: managed::unflatten(flat),
                    flags: Vec::new(),
                },
            );
        }
        State::compile(&account, flags, segments, bitsets, blooms, clients, "flags", "segments")
    }

    pub(super) fn from_proto(proto: ProtoState, account: &str) -> Result<State, CompatError> {
        let mut flags = Vec::new();
        for (i, v) in proto.flags.into_iter().enumerate() {
            flags.push(from_value::<RawFlag>(v).map_err(|e| nest(&format!("flags[{i}]"), e))?);
        }
        let mut segments = Vec::new();
        for (i, v) in proto.segments_no_bitsets.into_iter().enumerate() {
            segments.push(from_value::<RawSegment>(v).map_err(|e| nest(&format!("segmentsNoBitsets[{i}]"), e))?);
        }
        let mut bitsets = HashMap::new();
        for (i, b) in proto.bitsets.into_iter().enumerate() {
            let path = format!("bitsets[{i}]");
            match (b.gzipped_bitset, b.full_bitset) {
                (Some(z), _) => {
                    let bytes =
                        gunzip_base64(&z).map_err(|m| CompatError::invalid(format!("{path}.gzippedBitset"), m))?;
                    let mut dense = BucketBitmap::empty(BUCKETS);
                    // A unit without a targeting key is in the segment only when every bit of
                    // the decompressed bitset is set (the resolver's `BitVec::all`, whatever
                    // its length: an empty bitset holds everyone without a key and no one with).
                    let full = bytes.iter().all(|b| *b == 0xff);
                    for (byte_i, byte) in bytes.iter().enumerate() {
                        if *byte == 0 {
                            continue;
                        }
                        for bit in 0..8 {
                            if (byte >> bit) & 1 == 1 {
                                let b = byte_i as u64 * 8 + bit;
                                if b < u64::from(BUCKETS) {
                                    dense.insert(b as u32);
                                }
                            }
                        }
                    }
                    bitsets.insert(b.segment, Some((dense, full)));
                }
                // A full bitset is treated as no bitset: everyone; so is an entry with neither.
                (None, Some(true)) | (None, None) => {}
                (None, Some(false)) => {
                    return Err(CompatError::invalid(path, "fullBitset: false is not a bitset (give gzippedBitset)"));
                }
            }
        }
        let mut blooms = HashMap::new();
        for (i, b) in proto.bloom_filters.into_iter().enumerate() {
            if let Some(bloom) = Bloom::compile(b.bloom, &format!("bloomFilters[{i}]"))? {
                blooms.insert(b.materialized_segment, bloom);
            }
        }
        let mut clients = HashMap::new();
        for client in &proto.clients {
            for cred in &proto.client_credentials {
                if !cred.name.starts_with(client.name.as_str()) {
                    continue;
                }
                if let Some(secret) = &cred.client_secret {
                    clients.insert(
                        secret.secret.clone(),
                        Client {
                            name: client.name.clone(),
                            environments: cred.environments.clone(),
                            managed: managed::unflatten(client.managed_context.clone()),
                            flags: Vec::new(),
                        },
                    );
                }
            }
        }
        State::compile(account, flags, segments, bitsets, blooms, clients, "flags", "segmentsNoBitsets")
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn compile(
        account: &str,
        raw_flags: Vec<RawFlag>,
        raw_segments: Vec<RawSegment>,
        bitsets: HashMap<String, Option<(BucketBitmap, bool)>>,
        blooms: HashMap<String, Bloom>,
        mut clients: HashMap<String, Client>,
        _flags_path: &str,
        segments_path: &str,
    ) -> Result<State, CompatError> {
        let seg_index: HashMap<String, usize> =
            raw_segments.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
        let mut segments = Vec::with_capacity(raw_segments.len());
        for (i, raw) in raw_segments.into_iter().enumerate() {
            let bitset = match bitsets.get(&raw.name) {
                Some(Some((dense, full))) => Some((Bits::new(dense.clone()), *full)),
                Some(None) | None => None,
            };
            let targeting = match raw.targeting {
                Some(t) => Some(compile_targeting(t, &seg_index).map_err(|m| {
                    let at = if segments_path == "segments" { raw.name.clone() } else { format!("[{i}]") };
                    CompatError::invalid(format!("{segments_path}.{at}.targeting"), m)
                })?),
                None => None,
            };
            segments.push(Segment { name: raw.name, bitset, targeting });
        }
        let mut flags = Vec::with_capacity(raw_flags.len());
        // Two flags of one name: the resolver keeps them in a map, so the last one is the flag.
        let last: HashMap<&str, usize> = raw_flags.iter().enumerate().map(|(i, f)| (f.name.as_str(), i)).collect();
        let keep: Vec<bool> = raw_flags.iter().enumerate().map(|(i, f)| last[f.name.as_str()] == i).collect();
        for (raw, keep) in raw_flags.into_iter().zip(keep) {
            if keep {
                flags.push(compile_flag(raw, &seg_index));
            }
        }
        for client in clients.values_mut() {
            client.flags =
                (0..flags.len()).filter(|&i| flags[i].active && flags[i].clients.contains(&client.name)).collect();
        }
        Ok(State {
            account_salt: format!("MegaSalt-{account}"),
            flags,
            segments,
            blooms,
            clients,
            empty: Value::Object(Map::new()),
        })
    }

    /// The names of the flags in the state, in the order they are resolved.
    pub fn flag_names(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| f.name.as_str())
    }
}

pub(super) fn nest(prefix: &str, e: CompatError) -> CompatError {
    let CompatError::Invalid { path, message } = e;
    if path == "." {
        CompatError::invalid(prefix, message)
    } else {
        CompatError::invalid(format!("{prefix}.{path}"), message)
    }
}

pub(super) fn account_id(name: &str) -> Option<String> {
    name.split('/').nth(1).map(str::to_string)
}

pub(super) fn gunzip_base64(text: &str) -> Result<Vec<u8>, String> {
    let zipped =
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(|e| format!("not base64: {e}"))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut out).map_err(|e| format!("not gzip: {e}"))?;
    Ok(out)
}

pub(super) fn compile_flag(raw: RawFlag, seg_index: &HashMap<String, usize>) -> Flag {
    let schema = raw.schema.unwrap_or_default();
    let variants: Vec<(String, Value)> = raw
        .variants
        .into_iter()
        .map(|v| {
            let value = fill_schema_nulls(v.value.unwrap_or_default(), &schema.schema);
            (v.name, Value::Object(value))
        })
        .collect();
    let rules = raw
        .rules
        .into_iter()
        .map(|r| {
            let spec = r.assignment_spec.map(|s| {
                let assignments: Vec<Assignment> = s
                    .assignments
                    .into_iter()
                    .map(|a| {
                        let kind = if let Some(v) = a.variant {
                            let idx = variants.iter().position(|(n, _)| *n == v.variant);
                            Kind::Variant(v.variant, idx)
                        } else if a.fallthrough.is_some() {
                            Kind::Fallthrough
                        } else if a.client_default.is_some() {
                            Kind::ClientDefault
                        } else {
                            Kind::None
                        };
                        let _ = a.assignment_id;
                        Assignment { kind, ranges: a.bucket_ranges.iter().map(|r| (r.lower, r.upper)).collect() }
                    })
                    .collect();
                let one_full_variant = assignments.len() == 1
                    && assignments[0].ranges.len() == 1
                    && assignments[0].ranges[0] == (0, s.bucket_count);
                Spec { bucket_count: s.bucket_count, assignments, one_full_variant }
            });
            let blank_selector = r.targeting_key_selector.is_empty();
            let selector_text = if blank_selector { TARGETING_KEY } else { r.targeting_key_selector.as_str() };
            Rule {
                enabled: r.enabled,
                environments: r.environments,
                segment: seg_index.get(&r.segment).copied(),
                variant_salt: r.segment.split('/').nth(1).map(str::to_string),
                selector: selector_text.split('.').map(str::to_string).collect(),
                blank_selector,
                spec,
                materialization: r
                    .materialization_spec
                    .map(|m| MatSpec { read: m.read_materialization, mode: m.mode.unwrap_or_default() }),
                name: r.name,
            }
        })
        .collect();
    Flag { active: raw.state == "ACTIVE", name: raw.name, clients: raw.clients, variants, rules }
}

/// Fields the schema names but the value lacks become `null` (nested structs too), as the
/// Confidence service does.
pub(super) fn fill_schema_nulls(mut value: Map<String, Value>, schema: &Map<String, Value>) -> Map<String, Value> {
    for (field, field_schema) in schema {
        match value.get_mut(field) {
            None => {
                value.insert(field.clone(), Value::Null);
            }
            Some(Value::Object(sub)) => {
                if let Some(sub_schema) =
                    field_schema.get("structSchema").and_then(|s| s.get("schema")).and_then(Value::as_object)
                {
                    let filled = fill_schema_nulls(std::mem::take(sub), sub_schema);
                    *sub = filled;
                }
            }
            Some(_) => {}
        }
    }
    value
}

/// Compiles a segment's targeting. Fails where the resolver cannot read the state: a rule's
/// timestamp that is not RFC 3339 (proto3-JSON's `Timestamp`).
pub(super) fn compile_targeting(raw: RawTargeting, seg_index: &HashMap<String, usize>) -> Result<Targeting, String> {
    let mut ids: Vec<String> = Vec::with_capacity(raw.criteria.len());
    let mut criteria = Vec::with_capacity(raw.criteria.len());
    for (id, c) in raw.criteria {
        let criterion = if let Some(a) = c.attribute {
            Criterion::Attribute(compile_attribute(a).map_err(|m| format!("criteria.{id}.attribute: {m}"))?)
        } else if let Some(s) = c.segment {
            Criterion::Segment(seg_index.get(&s.segment).copied())
        } else if let Some(m) = c.materialized_segment {
            Criterion::Materialized(m.materialized_segment)
        } else {
            Criterion::Unset
        };
        ids.push(id);
        criteria.push(criterion);
    }
    let expression = raw.expression.map(|e| compile_expr(e, &ids));
    Ok(Targeting { criteria, expression })
}

pub(super) fn compile_expr(raw: RawExpression, ids: &[String]) -> Expr {
    if let Some(r) = raw.reference {
        Expr::Ref(ids.iter().position(|i| *i == r))
    } else if let Some(n) = raw.not {
        Expr::Not(Box::new(compile_expr(*n, ids)))
    } else if let Some(a) = raw.and {
        Expr::And(a.operands.into_iter().map(|e| compile_expr(e, ids)).collect())
    } else if let Some(o) = raw.or {
        Expr::Or(o.operands.into_iter().map(|e| compile_expr(e, ids)).collect())
    } else {
        Expr::Empty
    }
}

pub(super) fn compile_attribute(raw: RawAttribute) -> Result<Attribute, String> {
    let path = raw.attribute_name.split('.').map(str::to_string).collect();
    let (rule, expected) = if let Some((op, expected)) = compile_rules(raw.rule)? {
        (AttrRule::Single(op), expected)
    } else if let Some(any) = raw.any_rule {
        let inner = any.rule.map(compile_rules_or_unrecognized).transpose()?;
        let expected = inner.as_ref().map_or(Expected::None, |(_, e)| *e);
        (AttrRule::Any(inner.map(|(op, _)| op)), expected)
    } else if let Some(all) = raw.all_rule {
        let inner = all.rule.map(compile_rules_or_unrecognized).transpose()?;
        let expected = inner.as_ref().map_or(Expected::None, |(_, e)| *e);
        (AttrRule::All(inner.map(|(op, _)| op)), expected)
    } else {
        (AttrRule::Unrecognized, Expected::None)
    };
    Ok(Attribute { path, expected, rule })
}

/// An inner rule with no operator set is present but unrecognised (an error only when evaluated).
pub(super) fn compile_rules_or_unrecognized(raw: RawRules) -> Result<(Op, Expected), String> {
    Ok(compile_rules(raw)?.unwrap_or((Op::Unrecognized, Expected::None)))
}

pub(super) fn compile_rules(raw: RawRules) -> Result<Option<(Op, Expected)>, String> {
    if let Some(eq) = raw.eq_rule {
        return Ok(Some(match eq.value {
            None => (Op::Unrecognized, Expected::None),
            Some(v) => match compile_value(v)? {
                None => (Op::NullEq, Expected::None),
                Some(tv) => {
                    let expected = expected_of(Some(&tv));
                    (Op::Eq(tv), expected)
                }
            },
        }));
    }
    if let Some(set) = raw.set_rule {
        let values = set.values.into_iter().map(compile_value).collect::<Result<Vec<_>, _>>()?;
        let expected = values.first().map_or(Expected::None, |v| expected_of(v.as_ref()));
        return Ok(Some((Op::Set(values.into_iter().flatten().collect()), expected)));
    }
    if let Some(r) = raw.range_rule {
        let start = match (r.start_inclusive, r.start_exclusive) {
            (Some(v), _) => Some((true, v)),
            (None, Some(v)) => Some((false, v)),
            _ => None,
        };
        let end = match (r.end_inclusive, r.end_exclusive) {
            (Some(v), _) => Some((true, v)),
            (None, Some(v)) => Some((false, v)),
            _ => None,
        };
        let bound = |b: Option<(bool, RawValue)>| -> Result<Option<Bound>, String> {
            b.map(|(inclusive, v)| Ok(Bound { inclusive, value: compile_value(v)? })).transpose()
        };
        let (start, end) = (bound(start)?, bound(end)?);
        let expected = match (&start, &end) {
            (Some(s), _) => expected_of(s.value.as_ref()),
            (None, Some(e)) => expected_of(e.value.as_ref()),
            _ => Expected::None,
        };
        return Ok(Some((Op::Range(start, end), expected)));
    }
    if let Some(t) = raw.starts_with_rule {
        return Ok(Some((Op::StartsWith(t.value), Expected::StrictString)));
    }
    if let Some(t) = raw.ends_with_rule {
        return Ok(Some((Op::EndsWith(t.value), Expected::StrictString)));
    }
    if let Some(t) = raw.contains_rule {
        return Ok(Some((Op::Contains(t.value), Expected::StrictString)));
    }
    Ok(None)
}

/// A rule's value; `None` for a value with no kind set.
pub(super) fn compile_value(v: RawValue) -> Result<Option<TypedValue<'static>>, String> {
    Ok(if let Some(b) = v.bool_value {
        Some(TypedValue::Bool(b))
    } else if let Some(n) = v.number_value {
        Some(TypedValue::Number(n))
    } else if let Some(s) = v.string_value {
        Some(TypedValue::Str(Cow::Owned(s)))
    } else if let Some(t) = v.timestamp_value {
        let ts = timestamp::rfc3339(&t).ok_or_else(|| format!("timestampValue {t:?} is not an RFC 3339 timestamp"))?;
        Some(TypedValue::Timestamp(ts))
    } else {
        v.version_value.map(|ver| TypedValue::Version(Cow::Owned(ver.version)))
    })
}

pub(super) fn expected_of(v: Option<&TypedValue<'static>>) -> Expected {
    match v {
        Some(TypedValue::Bool(_)) => Expected::Bool,
        Some(TypedValue::Number(_)) => Expected::Number,
        Some(TypedValue::Str(_)) => Expected::String,
        Some(TypedValue::Timestamp(_)) => Expected::Timestamp,
        Some(TypedValue::Version(_)) => Expected::Version,
        Some(TypedValue::List(_)) | Some(TypedValue::Invalid) | None => Expected::None,
    }
}
