//! Amplitude flag configurations and evaluation contexts (`allot compat amplitude evaluate`):
//! parse, compile, evaluate, render. Input: `flags` (evaluated on the specification's contexts;
//! also read as one context for the specification's flags) or `flags \0 context lines`. Errors
//! name a JSON path; nothing panics.
#![no_main]

use allot_compat::amplitude::Flags;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

const SPEC_FLAGS: &str = include_str!("../../spec/amplitude/flags.json");
const SPEC_EXPECTATIONS: &str = include_str!("../../spec/amplitude/expectations.json");

fn spec_flags() -> &'static Flags {
    static F: OnceLock<Flags> = OnceLock::new();
    F.get_or_init(|| Flags::parse(SPEC_FLAGS).unwrap_or_else(|e| panic!("{e}")))
}

fn spec_contexts() -> &'static [Value] {
    static C: OnceLock<Vec<Value>> = OnceLock::new();
    C.get_or_init(|| {
        let e: Value = serde_json::from_str(SPEC_EXPECTATIONS).unwrap_or_else(|e| panic!("{e}"));
        let mut out: Vec<Value> = e["cases"].as_array().into_iter().flatten().map(|c| c["context"].clone()).collect();
        out.push(serde_json::json!({"user": {"user_id": "u1", "device_id": "d1", "user_properties": {"country": "SE", "n": 3, "tags": ["a"]}}}));
        out.push(serde_json::json!({}));
        out
    })
}

fn evaluate(flags: &Flags, ctx: &Value) {
    let mut results = Vec::new();
    let out = flags.evaluate_into(ctx, &mut results).to_vec();
    for (f, v) in out.iter().enumerate() {
        if let Some(v) = v {
            let _ = (flags.variant_key(f, *v), flags.variant_object(f, *v), flags.sdk_filters(f, *v));
        }
    }
    let _ = serde_json::to_string(&flags.evaluate_json(ctx)).unwrap_or_else(|e| panic!("{e}"));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match text.split_once('\0') {
        None => {
            if let Ok(flags) = Flags::parse(text) {
                let _ = (flags.keys().count(), flags.len(), flags.is_empty());
                spec_contexts().iter().for_each(|c| evaluate(&flags, c));
            }
            if let Ok(ctx) = serde_json::from_str::<Value>(text) {
                evaluate(spec_flags(), &ctx);
            }
        }
        Some((flags, contexts)) => {
            let Ok(flags) = Flags::parse(flags) else { return };
            for line in contexts.lines().take(16) {
                if let Ok(ctx) = serde_json::from_str::<Value>(line) {
                    evaluate(&flags, &ctx);
                }
            }
        }
    }
});
