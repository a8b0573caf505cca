//! Targeting: segment checks.

use super::*;

/// Checks that every `segment:` reference inside `segments` (name → parsed definition) resolves
/// and that segments reference each other without cycles. An unknown reference is reported at
/// the referencing field (`segments.<name>.all[0].segment`), a cycle at `segments.<name>` of the
/// segment where it starts. Check experiments' own references with [`check_references`].
pub fn check_segments(segments: &IndexMap<String, Targeting>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (name, t) in segments {
        errors.extend(check_references(t, &join("segments", name), segments));
    }
    // Depth-first search for cycles; each back edge is reported once.
    let mut state = vec![0u8; segments.len()]; // 0 unvisited, 1 on the stack, 2 done
    let mut stack = Vec::new();
    for i in 0..segments.len() {
        if state[i] == 0 {
            find_cycles(i, segments, &mut state, &mut stack, &mut errors);
        }
    }
    // Sizes with segments inlined: only the first segment of a chain past the bound is
    // reported (those that use it are past it too, for the same reason).
    let mut memo = HashMap::new();
    for (name, t) in segments {
        let n = size_of(t, segments, &mut memo, &mut Vec::new());
        let within = |r: &str| segments.get(r).is_none_or(|d| expanded_size(d, segments) <= MAX_TARGETING_NODES);
        if n > MAX_TARGETING_NODES && t.segment_refs().into_iter().all(within) {
            errors.extend(check_size(t, &join("segments", name), segments));
        }
    }
    errors
}

pub(super) fn find_cycles(
    i: usize,
    segments: &IndexMap<String, Targeting>,
    state: &mut [u8],
    stack: &mut Vec<usize>,
    errors: &mut Vec<FieldError>,
) {
    state[i] = 1;
    stack.push(i);
    if let Some((_, t)) = segments.get_index(i) {
        for r in t.segment_refs() {
            let Some(j) = segments.get_index_of(r) else {
                continue;
            };
            match state[j] {
                0 => find_cycles(j, segments, state, stack, errors),
                1 => {
                    let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let names: Vec<&str> = stack[start..]
                        .iter()
                        .chain(std::iter::once(&j))
                        .filter_map(|&k| segments.get_index(k).map(|(n, _)| n.as_str()))
                        .collect();
                    errors.push(FieldError::new(
                        join("segments", r),
                        format!("segments reference each other in a cycle: {}", names.join(" -> ")),
                    ));
                }
                _ => {}
            }
        }
    }
    stack.pop();
    state[i] = 2;
}

/// Checks that every `segment:` reference in `t` (parsed at `path`) names one of `segments`;
/// each unknown one is reported at its own field, e.g. `experiments.x.targeting.any[1].segment`.
pub fn check_references(t: &Targeting, path: &str, segments: &IndexMap<String, Targeting>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk_references(t, path, segments, &mut errors);
    errors
}

pub(super) fn walk_references(
    t: &Targeting,
    path: &str,
    segments: &IndexMap<String, Targeting>,
    errors: &mut Vec<FieldError>,
) {
    match t {
        Targeting::All(cs) => {
            let p = join(path, "all");
            for (i, c) in cs.iter().enumerate() {
                walk_references(c, &index(&p, i), segments, errors);
            }
        }
        Targeting::Any(cs) => {
            let p = join(path, "any");
            for (i, c) in cs.iter().enumerate() {
                walk_references(c, &index(&p, i), segments, errors);
            }
        }
        Targeting::Not(c) => walk_references(c, &join(path, "not"), segments, errors),
        Targeting::Segment(name) => {
            if !segments.contains_key(name) {
                let known = if segments.is_empty() {
                    "no segments are defined".to_string()
                } else {
                    let names: Vec<&str> = segments.keys().map(String::as_str).collect();
                    format!("defined segments: {}", quoted_list(&names))
                };
                errors.push(FieldError::new(join(path, "segment"), format!("unknown segment `{name}`; {known}")));
            }
        }
        Targeting::Criterion(_) => {}
    }
}

/// The most nodes (criteria, `all`/`any`/`not` and segment references) one targeting expression
/// may have with its segments inlined: a segment used twice counts twice. Evaluation walks the
/// inlined expression, so this bounds the time of one evaluation; a chain of segments that each
/// use the previous one twice would otherwise double per level (26 levels: 2^26 nodes from
/// 1.5 KB of text).
pub const MAX_TARGETING_NODES: u64 = 10_000;

/// The number of nodes of `t` with `segments` inlined, saturating; a reference that closes a
/// cycle or names no segment counts one (both are reported by the other checks).
pub fn expanded_size(t: &Targeting, segments: &IndexMap<String, Targeting>) -> u64 {
    let mut memo = HashMap::new();
    size_of(t, segments, &mut memo, &mut Vec::new())
}

pub(super) fn size_of<'a>(
    t: &'a Targeting,
    segments: &'a IndexMap<String, Targeting>,
    memo: &mut HashMap<&'a str, u64>,
    stack: &mut Vec<&'a str>,
) -> u64 {
    match t {
        Targeting::All(cs) | Targeting::Any(cs) => {
            cs.iter().fold(1u64, |n, c| n.saturating_add(size_of(c, segments, memo, stack)))
        }
        Targeting::Not(c) => size_of(c, segments, memo, stack).saturating_add(1),
        Targeting::Criterion(_) => 1,
        Targeting::Segment(name) => {
            if let Some(&n) = memo.get(name.as_str()) {
                return n;
            }
            let Some((key, def)) = segments.get_key_value(name) else { return 1 };
            if stack.contains(&key.as_str()) {
                return 1;
            }
            stack.push(key);
            let n = size_of(def, segments, memo, stack).saturating_add(1);
            stack.pop();
            memo.insert(key, n);
            n
        }
    }
}

/// An error at `path` when `t` expands past [`MAX_TARGETING_NODES`] with `segments` inlined.
pub fn check_size(t: &Targeting, path: &str, segments: &IndexMap<String, Targeting>) -> Option<FieldError> {
    let n = expanded_size(t, segments);
    (n > MAX_TARGETING_NODES).then(|| {
        FieldError::new(
            path,
            format!(
                "expands to {} nodes with its segments inlined (a segment used twice counts twice); at most {MAX_TARGETING_NODES}: use each segment once, or flatten the chain",
                if n == u64::MAX { "more than 2^64".to_string() } else { n.to_string() }
            ),
        )
    })
}

impl Targeting {
    /// Whether the expression uses segment `name`, directly or through other segments.
    pub fn uses_segment(&self, name: &str, segments: &IndexMap<String, Targeting>) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut todo: Vec<&Targeting> = vec![self];
        while let Some(t) = todo.pop() {
            for r in t.segment_refs() {
                if r == name {
                    return true;
                }
                if !seen.contains(&r) {
                    seen.push(r);
                    todo.extend(segments.get(r));
                }
            }
        }
        false
    }

    /// The expression with every segment reference replaced by the segment's definition, as
    /// evaluation sees it. Change control compares inlined expressions, so that a change to a
    /// segment is a change to every expression that uses it. A reference that names no segment
    /// or closes a cycle is kept as it is. Expressions that passed [`check_size`] stay within
    /// [`MAX_TARGETING_NODES`].
    pub fn inline(&self, segments: &IndexMap<String, Targeting>) -> Targeting {
        fn go<'a>(t: &'a Targeting, segments: &'a IndexMap<String, Targeting>, stack: &mut Vec<&'a str>) -> Targeting {
            match t {
                Targeting::All(cs) => Targeting::All(cs.iter().map(|c| go(c, segments, stack)).collect()),
                Targeting::Any(cs) => Targeting::Any(cs.iter().map(|c| go(c, segments, stack)).collect()),
                Targeting::Not(c) => Targeting::Not(Box::new(go(c, segments, stack))),
                Targeting::Criterion(_) => t.clone(),
                Targeting::Segment(name) => match segments.get_key_value(name) {
                    Some((key, def)) if !stack.contains(&key.as_str()) => {
                        stack.push(key);
                        let out = go(def, segments, stack);
                        stack.pop();
                        out
                    }
                    _ => t.clone(),
                },
            }
        }
        go(self, segments, &mut Vec::new())
    }
}
