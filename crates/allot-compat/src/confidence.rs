//! Spotify Confidence: resolve flags from a resolver state, exactly as Confidence's resolver does.
//!
//! Two state formats are read: the portable specification form (`account`, maps of `flags`,
//! `segments`, `bitsets` as `"ALL"` or lists of set buckets, `bloomFilters`, `clients` keyed by
//! secret) and the proto3-JSON form of Confidence's `ResolverState` message that the Confidence
//! service publishes to local resolvers (`flags`, `segmentsNoBitsets`, gzipped `bitsets`,
//! `clients`, `clientCredentials`; the account id is given separately).
//!
//! What reuses allot's core: a segment's allocation is a [`BucketSet`](allot_core::bucketset::BucketSet) over 1,000,000 buckets and
//! a unit's bucket is [`allot_core::hash::bucket`]`("MegaSalt-<account>", unit, 1_000_000)`, the very
//! function allot allocates with; a rule's variant bucket is the same function with the segment id
//! as salt. The targeting, sticky assignments ("materializations") and the reasons are Confidence's
//! own and live here, because their coercions (a missing attribute reads as the string `"null"`,
//! scalars are wrapped into lists, rules without a recognised operator skip the rule) are not
//! semantics allot's users should get by default.
//!
//! Laid out along the stages of a resolve: `raw` (the parsed forms of both formats, as serde reads
//! them), the compiled forms here (`State` and what it holds), `compile` (raw → compiled, every
//! error with its JSON path), `bits` (a segment's allocation and bloom-filter segments), `request`
//! (requests, resolved flags, errors), `resolve` (a request against the compiled state, with
//! materializations), `matching` (one context value against a rule: conversions, ranges,
//! comparisons), and `import` (a client's flags into a native configuration); `timestamp`,
//! `version` and `managed` are Confidence's value types and managed context.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use timestamp::Ts;

mod bits;
mod compile;
mod import;
mod managed;
mod matching;
mod raw;
mod request;
mod resolve;
mod timestamp;
mod version;

use bits::{Bits, Bloom};
use compile::expected_of;
pub use import::{answer, Answer, ImportOptions, Imported};
use raw::RawMatMode;
pub use request::{response_json, MaterializationEntry, Reason, Request, ResolveError, Resolved};

/// The bucket space of segment allocations.
pub const BUCKETS: u32 = 1_000_000;
/// The resolver's batch limit (`MAX_NO_OF_FLAGS_TO_BATCH_RESOLVE`).
const MAX_FLAGS_PER_RESOLVE: usize = 5000;
const TARGETING_KEY: &str = "targeting_key";

// The compiled forms: what the modules below read and build.

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
