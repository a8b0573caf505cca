//! Migrate in: a Confidence resolver state as a native `allot.yaml` and its recorded state, for
//! one client, so that `allot assign` gives the assignments Confidence's resolver gives.
//!
//! How a Confidence construct maps (docs/compat.md, "Importing"):
//!
//! - a rule's targeting key selector → a unit type named after it, with Confidence's segment
//!   hash: salt `MegaSalt-<account>`, 1,000,000 buckets (allot's own bucket function);
//! - each rule of a flag that can assign → one running experiment `<flag>.<rule>` whose
//!   allocation is the rule's segment bitset exactly (recorded bucket by bucket, not drawn), whose
//!   targeting is the segment's targeting in allot's language (nested segments inlined), and whose
//!   split is the rule's: salt = the segment id, explicit `ranges` over the rule's bucket count
//!   (the core's `Variant::ranges`), one native variant per Confidence variant, and marker variants
//!   for what is not a variant: [`FALLTHROUGH`], [`CLIENT_DEFAULT`], [`NO_ASSIGNMENT`];
//! - the flag's answer is the first of its experiments, in rule order, that gives a variant other
//!   than the two pass-through markers ([`answer`]); that is the resolver's rule order exactly,
//!   since each rule's outcome depends only on the context and its own segment and split.
//!
//! What cannot map is reported and its flag is not written (a flag is exact only when all its
//! rules are): materializations (sticky reads, materialized segments, bloom filters), nested
//! attribute paths, timestamp and version rules, string ranges, some `allRule`s, the `"null"` text that
//! Confidence gives missing values, attributes the client's managed context sets, and more;
//! see [`Unmapped`]'s uses. Rules that can never assign (disabled, another environment, no
//! segment, an empty bitset) are listed as dropped, with why.
//!
//! Exact for contexts whose unit ids are absent or non-empty strings of at most 100 bytes (the
//! resolver also reads integral numbers, errs on other types and longer keys, and evaluates a
//! blank selector without a key; allot reads a missing unit). The differential test checks the
//! rest against the resolver.

use super::{AttrRule, Client, Criterion, Expected, Expr, Kind, Op, Segment, State, Targeting, TypedValue, BUCKETS};
use crate::CompatError;
use allot_core::bucketset::BucketBitmap;
use allot_core::state::{DrawOp, OwnerKind};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The marker variant of ranges whose assignment falls through to the next rule (Confidence
/// applies the flag, then goes on).
pub const FALLTHROUGH: &str = "_fallthrough";
/// The marker variant of ranges whose assignment is the client's default: the flag matches with
/// no variant and no later rule is consulted.
pub const CLIENT_DEFAULT: &str = "_client_default";
/// The marker variant of ranges no assignment covers (or an assignment of no kind): the next
/// rule is consulted.
pub const NO_ASSIGNMENT: &str = "_none";

/// Most targeting nodes an imported targeting may have (allot's own bound).
const MAX_NODES: usize = 10_000;

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The client secret whose client and environments decide which flags and rules apply;
    /// `None` when the state has exactly one credential.
    pub client_secret: Option<String>,
    /// The time recorded in the change log (RFC 3339; the core reads no clock).
    pub time: String,
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The configuration as a JSON tree (write it as `allot.yaml`).
    pub config: Value,
    /// The recorded state: the configuration applied, with the segments' bitsets as allocations.
    pub state: allot_core::state::State,
    /// What was imported, dropped and not mapped.
    pub report: Report,
}

/// The import report (`--report FILE` writes it as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `confidence`.
    pub source: &'static str,
    /// The client imported for.
    pub client: String,
    /// Flags imported: each with its experiments in rule order.
    pub flags: Vec<FlagReport>,
    /// Rules dropped because they can never assign for this client, with why (exact: nothing is
    /// lost).
    pub dropped: Vec<Entry>,
    /// What did not map, with why; the flags concerned are not imported.
    pub unmapped: Vec<Entry>,
    /// Differences that hold for every imported flag.
    pub caveats: Vec<String>,
}

impl Report {
    /// Whether everything the client can resolve was imported.
    pub fn complete(&self) -> bool {
        self.unmapped.is_empty()
    }
}

/// One imported flag.
#[derive(Debug, Clone, Serialize)]
pub struct FlagReport {
    /// The Confidence flag (`flags/<id>`).
    pub flag: String,
    /// Its experiments in rule order: the flag's answer is the first that gives a variant other
    /// than the pass-through markers ([`answer`]). Empty: the flag never assigns.
    pub experiments: Vec<String>,
    /// Its rules (Confidence names) that the resolver also applies to a context without
    /// `targeting_key` (a blank selector, a bitset that reads as full without a unit, one
    /// assignment over all buckets), imported or dropped; allot reads such a context as missing
    /// the unit (`MISSING_UNIT`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keyless: Vec<String>,
}

/// A construct dropped or not mapped.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// `flag`, `rule`, `segment`, `client`.
    pub kind: &'static str,
    /// Its Confidence name.
    pub name: String,
    /// The flag concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Why.
    pub reason: String,
}

/// A flag's answer, as the resolver gives it, from its experiments' native variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A rule assigned this variant (its native name: the last part of `flags/<f>/variants/<v>`).
    Variant(String),
    /// A rule matched with the client's default: no variant.
    ClientDefault,
    /// No rule matched.
    NoMatch,
}

/// The flag's answer from the native variants of its experiments in rule order (`None`: the
/// experiment gave no variant).
pub fn answer<'a>(variants: impl IntoIterator<Item = Option<&'a str>>) -> Answer {
    for v in variants.into_iter().flatten() {
        match v {
            FALLTHROUGH | NO_ASSIGNMENT => continue,
            CLIENT_DEFAULT => return Answer::ClientDefault,
            v => return Answer::Variant(v.to_string()),
        }
    }
    Answer::NoMatch
}

/// Why one construct cannot map.
type Why = String;

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn percent(buckets: u64) -> String {
    // Buckets over 1,000,000: 10,000 buckets per percent, exact in four decimals.
    let (int, frac) = (buckets / 10_000, buckets % 10_000);
    if frac == 0 {
        format!("{int}%")
    } else {
        format!("{int}.{}%", format!("{frac:04}").trim_end_matches('0'))
    }
}

fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        json!(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// Translates a segment's targeting into allot's language. Each node is exact: on every context
/// it matches where the resolver's criterion matches (the resolver refusing the request aside).
struct Translator<'s> {
    state: &'s State,
    /// Top-level context keys the client's managed context sets.
    managed: Vec<String>,
    nodes: usize,
}

const NEVER: fn() -> Value = || json!({"any": []});

impl Translator<'_> {
    /// The targeting of segment `seg` (`None`: everyone), with `stack` the segments being
    /// expanded (a reference back to one of them is false, as the resolver's `visited`).
    fn segment(&mut self, seg: usize, stack: &mut Vec<usize>) -> Result<Option<Value>, Why> {
        let segment = &self.state.segments[seg];
        let Some(t) = &segment.targeting else { return Ok(None) };
        let Some(e) = &t.expression else { return Ok(None) };
        stack.push(seg);
        let out = self.expr(t, e, stack);
        stack.pop();
        out.map(Some)
    }

    fn count(&mut self) -> Result<(), Why> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(format!("its targeting expands past allot's bound of {MAX_NODES} nodes"));
        }
        Ok(())
    }

    fn expr(&mut self, t: &Targeting, e: &Expr, stack: &mut Vec<usize>) -> Result<Value, Why> {
        self.count()?;
        Ok(match e {
            Expr::Empty | Expr::Ref(None) => NEVER(),
            Expr::Ref(Some(i)) => self.criterion(&t.criteria[*i], stack)?,
            Expr::Not(inner) => json!({"not": self.expr(t, inner, stack)?}),
            Expr::And(ops) => {
                json!({"all": ops.iter().map(|o| self.expr(t, o, stack)).collect::<Result<Vec<_>, _>>()?})
            }
            Expr::Or(ops) => json!({"any": ops.iter().map(|o| self.expr(t, o, stack)).collect::<Result<Vec<_>, _>>()?}),
        })
    }

    fn criterion(&mut self, c: &Criterion, stack: &mut Vec<usize>) -> Result<Value, Why> {
        match c {
            Criterion::Unset | Criterion::Segment(None) => Ok(NEVER()),
            Criterion::Segment(Some(s)) => {
                if stack.contains(s) {
                    return Ok(NEVER());
                }
                let nested: &Segment = &self.state.segments[*s];
                // With a unit, only the bitset's own bits count (a short all-ones bitset is
                // `full` for units without a key, and partial for the others).
                if let Some((bits, _)) = &nested.bitset {
                    if bits.to_dense().len() < u64::from(BUCKETS) {
                        return Err(format!(
                            "it references segment {} whose bitset allocates part of the space: allot's targeting cannot test buckets",
                            nested.name
                        ));
                    }
                }
                Ok(self.segment(*s, stack)?.unwrap_or_else(|| json!({"all": []})))
            }
            Criterion::Materialized(m) => {
                Err(format!("it reads materialized segment {m} (a bloom filter or stored membership)"))
            }
            Criterion::Attribute(a) => self.attribute(a),
        }
    }

    fn attribute(&mut self, a: &super::Attribute) -> Result<Value, Why> {
        let name = a.path.join(".");
        if a.path.len() != 1 {
            return Err(format!("attribute `{name}` is a nested path; allot's targeting reads top-level attributes"));
        }
        if self.managed.contains(&a.path[0]) {
            return Err(format!("attribute `{name}` is set by the client's managed context"));
        }
        let alternatives = match &a.rule {
            AttrRule::Single(Op::NullEq) => {
                // Missing or null, or a list holding a null (inside a quantifier a null element
                // is missing).
                return Ok(json!({"any": [
                    {"attribute": name, "exists": false},
                    {"attribute": name, "any": {"exists": false}},
                ]}));
            }
            AttrRule::Single(op) => element(op, a.expected)?,
            // `any` over a missing value is false; over a scalar or a list, as the top level.
            AttrRule::Any(Some(Op::NullEq)) => vec![],
            AttrRule::Any(Some(op)) => element(op, a.expected)?,
            // `all` holds for a missing value and an empty list; allot's `all` needs a non-empty
            // list, so those two are added (an empty list: present, with neither a present nor
            // a missing element).
            AttrRule::All(Some(op)) => {
                let alts = if matches!(op, Op::NullEq) { vec![] } else { element(op, a.expected)? };
                if alts.len() > 1 {
                    return Err(format!(
                        "`allRule` on `{name}`: each element may match in several ways, which allot's `all` cannot say"
                    ));
                }
                let mut any = vec![json!({"attribute": name, "exists": false})];
                if let Some(o) = alts.into_iter().next() {
                    any.push(json!({"attribute": name, "all": o}));
                }
                any.push(json!({"all": [
                    {"attribute": name, "exists": true},
                    {"not": {"attribute": name, "any": {"exists": true}}},
                    {"not": {"attribute": name, "any": {"exists": false}}},
                ]}));
                self.nodes += any.len() + 4;
                return Ok(json!({"any": any}));
            }
            AttrRule::Unrecognized | AttrRule::Any(None) | AttrRule::All(None) => {
                return Err(format!("a rule on `{name}` has no operator the resolver recognises"))
            }
        };
        self.nodes += alternatives.len();
        Ok(match alternatives.len() {
            0 => NEVER(),
            1 => json!({"attribute": name, "any": alternatives[0]}),
            _ => {
                let alts: Vec<Value> = alternatives.into_iter().map(|o| json!({"attribute": name, "any": o})).collect();
                json!({"any": alts})
            }
        })
    }
}

/// What one element (a scalar, or a list's item) must satisfy, as allot operator sets any one of
/// which suffices: the resolver converts the element to the rule's type and compares.
fn element(op: &Op, expected: Expected) -> Result<Vec<Value>, Why> {
    match op {
        Op::Eq(v) => eq_element(v, expected),
        // An empty set holds nothing: no element is in it.
        Op::Set(values) if values.is_empty() => Ok(vec![]),
        Op::Set(values) => {
            let mut out = vec![];
            for v in values {
                // Values of another kind than the first never equal the converted element.
                if super::expected_of(Some(v)) == expected {
                    out.extend(eq_element(v, expected)?);
                }
            }
            if expected == Expected::None {
                return Err("a set rule whose first value has no kind".into());
            }
            Ok(out)
        }
        Op::Range(start, end) => {
            // No bounds, a bound without a value, or booleans (which have no order): the
            // resolver never matches.
            let kindless = [start, end].into_iter().flatten().any(|b| b.value.is_none());
            if (start.is_none() && end.is_none()) || kindless || expected == Expected::Bool {
                return Ok(vec![]);
            }
            match expected {
                Expected::Number => {}
                Expected::Version => return Err("a version range: Confidence's version order is not allot's".into()),
                Expected::Timestamp => {
                    return Err("a timestamp range: Confidence's timestamp parsing is not allot's".into())
                }
                e => return Err(format!("a range over {}: allot orders only numbers, versions and instants", kind(e))),
            }
            let mut ops = Map::new();
            for (b, lower) in [(start, true), (end, false)] {
                let Some(b) = b else { continue };
                let Some(TypedValue::Number(x)) = &b.value else { return Ok(vec![]) };
                let key = match (lower, b.inclusive) {
                    (true, true) => "gte",
                    (true, false) => "gt",
                    (false, true) => "lte",
                    (false, false) => "lt",
                };
                ops.insert(key.into(), num(*x));
            }
            Ok(vec![Value::Object(ops)])
        }
        Op::StartsWith(p) => Ok(vec![json!({"starts_with": p})]),
        Op::EndsWith(p) => Ok(vec![json!({"ends_with": p})]),
        Op::Contains(p) => Ok(vec![json!({"contains": p})]),
        Op::NullEq => Ok(vec![]),
        Op::Unrecognized => Err("a rule with no operator the resolver recognises".into()),
    }
}

fn kind(e: Expected) -> &'static str {
    match e {
        Expected::None => "values of no kind",
        Expected::Bool => "booleans",
        Expected::Number => "numbers",
        Expected::String | Expected::StrictString => "strings",
        Expected::Timestamp => "timestamps",
        Expected::Version => "versions",
    }
}

fn eq_element(v: &TypedValue<'static>, expected: Expected) -> Result<Vec<Value>, Why> {
    match (v, expected) {
        (TypedValue::Str(s), Expected::String) => {
            if s == "null" {
                return Err(
                    "it compares with the text \"null\", which the resolver gives missing, null, boolean and object values"
                        .into(),
                );
            }
            let mut out = vec![json!({"eq": s.as_ref()})];
            // The resolver prints a number under a string rule as Rust prints an f64.
            if let Ok(n) = s.parse::<f64>() {
                if n.is_finite() && n.to_string() == s.as_ref() {
                    if n == 0.0 {
                        return Err(format!(
                            "it compares with the text {s:?}: the resolver prints 0 and -0 apart, allot's numeric equality cannot"
                        ));
                    }
                    out.push(json!({"eq": num(n)}));
                }
            }
            Ok(out)
        }
        // A number rule reads JSON numbers and numeric strings (a string that is not one makes
        // the resolver refuse the request).
        (TypedValue::Number(n), Expected::Number) => Ok(vec![json!({"gte": num(*n), "lte": num(*n)})]),
        (TypedValue::Bool(true), Expected::Bool) => Ok(vec![json!({"eq": true}), json!({"in": ["true", "TRUE"]})]),
        // Under a boolean rule every string but "true" and "TRUE" reads as false.
        (TypedValue::Bool(false), Expected::Bool) => {
            Ok(vec![json!({"eq": false}), json!({"starts_with": "", "not_in": ["true", "TRUE"]})])
        }
        (_, Expected::Timestamp) => Err("a timestamp rule: Confidence's timestamp parsing is not allot's".into()),
        (_, Expected::Version) => Err("a version rule: Confidence's version order is not allot's".into()),
        (_, e) => Err(format!("an equality over {}", kind(e))),
    }
}

/// A native variant being built: its name, its split ranges and its value.
type NativeVariant = (String, Vec<(u32, u32)>, Option<Value>);

/// One rule, translated.
struct RuleOut {
    id: String,
    /// The rule's name when it is keyless (see [`FlagReport::keyless`]).
    keyless: Option<String>,
    unit: String,
    experiment: Value,
    bitset: BucketBitmap,
}

enum RuleFate {
    /// Never assigns a context with a unit id; `true`: may assign one without (a keyless rule).
    Dropped(Why, bool),
    Unmapped(Why),
    Mapped(Box<RuleOut>),
}

impl State {
    /// Imports this state for one client: see the module documentation. Fails only on a client
    /// secret that is unknown or missing (several credentials), or an internal inconsistency.
    pub fn import(&self, opts: &ImportOptions) -> Result<Imported, CompatError> {
        let client = self.import_client(opts.client_secret.as_deref())?;
        let account = self.account_salt.trim_start_matches("MegaSalt-").to_string();
        let mut report = Report {
            source: "confidence",
            client: client.name.clone(),
            flags: vec![],
            dropped: vec![],
            unmapped: vec![],
            caveats: vec![
                "exact for unit ids that are absent or non-empty strings of at most 100 bytes: the resolver also reads integral numbers, answers TARGETING_KEY_ERROR for other types and longer keys, and evaluates a rule with a blank selector for a context without `targeting_key`; allot reads such a unit as missing".into(),
                "a flag's answer is the first of its experiments (in rule order) whose variant is not `_fallthrough` or `_none`; `_client_default` is a match without a variant".into(),
                "shouldApply, reasons and the rules' write-only materializations are not imported: allot records no exposures at import".into(),
                "under a one-sided numeric range the resolver reads the strings Rust parses as an infinity (`inf`, `infinity`, any case, signed) as one; allot's ordering operators ignore non-finite numbers".into(),
            ],
        };
        let managed: Vec<String> = client.managed.keys().cloned().collect();
        let mut tr = Translator { state: self, managed, nodes: 0 };
        let mut units = Map::new();
        let mut experiments = Map::new();
        let mut bitsets: Vec<(String, BucketBitmap)> = vec![];
        let served: Vec<usize> = client.flags.clone();
        for (fi, flag) in self.flags.iter().enumerate() {
            if !served.contains(&fi) {
                report.dropped.push(Entry {
                    kind: "flag",
                    name: flag.name.clone(),
                    flag: None,
                    reason: if flag.active {
                        format!("not served to client {}", client.name)
                    } else {
                        "not active: the resolver resolves nothing".into()
                    },
                });
                continue;
            }
            let (mut outs, mut unmapped, mut keyless_rules) = (vec![], vec![], vec![]);
            for (ri, _) in flag.rules.iter().enumerate() {
                match self.import_rule(&mut tr, fi, ri, client) {
                    RuleFate::Dropped(why, keyless) => {
                        if keyless {
                            keyless_rules.push(flag.rules[ri].name.clone());
                        }
                        report.dropped.push(Entry {
                            kind: "rule",
                            name: flag.rules[ri].name.clone(),
                            flag: Some(flag.name.clone()),
                            reason: why,
                        })
                    }
                    RuleFate::Unmapped(why) => unmapped.push(Entry {
                        kind: "rule",
                        name: flag.rules[ri].name.clone(),
                        flag: Some(flag.name.clone()),
                        reason: why,
                    }),
                    RuleFate::Mapped(out) => outs.push(*out),
                }
            }
            if !unmapped.is_empty() {
                report.unmapped.push(Entry {
                    kind: "flag",
                    name: flag.name.clone(),
                    flag: None,
                    reason: format!(
                        "not imported: {} of its rules do not map (below); a flag is exact only when all its rules are",
                        unmapped.len()
                    ),
                });
                report.unmapped.extend(unmapped);
                continue;
            }
            let mut ids = vec![];
            let mut keyless = keyless_rules;
            for out in outs {
                let mut id = out.id.clone();
                let mut n = 2;
                while experiments.contains_key(&id) {
                    id = format!("{}-{n}", out.id);
                    n += 1;
                }
                units
                    .entry(out.unit.clone())
                    .or_insert_with(|| json!({"attribute": out.unit, "salt": format!("MegaSalt-{account}")}));
                experiments.insert(id.clone(), out.experiment);
                bitsets.push((id.clone(), out.bitset));
                if let Some(rule) = &out.keyless {
                    keyless.push(rule.clone());
                }
                ids.push(id);
            }
            report.flags.push(FlagReport { flag: flag.name.clone(), experiments: ids, keyless });
        }
        let mut config = Map::new();
        if !units.is_empty() {
            config.insert("units".into(), Value::Object(units));
        }
        if !experiments.is_empty() {
            config.insert("experiments".into(), Value::Object(experiments));
        }
        let config = Value::Object(config);
        let state = record(&config, &bitsets, opts, &format!("account {account}, client {}", client.name))?;
        Ok(Imported { config, state, report })
    }

    fn import_client(&self, secret: Option<&str>) -> Result<&Client, CompatError> {
        match secret {
            Some(s) => {
                self.clients.get(s).ok_or_else(|| CompatError::invalid("client-secret", "no client has this secret"))
            }
            None => {
                let mut all: Vec<(&String, &Client)> = self.clients.iter().collect();
                all.sort_by(|a, b| a.1.name.cmp(&b.1.name));
                match all.as_slice() {
                    [(_, c)] => Ok(c),
                    [] => Err(CompatError::invalid("clients", "the state has no client credential to import for")),
                    more => Err(CompatError::invalid(
                        "client-secret",
                        format!(
                            "the state has {} client credentials ({}); name the one to import for with --client-secret",
                            more.len(),
                            more.iter().map(|(_, c)| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
        }
    }

    fn import_rule(&self, tr: &mut Translator<'_>, fi: usize, ri: usize, client: &Client) -> RuleFate {
        let flag = &self.flags[fi];
        let rule = &flag.rules[ri];
        if !rule.enabled {
            return RuleFate::Dropped("disabled".into(), false);
        }
        if !(rule.environments.is_empty() || rule.environments.iter().any(|e| client.environments.contains(e))) {
            return RuleFate::Dropped(
                format!("only for environments {:?}, not this client's", rule.environments),
                false,
            );
        }
        let Some(seg) = rule.segment else {
            return RuleFate::Dropped("its segment is not in the state: the resolver skips it".into(), false);
        };
        let selector = rule.selector.join(".");
        if rule.selector.len() != 1 {
            return RuleFate::Unmapped(format!(
                "targeting key selector `{selector}` is a nested path; allot reads unit ids from top-level attributes"
            ));
        }
        if !allot_core::config::is_ident(&selector) {
            return RuleFate::Unmapped(format!("targeting key selector `{selector}` is not a valid unit type name"));
        }
        if tr.managed.contains(&selector) {
            return RuleFate::Unmapped(format!("the unit id `{selector}` is set by the client's managed context"));
        }
        let Some(spec) = &rule.spec else {
            return RuleFate::Dropped("no assignment spec: the resolver skips it".into(), false);
        };
        if let Some(m) = &rule.materialization {
            if !m.read.is_empty() {
                return RuleFate::Unmapped(format!(
                    "it reads materialization {} (sticky assignments kept per rule by Confidence)",
                    m.read
                ));
            }
        }
        let segment = &self.segments[seg];
        let bitset = match &segment.bitset {
            None => BucketBitmap::full(BUCKETS),
            Some((bits, _)) => bits.to_dense(),
        };
        // Without a unit the resolver reads the bitset as full when all its bytes are set (an
        // empty bitset too).
        let keyless =
            rule.blank_selector && spec.one_full_variant && segment.bitset.as_ref().is_none_or(|(_, full)| *full);
        if bitset.is_empty() {
            return RuleFate::Dropped(format!("segment {} allocates no bucket", segment.name), keyless);
        }
        // The split: bucket(segment id, unit, N) → the first assignment whose range holds it.
        let n = spec.bucket_count;
        if n <= 0 && !spec.one_full_variant {
            return RuleFate::Unmapped(format!("bucket count {n}: the resolver fails the request"));
        }
        let n: u32 = if spec.one_full_variant { n.max(1) as u32 } else { n as u32 };
        let mut cuts: Vec<u32> = vec![0, n];
        for a in &spec.assignments {
            for (lo, hi) in &a.ranges {
                for x in [*lo, *hi] {
                    if x > 0 && x < i64::from(n) {
                        cuts.push(x as u32);
                    }
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut variants: BTreeMap<usize, NativeVariant> = BTreeMap::new();
        let mut order: Vec<String> = vec![];
        let mut assigns = false;
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let holder = if spec.one_full_variant {
                spec.assignments.first()
            } else {
                let b = i64::from(lo);
                spec.assignments.iter().find(|a| a.ranges.iter().any(|(l, h)| *l <= b && b < *h))
            };
            let (name, value) = match holder.map(|a| &a.kind) {
                None | Some(Kind::None) => (NO_ASSIGNMENT.to_string(), None),
                Some(Kind::Fallthrough) => (FALLTHROUGH.to_string(), None),
                Some(Kind::ClientDefault) => {
                    assigns = true;
                    (CLIENT_DEFAULT.to_string(), None)
                }
                Some(Kind::Variant(full, None)) => {
                    return RuleFate::Unmapped(format!("it assigns {full}, which the flag does not have"))
                }
                Some(Kind::Variant(_, Some(i))) => {
                    assigns = true;
                    let (full, value) = &flag.variants[*i];
                    let name = short(full).to_string();
                    if !allot_core::config::is_ident(&name) || name.starts_with('_') {
                        return RuleFate::Unmapped(format!(
                            "variant {full}: `{name}` is not a valid allot variant name"
                        ));
                    }
                    (name, Some(value.clone()))
                }
            };
            let key = match order.iter().position(|x| *x == name) {
                Some(k) => k,
                None => {
                    order.push(name.clone());
                    order.len() - 1
                }
            };
            let entry = variants.entry(key).or_insert_with(|| (name, vec![], value));
            match entry.1.last_mut() {
                Some(last) if last.1 == lo => last.1 = hi,
                _ => entry.1.push((lo, hi)),
            }
        }
        if !assigns {
            return RuleFate::Dropped("none of its assignments is a variant or the client default".into(), false);
        }
        if rule.variant_salt.is_none() && !spec.one_full_variant {
            return RuleFate::Unmapped(format!("segment name {} has no id to salt the split with", segment.name));
        }
        tr.nodes = 0;
        let targeting = match tr.segment(seg, &mut vec![]) {
            Ok(t) => t,
            Err(why) => return RuleFate::Unmapped(format!("segment {}: {why}", segment.name)),
        };
        let flag_id = short(&flag.name);
        let rule_id = if short(&rule.name).is_empty() { format!("r{ri}") } else { short(&rule.name).to_string() };
        let id = format!("{flag_id}.{rule_id}");
        if !allot_core::config::is_ident(&id) {
            return RuleFate::Unmapped(format!("`{id}` is not a valid allot experiment id"));
        }
        let mut vmap = Map::new();
        for (_, (name, ranges, value)) in variants {
            let mut v = Map::new();
            v.insert("ranges".into(), json!(ranges.iter().map(|(lo, hi)| json!([lo, hi])).collect::<Vec<_>>()));
            if let Some(value) = value {
                v.insert("value".into(), value);
            }
            vmap.insert(name, Value::Object(v));
        }
        let salt = rule.variant_salt.clone().unwrap_or_else(|| id.clone());
        let mut e = Map::new();
        e.insert("unit".into(), json!(selector));
        e.insert("share".into(), json!(percent(bitset.len())));
        e.insert("variants".into(), Value::Object(vmap));
        if let Some(t) = targeting {
            e.insert("targeting".into(), t);
        }
        e.insert("salt".into(), json!(salt));
        e.insert("state".into(), json!("running"));
        e.insert(
            "description".into(),
            json!(format!(
                "Confidence {} rule {} ({} of {}), segment {}",
                flag.name,
                rule.name,
                ri + 1,
                flag.rules.len(),
                segment.name
            )),
        );
        let keyless = keyless.then(|| rule.name.clone());
        RuleFate::Mapped(Box::new(RuleOut { id, keyless, unit: selector, experiment: Value::Object(e), bitset }))
    }
}

/// Applies the configuration to an empty state, then records each experiment's allocation as
/// its segment's bitset (the draw's buckets replaced, same count) and checks that planning the
/// configuration again over the result changes nothing.
fn record(
    config: &Value,
    bitsets: &[(String, BucketBitmap)],
    opts: &ImportOptions,
    what: &str,
) -> Result<allot_core::state::State, CompatError> {
    use allot_core::plan;
    let internal = |m: String| CompatError::invalid("import", format!("internal error, please report: {m}"));
    let cfg = allot_core::config::validate(config)
        .map_err(|es| internal(format!("the imported configuration does not validate: {}", allot_core::Errors(es))))?;
    let options = plan::Options {
        time: opts.time.clone(),
        actor: Some("allot compat confidence import".into()),
        reason: Some(format!(
            "imported from a Confidence resolver state ({what}); allocations are the segments' bitsets"
        )),
        ..plan::Options::default()
    };
    let applied = plan::apply(&allot_core::state::State::default(), &cfg, config, &options)
        .map_err(|e| internal(format!("applying the imported configuration: {e}")))?;
    let mut state = applied.state;
    for (id, bits) in bitsets {
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
