//! The recorded state (`allot.state.json`): the applied configuration, every allocation ever
//! drawn (live and released, so that every bucket's history can be told), the salt history of
//! each bucket space, and the change log.

use crate::bucketset::{BucketSet, Dense};
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
    /// Re-salts in order (see [`crate::eval`] for how a unit's bucket is found through them).
    #[serde(default)]
    pub resalts: Vec<Resalt>,
}

/// One run of the salt machine: units outside `frozen` were re-randomised among the free buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resalt {
    /// Configuration version at which it happened.
    pub version: u64,
    /// The new salt for the free part.
    pub salt: String,
    /// Buckets held by running experiments and holdouts then: their units did not move.
    pub frozen: BucketSet,
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
    pub fn current(&self) -> Dense {
        let space = self.draws.first().map_or(1, |d| d.buckets.space());
        let mut d = Dense::empty(space);
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
        for (name, s) in &self.spaces {
            if s.buckets == 0 {
                return Err(format!("spaces.{name}.buckets: must be at least 1"));
            }
            for (i, r) in s.resalts.iter().enumerate() {
                if r.frozen.space() != s.buckets {
                    return Err(format!(
                        "spaces.{name}.resalts[{i}].frozen: a set over {} buckets in a space of {}",
                        r.frozen.space(),
                        s.buckets
                    ));
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
