//! allot-stats' analysis over allot-core's configuration and recorded state: [`ConfigDesign`]
//! (what the configuration says of the experiments: variants, weights, exclusivity, inclusions)
//! and [`recorded`] (when each experiment ran, from the allocations, and the change log's times).
//! `allot analyze` (over files) and the console's diagnostics page (over the stored exposures)
//! both read the analysis through these.

use allot_core::config::{Config, ExpState};
use allot_core::state::{OwnerKind, State};
use allot_stats::analysis::{Design, Recorded};
use allot_stats::timeline::Interval;

/// What the configuration says, for the analysis.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDesign<'a>(pub &'a Config);

impl Design for ConfigDesign<'_> {
    fn experiments(&self) -> Vec<&str> {
        self.0.experiments.keys().map(String::as_str).collect()
    }

    fn variants(&self, experiment: &str) -> Option<Vec<(&str, f64)>> {
        let e = self.0.experiments.get(experiment)?;
        Some(e.variants.iter().map(|(k, v)| (k.as_str(), f64::from(v.weight))).collect())
    }

    fn running(&self, experiment: &str) -> bool {
        self.0.experiments.get(experiment).is_some_and(|x| x.state == ExpState::Running)
    }

    fn included(&self, experiment: &str, unit: &str) -> bool {
        self.0.experiments.get(experiment).is_some_and(|e| e.include.contains_key(unit))
    }

    fn exclusive(&self, a: &str, b: &str) -> bool {
        self.0.exclusive(a, b)
    }

    /// A common group, or a tag one is exclusive to.
    fn scope(&self, a: &str, b: &str) -> String {
        let cfg = self.0;
        let (Some(ea), Some(eb)) = (cfg.experiments.get(a), cfg.experiments.get(b)) else { return String::new() };
        if let Some(g) = ea.groups.iter().find(|g| eb.groups.iter().any(|h| h.group == g.group)) {
            return format!("group {}", g.group);
        }
        let (ta, tb) = (cfg.tags_of(ea), cfg.tags_of(eb));
        cfg.exclusive_to_of(ea)
            .into_iter()
            .find(|x| tb.contains(x))
            .or_else(|| cfg.exclusive_to_of(eb).into_iter().find(|x| ta.contains(x)))
            .unwrap_or_default()
    }
}

/// An RFC 3339 time in seconds since the epoch.
pub fn rfc3339_seconds(s: &str) -> Option<f64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}

/// What the recorded state says about time: the change log's times, and when each experiment's
/// allocations were drawn and released.
pub fn recorded(st: &State) -> Recorded {
    let mut runs = std::collections::BTreeMap::<String, Vec<Interval<u64>>>::new();
    for a in st.allocations.iter().filter(|a| a.kind == OwnerKind::Experiment) {
        if let Some(d) = a.draws.first() {
            runs.entry(a.owner.clone()).or_default().push(Interval::recorded(d.version, a.released));
        }
    }
    Recorded {
        changes: st.log.iter().filter_map(|l| Some((l.version, rfc3339_seconds(&l.time)?))).collect(),
        runs,
        any_allocations: !st.allocations.is_empty(),
    }
}
