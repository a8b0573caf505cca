//! Confidence resolver states and resolve requests (`allot compat confidence resolve`): parse,
//! compile, resolve, render. Input: `request` (against the specification's state) or
//! `request \0 state` (an empty request: the specification's requests). Errors name a JSON
//! path; nothing panics.
#![no_main]

use allot_compat::confidence::{response_json, Request, State};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SPEC_STATE: &str = include_str!("../../spec/confidence/state.json");
const SPEC_TESTS: &str = include_str!("../../spec/confidence/tests.json");

fn spec_state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| State::parse(SPEC_STATE, None).unwrap_or_else(|e| panic!("{e}")))
}

/// The specification's requests (a few of every kind).
fn spec_requests() -> &'static [Request] {
    static R: OnceLock<Vec<Request>> = OnceLock::new();
    R.get_or_init(|| {
        let tests: serde_json::Value = serde_json::from_str(SPEC_TESTS).unwrap_or_else(|e| panic!("{e}"));
        tests
            .as_array()
            .into_iter()
            .flatten()
            .step_by(8)
            .filter_map(|t| Request::parse(&t["resolveRequest"].to_string()).ok())
            .collect()
    })
}

fn resolve(state: &State, req: &Request) {
    let _ = state.flag_names().count();
    if let Ok(flags) = state.resolve(req) {
        let _ = serde_json::to_string(&response_json(&flags)).unwrap_or_else(|e| panic!("{e}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match text.split_once('\0') {
        None => {
            if let Ok(req) = Request::parse(text) {
                resolve(spec_state(), &req);
            }
        }
        Some((req, state)) => {
            let req = if req.is_empty() { None } else { Request::parse(req).ok() };
            for account in [None, Some("confidence-demo-june")] {
                let Ok(st) = State::parse(state, account) else { continue };
                match &req {
                    Some(r) => resolve(&st, r),
                    None => spec_requests().iter().for_each(|r| resolve(&st, r)),
                }
            }
        }
    }
});
