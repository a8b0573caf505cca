//! Validation: the raw tree (from YAML or JSON) into [`Config`], every error at once with the
//! path of its field.

use super::*;

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

pub(super) struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
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

    /// `hash:` / `split_hash:`: `allot` (the default) or `amplitude`.
    fn bucket_hash(&mut self, v: Option<&Value>, path: &str) -> Option<BucketHash> {
        match v {
            None => Some(BucketHash::Allot),
            Some(Value::String(s)) if s == "allot" => Some(BucketHash::Allot),
            Some(Value::String(s)) if s == "amplitude" => Some(BucketHash::Amplitude),
            Some(other) => {
                self.err(path, format!("expected `allot` or `amplitude`, found {}", kind(other)));
                None
            }
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

pub(super) const TOP: &[&str] = &["units", "surfaces", "segments", "holdouts", "groups", "experiments"];
/// The keys of a unit type.
pub const UNIT_KEYS: &[&str] = &["attribute", "buckets", "salt", "stable", "hash"];
/// The keys of a holdout.
pub const HOLDOUT_KEYS: &[&str] = &["unit", "share", "applies_to", "description"];
/// The keys of a group.
pub const GROUP_KEYS: &[&str] = &["unit", "share", "slots", "surfaces", "description"];
/// The keys of an experiment.
pub const EXP_KEYS: &[&str] = &[
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
    "split_hash",
];

/// Validates a raw tree into a [`Config`], reporting every error.
pub fn validate(raw: &Value) -> Result<Config, Vec<FieldError>> {
    let mut v = Validator { errors: vec![] };
    let mut cfg = Config::default();
    let Some(top) = v.obj(raw, "", TOP) else {
        return Err(v.errors);
    };

    // Unit types.
    for (name, u) in v.map(top.get("units"), "units") {
        let path = join("units", name);
        let Some(m) = v.obj(u, &path, UNIT_KEYS) else { continue };
        let stable = v.strings(m.get("stable"), &join(&path, "stable"));
        let attribute = v.string(m.get("attribute"), &join(&path, "attribute"));
        let buckets = match m.get("buckets") {
            None => Some(DEFAULT_BUCKETS),
            Some(b) => match b.as_u64() {
                Some(n) if (1..=u64::from(MAX_BUCKETS)).contains(&n) => Some(n as u32),
                _ => {
                    v.err(join(&path, "buckets"), format!("expected a whole number from 1 to {MAX_BUCKETS}"));
                    None
                }
            },
        };
        // Amplitude's salts may be empty (it hashes `"/<id>"`); allot's may not.
        let amplitude = m.get("hash").and_then(Value::as_str) == Some("amplitude");
        let salt = match m.get("salt") {
            None => Some(name.clone()),
            Some(Value::String(s)) if s.is_empty() && amplitude => Some(String::new()),
            s => v.string(s, &join(&path, "salt")),
        };
        let hash = v.bucket_hash(m.get("hash"), &join(&path, "hash"));
        if hash == Some(BucketHash::Amplitude) && m.get("buckets").is_some() && buckets != Some(AMPLITUDE_BUCKETS) {
            v.err(
                join(&path, "buckets"),
                format!("with `hash: amplitude` the space has {AMPLITUDE_BUCKETS} buckets (Amplitude allocates by hash % 100)"),
            );
        }
        let buckets = if hash == Some(BucketHash::Amplitude) && m.get("buckets").is_none() {
            Some(AMPLITUDE_BUCKETS)
        } else {
            buckets
        };
        if let (Some(attribute), Some(buckets), Some(salt), Some(hash)) = (attribute, buckets, salt, hash) {
            cfg.units.insert(name.clone(), UnitType { attribute, buckets, salt, hash, stable });
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
        let Some(m) = v.obj(h, &path, HOLDOUT_KEYS) else { continue };
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
        let Some(m) = v.obj(g, &path, GROUP_KEYS) else { continue };
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
        // Amplitude hashes one `<salt>/<unit>` for both (`% 100` places, `/ 100` splits): an
        // imported experiment reproduces that on its own Amplitude-hashed unit type.
        let amplitude_pair = |u: &UnitType| e.split_hash == BucketHash::Amplitude && u.hash == BucketHash::Amplitude;
        if let Some((name, _)) = cfg.units.iter().find(|(_, u)| u.salt == e.salt && !amplitude_pair(u)) {
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
    // Experiments with explicit split ranges are exempt among themselves: they reproduce a
    // foreign engine's split (Confidence hashes `<segment>|unit` for every rule on a segment), and
    // their variants are as correlated there as here.
    for (id, e) in &live {
        by_salt.entry((e.unit.as_str(), e.salt.as_str())).or_default().push(id.as_str());
    }
    let explicit = |id: &str| cfg.experiments[id].variants.values().any(|x| x.ranges.is_some());
    for (id, e) in &live {
        let same = &by_salt[&(e.unit.as_str(), e.salt.as_str())];
        if let Some(other) = same
            .iter()
            .take_while(|o| **o != id.as_str())
            .find(|o| !(cfg.exclusive(id, o) || (explicit(id) && explicit(o))))
        {
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

pub(super) fn check_surfaces(v: &mut Validator, declared: &[String], used: &[String], path: &str) {
    for (i, s) in used.iter().enumerate() {
        if !declared.contains(s) {
            v.err(index(path, i), format!("unknown surface `{s}`; declared: [{}]", declared.join(", ")));
        }
    }
}

/// Parses a variant's explicit split ranges: a list of `[lo, hi]` with `0 <= lo < hi`.
pub(super) fn split_ranges(v: &Value) -> Result<Vec<(u32, u32)>, String> {
    let Value::Array(items) = v else {
        return Err(format!("expected a list of [lo, hi] split bucket ranges, found {}", kind(v)));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let pair = it.as_array().filter(|p| p.len() == 2).and_then(|p| Some((p[0].as_u64()?, p[1].as_u64()?)));
        match pair {
            Some((lo, hi)) if lo < hi && hi <= MAX_SPLIT_BUCKETS => out.push((lo as u32, hi as u32)),
            _ => {
                return Err(format!(
                    "[{i}]: expected [lo, hi] with whole numbers 0 <= lo < hi <= {MAX_SPLIT_BUCKETS}, found {it}"
                ))
            }
        }
    }
    Ok(out)
}

/// With explicit ranges, every variant has them and together they tile `0..N` exactly: each
/// split bucket belongs to exactly one variant.
pub(super) fn check_tiling(variants: &IndexMap<String, Variant>) -> Result<(), String> {
    if variants.values().all(|x| x.ranges.is_none()) {
        return Ok(());
    }
    if let Some((name, _)) = variants.iter().find(|(_, x)| x.ranges.is_none()) {
        return Err(format!("variant `{name}` has no `ranges`: when one variant has explicit ranges, all do"));
    }
    let mut all: Vec<(u32, u32, &str)> = variants
        .iter()
        .flat_map(|(n, x)| x.ranges.iter().flatten().map(move |(lo, hi)| (*lo, *hi, n.as_str())))
        .collect();
    all.sort_unstable();
    let mut end = 0u32;
    for (lo, hi, name) in &all {
        if *lo > end {
            return Err(format!("split buckets {end}..{lo} belong to no variant: the ranges must tile 0..N"));
        }
        if *lo < end {
            return Err(format!("the range [{lo}, {hi}] of `{name}` overlaps another variant's ranges"));
        }
        end = *hi;
    }
    if end == 0 {
        return Err("explicit ranges hold no split bucket".into());
    }
    Ok(())
}

pub(super) fn experiment(v: &mut Validator, cfg: &Config, e: &Value, path: &str, id: &str) -> Option<Experiment> {
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
        let (weight, value, ranges) = match w {
            Value::Number(_) => (w.as_u64(), None, None),
            Value::Object(_) => {
                let Some(o) = v.obj(w, &p, &["weight", "value", "description", "ranges"]) else { continue };
                let ranges = match o.get("ranges") {
                    None => None,
                    Some(r) => match split_ranges(r) {
                        Ok(r) => Some(r),
                        Err(m) => {
                            v.err(join(&p, "ranges"), m);
                            continue;
                        }
                    },
                };
                // With explicit ranges the weight is the number of split buckets they hold.
                let held: Option<u64> = ranges.as_ref().map(|r| r.iter().map(|(lo, hi)| u64::from(hi - lo)).sum());
                let weight = match (o.get("weight"), held) {
                    (None, Some(h)) => Some(h),
                    (None, None) => Some(1),
                    (Some(w), Some(h)) if w.as_u64() != Some(h) => {
                        v.err(
                            join(&p, "weight"),
                            format!("with `ranges` the weight is the {h} split buckets they hold (or leave it out)"),
                        );
                        continue;
                    }
                    (Some(w), _) => w.as_u64(),
                };
                (weight, o.get("value").cloned(), ranges)
            }
            _ => (None, None, None),
        };
        match weight {
            Some(wt) if wt <= 1_000_000 || (ranges.is_some() && wt <= MAX_SPLIT_BUCKETS) => {
                variants.insert(name.clone(), Variant { weight: wt as u32, value, ranges });
            }
            _ => v.err(&p, "expected a whole weight from 0 to 1000000, or {weight: N, value: ...}"),
        }
    }
    if let Err(m) = check_tiling(&variants) {
        v.err(&vpath, m);
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

    let (state, paused) = match m.get("state") {
        None => (ExpState::Draft, false),
        Some(s) => match s.as_str() {
            Some("draft") => (ExpState::Draft, false),
            Some("running") => (ExpState::Running, false),
            // Running in every respect but serving: it keeps its buckets.
            Some("paused") => (ExpState::Running, true),
            Some("stopped") => (ExpState::Stopped, false),
            Some("archived") => (ExpState::Archived, false),
            _ => {
                v.err(join(path, "state"), "expected one of: draft, running, paused, stopped, archived");
                (ExpState::Draft, false)
            }
        },
    };

    let split_hash = v.bucket_hash(m.get("split_hash"), &join(path, "split_hash"));
    if split_hash == Some(BucketHash::Amplitude) {
        let end = variants.values().flat_map(|x| x.ranges.iter().flatten()).map(|r| r.1).max();
        if variants.values().any(|x| x.ranges.is_none()) || end != Some(AMPLITUDE_SPLIT_BUCKETS) {
            v.err(
                join(path, "split_hash"),
                format!(
                    "with `split_hash: amplitude` every variant has `ranges` and together they tile 0..{AMPLITUDE_SPLIT_BUCKETS} (Amplitude splits by hash / 100)"
                ),
            );
        }
    }

    let salt = match m.get("salt") {
        None => Some(id.to_string()),
        Some(Value::String(s)) if s.is_empty() && split_hash == Some(BucketHash::Amplitude) => Some(String::new()),
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
        split_hash: split_hash?,
        requires,
        sticky,
        paused,
    })
}

/// A prerequisite cycle, if any, as the ids along it.
pub(super) fn requirement_cycle(cfg: &Config) -> Option<Vec<String>> {
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
