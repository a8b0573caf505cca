//! Helpers for tests, shared by every crate's test suite. Not part of the public interface.

/// Replaces every `from` in `text` with `to`, for tests that edit a configuration, a state or a
/// request body before using it.
///
/// Panics when `from` is not in `text`: an edit that does not apply must fail the test, or the
/// test would silently run on the unedited input and could pass vacuously.
///
/// ```
/// let yaml = allot_core::testing::edit("share: 30%", "30%", "40%");
/// assert_eq!(yaml, "share: 40%");
/// ```
#[track_caller]
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the edit `{from}` → `{to}` does not apply: `{from}` is not in:\n{text}");
    text.replace(from, to)
}

#[cfg(test)]
mod tests {
    use super::edit;

    #[test]
    #[should_panic(expected = "does not apply")]
    fn an_edit_that_does_not_apply_panics() {
        edit("share: 30%", "40%", "50%");
    }
}
