//! OFREP bodies (`POST /ofrep/v1/evaluate/flags` and `/ofrep/v1/evaluate/flags/{key}`) through the
//! real router against a fixed configuration. Whatever the body: 200 (or 304) or a 4xx with an
//! OFREP error code, never a 5xx or a panic; a bulk 200 carries one configuration version, the
//! service's, on the answer and on every flag.
#![no_main]

use allot_fuzz::Service;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Flag keys: the configured ones, a draft, an unknown one, and keys that need escaping.
const KEYS: &[&str] = &["banner", "color", "later", "onboarding", "nope", "%00", "a%2Fb", "%C3%A9"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let s = Service::get();
    let bulk = pick & 1 == 0;
    let path = if bulk {
        "/ofrep/v1/evaluate/flags".to_string()
    } else {
        format!("/ofrep/v1/evaluate/flags/{}", KEYS[(pick >> 1) as usize % KEYS.len()])
    };
    let headers: &[(&str, &str)] = if pick & 0x80 != 0 {
        &[("content-type", "application/json"), ("if-none-match", "\"1-0\", W/\"x\"")]
    } else {
        &[("content-type", "application/json")]
    };
    let r = s.call("POST", &path, headers, body);
    assert!(
        r.status < 500,
        "{} on {path} for {:?}: {}",
        r.status,
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&r.body)
    );
    if r.status == 304 {
        return;
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{} is not JSON: {e}", r.status));
    let version = serde_json::json!(s.version());
    match (bulk, r.status) {
        (true, 200) => {
            assert_eq!(v["metadata"]["configVersion"], version, "{v}");
            for f in v["flags"].as_array().unwrap_or_else(|| panic!("no flags: {v}")) {
                if !f["metadata"].is_null() {
                    assert_eq!(f["metadata"]["configVersion"], version, "{v}");
                }
                assert!(f["key"].is_string(), "{v}");
            }
        }
        (false, 200) => {
            assert_eq!(v["metadata"]["configVersion"], version, "{v}");
            assert!(v["reason"].is_string(), "{v}");
        }
        _ => assert!(v["errorCode"].is_string() || v["error"].is_object() || v.is_object(), "{v}"),
    }
});
