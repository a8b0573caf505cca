//! Importing the CLI's recorded state (`allot.state.json`) into a store: `allot serve --state`
//! and `allot migrate-store --from state:FILE`.
//!
//! The state file holds the latest state only (with every allocation ever drawn, the salt history
//! and the whole change log), not the configurations of earlier versions. It is stored as one
//! version with the file's version number and its whole log, so that the service then serves
//! exactly what `allot assign` gives on the file, and history and audit keep every log entry.

use crate::{AuditEntry, Result, Store, StoreError};
use allot_core::state::State;

/// What [`import_state`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The store was empty: the state is now its version `version`.
    Imported {
        /// The state's version.
        version: u64,
    },
    /// The store already records this state at its version (it may have newer versions since).
    AlreadyThere {
        /// The state's version.
        version: u64,
        /// The store's current version.
        current: u64,
    },
}

/// Imports `state` into `to`: into an empty store as one version; on a store that already holds
/// it (the same state at its version), nothing; otherwise an error saying how they differ.
pub async fn import_state(to: &dyn Store, state: &State, actor: &str, time: &str) -> Result<Imported> {
    if state.version == 0 {
        return Err(StoreError::Invalid("the state file records no applied version: nothing to import".into()));
    }
    let current = to.current_version().await?;
    if current == 0 {
        let entry = AuditEntry {
            actor: actor.into(),
            time: time.into(),
            action: "state.import".into(),
            reason: None,
            forced: false,
            changes: serde_json::json!([{
                "entity": "state",
                "id": "allot.state.json",
                "action": "import",
                "detail": format!(
                    "imported the CLI's recorded state at version {}: {} log entries, {} allocations",
                    state.version,
                    state.log.len(),
                    state.allocations.len()
                ),
            }]),
            overridden: serde_json::json!([]),
        };
        to.commit(0, state, &entry).await?;
        return Ok(Imported::Imported { version: state.version });
    }
    match to.load_version(state.version).await? {
        Some(s) if s == *state => Ok(Imported::AlreadyThere { version: state.version, current }),
        Some(_) => Err(StoreError::Invalid(format!(
            "the store's version {} differs from the state file's version {}: refusing to serve another state than the file's (use an empty store, or start without --state)",
            state.version, state.version
        ))),
        None => Err(StoreError::Invalid(format!(
            "the store is at version {current} and does not record the state file's version {}: refusing to serve another state than the file's (use an empty store, or start without --state)",
            state.version
        ))),
    }
}
