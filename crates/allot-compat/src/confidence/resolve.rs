//! Resolving: a request against the compiled state, flag by flag and rule by rule, with
//! Confidence's materializations (sticky assignments) and its three-valued logic while they are
//! unknown.

use super::matching::*;
use super::{
    managed, Assignment, AttrRule, Attribute, Client, Criterion, Expr, Flag, Kind, MaterializationEntry, Op, Reason,
    Request, ResolveError, Resolved, Rule, Spec, State, Targeting, TypedValue, BUCKETS, MAX_FLAGS_PER_RESOLVE,
};
use allot_core::hash;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

pub(super) enum FlagError {
    Unrecognized,
    MissingMaterializations,
    Internal(String),
}

pub(super) type Tribool = Option<bool>;

pub(super) struct Materializations<'r> {
    complete: Option<&'r HashMap<String, HashMap<String, MaterializationEntry>>>,
    to_read: Vec<(String, String, String)>,
}

impl Materializations<'_> {
    pub(super) fn entry(&self, mat: &str, unit: &str) -> Option<&MaterializationEntry> {
        self.complete?.get(unit)?.get(mat).filter(|e| e.is_unit_in_materialization)
    }

    pub(super) fn is_unit_in(&mut self, mat: &str, unit: &str) -> Tribool {
        if self.complete.is_some() {
            Some(self.entry(mat, unit).is_some())
        } else {
            self.record(unit, mat, "");
            None
        }
    }

    pub(super) fn has_rule(&mut self, mat: &str, unit: &str, rule: &str) -> Tribool {
        if self.complete.is_some() {
            // A unit in a materialization with no rule recorded counts as a record with rule "".
            Some(self.entry(mat, unit).is_some_and(|e| {
                if e.rule_to_variant.is_empty() {
                    rule.is_empty()
                } else {
                    e.rule_to_variant.contains_key(rule)
                }
            }))
        } else {
            self.record(unit, mat, rule);
            None
        }
    }

    pub(super) fn variant(&self, mat: &str, unit: &str, rule: &str) -> Option<&str> {
        self.entry(mat, unit)?.rule_to_variant.get(rule).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub(super) fn record(&mut self, unit: &str, mat: &str, rule: &str) {
        if !self.to_read.iter().any(|(u, m, r)| u == unit && m == mat && r == rule) {
            self.to_read.push((unit.to_string(), mat.to_string(), rule.to_string()));
        }
    }
}

pub(super) struct FlagResult {
    reason: Reason,
    variant: Option<usize>,
    matched: bool,
    fallthrough: bool,
}

/// The per-request evaluation: the context and a one-entry cache of the unit's segment bucket.
pub(super) struct Eval<'a> {
    state: &'a State,
    ctx: &'a Map<String, Value>,
    bucket_cache: RefCell<Option<(String, u32)>>,
}

pub(super) fn lookup<'v>(ctx: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    // Small objects are scanned: cheaper than hashing the key.
    pub(super) fn get<'v>(m: &'v Map<String, Value>, k: &str) -> Option<&'v Value> {
        if m.len() <= 12 {
            m.iter().find(|(key, _)| *key == k).map(|(_, v)| v)
        } else {
            m.get(k)
        }
    }
    let mut m = ctx;
    let (last, init) = path.split_last()?;
    for p in init {
        m = get(m, p)?.as_object()?;
    }
    get(m, last)
}

impl State {
    /// Resolves a request: the flags of the request's client (all of them, or those named), each
    /// with its reason, variant, value and whether to apply it.
    pub fn resolve<'s>(&'s self, req: &Request) -> Result<Vec<Resolved<'s>>, ResolveError> {
        let empty = Map::new();
        let ctx = req.evaluation_context.as_ref().unwrap_or(&empty);
        self.resolve_context(&req.client_secret, &req.flags, ctx, req.materializations.as_ref())
    }

    /// [`State::resolve`] with the parts of a request given separately.
    pub fn resolve_context<'s>(
        &'s self,
        client_secret: &str,
        flag_names: &[String],
        ctx: &Map<String, Value>,
        materializations: Option<&HashMap<String, HashMap<String, MaterializationEntry>>>,
    ) -> Result<Vec<Resolved<'s>>, ResolveError> {
        let client = self.clients.get(client_secret).ok_or(ResolveError::UnknownClient)?;
        let merged;
        let ctx = if client.managed.is_empty() {
            ctx
        } else {
            merged = managed::merge(&client.managed, ctx);
            &merged
        };
        let wanted = |f: &&Flag| flag_names.is_empty() || flag_names.contains(&f.name);
        let selected = || client.flags.iter().map(|&i| &self.flags[i]).filter(wanted);
        let count = if flag_names.is_empty() { client.flags.len() } else { selected().count() };
        if count > MAX_FLAGS_PER_RESOLVE {
            return Err(ResolveError::TooManyFlags(count));
        }
        let eval = Eval { state: self, ctx, bucket_cache: RefCell::new(None) };
        let mut mats = Materializations { complete: materializations, to_read: Vec::new() };
        let mut out = Vec::with_capacity(count);
        for flag in selected() {
            match eval.resolve_flag(flag, client, &mut mats) {
                Ok(r) => out.push(Resolved {
                    flag: &flag.name,
                    reason: r.reason,
                    variant: r.variant.map_or("", |i| flag.variants[i].0.as_str()),
                    value: if r.matched { Some(r.variant.map_or(&self.empty, |i| &flag.variants[i].1)) } else { None },
                    should_apply: r.reason == Reason::Match || r.fallthrough,
                }),
                Err(FlagError::MissingMaterializations) => {}
                Err(FlagError::Unrecognized) => out.push(Resolved {
                    flag: &flag.name,
                    reason: Reason::NoSegmentMatch,
                    variant: "",
                    value: None,
                    should_apply: false,
                }),
                Err(FlagError::Internal(m)) => return Err(ResolveError::Internal(format!("{}: {m}", flag.name))),
            }
        }
        if !mats.to_read.is_empty() {
            let reads: Vec<String> = mats
                .to_read
                .iter()
                .map(
                    |(u, m, r)| {
                        if r.is_empty() {
                            format!("{m} for unit {u}")
                        } else {
                            format!("{m} rule {r} for unit {u}")
                        }
                    },
                )
                .collect();
            return Err(ResolveError::MissingMaterializations(reads.join(", ")));
        }
        Ok(out)
    }
}

pub(super) enum Unit<'a> {
    Some(Cow<'a, str>),
    None,
    Error,
}

impl<'a> Eval<'a> {
    pub(super) fn targeting_key(&self, rule: &Rule) -> Unit<'a> {
        let v = lookup(self.ctx, &rule.selector);
        let unit = match v {
            None | Some(Value::Null) => return Unit::None,
            Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f.fract() == 0.0 => Cow::Owned(format!("{f:.0}")),
                _ => return Unit::Error,
            },
            Some(_) => return Unit::Error,
        };
        if unit.len() > 100 {
            return Unit::Error;
        }
        Unit::Some(unit)
    }

    pub(super) fn resolve_flag(
        &self,
        flag: &Flag,
        client: &Client,
        mats: &mut Materializations<'_>,
    ) -> Result<FlagResult, FlagError> {
        let mut result =
            FlagResult { reason: Reason::NoSegmentMatch, variant: None, matched: false, fallthrough: false };
        let mut missing = false;
        for rule in &flag.rules {
            if !rule.enabled {
                continue;
            }
            if !(rule.environments.is_empty() || rule.environments.iter().any(|e| client.environments.contains(e))) {
                continue;
            }
            let Some(seg) = rule.segment else { continue };
            let unit: Option<Cow<'a, str>> = match self.targeting_key(rule) {
                Unit::Some(u) => Some(u),
                Unit::None => {
                    if rule.blank_selector {
                        None
                    } else {
                        continue;
                    }
                }
                Unit::Error => {
                    let full = rule.spec.as_ref().is_some_and(|s| s.one_full_variant);
                    if rule.blank_selector && full {
                        None
                    } else {
                        return Ok(FlagResult {
                            reason: Reason::TargetingKeyError,
                            variant: None,
                            matched: false,
                            fallthrough: result.fallthrough,
                        });
                    }
                }
            };
            let Some(spec) = &rule.spec else { continue };

            let mut matched: Tribool = Some(false);
            if let Some(m) = &rule.materialization {
                if !m.read.is_empty() {
                    let Some(unit_str) = unit.as_deref() else { continue };
                    match mats.has_rule(&m.read, unit_str, &rule.name) {
                        Some(false) => {
                            matched = Some(false);
                            if m.mode.materialization_must_match {
                                continue;
                            }
                        }
                        Some(true) => {
                            if m.mode.segment_targeting_can_be_ignored {
                                matched = Some(true);
                            } else {
                                matched = match self.targeting_match(seg, unit.as_deref(), &mut Vec::new(), mats) {
                                    Ok(t) => t,
                                    Err(FlagError::Unrecognized) => continue,
                                    Err(e) => return Err(e),
                                };
                            }
                            if matched == Some(true) {
                                if let Some(variant) = mats.variant(&m.read, unit_str, &rule.name) {
                                    if let Some(idx) = self.select_sticky(rule, spec, variant, unit_str)? {
                                        return Ok(FlagResult {
                                            reason: Reason::Match,
                                            variant: Some(idx),
                                            matched: true,
                                            fallthrough: result.fallthrough,
                                        });
                                    }
                                }
                            }
                        }
                        None => missing = true,
                    }
                }
            }

            if matched != Some(true) {
                matched = match self.segment_match(seg, unit.as_deref(), &mut Vec::new(), mats) {
                    Ok(t) => t,
                    Err(FlagError::Unrecognized) => continue,
                    Err(e) => return Err(e),
                };
            }
            match matched {
                Some(true) => {
                    if missing {
                        continue;
                    }
                }
                Some(false) => continue,
                None => {
                    missing = true;
                    continue;
                }
            }

            let assignment = if spec.one_full_variant {
                spec.assignments.first()
            } else if let Some(u) = unit.as_deref() {
                let Some(salt) = rule.variant_salt.as_deref() else {
                    return Err(FlagError::Internal(format!("{}: segment name without an id", rule.name)));
                };
                let Some(b) = variant_bucket(salt, u, spec.bucket_count) else {
                    return Err(FlagError::Internal(format!("{}: bucket count 0", rule.name)));
                };
                spec.assignments.iter().find(|a| a.ranges.iter().any(|(lo, hi)| *lo <= b && b < *hi))
            } else {
                continue;
            };
            let Some(a) = assignment else { continue };
            match &a.kind {
                Kind::None => {}
                Kind::Fallthrough => result.fallthrough = true,
                Kind::ClientDefault => {
                    return Ok(FlagResult {
                        reason: Reason::Match,
                        variant: None,
                        matched: true,
                        fallthrough: result.fallthrough,
                    })
                }
                Kind::Variant(name, idx) => {
                    let Some(idx) = idx else {
                        return Err(FlagError::Internal(format!("{}: no variant {name}", rule.name)));
                    };
                    return Ok(FlagResult {
                        reason: Reason::Match,
                        variant: Some(*idx),
                        matched: true,
                        fallthrough: result.fallthrough,
                    });
                }
            }
        }
        if missing {
            return Err(FlagError::MissingMaterializations);
        }
        Ok(result)
    }

    /// The assignment for a stored variant: the only one with that variant, or among several the
    /// one whose range holds the unit's variant bucket.
    pub(super) fn select_sticky(
        &self,
        rule: &Rule,
        spec: &Spec,
        variant: &str,
        unit: &str,
    ) -> Result<Option<usize>, FlagError> {
        let matching: Vec<&Assignment> =
            spec.assignments.iter().filter(|a| matches!(&a.kind, Kind::Variant(n, _) if n == variant)).collect();
        let chosen = if matching.len() <= 1 {
            matching.first().copied()
        } else {
            match rule.variant_salt.as_deref() {
                Some(salt) => variant_bucket(salt, unit, spec.bucket_count)
                    .and_then(|b| matching.into_iter().find(|a| a.ranges.iter().any(|(lo, hi)| *lo <= b && b < *hi))),
                None => None,
            }
        };
        match chosen.map(|a| &a.kind) {
            None => Ok(None),
            Some(Kind::Variant(_, Some(i))) => Ok(Some(*i)),
            Some(_) => Err(FlagError::Internal(format!("{}: stored variant {variant} is not in the flag", rule.name))),
        }
    }

    pub(super) fn segment_bucket(&self, unit: &str) -> u32 {
        let mut cache = self.bucket_cache.borrow_mut();
        if let Some((u, b)) = cache.as_ref() {
            if u == unit {
                return *b;
            }
        }
        let b = hash::bucket(&self.state.account_salt, unit, BUCKETS);
        *cache = Some((unit.to_string(), b));
        b
    }

    pub(super) fn segment_match(
        &self,
        seg: usize,
        unit: Option<&str>,
        visited: &mut Vec<usize>,
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        if visited.contains(&seg) {
            return Ok(Some(false));
        }
        visited.push(seg);
        let t = self.targeting_match(seg, unit, visited, mats)?;
        if t == Some(false) {
            return Ok(Some(false));
        }
        let segment = &self.state.segments[seg];
        let Some((set, full)) = &segment.bitset else { return Ok(t) };
        match unit {
            Some(u) => Ok(if set.contains(self.segment_bucket(u)) { t } else { Some(false) }),
            None => Ok(if *full { t } else { Some(false) }),
        }
    }

    pub(super) fn targeting_match(
        &self,
        seg: usize,
        unit: Option<&str>,
        visited: &mut Vec<usize>,
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        let segment = &self.state.segments[seg];
        let Some(t) = &segment.targeting else { return Ok(Some(true)) };
        let Some(expr) = &t.expression else { return Ok(Some(true)) };
        self.expression(t, expr, unit, visited, mats)
    }

    pub(super) fn expression(
        &self,
        t: &Targeting,
        e: &Expr,
        unit: Option<&str>,
        visited: &mut Vec<usize>,
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        match e {
            Expr::Empty => Ok(Some(false)),
            Expr::Ref(None) => Ok(Some(false)),
            Expr::Ref(Some(i)) => self.criterion(&t.criteria[*i], unit, visited, mats),
            Expr::Not(inner) => Ok(self.expression(t, inner, unit, visited, mats)?.map(|b| !b)),
            Expr::And(ops) => {
                let mut unknown = false;
                for op in ops {
                    match self.expression(t, op, unit, visited, mats)? {
                        Some(false) => return Ok(Some(false)),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown { None } else { Some(true) })
            }
            Expr::Or(ops) => {
                let mut unknown = false;
                for op in ops {
                    match self.expression(t, op, unit, visited, mats)? {
                        Some(true) => return Ok(Some(true)),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown { None } else { Some(false) })
            }
        }
    }

    pub(super) fn criterion(
        &self,
        c: &Criterion,
        unit: Option<&str>,
        visited: &[usize],
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        match c {
            Criterion::Unset => Ok(Some(false)),
            Criterion::Attribute(a) => Ok(Some(self.attribute(a)?)),
            Criterion::Segment(None) => Ok(Some(false)),
            Criterion::Segment(Some(s)) => self.segment_match(*s, unit, &mut visited.to_vec(), mats),
            Criterion::Materialized(name) => {
                let Some(u) = unit else { return Ok(Some(false)) };
                if let Some(bf) = self.state.blooms.get(name) {
                    return Ok(Some(bf.might_contain(u)));
                }
                Ok(mats.is_unit_in(name, u))
            }
        }
    }

    pub(super) fn attribute(&self, a: &Attribute) -> Result<bool, FlagError> {
        let raw = lookup(self.ctx, &a.path);
        let missing = matches!(raw, None | Some(Value::Null));
        let converted = match &a.rule {
            // Null equality looks at the context before any conversion.
            AttrRule::Single(Op::NullEq) => {
                return Ok(match raw {
                    Some(Value::Array(items)) => items.iter().any(Value::is_null),
                    _ => missing,
                });
            }
            // `any`/`all` over a missing or null attribute see an empty list.
            AttrRule::Any(_) | AttrRule::All(_) if missing => TypedValue::List(Vec::new()),
            _ => convert(raw, a.expected).map_err(FlagError::Internal)?,
        };
        let values: &[TypedValue<'_>] = match &converted {
            TypedValue::List(l) => l,
            other => std::slice::from_ref(other),
        };
        match &a.rule {
            AttrRule::Unrecognized => Err(FlagError::Unrecognized),
            AttrRule::Single(op) => match op {
                Op::Unrecognized => Err(FlagError::Unrecognized),
                Op::Eq(v) => Ok(values.contains(v)),
                Op::Set(set) => Ok(values.iter().any(|v| set.contains(v))),
                _ => Ok(values.iter().any(|v| inner(op, v).unwrap_or(false))),
            },
            AttrRule::Any(None) | AttrRule::All(None) => Err(FlagError::Unrecognized),
            AttrRule::Any(Some(op)) => {
                for v in values {
                    if inner(op, v)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            AttrRule::All(Some(op)) => {
                for v in values {
                    if !inner(op, v)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }
}

/// A unit's variant bucket, as the resolver computes it: `None` for a bucket count of 0 (the
/// resolver fails). The count is a proto `int32` the resolver widens with `as u64`, so a negative
/// count is a huge one: the bucket is then `h1 >> 4` itself, cut back to an `i32`.
pub(super) fn variant_bucket(salt: &str, unit: &str, bucket_count: i64) -> Option<i64> {
    match u32::try_from(bucket_count) {
        Ok(0) => None,
        Ok(n) => Some(i64::from(hash::bucket(salt, unit, n))),
        Err(_) => {
            let (h1, _) = hash::murmur3_x64_128(format!("{salt}|{unit}").as_bytes(), 0);
            Some(i64::from((h1 >> 4) as u32 as i32))
        }
    }
}
