//! Bucket history: every allocation ever drawn stays in the state, so the history of any bucket
//! (which owner held it, from which version to which) can be told exactly, and through the
//! re-salts of [`crate::salt`], the history of any unit.

use crate::error::FieldError;
use crate::state::{DrawOp, OwnerKind, State};
use serde::Serialize;

/// One span during which an owner held a bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// Allocation id.
    pub allocation: u64,
    /// Owner kind.
    pub kind: OwnerKind,
    /// Owner id.
    pub owner: String,
    /// First version it held the bucket.
    pub from_version: u64,
    /// Version at which it let go, if it did.
    pub until_version: Option<u64>,
}

/// Who held `bucket` of `space`, oldest first.
pub fn bucket_history(state: &State, space: &str, bucket: u32) -> Vec<Span> {
    let mut out = vec![];
    for a in state.allocations.iter().filter(|a| a.space == space) {
        let mut from = None;
        for d in &a.draws {
            let has = d.buckets.contains(bucket);
            match (d.op, has, from) {
                (DrawOp::Add, true, None) => from = Some(d.version),
                (DrawOp::Remove, true, Some(f)) => {
                    out.push(Span {
                        allocation: a.id,
                        kind: a.kind,
                        owner: a.owner.clone(),
                        from_version: f,
                        until_version: Some(d.version),
                    });
                    from = None;
                }
                _ => {}
            }
        }
        if let Some(f) = from {
            out.push(Span {
                allocation: a.id,
                kind: a.kind,
                owner: a.owner.clone(),
                from_version: f,
                until_version: a.released,
            });
        }
    }
    out.sort_by_key(|s| (s.from_version, s.allocation));
    out
}

/// One span during which a unit was in a bucket that an owner held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitSpan {
    /// The unit's bucket during the span (re-salts move units between free buckets).
    pub bucket: u32,
    /// Who held it, from which version to which.
    #[serde(flatten)]
    pub span: Span,
}

/// Who held the buckets `unit` was in, oldest first: for each stretch of versions between two
/// re-salts, the unit's bucket at those versions and the allocations that held it then.
/// Allocations drawn before the space was last resized are left out (their buckets belong to a
/// space that no longer exists).
pub fn unit_history(state: &State, space: &str, unit: &str) -> Result<Vec<UnitSpan>, Vec<FieldError>> {
    unit_history_in(state, &crate::eval::Snapshot::compile(state)?, space, unit).map_err(|e| vec![e])
}

/// [`unit_history`] with the state's compiled snapshot (`snap` must be `state`'s own).
pub fn unit_history_in(
    state: &State,
    snap: &crate::eval::Snapshot,
    space: &str,
    unit: &str,
) -> Result<Vec<UnitSpan>, FieldError> {
    let Some(sp) = snap.spaces.iter().find(|s| s.name == space) else {
        return Err(FieldError::new("unit_type", format!("no bucket space `{space}` in the applied state")));
    };
    let resalts = state.spaces.get(space).map_or(&[][..], |s| &s.resalts[..]);
    let starts: Vec<u64> = std::iter::once(0).chain(resalts.iter().map(|r| r.version)).collect();
    let mut out = vec![];
    for (k, &from) in starts.iter().enumerate() {
        let until = starts.get(k + 1).copied();
        let bucket = sp.bucket_after(unit, k);
        for s in bucket_history(state, space, bucket) {
            let in_space = state
                .allocations
                .iter()
                .find(|a| a.id == s.allocation)
                .and_then(|a| a.draws.first())
                .is_some_and(|d| d.buckets.space() == sp.buckets);
            let start = s.from_version.max(from);
            let end = match (s.until_version, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if !in_space || end.is_some_and(|e| start >= e) {
                continue;
            }
            // A re-salt does not move units of held buckets: the same span goes on.
            match out.iter_mut().find(|u: &&mut UnitSpan| {
                u.bucket == bucket && u.span.allocation == s.allocation && u.span.until_version == Some(start)
            }) {
                Some(prev) => prev.span.until_version = end,
                None => out.push(UnitSpan { bucket, span: Span { from_version: start, until_version: end, ..s } }),
            }
        }
    }
    out.sort_by_key(|u| (u.span.from_version, u.span.allocation));
    Ok(out)
}

/// The history of one unit, as `allot history --unit` prints it (JSON) and
/// `GET /api/v1/history?unit=` answers: its bucket now and who held the buckets it was in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitReport {
    /// The unit type (bucket space).
    pub unit_type: String,
    /// The unit id.
    pub unit: String,
    /// Its bucket at the current version.
    pub bucket: u32,
    /// [`unit_history`], oldest first.
    pub history: Vec<UnitSpan>,
}

/// The history of one bucket, as `allot history --bucket` prints it (JSON) and
/// `GET /api/v1/history?bucket=` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketReport {
    /// The unit type (bucket space).
    pub unit_type: String,
    /// The bucket.
    pub bucket: u32,
    /// [`bucket_history`], oldest first.
    pub history: Vec<Span>,
}

/// The unit type a history is asked of: `unit_type` if given (it must be a space of the state),
/// else the only one. Errors name `unit_type`.
pub fn space_of<'s>(state: &'s State, unit_type: Option<&str>) -> Result<&'s str, FieldError> {
    match unit_type {
        Some(u) => state.spaces.get_key_value(u).map(|(k, _)| k.as_str()).ok_or_else(|| {
            let known: Vec<&str> = state.spaces.keys().map(String::as_str).collect();
            FieldError::new(
                "unit_type",
                format!("no unit type `{u}` in the applied state; known: [{}]", known.join(", ")),
            )
        }),
        None => match state.spaces.len() {
            1 => Ok(state.spaces.keys().next().map(String::as_str).unwrap_or_default()),
            0 => Err(FieldError::new("unit_type", "nothing applied yet: the state has no unit type")),
            _ => Err(FieldError::new("unit_type", "several unit types: choose one")),
        },
    }
}

/// [`UnitReport`] of `unit` in `unit_type` (or the only unit type), with the state's compiled
/// snapshot (`snap` must be `state`'s own).
pub fn unit_report(
    state: &State,
    snap: &crate::eval::Snapshot,
    unit_type: Option<&str>,
    unit: &str,
) -> Result<UnitReport, FieldError> {
    let space = space_of(state, unit_type)?;
    let Some(sp) = snap.spaces.iter().find(|s| s.name == space) else {
        return Err(FieldError::new("unit_type", format!("no bucket space `{space}` in the applied state")));
    };
    let bucket = sp.bucket(unit);
    let history = unit_history_in(state, snap, space, unit)?;
    Ok(UnitReport { unit_type: space.into(), unit: unit.into(), bucket, history })
}

/// [`BucketReport`] of `bucket` in `unit_type` (or the only unit type). Errors name `unit_type`
/// or `bucket` (outside the space).
pub fn bucket_report(state: &State, unit_type: Option<&str>, bucket: u32) -> Result<BucketReport, FieldError> {
    let space = space_of(state, unit_type)?;
    let buckets = state.spaces.get(space).map_or(0, |s| s.buckets);
    if bucket >= buckets {
        return Err(FieldError::new(
            "bucket",
            format!(
                "bucket {bucket} is outside the space of {buckets} buckets of `{space}` (0 to {})",
                buckets.saturating_sub(1)
            ),
        ));
    }
    Ok(BucketReport { unit_type: space.into(), bucket, history: bucket_history(state, space, bucket) })
}
