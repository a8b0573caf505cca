//! Spotify Confidence: resolve flags from a resolver state, exactly as Confidence's resolver does.
//!
//! Two state formats are read: the portable specification form (`account`, maps of `flags`,
//! `segments`, `bitsets` as `"ALL"` or lists of set buckets, `bloomFilters`, `clients` keyed by
//! secret) and the proto3-JSON form of Confidence's `ResolverState` message that the Confidence
//! service publishes to local resolvers (`flags`, `segmentsNoBitsets`, gzipped `bitsets`,
//! `clients`, `clientCredentials`; the account id is given separately).
//!
//! What reuses allot's core: a segment's allocation is a [`BucketSet`] over 1,000,000 buckets and
//! a unit's bucket is [`allot_core::hash::bucket`]`("MegaSalt-<account>", unit, 1_000_000)`, the very
//! function allot allocates with; a rule's variant bucket is the same function with the segment id
//! as salt. The targeting, sticky assignments ("materializations") and the reasons are Confidence's
//! own and live here, because their coercions (a missing attribute reads as the string `"null"`,
//! scalars are wrapped into lists, rules without a recognised operator skip the rule) are not
//! semantics allot's users should get by default.

use crate::{from_value, parse_json, CompatError};
use allot_core::bucketset::{BucketBitmap, BucketSet};
use allot_core::hash;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read as _;
use timestamp::Ts;

mod import;
mod managed;
mod timestamp;
mod version;

pub use import::{answer, Answer, ImportOptions, Imported};

/// The bucket space of segment allocations.
pub const BUCKETS: u32 = 1_000_000;
/// The resolver's batch limit (`MAX_NO_OF_FLAGS_TO_BATCH_RESOLVE`).
const MAX_FLAGS_PER_RESOLVE: usize = 5000;
const TARGETING_KEY: &str = "targeting_key";

// ---------------------------------------------------------------------------------------------
// Raw (parsed) forms
// ---------------------------------------------------------------------------------------------

/// A proto `int32` (a number or a string holding one), as proto3-JSON parsers read it.
fn de_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = de_int(d)?;
    i32::try_from(v).map(i64::from).map_err(|_| serde::de::Error::custom(format!("{v} is not an int32")))
}

fn de_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
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
struct RawFlag {
    name: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    variants: Vec<RawVariant>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    schema: Option<RawStructSchema>,
}

#[derive(Deserialize)]
struct RawVariant {
    name: String,
    #[serde(default)]
    value: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
struct RawStructSchema {
    #[serde(default)]
    schema: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default)]
    name: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    targeting_key_selector: String,
    #[serde(default)]
    assignment_spec: Option<RawSpec>,
    #[serde(default)]
    materialization_spec: Option<RawMatSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default, deserialize_with = "de_i32")]
    bucket_count: i64,
    #[serde(default)]
    assignments: Vec<RawAssignment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAssignment {
    #[serde(default)]
    assignment_id: String,
    #[serde(default)]
    variant: Option<RawVariantAssignment>,
    #[serde(default)]
    fallthrough: Option<Value>,
    #[serde(default)]
    client_default: Option<Value>,
    #[serde(default)]
    bucket_ranges: Vec<RawRange>,
}

#[derive(Deserialize)]
struct RawVariantAssignment {
    #[serde(default)]
    variant: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(default, deserialize_with = "de_i32")]
    lower: i64,
    #[serde(default, deserialize_with = "de_i32")]
    upper: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMatSpec {
    #[serde(default)]
    read_materialization: String,
    #[serde(default)]
    mode: Option<RawMatMode>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct RawMatMode {
    #[serde(default)]
    materialization_must_match: bool,
    #[serde(default)]
    segment_targeting_can_be_ignored: bool,
}

#[derive(Deserialize)]
struct RawSegment {
    name: String,
    #[serde(default)]
    targeting: Option<RawTargeting>,
}

#[derive(Deserialize)]
struct RawTargeting {
    #[serde(default)]
    criteria: HashMap<String, RawCriterion>,
    #[serde(default)]
    expression: Option<RawExpression>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCriterion {
    #[serde(default)]
    attribute: Option<RawAttribute>,
    #[serde(default)]
    segment: Option<RawSegmentRef>,
    #[serde(default)]
    materialized_segment: Option<RawMaterializedRef>,
}

#[derive(Deserialize)]
struct RawSegmentRef {
    #[serde(default)]
    segment: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterializedRef {
    #[serde(default)]
    materialized_segment: String,
}

#[derive(Deserialize)]
struct RawExpression {
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    not: Option<Box<RawExpression>>,
    #[serde(default)]
    and: Option<RawOperands>,
    #[serde(default)]
    or: Option<RawOperands>,
}

#[derive(Deserialize)]
struct RawOperands {
    #[serde(default)]
    operands: Vec<RawExpression>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttribute {
    #[serde(default)]
    attribute_name: String,
    #[serde(flatten)]
    rule: RawRules,
    #[serde(default)]
    any_rule: Option<RawListRule>,
    #[serde(default)]
    all_rule: Option<RawListRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRules {
    #[serde(default)]
    eq_rule: Option<RawEq>,
    #[serde(default)]
    set_rule: Option<RawSet>,
    #[serde(default)]
    range_rule: Option<RawRangeRule>,
    #[serde(default)]
    starts_with_rule: Option<RawText>,
    #[serde(default)]
    ends_with_rule: Option<RawText>,
    #[serde(default)]
    contains_rule: Option<RawText>,
}

#[derive(Deserialize)]
struct RawListRule {
    #[serde(default)]
    rule: Option<RawRules>,
}

#[derive(Deserialize)]
struct RawEq {
    #[serde(default)]
    value: Option<RawValue>,
}

#[derive(Deserialize)]
struct RawSet {
    #[serde(default)]
    values: Vec<RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRangeRule {
    #[serde(default)]
    start_inclusive: Option<RawValue>,
    #[serde(default)]
    start_exclusive: Option<RawValue>,
    #[serde(default)]
    end_inclusive: Option<RawValue>,
    #[serde(default)]
    end_exclusive: Option<RawValue>,
}

#[derive(Deserialize)]
struct RawText {
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawValue {
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default)]
    number_value: Option<f64>,
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    timestamp_value: Option<String>,
    #[serde(default)]
    version_value: Option<RawVersion>,
}

#[derive(Deserialize)]
struct RawVersion {
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBloom {
    #[serde(default)]
    data: String,
    #[serde(default, deserialize_with = "de_int")]
    hash_function_count: i64,
    #[serde(default, deserialize_with = "de_int")]
    bit_count: i64,
    #[serde(default, deserialize_with = "de_int")]
    strategy: i64,
}

/// The portable specification form.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecState {
    account: SpecAccount,
    #[serde(default)]
    flags: serde_json::Map<String, Value>,
    #[serde(default)]
    segments: serde_json::Map<String, Value>,
    #[serde(default)]
    bitsets: serde_json::Map<String, Value>,
    #[serde(default)]
    bloom_filters: serde_json::Map<String, Value>,
    #[serde(default)]
    clients: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct SpecAccount {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecClient {
    client: SpecClientName,
    client_credential: SpecCredential,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecClientName {
    name: String,
    /// Flat dot-paths to values; the specification runner keeps only scalars (others read as null).
    #[serde(default)]
    managed_context: Map<String, Value>,
}

#[derive(Deserialize)]
struct SpecCredential {
    #[serde(default)]
    environments: Vec<String>,
}

/// The proto3-JSON form of `ResolverState`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtoState {
    #[serde(default)]
    flags: Vec<Value>,
    #[serde(default)]
    segments_no_bitsets: Vec<Value>,
    #[serde(default)]
    bitsets: Vec<ProtoBitset>,
    #[serde(default)]
    bloom_filters: Vec<ProtoBloom>,
    #[serde(default)]
    clients: Vec<ProtoClient>,
    #[serde(default)]
    client_credentials: Vec<ProtoCredential>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtoBitset {
    #[serde(default)]
    segment: String,
    #[serde(default)]
    gzipped_bitset: Option<String>,
    #[serde(default)]
    full_bitset: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtoBloom {
    #[serde(default)]
    materialized_segment: String,
    #[serde(flatten)]
    bloom: RawBloom,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtoClient {
    name: String,
    /// Flat dot-paths to values, merged into every request's context.
    #[serde(default)]
    managed_context: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtoCredential {
    name: String,
    #[serde(default)]
    client_secret: Option<ProtoSecret>,
    #[serde(default)]
    environments: Vec<String>,
}

#[derive(Deserialize)]
struct ProtoSecret {
    #[serde(default)]
    secret: String,
}

// ---------------------------------------------------------------------------------------------
// Compiled forms
// ---------------------------------------------------------------------------------------------

/// A compiled Confidence resolver state: resolve many requests against it.
#[derive(Debug)]
pub struct State {
    /// `MegaSalt-<account id>`: the salt of segment allocations.
    account_salt: String,
    flags: Vec<Flag>,
    segments: Vec<Segment>,
    blooms: HashMap<String, Bloom>,
    clients: HashMap<String, Client>,
    /// The value of a matched client default: `{}`.
    empty: Value,
}

#[derive(Debug)]
struct Client {
    name: String,
    environments: Vec<String>,
    /// The client's managed context, unflattened (`{"a.b": 1}` as `{"a": {"b": 1}}`); empty for none.
    managed: Map<String, Value>,
    /// The active flags this client may resolve, in state order.
    flags: Vec<usize>,
}

#[derive(Debug)]
struct Flag {
    name: String,
    active: bool,
    clients: Vec<String>,
    variants: Vec<(String, Value)>,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    enabled: bool,
    environments: Vec<String>,
    /// The segment index, `None` when the state has no such segment.
    segment: Option<usize>,
    /// The segment id after `segments/`: the salt of the variant bucket.
    variant_salt: Option<String>,
    selector: Vec<String>,
    blank_selector: bool,
    spec: Option<Spec>,
    materialization: Option<MatSpec>,
}

#[derive(Debug)]
struct Spec {
    bucket_count: i64,
    assignments: Vec<Assignment>,
    one_full_variant: bool,
}

#[derive(Debug)]
struct Assignment {
    kind: Kind,
    ranges: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A variant by name, with its index in the flag (`None`: the flag has no such variant).
    Variant(String, Option<usize>),
    Fallthrough,
    ClientDefault,
    None,
}

#[derive(Debug)]
struct MatSpec {
    read: String,
    mode: RawMatMode,
}

#[derive(Debug)]
struct Segment {
    /// Its name (`segments/<id>`).
    name: String,
    /// `None`: no bitset, everyone is allocated. `Some(set, full)`.
    bitset: Option<(Bits, bool)>,
    targeting: Option<Targeting>,
}

/// A segment's allocation. allot's compact [`BucketSet`] suits sets drawn shard by shard; a
/// Confidence bitset is a bucket-by-bucket random sample, where nearly every 128-bucket shard is
/// partly held and the compact form would binary-search on every lookup, so such sets stay in
/// the working form [`BucketBitmap`] (one bit test, 125 KB).
#[derive(Debug)]
enum Bits {
    Compact(BucketSet),
    BucketBitmap(BucketBitmap),
}

impl Bits {
    /// The set in working form.
    fn to_dense(&self) -> BucketBitmap {
        match self {
            Bits::Compact(c) => c.dense(),
            Bits::BucketBitmap(d) => d.clone(),
        }
    }

    fn new(dense: BucketBitmap) -> Bits {
        let compact = dense.compact();
        let mut partial = 0usize;
        compact.for_each_mask(|_, m| {
            if m != u128::MAX {
                partial += 1;
            }
        });
        if partial > 64 {
            Bits::BucketBitmap(dense)
        } else {
            Bits::Compact(compact)
        }
    }

    #[inline]
    fn contains(&self, b: u32) -> bool {
        match self {
            Bits::Compact(c) => c.contains(b),
            Bits::BucketBitmap(d) => d.contains(b),
        }
    }
}

#[derive(Debug)]
struct Targeting {
    criteria: Vec<Criterion>,
    /// `None`: no expression, matches.
    expression: Option<Expr>,
}

#[derive(Debug)]
enum Expr {
    /// An expression with none of its cases set: no match.
    Empty,
    /// A criterion by index, `None` when the id is not among the criteria.
    Ref(Option<usize>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Debug)]
enum Criterion {
    Unset,
    Attribute(Attribute),
    Segment(Option<usize>),
    Materialized(String),
}

#[derive(Debug)]
struct Attribute {
    path: Vec<String>,
    expected: Expected,
    rule: AttrRule,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    None,
    Bool,
    Number,
    String,
    /// The string operators (starts/ends with, contains): only strings match.
    StrictString,
    Timestamp,
    Version,
}

#[derive(Debug)]
enum AttrRule {
    Unrecognized,
    Single(Op),
    Any(Option<Op>),
    All(Option<Op>),
}

#[derive(Debug)]
enum Op {
    Unrecognized,
    /// An `eqRule` with a value.
    Eq(TypedValue<'static>),
    /// An `eqRule` whose value has no kind set: Confidence's null equality. At the top of a
    /// criterion it matches a missing or null attribute, or a list holding a null; inside
    /// `any`/`all` it matches nothing.
    NullEq,
    Set(Vec<TypedValue<'static>>),
    Range(Option<Bound>, Option<Bound>),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
}

#[derive(Debug)]
struct Bound {
    inclusive: bool,
    value: Option<TypedValue<'static>>,
}

/// A targeting value (Confidence's `targeting.Value`).
#[derive(Debug, Clone, PartialEq)]
enum TypedValue<'a> {
    Bool(bool),
    Number(f64),
    Str(Cow<'a, str>),
    Timestamp(Ts),
    Version(Cow<'a, str>),
    List(Vec<TypedValue<'a>>),
    /// What a string operator sees for a value that is not a string (the resolver's empty
    /// `Value`): it matches no operator.
    Invalid,
}

#[derive(Debug)]
struct Bloom {
    bits: Vec<u8>,
    hashes: u32,
    num_bits: u64,
}

impl Bloom {
    fn compile(raw: RawBloom, path: &str) -> Result<Option<Bloom>, CompatError> {
        let mut bits = base64::engine::general_purpose::STANDARD
            .decode(raw.data.as_bytes())
            .map_err(|e| CompatError::invalid(format!("{path}.data"), format!("not base64: {e}")))?;
        if raw.strategy != 1 {
            // Confidence drops a filter it cannot use; its segment then needs materializations.
            return Ok(None);
        }
        // Guava writes its longs big-endian; reverse each to read bit i at byte i/8, bit i%8.
        for chunk in bits.chunks_exact_mut(8) {
            chunk.reverse();
        }
        // The resolver reads the counts with `as` (a negative count is a huge one); so does allot.
        Ok(Some(Bloom { bits, hashes: raw.hash_function_count as u32, num_bits: raw.bit_count as u64 }))
    }

    /// Guava's MURMUR128_MITZ_64 membership test, as Confidence reads it.
    fn might_contain(&self, key: &str) -> bool {
        let (lo, hi) = hash::murmur3_x64_128(key.as_bytes(), 0);
        let (h1, h2) = (lo as i64, hi as i64);
        let mut combined = h1;
        for _ in 0..self.hashes {
            // With no bits the resolver divides by zero (it panics); nothing is in such a filter.
            let Some(i) = ((combined & i64::MAX) as u64).checked_rem(self.num_bits) else { return false };
            let set = self.bits.get((i / 8) as usize).is_some_and(|byte| (byte >> (i % 8)) & 1 == 1);
            if !set {
                return false;
            }
            combined = combined.wrapping_add(h2);
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

impl State {
    /// Parses and compiles a state in either form. `account` is the account id (`confidence-demo-june`)
    /// for the proto3-JSON form, which does not carry it; the specification form names its account.
    pub fn parse(text: &str, account: Option<&str>) -> Result<State, CompatError> {
        let value: Value = parse_json(text)?;
        let Some(obj) = value.as_object() else {
            return Err(CompatError::invalid(".", "a resolver state must be a JSON object"));
        };
        if obj.contains_key("account") {
            let spec: SpecState = from_value(value)?;
            State::from_spec(spec)
        } else {
            let Some(account) = account else {
                return Err(CompatError::invalid(
                    "account",
                    "this state does not name its account; give the account id (e.g. --account confidence-demo-june)",
                ));
            };
            let proto: ProtoState = from_value(value)?;
            State::from_proto(proto, account)
        }
    }

    fn from_spec(spec: SpecState) -> Result<State, CompatError> {
        let account = account_id(&spec.account.name)
            .ok_or_else(|| CompatError::invalid("account.name", "expected accounts/<id>"))?;
        let mut flags = Vec::new();
        for (key, v) in spec.flags {
            let raw: RawFlag = from_value(v).map_err(|e| nest(&format!("flags.{key}"), e))?;
            flags.push(raw);
        }
        let mut segments = Vec::new();
        for (key, v) in spec.segments {
            let raw: RawSegment = from_value(v).map_err(|e| nest(&format!("segments.{key}"), e))?;
            segments.push(raw);
        }
        let mut bitsets = HashMap::new();
        for (key, v) in spec.bitsets {
            let path = format!("bitsets.{key}");
            let set = match v {
                Value::String(s) if s == "ALL" => None,
                Value::Array(items) => {
                    let mut dense = BucketBitmap::empty(BUCKETS);
                    for (i, item) in items.iter().enumerate() {
                        match item.as_u64() {
                            Some(b) if b < u64::from(BUCKETS) => dense.insert(b as u32),
                            _ => {
                                return Err(CompatError::invalid(
                                    format!("{path}[{i}]"),
                                    format!("expected a bucket in 0..{BUCKETS}, got {item}"),
                                ))
                            }
                        }
                    }
                    let full = dense.len() == u64::from(BUCKETS);
                    Some((dense, full))
                }
                other => {
                    return Err(CompatError::invalid(
                        path,
                        format!("expected \"ALL\" or a list of buckets, got {other}"),
                    ))
                }
            };
            bitsets.insert(key, set);
        }
        let mut blooms = HashMap::new();
        for (key, v) in spec.bloom_filters {
            let path = format!("bloomFilters.{key}");
            let raw: RawBloom = from_value(v).map_err(|e| nest(&path, e))?;
            if let Some(b) = Bloom::compile(raw, &path)? {
                blooms.insert(key, b);
            }
        }
        let mut clients = HashMap::new();
        for (secret, v) in spec.clients {
            let raw: SpecClient = from_value(v).map_err(|e| nest(&format!("clients.{secret}"), e))?;
            let flat = raw
                .client
                .managed_context
                .into_iter()
                .map(|(k, v)| (k, if v.is_object() || v.is_array() { Value::Null } else { v }))
                .collect();
            clients.insert(
                secret,
                Client {
                    name: raw.client.name,
                    environments: raw.client_credential.environments,
                    managed: managed::unflatten(flat),
                    flags: Vec::new(),
                },
            );
        }
        State::compile(&account, flags, segments, bitsets, blooms, clients, "flags", "segments")
    }

    fn from_proto(proto: ProtoState, account: &str) -> Result<State, CompatError> {
        let mut flags = Vec::new();
        for (i, v) in proto.flags.into_iter().enumerate() {
            flags.push(from_value::<RawFlag>(v).map_err(|e| nest(&format!("flags[{i}]"), e))?);
        }
        let mut segments = Vec::new();
        for (i, v) in proto.segments_no_bitsets.into_iter().enumerate() {
            segments.push(from_value::<RawSegment>(v).map_err(|e| nest(&format!("segmentsNoBitsets[{i}]"), e))?);
        }
        let mut bitsets = HashMap::new();
        for (i, b) in proto.bitsets.into_iter().enumerate() {
            let path = format!("bitsets[{i}]");
            match (b.gzipped_bitset, b.full_bitset) {
                (Some(z), _) => {
                    let bytes =
                        gunzip_base64(&z).map_err(|m| CompatError::invalid(format!("{path}.gzippedBitset"), m))?;
                    let mut dense = BucketBitmap::empty(BUCKETS);
                    // A unit without a targeting key is in the segment only when every bit of
                    // the decompressed bitset is set (the resolver's `BitVec::all`, whatever
                    // its length: an empty bitset holds everyone without a key and no one with).
                    let full = bytes.iter().all(|b| *b == 0xff);
                    for (byte_i, byte) in bytes.iter().enumerate() {
                        if *byte == 0 {
                            continue;
                        }
                        for bit in 0..8 {
                            if (byte >> bit) & 1 == 1 {
                                let b = byte_i as u64 * 8 + bit;
                                if b < u64::from(BUCKETS) {
                                    dense.insert(b as u32);
                                }
                            }
                        }
                    }
                    bitsets.insert(b.segment, Some((dense, full)));
                }
                // A full bitset is treated as no bitset: everyone; so is an entry with neither.
                (None, Some(true)) | (None, None) => {}
                (None, Some(false)) => {
                    return Err(CompatError::invalid(path, "fullBitset: false is not a bitset (give gzippedBitset)"));
                }
            }
        }
        let mut blooms = HashMap::new();
        for (i, b) in proto.bloom_filters.into_iter().enumerate() {
            if let Some(bloom) = Bloom::compile(b.bloom, &format!("bloomFilters[{i}]"))? {
                blooms.insert(b.materialized_segment, bloom);
            }
        }
        let mut clients = HashMap::new();
        for client in &proto.clients {
            for cred in &proto.client_credentials {
                if !cred.name.starts_with(client.name.as_str()) {
                    continue;
                }
                if let Some(secret) = &cred.client_secret {
                    clients.insert(
                        secret.secret.clone(),
                        Client {
                            name: client.name.clone(),
                            environments: cred.environments.clone(),
                            managed: managed::unflatten(client.managed_context.clone()),
                            flags: Vec::new(),
                        },
                    );
                }
            }
        }
        State::compile(account, flags, segments, bitsets, blooms, clients, "flags", "segmentsNoBitsets")
    }

    #[allow(clippy::too_many_arguments)]
    fn compile(
        account: &str,
        raw_flags: Vec<RawFlag>,
        raw_segments: Vec<RawSegment>,
        bitsets: HashMap<String, Option<(BucketBitmap, bool)>>,
        blooms: HashMap<String, Bloom>,
        mut clients: HashMap<String, Client>,
        _flags_path: &str,
        segments_path: &str,
    ) -> Result<State, CompatError> {
        let seg_index: HashMap<String, usize> =
            raw_segments.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
        let mut segments = Vec::with_capacity(raw_segments.len());
        for (i, raw) in raw_segments.into_iter().enumerate() {
            let bitset = match bitsets.get(&raw.name) {
                Some(Some((dense, full))) => Some((Bits::new(dense.clone()), *full)),
                Some(None) | None => None,
            };
            let targeting = match raw.targeting {
                Some(t) => Some(compile_targeting(t, &seg_index).map_err(|m| {
                    let at = if segments_path == "segments" { raw.name.clone() } else { format!("[{i}]") };
                    CompatError::invalid(format!("{segments_path}.{at}.targeting"), m)
                })?),
                None => None,
            };
            segments.push(Segment { name: raw.name, bitset, targeting });
        }
        let mut flags = Vec::with_capacity(raw_flags.len());
        // Two flags of one name: the resolver keeps them in a map, so the last one is the flag.
        let last: HashMap<&str, usize> = raw_flags.iter().enumerate().map(|(i, f)| (f.name.as_str(), i)).collect();
        let keep: Vec<bool> = raw_flags.iter().enumerate().map(|(i, f)| last[f.name.as_str()] == i).collect();
        for (raw, keep) in raw_flags.into_iter().zip(keep) {
            if keep {
                flags.push(compile_flag(raw, &seg_index));
            }
        }
        for client in clients.values_mut() {
            client.flags =
                (0..flags.len()).filter(|&i| flags[i].active && flags[i].clients.contains(&client.name)).collect();
        }
        Ok(State {
            account_salt: format!("MegaSalt-{account}"),
            flags,
            segments,
            blooms,
            clients,
            empty: Value::Object(Map::new()),
        })
    }

    /// The names of the flags in the state, in the order they are resolved.
    pub fn flag_names(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| f.name.as_str())
    }
}

fn nest(prefix: &str, e: CompatError) -> CompatError {
    let CompatError::Invalid { path, message } = e;
    if path == "." {
        CompatError::invalid(prefix, message)
    } else {
        CompatError::invalid(format!("{prefix}.{path}"), message)
    }
}

fn account_id(name: &str) -> Option<String> {
    name.split('/').nth(1).map(str::to_string)
}

fn gunzip_base64(text: &str) -> Result<Vec<u8>, String> {
    let zipped =
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(|e| format!("not base64: {e}"))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut out).map_err(|e| format!("not gzip: {e}"))?;
    Ok(out)
}

fn compile_flag(raw: RawFlag, seg_index: &HashMap<String, usize>) -> Flag {
    let schema = raw.schema.unwrap_or_default();
    let variants: Vec<(String, Value)> = raw
        .variants
        .into_iter()
        .map(|v| {
            let value = fill_schema_nulls(v.value.unwrap_or_default(), &schema.schema);
            (v.name, Value::Object(value))
        })
        .collect();
    let rules = raw
        .rules
        .into_iter()
        .map(|r| {
            let spec = r.assignment_spec.map(|s| {
                let assignments: Vec<Assignment> = s
                    .assignments
                    .into_iter()
                    .map(|a| {
                        let kind = if let Some(v) = a.variant {
                            let idx = variants.iter().position(|(n, _)| *n == v.variant);
                            Kind::Variant(v.variant, idx)
                        } else if a.fallthrough.is_some() {
                            Kind::Fallthrough
                        } else if a.client_default.is_some() {
                            Kind::ClientDefault
                        } else {
                            Kind::None
                        };
                        let _ = a.assignment_id;
                        Assignment { kind, ranges: a.bucket_ranges.iter().map(|r| (r.lower, r.upper)).collect() }
                    })
                    .collect();
                let one_full_variant = assignments.len() == 1
                    && assignments[0].ranges.len() == 1
                    && assignments[0].ranges[0] == (0, s.bucket_count);
                Spec { bucket_count: s.bucket_count, assignments, one_full_variant }
            });
            let blank_selector = r.targeting_key_selector.is_empty();
            let selector_text = if blank_selector { TARGETING_KEY } else { r.targeting_key_selector.as_str() };
            Rule {
                enabled: r.enabled,
                environments: r.environments,
                segment: seg_index.get(&r.segment).copied(),
                variant_salt: r.segment.split('/').nth(1).map(str::to_string),
                selector: selector_text.split('.').map(str::to_string).collect(),
                blank_selector,
                spec,
                materialization: r
                    .materialization_spec
                    .map(|m| MatSpec { read: m.read_materialization, mode: m.mode.unwrap_or_default() }),
                name: r.name,
            }
        })
        .collect();
    Flag { active: raw.state == "ACTIVE", name: raw.name, clients: raw.clients, variants, rules }
}

/// Fields the schema names but the value lacks become `null` (nested structs too), as the
/// Confidence service does.
fn fill_schema_nulls(mut value: Map<String, Value>, schema: &Map<String, Value>) -> Map<String, Value> {
    for (field, field_schema) in schema {
        match value.get_mut(field) {
            None => {
                value.insert(field.clone(), Value::Null);
            }
            Some(Value::Object(sub)) => {
                if let Some(sub_schema) =
                    field_schema.get("structSchema").and_then(|s| s.get("schema")).and_then(Value::as_object)
                {
                    let filled = fill_schema_nulls(std::mem::take(sub), sub_schema);
                    *sub = filled;
                }
            }
            Some(_) => {}
        }
    }
    value
}

/// Compiles a segment's targeting. Fails where the resolver cannot read the state: a rule's
/// timestamp that is not RFC 3339 (proto3-JSON's `Timestamp`).
fn compile_targeting(raw: RawTargeting, seg_index: &HashMap<String, usize>) -> Result<Targeting, String> {
    let mut ids: Vec<String> = Vec::with_capacity(raw.criteria.len());
    let mut criteria = Vec::with_capacity(raw.criteria.len());
    for (id, c) in raw.criteria {
        let criterion = if let Some(a) = c.attribute {
            Criterion::Attribute(compile_attribute(a).map_err(|m| format!("criteria.{id}.attribute: {m}"))?)
        } else if let Some(s) = c.segment {
            Criterion::Segment(seg_index.get(&s.segment).copied())
        } else if let Some(m) = c.materialized_segment {
            Criterion::Materialized(m.materialized_segment)
        } else {
            Criterion::Unset
        };
        ids.push(id);
        criteria.push(criterion);
    }
    let expression = raw.expression.map(|e| compile_expr(e, &ids));
    Ok(Targeting { criteria, expression })
}

fn compile_expr(raw: RawExpression, ids: &[String]) -> Expr {
    if let Some(r) = raw.reference {
        Expr::Ref(ids.iter().position(|i| *i == r))
    } else if let Some(n) = raw.not {
        Expr::Not(Box::new(compile_expr(*n, ids)))
    } else if let Some(a) = raw.and {
        Expr::And(a.operands.into_iter().map(|e| compile_expr(e, ids)).collect())
    } else if let Some(o) = raw.or {
        Expr::Or(o.operands.into_iter().map(|e| compile_expr(e, ids)).collect())
    } else {
        Expr::Empty
    }
}

fn compile_attribute(raw: RawAttribute) -> Result<Attribute, String> {
    let path = raw.attribute_name.split('.').map(str::to_string).collect();
    let (rule, expected) = if let Some((op, expected)) = compile_rules(raw.rule)? {
        (AttrRule::Single(op), expected)
    } else if let Some(any) = raw.any_rule {
        let inner = any.rule.map(compile_rules_or_unrecognized).transpose()?;
        let expected = inner.as_ref().map_or(Expected::None, |(_, e)| *e);
        (AttrRule::Any(inner.map(|(op, _)| op)), expected)
    } else if let Some(all) = raw.all_rule {
        let inner = all.rule.map(compile_rules_or_unrecognized).transpose()?;
        let expected = inner.as_ref().map_or(Expected::None, |(_, e)| *e);
        (AttrRule::All(inner.map(|(op, _)| op)), expected)
    } else {
        (AttrRule::Unrecognized, Expected::None)
    };
    Ok(Attribute { path, expected, rule })
}

/// An inner rule with no operator set is present but unrecognised (an error only when evaluated).
fn compile_rules_or_unrecognized(raw: RawRules) -> Result<(Op, Expected), String> {
    Ok(compile_rules(raw)?.unwrap_or((Op::Unrecognized, Expected::None)))
}

fn compile_rules(raw: RawRules) -> Result<Option<(Op, Expected)>, String> {
    if let Some(eq) = raw.eq_rule {
        return Ok(Some(match eq.value {
            None => (Op::Unrecognized, Expected::None),
            Some(v) => match compile_value(v)? {
                None => (Op::NullEq, Expected::None),
                Some(tv) => {
                    let expected = expected_of(Some(&tv));
                    (Op::Eq(tv), expected)
                }
            },
        }));
    }
    if let Some(set) = raw.set_rule {
        let values = set.values.into_iter().map(compile_value).collect::<Result<Vec<_>, _>>()?;
        let expected = values.first().map_or(Expected::None, |v| expected_of(v.as_ref()));
        return Ok(Some((Op::Set(values.into_iter().flatten().collect()), expected)));
    }
    if let Some(r) = raw.range_rule {
        let start = match (r.start_inclusive, r.start_exclusive) {
            (Some(v), _) => Some((true, v)),
            (None, Some(v)) => Some((false, v)),
            _ => None,
        };
        let end = match (r.end_inclusive, r.end_exclusive) {
            (Some(v), _) => Some((true, v)),
            (None, Some(v)) => Some((false, v)),
            _ => None,
        };
        let bound = |b: Option<(bool, RawValue)>| -> Result<Option<Bound>, String> {
            b.map(|(inclusive, v)| Ok(Bound { inclusive, value: compile_value(v)? })).transpose()
        };
        let (start, end) = (bound(start)?, bound(end)?);
        let expected = match (&start, &end) {
            (Some(s), _) => expected_of(s.value.as_ref()),
            (None, Some(e)) => expected_of(e.value.as_ref()),
            _ => Expected::None,
        };
        return Ok(Some((Op::Range(start, end), expected)));
    }
    if let Some(t) = raw.starts_with_rule {
        return Ok(Some((Op::StartsWith(t.value), Expected::StrictString)));
    }
    if let Some(t) = raw.ends_with_rule {
        return Ok(Some((Op::EndsWith(t.value), Expected::StrictString)));
    }
    if let Some(t) = raw.contains_rule {
        return Ok(Some((Op::Contains(t.value), Expected::StrictString)));
    }
    Ok(None)
}

/// A rule's value; `None` for a value with no kind set.
fn compile_value(v: RawValue) -> Result<Option<TypedValue<'static>>, String> {
    Ok(if let Some(b) = v.bool_value {
        Some(TypedValue::Bool(b))
    } else if let Some(n) = v.number_value {
        Some(TypedValue::Number(n))
    } else if let Some(s) = v.string_value {
        Some(TypedValue::Str(Cow::Owned(s)))
    } else if let Some(t) = v.timestamp_value {
        let ts = timestamp::rfc3339(&t).ok_or_else(|| format!("timestampValue {t:?} is not an RFC 3339 timestamp"))?;
        Some(TypedValue::Timestamp(ts))
    } else {
        v.version_value.map(|ver| TypedValue::Version(Cow::Owned(ver.version)))
    })
}

fn expected_of(v: Option<&TypedValue<'static>>) -> Expected {
    match v {
        Some(TypedValue::Bool(_)) => Expected::Bool,
        Some(TypedValue::Number(_)) => Expected::Number,
        Some(TypedValue::Str(_)) => Expected::String,
        Some(TypedValue::Timestamp(_)) => Expected::Timestamp,
        Some(TypedValue::Version(_)) => Expected::Version,
        Some(TypedValue::List(_)) | Some(TypedValue::Invalid) | None => Expected::None,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------------------

/// A resolve request: the case's `resolveRequest`, optionally with its `materializations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Flags to resolve (`flags/<name>`); empty resolves every flag of the client.
    #[serde(default)]
    pub flags: Vec<String>,
    /// The evaluation context.
    #[serde(default)]
    pub evaluation_context: Option<Map<String, Value>>,
    /// The client secret that names the client.
    pub client_secret: String,
    /// Whether the client applies at once (does not change what is resolved).
    #[serde(default)]
    pub apply: bool,
    /// Stored sticky assignments: unit → materialization → membership and rule → variant. When
    /// absent and a flag needs them, resolving fails and names the reads.
    #[serde(default)]
    pub materializations: Option<HashMap<String, HashMap<String, MaterializationEntry>>>,
}

/// What is stored for one unit in one materialization.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterializationEntry {
    /// Whether the unit is in the materialization.
    #[serde(default)]
    pub is_unit_in_materialization: bool,
    /// The variant stored for each rule.
    #[serde(default)]
    pub rule_to_variant: HashMap<String, String>,
}

impl Request {
    /// Parses a request, naming the JSON path of any error.
    pub fn parse(text: &str) -> Result<Request, CompatError> {
        parse_json(text)
    }
}

/// Why a flag resolved as it did (Confidence's `ResolveReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A rule matched and gave an assignment.
    Match,
    /// No rule matched.
    NoSegmentMatch,
    /// The targeting key has a type that cannot be a unit, or is longer than 100 characters.
    TargetingKeyError,
}

impl Reason {
    /// The name in Confidence's API (`RESOLVE_REASON_MATCH`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Match => "RESOLVE_REASON_MATCH",
            Reason::NoSegmentMatch => "RESOLVE_REASON_NO_SEGMENT_MATCH",
            Reason::TargetingKeyError => "RESOLVE_REASON_TARGETING_KEY_ERROR",
        }
    }
}

/// One resolved flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'s> {
    /// The flag name.
    pub flag: &'s str,
    /// Why.
    pub reason: Reason,
    /// The variant name, `""` for none.
    pub variant: &'s str,
    /// The variant's value; `{}` for a matched client default; `None` when nothing matched.
    pub value: Option<&'s Value>,
    /// Whether the client should apply (log an exposure for) the flag.
    pub should_apply: bool,
}

impl Resolved<'_> {
    /// The flag as JSON, in Confidence's shape.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("flag".into(), Value::String(self.flag.to_string()));
        m.insert("reason".into(), Value::String(self.reason.as_str().to_string()));
        m.insert("variant".into(), Value::String(self.variant.to_string()));
        m.insert("value".into(), self.value.cloned().unwrap_or(Value::Null));
        m.insert("shouldApply".into(), Value::Bool(self.should_apply));
        Value::Object(m)
    }
}

/// Renders a response (`{"resolvedFlags": [...]}`).
pub fn response_json(flags: &[Resolved<'_>]) -> Value {
    let mut m = Map::new();
    m.insert("resolvedFlags".into(), Value::Array(flags.iter().map(Resolved::to_json).collect()));
    Value::Object(m)
}

/// A request that Confidence would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No client has this secret.
    #[error("client secret not found")]
    UnknownClient,
    /// More than 5,000 flags would be resolved.
    #[error("max {MAX_FLAGS_PER_RESOLVE} flags allowed in a single resolve request, this request would return {0}")]
    TooManyFlags(usize),
    /// Resolving needs stored materializations the request does not carry.
    #[error("flags need materializations the request does not carry (add a \"materializations\" field): {0}")]
    MissingMaterializations(String),
    /// Confidence's resolver fails the whole request (an attribute that cannot be converted to the
    /// rule's type, a rule that names a missing variant, a bucket count of 0).
    #[error("{0}")]
    Internal(String),
}

enum FlagError {
    Unrecognized,
    MissingMaterializations,
    Internal(String),
}

type Tribool = Option<bool>;

struct Materializations<'r> {
    complete: Option<&'r HashMap<String, HashMap<String, MaterializationEntry>>>,
    to_read: Vec<(String, String, String)>,
}

impl Materializations<'_> {
    fn entry(&self, mat: &str, unit: &str) -> Option<&MaterializationEntry> {
        self.complete?.get(unit)?.get(mat).filter(|e| e.is_unit_in_materialization)
    }

    fn is_unit_in(&mut self, mat: &str, unit: &str) -> Tribool {
        if self.complete.is_some() {
            Some(self.entry(mat, unit).is_some())
        } else {
            self.record(unit, mat, "");
            None
        }
    }

    fn has_rule(&mut self, mat: &str, unit: &str, rule: &str) -> Tribool {
        if self.complete.is_some() {
            // A unit in a materialization with no rule recorded counts as a record with rule "".
            Some(self.entry(mat, unit).is_some_and(|e| {
                if e.rule_to_variant.is_empty() {
                    rule.is_empty()
                } else {
                    e.rule_to_variant.contains_key(rule)
                }
            }))
        } else {
            self.record(unit, mat, rule);
            None
        }
    }

    fn variant(&self, mat: &str, unit: &str, rule: &str) -> Option<&str> {
        self.entry(mat, unit)?.rule_to_variant.get(rule).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn record(&mut self, unit: &str, mat: &str, rule: &str) {
        if !self.to_read.iter().any(|(u, m, r)| u == unit && m == mat && r == rule) {
            self.to_read.push((unit.to_string(), mat.to_string(), rule.to_string()));
        }
    }
}

struct FlagResult {
    reason: Reason,
    variant: Option<usize>,
    matched: bool,
    fallthrough: bool,
}

/// The per-request evaluation: the context and a one-entry cache of the unit's segment bucket.
struct Eval<'a> {
    state: &'a State,
    ctx: &'a Map<String, Value>,
    bucket_cache: RefCell<Option<(String, u32)>>,
}

fn lookup<'v>(ctx: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    // Small objects are scanned: cheaper than hashing the key.
    fn get<'v>(m: &'v Map<String, Value>, k: &str) -> Option<&'v Value> {
        if m.len() <= 12 {
            m.iter().find(|(key, _)| *key == k).map(|(_, v)| v)
        } else {
            m.get(k)
        }
    }
    let mut m = ctx;
    let (last, init) = path.split_last()?;
    for p in init {
        m = get(m, p)?.as_object()?;
    }
    get(m, last)
}

impl State {
    /// Resolves a request: the flags of the request's client (all of them, or those named), each
    /// with its reason, variant, value and whether to apply it.
    pub fn resolve<'s>(&'s self, req: &Request) -> Result<Vec<Resolved<'s>>, ResolveError> {
        let empty = Map::new();
        let ctx = req.evaluation_context.as_ref().unwrap_or(&empty);
        self.resolve_context(&req.client_secret, &req.flags, ctx, req.materializations.as_ref())
    }

    /// [`State::resolve`] with the parts of a request given separately.
    pub fn resolve_context<'s>(
        &'s self,
        client_secret: &str,
        flag_names: &[String],
        ctx: &Map<String, Value>,
        materializations: Option<&HashMap<String, HashMap<String, MaterializationEntry>>>,
    ) -> Result<Vec<Resolved<'s>>, ResolveError> {
        let client = self.clients.get(client_secret).ok_or(ResolveError::UnknownClient)?;
        let merged;
        let ctx = if client.managed.is_empty() {
            ctx
        } else {
            merged = managed::merge(&client.managed, ctx);
            &merged
        };
        let wanted = |f: &&Flag| flag_names.is_empty() || flag_names.contains(&f.name);
        let selected = || client.flags.iter().map(|&i| &self.flags[i]).filter(wanted);
        let count = if flag_names.is_empty() { client.flags.len() } else { selected().count() };
        if count > MAX_FLAGS_PER_RESOLVE {
            return Err(ResolveError::TooManyFlags(count));
        }
        let eval = Eval { state: self, ctx, bucket_cache: RefCell::new(None) };
        let mut mats = Materializations { complete: materializations, to_read: Vec::new() };
        let mut out = Vec::with_capacity(count);
        for flag in selected() {
            match eval.resolve_flag(flag, client, &mut mats) {
                Ok(r) => out.push(Resolved {
                    flag: &flag.name,
                    reason: r.reason,
                    variant: r.variant.map_or("", |i| flag.variants[i].0.as_str()),
                    value: if r.matched { Some(r.variant.map_or(&self.empty, |i| &flag.variants[i].1)) } else { None },
                    should_apply: r.reason == Reason::Match || r.fallthrough,
                }),
                Err(FlagError::MissingMaterializations) => {}
                Err(FlagError::Unrecognized) => out.push(Resolved {
                    flag: &flag.name,
                    reason: Reason::NoSegmentMatch,
                    variant: "",
                    value: None,
                    should_apply: false,
                }),
                Err(FlagError::Internal(m)) => return Err(ResolveError::Internal(format!("{}: {m}", flag.name))),
            }
        }
        if !mats.to_read.is_empty() {
            let reads: Vec<String> = mats
                .to_read
                .iter()
                .map(
                    |(u, m, r)| {
                        if r.is_empty() {
                            format!("{m} for unit {u}")
                        } else {
                            format!("{m} rule {r} for unit {u}")
                        }
                    },
                )
                .collect();
            return Err(ResolveError::MissingMaterializations(reads.join(", ")));
        }
        Ok(out)
    }
}

enum Unit<'a> {
    Some(Cow<'a, str>),
    None,
    Error,
}

impl<'a> Eval<'a> {
    fn targeting_key(&self, rule: &Rule) -> Unit<'a> {
        let v = lookup(self.ctx, &rule.selector);
        let unit = match v {
            None | Some(Value::Null) => return Unit::None,
            Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f.fract() == 0.0 => Cow::Owned(format!("{f:.0}")),
                _ => return Unit::Error,
            },
            Some(_) => return Unit::Error,
        };
        if unit.len() > 100 {
            return Unit::Error;
        }
        Unit::Some(unit)
    }

    fn resolve_flag(
        &self,
        flag: &Flag,
        client: &Client,
        mats: &mut Materializations<'_>,
    ) -> Result<FlagResult, FlagError> {
        let mut result =
            FlagResult { reason: Reason::NoSegmentMatch, variant: None, matched: false, fallthrough: false };
        let mut missing = false;
        for rule in &flag.rules {
            if !rule.enabled {
                continue;
            }
            if !(rule.environments.is_empty() || rule.environments.iter().any(|e| client.environments.contains(e))) {
                continue;
            }
            let Some(seg) = rule.segment else { continue };
            let unit: Option<Cow<'a, str>> = match self.targeting_key(rule) {
                Unit::Some(u) => Some(u),
                Unit::None => {
                    if rule.blank_selector {
                        None
                    } else {
                        continue;
                    }
                }
                Unit::Error => {
                    let full = rule.spec.as_ref().is_some_and(|s| s.one_full_variant);
                    if rule.blank_selector && full {
                        None
                    } else {
                        return Ok(FlagResult {
                            reason: Reason::TargetingKeyError,
                            variant: None,
                            matched: false,
                            fallthrough: result.fallthrough,
                        });
                    }
                }
            };
            let Some(spec) = &rule.spec else { continue };

            let mut matched: Tribool = Some(false);
            if let Some(m) = &rule.materialization {
                if !m.read.is_empty() {
                    let Some(unit_str) = unit.as_deref() else { continue };
                    match mats.has_rule(&m.read, unit_str, &rule.name) {
                        Some(false) => {
                            matched = Some(false);
                            if m.mode.materialization_must_match {
                                continue;
                            }
                        }
                        Some(true) => {
                            if m.mode.segment_targeting_can_be_ignored {
                                matched = Some(true);
                            } else {
                                matched = match self.targeting_match(seg, unit.as_deref(), &mut Vec::new(), mats) {
                                    Ok(t) => t,
                                    Err(FlagError::Unrecognized) => continue,
                                    Err(e) => return Err(e),
                                };
                            }
                            if matched == Some(true) {
                                if let Some(variant) = mats.variant(&m.read, unit_str, &rule.name) {
                                    if let Some(idx) = self.select_sticky(rule, spec, variant, unit_str)? {
                                        return Ok(FlagResult {
                                            reason: Reason::Match,
                                            variant: Some(idx),
                                            matched: true,
                                            fallthrough: result.fallthrough,
                                        });
                                    }
                                }
                            }
                        }
                        None => missing = true,
                    }
                }
            }

            if matched != Some(true) {
                matched = match self.segment_match(seg, unit.as_deref(), &mut Vec::new(), mats) {
                    Ok(t) => t,
                    Err(FlagError::Unrecognized) => continue,
                    Err(e) => return Err(e),
                };
            }
            match matched {
                Some(true) => {
                    if missing {
                        continue;
                    }
                }
                Some(false) => continue,
                None => {
                    missing = true;
                    continue;
                }
            }

            let assignment = if spec.one_full_variant {
                spec.assignments.first()
            } else if let Some(u) = unit.as_deref() {
                let Some(salt) = rule.variant_salt.as_deref() else {
                    return Err(FlagError::Internal(format!("{}: segment name without an id", rule.name)));
                };
                let Some(b) = variant_bucket(salt, u, spec.bucket_count) else {
                    return Err(FlagError::Internal(format!("{}: bucket count 0", rule.name)));
                };
                spec.assignments.iter().find(|a| a.ranges.iter().any(|(lo, hi)| *lo <= b && b < *hi))
            } else {
                continue;
            };
            let Some(a) = assignment else { continue };
            match &a.kind {
                Kind::None => {}
                Kind::Fallthrough => result.fallthrough = true,
                Kind::ClientDefault => {
                    return Ok(FlagResult {
                        reason: Reason::Match,
                        variant: None,
                        matched: true,
                        fallthrough: result.fallthrough,
                    })
                }
                Kind::Variant(name, idx) => {
                    let Some(idx) = idx else {
                        return Err(FlagError::Internal(format!("{}: no variant {name}", rule.name)));
                    };
                    return Ok(FlagResult {
                        reason: Reason::Match,
                        variant: Some(*idx),
                        matched: true,
                        fallthrough: result.fallthrough,
                    });
                }
            }
        }
        if missing {
            return Err(FlagError::MissingMaterializations);
        }
        Ok(result)
    }

    /// The assignment for a stored variant: the only one with that variant, or among several the
    /// one whose range holds the unit's variant bucket.
    fn select_sticky(&self, rule: &Rule, spec: &Spec, variant: &str, unit: &str) -> Result<Option<usize>, FlagError> {
        let matching: Vec<&Assignment> =
            spec.assignments.iter().filter(|a| matches!(&a.kind, Kind::Variant(n, _) if n == variant)).collect();
        let chosen = if matching.len() <= 1 {
            matching.first().copied()
        } else {
            match rule.variant_salt.as_deref() {
                Some(salt) => variant_bucket(salt, unit, spec.bucket_count)
                    .and_then(|b| matching.into_iter().find(|a| a.ranges.iter().any(|(lo, hi)| *lo <= b && b < *hi))),
                None => None,
            }
        };
        match chosen.map(|a| &a.kind) {
            None => Ok(None),
            Some(Kind::Variant(_, Some(i))) => Ok(Some(*i)),
            Some(_) => Err(FlagError::Internal(format!("{}: stored variant {variant} is not in the flag", rule.name))),
        }
    }

    fn segment_bucket(&self, unit: &str) -> u32 {
        let mut cache = self.bucket_cache.borrow_mut();
        if let Some((u, b)) = cache.as_ref() {
            if u == unit {
                return *b;
            }
        }
        let b = hash::bucket(&self.state.account_salt, unit, BUCKETS);
        *cache = Some((unit.to_string(), b));
        b
    }

    fn segment_match(
        &self,
        seg: usize,
        unit: Option<&str>,
        visited: &mut Vec<usize>,
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        if visited.contains(&seg) {
            return Ok(Some(false));
        }
        visited.push(seg);
        let t = self.targeting_match(seg, unit, visited, mats)?;
        if t == Some(false) {
            return Ok(Some(false));
        }
        let segment = &self.state.segments[seg];
        let Some((set, full)) = &segment.bitset else { return Ok(t) };
        match unit {
            Some(u) => Ok(if set.contains(self.segment_bucket(u)) { t } else { Some(false) }),
            None => Ok(if *full { t } else { Some(false) }),
        }
    }

    fn targeting_match(
        &self,
        seg: usize,
        unit: Option<&str>,
        visited: &mut Vec<usize>,
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        let segment = &self.state.segments[seg];
        let Some(t) = &segment.targeting else { return Ok(Some(true)) };
        let Some(expr) = &t.expression else { return Ok(Some(true)) };
        self.expression(t, expr, unit, visited, mats)
    }

    fn expression(
        &self,
        t: &Targeting,
        e: &Expr,
        unit: Option<&str>,
        visited: &mut Vec<usize>,
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        match e {
            Expr::Empty => Ok(Some(false)),
            Expr::Ref(None) => Ok(Some(false)),
            Expr::Ref(Some(i)) => self.criterion(&t.criteria[*i], unit, visited, mats),
            Expr::Not(inner) => Ok(self.expression(t, inner, unit, visited, mats)?.map(|b| !b)),
            Expr::And(ops) => {
                let mut unknown = false;
                for op in ops {
                    match self.expression(t, op, unit, visited, mats)? {
                        Some(false) => return Ok(Some(false)),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown { None } else { Some(true) })
            }
            Expr::Or(ops) => {
                let mut unknown = false;
                for op in ops {
                    match self.expression(t, op, unit, visited, mats)? {
                        Some(true) => return Ok(Some(true)),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown { None } else { Some(false) })
            }
        }
    }

    fn criterion(
        &self,
        c: &Criterion,
        unit: Option<&str>,
        visited: &[usize],
        mats: &mut Materializations<'_>,
    ) -> Result<Tribool, FlagError> {
        match c {
            Criterion::Unset => Ok(Some(false)),
            Criterion::Attribute(a) => Ok(Some(self.attribute(a)?)),
            Criterion::Segment(None) => Ok(Some(false)),
            Criterion::Segment(Some(s)) => self.segment_match(*s, unit, &mut visited.to_vec(), mats),
            Criterion::Materialized(name) => {
                let Some(u) = unit else { return Ok(Some(false)) };
                if let Some(bf) = self.state.blooms.get(name) {
                    return Ok(Some(bf.might_contain(u)));
                }
                Ok(mats.is_unit_in(name, u))
            }
        }
    }

    fn attribute(&self, a: &Attribute) -> Result<bool, FlagError> {
        let raw = lookup(self.ctx, &a.path);
        let missing = matches!(raw, None | Some(Value::Null));
        let converted = match &a.rule {
            // Null equality looks at the context before any conversion.
            AttrRule::Single(Op::NullEq) => {
                return Ok(match raw {
                    Some(Value::Array(items)) => items.iter().any(Value::is_null),
                    _ => missing,
                });
            }
            // `any`/`all` over a missing or null attribute see an empty list.
            AttrRule::Any(_) | AttrRule::All(_) if missing => TypedValue::List(Vec::new()),
            _ => convert(raw, a.expected).map_err(FlagError::Internal)?,
        };
        let values: &[TypedValue<'_>] = match &converted {
            TypedValue::List(l) => l,
            other => std::slice::from_ref(other),
        };
        match &a.rule {
            AttrRule::Unrecognized => Err(FlagError::Unrecognized),
            AttrRule::Single(op) => match op {
                Op::Unrecognized => Err(FlagError::Unrecognized),
                Op::Eq(v) => Ok(values.contains(v)),
                Op::Set(set) => Ok(values.iter().any(|v| set.contains(v))),
                _ => Ok(values.iter().any(|v| inner(op, v).unwrap_or(false))),
            },
            AttrRule::Any(None) | AttrRule::All(None) => Err(FlagError::Unrecognized),
            AttrRule::Any(Some(op)) => {
                for v in values {
                    if inner(op, v)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            AttrRule::All(Some(op)) => {
                for v in values {
                    if !inner(op, v)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }
}

/// A unit's variant bucket, as the resolver computes it: `None` for a bucket count of 0 (the
/// resolver fails). The count is a proto `int32` the resolver widens with `as u64`, so a negative
/// count is a huge one: the bucket is then `h1 >> 4` itself, cut back to an `i32`.
fn variant_bucket(salt: &str, unit: &str, bucket_count: i64) -> Option<i64> {
    match u32::try_from(bucket_count) {
        Ok(0) => None,
        Ok(n) => Some(i64::from(hash::bucket(salt, unit, n))),
        Err(_) => {
            let (h1, _) = hash::murmur3_x64_128(format!("{salt}|{unit}").as_bytes(), 0);
            Some(i64::from((h1 >> 4) as u32 as i32))
        }
    }
}

fn inner(op: &Op, v: &TypedValue<'_>) -> Result<bool, FlagError> {
    match op {
        Op::Unrecognized => Err(FlagError::Unrecognized),
        Op::Eq(e) => Ok(e == v),
        // Conversions never give the kindless value a top-level null equality compares with.
        Op::NullEq => Ok(false),
        Op::Set(set) => Ok(set.contains(v)),
        Op::Range(start, end) => Ok(in_range(start.as_ref(), end.as_ref(), v)),
        Op::StartsWith(p) => Ok(matches!(v, TypedValue::Str(s) if s.starts_with(p.as_str()))),
        Op::EndsWith(p) => Ok(matches!(v, TypedValue::Str(s) if s.ends_with(p.as_str()))),
        Op::Contains(p) => Ok(matches!(v, TypedValue::Str(s) if s.contains(p.as_str()))),
    }
}

fn in_range(start: Option<&Bound>, end: Option<&Bound>, v: &TypedValue<'_>) -> bool {
    if start.is_none() && end.is_none() {
        // A range without bounds matches nothing.
        return false;
    }
    let after = match start {
        None => true,
        Some(b) => b.value.as_ref().is_some_and(|s| if b.inclusive { lte(s, v) } else { lt(s, v) }),
    };
    let before = match end {
        None => true,
        Some(b) => b.value.as_ref().is_some_and(|e| if b.inclusive { lte(v, e) } else { lt(v, e) }),
    };
    after && before
}

fn lt(a: &TypedValue<'_>, b: &TypedValue<'_>) -> bool {
    match (a, b) {
        (TypedValue::Number(a), TypedValue::Number(b)) => a < b,
        (TypedValue::Str(a), TypedValue::Str(b)) => a < b,
        (TypedValue::Timestamp(a), TypedValue::Timestamp(b)) => a < b,
        (TypedValue::Version(a), TypedValue::Version(b)) => version::key(a) < version::key(b),
        _ => false,
    }
}

fn lte(a: &TypedValue<'_>, b: &TypedValue<'_>) -> bool {
    match (a, b) {
        (TypedValue::Number(a), TypedValue::Number(b)) => a <= b,
        (TypedValue::Str(a), TypedValue::Str(b)) => a <= b,
        (TypedValue::Timestamp(a), TypedValue::Timestamp(b)) => a <= b,
        (TypedValue::Version(a), TypedValue::Version(b)) => version::key(a) <= version::key(b),
        _ => false,
    }
}

const NULL_TEXT: TypedValue<'static> = TypedValue::Str(Cow::Borrowed("null"));

/// Converts a context value to the rule's type, as Confidence's `convert_to_targeting_value`
/// does: missing, null, objects and values of another type read as the string `"null"` (so a
/// string rule's `"null"` matches them), numbers print as Rust prints an `f64` under a string
/// rule, text parses into the rule's type (a number that does not parse fails the request, a
/// timestamp that does not parse reads as `"null"`), lists convert element-wise. The string
/// operators convert strictly: only strings are strings ([`strict`]).
fn convert<'v>(v: Option<&'v Value>, expected: Expected) -> Result<TypedValue<'v>, String> {
    if expected == Expected::StrictString {
        return Ok(strict(v));
    }
    Ok(match v {
        None | Some(Value::Null) | Some(Value::Object(_)) => NULL_TEXT,
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            match expected {
                Expected::Number => TypedValue::Number(f),
                Expected::String => TypedValue::Str(Cow::Owned(f.to_string())),
                Expected::Timestamp => timestamp::from_number(f).map_or(NULL_TEXT, TypedValue::Timestamp),
                _ => NULL_TEXT,
            }
        }
        Some(Value::String(s)) => match expected {
            Expected::Bool => TypedValue::Bool(s.parse().unwrap_or(s == "TRUE")),
            Expected::Number => {
                TypedValue::Number(s.parse().map_err(|_| format!("cannot convert {s:?} to a number for targeting"))?)
            }
            Expected::String | Expected::StrictString => TypedValue::Str(Cow::Borrowed(s)),
            Expected::Timestamp => timestamp::context(s).map_or(NULL_TEXT, TypedValue::Timestamp),
            Expected::Version => TypedValue::Version(Cow::Borrowed(s)),
            Expected::None => NULL_TEXT,
        },
        Some(Value::Bool(b)) => match expected {
            Expected::Bool => TypedValue::Bool(*b),
            _ => NULL_TEXT,
        },
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(convert(Some(item), expected)?);
            }
            TypedValue::List(out)
        }
    })
}

/// A context value under a string operator (`startsWith`, `endsWith`, `contains`, also inside
/// `any`/`all`): strings stay strings, lists convert element-wise, and anything else (missing,
/// null, a number, a bool, an object) is [`TypedValue::Invalid`], which no operator matches.
fn strict(v: Option<&Value>) -> TypedValue<'_> {
    match v {
        Some(Value::String(s)) => TypedValue::Str(Cow::Borrowed(s)),
        Some(Value::Array(items)) => TypedValue::List(items.iter().map(|i| strict(Some(i))).collect()),
        _ => TypedValue::Invalid,
    }
}
