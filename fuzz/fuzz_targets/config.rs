//! allot.yaml text → parse → validate (`allot check`) → plan and apply against an empty state
//! and against a fixed recorded state (unforced and forced). Bad input must give errors, never a
//! panic; an accepted change must compile, reload and evaluate (the service starts on it).
#![no_main]

use allot_core::config;
use allot_core::plan;
use allot_core::state::State;
use allot_fuzz::{check_accepted, fixed_state, opts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let raw = match config::parse_yaml(text) {
        Ok(r) => r,
        Err(_) => return,
    };
    let cfg = match config::validate(&raw) {
        Ok(c) => c,
        Err(errors) => {
            assert!(!errors.is_empty(), "validation failed without an error");
            return;
        }
    };
    let _ = config::dependency_order(&cfg);
    let empty = State::default();
    let _ = plan::plan(&empty, &cfg, &raw, &opts(false));
    if let Ok(p) = plan::apply(&empty, &cfg, &raw, &opts(false)) {
        check_accepted(&p.state, &cfg);
    }
    let fixed = fixed_state();
    let _ = plan::plan(fixed, &cfg, &raw, &opts(false));
    for force in [false, true] {
        if let Ok(p) = plan::apply(fixed, &cfg, &raw, &opts(force)) {
            check_accepted(&p.state, &cfg);
        }
    }
});
