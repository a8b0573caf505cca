//! "Now", the one clock of the service and the CLI: every time the service records (audit
//! entries, key creation and revocation, exposures, state imports) comes from [`now`], and every
//! time the CLI records (`allot apply`, state files: `allot_cli::files::now`) from
//! [`now_seconds`]. Both format through one function.

use time::OffsetDateTime;

/// The current time, RFC 3339 (UTC), to the nanosecond: what the service records. (Keys are
/// listed in creation order: two keys created within one second must not tie.)
pub fn now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// The current time, RFC 3339 (UTC), in whole seconds: what the CLI records in state files.
pub fn now_seconds() -> String {
    let t = OffsetDateTime::now_utc();
    rfc3339(t.replace_nanosecond(0).unwrap_or(t))
}

/// The current time in whole seconds since the Unix epoch (what OFREP's change events carry).
pub(crate) fn now_unix() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// `t` as RFC 3339. Cannot fail for a UTC time of this era; if it does, logged, counted
/// (`allot_internal_errors_total{site="clock"}`) and empty.
fn rfc3339(t: OffsetDateTime) -> String {
    match t.format(&time::format_description::well_known::Rfc3339) {
        Ok(t) => t,
        Err(e) => {
            crate::metrics::internal_error(crate::metrics::Site::Clock, &e);
            String::new()
        }
    }
}

/// [`now`] and its UTC day (`YYYY-MM-DD`, the exposure deduplication day).
pub(crate) fn now_and_day() -> (String, String) {
    let t = now();
    let day = t.get(..10).unwrap_or_default().to_string();
    (t, day)
}
