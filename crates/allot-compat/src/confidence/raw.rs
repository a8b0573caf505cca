//! The raw (parsed) forms of a resolver state, in both its formats (the specification form and
//! the proto3-JSON `ResolverState`), as serde reads them; [`super::compile`] turns them into
//! the compiled forms.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A proto `int32` (a number or a string holding one), as proto3-JSON parsers read it.
pub(super) fn de_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = de_int(d)?;
    i32::try_from(v).map(i64::from).map_err(|_| serde::de::Error::custom(format!("{v} is not an int32")))
}

pub(super) fn de_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    match IntOrString::deserialize(d)? {
        IntOrString::Int(i) => Ok(i),
        IntOrString::Str(s) => {
            s.parse().map_err(|_| serde::de::Error::custom(format!("expected an integer, got {s:?}")))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawFlag {
    pub(super) name: String,
    #[serde(default)]
    pub(super) state: String,
    #[serde(default)]
    pub(super) clients: Vec<String>,
    #[serde(default)]
    pub(super) variants: Vec<RawVariant>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) schema: Option<RawStructSchema>,
}

#[derive(Deserialize)]
pub(super) struct RawVariant {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawStructSchema {
    #[serde(default)]
    pub(super) schema: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawRule {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) segment: String,
    #[serde(default)]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) environments: Vec<String>,
    #[serde(default)]
    pub(super) targeting_key_selector: String,
    #[serde(default)]
    pub(super) assignment_spec: Option<RawSpec>,
    #[serde(default)]
    pub(super) materialization_spec: Option<RawMatSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSpec {
    #[serde(default, deserialize_with = "de_i32")]
    pub(super) bucket_count: i64,
    #[serde(default)]
    pub(super) assignments: Vec<RawAssignment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAssignment {
    #[serde(default)]
    pub(super) assignment_id: String,
    #[serde(default)]
    pub(super) variant: Option<RawVariantAssignment>,
    #[serde(default)]
    pub(super) fallthrough: Option<Value>,
    #[serde(default)]
    pub(super) client_default: Option<Value>,
    #[serde(default)]
    pub(super) bucket_ranges: Vec<RawRange>,
}

#[derive(Deserialize)]
pub(super) struct RawVariantAssignment {
    #[serde(default)]
    pub(super) variant: String,
}

#[derive(Deserialize)]
pub(super) struct RawRange {
    #[serde(default, deserialize_with = "de_i32")]
    pub(super) lower: i64,
    #[serde(default, deserialize_with = "de_i32")]
    pub(super) upper: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawMatSpec {
    #[serde(default)]
    pub(super) read_materialization: String,
    #[serde(default)]
    pub(super) mode: Option<RawMatMode>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawMatMode {
    #[serde(default)]
    pub(super) materialization_must_match: bool,
    #[serde(default)]
    pub(super) segment_targeting_can_be_ignored: bool,
}

#[derive(Deserialize)]
pub(super) struct RawSegment {
    pub(super) name: String,
    #[serde(default)]
    pub(super) targeting: Option<RawTargeting>,
}

#[derive(Deserialize)]
pub(super) struct RawTargeting {
    #[serde(default)]
    pub(super) criteria: HashMap<String, RawCriterion>,
    #[serde(default)]
    pub(super) expression: Option<RawExpression>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawCriterion {
    #[serde(default)]
    pub(super) attribute: Option<RawAttribute>,
    #[serde(default)]
    pub(super) segment: Option<RawSegmentRef>,
    #[serde(default)]
    pub(super) materialized_segment: Option<RawMaterializedRef>,
}

#[derive(Deserialize)]
pub(super) struct RawSegmentRef {
    #[serde(default)]
    pub(super) segment: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawMaterializedRef {
    #[serde(default)]
    pub(super) materialized_segment: String,
}

#[derive(Deserialize)]
pub(super) struct RawExpression {
    #[serde(default, rename = "ref")]
    pub(super) reference: Option<String>,
    #[serde(default)]
    pub(super) not: Option<Box<RawExpression>>,
    #[serde(default)]
    pub(super) and: Option<RawOperands>,
    #[serde(default)]
    pub(super) or: Option<RawOperands>,
}

#[derive(Deserialize)]
pub(super) struct RawOperands {
    #[serde(default)]
    pub(super) operands: Vec<RawExpression>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAttribute {
    #[serde(default)]
    pub(super) attribute_name: String,
    #[serde(flatten)]
    pub(super) rule: RawRules,
    #[serde(default)]
    pub(super) any_rule: Option<RawListRule>,
    #[serde(default)]
    pub(super) all_rule: Option<RawListRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawRules {
    #[serde(default)]
    pub(super) eq_rule: Option<RawEq>,
    #[serde(default)]
    pub(super) set_rule: Option<RawSet>,
    #[serde(default)]
    pub(super) range_rule: Option<RawRangeRule>,
    #[serde(default)]
    pub(super) starts_with_rule: Option<RawText>,
    #[serde(default)]
    pub(super) ends_with_rule: Option<RawText>,
    #[serde(default)]
    pub(super) contains_rule: Option<RawText>,
}

#[derive(Deserialize)]
pub(super) struct RawListRule {
    #[serde(default)]
    pub(super) rule: Option<RawRules>,
}

#[derive(Deserialize)]
pub(super) struct RawEq {
    #[serde(default)]
    pub(super) value: Option<RawValue>,
}

#[derive(Deserialize)]
pub(super) struct RawSet {
    #[serde(default)]
    pub(super) values: Vec<RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawRangeRule {
    #[serde(default)]
    pub(super) start_inclusive: Option<RawValue>,
    #[serde(default)]
    pub(super) start_exclusive: Option<RawValue>,
    #[serde(default)]
    pub(super) end_inclusive: Option<RawValue>,
    #[serde(default)]
    pub(super) end_exclusive: Option<RawValue>,
}

#[derive(Deserialize)]
pub(super) struct RawText {
    #[serde(default)]
    pub(super) value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawValue {
    #[serde(default)]
    pub(super) bool_value: Option<bool>,
    #[serde(default)]
    pub(super) number_value: Option<f64>,
    #[serde(default)]
    pub(super) string_value: Option<String>,
    #[serde(default)]
    pub(super) timestamp_value: Option<String>,
    #[serde(default)]
    pub(super) version_value: Option<RawVersion>,
}

#[derive(Deserialize)]
pub(super) struct RawVersion {
    #[serde(default)]
    pub(super) version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawBloom {
    #[serde(default)]
    pub(super) data: String,
    #[serde(default, deserialize_with = "de_int")]
    pub(super) hash_function_count: i64,
    #[serde(default, deserialize_with = "de_int")]
    pub(super) bit_count: i64,
    #[serde(default, deserialize_with = "de_int")]
    pub(super) strategy: i64,
}

/// The portable specification form.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpecState {
    pub(super) account: SpecAccount,
    #[serde(default)]
    pub(super) flags: serde_json::Map<String, Value>,
    #[serde(default)]
    pub(super) segments: serde_json::Map<String, Value>,
    #[serde(default)]
    pub(super) bitsets: serde_json::Map<String, Value>,
    #[serde(default)]
    pub(super) bloom_filters: serde_json::Map<String, Value>,
    #[serde(default)]
    pub(super) clients: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct SpecAccount {
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpecClient {
    pub(super) client: SpecClientName,
    pub(super) client_credential: SpecCredential,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpecClientName {
    pub(super) name: String,
    /// Flat dot-paths to values; the specification runner keeps only scalars (others read as null).
    #[serde(default)]
    pub(super) managed_context: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct SpecCredential {
    #[serde(default)]
    pub(super) environments: Vec<String>,
}

/// The proto3-JSON form of `ResolverState`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtoState {
    #[serde(default)]
    pub(super) flags: Vec<Value>,
    #[serde(default)]
    pub(super) segments_no_bitsets: Vec<Value>,
    #[serde(default)]
    pub(super) bitsets: Vec<ProtoBitset>,
    #[serde(default)]
    pub(super) bloom_filters: Vec<ProtoBloom>,
    #[serde(default)]
    pub(super) clients: Vec<ProtoClient>,
    #[serde(default)]
    pub(super) client_credentials: Vec<ProtoCredential>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtoBitset {
    #[serde(default)]
    pub(super) segment: String,
    #[serde(default)]
    pub(super) gzipped_bitset: Option<String>,
    #[serde(default)]
    pub(super) full_bitset: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtoBloom {
    #[serde(default)]
    pub(super) materialized_segment: String,
    #[serde(flatten)]
    pub(super) bloom: RawBloom,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtoClient {
    pub(super) name: String,
    /// Flat dot-paths to values, merged into every request's context.
    #[serde(default)]
    pub(super) managed_context: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtoCredential {
    pub(super) name: String,
    #[serde(default)]
    pub(super) client_secret: Option<ProtoSecret>,
    #[serde(default)]
    pub(super) environments: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct ProtoSecret {
    #[serde(default)]
    pub(super) secret: String,
}
