//! `POST /api/v1/evaluate` bodies through the real router (authentication, body limit, the
//! `ApiJson` extractor, unit id checks, sticky reads and writes, exposure logging) against a fixed
//! configuration. Whatever the body, the answer is 200 or a 4xx — never a 5xx, never a panic —
//! and a 200 carries the version served and assignments of known experiments only.
#![no_main]

use allot_fuzz::Service;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the content type, so bodies are also tried without one.
    let Some((&kind, body)) = data.split_first() else { return };
    let s = Service::get();
    let headers: &[(&str, &str)] = match kind % 4 {
        0 => &[],
        1 => &[("content-type", "text/plain")],
        _ => &[("content-type", "application/json")],
    };
    let r = s.call("POST", "/api/v1/evaluate", headers, body);
    assert!(
        r.status < 500,
        "{} for {:?}: {}",
        r.status,
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&r.body)
    );
    if r.status == 200 {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("200 is not JSON: {e}"));
        assert_eq!(v["version"], serde_json::json!(s.version()), "{v}");
        let known = ["banner", "color", "later", "onboarding"];
        let assignments = v["assignments"].as_object().unwrap_or_else(|| panic!("no assignments: {v}"));
        assert!(assignments.keys().all(|k| known.contains(&k.as_str())), "{v}");
    } else {
        // Errors are JSON that say what was wrong.
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{} is not JSON: {e}", r.status));
        assert!(v.is_object(), "{v}");
    }
});
