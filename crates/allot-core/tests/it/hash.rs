//! The frozen hash: golden vectors from `spec/hash/` (computed with Python's `mmh3`) and property
//! tests against the `murmur3` crate.

use std::io::Cursor;

use allot_core::hash::{bucket, bucket_of_hash, murmur3_x64_128, murmur3_x86_32, HASH_VERSION};
use proptest::prelude::*;
use serde_json::Value;

const X64_128_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/hash/murmur3_x64_128.json"));
const X86_32_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/hash/murmur3_x86_32.json"));

/// The `cases` array of a golden-vector file.
fn cases(json: &str, file: &str) -> Vec<Value> {
    let doc: Value = match serde_json::from_str(json) {
        Ok(doc) => doc,
        Err(e) => panic!("{file}: invalid JSON: {e}"),
    };
    match doc.get("cases") {
        Some(Value::Array(cases)) => cases.clone(),
        _ => panic!("{file}: no `cases` array"),
    }
}

fn str_field<'a>(case: &'a Value, field: &str) -> &'a str {
    match case.get(field).and_then(Value::as_str) {
        Some(s) => s,
        None => panic!("case {case}: no string field `{field}`"),
    }
}

/// A field holding an unsigned integer, either as a JSON number or as a decimal string.
fn u64_field(case: &Value, field: &str) -> u64 {
    let parsed = match case.get(field) {
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    match parsed {
        Some(v) => v,
        None => panic!("case {case}: no unsigned integer field `{field}`"),
    }
}

fn u32_field(case: &Value, field: &str) -> u32 {
    let v = u64_field(case, field);
    match u32::try_from(v) {
        Ok(v) => v,
        Err(_) => panic!("case {case}: `{field}` = {v} is not a u32"),
    }
}

/// h1 and h2 of the `murmur3` crate's x64_128 (the u128's low and high 64 bits).
fn reference_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    match murmur3::murmur3_x64_128(&mut Cursor::new(data), seed) {
        Ok(h) => (h as u64, (h >> 64) as u64),
        Err(e) => panic!("murmur3 crate failed: {e}"),
    }
}

fn reference_x86_32(data: &[u8], seed: u32) -> u32 {
    match murmur3::murmur3_32(&mut Cursor::new(data), seed) {
        Ok(h) => h,
        Err(e) => panic!("murmur3 crate failed: {e}"),
    }
}

#[test]
fn hash_version_is_one() {
    assert_eq!(HASH_VERSION, 1);
}

#[test]
fn golden_murmur3_x64_128_and_bucket() {
    let cases = cases(X64_128_JSON, "murmur3_x64_128.json");
    assert!(!cases.is_empty(), "murmur3_x64_128.json has no cases");

    let mut checked = 0;
    let mut split_checks = 0;
    for case in &cases {
        let input = str_field(case, "input");
        let h1 = u64_field(case, "h1");
        let h2 = u64_field(case, "h2");
        let bucket_1m = u32_field(case, "bucket_1m");

        assert_eq!(murmur3_x64_128(input.as_bytes(), 0), (h1, h2), "input {input:?}");
        // Pins how the property tests read the murmur3 crate's u128 (h1 = low 64 bits).
        assert_eq!(reference_x64_128(input.as_bytes(), 0), (h1, h2), "input {input:?}");
        assert_eq!(bucket_of_hash(h1, 1_000_000), bucket_1m, "input {input:?}");

        // Every '|' (the first included) splits the input into a salt and a unit whose
        // "<salt>|<unit>" is the input itself.
        for (i, _) in input.match_indices('|') {
            let (salt, unit) = (&input[..i], &input[i + 1..]);
            assert_eq!(bucket(salt, unit, 1_000_000), bucket_1m, "salt {salt:?}, unit {unit:?}");
            split_checks += 1;
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    assert!(split_checks > 0, "no golden input contains '|'");
}

#[test]
fn golden_murmur3_x86_32() {
    let cases = cases(X86_32_JSON, "murmur3_x86_32.json");
    assert!(!cases.is_empty(), "murmur3_x86_32.json has no cases");

    let mut checked = 0;
    for case in &cases {
        let input = str_field(case, "input");
        for (field, seed) in [("seed0", 0), ("seed1", 1), ("seed_7f3a21ea", 0x7f3a_21ea)] {
            let expected = u32_field(case, field);
            assert_eq!(murmur3_x86_32(input.as_bytes(), seed), expected, "input {input:?}, seed {seed:#x}");
            assert_eq!(reference_x86_32(input.as_bytes(), seed), expected, "murmur3 crate");
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
}

#[test]
fn golden_files_cover_the_same_inputs() {
    let x64: Vec<Value> = cases(X64_128_JSON, "murmur3_x64_128.json");
    let x86: Vec<Value> = cases(X86_32_JSON, "murmur3_x86_32.json");
    let x64: Vec<&str> = x64.iter().map(|c| str_field(c, "input")).collect();
    let x86: Vec<&str> = x86.iter().map(|c| str_field(c, "input")).collect();
    assert_eq!(x64, x86);
}

#[test]
fn bucket_of_long_keys() {
    // Past any small stack buffer, and across every alignment of the '|' in a 16-byte block.
    for salt_len in 0..40 {
        let salt = "s".repeat(salt_len);
        let unit = "ü".repeat(600);
        let key = format!("{salt}|{unit}");
        let (h1, _) = reference_x64_128(key.as_bytes(), 0);
        assert_eq!(bucket(&salt, &unit, 1_000_000), bucket_of_hash(h1, 1_000_000));
    }
}

/// Strings of arbitrary chars, mostly short but often longer than 256 bytes.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..40),
        proptest::collection::vec(any::<char>(), 0..400),
        "[a-z0-9-]{257,700}".prop_map(|s| s.chars().collect()),
    ]
    .prop_map(String::from_iter)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn x64_128_matches_murmur3_crate(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        seed in any::<u32>(),
    ) {
        prop_assert_eq!(murmur3_x64_128(&data, seed), reference_x64_128(&data, seed));
    }

    #[test]
    fn x86_32_matches_murmur3_crate(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        seed in any::<u32>(),
    ) {
        prop_assert_eq!(murmur3_x86_32(&data, seed), reference_x86_32(&data, seed));
    }

    #[test]
    fn bucket_is_bucket_of_hash_of_salt_bar_unit(
        salt in any_string(),
        unit in any_string(),
        buckets in 1u32..=2_000_000,
    ) {
        let key = format!("{salt}|{unit}");
        let (h1, _) = murmur3_x64_128(key.as_bytes(), 0);
        let (reference_h1, _) = reference_x64_128(key.as_bytes(), 0);
        prop_assert_eq!(h1, reference_h1);

        let b = bucket(&salt, &unit, buckets);
        prop_assert_eq!(b, bucket_of_hash(h1, buckets));
        prop_assert!(b < buckets);
    }
}
