//! allot against Spotify's resolver (`confidence_resolver` 0.26.1), side by side.

use crate::confidence_oracle::{load_native, resolve_allot, resolve_native, spec_state_as_proto};
use crate::spec;
use allot_compat::confidence::State;
use serde_json::Value;

/// Every case of the specification, resolved by both: allot must give what the resolver gives.
#[test]
fn every_specification_case_as_the_resolver_gives_it() {
    let spec_state: Value = serde_json::from_str(&spec("confidence/state.json")).unwrap();
    let (state, account) = spec_state_as_proto(&spec_state);
    let native_state = load_native(&state, &account).unwrap();
    let allot_state = State::parse(&state, Some(&account)).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&spec("confidence/tests.json")).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let req = crate::confidence::request_of(case);
        let native = resolve_native(&native_state, &req);
        let allot = resolve_allot(&allot_state, &req);
        if native != allot {
            failures.push(format!("{}:\n  native {native:?}\n  allot  {allot:?}", case["name"].as_str().unwrap()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
