//! The recorded state (`allot.state.json`): the applied configuration, every allocation ever
//! drawn (live and released, so that every bucket's history can be told), the salt history of
//! each bucket space, and the change log.

use crate::bucketset::{BucketBitmap, BucketSet};
use crate::config::{BucketHash, Config, ExpState};
use crate::error::FieldError;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Version of the state file format.
pub const FORMAT: u32 = 1;

/// Everything `allot apply` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// State file format.
    pub format: u32,
    /// Configuration version: 0 before the first apply, then +1 per applied change.
    pub version: u64,
    /// The applied configuration, as a JSON tree.
    pub config: Option<serde_json::Value>,
    /// Bucket spaces by unit type.
    pub spaces: IndexMap<String, SpaceState>,
    /// Every allocation ever drawn, in order.
    pub allocations: Vec<Allocation>,
    /// One entry per applied version.
    pub log: Vec<LogEntry>,
}

impl Default for State {
    fn default() -> Self {
        State { format: FORMAT, version: 0, config: None, spaces: IndexMap::new(), allocations: vec![], log: vec![] }
    }
}

/// A bucket space: its size, its base salt and every re-salt since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceState {
    /// Number of buckets.
    pub buckets: u32,
    /// Salt of the unit → bucket hash.
    pub salt: String,
    /// The unit → bucket hash (left out when allot's own, so existing states read and write as before).
    #[serde(default, skip_serializing_if = "BucketHash::is_allot")]
    pub hash: BucketHash,
    /// Re-salts in order (see [`crate::eval`] for how a unit's bucket is found through them).
    #[serde(default)]
    pub resalts: Vec<Resalt>,
}

/// One run of the salt machine (see [`crate::salt`]). A re-salt recorded by this allot names the
/// allocations that defined its classes (`classes_by`); one recorded before classes existed
/// names the buckets it froze (`frozen`) and keeps its old meaning, so its units stay put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resalt {
    /// Configuration version at which it happened.
    pub version: u64,
    /// The new salt (its hash keys the moves).
    pub salt: String,
    /// The allocations live then (running experiments, holdouts, groups, slots), by id: a unit
    /// moved only to a bucket held by exactly the same ones of these, as they stood before
    /// `version`, so none of them gained or lost a unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes_by: Option<Vec<u64>>,
    /// Earlier form: buckets held by running experiments and holdouts then; units elsewhere moved
    /// to a uniform pick among the other buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<BucketSet>,
}

/// What an allocation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    /// An experiment.
    Experiment,
    /// A holdout.
    Holdout,
    /// A mutual exclusion group (all its slots).
    Group,
    /// One slot of a group; its id is `<group>#<n>` with `n` from 1.
    Slot,
}

/// A recorded set of buckets held by one owner from one version until its release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Sequence number, unique in the state.
    pub id: u64,
    /// Unit type (bucket space).
    pub space: String,
    /// Owner kind.
    pub kind: OwnerKind,
    /// Owner id.
    pub owner: String,
    /// Exclusion tags the owner carried (experiments), for choosing least recently used buckets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Draws in order: the first, then growths (and forced shrinks).
    pub draws: Vec<Draw>,
    /// Version at which it was released, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<u64>,
}

/// One draw of buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draw {
    /// Version at which it was drawn.
    pub version: u64,
    /// Seed it was drawn from.
    pub seed: u64,
    /// `add` for a draw or growth, `remove` for a forced shrink.
    pub op: DrawOp,
    /// The buckets added or removed.
    pub buckets: BucketSet,
}

/// Whether a draw added or removed buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrawOp {
    /// Buckets added.
    Add,
    /// Buckets removed (only by a forced change).
    Remove,
}

impl Allocation {
    /// The buckets held now (or when released).
    pub fn current(&self) -> BucketBitmap {
        let space = self.draws.first().map_or(1, |d| d.buckets.space());
        let mut d = BucketBitmap::empty(space);
        for draw in &self.draws {
            match draw.op {
                DrawOp::Add => d.union_compact(&draw.buckets),
                DrawOp::Remove => d.subtract_compact(&draw.buckets),
            }
        }
        d
    }

    /// The buckets held now, in compact form, without expanding the usual single draw.
    pub fn current_compact(&self) -> BucketSet {
        match self.draws.as_slice() {
            [only] if only.op == DrawOp::Add => only.buckets.clone(),
            _ => self.current().compact(),
        }
    }

    /// The buckets it held just before `version` (its draws at earlier versions).
    pub fn held_before(&self, version: u64) -> BucketBitmap {
        let space = self.draws.first().map_or(1, |d| d.buckets.space());
        let mut d = BucketBitmap::empty(space);
        for draw in self.draws.iter().filter(|d| d.version < version) {
            match draw.op {
                DrawOp::Add => d.union_compact(&draw.buckets),
                DrawOp::Remove => d.subtract_compact(&draw.buckets),
            }
        }
        d
    }

    /// Whether it is live.
    pub fn is_live(&self) -> bool {
        self.released.is_none()
    }
}

/// One applied change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The version it produced.
    pub version: u64,
    /// When (RFC 3339, given by the caller).
    pub time: String,
    /// Who, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Whether refusals were overridden with `--force`.
    pub forced: bool,
    /// The reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What changed, one line each.
    pub changes: Vec<String>,
    /// Refusals that were overridden.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

impl State {
    /// The live allocation of an owner.
    pub fn live(&self, kind: OwnerKind, owner: &str) -> Option<&Allocation> {
        self.allocations.iter().find(|a| a.is_live() && a.kind == kind && a.owner == owner)
    }

    /// Mutable access to the live allocation of an owner.
    pub fn live_mut(&mut self, kind: OwnerKind, owner: &str) -> Option<&mut Allocation> {
        self.allocations.iter_mut().find(|a| a.is_live() && a.kind == kind && a.owner == owner)
    }

    /// The next free allocation id.
    pub fn next_id(&self) -> u64 {
        self.allocations.iter().map(|a| a.id + 1).max().unwrap_or(1)
    }

    /// Parses a state file; a malformed one gets an error that says where.
    pub fn from_json(text: &str) -> Result<State, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let st: State = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("{}: {}", if path == "." { "state".into() } else { path }, e.inner())
        })?;
        if st.format != FORMAT {
            return Err(format!("format: version {} is not supported (this allot reads {FORMAT})", st.format));
        }
        st.check()?;
        Ok(st)
    }

    /// Checks what the file format cannot: every live bucket set lives in the space it belongs
    /// to (a set over another number of buckets would be misread, or index past the end of the
    /// space), every allocation names a known space and has a first draw, and all draws of one
    /// allocation are over one space (a released allocation may predate a resize of its space).
    fn check(&self) -> Result<(), String> {
        let by_id: std::collections::HashMap<u64, &Allocation> = self.allocations.iter().map(|a| (a.id, a)).collect();
        for (name, s) in &self.spaces {
            if s.buckets == 0 || s.buckets > crate::config::MAX_BUCKETS {
                return Err(format!("spaces.{name}.buckets: must be from 1 to {}", crate::config::MAX_BUCKETS));
            }
            for (i, r) in s.resalts.iter().enumerate() {
                let at = format!("spaces.{name}.resalts[{i}]");
                match (&r.classes_by, &r.frozen) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(format!("{at}: exactly one of `classes_by` and `frozen`"));
                    }
                    (None, Some(f)) if f.space() != s.buckets => {
                        return Err(format!(
                            "{at}.frozen: a set over {} buckets in a space of {}",
                            f.space(),
                            s.buckets
                        ));
                    }
                    (None, Some(_)) => {}
                    (Some(ids), None) => {
                        for id in ids {
                            let Some(a) = by_id.get(id) else {
                                return Err(format!("{at}.classes_by: no allocation {id}"));
                            };
                            let space = a.draws.first().map(|d| (d.version, d.buckets.space()));
                            let held_then =
                                space.is_some_and(|(v, _)| v < r.version) && a.released.is_none_or(|v| v > r.version);
                            if a.space != *name || space.is_some_and(|(_, b)| b != s.buckets) || !held_then {
                                return Err(format!(
                                    "{at}.classes_by: allocation {id} was not live in this space at version {}",
                                    r.version
                                ));
                            }
                        }
                    }
                }
            }
        }
        let mut ids = std::collections::HashSet::new();
        let mut live = std::collections::HashSet::new();
        for (i, a) in self.allocations.iter().enumerate() {
            if !ids.insert(a.id) {
                return Err(format!("allocations[{i}].id: allocation id {} appears twice", a.id));
            }
            if a.is_live() && !live.insert((a.kind, a.owner.as_str())) {
                return Err(format!("allocations[{i}]: `{}` has two live allocations", a.owner));
            }
            let Some(s) = self.spaces.get(&a.space) else {
                return Err(format!("allocations[{i}].space: unknown bucket space `{}`", a.space));
            };
            if a.draws.is_empty() {
                return Err(format!("allocations[{i}].draws: an allocation has at least one draw"));
            }
            let want = if a.is_live() { s.buckets } else { a.draws[0].buckets.space() };
            for (j, d) in a.draws.iter().enumerate() {
                if d.buckets.space() != want {
                    return Err(format!(
                        "allocations[{i}].draws[{j}].buckets: a set over {} buckets in space `{}` of {want}",
                        d.buckets.space(),
                        a.space,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The slot owner id for slot `i` (0-based) of `group`.
    pub fn slot_id(group: &str, i: usize) -> String {
        format!("{group}#{}", i + 1)
    }
}

/// The configuration last applied, if any.
pub fn applied_config(state: &State) -> Result<Option<Config>, Vec<FieldError>> {
    match &state.config {
        None => Ok(None),
        Some(raw) => {
            let cfg = crate::config::validate(raw).map_err(|es| {
                es.into_iter()
                    .map(|e| FieldError::new(crate::error::join("state.config", &e.path), e.message))
                    .collect::<Vec<_>>()
            })?;
            // What the recorded configuration says is live must hold buckets in the recorded state.
            let mut missing = vec![];
            for (id, e) in &cfg.experiments {
                if e.state == ExpState::Running && state.live(OwnerKind::Experiment, id).is_none() {
                    missing.push(format!("experiment `{id}`"));
                }
            }
            for id in cfg.holdouts.keys() {
                if state.live(OwnerKind::Holdout, id).is_none() {
                    missing.push(format!("holdout `{id}`"));
                }
            }
            for id in cfg.groups.keys() {
                if state.live(OwnerKind::Group, id).is_none() {
                    missing.push(format!("group `{id}`"));
                }
            }
            if !missing.is_empty() {
                return Err(vec![FieldError::new(
                    "state.allocations",
                    format!("no live allocation for {}: the state file is corrupt", missing.join(", ")),
                )]);
            }
            Ok(Some(cfg))
        }
    }
}

/// The union of the live holdouts that apply to experiment `id` under `cfg` (used by planning,
/// evaluation and the audit alike).
pub fn holdout_union(st: &State, cfg: &Config, id: &str, b: u32) -> BucketBitmap {
    let mut held = BucketBitmap::empty(b);
    for (name, h) in &cfg.holdouts {
        if cfg.holdout_applies(h, id) {
            if let Some(a) = st.live(OwnerKind::Holdout, name) {
                held.union_with(&a.current());
            }
        }
    }
    held
}
