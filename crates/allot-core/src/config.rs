//! The configuration file (`allot.yaml`): parsed into a raw JSON tree, then validated into typed
//! form with every error at once, each naming its field.
//!
//! See `docs/config.md` for the reference. Parsing never panics on any input.

use crate::error::{index, join, FieldError};
use crate::targeting::{check_segments, Targeting};
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Default number of buckets of a unit type's space.
pub const DEFAULT_BUCKETS: u32 = 1_000_000;
/// Most slots a mutual exclusion group may have (Amplitude's limit).
pub const MAX_SLOTS: usize = 20;
/// Most variants an experiment may have. Evaluation indexes variants with 16 bits; the limit
/// is far below that so the split (1,000,000 split buckets) still gives each variant traffic.
pub const MAX_VARIANTS: usize = 1_000;

/// A share of a population, kept exactly as a fraction `num / den` (from text like `30%`,
/// `12.5%` or `0.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Numerator.
    pub num: u128,
    /// Denominator (a power of ten).
    pub den: u128,
}

impl Share {
    /// The whole population.
    pub const ALL: Share = Share { num: 1, den: 1 };

    /// Parses `30%`, `12.5%`, `0.3` or `1`. Plain numbers are fractions and must be ≤ 1.
    pub fn parse(v: &Value) -> Result<Share, String> {
        let written = match v {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        };
        let (text, percent) = match v {
            Value::String(s) => match s.trim().strip_suffix('%') {
                Some(p) => (p.trim().to_string(), true),
                None => (s.trim().to_string(), false),
            },
            Value::Number(n) => (n.to_string(), false),
            _ => return Err(format!("expected a share such as \"30%\" or 0.3, found {}", kind(v))),
        };
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let digits_ok = !int.is_empty() || !frac.is_empty();
        if !digits_ok
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 12
            || int.len() > 6
        {
            return Err(format!("`{written}` is not a share such as \"30%\" or 0.3"));
        }
        let mut num: u128 = format!("{int}{frac}").parse().map_err(|_| format!("`{written}` is not a number"))?;
        let mut den: u128 = 10u128.pow(frac.len() as u32);
        if percent {
            den *= 100;
        }
        let g = gcd(num, den);
        if g > 1 {
            num /= g;
            den /= g;
        }
        let share = Share { num, den };
        if share.num > share.den {
            return Err(if percent {
                format!("{text}% is more than 100%")
            } else {
                format!("{text} is more than 1 (write a percentage as \"{text}%\")")
            });
        }
        Ok(share)
    }

    /// The exact number of buckets of a `space`-bucket space, or an error when it is not whole.
    pub fn buckets(&self, space: u64) -> Result<u64, String> {
        let n = self.num * u128::from(space);
        if !n.is_multiple_of(self.den) {
            return Err(format!("{} of {space} buckets is not a whole number of buckets", self.percent()));
        }
        Ok((n / self.den) as u64)
    }

    /// As a float fraction.
    pub fn fraction(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// As a percentage text, e.g. `30%`.
    pub fn percent(&self) -> String {
        format!("{}%", fmt_num(self.fraction() * 100.0))
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Formats a number without trailing zeros.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A unit type: what is randomised, and the context attribute carrying its id.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitType {
    /// Context attribute holding the unit id, e.g. `user_id`.
    pub attribute: String,
    /// Buckets in its space.
    pub buckets: u32,
    /// Salt of the unit → bucket hash.
    pub salt: String,
    /// Context attributes a unit of this type never changes (country of registration, not
    /// plan). Only these may prove two exclusive experiments' targeting disjoint and let them
    /// share buckets. None by default.
    pub stable: Vec<String>,
}

impl UnitType {
    /// The attributes that may prove two exclusive experiments' targeting disjoint (and so let
    /// them share buckets): its `stable` ones and the unit id's own attribute.
    pub fn proof_attributes(&self) -> Vec<String> {
        self.stable.iter().chain([&self.attribute]).cloned().collect()
    }
}

/// A holdout: a random set of buckets that the experiments it applies to may not use.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    /// Unit type.
    pub unit: String,
    /// Share of all units of the type.
    pub share: Share,
    /// Surfaces, tags, groups or experiment ids it applies to; `all` for everything.
    pub applies_to: Vec<String>,
}

/// A mutual exclusion group: a share of the space cut into fixed slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Unit type.
    pub unit: String,
    /// Share of all units of the type.
    pub share: Share,
    /// Slot shares, each a share of the group.
    pub slots: Vec<Share>,
    /// Surfaces every member is on.
    pub surfaces: Vec<String>,
}

/// Lifecycle state of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpState {
    /// Being prepared; holds no buckets.
    Draft,
    /// Live: holds its allocation and assigns units.
    Running,
    /// Ended: its buckets are back in the free pool.
    Stopped,
    /// Ended and put away.
    Archived,
}

impl ExpState {
    /// Its name in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExpState::Draft => "draft",
            ExpState::Running => "running",
            ExpState::Stopped => "stopped",
            ExpState::Archived => "archived",
        }
    }
}

/// A variant: a relative weight and an optional JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Relative weight.
    pub weight: u32,
    /// Value served with the variant (OFREP and SDKs), if any.
    pub value: Option<Value>,
}

/// Membership of an experiment in a group: which slots (0-based here; 1-based in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRef {
    /// Group id.
    pub group: String,
    /// Slot indices, 0-based.
    pub slots: Vec<usize>,
}

/// A prerequisite: the experiment runs only for units given one of `variants` of `experiment`.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// The required experiment.
    pub experiment: String,
    /// Its variants that qualify.
    pub variants: Vec<String>,
}

/// An experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Unit type.
    pub unit: String,
    /// Surfaces: exclusion scopes (each is both a tag and an `exclusive_to` entry).
    pub surfaces: Vec<String>,
    /// Confidence-style tags this experiment carries.
    pub tags: Vec<String>,
    /// Tags this experiment must not share a unit with.
    pub exclusive_to: Vec<String>,
    /// Groups and slots.
    pub groups: Vec<GroupRef>,
    /// Share of all units of the type; `None` = all of its slots.
    pub share: Option<Share>,
    /// Variants in order.
    pub variants: IndexMap<String, Variant>,
    /// Who is eligible.
    pub targeting: Option<Targeting>,
    /// Individual inclusions: unit id → variant.
    pub include: IndexMap<String, String>,
    /// Lifecycle state.
    pub state: ExpState,
    /// Salt of the variant split (default: the experiment id).
    pub salt: String,
    /// Prerequisites.
    pub requires: Vec<Requirement>,
    /// Whether assignments are kept in the sticky store.
    pub sticky: bool,
}

impl Experiment {
    /// Every tag it carries: its surfaces and tags (and its groups' surfaces, resolved by the caller).
    pub fn all_tags(&self) -> impl Iterator<Item = &String> {
        self.surfaces.iter().chain(&self.tags)
    }

    /// Every tag it is exclusive to.
    pub fn all_exclusive_to(&self) -> impl Iterator<Item = &String> {
        self.surfaces.iter().chain(&self.exclusive_to)
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Unit types.
    pub units: IndexMap<String, UnitType>,
    /// Declared surfaces.
    pub surfaces: Vec<String>,
    /// Named targeting segments.
    pub segments: IndexMap<String, Targeting>,
    /// Holdouts.
    pub holdouts: IndexMap<String, Holdout>,
    /// Mutual exclusion groups.
    pub groups: IndexMap<String, Group>,
    /// Experiments.
    pub experiments: IndexMap<String, Experiment>,
}

/// Deepest nesting of flow collections (`[...]`, `{...}`) a configuration may have. The YAML
/// parser refuses more than 128 levels anyway, but only after scanning the whole text, and its
/// scanner costs time proportional to the nesting depth for every token: 200 KB of `[[[...]]]`
/// took minutes (found by fuzzing, issue 14), and a reader's preview could hold a server thread
/// that long. So nesting past this bound is refused before the YAML parser sees the text.
pub const MAX_FLOW_NESTING: usize = 1_000;

/// Whether flow collections in `text` nest deeper than `max`, counted in one linear pass.
///
/// Brackets inside quoted scalars (`'...'`, `"..."`, with their escapes) and comments do not
/// count; a quote opens a scalar only where YAML starts a token (after an indicator `[ { , : ? -`,
/// at the start of a line, or after a tag or anchor), as the YAML scanner does. Brackets in plain
/// scalars count, so on configuration text the count can only be too high, by what such scalars
/// hold unbalanced; the bound leaves room for that. Not a YAML scanner: inside block scalars
/// (`|`, `>`) a quote that starts a line is taken to open a quoted scalar, so text crafted around
/// a block scalar can hide brackets from this count.
fn flow_nesting_exceeds(text: &str, max: usize) -> bool {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    // The first byte of the last token (b'\n' at a line start), and whether whitespace
    // separates it from here.
    let (mut token, mut spaced) = (b'\n', true);
    while i < b.len() {
        let c = b[i];
        let token_start = matches!(token, b'\n' | b'[' | b'{' | b',' | b':' | b'?' | b'-' | b'!' | b'&')
            && (spaced || matches!(token, b'[' | b'{' | b',' | b':'));
        match c {
            b'\'' | b'"' if token_start => {
                i += 1;
                while i < b.len() {
                    match (c, b[i]) {
                        (b'"', b'\\') => i += 2,
                        (b'\'', b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        (q, x) if q == x => break,
                        _ => i += 1,
                    }
                }
                (token, spaced) = (c, false);
            }
            b'#' if spaced => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\n' => (token, spaced) = (b'\n', true),
            b' ' | b'\t' | b'\r' => spaced = true,
            _ => {
                match c {
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > max {
                            return true;
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                // Indicators are tokens of their own (`-` and `?` only at the start of a word);
                // any other word is a token from its first byte (`!tag`, `&anchor`, `key`).
                if spaced || matches!(c, b'[' | b'{' | b',' | b']' | b'}' | b':') || matches!(token, b'[' | b'{' | b',')
                {
                    token = c;
                }
                spaced = false;
            }
        }
        i += 1;
    }
    false
}

/// Parses YAML (or JSON) text into the raw tree; a syntax error names its line and column.
pub fn parse_yaml(text: &str) -> Result<Value, FieldError> {
    if flow_nesting_exceeds(text, MAX_FLOW_NESTING) {
        return Err(FieldError::new(
            "",
            format!("invalid YAML: collections nested more than {MAX_FLOW_NESTING} levels deep"),
        ));
    }
    // serde_json's map keeps the last of duplicate keys silently; YAML's own tree refuses them
    // (a copy-pasted experiment id must not replace the first one).
    if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        if e.to_string().contains("duplicate entry") {
            return Err(FieldError::new("", format!("invalid YAML: {e}")));
        }
    }
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| FieldError::new("", format!("invalid YAML: {e}")))?;
    Ok(if v.is_null() { Value::Object(Map::new()) } else { v })
}

/// Parses and validates configuration text.
pub fn load(text: &str) -> Result<Config, Vec<FieldError>> {
    let raw = parse_yaml(text).map_err(|e| vec![e])?;
    validate(&raw)
}

struct V {
    errors: Vec<FieldError>,
}

impl V {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(FieldError::new(path, msg));
    }

    fn obj<'a>(&mut self, v: &'a Value, path: &str, allowed: &[&str]) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => {
                for k in m.keys() {
                    if !allowed.contains(&k.as_str()) {
                        self.err(join(path, k), format!("unknown field; expected one of: {}", allowed.join(", ")));
                    }
                }
                Some(m)
            }
            other => {
                self.err(path, format!("expected a map, found {}", kind(other)));
                None
            }
        }
    }

    fn map<'a>(&mut self, v: Option<&'a Value>, path: &str) -> Vec<(&'a String, &'a Value)> {
        match v {
            None | Some(Value::Null) => vec![],
            Some(Value::Object(m)) => {
                let mut out = vec![];
                for (k, v) in m {
                    if is_ident(k) {
                        out.push((k, v));
                    } else {
                        self.err(join(path, k), "ids use letters, digits, '-', '_' and '.' only");
                    }
                }
                out
            }
            Some(other) => {
                self.err(path, format!("expected a map, found {}", kind(other)));
                vec![]
            }
        }
    }

    fn string(&mut self, v: Option<&Value>, path: &str) -> Option<String> {
        match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.err(path, "must not be empty");
                None
            }
            None => {
                self.err(path, "required");
                None
            }
            Some(other) => {
                self.err(path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn strings(&mut self, v: Option<&Value>, path: &str) -> Vec<String> {
        match v {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => {
                let mut out = vec![];
                for (i, it) in items.iter().enumerate() {
                    match it {
                        Value::String(s) if !s.is_empty() => out.push(s.clone()),
                        other => self.err(index(path, i), format!("expected a name, found {}", kind(other))),
                    }
                }
                out
            }
            Some(other) => {
                self.err(path, format!("expected a list of names, found {}", kind(other)));
                vec![]
            }
        }
    }

    fn share(&mut self, v: Option<&Value>, path: &str) -> Option<Share> {
        match v {
            None => {
                self.err(path, "required");
                None
            }
            Some(v) => match Share::parse(v) {
                Ok(s) if s.num == 0 => {
                    self.err(path, "must be more than 0%");
                    None
                }
                Ok(s) => Some(s),
                Err(m) => {
                    self.err(path, m);
                    None
                }
            },
        }
    }

    fn unit_ref(&mut self, v: Option<&Value>, path: &str, units: &IndexMap<String, UnitType>) -> Option<String> {
        let u = self.string(v, path)?;
        if !units.contains_key(&u) {
            let known: Vec<&str> = units.keys().map(String::as_str).collect();
            self.err(path, format!("unknown unit type `{u}`; declared: [{}]", known.join(", ")));
            return None;
        }
        Some(u)
    }
}

/// Whether `s` is a valid id.
pub fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

const TOP: &[&str] = &["units", "surfaces", "segments", "holdouts", "groups", "experiments"];
const EXP_KEYS: &[&str] = &[
    "unit",
    "surfaces",
    "tags",
    "exclusive_to",
    "group",
    "slots",
    "groups",
    "share",
    "variants",
    "targeting",
    "include",
    "state",
    "salt",
    "requires",
    "sticky",
    "description",
    "owner",
];

/// Validates a raw tree into a [`Config`], reporting every error.
pub fn validate(raw: &Value) -> Result<Config, Vec<FieldError>> {
    let mut v = V { errors: vec![] };
    let mut cfg = Config::default();
    let Some(top) = v.obj(raw, "", TOP) else {
        return Err(v.errors);
    };

    // Unit types.
    for (name, u) in v.map(top.get("units"), "units") {
        let path = join("units", name);
        let Some(m) = v.obj(u, &path, &["attribute", "buckets", "salt", "stable"]) else { continue };
        let stable = v.strings(m.get("stable"), &join(&path, "stable"));
        let attribute = v.string(m.get("attribute"), &join(&path, "attribute"));
        let buckets = match m.get("buckets") {
            None => Some(DEFAULT_BUCKETS),
            Some(b) => match b.as_u64() {
                Some(n) if (1..=100_000_000).contains(&n) => Some(n as u32),
                _ => {
                    v.err(join(&path, "buckets"), "expected a whole number from 1 to 100000000");
                    None
                }
            },
        };
        let salt = match m.get("salt") {
            None => Some(name.clone()),
            s => v.string(s, &join(&path, "salt")),
        };
        if let (Some(attribute), Some(buckets), Some(salt)) = (attribute, buckets, salt) {
            cfg.units.insert(name.clone(), UnitType { attribute, buckets, salt, stable });
        }
    }
    if top.get("units").is_none() && top.get("experiments").is_some() {
        v.err("units", "required: declare at least one unit type, e.g. `user: {attribute: user_id}`");
    }

    // Surfaces.
    cfg.surfaces = v.strings(top.get("surfaces"), "surfaces");
    for (i, s) in cfg.surfaces.iter().enumerate() {
        if !is_ident(s) {
            v.err(index("surfaces", i), "ids use letters, digits, '-', '_' and '.' only");
        }
        if cfg.surfaces[..i].contains(s) {
            v.err(index("surfaces", i), format!("surface `{s}` is declared twice"));
        }
    }

    // Segments.
    for (name, t) in v.map(top.get("segments"), "segments") {
        match Targeting::parse(t, &join("segments", name)) {
            Ok(t) => {
                cfg.segments.insert(name.clone(), t);
            }
            Err(es) => v.errors.extend(es),
        }
    }
    v.errors.extend(check_segments(&cfg.segments));

    // Holdouts.
    for (name, h) in v.map(top.get("holdouts"), "holdouts") {
        let path = join("holdouts", name);
        let Some(m) = v.obj(h, &path, &["unit", "share", "applies_to", "description"]) else { continue };
        let unit = v.unit_ref(m.get("unit"), &join(&path, "unit"), &cfg.units);
        let share = v.share(m.get("share"), &join(&path, "share"));
        let applies_to = v.strings(m.get("applies_to"), &join(&path, "applies_to"));
        if applies_to.is_empty() {
            v.err(join(&path, "applies_to"), "required: surfaces, tags, groups, experiment ids, or [all]");
        }
        if let (Some(unit), Some(share)) = (unit, share) {
            if let Err(m) = share.buckets(u64::from(cfg.units[&unit].buckets)) {
                v.err(join(&path, "share"), m);
            }
            cfg.holdouts.insert(name.clone(), Holdout { unit, share, applies_to });
        }
    }

    // Groups.
    for (name, g) in v.map(top.get("groups"), "groups") {
        let path = join("groups", name);
        let Some(m) = v.obj(g, &path, &["unit", "share", "slots", "surfaces", "description"]) else { continue };
        let unit = v.unit_ref(m.get("unit"), &join(&path, "unit"), &cfg.units);
        let share = v.share(m.get("share"), &join(&path, "share"));
        let spath = join(&path, "slots");
        let mut slots = vec![];
        match m.get("slots") {
            Some(Value::Array(items)) if !items.is_empty() => {
                if items.len() > MAX_SLOTS {
                    v.err(&spath, format!("{} slots; a group has at most {MAX_SLOTS}", items.len()));
                }
                for (i, it) in items.iter().enumerate() {
                    if let Some(s) = v.share(Some(it), &index(&spath, i)) {
                        slots.push(s);
                    }
                }
            }
            _ => v.err(&spath, "required: a list of 1 to 20 slot shares, e.g. [50%, 50%]"),
        }
        let surfaces = v.strings(m.get("surfaces"), &join(&path, "surfaces"));
        check_surfaces(&mut v, &cfg.surfaces, &surfaces, &join(&path, "surfaces"));
        if let (Some(unit), Some(share)) = (unit, share) {
            let b = u64::from(cfg.units[&unit].buckets);
            let total: f64 = slots.iter().map(Share::fraction).sum();
            if total > 1.0 + 1e-12 {
                v.err(
                    &spath,
                    format!("slot shares add up to {}%, more than 100% of the group", fmt_num(total * 100.0)),
                );
            }
            match share.buckets(b) {
                Err(m) => v.err(join(&path, "share"), m),
                Ok(gb) => {
                    for (i, s) in slots.iter().enumerate() {
                        if let Err(m) = s.buckets(gb) {
                            v.err(index(&spath, i), format!("{m} (of the group's {gb})"));
                        }
                    }
                }
            }
            cfg.groups.insert(name.clone(), Group { unit, share, slots, surfaces });
        }
    }

    // Experiments.
    let raw_exps = v.map(top.get("experiments"), "experiments");
    let exp_ids: Vec<&String> = raw_exps.iter().map(|(k, _)| *k).collect();
    for (id, e) in &raw_exps {
        let path = join("experiments", id);
        if let Some(exp) = experiment(&mut v, &cfg, e, &path, id) {
            cfg.experiments.insert((*id).clone(), exp);
        }
    }

    // Cross references that need every experiment.
    for (id, e) in &cfg.experiments {
        let path = join("experiments", id);
        // The split hashes `<salt>|<unit>` exactly as the bucket does: with the space's salt,
        // the variant would be a function of the bucket (invariant 5).
        if let Some((name, _)) = cfg.units.iter().find(|(_, u)| u.salt == e.salt) {
            v.err(
                join(&path, "salt"),
                format!(
                    "the variant split's salt `{}`{} is the bucket salt of unit type `{name}`: the variant would follow the bucket; choose another salt",
                    e.salt,
                    if e.salt == *id { " (the experiment id)" } else { "" }
                ),
            );
        }
        for (i, r) in e.requires.iter().enumerate() {
            let rpath = index(&join(&path, "requires"), i);
            match cfg.experiments.get(&r.experiment) {
                None if exp_ids.contains(&&r.experiment) => {}
                None => v.err(join(&rpath, "experiment"), format!("unknown experiment `{}`", r.experiment)),
                Some(other) => {
                    for vn in &r.variants {
                        if !other.variants.contains_key(vn) {
                            v.err(
                                join(&rpath, "variants"),
                                format!("experiment `{}` has no variant `{vn}`", r.experiment),
                            );
                        }
                    }
                }
            }
        }
    }
    // Two experiments that can share units must not share a split salt: their variants would
    // be the same function of the unit id (100% correlated arms). Ended experiments assign
    // nobody; exclusive ones never share a unit.
    let live: Vec<(&String, &Experiment)> =
        cfg.experiments.iter().filter(|(_, e)| matches!(e.state, ExpState::Draft | ExpState::Running)).collect();
    let mut by_salt: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for (id, e) in &live {
        by_salt.entry((e.unit.as_str(), e.salt.as_str())).or_default().push(id.as_str());
    }
    for (id, e) in &live {
        let same = &by_salt[&(e.unit.as_str(), e.salt.as_str())];
        if let Some(other) = same.iter().take_while(|o| **o != id.as_str()).find(|o| !cfg.exclusive(id, o)) {
            v.err(
                join(&join("experiments", id), "salt"),
                format!(
                    "split salt `{}` is also the split salt of experiment `{other}`, which can share units with `{id}`: their variants would be perfectly correlated; choose another salt",
                    e.salt
                ),
            );
        }
    }
    if let Some(cycle) = requirement_cycle(&cfg) {
        v.err(
            join(&join("experiments", &cycle[0]), "requires"),
            format!("prerequisites form a cycle: {}", cycle.join(" → ")),
        );
    }
    for (name, h) in &cfg.holdouts {
        for (i, a) in h.applies_to.iter().enumerate() {
            if a == "all" {
                continue;
            }
            let known = cfg.surfaces.contains(a)
                || cfg.groups.contains_key(a)
                || cfg.experiments.contains_key(a)
                || exp_ids.contains(&a)
                || cfg.experiments.values().any(|e| e.tags.contains(a));
            if !known {
                v.err(
                    index(&join(&join("holdouts", name), "applies_to"), i),
                    format!("`{a}` is not a surface, tag, group or experiment"),
                );
            }
            if cfg.surfaces.contains(a) && exp_ids.contains(&a) {
                v.err(
                    index(&join(&join("holdouts", name), "applies_to"), i),
                    format!("`{a}` is both a surface and an experiment id; rename one"),
                );
            }
        }
    }
    if v.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(v.errors)
    }
}

fn check_surfaces(v: &mut V, declared: &[String], used: &[String], path: &str) {
    for (i, s) in used.iter().enumerate() {
        if !declared.contains(s) {
            v.err(index(path, i), format!("unknown surface `{s}`; declared: [{}]", declared.join(", ")));
        }
    }
}

fn experiment(v: &mut V, cfg: &Config, e: &Value, path: &str, id: &str) -> Option<Experiment> {
    let m = v.obj(e, path, EXP_KEYS)?;
    let n_errors = v.errors.len();
    let unit = v.unit_ref(m.get("unit"), &join(path, "unit"), &cfg.units);
    let surfaces = v.strings(m.get("surfaces"), &join(path, "surfaces"));
    check_surfaces(v, &cfg.surfaces, &surfaces, &join(path, "surfaces"));
    let tags = v.strings(m.get("tags"), &join(path, "tags"));
    let exclusive_to = v.strings(m.get("exclusive_to"), &join(path, "exclusive_to"));

    // Groups: `group: g` + `slots: [1, 2]`, or `groups: {g: [1], h: [2]}`.
    let mut groups = vec![];
    let mut raw_groups: Vec<(String, String, Option<&Value>)> = vec![];
    if let Some(g) = m.get("group") {
        if m.contains_key("groups") {
            v.err(join(path, "groups"), "use either `group` + `slots` or `groups`, not both");
        }
        if let Some(g) = v.string(Some(g), &join(path, "group")) {
            raw_groups.push((g, join(path, "slots"), m.get("slots")));
        }
    } else if m.contains_key("slots") {
        v.err(join(path, "slots"), "slots need a `group`");
    }
    if let Some(gs) = m.get("groups") {
        for (g, slots) in v.map(Some(gs), &join(path, "groups")) {
            raw_groups.push((g.clone(), join(&join(path, "groups"), g), Some(slots)));
        }
    }
    for (g, spath, slots) in raw_groups {
        let Some(group) = cfg.groups.get(&g) else {
            v.err(
                if spath.ends_with(".slots") { join(path, "group") } else { spath.clone() },
                format!("unknown group `{g}`"),
            );
            continue;
        };
        if unit.as_ref().is_some_and(|u| *u != group.unit) {
            v.err(join(path, "unit"), format!("group `{g}` is over unit `{}`", group.unit));
        }
        let mut idx = vec![];
        match slots {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, it) in items.iter().enumerate() {
                    match it.as_u64() {
                        Some(n) if n >= 1 && (n as usize) <= group.slots.len() => {
                            if idx.contains(&(n as usize - 1)) {
                                v.err(index(&spath, i), format!("slot {n} is listed twice"));
                            }
                            idx.push(n as usize - 1);
                        }
                        _ => v.err(index(&spath, i), format!("expected a slot number from 1 to {}", group.slots.len())),
                    }
                }
            }
            _ => v.err(&spath, format!("required: the slots to occupy, numbered from 1 to {}", group.slots.len())),
        }
        groups.push(GroupRef { group: g, slots: idx });
    }

    let share = match m.get("share") {
        None => None,
        Some(Value::Null) => {
            v.err(
                join(path, "share"),
                "expected a share such as \"30%\" or 0.3 (leave the field out to take all of a group's slots)",
            );
            None
        }
        s => v.share(s, &join(path, "share")),
    };
    if share.is_none() && groups.is_empty() && !m.contains_key("share") {
        v.err(join(path, "share"), "required (outside a group): the share of all units, e.g. 30%");
    }
    if let (Some(share), Some(unit)) = (share, &unit) {
        if let Err(msg) = share.buckets(u64::from(cfg.units[unit].buckets)) {
            v.err(join(path, "share"), msg);
        }
    }
    if let (Some(share), Some(gr)) = (share, groups.first()) {
        if groups.len() == 1 {
            let g = &cfg.groups[&gr.group];
            let slot_total: f64 = gr.slots.iter().map(|&i| g.slots[i].fraction()).sum::<f64>() * g.share.fraction();
            if share.fraction() > slot_total + 1e-12 {
                v.err(
                    join(path, "share"),
                    format!(
                        "{} is more than its slots hold ({}% of all units)",
                        share.percent(),
                        fmt_num(slot_total * 100.0)
                    ),
                );
            }
        }
    }

    // Variants.
    let vpath = join(path, "variants");
    let mut variants = IndexMap::new();
    for (name, w) in v.map(m.get("variants"), &vpath) {
        let p = join(&vpath, name);
        let (weight, value) = match w {
            Value::Number(_) => (w.as_u64(), None),
            Value::Object(_) => {
                let Some(o) = v.obj(w, &p, &["weight", "value", "description"]) else { continue };
                (o.get("weight").map_or(Some(1), Value::as_u64), o.get("value").cloned())
            }
            _ => (None, None),
        };
        match weight {
            Some(wt) if wt <= 1_000_000 => {
                variants.insert(name.clone(), Variant { weight: wt as u32, value });
            }
            _ => v.err(&p, "expected a whole weight from 0 to 1000000, or {weight: N, value: ...}"),
        }
    }
    if variants.len() > MAX_VARIANTS {
        v.err(&vpath, format!("{} variants; an experiment has at most {MAX_VARIANTS}", variants.len()));
    }
    if m.get("variants").is_none() {
        v.err(&vpath, "required: e.g. {control: 1, treatment: 1}");
    } else if variants.is_empty() && v.errors.len() == n_errors {
        v.err(&vpath, "at least one variant is required, e.g. {control: 1, treatment: 1}");
    } else if !variants.is_empty() && variants.values().all(|x| x.weight == 0) {
        v.err(&vpath, "at least one variant needs a weight above 0");
    }

    let targeting = match m.get("targeting") {
        None | Some(Value::Null) => None,
        Some(t) => match Targeting::parse(t, &join(path, "targeting")) {
            Ok(t) => {
                v.errors.extend(crate::targeting::check_references(&t, &join(path, "targeting"), &cfg.segments));
                v.errors.extend(crate::targeting::check_size(&t, &join(path, "targeting"), &cfg.segments));
                Some(t)
            }
            Err(es) => {
                v.errors.extend(es);
                None
            }
        },
    };

    let mut include = IndexMap::new();
    let ipath = join(path, "include");
    match m.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Object(inc)) => {
            for (unit_id, var) in inc {
                match var.as_str() {
                    Some(vn) if variants.contains_key(vn) => {
                        include.insert(unit_id.clone(), vn.to_string());
                    }
                    Some(vn) => v.err(join(&ipath, unit_id), format!("unknown variant `{vn}`")),
                    None => v.err(join(&ipath, unit_id), "expected a variant name"),
                }
            }
        }
        Some(other) => v.err(&ipath, format!("expected a map of unit id → variant, found {}", kind(other))),
    }

    let state = match m.get("state") {
        None => ExpState::Draft,
        Some(s) => match s.as_str() {
            Some("draft") => ExpState::Draft,
            Some("running") => ExpState::Running,
            Some("stopped") => ExpState::Stopped,
            Some("archived") => ExpState::Archived,
            _ => {
                v.err(join(path, "state"), "expected one of: draft, running, stopped, archived");
                ExpState::Draft
            }
        },
    };
    let salt = match m.get("salt") {
        None => Some(id.to_string()),
        s => v.string(s, &join(path, "salt")),
    };

    let mut requires = vec![];
    let rpath = join(path, "requires");
    match m.get("requires") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                let p = index(&rpath, i);
                let Some(o) = v.obj(it, &p, &["experiment", "variants"]) else { continue };
                let exp = v.string(o.get("experiment"), &join(&p, "experiment"));
                let vars = v.strings(o.get("variants"), &join(&p, "variants"));
                if vars.is_empty() {
                    v.err(join(&p, "variants"), "required: the variants that qualify");
                }
                if let Some(exp) = exp {
                    requires.push(Requirement { experiment: exp, variants: vars });
                }
            }
        }
        Some(Value::Object(o)) => {
            for (exp, vars) in o {
                let vars = v.strings(Some(vars), &join(&rpath, exp));
                requires.push(Requirement { experiment: exp.clone(), variants: vars });
            }
        }
        Some(other) => v.err(&rpath, format!("expected a list of {{experiment, variants}}, found {}", kind(other))),
    }
    if requires.iter().any(|r| r.experiment == id) {
        v.err(&rpath, "an experiment cannot require itself");
    }
    let sticky = match m.get("sticky") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            v.err(join(path, "sticky"), "expected true or false");
            false
        }
    };
    if v.errors.len() > n_errors {
        return None;
    }
    Some(Experiment {
        unit: unit?,
        surfaces,
        tags,
        exclusive_to,
        groups,
        share,
        variants,
        targeting,
        include,
        state,
        salt: salt?,
        requires,
        sticky,
    })
}

/// A prerequisite cycle, if any, as the ids along it.
fn requirement_cycle(cfg: &Config) -> Option<Vec<String>> {
    fn visit(cfg: &Config, id: &str, stack: &mut Vec<String>, done: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == id) {
            let mut c = stack[pos..].to_vec();
            c.push(id.to_string());
            return Some(c);
        }
        if done.iter().any(|d| d == id) {
            return None;
        }
        stack.push(id.to_string());
        if let Some(e) = cfg.experiments.get(id) {
            for r in &e.requires {
                if let Some(c) = visit(cfg, &r.experiment, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.push(id.to_string());
        None
    }
    let mut done = vec![];
    for id in cfg.experiments.keys() {
        if let Some(c) = visit(cfg, id, &mut vec![], &mut done) {
            return Some(c);
        }
    }
    None
}

/// Experiment ids in dependency order (prerequisites first), then config order.
pub fn dependency_order(cfg: &Config) -> Vec<String> {
    fn visit(cfg: &Config, id: &str, out: &mut Vec<String>, seen: &mut Vec<String>) {
        if seen.iter().any(|s| s == id) {
            return;
        }
        seen.push(id.to_string());
        if let Some(e) = cfg.experiments.get(id) {
            for r in &e.requires {
                visit(cfg, &r.experiment, out, seen);
            }
            out.push(id.to_string());
        }
    }
    let (mut out, mut seen) = (vec![], vec![]);
    for id in cfg.experiments.keys() {
        visit(cfg, id, &mut out, &mut seen);
    }
    out
}

impl Config {
    /// Tags an experiment carries, including its groups' surfaces.
    pub fn tags_of(&self, e: &Experiment) -> Vec<String> {
        let mut t: Vec<String> = e.all_tags().cloned().collect();
        for g in &e.groups {
            if let Some(group) = self.groups.get(&g.group) {
                t.extend(group.surfaces.iter().cloned());
            }
        }
        t
    }

    /// Tags an experiment is exclusive to, including its groups' surfaces.
    pub fn exclusive_to_of(&self, e: &Experiment) -> Vec<String> {
        let mut t: Vec<String> = e.all_exclusive_to().cloned().collect();
        for g in &e.groups {
            if let Some(group) = self.groups.get(&g.group) {
                t.extend(group.surfaces.iter().cloned());
            }
        }
        t
    }

    /// Whether two experiments must never share a unit (the rule lives in
    /// [`crate::scope::Scope::excludes`]).
    pub fn exclusive(&self, a: &str, b: &str) -> bool {
        let (Some(ea), Some(eb)) = (self.experiments.get(a), self.experiments.get(b)) else { return false };
        if a == b || ea.unit != eb.unit {
            return false;
        }
        crate::scope::Scope::of(self, ea).excludes(&crate::scope::Scope::of(self, eb))
    }

    /// Whether experiment `e` is in the exclusion scope of group `g` (it carries or is exclusive
    /// to one of the group's surfaces): then, unless it is a member, it never draws from the
    /// group's buckets, whether or not the group's slots have members.
    pub fn in_group_scope(&self, e: &Experiment, g: &Group) -> bool {
        e.unit == g.unit && {
            let (tags, excl) = (self.tags_of(e), self.exclusive_to_of(e));
            g.surfaces.iter().any(|s| tags.contains(s) || excl.contains(s))
        }
    }

    /// Why exclusive experiments `a` and `b` may share buckets: the stable attributes (of their
    /// unit type, which include the unit id's own attribute) on which their targeting is
    /// provably disjoint (empty: one matches no one). `None`: they must not share a bucket.
    pub fn sharing(&self, a: &Experiment, b: &Experiment) -> Option<Vec<String>> {
        let (Some(ta), Some(tb)) = (&a.targeting, &b.targeting) else { return None };
        let u = self.units.get(&a.unit)?;
        crate::targeting::disjoint_on(ta, tb, &self.segments, &u.proof_attributes())
    }

    /// Whether holdout `h` applies to experiment `id`.
    pub fn holdout_applies(&self, h: &Holdout, id: &str) -> bool {
        let Some(e) = self.experiments.get(id) else { return false };
        if e.unit != h.unit {
            return false;
        }
        let tags = self.tags_of(e);
        h.applies_to.iter().any(|a| a == "all" || a == id || tags.contains(a) || e.groups.iter().any(|g| &g.group == a))
    }
}
