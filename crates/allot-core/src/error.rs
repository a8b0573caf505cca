//! Errors of validation, compilation and change control: each names the field (as a path such as
//! `experiments.ranking-v2.share`) and says why.

use std::fmt;

/// One problem with an input, located by a dotted path to the field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path to the field, e.g. `experiments.ranking-v2.targeting.all[0].in`.
    pub path: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one input, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(transparent)]
pub struct Errors(pub Vec<FieldError>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<FieldError> for Errors {
    fn from(e: FieldError) -> Self {
        Errors(vec![e])
    }
}

/// Joins a path and a map key, quoting nothing: keys in allot are identifiers.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a path and a list index: `path[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
