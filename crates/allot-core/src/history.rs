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
    let snap = crate::eval::Snapshot::compile(state)?;
    let Some(sp) = snap.spaces.iter().find(|s| s.name == space) else {
        return Err(vec![FieldError::new("unit_type", format!("no bucket space `{space}` in the applied state"))]);
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
