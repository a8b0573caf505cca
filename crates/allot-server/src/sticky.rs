//! The sticky store glue: what this node read or wrote of the units' sticky assignments
//! ([`StickyKnown`], kept in `App::sticky_cache` for outages), and the store calls evaluation
//! makes for them (`crate::evaluate::assign` is the caller).

use crate::error::ApiError;
use crate::{metrics, App};
use allot_store::StickyRow;

/// Every sticky assignment of one unit that this node read from the store (or wrote to it) while
/// serving configuration version `version`.
///
/// While the database cannot be reached, a unit's entry stands in for the store only if it was
/// recorded at the version the node still serves. Then it is the whole truth but for rows other
/// nodes wrote since, and those were computed from the same version, so they are what evaluation
/// computes here anyway. Otherwise (no entry, or an older one) the unit's sticky experiments answer
/// `STICKY_UNAVAILABLE` rather than risk contradicting a stored assignment.
#[derive(Debug, Clone, Default)]
pub(crate) struct StickyKnown {
    pub(crate) version: u64,
    pub(crate) rows: Vec<(String, String)>,
}

/// Most new sticky assignments kept in memory while the database cannot be reached; beyond, new
/// ones are dropped and counted (`allot_sticky_dropped_total`).
pub const STICKY_BUFFER: usize = 100_000;

/// Units whose sticky assignments each node remembers, to keep serving them through an outage of
/// the database (a few hundred bytes each: the ids and the stored variants).
pub const STICKY_CACHE_UNITS: usize = 100_000;

impl App {
    /// The stored sticky assignments of a unit, `(experiment, variant)`.
    pub(crate) async fn sticky_for_unit(&self, unit_type: &str, unit: &str) -> Result<Vec<(String, String)>, ApiError> {
        let r = self.store.sticky_for_unit(unit_type, unit).await;
        self.observe(&r);
        Ok(r?)
    }

    /// Stores new sticky assignments `(unit type, unit, experiment, variant)`, an existing one
    /// kept; when the database cannot be reached, keeps them in memory (up to [`STICKY_BUFFER`],
    /// beyond which they are dropped and counted) for [`App::flush_pending`].
    pub(crate) async fn put_sticky(&self, rows: &[StickyRow]) -> Result<Option<()>, ApiError> {
        let r = self.store.sticky_put(rows).await;
        self.keep_if_unavailable(r, &self.pending_sticky, rows, metrics::Metrics::sticky_dropped)
    }
}
