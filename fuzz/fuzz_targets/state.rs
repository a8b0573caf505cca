//! State JSON (the file `allot apply` records, what `serve --state` imports) → load →
//! `Snapshot::compile` → evaluations, the audit and a re-plan of its own configuration. A bad
//! file must be an error naming where; a loaded one must never panic later.
#![no_main]

use allot_core::eval::Snapshot;
use allot_core::plan;
use allot_core::state::State;
use allot_fuzz::{contexts, evaluate_all, opts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(state) = State::from_json(text) else { return };
    if let Ok(snap) = Snapshot::compile(&state) {
        evaluate_all(&snap, contexts());
        let _ = snap.allocation_bytes();
    }
    if let Ok(Some(cfg)) = plan::applied_config(&state) {
        let _ = allot_core::audit::audit(&state, &cfg);
        if let Some(raw) = &state.config {
            let _ = plan::plan(&state, &cfg, raw, &opts(false));
        }
    }
});
