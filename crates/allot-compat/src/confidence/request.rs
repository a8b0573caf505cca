//! Requests and responses: what a client sends ([`Request`]) and what it gets back
//! ([`Resolved`], [`response_json`], [`ResolveError`]).

use super::MAX_FLAGS_PER_RESOLVE;
use crate::{parse_json, CompatError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

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
