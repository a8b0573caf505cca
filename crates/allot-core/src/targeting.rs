//! stub
#![allow(missing_docs)]
use crate::error::FieldError;
use indexmap::IndexMap;
#[derive(Debug, Clone, PartialEq)]
pub struct Targeting(serde_json::Value);
impl Targeting {
    pub fn parse(value: &serde_json::Value, _path: &str) -> Result<Targeting, Vec<FieldError>> {
        Ok(Targeting(value.clone()))
    }
    pub fn segment_refs(&self) -> Vec<&str> {
        vec![]
    }
    pub fn is_always(&self) -> bool {
        false
    }
    pub fn to_json(&self) -> serde_json::Value {
        self.0.clone()
    }
}
pub fn check_segments(_s: &IndexMap<String, Targeting>) -> Vec<FieldError> {
    vec![]
}
#[derive(Debug, Clone)]
pub struct Compiled;
impl Compiled {
    pub fn compile(_t: &Targeting, _s: &IndexMap<String, Targeting>) -> Compiled {
        Compiled
    }
    pub fn matches(&self, _c: &crate::Context) -> bool {
        true
    }
}
pub fn provably_disjoint(_a: &Targeting, _b: &Targeting, _s: &IndexMap<String, Targeting>) -> bool {
    false
}
