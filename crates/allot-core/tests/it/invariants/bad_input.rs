use super::*;

// ---------------------------------------------------------------------------------------------
// Invariant 6: bad input never panics and names its field
// ---------------------------------------------------------------------------------------------

/// Every node of a tree with its path in allot's error notation (`a.b[2].c`) and its JSON
/// pointer.
pub(super) fn nodes(v: &Value, path: &str, ptr: &str, out: &mut Vec<(String, String)>) {
    out.push((path.to_string(), ptr.to_string()));
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                nodes(x, &p, &format!("{ptr}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                nodes(x, &format!("{path}[{i}]"), &format!("{ptr}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A value of a type the field cannot have.
pub(super) fn wrong_type(v: &Value, pick: u8) -> Value {
    match v {
        Value::Object(_) => [json!(7), json!("text"), json!([1, 2])][pick as usize % 3].clone(),
        Value::Array(_) => [json!(7), json!({"bogus": 1}), json!(true)][pick as usize % 3].clone(),
        _ => [json!({"bogus": 1}), json!([[]]), json!(true)][pick as usize % 3].clone(),
    }
}

pub(super) fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|x| json!(x)),
        "[a-z0-9%.:_ -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("30%"),
            Just("user"),
            Just("running"),
            Just("s0"),
            Just("all"),
            Just("150%"),
            Just("0.5"),
            Just("1e-3")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("unit".to_string()),
                        Just("share".to_string()),
                        Just("user".to_string()),
                        Just("state".to_string()),
                        Just("variants".to_string()),
                        Just("slots".to_string()),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

pub(super) fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        TestCaseError::fail(format!("{what} panicked: {msg}"))
    })
}

/// Loads a configuration (and, when it is valid, plans it over an empty state): never panics.
pub(super) fn load_anything(text: &str) -> Check {
    let loaded = no_panic("config::load", || config::load(text))?;
    match loaded {
        Ok(cfg) => {
            let raw = config::parse_yaml(text).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            no_panic("plan::plan", || plan::plan(&State::default(), &cfg, &raw, &opts(false)).map(|_| ()))?.ok();
        }
        Err(es) => {
            ensure!(!es.is_empty(), "an error list with no errors");
            for e in &es {
                ensure!(!e.message.is_empty(), "error without a message: {e:?}");
            }
        }
    }
    Ok(())
}

/// Parses a state file and, when it parses, compiles, evaluates, audits and re-plans it: none
/// of that may panic.
pub(super) fn use_state(text: &str) -> Check {
    let parsed = no_panic("State::from_json", || State::from_json(text))?;
    let Ok(st) = parsed else { return Ok(()) };
    let snap = no_panic("Snapshot::compile", || Snapshot::compile(&st))?;
    let Ok(snap) = snap else { return Ok(()) };
    no_panic("evaluate_all", || evaluate_snapshot(&snap, 50))?;
    let cfg = plan::applied_config(&st).ok().flatten().unwrap_or_default();
    no_panic("audit", || audit(&st, &cfg))?;
    if let Some(raw) = &st.config {
        no_panic("plan::plan", || plan::plan(&st, &cfg, raw, &opts(false)).map(|_| ()))?.ok();
    }
    for space in st.spaces.keys() {
        no_panic("salt::resalt", || salt::resalt(&st, space, TIME, None, None).map(|_| ()))?.ok();
    }
    Ok(())
}

/// A JSON mutation of a state file.
#[derive(Clone, Debug)]
pub(super) enum Mutation {
    Replace(u16, Value),
    Remove(u16),
    /// Rewrites a bucket set's text: its space, its head, or a cut of its body.
    BucketSet(u16, u8, u32),
    Number(u16, i64),
    /// Sets a number the rest of the state depends on: a space's size, an allocation id, a
    /// version.
    Key(u16, i64),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<u16>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<u16>().prop_map(Mutation::Remove),
        1 => (any::<u16>(), 0u8..4, any::<u32>()).prop_map(|(i, k, x)| Mutation::BucketSet(i, k, x)),
        1 => (
            any::<u16>(),
            prop_oneof![
                Just(0i64),
                Just(1),
                Just(-1),
                Just(128),
                Just(5_000),
                Just(20_000),
                Just(100_000),
                Just(i64::MAX),
                any::<i64>()
            ]
        )
            .prop_map(|(i, n)| Mutation::Number(i, n)),
        2 => (
            any::<u16>(),
            prop_oneof![Just(0i64), Just(1), Just(2), Just(127), Just(129), Just(5_000), Just(20_000), Just(100_000)]
        )
            .prop_map(|(i, n)| Mutation::Key(i, n)),
    ]
}

pub(super) fn mutate_state(v: &mut Value, m: &Mutation) {
    let mut all = vec![];
    nodes(v, "", "", &mut all);
    let pick = |i: u16, f: &dyn Fn(&Value) -> bool, v: &Value| -> Option<String> {
        let c: Vec<&String> = all.iter().filter(|(_, p)| v.pointer(p).is_some_and(f)).map(|(_, p)| p).collect();
        (!c.is_empty()).then(|| c[i as usize % c.len()].clone())
    };
    match m {
        Mutation::Replace(i, x) => {
            if let Some(p) = pick(*i, &|_| true, v) {
                if let Some(t) = v.pointer_mut(&p) {
                    *t = x.clone();
                }
            }
        }
        Mutation::Remove(i) => {
            if let Some(p) = pick(*i, &|_| true, v) {
                if let Some((parent, key)) = p.rsplit_once('/') {
                    match v.pointer_mut(parent) {
                        Some(Value::Object(o)) => {
                            o.shift_remove(key);
                        }
                        Some(Value::Array(a)) => {
                            if let Ok(i) = key.parse::<usize>() {
                                if i < a.len() {
                                    a.remove(i);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Mutation::BucketSet(i, k, x) => {
            let is_set = |v: &Value| v.as_str().is_some_and(|s| s.split(':').count() == 3);
            if let Some(p) = pick(*i, &is_set, v) {
                if let Some(Value::String(s)) = v.pointer_mut(&p) {
                    let parts: Vec<String> = s.splitn(3, ':').map(String::from).collect();
                    *s = match k {
                        0 => format!(
                            "{}:{}:{}",
                            [1, 127, 128, 5_000, 20_000, 100_000, 1_000_000][*x as usize % 7],
                            parts[1],
                            parts[2]
                        ),
                        1 => format!("{}:{}{}:{}", parts[0], ["b", "d", "x"][*x as usize % 3], x % 300, parts[2]),
                        2 => {
                            let cut = *x as usize % (parts[2].len() + 1);
                            format!("{}:{}:{}", parts[0], parts[1], &parts[2][..cut])
                        }
                        _ => format!("{}:{}:{}A", parts[0], parts[1], parts[2]),
                    };
                }
            }
        }
        Mutation::Key(i, n) => {
            let kind = |path: &str| match path {
                p if p.starts_with("spaces") && p.ends_with(".buckets") => Some(0),
                p if p.ends_with("].id") => Some(1),
                p if p.ends_with(".version") || p == "version" => Some(2),
                _ => None,
            };
            let keys: Vec<&String> =
                all.iter().filter(|(path, _)| kind(path) == Some(*i % 3)).map(|(_, p)| p).collect();
            if !keys.is_empty() {
                let p = keys[(*i / 3) as usize % keys.len()].clone();
                if let Some(t) = v.pointer_mut(&p) {
                    *t = json!(n);
                }
            }
        }
        Mutation::Number(i, n) => {
            if let Some(p) = pick(*i, &Value::is_number, v) {
                if let Some(t) = v.pointer_mut(&p) {
                    *t = json!(n);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Invariant 6 — Nothing lost (bad configuration text): arbitrary text never panics
    /// `config::load`, and what loads can be planned without a panic.
    #[test]
    fn nothing_lost_garbage_text(text in prop_oneof![
        any::<String>(),
        "[a-z0-9_:{}\\[\\], \n%.-]{0,120}",
        (model(), any::<u16>(), "[a-z0-9:{}\\[\\], \n%-]{0,6}").prop_map(|(m, at, ins)| {
            // Valid YAML with a few characters spliced in.
            let text = serde_yaml_ng::to_string(&m.render()).unwrap_or_default();
            let at = (at as usize % (text.len() + 1)..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
            format!("{}{}{}", &text[..at], ins, &text[at..])
        }),
    ]) {
        load_anything(&text)?;
    }

    /// Invariant 6 — Nothing lost (wrong types): a valid configuration with one field replaced by
    /// a value of the wrong type is rejected with an error at (or under) that field; random trees
    /// under the right top-level keys never panic and every error names a field.
    #[test]
    fn nothing_lost_wrong_types(m in model(), at in any::<u16>(), pick in any::<u8>(), trees in proptest::collection::vec(any_json(), 6)) {
        let mut raw = m.render();
        let mut all = vec![];
        nodes(&raw, "", "", &mut all);
        // Targeting values may be of several types (`in: [true]` is fine): not checked here.
        all.retain(|(path, _)| !path.is_empty() && !path.contains(".targeting") && !path.starts_with("segments."));
        let (path, ptr) = all[at as usize % all.len()].clone();
        let bad = {
            let node = raw.pointer_mut(&ptr).ok_or_else(|| TestCaseError::fail("pointer"))?;
            *node = wrong_type(node, pick);
            node.clone()
        };
        let res = no_panic("config::validate", || config::validate(&raw))?;
        match res {
            Ok(_) => prop_assert!(false, "`{path}` = {bad} was accepted"),
            Err(es) => {
                ensure_paths(&es)?;
                prop_assert!(es.iter().any(|e| e.path.starts_with(&path)), "`{path}` = {bad}: no error names it: {es:?}");
            }
        }
        // Random trees under the right top-level keys.
        let keys = ["units", "surfaces", "segments", "holdouts", "groups", "experiments"];
        let mut top = Map::new();
        for (k, t) in keys.iter().zip(trees) {
            top.insert((*k).to_string(), t);
        }
        let raw = Value::Object(top);
        if let Err(es) = no_panic("config::validate", || config::validate(&raw))? {
            ensure_paths(&es)?;
        }
        let text = serde_yaml_ng::to_string(&raw).unwrap_or_default();
        load_anything(&text)?;
    }

    /// Invariant 6 — Nothing lost (state files): random mutations of a valid state file never
    /// panic `State::from_json`, nor — when it still parses — compiling, evaluating, auditing,
    /// re-planning or re-salting it.
    #[test]
    fn nothing_lost_state_file(scn in scenario(), muts in proptest::collection::vec(mutation(), 1..4), flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..3)) {
        let w = run(&Scenario { model: scn.model, steps: scn.steps[..1].to_vec() }, Checks::default(), 10)?;
        let mut v = serde_json::to_value(&w.state).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for m in &muts {
            mutate_state(&mut v, m);
        }
        let mut text = v.to_string().into_bytes();
        for (at, byte) in flips {
            if !text.is_empty() {
                let i = at as usize % text.len();
                text[i] = byte;
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        use_state(&text)?;
    }
}
