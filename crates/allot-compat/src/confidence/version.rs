//! Semantic versions as Confidence compares them (the resolver's `parse_version`, after
//! `SemanticVersion.java`): not SemVer. `1.0` and `1.2.3.4` are versions, leading zeros are
//! fine, a `-pre` suffix is dropped, a 3-part version whose patch has more than 3 digits is
//! `major.minor` with that number as its tag (`1.0.1000` = `1.0.0.1000`), and anything else
//! (`1`, `1.2.3+build`, `v1.2`) compares as `0.0.0.0`.

/// `(major, minor, patch, tag)`; `None` for text that is not a version.
pub(super) fn parse(version: &str) -> Option<(u64, u64, u64, u64)> {
    if version.is_empty() {
        return None;
    }
    let version = version.split('-').next().unwrap_or(version);
    let parts: Vec<&str> = version.split('.').collect();
    if parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 10) {
        return None;
    }
    let n = |s: &str| s.parse::<u64>().ok();
    match parts.as_slice() {
        [major, minor] => Some((n(major)?, n(minor)?, 0, 0)),
        [major, minor, third] if third.len() > 3 => Some((n(major)?, n(minor)?, 0, n(third)?)),
        [major, minor, patch] => Some((n(major)?, n(minor)?, n(patch)?, 0)),
        [major, minor, patch, tag] => Some((n(major)?, n(minor)?, n(patch)?, n(tag)?)),
        _ => None,
    }
}

/// The order of two versions; text that is not a version counts as `0.0.0.0`.
pub(super) fn key(version: &str) -> (u64, u64, u64, u64) {
    parse(version).unwrap_or((0, 0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_versions() {
        assert_eq!(parse("1.0"), Some((1, 0, 0, 0)));
        assert_eq!(parse("01.002.3"), Some((1, 2, 3, 0)));
        assert_eq!(parse("1.2.3.4"), Some((1, 2, 3, 4)));
        assert_eq!(parse("1.0.1000"), Some((1, 0, 0, 1000)));
        assert_eq!(parse("1.2.3-beta.1"), Some((1, 2, 3, 0)));
        assert_eq!(parse("1.2.3+build"), None);
        assert_eq!(parse("1"), None);
        assert_eq!(parse("1.2.3.4.5"), None);
        assert_eq!(parse("12345678901.0"), None);
        assert_eq!(parse(""), None);
        assert!(key("1.10") > key("1.9.999"));
    }
}
