//! Migrate in: an Amplitude flag configuration as a native `allot.yaml` and its recorded state, so
//! that `allot assign` on contexts flattened by [`flatten_context`] gives the variant Amplitude's
//! engine gives, flag by flag.
//!
//! How an Amplitude construct maps (docs/compat.md, "Amplitude: import"):
//!
//! - a segment's bucket (`selector` → attribute `a`, `salt` s) → a unit type `hash: amplitude`
//!   (100 buckets: `x86_32("s/<id>") % 100`), one per (attribute, salt);
//! - per bucket `b` of `0..100`, the segment gives a function of the split bucket `hash / 100`
//!   (its allocations holding `b`, first distribution that holds it, else the segment's variant);
//!   buckets with the same function are one running experiment whose allocation is exactly those
//!   buckets (recorded bucket by bucket) and whose split is `split_hash: amplitude` with explicit
//!   `ranges` over `0..42,949,673` (or a single variant when the function is constant);
//! - a unit without a bucketing id (missing or empty) gets the segment's variant: an experiment on
//!   the constant unit type [`EVERYONE`] targeted at contexts without that id;
//! - a segment without a bucket → an experiment on [`EVERYONE`];
//! - the segment's conditions → targeting over the flattened attributes (an OR of clauses is one
//!   experiment per clause: they give the same answer), conditions on an earlier flag's variant
//!   (`result.<flag>.key`, how mutual exclusion groups and holdouts are read) → prerequisites on
//!   that flag's experiments, when its answer is one experiment's per bucket (a group or holdout
//!   flag as Amplitude writes them);
//! - the flag's answer is the first of its experiments, in segment order, whose variant is not
//!   [`PASS`] ([`answer`]).
//!
//! What cannot map is reported and its flag is not written: version and regular-expression
//! operators, selectors outside `context.user` or through arrays, results other than an earlier
//! flag's variant key, dependencies on flags whose answer is not one experiment's, and more (see
//! the reasons in [`Report::unmapped`]).

use super::{coerce_string_array, Bucket, Condition, Flag, Flags, Op, Segment, Selector};
use crate::js::{coerce_string, is_array_index, parse_number};
use crate::CompatError;
use allot_core::bucketset::BucketBitmap;
use allot_core::hash::{AMPLITUDE_BUCKETS, AMPLITUDE_SPLIT_BUCKETS};
use allot_core::state::{DrawOp, OwnerKind};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The marker variant of a segment's outcome that gives no variant: the next segment decides.
pub const PASS: &str = "_none";
/// The unit type every flattened context has one unit of (attribute [`EVERYONE_ATTRIBUTE`]):
/// what segments without a bucket, and units without a bucketing id, are assigned through.
pub const EVERYONE: &str = "everyone";
/// The attribute [`flatten_context`] sets on every context, the id of its [`EVERYONE`] unit.
pub const EVERYONE_ATTRIBUTE: &str = "amplitude_context";
/// Suffix of the attribute holding the text Amplitude buckets a value by (`String()` of it; an
/// array as `JSON.stringify` writes it): the unit id of the Amplitude-hashed unit types.
pub const ID_SUFFIX: &str = "#id";
/// Suffix of the attribute holding JavaScript's `Number()` of a value (the numeric operators).
pub const NUMBER_SUFFIX: &str = "#number";
/// Suffix of the attribute holding a value's lower-case text (`contains`, `does not contain`).
pub const LOWER_SUFFIX: &str = "#lower";

/// Suffix of the attribute holding each value as an orderable SemVer key for the `version`
/// operators: its Amplitude version when it parses as one, else its text ([`TEXT_SUFFIX`]'s key).
pub const VERSION_SUFFIX: &str = "#version";
/// Suffix of the attribute holding each value's text as a SemVer key whose precedence is
/// JavaScript's string order (the `version` operators' fallback).
pub const TEXT_SUFFIX: &str = "#text";

/// Most experiments one segment clause may expand into (dependencies multiply).
const MAX_COMBINATIONS: usize = 64;

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The time recorded in the change log (RFC 3339; the core reads no clock).
    pub time: String,
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The configuration as a JSON tree (write it as `allot.yaml`).
    pub config: Value,
    /// The recorded state: the configuration applied, allocations exactly Amplitude's buckets.
    pub state: allot_core::state::State,
    /// What was imported and what was not mapped.
    pub report: Report,
}

/// The import report (`--report FILE` writes it as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `amplitude`.
    pub source: &'static str,
    /// Flags imported, each with its experiments in segment order.
    pub flags: Vec<FlagReport>,
    /// Always empty: nothing of an Amplitude configuration can be dropped as never assigning
    /// (kept for the shape Confidence's report has).
    pub dropped: Vec<Entry>,
    /// What did not map, with why; the flags concerned are not imported.
    pub unmapped: Vec<Entry>,
    /// Differences that hold for every imported flag.
    pub caveats: Vec<String>,
}

impl Report {
    /// Whether every flag was imported.
    pub fn complete(&self) -> bool {
        self.unmapped.is_empty()
    }
}

/// One imported flag.
#[derive(Debug, Clone, Serialize)]
pub struct FlagReport {
    /// The Amplitude flag key.
    pub flag: String,
    /// Its experiments in segment order: the flag's variant is the first of their variants that
    /// is not [`PASS`] ([`answer`]); none: no variant. Empty: the flag never gives one.
    pub experiments: Vec<String>,
    /// `metadata.deployed` (false for group and holdout flags): SDKs hide undeployed flags.
    pub deployed: bool,
    /// Its default ("off") variants, which SDKs hide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<String>,
}

/// A construct not mapped.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// `flag`, `segment`.
    pub kind: &'static str,
    /// Its name (`<flag>` or `<flag>.segments[i]`).
    pub name: String,
    /// The flag concerned, for a segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Why.
    pub reason: String,
}

/// A flag's answer from its experiments' variant names in order (`None`: no variant).
pub fn answer<'a>(variants: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    variants.into_iter().flatten().find(|v| *v != PASS).map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Flattening
// ---------------------------------------------------------------------------------------------

/// An Amplitude context (`{"user": {...}}`) as the flat attributes the imported configuration
/// reads: each value under `user` at path `p` (object keys joined by `.`, objects descended, keys
/// holding `.` or `#` left out) as Amplitude's conditions read it — a string (numbers and booleans
/// as JavaScript prints them, objects as `JSON.stringify` writes them), or a list of strings for
/// an array or a string that parses as a JSON array (nulls and empty strings left out); beside
/// it `p#lower` (lower case), `p#number` (`Number()` of each, when one is a number; infinities
/// as ±`f64::MAX`, others null), `p#id` (the text Amplitude buckets it by), `p#version` and `p#text` (SemVer keys that order as Amplitude's
/// `version` operators compare); `null` values are left out. Plus `amplitude_context: "1"`.
pub fn flatten_context(ctx: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(Value::Object(user)) = ctx.get("user") {
        flatten_into(&mut out, "", user);
    }
    out.insert(EVERYONE_ATTRIBUTE.into(), json!("1"));
    out
}

fn js_number(s: &str) -> Value {
    let n = parse_number(s);
    if n.is_nan() {
        Value::Null
    } else {
        let n = if n.is_infinite() { f64::MAX.copysign(n) } else { n };
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Text as a SemVer key whose precedence is JavaScript's string order (UTF-16 code units): one
/// pre-release identifier of 4 hex digits per unit, below `0.0.0`.
fn text_key(s: &str) -> String {
    let hex: String = s.encode_utf16().map(|u| format!("{u:04x}")).collect();
    format!("0.0.0-s{hex}")
}

/// An Amplitude version as a SemVer key whose precedence is Amplitude's order: above `0.0.0`,
/// each part as the bits of its (non-negative) double, which order as the doubles do, and the
/// pre-release's text after (`y…`) sorting before none (`z`).
fn version_key(v: &super::Version) -> String {
    let pre = match &v.pre {
        None => "z".to_string(),
        Some(p) => format!("y{}", p.encode_utf16().map(|u| format!("{u:04x}")).collect::<String>()),
    };
    format!("1.0.0-v.{}.{}.{}.{pre}", v.major.to_bits(), v.minor.to_bits(), v.patch.to_bits())
}

fn version_or_text(s: &str) -> String {
    super::Version::parse(s).map_or_else(|| text_key(s), |v| version_key(&v))
}

fn flatten_into(out: &mut Map<String, Value>, prefix: &str, obj: &Map<String, Value>) {
    for (k, v) in obj {
        if k.contains('.') || k.contains('#') || k.is_empty() {
            continue;
        }
        let path = format!("{prefix}{k}");
        if v.is_null() {
            continue;
        }
        let id = match v {
            Value::String(s) => s.clone(),
            other => coerce_string(other),
        };
        out.insert(format!("{path}{ID_SUFFIX}"), json!(id));
        let texts: Result<String, Vec<String>> = match coerce_string_array(v) {
            Some(list) => Err(list),
            None => Ok(match v {
                Value::String(s) => s.clone(),
                other => coerce_string(other),
            }),
        };
        match texts {
            Ok(s) => {
                out.insert(format!("{path}{LOWER_SUFFIX}"), json!(s.to_lowercase()));
                out.insert(format!("{path}{VERSION_SUFFIX}"), json!(version_or_text(&s)));
                out.insert(format!("{path}{TEXT_SUFFIX}"), json!(text_key(&s)));
                let n = js_number(&s);
                if !n.is_null() {
                    out.insert(format!("{path}{NUMBER_SUFFIX}"), n);
                }
                out.insert(path.clone(), json!(s));
            }
            Err(list) => {
                out.insert(
                    format!("{path}{LOWER_SUFFIX}"),
                    json!(list.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>()),
                );
                let versions: Vec<String> = list.iter().map(|s| version_or_text(s)).collect();
                out.insert(format!("{path}{VERSION_SUFFIX}"), json!(versions));
                out.insert(format!("{path}{TEXT_SUFFIX}"), json!(list.iter().map(|s| text_key(s)).collect::<Vec<_>>()));
                let nums: Vec<Value> = list.iter().map(|s| js_number(s)).collect();
                if nums.iter().any(|n| !n.is_null()) {
                    out.insert(format!("{path}{NUMBER_SUFFIX}"), Value::Array(nums));
                }
                out.insert(path.clone(), json!(list));
            }
        }
        if let Value::Object(inner) = v {
            flatten_into(out, &format!("{path}."), inner);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

type Why = String;

const NEVER: fn() -> Value = || json!({"any": []});

/// The flattened attribute a context selector reads, or why it has none.
fn attribute_of(path: &[String]) -> Result<String, Why> {
    let shown = format!("[\"context\", {}]", path.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "));
    match path.split_first() {
        Some((user, rest)) if user == "user" && !rest.is_empty() => {
            for step in rest {
                if step.contains('.') || step.contains('#') {
                    return Err(format!("selector {shown}: a step holding `.` or `#` has no flattened attribute"));
                }
                if is_array_index(step) || step == "length" {
                    return Err(format!(
                        "selector {shown}: `{step}` may step into an array, which the flattened context does not"
                    ));
                }
            }
            Ok(rest.join("."))
        }
        _ => Err(format!("selector {shown}: only the user's attributes (`context.user.*`) are flattened")),
    }
}

/// `true`/`false` in every ASCII case: Amplitude compares booleans case-insensitively.
fn casings(lower: &str) -> Vec<String> {
    let chars: Vec<char> = lower.chars().collect();
    (0..1u32 << chars.len())
        .map(|mask| {
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| if mask >> i & 1 == 1 { c.to_ascii_uppercase() } else { *c })
                .collect()
        })
        .collect()
}

fn booleanish(v: &str) -> Option<String> {
    let l = v.to_ascii_lowercase();
    (l == "true" || l == "false").then_some(l)
}

/// The strings an element equal to one of `values` may be, as Amplitude's `is` compares.
fn is_strings(values: &[String]) -> Vec<Value> {
    let mut out: Vec<String> = Vec::new();
    let any_bool = values.iter().any(|v| booleanish(v).is_some());
    for v in values {
        match booleanish(v) {
            Some(l) if any_bool => out.extend(casings(&l)),
            _ => out.push(v.clone()),
        }
    }
    let mut seen = BTreeSet::new();
    out.into_iter().filter(|s| seen.insert(s.clone())).map(Value::String).collect()
}

/// One value's test as Amplitude's `set contains` compares it with an element.
fn member_strings(f: &str) -> Vec<Value> {
    match booleanish(f) {
        Some(l) => casings(&l).into_iter().map(Value::String).collect(),
        None => vec![json!(f)],
    }
}

fn is_list(a: &str) -> Value {
    json!({"all": [{"attribute": a, "exists": true}, {"not": {"attribute": a, "starts_with": ""}}]})
}

/// The condition on a present value of attribute `a` (a string or a list of strings).
fn present(a: &str, c: &Condition) -> Result<Value, Why> {
    let lower = format!("{a}{LOWER_SUFFIX}");
    let number = format!("{a}{NUMBER_SUFFIX}");
    let vals = &c.values;
    let distinct: Vec<String> = {
        let mut seen = BTreeSet::new();
        vals.iter().filter(|v| seen.insert((*v).clone())).cloned().collect()
    };
    Ok(match c.op {
        Op::Is if vals.is_empty() => NEVER(),
        Op::Is => json!({"attribute": a, "any": {"in": is_strings(vals)}}),
        Op::IsNot => json!({"attribute": a, "any": {"not_in": is_strings(vals)}}),
        Op::Contains if vals.is_empty() => NEVER(),
        Op::Contains => {
            json!({"any": c.lower.iter().map(|f| json!({"attribute": lower, "any": {"contains": f}})).collect::<Vec<_>>()})
        }
        Op::DoesNotContain => match c.lower.as_slice() {
            [] => json!({"attribute": a, "any": {"exists": true}}),
            [f] => json!({"all": [
                {"attribute": lower, "any": {"exists": true}},
                {"not": {"attribute": lower, "all": {"contains": f}}},
            ]}),
            _ => {
                return Err(
                    "`does not contain` with several values over a list needs a per-element negation allot's targeting has not".into(),
                )
            }
        },
        Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            let key = match c.op {
                Op::Less => "lt",
                Op::LessOrEqual => "lte",
                Op::Greater => "gt",
                _ => "gte",
            };
            let mut alts = vec![];
            for v in vals {
                let x = parse_number(v);
                if x.is_nan() {
                    continue;
                }
                if !x.is_finite() || x.abs() == f64::MAX {
                    return Err(format!("a numeric bound `{v}` that is infinite (or ±f64::MAX) has no finite allot bound"));
                }
                alts.push(json!({"attribute": number, "any": {key: x}}));
            }
            json!({"any": alts})
        }
        Op::VersionLess | Op::VersionLessOrEqual | Op::VersionGreater | Op::VersionGreaterOrEqual => {
            let (key, below) = match c.op {
                Op::VersionLess => ("semver_lt", true),
                Op::VersionLessOrEqual => ("semver_lte", true),
                Op::VersionGreater => ("semver_gt", false),
                _ => ("semver_gte", false),
            };
            let (version, text) = (format!("{a}{VERSION_SUFFIX}"), format!("{a}{TEXT_SUFFIX}"));
            if c.versions.is_empty() {
                // No value is a version: the engine compares every value as text.
                json!({"any": vals.iter().map(|f| json!({"attribute": text, "any": {key: text_key(f)}})).collect::<Vec<_>>()})
            } else {
                // A value that is a version is compared with the values that are (versions sort
                // above `0.0.0`), one that is not with every value as text (texts sort below it).
                let mut alts = vec![];
                for v in &c.versions {
                    let mut ops = Map::new();
                    ops.insert(key.into(), json!(version_key(v)));
                    if below {
                        ops.insert("semver_gt".into(), json!("0.0.0"));
                    }
                    alts.push(json!({"attribute": version, "any": ops}));
                }
                for f in vals {
                    let mut ops = Map::new();
                    ops.insert(key.into(), json!(text_key(f)));
                    if !below {
                        ops.insert("semver_lt".into(), json!("0.0.0"));
                    }
                    alts.push(json!({"attribute": version, "any": ops}));
                }
                json!({"any": alts})
            }
        }
        Op::RegexMatch | Op::RegexDoesNotMatch => {
            return Err("regular expressions: allot's targeting has no regular-expression operator".into())
        }
        Op::Unknown => NEVER(),
        Op::SetIs | Op::SetIsNot => {
            let core = if distinct.is_empty() {
                json!({"not": {"attribute": a, "any": {"exists": true}}})
            } else {
                let mut all = vec![json!({"attribute": a, "all": {"in": distinct}})];
                all.extend(distinct.iter().map(|d| json!({"attribute": a, "any": {"eq": d}})));
                json!({"all": all})
            };
            let core = if c.op == Op::SetIs { core } else { json!({"not": core}) };
            json!({"all": [is_list(a), core]})
        }
        Op::SetContains | Op::SetDoesNotContain => {
            if distinct.len() != vals.len() {
                return Err("a set operator whose values repeat (Amplitude then also compares list lengths)".into());
            }
            let all: Vec<Value> =
                vals.iter().map(|f| json!({"attribute": a, "any": {"in": member_strings(f)}})).collect();
            let core = json!({"all": all});
            let core = if c.op == Op::SetContains { core } else { json!({"not": core}) };
            json!({"all": [is_list(a), core]})
        }
        Op::SetContainsAny | Op::SetDoesNotContainAny => {
            let any: Vec<Value> = vals.iter().flat_map(|f| member_strings(f)).collect();
            let core = json!({"attribute": a, "any": {"in": any}});
            let core = if c.op == Op::SetContainsAny { core } else { json!({"not": core}) };
            json!({"all": [is_list(a), core]})
        }
    })
}

/// A condition on a context attribute: present as [`present`], missing as the engine's
/// `matchNull` (positive operators match a missing value when a value is `(none)`).
fn context_condition(a: &str, c: &Condition) -> Result<Value, Why> {
    let p = present(a, c)?;
    Ok(if super::match_null(c) { json!({"any": [{"attribute": a, "exists": false}, p]}) } else { p })
}

/// A unit without a bucketing id: the attribute missing, or empty text.
fn without_id(a: &str) -> Value {
    let id = format!("{a}{ID_SUFFIX}");
    json!({"any": [{"attribute": id, "exists": false}, {"attribute": id, "eq": ""}]})
}

// ---------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------

/// How another flag's answer is read by a `result.<flag>.key` condition.
#[derive(Debug, Clone)]
enum DepForm {
    /// The same variant for every context (`None`: no variant).
    Constant(Option<usize>),
    /// Units with a bucketing id in attribute `attribute` get the variant of the one experiment
    /// holding their bucket (its variants: allot name and Amplitude variant index, `None` for
    /// [`PASS`]); units without one get `missing`.
    Bucketed { attribute: String, groups: Vec<FormGroup>, missing: Option<usize> },
}

/// One alternative of a condition: targeting and/or a prerequisite.
#[derive(Debug, Clone, Default)]
struct Alt {
    targeting: Vec<Value>,
    requires: BTreeMap<String, BTreeSet<String>>,
}

/// An experiment to write.
struct Out {
    id: String,
    experiment: Value,
    /// The buckets its allocation holds (of its unit type's space).
    buckets: BucketBitmap,
}

/// What a flag's segments gave.
struct FlagOut {
    experiments: Vec<Out>,
    form: Option<DepForm>,
}

struct Importer<'f> {
    flags: &'f Flags,
    /// Position of each flag in evaluation order.
    position: Vec<usize>,
    forms: HashMap<usize, DepForm>,
    /// Flags some `result.<flag>.key` condition reads.
    read: BTreeSet<usize>,
    /// Unit types by (attribute, salt).
    units: HashMap<(String, String), String>,
    unit_names: BTreeSet<String>,
    /// Unit types in the order first needed.
    declared: Vec<(String, Value)>,
}

/// The outcome of a split bucket: a variant index, or none (the next segment).
type Outcome = Option<usize>;
/// A function of the split bucket: ranges tiling `0..AMPLITUDE_SPLIT_BUCKETS` and their outcomes.
type SplitFn = Vec<(u32, u32, Outcome)>;
/// A native variant: its name, its ranges (none: the only variant) and its Amplitude outcome.
type NativeVariant = (String, Vec<(u32, u32)>, Outcome);
/// An experiment of a segment before its clauses: unit type, buckets, variants.
type Group = (String, BucketBitmap, Vec<NativeVariant>);
/// A dependency's experiment and its variants (allot name, Amplitude variant index).
type FormGroup = (String, Vec<(String, Option<usize>)>);

impl Importer<'_> {
    /// The unit type of (attribute, salt) — its ids read from `<attribute>#id` — declared in `self.declared` the first time (also for a
    /// flag that then does not map: only the unit types experiments use are written).
    fn unit_for(&mut self, attribute: &str, salt: &str) -> String {
        if let Some(n) = self.units.get(&(attribute.to_string(), salt.to_string())) {
            return n.clone();
        }
        let mut base: String = format!("{attribute}-{salt}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_".contains(c) { c } else { '_' })
            .collect();
        base.truncate(100);
        let mut name = base.clone();
        let mut k = 2;
        while self.unit_names.contains(&name) || name == EVERYONE {
            name = format!("{base}-{k}");
            k += 1;
        }
        self.unit_names.insert(name.clone());
        self.units.insert((attribute.to_string(), salt.to_string()), name.clone());
        let id = format!("{attribute}{ID_SUFFIX}");
        self.declared.push((name.clone(), json!({"attribute": id, "salt": salt, "hash": "amplitude"})));
        name
    }

    /// The alternatives of one condition of flag `fi`; empty: it never holds.
    fn condition(&self, fi: usize, c: &Condition) -> Result<Vec<Alt>, Why> {
        let always = || vec![Alt::default()];
        match &c.selector {
            Selector::Nothing => Ok(if super::match_null(c) { always() } else { vec![] }),
            Selector::Context(id) => {
                let a = attribute_of(&self.flags.paths[*id])?;
                Ok(vec![Alt { targeting: vec![context_condition(&a, c)?], ..Alt::default() }])
            }
            Selector::ResultKey(dep) => {
                let Some((per_variant, none)) = &c.by_variant else {
                    return Err("a condition on a flag's variant without its table (internal)".into());
                };
                let truth = |v: Option<usize>| v.map_or(*none, |i| per_variant[i]);
                // A flag evaluated later (or itself) has no result yet: the engine sees none.
                if self.position[*dep] >= self.position[fi] {
                    return Ok(if *none { always() } else { vec![] });
                }
                let key = &self.flags.flags[*dep].key;
                match self.forms.get(dep) {
                    None => Err(format!(
                        "it reads flag {key}'s variant, and that flag's answer is not one imported experiment's per bucket"
                    )),
                    Some(DepForm::Constant(v)) => Ok(if truth(*v) { always() } else { vec![] }),
                    Some(DepForm::Bucketed { attribute, groups, missing }) => {
                        let mut alts = vec![];
                        for (exp, variants) in groups {
                            let ok: BTreeSet<String> =
                                variants.iter().filter(|(_, v)| truth(*v)).map(|(n, _)| n.clone()).collect();
                            if !ok.is_empty() {
                                alts.push(Alt { requires: BTreeMap::from([(exp.clone(), ok)]), ..Alt::default() });
                            }
                        }
                        if truth(*missing) {
                            alts.push(Alt { targeting: vec![without_id(attribute)], ..Alt::default() });
                        }
                        Ok(alts)
                    }
                }
            }
            Selector::Result(..) | Selector::Merged(..) => Err(
                "it reads a flag's result other than its variant key (value, payload, metadata): allot's prerequisites read variants only"
                    .into(),
            ),
        }
    }

    /// The clauses of a segment's conditions, each expanded into alternatives.
    fn clauses(&self, fi: usize, seg: &Segment) -> Result<Vec<Alt>, Why> {
        let Some(ors) = &seg.conditions else { return Ok(vec![Alt::default()]) };
        let mut out = vec![];
        for ands in ors {
            let mut combos = vec![Alt::default()];
            for c in ands {
                let alts = self.condition(fi, c)?;
                let mut next = vec![];
                for base in &combos {
                    for alt in &alts {
                        let mut m = base.clone();
                        m.targeting.extend(alt.targeting.iter().cloned());
                        let mut possible = true;
                        for (exp, ok) in &alt.requires {
                            let merged: BTreeSet<String> = match m.requires.get(exp) {
                                Some(prev) => prev.intersection(ok).cloned().collect(),
                                None => ok.clone(),
                            };
                            possible &= !merged.is_empty();
                            m.requires.insert(exp.clone(), merged);
                        }
                        if possible {
                            next.push(m);
                        }
                    }
                }
                if next.len() > MAX_COMBINATIONS {
                    return Err(format!("its conditions expand into more than {MAX_COMBINATIONS} experiments"));
                }
                combos = next;
            }
            out.extend(combos);
        }
        if out.len() > MAX_COMBINATIONS {
            return Err(format!("its conditions expand into more than {MAX_COMBINATIONS} experiments"));
        }
        Ok(out)
    }

    /// Per bucket of `0..100`: the split function (tiling of `0..AMPLITUDE_SPLIT_BUCKETS`).
    fn functions(b: &Bucket, fallback: Outcome) -> Vec<SplitFn> {
        let full = AMPLITUDE_SPLIT_BUCKETS;
        let clamp = |x: f64| -> u32 {
            if x.is_nan() {
                full
            } else {
                x.ceil().clamp(0.0, f64::from(full)) as u32
            }
        };
        (0..AMPLITUDE_BUCKETS)
            .map(|bucket| {
                let x = f64::from(bucket);
                let holding: Vec<&super::Allocation> =
                    b.allocations.iter().filter(|a| x >= a.range.0 && x < a.range.1).collect();
                let mut cuts: Vec<u32> = vec![0, full];
                for a in &holding {
                    for ((lo, hi), _) in &a.distributions {
                        if !(lo.is_nan() || hi.is_nan()) {
                            cuts.push(clamp(*lo));
                            cuts.push(clamp(*hi));
                        }
                    }
                }
                cuts.sort_unstable();
                cuts.dedup();
                let mut pieces: SplitFn = vec![];
                for w in cuts.windows(2) {
                    let d = f64::from(w[0]);
                    let found = holding
                        .iter()
                        .flat_map(|a| a.distributions.iter())
                        .find(|((lo, hi), _)| d >= *lo && d < *hi)
                        .map(|(_, v)| *v);
                    let outcome = found.unwrap_or(fallback);
                    match pieces.last_mut() {
                        Some(last) if last.2 == outcome => last.1 = w[1],
                        _ => pieces.push((w[0], w[1], outcome)),
                    }
                }
                pieces
            })
            .collect()
    }

    fn flag(&mut self, fi: usize) -> Result<FlagOut, (Option<usize>, Why)> {
        let flags = self.flags;
        let flag: &Flag = &flags.flags[fi];
        if !allot_core::config::is_ident(&flag.key) || flag.key.len() > 100 {
            return Err((None, format!("flag key `{}` is not a valid allot experiment id", flag.key)));
        }
        let name_of = |v: usize| -> Result<String, Why> {
            let key = &flag.variants[v].key;
            if flag.variants[v].object.get("key").is_none() {
                return Err(format!(
                    "variant `{key}` has no `key`: the engine gives it without one, allot's variants have names"
                ));
            }
            if !allot_core::config::is_ident(key) || key.starts_with('_') {
                return Err(format!("variant key `{key}` is not a valid allot variant name"));
            }
            Ok(key.clone())
        };
        let value_of = |v: usize| flag.variants[v].object.get("value").cloned();
        let mut out = FlagOut { experiments: vec![], form: None };
        let mut n = 0usize;
        let mut next_id = |si: usize| {
            n += 1;
            format!("{}.s{si}.{n}", flag.key)
        };
        let single = flag.segments.len() == 1;
        for (si, seg) in flag.segments.iter().enumerate() {
            let fail = |why: Why| (Some(si), why);
            let clauses = self.clauses(fi, seg).map_err(fail)?;
            // The bucketing attribute, when the segment buckets by a context attribute.
            let bucket = match &seg.bucket {
                Some(b) => match &b.selector {
                    Selector::Nothing => None,
                    Selector::Context(id) => {
                        let a = attribute_of(&flags.paths[*id]).map_err(fail)?;
                        Some((a, b))
                    }
                    _ => return Err(fail("it buckets by another flag's result".into())),
                },
                None => None,
            };
            let reads_first = si == 0 && seg.conditions.is_none() && self.read.contains(&fi);
            // (unit type, buckets, variants as (name, ranges or none, amplitude index)).
            let mut groups: Vec<Group> = vec![];
            let mut form_groups = vec![];
            let missing_outcome = seg.variant;
            match &bucket {
                None => {
                    if let Some(v) = seg.variant {
                        groups.push((
                            EVERYONE.to_string(),
                            BucketBitmap::full(1),
                            vec![(name_of(v).map_err(fail)?, vec![], Some(v))],
                        ));
                    }
                    if si == 0 && seg.conditions.is_none() && (seg.variant.is_some() || single) {
                        out.form = Some(DepForm::Constant(seg.variant));
                    }
                }
                Some((a, b)) => {
                    let unit = self.unit_for(a, &b.salt);
                    let fns = Self::functions(b, seg.variant);
                    let mut by_fn: Vec<(SplitFn, BucketBitmap)> = vec![];
                    for (bucket, f) in fns.into_iter().enumerate() {
                        match by_fn.iter_mut().find(|(g, _)| *g == f) {
                            Some((_, bits)) => bits.insert(bucket as u32),
                            None => {
                                let mut bits = BucketBitmap::empty(AMPLITUDE_BUCKETS);
                                bits.insert(bucket as u32);
                                by_fn.push((f, bits));
                            }
                        }
                    }
                    let mut passes = false;
                    for (f, bits) in by_fn {
                        passes |= f.iter().any(|p| p.2.is_none());
                        if f.len() == 1 && f[0].2.is_none() && !reads_first {
                            continue;
                        }
                        // Variants by allot name, their ranges merged.
                        let mut vs: Vec<NativeVariant> = vec![];
                        for (lo, hi, o) in &f {
                            let name = match o {
                                Some(v) => name_of(*v).map_err(fail)?,
                                None => PASS.to_string(),
                            };
                            match vs.iter_mut().find(|x| x.0 == name) {
                                Some(x) => x.1.push((*lo, *hi)),
                                None => vs.push((name, vec![(*lo, *hi)], *o)),
                            }
                        }
                        if vs.len() == 1 {
                            vs[0].1.clear();
                        }
                        groups.push((unit.clone(), bits, vs));
                    }
                    if let Some(v) = missing_outcome {
                        groups.push((
                            EVERYONE.to_string(),
                            BucketBitmap::full(1),
                            vec![(name_of(v).map_err(fail)?, vec![], Some(v))],
                        ));
                    }
                    if reads_first && (!passes || single) && (missing_outcome.is_some() || single) {
                        form_groups = groups.iter().filter(|g| g.0 != EVERYONE).cloned().collect();
                        out.form =
                            Some(DepForm::Bucketed { attribute: a.clone(), groups: vec![], missing: missing_outcome });
                    }
                }
            }
            let mut form_ids = vec![];
            for (unit, bits, vs) in &groups {
                for clause in &clauses {
                    let id = next_id(si);
                    let mut e = Map::new();
                    e.insert("unit".into(), json!(unit));
                    e.insert("share".into(), json!(format!("{}%", bits.len() * 100 / u64::from(bits.space()))));
                    let mut vmap = Map::new();
                    for (name, ranges, o) in vs {
                        let mut v = Map::new();
                        if ranges.is_empty() {
                            v.insert("weight".into(), json!(1));
                        } else {
                            v.insert(
                                "ranges".into(),
                                json!(ranges.iter().map(|(l, h)| json!([l, h])).collect::<Vec<_>>()),
                            );
                        }
                        if let Some(value) = (*o).and_then(value_of) {
                            v.insert("value".into(), value);
                        }
                        vmap.insert(name.clone(), Value::Object(v));
                    }
                    let explicit = vs.iter().any(|v| !v.1.is_empty());
                    e.insert("variants".into(), Value::Object(vmap));
                    let mut targeting = clause.targeting.clone();
                    if unit == EVERYONE {
                        if let Some((a, _)) = &bucket {
                            targeting.push(without_id(a));
                        }
                    }
                    match targeting.len() {
                        0 => {}
                        1 => {
                            e.insert("targeting".into(), targeting.remove(0));
                        }
                        _ => {
                            e.insert("targeting".into(), json!({"all": targeting}));
                        }
                    }
                    if !clause.requires.is_empty() {
                        e.insert(
                            "requires".into(),
                            Value::Array(
                                clause
                                    .requires
                                    .iter()
                                    .map(|(x, ok)| json!({"experiment": x, "variants": ok.iter().collect::<Vec<_>>()}))
                                    .collect(),
                            ),
                        );
                    }
                    if explicit {
                        if let Some((_, b)) = &bucket {
                            e.insert("salt".into(), json!(b.salt));
                            e.insert("split_hash".into(), json!("amplitude"));
                        }
                    }
                    e.insert("state".into(), json!("running"));
                    e.insert(
                        "description".into(),
                        json!(format!("Amplitude flag {} segment {} of {}", flag.key, si + 1, flag.segments.len())),
                    );
                    if form_groups.iter().any(|g| g.0 == *unit && g.1 == *bits) && clauses.len() == 1 {
                        form_ids.push((id.clone(), vs.iter().map(|v| (v.0.clone(), v.2)).collect::<Vec<_>>()));
                    }
                    out.experiments.push(Out { id, experiment: Value::Object(e), buckets: bits.clone() });
                }
            }
            if let Some(DepForm::Bucketed { groups, .. }) = &mut out.form {
                if si == 0 {
                    *groups = form_ids;
                }
            }
        }
        Ok(out)
    }
}

impl Flags {
    /// Imports the whole configuration (see the module documentation).
    pub fn import(&self, opts: &ImportOptions) -> Result<Imported, CompatError> {
        let mut position = vec![0; self.flags.len()];
        for (p, &i) in self.order.iter().enumerate() {
            position[i] = p;
        }
        let mut read = BTreeSet::new();
        for f in &self.flags {
            for seg in &f.segments {
                for c in seg.conditions.iter().flatten().flatten() {
                    if let Selector::ResultKey(d) = c.selector {
                        read.insert(d);
                    }
                }
            }
        }
        let mut im = Importer {
            flags: self,
            position,
            forms: HashMap::new(),
            read,
            units: HashMap::new(),
            unit_names: BTreeSet::new(),
            declared: vec![],
        };
        let mut report = Report {
            source: "amplitude",
            flags: vec![],
            dropped: vec![],
            unmapped: vec![],
            caveats: vec![
                "contexts must be flattened as `allot compat amplitude flatten` does (docs/compat.md): attributes under `user` joined by `.`, with `#id`, `#lower`, `#number`, `#version` and `#text` beside each, and `amplitude_context: \"1\"`".into(),
                "variant payloads and metadata are not imported (the variant's `value` is)".into(),
            ],
        };
        let mut experiments = Map::new();
        let mut buckets: Vec<(String, BucketBitmap)> = vec![];
        let mut by_flag: Vec<Option<FlagReport>> = vec![None; self.flags.len()];
        let mut any_everyone = false;
        for &fi in &self.order {
            let flag = &self.flags[fi];
            match im.flag(fi) {
                Ok(out) => {
                    if let Some(form) = out.form {
                        im.forms.insert(fi, form);
                    }
                    let mut ids = vec![];
                    for e in out.experiments {
                        any_everyone |= e.experiment["unit"] == EVERYONE;
                        ids.push(e.id.clone());
                        buckets.push((e.id.clone(), e.buckets));
                        if experiments.insert(e.id.clone(), e.experiment).is_some() {
                            return Err(CompatError::invalid(
                                "import",
                                format!("internal error, please report: experiment id {} twice", e.id),
                            ));
                        }
                    }
                    let defaults = flag.variants.iter().filter(|v| v.default).map(|v| v.key.clone()).collect();
                    by_flag[fi] = Some(FlagReport {
                        flag: flag.key.clone(),
                        experiments: ids,
                        deployed: flag.deployed,
                        defaults,
                    });
                }
                Err((seg, why)) => {
                    report.unmapped.push(Entry {
                        kind: "flag",
                        name: flag.key.clone(),
                        flag: None,
                        reason: "not imported: it does not map (below); a flag is exact only when all its segments are"
                            .into(),
                    });
                    report.unmapped.push(Entry {
                        kind: if seg.is_some() { "segment" } else { "flag" },
                        name: seg.map_or(flag.key.clone(), |s| format!("{}.segments[{s}]", flag.key)),
                        flag: Some(flag.key.clone()),
                        reason: why,
                    });
                }
            }
        }
        report.flags = by_flag.into_iter().flatten().collect();
        // A unit type only some unmapped flag used is left out.
        let used: BTreeSet<&str> = experiments.values().filter_map(|e| e["unit"].as_str()).collect();
        let mut umap = Map::new();
        if any_everyone {
            umap.insert(
                EVERYONE.into(),
                json!({"attribute": EVERYONE_ATTRIBUTE, "buckets": 1, "salt": "amplitude-everyone"}),
            );
        }
        for (name, u) in std::mem::take(&mut im.declared) {
            if used.contains(name.as_str()) {
                umap.insert(name, u);
            }
        }
        let mut config = Map::new();
        if !umap.is_empty() {
            config.insert("units".into(), Value::Object(umap));
        }
        if !experiments.is_empty() {
            config.insert("experiments".into(), Value::Object(experiments));
        }
        let config = Value::Object(config);
        let state = record(&config, &buckets, opts)?;
        Ok(Imported { config, state, report })
    }
}

/// Applies the configuration to an empty state, then records each experiment's allocation as
/// exactly Amplitude's buckets (the draw's buckets replaced, same count) and checks that planning
/// the configuration again over the result changes nothing.
fn record(
    config: &Value,
    sets: &[(String, BucketBitmap)],
    opts: &ImportOptions,
) -> Result<allot_core::state::State, CompatError> {
    use allot_core::plan;
    let internal = |m: String| CompatError::invalid("import", format!("internal error, please report: {m}"));
    let cfg = allot_core::config::validate(config)
        .map_err(|es| internal(format!("the imported configuration does not validate: {}", allot_core::Errors(es))))?;
    let options = plan::Options {
        time: opts.time.clone(),
        actor: Some("allot compat amplitude import".into()),
        reason: Some("imported from an Amplitude flag configuration; allocations are Amplitude's buckets".into()),
        ..plan::Options::default()
    };
    let applied = plan::apply(&allot_core::state::State::default(), &cfg, config, &options)
        .map_err(|e| internal(format!("applying the imported configuration: {e}")))?;
    let mut state = applied.state;
    for (id, bits) in sets {
        let Some(a) = state.live_mut(OwnerKind::Experiment, id) else {
            return Err(internal(format!("experiment {id} holds no allocation")));
        };
        let [draw] = a.draws.as_mut_slice() else {
            return Err(internal(format!("experiment {id} was drawn more than once")));
        };
        if draw.op != DrawOp::Add || draw.buckets.len() != bits.len() {
            return Err(internal(format!("experiment {id} drew {} buckets, not {}", draw.buckets.len(), bits.len())));
        }
        draw.buckets = bits.compact();
        draw.seed = 0;
    }
    let again = plan::plan(&state, &cfg, config, &options).map_err(|e| internal(format!("{e:?}")))?;
    if !again.is_empty() || !again.refusals.is_empty() {
        return Err(internal(format!("planning the import again changes {:?}", again.changes)));
    }
    Ok(state)
}
