//! Amplitude Experiment: evaluate flag configurations exactly as Amplitude's evaluation engine
//! (`@amplitude/experiment-core`) does, group flags included, flags in dependency order.
//!
//! What reuses allot's core: the bucketing hash is [`allot_core::hash::murmur3_x86_32`] (seed 0
//! over the UTF-8 bytes of `"<salt>/<value>"`); allocation tests `hash % 100` and the variant
//! split `hash / 100` against the configured ranges. Mutual exclusion groups and holdouts arrive
//! as flags of their own whose results later flags read through `result` selectors, so the
//! engine's order of evaluation (a topological sort over `dependencies`) gives Amplitude's order
//! of operations. Conditions keep Amplitude's operators and their JavaScript coercions
//! (everything compared as strings, `(none)` for missing values, case-insensitive `contains`,
//! `Number()` parsing), which differ from allot's typed targeting; they live here.

mod import;

pub use import::{
    answer, flatten_context, FlagReport, ImportOptions, Imported, Report, EVERYONE, EVERYONE_ATTRIBUTE, ID_SUFFIX,
    LOWER_SUFFIX, NUMBER_SUFFIX, PASS, TEXT_SUFFIX, VERSION_SUFFIX,
};

use crate::js::{array_index, coerce_string, is_array_index, parse_number};
use crate::{parse_json, CompatError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

#[derive(Deserialize)]
struct RawFlag {
    key: String,
    #[serde(default)]
    variants: Map<String, Value>,
    #[serde(default)]
    segments: Vec<RawSegment>,
    #[serde(default)]
    dependencies: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawSegment {
    #[serde(default)]
    conditions: Option<Vec<Vec<RawCondition>>>,
    #[serde(default)]
    bucket: Option<RawBucket>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct RawCondition {
    selector: Vec<String>,
    op: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
struct RawBucket {
    selector: Vec<String>,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    allocations: Vec<RawAllocation>,
}

#[derive(Deserialize)]
struct RawAllocation {
    range: [f64; 2],
    #[serde(default)]
    distributions: Vec<RawDistribution>,
}

#[derive(Deserialize)]
struct RawDistribution {
    variant: String,
    range: [f64; 2],
}

/// A compiled Amplitude flag configuration.
#[derive(Debug)]
pub struct Flags {
    flags: Vec<Flag>,
    /// Indices of `flags` in evaluation order (dependencies first).
    order: Vec<usize>,
    /// The distinct context paths the selectors read; each is looked up once per context.
    paths: Vec<Vec<String>>,
    /// Whether a selector reads a merged result: evaluation then keeps each flag's segment.
    needs_segments: bool,
}

#[derive(Debug)]
struct Flag {
    key: String,
    deployed: bool,
    variants: Vec<Variant>,
    segments: Vec<Segment>,
    /// The flag's `metadata` object.
    metadata: Option<Map<String, Value>>,
    /// For a flag whose whole result or result metadata another flag reads: per segment, per
    /// variant, the result the engine builds.
    merged: Option<Vec<Vec<Value>>>,
}

#[derive(Debug)]
struct Variant {
    /// The variant's `key` (its name in the map when it has none).
    key: String,
    /// The variant object as configured.
    object: Value,
    /// `metadata.default: true`: the flag's "off".
    default: bool,
}

#[derive(Debug)]
struct Segment {
    /// `None`: always matches. An empty list never matches (as in the engine).
    conditions: Option<Vec<Vec<Condition>>>,
    bucket: Option<Bucket>,
    /// The segment's variant as an index into the flag's variants; `None` when unset or unknown.
    variant: Option<usize>,
}

#[derive(Debug)]
struct Bucket {
    selector: Selector,
    salt: String,
    allocations: Vec<Allocation>,
}

#[derive(Debug)]
struct Allocation {
    range: (f64, f64),
    distributions: Vec<((f64, f64), Option<usize>)>,
}

#[derive(Debug)]
enum Selector {
    /// Selects nothing (empty, or not under `context` or `result`).
    Nothing,
    /// A path into the evaluation context, by index into [`Flags::paths`].
    Context(usize),
    /// The `key` of the variant a flag evaluated to.
    ResultKey(usize),
    /// A path into the variant object a flag evaluated to.
    Result(usize, Vec<String>),
    /// The variant object as the engine returns it (with the flag's, the segment's and the
    /// variant's metadata merged), or a path into its `metadata`.
    Merged(usize, Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Is,
    IsNot,
    Contains,
    DoesNotContain,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    VersionLess,
    VersionLessOrEqual,
    VersionGreater,
    VersionGreaterOrEqual,
    SetIs,
    SetIsNot,
    SetContains,
    SetDoesNotContain,
    SetContainsAny,
    SetDoesNotContainAny,
    RegexMatch,
    RegexDoesNotMatch,
    /// An operator the engine does not know: never matches.
    Unknown,
}

impl Op {
    fn parse(s: &str) -> Op {
        match s {
            "is" => Op::Is,
            "is not" => Op::IsNot,
            "contains" => Op::Contains,
            "does not contain" => Op::DoesNotContain,
            "less" => Op::Less,
            "less or equal" => Op::LessOrEqual,
            "greater" => Op::Greater,
            "greater or equal" => Op::GreaterOrEqual,
            "version less" => Op::VersionLess,
            "version less or equal" => Op::VersionLessOrEqual,
            "version greater" => Op::VersionGreater,
            "version greater or equal" => Op::VersionGreaterOrEqual,
            "set is" => Op::SetIs,
            "set is not" => Op::SetIsNot,
            "set contains" => Op::SetContains,
            "set does not contain" => Op::SetDoesNotContain,
            "set contains any" => Op::SetContainsAny,
            "set does not contain any" => Op::SetDoesNotContainAny,
            "regex match" => Op::RegexMatch,
            "regex does not match" => Op::RegexDoesNotMatch,
            _ => Op::Unknown,
        }
    }

    fn is_set(self) -> bool {
        matches!(
            self,
            Op::SetIs
                | Op::SetIsNot
                | Op::SetContains
                | Op::SetDoesNotContain
                | Op::SetContainsAny
                | Op::SetDoesNotContainAny
        )
    }
}

#[derive(Debug)]
struct Condition {
    selector: Selector,
    op: Op,
    values: Vec<String>,
    lower: Vec<String>,
    numbers: Vec<f64>,
    versions: Vec<Version>,
    /// For the regex operators: each value compiled as a JavaScript regular expression.
    regexes: Vec<regress::Regex>,
    contains_none: bool,
    contains_booleans: bool,
    /// For a condition on another flag's variant key: the outcome per variant of that flag, and
    /// when it has none.
    by_variant: Option<(Vec<bool>, bool)>,
}

/// Amplitude's semantic version: `major.minor(.patch(-prerelease)?)?`.
#[derive(Debug, Clone, PartialEq)]
struct Version {
    major: f64,
    minor: f64,
    patch: f64,
    pre: Option<String>,
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        fn digits(s: &str) -> (&str, &str) {
            let n = s.bytes().take_while(u8::is_ascii_digit).count();
            s.split_at(n)
        }
        let (major, rest) = digits(s);
        let rest = rest.strip_prefix('.')?;
        let (minor, rest) = digits(rest);
        if major.is_empty() || minor.is_empty() {
            return None;
        }
        let mut patch = 0.0;
        let mut pre = None;
        if !rest.is_empty() {
            let rest = rest.strip_prefix('.')?;
            let (p, rest) = digits(rest);
            if p.is_empty() {
                return None;
            }
            patch = p.parse().unwrap_or(0.0);
            if !rest.is_empty() {
                let body = rest.strip_prefix('-')?;
                // `([-\w]+\.?)*`: word characters and hyphens, single dots after a run.
                let mut prev_dot = true;
                for c in body.chars() {
                    if c == '.' {
                        if prev_dot {
                            return None;
                        }
                        prev_dot = true;
                    } else if c == '-' || c == '_' || c.is_ascii_alphanumeric() {
                        prev_dot = false;
                    } else {
                        return None;
                    }
                }
                pre = Some(rest.to_string());
            }
        }
        Some(Version { major: major.parse().ok()?, minor: minor.parse().ok()?, patch, pre })
    }

    fn compare(&self, other: &Version) -> Ordering {
        for (a, b) in [(self.major, other.major), (self.minor, other.minor), (self.patch, other.patch)] {
            if a > b {
                return Ordering::Greater;
            }
            if a < b {
                return Ordering::Less;
            }
        }
        match (&self.pre, &other.pre) {
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => js_cmp(a, b),
            (None, None) => Ordering::Equal,
        }
    }
}

/// JavaScript's string order: by UTF-16 code units.
fn js_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn compile_selector(sel: &[String], index: &HashMap<&str, usize>, paths: &mut Vec<Vec<String>>) -> Selector {
    if sel.iter().any(String::is_empty) {
        return Selector::Nothing;
    }
    match sel.split_first() {
        // `["context"]` alone selects the whole context, as in the engine.
        Some((first, rest)) if first == "context" => {
            let id = match paths.iter().position(|p| p.as_slice() == rest) {
                Some(id) => id,
                None => {
                    paths.push(rest.to_vec());
                    paths.len() - 1
                }
            };
            Selector::Context(id)
        }
        Some((first, rest)) if first == "result" && !rest.is_empty() => match index.get(rest[0].as_str()) {
            None => Selector::Nothing,
            Some(&i) if rest.len() == 2 && rest[1] == "key" => Selector::ResultKey(i),
            Some(&i) if rest.len() == 1 || rest[1] == "metadata" => Selector::Merged(i, rest[1..].to_vec()),
            Some(&i) => Selector::Result(i, rest[1..].to_vec()),
        },
        _ => Selector::Nothing,
    }
}

impl Flags {
    /// Parses and compiles a flag configuration: a JSON array of flags, as Amplitude's flag
    /// endpoint serves them to local-evaluation SDKs.
    pub fn parse(text: &str) -> Result<Flags, CompatError> {
        let raw: Vec<RawFlag> = parse_json(text)?;
        Flags::compile(raw)
    }

    /// Compiles flags already parsed from JSON.
    pub fn from_json(value: Value) -> Result<Flags, CompatError> {
        let raw: Vec<RawFlag> = crate::from_value(value)?;
        Flags::compile(raw)
    }

    fn compile(raw: Vec<RawFlag>) -> Result<Flags, CompatError> {
        // As in the engine's flag map: a later flag with the same key replaces the earlier one.
        let mut first: Vec<&str> = Vec::new();
        let mut last_of: HashMap<&str, usize> = HashMap::new();
        for (i, f) in raw.iter().enumerate() {
            if last_of.insert(f.key.as_str(), i).is_none() {
                first.push(f.key.as_str());
            }
        }
        let index: HashMap<&str, usize> = first.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let mut flags = Vec::with_capacity(first.len());
        let mut paths = Vec::new();
        for key in &first {
            let i = last_of[key];
            flags.push(compile_flag(&raw[i], &format!("[{i}]"), &index, &mut paths)?);
        }
        let order = topological_order(&raw, &first, &last_of, &index)?;
        // A condition on another flag's variant key depends only on which variant that flag got:
        // decide it now for each of them.
        let mut tables = Vec::new();
        for (fi, f) in flags.iter().enumerate() {
            for (si, seg) in f.segments.iter().enumerate() {
                for (oi, ands) in seg.conditions.iter().flatten().enumerate() {
                    for (ai, c) in ands.iter().enumerate() {
                        if let Selector::ResultKey(dep) = c.selector {
                            let per_variant: Vec<bool> = flags[dep]
                                .variants
                                .iter()
                                .map(|v| match v.object.get("key").filter(|k| !k.is_null()) {
                                    None => match_null(c),
                                    Some(k) => match_prop(k, c),
                                })
                                .collect();
                            tables.push(((fi, si, oi, ai), (per_variant, match_null(c))));
                        }
                    }
                }
            }
        }
        for ((fi, si, oi, ai), table) in tables {
            if let Some(ors) = flags[fi].segments[si].conditions.as_mut() {
                ors[oi][ai].by_variant = Some(table);
            }
        }
        let mut merged_needed = vec![false; flags.len()];
        for f in &flags {
            for seg in &f.segments {
                let bucket = seg.bucket.iter().map(|b| &b.selector);
                let conditions = seg.conditions.iter().flatten().flatten().map(|c| &c.selector);
                for sel in bucket.chain(conditions) {
                    if let Selector::Merged(i, _) = sel {
                        merged_needed[*i] = true;
                    }
                }
            }
        }
        for (i, f) in flags.iter_mut().enumerate() {
            if merged_needed[i] {
                f.merged = Some(merged_results(f, &raw[last_of[f.key.as_str()]].segments));
            }
        }
        let needs_segments = merged_needed.contains(&true);
        Ok(Flags { flags, order, paths, needs_segments })
    }

    /// The flag keys, in configuration order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| f.key.as_str())
    }

    /// The number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// True when there are no flags.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Evaluates every flag for one context (`{"user": {...}}`), in dependency order. Returns, per
    /// flag in configuration order, the index of its variant or `None`; read the variant with
    /// [`Flags::variant_key`].
    pub fn evaluate_into<'r>(&self, context: &Value, results: &'r mut Vec<Option<usize>>) -> &'r [Option<usize>] {
        results.clear();
        results.resize(self.flags.len(), None);
        // Each context path is looked up at most once per context; on the stack when few.
        let mut stack = [None; 16];
        let mut heap = Vec::new();
        let paths: &mut [Option<Option<Picked<'_>>>] = if self.paths.len() <= stack.len() {
            &mut stack[..self.paths.len()]
        } else {
            heap.resize(self.paths.len(), None);
            &mut heap
        };
        let segments = if self.needs_segments { vec![0; self.flags.len()] } else { Vec::new() };
        let mut ev = Ev { ctx: context, paths, segments };
        for &i in &self.order {
            let v = self.evaluate_flag(&self.flags[i], &mut ev, results);
            if let (Some((seg, _)), true) = (v, self.needs_segments) {
                ev.segments[i] = seg;
            }
            results[i] = v.map(|(_, v)| v);
        }
        results
    }

    /// The key of variant `variant` of flag `flag` (indices as returned by [`Flags::evaluate_into`]).
    pub fn variant_key(&self, flag: usize, variant: usize) -> &str {
        &self.flags[flag].variants[variant].key
    }

    /// The whole variant object of flag `flag` (`{"key": ..., "value": ..., "payload": ...}`).
    pub fn variant_object(&self, flag: usize, variant: usize) -> &Value {
        &self.flags[flag].variants[variant].object
    }

    /// Whether an SDK would hide this result: the flag is not deployed (a group flag) or the
    /// variant is the flag's default ("off").
    pub fn sdk_filters(&self, flag: usize, variant: usize) -> bool {
        let f = &self.flags[flag];
        !f.deployed || f.variants[variant].default
    }

    /// Evaluates every flag and returns `{flag key: variant key or null}` in configuration order.
    pub fn evaluate_json(&self, context: &Value) -> Value {
        let mut results = Vec::new();
        self.evaluate_into(context, &mut results);
        let mut out = Map::new();
        for (i, f) in self.flags.iter().enumerate() {
            let v = results[i].map_or(Value::Null, |v| Value::String(f.variants[v].key.clone()));
            out.insert(f.key.clone(), v);
        }
        Value::Object(out)
    }

    /// The segment that gave a variant, and the variant.
    fn evaluate_flag<'c>(
        &'c self,
        flag: &Flag,
        ev: &mut Ev<'c, '_>,
        results: &[Option<usize>],
    ) -> Option<(usize, usize)> {
        for (si, seg) in flag.segments.iter().enumerate() {
            let matched = match &seg.conditions {
                None => true,
                Some(ors) => ors.iter().any(|ands| ands.iter().all(|c| self.matches(c, ev, results))),
            };
            if !matched {
                continue;
            }
            if let Some(v) = self.bucket(seg, ev, results) {
                return Some((si, v));
            }
        }
        None
    }

    fn bucket<'c>(&'c self, seg: &Segment, ev: &mut Ev<'c, '_>, results: &[Option<usize>]) -> Option<usize> {
        let Some(b) = &seg.bucket else { return seg.variant };
        let value = match self.select(&b.selector, ev, results) {
            None => return seg.variant,
            Some(Picked::Value(Value::String(s))) => std::borrow::Cow::Borrowed(s.as_str()),
            Some(Picked::Value(v)) => std::borrow::Cow::Owned(coerce_string(v)),
            Some(Picked::Length(n)) => std::borrow::Cow::Owned(n.to_string()),
        };
        // An empty bucketing value cannot be bucketed: the segment's variant.
        if value.is_empty() {
            return seg.variant;
        }
        let hash = allot_core::hash::amplitude_hash(&b.salt, &value);
        let allocation = f64::from(hash % 100);
        let distribution = f64::from(hash / 100);
        for a in &b.allocations {
            if allocation >= a.range.0 && allocation < a.range.1 {
                for ((lo, hi), variant) in &a.distributions {
                    if distribution >= *lo && distribution < *hi {
                        // A distribution naming no variant of the flag gives no variant (next segment).
                        return *variant;
                    }
                }
            }
        }
        seg.variant
    }

    fn select<'c>(&'c self, sel: &Selector, ev: &mut Ev<'c, '_>, results: &[Option<usize>]) -> Option<Picked<'c>> {
        match sel {
            Selector::Nothing => None,
            Selector::Context(id) => match ev.paths[*id] {
                Some(v) => v,
                None => {
                    let v = walk(ev.ctx, &self.paths[*id]);
                    ev.paths[*id] = Some(v);
                    v
                }
            },
            Selector::ResultKey(f) => {
                let v = results[*f]?;
                let variant = &self.flags[*f].variants[v];
                variant.object.get("key").filter(|k| !k.is_null()).map(Picked::Value)
            }
            Selector::Result(f, path) => {
                let v = results[*f]?;
                walk(&self.flags[*f].variants[v].object, path)
            }
            Selector::Merged(f, path) => {
                let v = results[*f]?;
                let merged = self.flags[*f].merged.as_ref()?;
                walk(&merged[ev.segments[*f]][v], path)
            }
        }
    }

    fn matches<'c>(&'c self, c: &Condition, ev: &mut Ev<'c, '_>, results: &[Option<usize>]) -> bool {
        if let (Some((per_variant, none)), Selector::ResultKey(dep)) = (&c.by_variant, &c.selector) {
            return results[*dep].map_or(*none, |v| per_variant[v]);
        }
        match self.select(&c.selector, ev, results) {
            None => match_null(c),
            Some(Picked::Value(prop)) => match_prop(prop, c),
            Some(Picked::Length(n)) => match_prop(&Value::from(n), c),
        }
    }
}

/// What a selector selected: a value of the context or of a variant, or an array's `length`.
#[derive(Debug, Clone, Copy)]
enum Picked<'a> {
    Value(&'a Value),
    Length(usize),
}

/// The per-context state of an evaluation: the context and the paths looked up so far.
struct Ev<'c, 'p> {
    ctx: &'c Value,
    paths: &'p mut [Option<Option<Picked<'c>>>],
    /// Per flag, the segment that gave its variant (kept only when a selector needs it).
    segments: Vec<usize>,
}

/// The engine's result for each (segment, variant) of a flag: the variant with `metadata` set to
/// `Object.assign({}, flag.metadata, segment.metadata, variant.metadata)`.
fn merged_results(flag: &Flag, segments: &[RawSegment]) -> Vec<Vec<Value>> {
    let assign = |into: &mut Map<String, Value>, from: Option<&Value>| {
        if let Some(Value::Object(m)) = from {
            for (k, v) in m {
                into.insert(k.clone(), v.clone());
            }
        }
    };
    let flag_meta = flag.metadata.clone().map(Value::Object);
    segments
        .iter()
        .map(|seg| {
            flag.variants
                .iter()
                .map(|v| {
                    let mut meta = Map::new();
                    assign(&mut meta, flag_meta.as_ref());
                    assign(&mut meta, seg.metadata.as_ref());
                    assign(&mut meta, v.object.get("metadata"));
                    let mut out = v.object.as_object().cloned().unwrap_or_default();
                    out.insert("metadata".into(), Value::Object(meta));
                    Value::Object(out)
                })
                .collect()
        })
        .collect()
}

/// Whether a (present, not null) property value satisfies a condition: the engine's
/// `matchCondition`. A list (an array, or a string holding a JSON array) is a set to the set
/// operators and matches the others when any element does; a scalar never matches a set operator.
fn match_prop(prop: &Value, c: &Condition) -> bool {
    if let (Value::Number(n), Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual) = (prop, c.op) {
        // Number(String(x)) is x for every finite number: skip the round trip.
        let p = n.as_f64().unwrap_or(f64::NAN);
        return c.numbers.iter().any(|f| compare(c.op, p.partial_cmp(f)));
    }
    let list = coerce_string_array(prop);
    if c.op.is_set() {
        return list.is_some_and(|l| match_set(&l, c));
    }
    if let Some(list) = list {
        return list.iter().any(|s| match_string(s, c));
    }
    match prop {
        Value::String(s) => match_string(s, c),
        v => match_string(&coerce_string(v), c),
    }
}

/// The engine's `coerceStringArray`: an array's elements as strings (nulls and empty strings
/// dropped); a string that starts with `[` and parses (`JSON.parse`) as an array, the same of its
/// elements; anything else, no list. (`String({})` is `[object Object]`, which does not parse.)
fn coerce_string_array(v: &Value) -> Option<Vec<String>> {
    let elements =
        |items: &[Value]| items.iter().filter(|v| !v.is_null()).map(coerce_string).filter(|s| !s.is_empty()).collect();
    match v {
        Value::Array(items) => Some(elements(items)),
        Value::String(s) if s.starts_with('[') => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => Some(elements(&items)),
            _ => None,
        },
        _ => None,
    }
}

/// The engine's `select` below the root: each step into an object (by key) or an array (by
/// index, or `length`); a missing or null value is nothing, any other (`false`, `0`, `""`)
/// is selected.
fn walk<'a>(mut v: &'a Value, path: &[String]) -> Option<Picked<'a>> {
    for (i, p) in path.iter().enumerate() {
        v = match v {
            // Small objects (a user, its properties) are scanned: cheaper than hashing the key.
            Value::Object(m) if m.len() <= 12 => m.iter().find(|(k, _)| *k == p)?.1,
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => match array_index(p) {
                Some(i) => a.get(i as usize)?,
                // A number: nothing below it can be selected.
                None if p == "length" => return (i + 1 == path.len()).then_some(Picked::Length(a.len())),
                None => return None,
            },
            _ => return None,
        };
    }
    (!v.is_null()).then_some(Picked::Value(v))
}

fn match_null(c: &Condition) -> bool {
    match c.op {
        Op::Is
        | Op::Contains
        | Op::Less
        | Op::LessOrEqual
        | Op::Greater
        | Op::GreaterOrEqual
        | Op::VersionLess
        | Op::VersionLessOrEqual
        | Op::VersionGreater
        | Op::VersionGreaterOrEqual
        | Op::SetIs
        | Op::SetContains
        | Op::SetContainsAny => c.contains_none,
        Op::IsNot | Op::DoesNotContain | Op::SetDoesNotContain | Op::SetDoesNotContainAny => !c.contains_none,
        Op::SetIsNot | Op::RegexMatch | Op::RegexDoesNotMatch | Op::Unknown => false,
    }
}

fn contains_booleans<S: AsRef<str>>(values: &[S]) -> bool {
    values.iter().any(|v| {
        let l = v.as_ref();
        l.eq_ignore_ascii_case("true") || l.eq_ignore_ascii_case("false")
    })
}

fn matches_is<S: AsRef<str>>(prop: &str, values: &[S], booleans: bool) -> bool {
    if booleans {
        let lower = prop.to_lowercase();
        if lower == "true" || lower == "false" {
            return values.iter().any(|v| v.as_ref().to_lowercase() == lower);
        }
    }
    values.iter().any(|v| v.as_ref() == prop)
}

fn match_set(prop: &[String], c: &Condition) -> bool {
    let prop_booleans = contains_booleans(prop);
    let set_equals = || {
        let xs: std::collections::HashSet<&str> = prop.iter().map(String::as_str).collect();
        let ys: std::collections::HashSet<&str> = c.values.iter().map(String::as_str).collect();
        xs.len() == ys.len() && ys.iter().all(|y| xs.contains(y))
    };
    let contains_all = || prop.len() >= c.values.len() && c.values.iter().all(|f| matches_is(f, prop, prop_booleans));
    let contains_any = || c.values.iter().any(|f| matches_is(f, prop, prop_booleans));
    match c.op {
        Op::SetIs => set_equals(),
        Op::SetIsNot => !set_equals(),
        Op::SetContains => contains_all(),
        Op::SetDoesNotContain => !contains_all(),
        Op::SetContainsAny => contains_any(),
        Op::SetDoesNotContainAny => !contains_any(),
        _ => false,
    }
}

fn compare(op: Op, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        Op::Less | Op::VersionLess => ord == Ordering::Less,
        Op::LessOrEqual | Op::VersionLessOrEqual => ord != Ordering::Greater,
        Op::Greater | Op::VersionGreater => ord == Ordering::Greater,
        Op::GreaterOrEqual | Op::VersionGreaterOrEqual => ord != Ordering::Less,
        _ => false,
    }
}

fn match_string(prop: &str, c: &Condition) -> bool {
    match c.op {
        Op::Is => matches_is(prop, &c.values, c.contains_booleans),
        Op::IsNot => !matches_is(prop, &c.values, c.contains_booleans),
        Op::Contains | Op::DoesNotContain => {
            let lower = prop.to_lowercase();
            let found = c.lower.iter().any(|f| lower.contains(f.as_str()));
            found == (c.op == Op::Contains)
        }
        Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            // `Number()` never fails (it gives NaN), so the engine always compares numbers here.
            let p = parse_number(prop);
            c.numbers.iter().any(|f| compare(c.op, p.partial_cmp(f)))
        }
        Op::VersionLess | Op::VersionLessOrEqual | Op::VersionGreater | Op::VersionGreaterOrEqual => {
            match Version::parse(prop) {
                Some(p) if !c.versions.is_empty() => c.versions.iter().any(|f| compare(c.op, Some(p.compare(f)))),
                // Either side unparseable: the engine compares the strings.
                _ => c.values.iter().any(|f| compare(c.op, Some(js_cmp(prop, f)))),
            }
        }
        Op::RegexMatch => matches_regex(prop, &c.regexes),
        Op::RegexDoesNotMatch => !matches_regex(prop, &c.regexes),
        _ => false,
    }
}

/// `new RegExp(f).exec(prop)` for any `f`: searched over UTF-16 code units, as JavaScript does
/// without the `u` flag (`.` matches half of an astral character).
fn matches_regex(prop: &str, regexes: &[regress::Regex]) -> bool {
    if regexes.is_empty() {
        return false;
    }
    let units: Vec<u16> = prop.encode_utf16().collect();
    regexes.iter().any(|re| re.find_from_ucs2(&units, 0).next().is_some())
}

fn compile_flag(
    raw: &RawFlag,
    path: &str,
    index: &HashMap<&str, usize>,
    paths: &mut Vec<Vec<String>>,
) -> Result<Flag, CompatError> {
    let mut variants = Vec::with_capacity(raw.variants.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (name, v) in &raw.variants {
        let Value::Object(obj) = v else {
            return Err(CompatError::invalid(format!("{path}.variants.{name}"), "a variant must be an object"));
        };
        let key = match obj.get("key") {
            None => name.clone(),
            Some(Value::String(k)) => k.clone(),
            Some(other) => {
                return Err(CompatError::invalid(
                    format!("{path}.variants.{name}.key"),
                    format!("expected a string, got {other}"),
                ))
            }
        };
        let default = obj.get("metadata").and_then(|m| m.get("default")).and_then(Value::as_bool).unwrap_or(false);
        names.insert(name.as_str(), variants.len());
        variants.push(Variant { key, object: v.clone(), default });
    }
    let variant_of = |name: &str| names.get(name).copied();
    let mut segments = Vec::with_capacity(raw.segments.len());
    for (si, s) in raw.segments.iter().enumerate() {
        let spath = format!("{path}.segments[{si}]");
        let conditions = match &s.conditions {
            None => None,
            Some(ors) => {
                let mut out = Vec::with_capacity(ors.len());
                for (oi, ands) in ors.iter().enumerate() {
                    let mut inner = Vec::with_capacity(ands.len());
                    for (ai, c) in ands.iter().enumerate() {
                        let cpath = format!("{spath}.conditions[{oi}][{ai}]");
                        inner.push(compile_condition(c, &cpath, index, paths)?);
                    }
                    out.push(inner);
                }
                Some(out)
            }
        };
        let bucket = s.bucket.as_ref().map(|b| Bucket {
            selector: compile_selector(&b.selector, index, paths),
            salt: b.salt.clone(),
            allocations: b
                .allocations
                .iter()
                .map(|a| Allocation {
                    range: (a.range[0], a.range[1]),
                    distributions: a
                        .distributions
                        .iter()
                        .map(|d| ((d.range[0], d.range[1]), variant_of(&d.variant)))
                        .collect(),
                })
                .collect(),
        });
        segments.push(Segment { conditions, bucket, variant: s.variant.as_deref().and_then(variant_of) });
    }
    let deployed = raw.metadata.as_ref().and_then(|m| m.get("deployed")).and_then(Value::as_bool).unwrap_or(true);
    Ok(Flag { key: raw.key.clone(), deployed, variants, segments, metadata: raw.metadata.clone(), merged: None })
}

fn compile_condition(
    c: &RawCondition,
    path: &str,
    index: &HashMap<&str, usize>,
    paths: &mut Vec<Vec<String>>,
) -> Result<Condition, CompatError> {
    let op = Op::parse(&c.op);
    let mut regexes = Vec::new();
    if matches!(op, Op::RegexMatch | Op::RegexDoesNotMatch) {
        for (i, v) in c.values.iter().enumerate() {
            // `new RegExp(v)`: no flags, so JavaScript's non-Unicode mode (UTF-16 code units).
            // A pattern JavaScript rejects would throw when evaluated; it is refused here.
            // The pattern too is read as UTF-16 code units: `[😀]` is a class of two surrogates.
            let units = v.encode_utf16().map(u32::from);
            let re = regress::Regex::from_unicode(units, regress::Flags::default()).map_err(|e| {
                CompatError::invalid(format!("{path}.values[{i}]"), format!("not a JavaScript regular expression: {e}"))
            })?;
            if nested_quantifier(v) {
                return Err(CompatError::invalid(
                    format!("{path}.values[{i}]"),
                    "a repeated group that itself repeats (like `(a+)+`) can take exponential time on a \
                     near-miss; allot refuses it (JavaScript would hang): write it without the nesting",
                ));
            }
            if ambiguous_repetition(v) {
                return Err(CompatError::invalid(
                    format!("{path}.values[{i}]"),
                    "a repeated group with alternatives that can start with the same character (like \
                     `(a|ab)*`) can take exponential time on a near-miss; allot refuses it (JavaScript \
                     would hang): make the alternatives start differently, or factor out their common \
                     start (`a(b)?` for `a|ab`)",
                ));
            }
            regexes.push(re);
        }
    }
    let versions: Vec<Version> = c.values.iter().filter_map(|v| Version::parse(v)).collect();
    Ok(Condition {
        selector: compile_selector(&c.selector, index, paths),
        op,
        lower: c.values.iter().map(|v| v.to_lowercase()).collect(),
        numbers: c.values.iter().map(|v| parse_number(v)).collect(),
        versions,
        regexes,
        contains_none: c.values.iter().any(|v| v == "(none)"),
        contains_booleans: contains_booleans(&c.values),
        values: c.values.clone(),
        by_variant: None,
    })
}

/// Whether a JavaScript pattern repeats a group that itself contains a repetition (`(a+)+`,
/// `(?:a*b)*`, `(a{2,})+`): backtracking engines (V8's and `regress`, which has no step budget)
/// take exponential time on a near-miss. Escapes and character classes are skipped; `?` and
/// `{0,1}`-like bounds do not repeat; Annex B's literal braces (`a{,2}`) are not quantifiers.
fn nested_quantifier(pattern: &str) -> bool {
    let c: Vec<char> = pattern.chars().collect();
    // Per open group: whether it contains a repetition.
    let mut stack: Vec<bool> = vec![false];
    // Whether the atom just closed was a group containing a repetition.
    let mut last_group_repeats = false;
    let mut i = 0;
    while i < c.len() {
        let mut repeats_here = None;
        match c[i] {
            '\\' => i += 1,
            '[' => {
                i += 1;
                while i < c.len() && c[i] != ']' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '(' => {
                stack.push(false);
                last_group_repeats = false;
                i += 1;
                continue;
            }
            ')' => {
                let inner = if stack.len() > 1 { stack.pop().unwrap_or(false) } else { false };
                i += 1;
                last_group_repeats = inner;
                if let Some(top) = stack.last_mut() {
                    *top |= inner;
                }
                continue;
            }
            '*' | '+' => repeats_here = Some(true),
            '{' => repeats_here = braces(&c[i..]).map(|(_, unbounded_or_many)| unbounded_or_many),
            _ => {}
        }
        if let Some(many) = repeats_here {
            if many {
                if last_group_repeats {
                    return true;
                }
                if let Some(top) = stack.last_mut() {
                    *top = true;
                }
            }
            if c[i] == '{' {
                i += braces(&c[i..]).map_or(1, |(len, _)| len);
                last_group_repeats = false;
                continue;
            }
        }
        last_group_repeats = false;
        i += 1;
    }
    false
}

/// The characters a branch of a pattern can start with: some literal characters, or possibly
/// anything (a class, an escape like `\d`, a group, an anchor, an empty branch, an optional first
/// atom: not worked out, so assumed to overlap with everything).
#[derive(Debug, Clone, PartialEq)]
enum First {
    Chars(Vec<char>),
    Any,
}

impl First {
    fn overlaps(&self, other: &First) -> bool {
        match (self, other) {
            (First::Chars(a), First::Chars(b)) => a.iter().any(|x| b.contains(x)),
            _ => true,
        }
    }
}

/// Whether a JavaScript pattern repeats a group in which two alternatives can start with the same
/// character (`(a|a)*`, `^(a|ab)*c$`, `(\d|1)+`, `((a|a)b)*`): the backtracking engine may then
/// split one input into iterations in exponentially many ways and try them all on a near-miss.
/// Conservative: alternatives whose first character is not a plain literal (a class, an escape
/// such as `\d`, a group, an anchor, an optional atom, an empty alternative) count as starting with
/// anything, so `(a|[b-z])+` is refused too; disjoint literal starts (`(gold|plus)+`) are not.
fn ambiguous_repetition(pattern: &str) -> bool {
    struct Group {
        /// First characters of the alternatives closed so far.
        firsts: Vec<First>,
        /// Of the alternative being read, once its first atom is seen.
        current: Option<First>,
        /// Whether this group, or a group inside it, has overlapping alternatives.
        ambiguous: bool,
    }
    impl Group {
        fn new() -> Group {
            Group { firsts: vec![], current: None, ambiguous: false }
        }
        /// Closes the alternative being read.
        fn close_alternative(&mut self) {
            let first = self.current.take().unwrap_or(First::Any);
            if self.firsts.iter().any(|f| f.overlaps(&first)) {
                self.ambiguous = true;
            }
            self.firsts.push(first);
        }
    }
    let c: Vec<char> = pattern.chars().collect();
    // Whether the atom ending at `end` (exclusive) may match nothing: `?`, `*` or `{0,…}` follows.
    let optional = |end: usize| match c.get(end) {
        Some('?' | '*') => true,
        Some('{') => c.get(end + 1) == Some(&'0') && braces(&c[end..]).is_some(),
        _ => false,
    };
    let mut stack: Vec<Group> = vec![Group::new()];
    // Whether the atom just closed was a group with overlapping alternatives.
    let mut last_group_ambiguous = false;
    let mut i = 0;
    while i < c.len() {
        // The first characters of the atom at `i`, when it is one (not a quantifier, `|`, `)`).
        let mut atom: Option<First> = None;
        match c[i] {
            '\\' => {
                i += 1;
                atom = Some(match c.get(i) {
                    Some(n) if !n.is_ascii_alphanumeric() => First::Chars(vec![*n]),
                    _ => First::Any,
                });
                i += 1;
            }
            '[' => {
                i += 1;
                while i < c.len() && c[i] != ']' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                atom = Some(First::Any);
            }
            '(' => {
                if let Some(top) = stack.last_mut() {
                    top.current.get_or_insert(First::Any);
                }
                stack.push(Group::new());
                i += 1;
                // `(?:`, `(?=`, `(?!`, `(?<=`, `(?<!`, `(?<name>`: not atoms of the group.
                if c.get(i) == Some(&'?') {
                    match c.get(i + 1) {
                        Some(':' | '=' | '!') => i += 2,
                        Some('<') if matches!(c.get(i + 2), Some('=' | '!')) => i += 3,
                        Some('<') => {
                            while i < c.len() && c[i] != '>' {
                                i += 1;
                            }
                            i += 1;
                        }
                        _ => {}
                    }
                }
                last_group_ambiguous = false;
                continue;
            }
            ')' => {
                i += 1;
                if stack.len() > 1 {
                    if let Some(mut g) = stack.pop() {
                        g.close_alternative();
                        let ambiguous = g.ambiguous;
                        last_group_ambiguous = ambiguous;
                        if let Some(top) = stack.last_mut() {
                            top.ambiguous |= ambiguous;
                        }
                    }
                }
                continue;
            }
            '|' => {
                if let Some(top) = stack.last_mut() {
                    top.close_alternative();
                }
                i += 1;
                last_group_ambiguous = false;
                continue;
            }
            '*' | '+' => {
                if last_group_ambiguous {
                    return true;
                }
                last_group_ambiguous = false;
                i += 1;
            }
            '{' => match braces(&c[i..]) {
                Some((len, many)) => {
                    if many && last_group_ambiguous {
                        return true;
                    }
                    last_group_ambiguous = false;
                    i += len;
                }
                None => {
                    atom = Some(First::Chars(vec!['{']));
                    i += 1;
                }
            },
            '?' => {
                last_group_ambiguous = false;
                i += 1;
            }
            '.' | '^' | '$' => {
                atom = Some(First::Any);
                i += 1;
            }
            ch => {
                atom = Some(First::Chars(vec![ch]));
                i += 1;
            }
        }
        if let Some(first) = atom {
            let first = if optional(i) { First::Any } else { first };
            if let Some(top) = stack.last_mut() {
                top.current.get_or_insert(first);
            }
            last_group_ambiguous = false;
        }
    }
    false
}

/// A `{n}`, `{n,}` or `{n,m}` quantifier at the start of `c`: its length and whether it can
/// repeat more than once.
fn braces(c: &[char]) -> Option<(usize, bool)> {
    let close = c.iter().position(|&x| x == '}')?;
    let body: String = c[1..close].iter().collect();
    let (lo, hi) = match body.split_once(',') {
        Some((lo, hi)) => (lo, Some(hi)),
        None => (body.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|d| d.is_ascii_digit());
    if !digits(lo) || hi.is_some_and(|h| !h.is_empty() && !digits(h)) {
        return None;
    }
    let many = match hi {
        None => lo.parse::<u64>().map_or(true, |n| n > 1),
        Some("") => true,
        Some(h) => h.parse::<u64>().map_or(true, |n| n > 1),
    };
    Some((close + 1, many))
}

/// The engine's `topologicalSort`: flags in configuration order, each after its dependencies;
/// unknown dependencies are skipped, a cycle is an error.
fn topological_order(
    raw: &[RawFlag],
    keys: &[&str],
    last_of: &HashMap<&str, usize>,
    index: &HashMap<&str, usize>,
) -> Result<Vec<usize>, CompatError> {
    let mut available = vec![true; keys.len()];
    let mut order = Vec::with_capacity(keys.len());
    // The engine starts from `Object.keys` of its flag map: keys that are array indices first,
    // in numeric order, then the others in configuration order.
    let mut starting: Vec<&str> = keys.iter().copied().filter(|k| is_array_index(k)).collect();
    starting.sort_by_key(|k| array_index(k));
    starting.extend(keys.iter().copied().filter(|k| !is_array_index(k)));
    for key in &starting {
        let mut path = Vec::new();
        visit(key, raw, last_of, index, &mut available, &mut path, &mut order)?;
    }
    Ok(order)
}

fn visit<'a>(
    key: &'a str,
    raw: &'a [RawFlag],
    last_of: &HashMap<&str, usize>,
    index: &HashMap<&str, usize>,
    available: &mut [bool],
    path: &mut Vec<&'a str>,
    order: &mut Vec<usize>,
) -> Result<(), CompatError> {
    let Some(&i) = index.get(key) else { return Ok(()) };
    if !available[i] {
        return Ok(());
    }
    let r = &raw[last_of[key]];
    let deps = r.dependencies.as_deref().unwrap_or(&[]);
    if !deps.is_empty() {
        path.push(key);
        for dep in deps {
            if path.contains(&dep.as_str()) {
                return Err(CompatError::invalid(
                    format!("[{}].dependencies", last_of[key]),
                    format!("a cycle between flags {}", path.join(", ")),
                ));
            }
            visit(dep, raw, last_of, index, available, path, order)?;
        }
        path.pop();
    }
    if available[i] {
        available[i] = false;
        order.push(i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_groups_that_repeat_are_found() {
        for p in ["^(a+)+$", "(a*)*", "(?:ab+)*c", "(a{2,})+", "((a+))+", "(x|y+){3,}", "([0-9]+)*"] {
            assert!(nested_quantifier(p), "{p}");
        }
        for p in [
            "^S",
            "[0-9]+",
            "^\\d{2}$",
            "^(gold|plus)",
            "(?:x)?y",
            "o{2,}",
            "[\\s\\S]{3}",
            "(?<n>[a-z])\\k<n>",
            "(a)+",
            "((a)+)",
            "(a+)?",
            "(a+){1}",
            "(a+){0,1}",
            "a{,2}",
            "[(a+)+]",
            "\\(a+\\)+",
            "^\\[.*\\]$",
        ] {
            assert!(!nested_quantifier(p), "{p}");
        }
    }

    #[test]
    fn overlapping_alternatives_under_a_repetition_are_found() {
        for p in [
            "^(a|a)*$",
            "^(a|ab)*c$",
            "(ab|a)+",
            "(?:x|xy){2,}",
            "((a|a)b)*",
            "(\\d|1)+",
            "([a-c]|b)*",
            "(.|a)+",
            "(a|)*",
            "(|a)+",
            "(a?b|b)*",
            "(?<n>a|a)+",
            "(\\.|\\.x)*",
        ] {
            assert!(ambiguous_repetition(p), "{p}");
        }
        for p in [
            "^(gold|plus)",
            "^(gold|plus)+$",
            "(a|b)*",
            "(?:ab|cd){2,}",
            "^1\\.(2|10)",
            "(a|a)",
            "(a|a){1}",
            "(a|a)?",
            "a|a",
            "[(a|a)*]",
            "\\((a|a)\\)*",
            "(a|a)(a|b)*x",
            "(?=a|a)b+",
            "(\\.|x)*",
            "^S",
            "(?<n>[a-z])\\k<n>",
        ] {
            assert!(!ambiguous_repetition(p), "{p}");
        }
    }

    #[test]
    fn versions_parse_like_the_engine() {
        assert_eq!(Version::parse("1.2").map(|v| v.patch), Some(0.0));
        assert_eq!(Version::parse("1.2.3-rc.1").and_then(|v| v.pre), Some("-rc.1".to_string()));
        assert!(Version::parse("1").is_none());
        assert!(Version::parse("1.2.").is_none());
        assert!(Version::parse("1.2.3-rc..1").is_none());
        let a = Version::parse("1.2.3-alpha").unwrap_or_else(|| unreachable!());
        let b = Version::parse("1.2.3").unwrap_or_else(|| unreachable!());
        assert_eq!(a.compare(&b), Ordering::Less);
    }
}
