//! Bucket history and the salt machine.
//!
//! Every allocation ever drawn stays in the state, so the history of any bucket (which owner held
//! it, from which version to which) can be told exactly. `resalt` re-randomises the unit → bucket
//! map of the part of a space that no running experiment or holdout holds: units in held buckets
//! stay where they are; the others are spread afresh over the free buckets, so the next
//! experiment there does not inherit the cohorts of the last one.

use crate::bucketset::Dense;
use crate::config::ExpState;
use crate::error::FieldError;
use crate::state::{DrawOp, LogEntry, OwnerKind, Resalt, State};
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

/// What a re-salt did.
#[derive(Debug, Clone, Serialize)]
pub struct ResaltReport {
    /// Space.
    pub space: String,
    /// New version.
    pub version: u64,
    /// Buckets whose units stayed (held by running experiments and holdouts).
    pub frozen_buckets: u64,
    /// Buckets whose units were re-randomised.
    pub resalted_buckets: u64,
}

/// Re-salts the free part of `space`. The new salt is derived from the space and the version,
/// so the same state re-salts the same way. Returns the new state and a report.
pub fn resalt(
    state: &State,
    space: &str,
    time: &str,
    reason: Option<String>,
) -> Result<(State, ResaltReport), FieldError> {
    let cfg = crate::plan::applied_config(state)
        .map_err(|e| e.into_iter().next().unwrap_or_else(|| FieldError::new("state", "invalid")))?
        .unwrap_or_default();
    let Some(s) = state.spaces.get(space) else {
        let known: Vec<&str> = state.spaces.keys().map(String::as_str).collect();
        return Err(FieldError::new(
            "space",
            format!("no bucket space `{space}` in the applied state; known: [{}]", known.join(", ")),
        ));
    };
    let mut frozen = Dense::empty(s.buckets);
    for a in state.allocations.iter().filter(|a| a.is_live() && a.space == space) {
        let running = match a.kind {
            OwnerKind::Experiment => cfg.experiments.get(&a.owner).is_some_and(|e| e.state == ExpState::Running),
            OwnerKind::Holdout => true,
            OwnerKind::Group | OwnerKind::Slot => false,
        };
        if running {
            frozen.union_with(&a.current());
        }
    }
    let mut st = state.clone();
    st.version = st.version.checked_add(1).ok_or_else(|| {
        FieldError::new("state.version", "the recorded version cannot grow any further; the state file is corrupt")
    })?;
    let version = st.version;
    let salt = format!("{}~r{version}", s.salt);
    let frozen_n = frozen.len();
    let report = ResaltReport {
        space: space.into(),
        version,
        frozen_buckets: frozen_n,
        resalted_buckets: u64::from(s.buckets) - frozen_n,
    };
    if let Some(sp) = st.spaces.get_mut(space) {
        sp.resalts.push(Resalt { version, salt: salt.clone(), frozen: frozen.compact() });
    }
    st.log.push(LogEntry {
        version,
        time: time.into(),
        actor: None,
        forced: false,
        reason,
        changes: vec![format!(
            "resalt unit {space}: {} free buckets re-randomised with salt `{salt}`, {frozen_n} held buckets unchanged",
            report.resalted_buckets
        )],
        overridden: vec![],
    });
    Ok((st, report))
}
