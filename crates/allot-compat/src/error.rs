//! The one error type of the adapters: what is wrong and where.

/// A configuration or request that cannot be used, with the place it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// The input is not valid JSON of the expected shape, or a value in it is unusable.
    #[error("{path}: {message}")]
    Invalid {
        /// The JSON path of the offending value (`flags[2].segments[0]`), `.` for the whole document.
        path: String,
        /// What is wrong there.
        message: String,
    },
}

impl CompatError {
    /// An error at `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        CompatError::Invalid { path: if path.is_empty() { ".".to_string() } else { path }, message: message.into() }
    }

    /// The path of the error.
    pub fn path(&self) -> &str {
        match self {
            CompatError::Invalid { path, .. } => path,
        }
    }

    pub(crate) fn from_path<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> Self {
        // serde_path_to_error writes `?` for a place it could not name (inside a truncated value).
        let path = e.path().to_string();
        let path = path.trim_end_matches(".?").trim_end_matches('?');
        CompatError::invalid(path, e.inner().to_string())
    }
}
