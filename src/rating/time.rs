//! Instants, durations and the local windows periods are made of.
//!
//! Every computation takes an explicit `chrono_tz::Tz`; nothing here reads the machine's
//! zone or clock. Windows are looked up per instant in the zone's rules, so days are 23,
//! 24 or 25 hours long, 30-minute shifts are honoured, and a skipped local date (Samoa,
//! 2011-12-30) belongs to no window: the day before it simply ends where the day after it
//! starts (DAR-2).

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// An instant on the UTC time line. The offset an event was spelled with never matters.
pub type Instant = DateTime<Utc>;

/// Why a timestamp or duration was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 timestamp with an offset (e.g. 2025-06-10T09:00:00-04:00)")]
    NotRfc3339,
    #[error("timestamp has no offset; the instant is ambiguous without one")]
    NoOffset,
    #[error("timestamp names a date or time that does not exist")]
    NoSuchDate,
    #[error("timestamp is outside the supported years 1900..=2200")]
    OutOfRange,
    #[error("not an ISO 8601 duration of weeks, days, hours, minutes and seconds (e.g. P7D, PT5M)")]
    BadDuration,
    #[error("unknown IANA time zone")]
    UnknownZone,
}

/// Parses an RFC 3339 timestamp that must carry an offset (`Z` or `±hh:mm`).
pub fn parse_instant(text: &str) -> Result<Instant, TimeError> {
    if let Some(t) = parse_common_rfc3339(text.as_bytes()) {
        return Ok(t);
    }
    match DateTime::<FixedOffset>::parse_from_rfc3339(text) {
        Ok(t) => {
            let year = t.year();
            if !(1900..=2200).contains(&year) {
                return Err(TimeError::OutOfRange);
            }
            let t = t.with_timezone(&Utc);
            // chrono reads a second of 60 at any minute as a leap second; only the 27 that
            // were inserted exist (T-6).
            if t.nanosecond() >= 1_000_000_000 && !is_leap_second(t) {
                return Err(TimeError::NoSuchDate);
            }
            Ok(t)
        }
        Err(_) => Err(classify_bad_timestamp(text)),
    }
}

/// The UTC dates that ended with a leap second (23:59:60), from the IERS list; none has
/// been announced since 2016 (Bulletin C 72, 2026).
pub const LEAP_SECOND_DATES: [(i32, u32, u32); 27] = [
    (1972, 6, 30),
    (1972, 12, 31),
    (1973, 12, 31),
    (1974, 12, 31),
    (1975, 12, 31),
    (1976, 12, 31),
    (1977, 12, 31),
    (1978, 12, 31),
    (1979, 12, 31),
    (1981, 6, 30),
    (1982, 6, 30),
    (1983, 6, 30),
    (1985, 6, 30),
    (1987, 12, 31),
    (1989, 12, 31),
    (1990, 12, 31),
    (1992, 6, 30),
    (1993, 6, 30),
    (1994, 6, 30),
    (1995, 12, 31),
    (1997, 6, 30),
    (1998, 12, 31),
    (2005, 12, 31),
    (2008, 12, 31),
    (2012, 6, 30),
    (2015, 6, 30),
    (2016, 12, 31),
];

/// `t` (read with a second of 60) is one of the leap seconds inserted at 23:59:60 UTC.
fn is_leap_second(t: Instant) -> bool {
    (t.hour(), t.minute(), t.second()) == (23, 59, 59) && LEAP_SECOND_DATES.contains(&(t.year(), t.month(), t.day()))
}

/// The shape every caller actually sends, `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, parsed
/// without a general-purpose parser: this runs once per message. Anything else (lower-case
/// separators, leap seconds, out-of-range fields) returns `None` and goes through chrono,
/// which decides.
fn parse_common_rfc3339(b: &[u8]) -> Option<Instant> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1900..=2200).contains(&year) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(&rest[1..1 + digits])? * 10u32.pow(9 - digits as u32);
        rest = &rest[1 + digits..];
    }
    let offset_seconds: i64 = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let magnitude = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let local = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(local.and_utc() - TimeDelta::seconds(offset_seconds))
}

/// Tells a naive timestamp and an impossible date apart from plain garbage, so the
/// refusal says what the caller got wrong.
fn classify_bad_timestamp(text: &str) -> TimeError {
    let naive_formats = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];
    for format in naive_formats {
        if chrono::NaiveDateTime::parse_from_str(text, format).is_ok() {
            return TimeError::NoOffset;
        }
    }
    // Shaped like a timestamp but rejected: a day or hour that does not exist.
    let bytes = text.as_bytes();
    let shaped = bytes.len() >= 19
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':';
    // Byte 19 may fall inside a multi-byte character of hostile input (found by fuzzing):
    // then it is not a timestamp at all.
    if shaped && let Some(tail) = text.get(19..) {
        let has_offset = tail.ends_with('Z') || tail.ends_with('z') || tail.contains('+') || tail.contains('-');
        return if has_offset { TimeError::NoSuchDate } else { TimeError::NoOffset };
    }
    TimeError::NotRfc3339
}

/// Formats an instant in RFC 3339 in the given zone's offset at that instant.
pub fn format_local(t: Instant, zone: Tz) -> String {
    let local = t.with_timezone(&zone);
    let offset = chrono::Offset::fix(local.offset()).local_minus_utc();
    let n = local.naive_local();
    // Whole seconds of the supported years, which every period bound is: written digit by
    // digit (chrono's formatter took a fifth of an outcome's encoding). Anything else
    // goes through chrono, whose output this reproduces exactly (tested).
    if n.nanosecond() != 0 || !(0..=9999).contains(&n.year()) || offset % 60 != 0 {
        return local.to_rfc3339();
    }
    let mut out = String::with_capacity(25);
    let two = |out: &mut String, v: u32| {
        out.push(char::from(b'0' + (v / 10) as u8));
        out.push(char::from(b'0' + (v % 10) as u8));
    };
    let year = n.year() as u32;
    two(&mut out, year / 100);
    two(&mut out, year % 100);
    out.push('-');
    two(&mut out, n.month());
    out.push('-');
    two(&mut out, n.day());
    out.push('T');
    two(&mut out, n.hour());
    out.push(':');
    two(&mut out, n.minute());
    out.push(':');
    two(&mut out, n.second());
    out.push(if offset < 0 { '-' } else { '+' });
    let minutes = offset.unsigned_abs() / 60;
    two(&mut out, minutes / 60);
    out.push(':');
    two(&mut out, minutes % 60);
    out
}

/// Parses an ISO 8601 duration limited to exact units: `PnW`, `PnD`, `PTnH`, `PTnM`,
/// `PTn.nS` and combinations (`P1DT12H`). Days are exactly 24 hours (RULEBOOK, "Events
/// in time"). Years and months have no fixed length and are refused.
pub fn parse_duration(text: &str) -> Result<TimeDelta, TimeError> {
    let rest = text.strip_prefix('P').ok_or(TimeError::BadDuration)?;
    if rest.is_empty() {
        return Err(TimeError::BadDuration);
    }
    let (date_part, time_part) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(TimeError::BadDuration),
        None => (rest, None),
    };
    let mut total = TimeDelta::zero();
    let mut add = |amount: TimeDelta| -> Result<(), TimeError> {
        total = total.checked_add(&amount).ok_or(TimeError::BadDuration)?;
        Ok(())
    };
    // Each unit at most once, largest first (ISO 8601): `PT1H1H` or `PT5M1H` is a typo,
    // not a duration.
    let in_order = |components: &[(&str, char)], units: &str| {
        let ranks: Vec<Option<usize>> = components.iter().map(|(_, u)| units.find(*u)).collect();
        ranks.iter().all(Option::is_some) && ranks.windows(2).all(|w| w[0] < w[1])
    };
    let date_components = duration_components(date_part)?;
    if !in_order(&date_components, "WD") {
        return Err(TimeError::BadDuration);
    }
    for (number, unit) in date_components {
        let n: i64 = number.parse().map_err(|_| TimeError::BadDuration)?;
        let delta = match unit {
            'W' => TimeDelta::try_weeks(n),
            'D' => TimeDelta::try_days(n),
            _ => None,
        };
        add(delta.ok_or(TimeError::BadDuration)?)?;
    }
    if let Some(time_part) = time_part {
        let time_components = duration_components(time_part)?;
        if !in_order(&time_components, "HMS") {
            return Err(TimeError::BadDuration);
        }
        for (number, unit) in time_components {
            let delta = match unit {
                'H' => number.parse().ok().and_then(TimeDelta::try_hours),
                'M' => number.parse().ok().and_then(TimeDelta::try_minutes),
                'S' => parse_seconds(number),
                _ => None,
            };
            add(delta.ok_or(TimeError::BadDuration)?)?;
        }
    }
    Ok(total)
}

fn duration_components(text: &str) -> Result<Vec<(&str, char)>, TimeError> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_ascii_alphabetic() {
            let number = &text[start..i];
            if number.is_empty() {
                return Err(TimeError::BadDuration);
            }
            out.push((number, c));
            start = i + 1;
        } else if !(c.is_ascii_digit() || c == '.') {
            return Err(TimeError::BadDuration);
        }
    }
    if start != text.len() {
        return Err(TimeError::BadDuration);
    }
    Ok(out)
}

fn parse_seconds(number: &str) -> Option<TimeDelta> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    // A point needs digits on both sides (`PT1.S` and `PT.5S` are typos).
    if frac.len() > 9 || (number.contains('.') && frac.is_empty()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    TimeDelta::new(secs, nanos)
}

/// Formats a duration back into the ISO 8601 form `parse_duration` reads.
pub fn format_duration(d: TimeDelta) -> String {
    let mut secs = d.num_seconds();
    let nanos = d.subsec_nanos();
    if secs == 0 && nanos == 0 {
        return "PT0S".to_string();
    }
    let mut out = String::from("P");
    let days = secs / 86_400;
    secs %= 86_400;
    if days != 0 {
        out.push_str(&format!("{days}D"));
    }
    if secs != 0 || nanos != 0 {
        out.push('T');
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h != 0 {
            out.push_str(&format!("{h}H"));
        }
        if m != 0 {
            out.push_str(&format!("{m}M"));
        }
        if s != 0 || nanos != 0 {
            if nanos != 0 {
                let frac = format!("{nanos:09}");
                out.push_str(&format!("{s}.{}S", frac.trim_end_matches('0')));
            } else {
                out.push_str(&format!("{s}S"));
            }
        }
    }
    out
}

/// Looks up an IANA zone by name.
pub fn parse_zone(name: &str) -> Result<Tz, TimeError> {
    name.parse::<Tz>().map_err(|_| TimeError::UnknownZone)
}

/// The calendar date of an instant in a zone.
pub fn local_date(t: Instant, zone: Tz) -> NaiveDate {
    t.with_timezone(&zone).date_naive()
}

/// The first instant whose local date in `zone` is `date` or later: where local `date`
/// begins. Midnight is usually that instant; where midnight falls in a gap (a
/// spring-forward at 00:00) the day begins when the clock resumes, and where a whole date
/// is skipped this is where the next existing date begins.
pub fn start_of_local_date(date: NaiveDate, zone: Tz) -> Instant {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists on every date");
    match zone.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => first_instant_on_or_after(date, zone, midnight.and_utc()),
    }
}

/// Binary search over whole seconds: zone transitions happen on whole seconds, and local
/// dates never run backwards in the tz database after 1900.
fn first_instant_on_or_after(date: NaiveDate, zone: Tz, midnight_as_utc: Instant) -> Instant {
    // Offsets lie within ±26 hours, so `lo` is still on an earlier date and `hi` is not.
    let mut lo = (midnight_as_utc - TimeDelta::hours(27)).timestamp();
    let mut hi = (midnight_as_utc + TimeDelta::hours(27)).timestamp();
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let t = DateTime::from_timestamp(mid, 0).expect("in range");
        if local_date(t, zone) >= date {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0).expect("in range")
}

/// The first day of the month of `date`.
pub fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("day 1 exists")
}

/// The first day of the month after the month of `date`.
pub fn first_of_next_month(date: NaiveDate) -> NaiveDate {
    let (y, m) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).expect("first of month exists")
}

/// The first day of the month before the month of `date`.
pub fn first_of_previous_month(date: NaiveDate) -> NaiveDate {
    let (y, m) = if date.month() == 1 { (date.year() - 1, 12) } else { (date.year(), date.month() - 1) };
    NaiveDate::from_ymd_opt(y, m, 1).expect("first of month exists")
}

/// The anchor date of a billing cycle in the month of `month_date`: the anchor day, or the
/// month's last day when the month is shorter (CYC-2).
pub fn anchor_date_in_month(month_date: NaiveDate, anchor_day: u32) -> NaiveDate {
    let first = first_of_month(month_date);
    let last_day = (first_of_next_month(first) - TimeDelta::days(1)).day();
    first.with_day(anchor_day.min(last_day)).expect("clamped day exists")
}

/// The latest anchor date on or before `date`.
pub fn anchor_on_or_before(date: NaiveDate, anchor_day: u32) -> NaiveDate {
    let this_month = anchor_date_in_month(date, anchor_day);
    if this_month <= date { this_month } else { anchor_date_in_month(first_of_previous_month(date), anchor_day) }
}

/// The earliest anchor date strictly after `date`.
pub fn anchor_after(date: NaiveDate, anchor_day: u32) -> NaiveDate {
    let this_month = anchor_date_in_month(date, anchor_day);
    if this_month > date { this_month } else { anchor_date_in_month(first_of_next_month(date), anchor_day) }
}

/// Milliseconds since the Unix epoch, saturating; the compact form of an instant in state.
pub fn to_millis(t: Instant) -> i64 {
    t.timestamp_millis()
}

/// Days since 0001-01-01 (CE); the compact form of a date in state.
pub fn date_to_days(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

/// Inverse of [`date_to_days`].
pub fn days_to_date(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days).expect("stored dates are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_written_as_chrono_writes_them() {
        let zones: [Tz; 6] = [
            chrono_tz::UTC,
            chrono_tz::America::New_York,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Apia,
            chrono_tz::America::St_Johns,
        ];
        let mut t = parse_instant("1901-01-01T00:00:00Z").unwrap();
        let step = TimeDelta::seconds(86_400 * 37 + 3_601);
        while t.year() < 2200 {
            for zone in zones {
                assert_eq!(format_local(t, zone), t.with_timezone(&zone).to_rfc3339(), "{t} in {zone}");
                let fraction = t + TimeDelta::milliseconds(250);
                assert_eq!(format_local(fraction, zone), fraction.with_timezone(&zone).to_rfc3339());
            }
            t += step;
        }
    }

    fn at(s: &str) -> Instant {
        parse_instant(s).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn dar_2_naive_timestamp_is_refused_with_its_reason() {
        assert_eq!(parse_instant("2025-11-02T01:30:00"), Err(TimeError::NoOffset));
        assert_eq!(parse_instant("2025-02-30T01:30:00Z"), Err(TimeError::NoSuchDate));
        assert_eq!(parse_instant("yesterday"), Err(TimeError::NotRfc3339));
        assert_eq!(parse_instant("2025-06-10T09:00:00-04:00").unwrap(), at("2025-06-10T13:00:00Z"));
    }

    #[test]
    fn t_6_a_second_of_60_exists_only_where_a_leap_second_was_inserted() {
        assert_eq!(parse_instant("2025-06-10T11:34:60Z"), Err(TimeError::NoSuchDate));
        assert_eq!(parse_instant("2025-12-31T23:59:60Z"), Err(TimeError::NoSuchDate));
        assert_eq!(parse_instant("2016-12-31T23:59:60.5+09:00"), Err(TimeError::NoSuchDate));
        let leap = parse_instant("2016-12-31T23:59:60Z").unwrap();
        assert!(leap > at("2016-12-31T23:59:59Z") && leap < at("2017-01-01T00:00:00Z"));
        // The same leap second spelled in another offset.
        assert_eq!(parse_instant("2017-01-01T08:59:60+09:00"), Ok(leap));
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for text in [
            "2025-06-10T09:00:00-04:00",
            "2025-06-10T09:00:00Z",
            "2025-06-10T09:00:00.5+05:30",
            "2025-06-10T09:00:00.123456789-00:00",
            "2024-02-29T23:59:59+14:00",
            "1900-01-01T00:00:00Z",
        ] {
            let chrono = DateTime::<FixedOffset>::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
            assert_eq!(parse_common_rfc3339(text.as_bytes()), Some(chrono), "{text}");
        }
        for text in [
            "2025-02-29T09:00:00Z",
            "2025-06-10T24:00:00Z",
            "2025-06-10T09:00:00",
            "2025-06-10t09:00:00Z",
            "2025-06-10T09:00:60Z",
        ] {
            assert_eq!(parse_common_rfc3339(text.as_bytes()), None, "{text}");
        }
        assert_eq!(parse_instant("2025-02-29T09:00:00Z"), Err(TimeError::NoSuchDate));
    }

    #[test]
    fn dar_2_new_york_spring_forward_day_has_23_hours() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let start = start_of_local_date(date("2025-03-09"), ny);
        let end = start_of_local_date(date("2025-03-10"), ny);
        assert_eq!(end - start, TimeDelta::hours(23));
        let fall_start = start_of_local_date(date("2025-11-02"), ny);
        let fall_end = start_of_local_date(date("2025-11-03"), ny);
        assert_eq!(fall_end - fall_start, TimeDelta::hours(25));
    }

    #[test]
    fn dar_2_lord_howe_half_hour_shift() {
        let lh: Tz = "Australia/Lord_Howe".parse().unwrap();
        // DST ends 2025-04-06 02:00 local: the day is 24.5 hours long.
        let start = start_of_local_date(date("2025-04-06"), lh);
        let end = start_of_local_date(date("2025-04-07"), lh);
        assert_eq!(end - start, TimeDelta::minutes(24 * 60 + 30));
    }

    #[test]
    fn dar_2_midnight_in_a_gap_starts_the_day_when_the_clock_resumes() {
        // Santiago springs forward at 24:00 -> 01:00: 2024-09-08 00:00 does not exist.
        let scl: Tz = "America/Santiago".parse().unwrap();
        let start = start_of_local_date(date("2024-09-08"), scl);
        assert_eq!(start.with_timezone(&scl).to_rfc3339(), "2024-09-08T01:00:00-03:00");
        assert_eq!(local_date(start - TimeDelta::seconds(1), scl), date("2024-09-07"));
    }

    #[test]
    fn dar_2_skipped_date_belongs_to_no_window() {
        // Samoa skipped 2011-12-30: the 29th ends where the 31st begins.
        let apia: Tz = "Pacific/Apia".parse().unwrap();
        let end_of_29 = start_of_local_date(date("2011-12-30"), apia);
        let start_of_31 = start_of_local_date(date("2011-12-31"), apia);
        assert_eq!(end_of_29, start_of_31);
        assert_eq!(local_date(end_of_29, apia), date("2011-12-31"));
    }

    #[test]
    fn cyc_2_anchor_clamps_to_short_months_and_returns() {
        assert_eq!(anchor_on_or_before(date("2025-02-27"), 31), date("2025-01-31"));
        assert_eq!(anchor_on_or_before(date("2025-02-28"), 31), date("2025-02-28"));
        assert_eq!(anchor_on_or_before(date("2025-03-30"), 31), date("2025-02-28"));
        assert_eq!(anchor_on_or_before(date("2025-03-31"), 31), date("2025-03-31"));
        assert_eq!(anchor_after(date("2024-02-28"), 30), date("2024-02-29"));
        assert_eq!(anchor_after(date("2025-04-30"), 31), date("2025-05-31"));
    }

    #[test]
    fn durations_are_exact() {
        assert_eq!(parse_duration("P7D").unwrap(), TimeDelta::days(7));
        assert_eq!(parse_duration("PT5M").unwrap(), TimeDelta::minutes(5));
        assert_eq!(parse_duration("P1DT12H").unwrap(), TimeDelta::hours(36));
        assert_eq!(parse_duration("PT0.5S").unwrap(), TimeDelta::milliseconds(500));
        assert_eq!(parse_duration("P2W").unwrap(), TimeDelta::days(14));
        assert_eq!(parse_duration("P1W2DT1H2M3S").unwrap(), TimeDelta::seconds(9 * 86_400 + 3_723));
        for bad in [
            "P1M", "P1Y", "7D", "P", "PT", "P-1D", "PTxS", "PT1H1H", "PT5M1H", "P1D1D", "P1D1W", "PT1S1S", "PT1.S",
            "PT.5S",
        ] {
            assert_eq!(parse_duration(bad), Err(TimeError::BadDuration), "{bad}");
        }
        for d in ["P7D", "PT5M", "P1DT12H", "PT0.5S", "PT0S", "P35D"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn a_multibyte_character_where_seconds_end_is_refused_not_a_panic() {
        // Found by the ingest and tenants fuzzers: byte 19 inside a character.
        for text in ["2025-06-10T12:00:0\u{425}", "2025-06-10T12:\u{fffd}\u{fffd}:00"] {
            assert!(parse_instant(text).is_err(), "{text}");
        }
    }
}
