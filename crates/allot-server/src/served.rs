//! What `GET /api/v1/snapshot` serves: the recorded state reduced to what evaluation reads.
//!
//! Evaluation ([`allot_core::eval::Snapshot::compile`]) reads the bucket spaces (salts and
//! re-salts), the live allocations of running experiments, holdouts and groups, and the
//! configuration of running experiments. Everything else stays on the server:
//!
//! - experiments that are not running are removed, except those a running experiment `requires`
//!   (its prerequisite must stay known to evaluate as "not running"): these are kept as a skeleton
//!   (unit, scopes, group membership, share, variant names and weights, salt, state) without
//!   variant values, targeting, inclusions or prerequisites;
//! - `description` and `owner` of every entity (and of variants) are removed;
//! - a holdout that applied only to experiments removed here is removed (with its allocation);
//! - released allocations and allocations of experiments that are not running are removed,
//!   except those a re-salt's classes are defined by (`classes_by`): these are kept for their
//!   buckets only, under the neutral owner `resalt class <id>` (a space: no configuration id can
//!   be written so);
//! - the change log is emptied.
//!
//! A **paused** experiment is served as a stopped skeleton (no allocation, values, targeting or
//! inclusions): every SDK, of this version or an earlier one that does not know `state: paused`,
//! then serves it to nobody (`NOT_RUNNING`, where the server says `PAUSED`), and an experiment
//! that requires it fails its prerequisite there as here. (Served as `paused`, an SDK built before
//! pausing existed would refuse the whole snapshot and keep serving the one before the pause.)
//!
//! Inclusions (`include`) of running experiments are kept as unit ids: evaluation looks them up
//! by id, and an SDK must evaluate exactly as the server does. Only running experiments' lists
//! are served.
//!
//! Apart from that reason's name, the reduction changes nothing evaluation computes: the property test in
//! `tests/it/start.rs` compiles both the full and the reduced state of every committed version
//! and compares their answers unit by unit.

use allot_core::config::ExpState;
use allot_core::state::{OwnerKind, State};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Free-text fields that evaluation never reads.
const FREE_TEXT: [&str; 2] = ["description", "owner"];

/// Fields of an experiment kept in the skeleton of a non-running prerequisite.
const SKELETON: [&str; 10] =
    ["unit", "surfaces", "tags", "exclusive_to", "group", "slots", "groups", "share", "salt", "state"];

/// The state reduced to what evaluation needs (module documentation).
pub fn for_evaluation(state: &State) -> State {
    let cfg = match allot_core::plan::applied_config(state) {
        Ok(cfg) => cfg.unwrap_or_default(),
        Err(e) => {
            crate::metrics::internal_error(crate::metrics::Site::State, &crate::summary(&e));
            Default::default()
        }
    };
    let running: BTreeSet<&str> = cfg
        .experiments
        .iter()
        .filter(|(_, e)| e.state == ExpState::Running && !e.paused)
        .map(|(id, _)| id.as_str())
        .collect();
    let paused: BTreeSet<&str> = cfg.experiments.iter().filter(|(_, e)| e.paused).map(|(id, _)| id.as_str()).collect();
    let mut needed: BTreeSet<&str> = running.union(&paused).copied().collect();
    let mut todo: Vec<&str> = running.iter().copied().collect();
    while let Some(id) = todo.pop() {
        for r in cfg.experiments.get(id).map(|e| e.requires.as_slice()).unwrap_or_default() {
            if needed.insert(r.experiment.as_str()) {
                todo.push(r.experiment.as_str());
            }
        }
    }
    let removed: BTreeSet<String> =
        cfg.experiments.keys().filter(|id| !needed.contains(id.as_str())).cloned().collect();
    // Names an `applies_to` entry can mean besides an experiment id.
    let mut scopes: BTreeSet<&str> = cfg.surfaces.iter().map(String::as_str).collect();
    scopes.extend(cfg.groups.keys().map(String::as_str));
    for e in cfg.experiments.values() {
        scopes.extend(e.all_tags().map(String::as_str));
    }

    let mut unused_holdouts = BTreeSet::new();
    let config = state.config.as_ref().map(|raw| {
        let mut raw = raw.clone();
        if let Some(o) = raw.as_object_mut() {
            if let Some(Value::Object(exps)) = o.get_mut("experiments") {
                exps.retain(|id, _| needed.contains(id.as_str()));
                for (id, e) in exps.iter_mut() {
                    let Some(e) = e.as_object_mut() else { continue };
                    if running.contains(id.as_str()) {
                        strip_free_text(e);
                        if let Some(Value::Object(vs)) = e.get_mut("variants") {
                            for v in vs.values_mut().filter_map(Value::as_object_mut) {
                                strip_free_text(v);
                            }
                        }
                    } else {
                        skeleton(e);
                        if paused.contains(id.as_str()) {
                            e.insert("state".into(), Value::from("stopped"));
                        }
                    }
                }
            }
            for coll in ["holdouts", "groups"] {
                if let Some(Value::Object(m)) = o.get_mut(coll) {
                    for (id, v) in m.iter_mut() {
                        let Some(v) = v.as_object_mut() else { continue };
                        strip_free_text(v);
                        if let Some(Value::Array(to)) = v.get_mut("applies_to") {
                            to.retain(|t| t.as_str().is_none_or(|t| scopes.contains(t) || !removed.contains(t)));
                            if to.is_empty() {
                                // It applied only to experiments that are not served.
                                unused_holdouts.insert(id.clone());
                            }
                        }
                    }
                    m.retain(|id, _| coll != "holdouts" || !unused_holdouts.contains(id));
                }
            }
            strip_free_text(o);
        }
        raw
    });

    // A re-salt's classes are rebuilt from the allocations it names, as they stood before it.
    let defining: BTreeSet<u64> =
        state.spaces.values().flat_map(|s| &s.resalts).flat_map(|r| r.classes_by.iter().flatten()).copied().collect();
    let allocations = state
        .allocations
        .iter()
        .filter_map(|a| {
            let served = a.is_live()
                && (a.kind != OwnerKind::Experiment || running.contains(a.owner.as_str()))
                && (a.kind != OwnerKind::Holdout || !unused_holdouts.contains(&a.owner));
            if served {
                Some(a.clone())
            } else if defining.contains(&a.id) {
                // Released since, or not served: kept only for its buckets, under a neutral name
                // that no configuration id can take (ids have no spaces).
                let mut a = a.clone();
                a.owner = format!("resalt class {}", a.id);
                a.tags.clear();
                Some(a)
            } else {
                None
            }
        })
        .collect();
    State {
        format: state.format,
        version: state.version,
        config,
        spaces: state.spaces.clone(),
        allocations,
        log: vec![],
    }
}

fn strip_free_text(m: &mut Map<String, Value>) {
    for k in FREE_TEXT {
        m.shift_remove(k);
    }
}

/// A non-running prerequisite: what validation needs and evaluation reads (its variant names).
fn skeleton(e: &mut Map<String, Value>) {
    // An Amplitude split shares its unit type's salt; as weights (below) it may not, and a
    // skeleton is never split: its salt goes with its `split_hash` and its ranges.
    if e.contains_key("split_hash") {
        e.shift_remove("salt");
    }
    e.retain(|k, _| SKELETON.contains(&k.as_str()) || k == "variants");
    if let Some(Value::Object(vs)) = e.get_mut("variants") {
        for v in vs.values_mut() {
            if let Some(w) = v.as_object().map(|o| o.get("weight").cloned().unwrap_or(Value::from(1))) {
                *v = w;
            }
        }
    }
}
