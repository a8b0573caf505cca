//! Timestamps as Confidence's resolver reads them, to the nanosecond and the leap second.
//!
//! A rule's timestamp is proto3-JSON, parsed by chrono's strict RFC 3339 parser (a state with
//! any other text is not a state). A context string goes through the resolver's `from_str`:
//! when it has a `T` or a space, RFC 3339 if the part after the first of them holds `Z`, `+` or
//! `-`, otherwise `%Y-%m-%dT%H:%M:%S%.f` (or with a space); without either, `%Y-%m-%d` at
//! midnight UTC. A context number is epoch seconds, or epoch milliseconds from a magnitude of
//! 1e12 on. The parsers below follow chrono 0.4's code, not its documentation.

/// A point in time as the resolver holds one (`google.protobuf.Timestamp`): seconds since the
/// epoch and nanoseconds, compared in that order. A leap second keeps its second's `seconds` with
/// `nanos` from 1,000,000,000 on, so `23:59:60.5` sorts after `23:59:59.9` and before `00:00:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ts {
    pub(super) seconds: i64,
    pub(super) nanos: u32,
}

/// chrono's date range: years -262143 to 262142.
const MIN_YEAR: i64 = -262_143;
const MAX_YEAR: i64 = 262_142;

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `NaiveDate::from_ymd_opt`.
fn date(y: i64, m: i64, d: i64) -> Option<i64> {
    let valid = (MIN_YEAR..=MAX_YEAR).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m);
    valid.then(|| days_from_civil(y, m, d))
}

/// `NaiveTime::from_hms_nano_opt`: seconds of the day; a leap second only at second 59.
fn time(h: i64, mi: i64, s: i64, nano: u32) -> Option<i64> {
    if h >= 24 || mi >= 60 || s >= 60 || (nano >= 1_000_000_000 && s != 59) || nano >= 2_000_000_000 {
        return None;
    }
    Some(h * 3600 + mi * 60 + s)
}

/// chrono's `scan::number`: `min..=max` ASCII digits.
fn number(s: &str, min: usize, max: usize) -> Option<(&str, i64)> {
    let bytes = s.as_bytes();
    if bytes.len() < min {
        return None;
    }
    let mut n = 0i64;
    for (i, c) in bytes.iter().take(max).enumerate() {
        if !c.is_ascii_digit() {
            return if i < min { None } else { Some((&s[i..], n)) };
        }
        n = n.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some((&s[max.min(bytes.len())..], n))
}

/// chrono's `scan::nanosecond`: one or more digits, the first nine significant.
fn nanosecond(s: &str) -> Option<(&str, u32)> {
    let before = s.len();
    let (rest, v) = number(s, 1, 9)?;
    const SCALE: [i64; 10] = [0, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1];
    let v = v * SCALE[before - rest.len()];
    Some((rest.trim_start_matches(|c: char| c.is_ascii_digit()), v as u32))
}

/// `DateTime::parse_from_rfc3339` in UTC: `YYYY-MM-DD`, `T`, `t` or a space, `HH:MM:SS`, an
/// optional fraction, then `Z`, `z` or `±HH:MM` (offsets under 24 hours).
pub(super) fn rfc3339(s: &str) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let digit = |i: usize| b[i].is_ascii_digit().then(|| i64::from(b[i] - b'0'));
    let year = digit(0)? * 1000 + digit(1)? * 100 + digit(2)? * 10 + digit(3)?;
    if b[4] != b'-' {
        return None;
    }
    let month = digit(5)? * 10 + digit(6)?;
    if b[7] != b'-' {
        return None;
    }
    let day = digit(8)? * 10 + digit(9)?;
    let days = date(year, month, day)?;
    if !matches!(b[10], b't' | b'T' | b' ') {
        return None;
    }
    let hour = digit(11)? * 10 + digit(12)?;
    if b[13] != b':' {
        return None;
    }
    let min = digit(14)? * 10 + digit(15)?;
    if b[16] != b':' {
        return None;
    }
    let sec = digit(17)? * 10 + digit(18)?;
    let (sec, extra) = if sec == 60 { (59, 1_000_000_000) } else { (sec, 0) };
    let (rest, nano) = if b.get(19) == Some(&b'.') {
        let (rest, n) = nanosecond(&s[20..])?;
        (rest, extra + n)
    } else {
        (&s[19..], extra)
    };
    let clock = time(hour, min, sec, nano)?;
    let (rest, offset) = offset(rest)?;
    if !rest.is_empty() || offset.abs() >= 86_400 {
        return None;
    }
    Some(Ts { seconds: days * 86_400 + clock - offset, nanos: nano })
}

/// chrono's `scan::timezone_offset` as RFC 3339 uses it: `Z`/`z`, or a sign (`+`, `-` or U+2212),
/// two hour digits, `:`, two minute digits (00-59).
fn offset(s: &str) -> Option<(&str, i64)> {
    if let Some(rest) = s.strip_prefix(['Z', 'z']) {
        return Some((rest, 0));
    }
    let (negative, s) = if let Some(r) = s.strip_prefix('+') {
        (false, r)
    } else if let Some(r) = s.strip_prefix('-') {
        (true, r)
    } else {
        (true, s.strip_prefix('\u{2212}')?)
    };
    let b = s.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_digit() || !b[1].is_ascii_digit() {
        return None;
    }
    let hours = i64::from((b[0] - b'0') * 10 + (b[1] - b'0'));
    let s = s[2..].strip_prefix(':')?;
    let b = s.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'0'..=b'5') || !b[1].is_ascii_digit() {
        return None;
    }
    let minutes = i64::from((b[0] - b'0') * 10 + (b[1] - b'0'));
    let seconds = hours * 3600 + minutes * 60;
    Some((&s[2..], if negative { -seconds } else { seconds }))
}

/// One item of a chrono format string, as `parse_internal` reads it.
#[derive(Clone, Copy)]
enum Item {
    Year,
    Two,
    Literal(char),
    Space,
    Fraction,
}

/// `%Y-%m-%d`, then for a date-time `<sep>%H:%M:%S`, then `%.f` when `fraction`.
fn items(sep: Option<char>, fraction: bool) -> Vec<Item> {
    use Item::*;
    let mut v = vec![Year, Literal('-'), Two, Literal('-'), Two];
    if let Some(sep) = sep {
        v.push(if sep == ' ' { Space } else { Literal(sep) });
        v.extend([Two, Literal(':'), Two, Literal(':'), Two]);
        if fraction {
            v.push(Fraction);
        }
    }
    v
}

/// `NaiveDateTime::parse_from_str` (or `NaiveDate::parse_from_str`) with [`items`]: numbers may
/// be preceded by whitespace and need not be zero-padded, a year may carry a sign and then any
/// number of digits, seconds run to 60 (a leap second), nothing may follow.
fn strftime(mut s: &str, items: &[Item]) -> Option<Ts> {
    let mut fields: Vec<i64> = Vec::with_capacity(6);
    let mut nano: u32 = 0;
    for item in items {
        match *item {
            Item::Literal(c) => s = s.strip_prefix(c)?,
            Item::Space => s = s.trim_start(),
            Item::Year | Item::Two => {
                s = s.trim_start();
                let (rest, v) = match (*item, s.as_bytes().first()) {
                    (Item::Year, Some(b'-')) => number(&s[1..], 1, usize::MAX).map(|(r, v)| (r, -v))?,
                    (Item::Year, Some(b'+')) => number(&s[1..], 1, usize::MAX)?,
                    (Item::Year, _) => number(s, 1, 4)?,
                    _ => number(s, 1, 2)?,
                };
                s = rest;
                fields.push(v);
            }
            Item::Fraction => {
                if let Some(rest) = s.strip_prefix('.') {
                    let (rest, n) = nanosecond(rest)?;
                    s = rest;
                    nano = n;
                }
            }
        }
    }
    if !s.is_empty() {
        return None;
    }
    let year = i64::from(i32::try_from(fields[0]).ok()?);
    let (month, day) = (fields[1], fields[2]);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = date(year, month, day)?;
    if fields.len() == 3 {
        return Some(Ts { seconds: days * 86_400, nanos: 0 });
    }
    let (h, mi, sec) = (fields[3], fields[4], fields[5]);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let (sec, extra) = if sec == 60 { (59, 1_000_000_000) } else { (sec, 0) };
    let nano = nano + extra;
    let clock = time(h, mi, sec, nano)?;
    Some(Ts { seconds: days * 86_400 + clock, nanos: nano })
}

/// A context string under a timestamp rule (the resolver's `value::from_str`).
pub(super) fn context(s: &str) -> Option<Ts> {
    if s.contains(['T', ' ']) {
        let time_part = s.split(['T', ' ']).nth(1)?;
        if time_part.contains(['Z', '+', '-']) {
            rfc3339(s)
        } else {
            strftime(s, &items(Some('T'), false))
                .or_else(|| strftime(s, &items(Some('T'), true)))
                .or_else(|| strftime(s, &items(Some(' '), false)))
                .or_else(|| strftime(s, &items(Some(' '), true)))
        }
    } else {
        strftime(s, &items(None, false))
    }
}

/// The first and last second chrono can represent.
fn range() -> (i64, i64) {
    (days_from_civil(MIN_YEAR, 1, 1) * 86_400, days_from_civil(MAX_YEAR, 12, 31) * 86_400 + 86_399)
}

/// A context number under a timestamp rule: truncated to an integer; epoch milliseconds from a
/// magnitude of 1e12 on, epoch seconds below; `None` (compares with nothing) when not finite or
/// outside chrono's range.
pub(super) fn from_number(value: f64) -> Option<Ts> {
    if !value.is_finite() {
        return None;
    }
    // `as` saturates, as in the resolver. Its `i64::MIN.abs()` would overflow (a panic in a
    // debug build); `unsigned_abs` reads the magnitude the same way for every other value.
    let long = value as i64;
    let (seconds, nanos) = if long.unsigned_abs() >= 1_000_000_000_000 {
        (long.div_euclid(1000), (long.rem_euclid(1000) * 1_000_000) as u32)
    } else {
        (long, 0)
    };
    let (lo, hi) = range();
    (lo..=hi).contains(&seconds).then_some(Ts { seconds, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: u32) -> Option<Ts> {
        Some(Ts { seconds, nanos })
    }

    #[test]
    fn rfc3339_as_chrono_reads_it() {
        assert_eq!(rfc3339("1970-01-01T00:00:01Z"), ts(1, 0));
        assert_eq!(rfc3339("1970-01-01t00:00:01.5+00:00"), ts(1, 500_000_000));
        assert_eq!(rfc3339("1970-01-01 00:00:01.1234567891234z"), ts(1, 123_456_789));
        assert_eq!(rfc3339("2020-01-01T00:00:00+01:00"), ts(1_577_833_200, 0));
        assert_eq!(rfc3339("1998-12-31T23:59:60Z"), ts(915_148_799, 1_000_000_000));
        assert_eq!(rfc3339("1998-12-31T23:58:60Z"), ts(915_148_739, 1_000_000_000));
        assert_eq!(rfc3339("2020-01-01T00:00:00+24:00"), None);
        assert_eq!(rfc3339("2020-01-01T00:00:00+0100"), None);
        assert_eq!(rfc3339("2020-01-01T00:00:00"), None);
        assert_eq!(rfc3339("2020-02-30T00:00:00Z"), None);
        assert_eq!(rfc3339("2020-01-01T00:00:00.Z"), None);
    }

    #[test]
    fn context_strings() {
        assert_eq!(context("1970-01-02"), ts(86_400, 0));
        assert_eq!(context("1970-01-01 01:00:00"), ts(3_600, 0));
        assert_eq!(context("1970-1-1T1:0:0.25"), ts(3_600, 250_000_000));
        assert_eq!(context("1970-01-01t01:00:00Z"), None);
        assert_eq!(context("1970-01-01T01:00:00z"), None);
        assert_eq!(context("1970-01-01T01:00:00Z"), ts(3_600, 0));
        assert_eq!(context("+1970-01-01"), ts(0, 0));
        assert_eq!(context("-0001-12-31T00:00:00"), ts(-62_167_305_600, 0));
        assert_eq!(context("garbage"), None);
        assert_eq!(context(""), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(from_number(1_668_698_178.9), ts(1_668_698_178, 0));
        assert_eq!(from_number(1_668_698_177_200.0), ts(1_668_698_177, 200_000_000));
        assert_eq!(from_number(-1_000_000_000_001.0), ts(-1_000_000_001, 999_000_000));
        assert_eq!(from_number(f64::NAN), None);
        assert_eq!(from_number(1e300), None);
        assert_eq!(from_number(-1e300), None);
    }
}
