//! Spotify's own resolver (`confidence_resolver` 0.26.1) as an oracle: the same state, context and
//! materializations given to it and to allot, the answers reduced to what both print (reason,
//! variant, value, `shouldApply`, or the kind of refusal) so that they can be compared.

use allot_compat::confidence::{Request, ResolveError, State};
use base64::Engine as _;
use confidence_resolver::proto::confidence::flags::admin::v1::ResolverState as ResolverStatePb;
use confidence_resolver::proto::confidence::flags::resolver::v1 as pb;
use confidence_resolver::proto::google::Struct;
use confidence_resolver::{Client, FlagToApply, Host, ResolvedValue, ResolverState};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write as _;

struct NoLogs;

impl Host for NoLogs {
    fn log_resolve(_: &str, _: &Struct, _: &[ResolvedValue<'_>], _: &Client) {}
    fn log_assign(_: &str, _: &[FlagToApply<'_>], _: &Client, _: &Option<pb::Sdk>) {}
}

/// What one resolve gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Refused(Refusal),
    /// Flag name → what it resolved to.
    Flags(BTreeMap<String, Resolved>),
}

/// Why a request was refused (the message texts differ; the kinds must not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The state itself cannot be read.
    State,
    /// No client has the secret.
    Client,
    /// Resolving needs materializations the request does not carry (Confidence suspends).
    Suspended,
    /// Any other failure of the whole request.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub reason: String,
    pub variant: String,
    pub value: Value,
    pub should_apply: bool,
}

/// Numbers as the resolver prints them: every number is a double (`1` and `1.0` are equal).
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// A state loaded by the resolver, or why it cannot be.
pub fn load_native(state_json: &str, account: &str) -> Result<ResolverState, Refusal> {
    let pb_state = serde_json::from_str::<ResolverStatePb>(state_json).map_err(|_| Refusal::State)?;
    ResolverState::from_proto(pb_state, account, None).map_err(|_| Refusal::State)
}

/// Resolves a request (`clientSecret`, `flags`, `evaluationContext`, `apply` and optional
/// `materializations`, `unit → materialization → {isUnitInMaterialization, ruleToVariant}`, as
/// allot reads them) with the resolver. With no `materializations` the resolver may suspend to
/// ask for them; with them, they are the complete set.
pub fn resolve_native(state: &ResolverState, request: &Value) -> Outcome {
    let secret = request["clientSecret"].as_str().unwrap_or_default();
    let ctx = request.get("evaluationContext").filter(|c| !c.is_null()).cloned().unwrap_or_else(|| json!({}));
    let key = bytes::Bytes::from_static(&[0; 16]);
    let Ok(resolver) = state.get_resolver_with_json_context::<NoLogs>(secret, &ctx.to_string(), &key) else {
        return Outcome::Refused(Refusal::Client);
    };
    let flags: Vec<String> = request["flags"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let req = pb::ResolveFlagsRequest {
        flags,
        evaluation_context: Some(serde_json::from_value(ctx).unwrap()),
        client_secret: secret.to_string(),
        apply: request["apply"].as_bool().unwrap_or(false),
        sdk: None,
    };
    let process = match request.get("materializations").and_then(Value::as_object) {
        Some(m) => pb::ResolveProcessRequest::static_materializations(req, records(m)),
        None => pb::ResolveProcessRequest::deferred_materializations(req),
    };
    let response = match resolver.resolve_flags(process) {
        Ok(r) => r,
        Err(_) => return Outcome::Refused(Refusal::Error),
    };
    match response.result {
        Some(pb::resolve_process_response::Result::Resolved(r)) => {
            let mut out = BTreeMap::new();
            for f in r.response.map(|r| r.resolved_flags).unwrap_or_default() {
                let reason = pb::ResolveReason::try_from(f.reason).map_or("?", |r| r.as_str_name()).to_string();
                let value = f.value.map_or(Value::Null, |s| serde_json::to_value(s).unwrap());
                out.insert(
                    f.flag,
                    Resolved { reason, variant: f.variant, value: normalize(value), should_apply: f.should_apply },
                );
            }
            Outcome::Flags(out)
        }
        Some(pb::resolve_process_response::Result::Suspended(_)) => Outcome::Refused(Refusal::Suspended),
        None => Outcome::Refused(Refusal::Error),
    }
}

/// Materializations as the resolver's own specification runner turns them into records.
fn records(m: &Map<String, Value>) -> Vec<pb::MaterializationRecord> {
    let mut out = Vec::new();
    for (unit, mats) in m {
        for (mat, entry) in mats.as_object().into_iter().flatten() {
            if !entry["isUnitInMaterialization"].as_bool().unwrap_or(false) {
                continue;
            }
            let rules = entry["ruleToVariant"].as_object().cloned().unwrap_or_default();
            if rules.is_empty() {
                out.push(pb::MaterializationRecord {
                    unit: unit.clone(),
                    materialization: mat.clone(),
                    rule: String::new(),
                    variant: String::new(),
                });
            }
            for (rule, variant) in rules {
                out.push(pb::MaterializationRecord {
                    unit: unit.clone(),
                    materialization: mat.clone(),
                    rule,
                    variant: variant.as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    out
}

/// The same request resolved by allot.
pub fn resolve_allot(state: &State, request: &Value) -> Outcome {
    let req = match Request::parse(&request.to_string()) {
        Ok(r) => r,
        Err(e) => panic!("allot cannot read the request {request}: {e}"),
    };
    match state.resolve(&req) {
        Ok(flags) => {
            let mut out = BTreeMap::new();
            for f in &flags {
                let j = f.to_json();
                let resolved = Resolved {
                    reason: f.reason.as_str().to_string(),
                    variant: f.variant.to_string(),
                    value: normalize(j["value"].clone()),
                    should_apply: f.should_apply,
                };
                // A flag answered twice cannot agree with the resolver, which answers once.
                if out.insert(f.flag.to_string(), resolved).is_some() {
                    out.insert(
                        f.flag.to_string(),
                        Resolved {
                            reason: "resolved twice".into(),
                            variant: String::new(),
                            value: Value::Null,
                            should_apply: false,
                        },
                    );
                }
            }
            Outcome::Flags(out)
        }
        Err(ResolveError::UnknownClient) => Outcome::Refused(Refusal::Client),
        Err(ResolveError::MissingMaterializations(_)) => Outcome::Refused(Refusal::Suspended),
        Err(_) => Outcome::Refused(Refusal::Error),
    }
}

/// The portable specification form (`spec/confidence/state.json`) in the proto3-JSON form the
/// resolver reads, with the account id.
pub fn spec_state_as_proto(spec: &Value) -> (String, String) {
    let account = spec["account"]["name"].as_str().unwrap().split('/').nth(1).unwrap().to_string();
    let values = |k: &str| spec[k].as_object().map(|m| m.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let mut bitsets = Vec::new();
    for (segment, bits) in spec["bitsets"].as_object().into_iter().flatten() {
        let mut bytes = vec![0u8; 125_000];
        match bits {
            Value::String(s) if s == "ALL" => bytes.fill(0xff),
            Value::Array(items) => {
                for b in items {
                    let b = b.as_u64().unwrap() as usize;
                    bytes[b / 8] |= 1 << (b % 8);
                }
            }
            other => panic!("bitset {other}"),
        }
        bitsets.push(json!({"segment": segment, "gzippedBitset": gzip_base64(&bytes)}));
    }
    let blooms: Vec<Value> = spec["bloomFilters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(segment, b)| {
            let mut b = b.clone();
            b["materializedSegment"] = json!(segment);
            b
        })
        .collect();
    let mut clients = Vec::new();
    let mut credentials = Vec::new();
    for (secret, c) in spec["clients"].as_object().into_iter().flatten() {
        clients.push(c["client"].clone());
        let mut cred = c["clientCredential"].clone();
        cred["clientSecret"] = json!({ "secret": secret });
        credentials.push(cred);
    }
    let state = json!({
        "flags": values("flags"),
        "segmentsNoBitsets": values("segments"),
        "bitsets": bitsets,
        "bloomFilters": blooms,
        "clients": clients,
        "clientCredentials": credentials,
    });
    (state.to_string(), account)
}

pub fn gzip_base64(bytes: &[u8]) -> String {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())
}
