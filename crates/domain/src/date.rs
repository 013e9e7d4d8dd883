//! Dates and times as people type them: `1990-01-02`, `1990/1/2`, `19900102`, `1990年1月2日`.

use jiff::{
    Timestamp,
    civil::{Date, DateTime, Time},
    tz::TimeZone,
};

use crate::{error::FieldError, text};

fn invalid_date(raw: &str) -> FieldError {
    FieldError::new(
        "date",
        "date.invalid",
        format!("`{raw}` is not a date; write it as 1990-01-02, 1990/1/2, 19900102 or 1990年1月2日"),
    )
}

fn number(part: &str) -> Option<i16> {
    if part.is_empty() || part.len() > 4 || !part.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn civil(raw: &str, year: i16, month: i16, day: i16) -> Result<Date, FieldError> {
    if !(1000..=9999).contains(&year) {
        return Err(invalid_date(raw));
    }
    let month = i8::try_from(month).map_err(|_| invalid_date(raw))?;
    let day = i8::try_from(day).map_err(|_| invalid_date(raw))?;
    Date::new(year, month, day).map_err(|_| {
        FieldError::new("date", "date.invalid", format!("`{raw}` names a day that does not exist"))
    })
}

/// Parses a calendar date in any of the accepted spellings, after full-width cleaning.
pub fn parse_date(raw: &str) -> Result<Date, FieldError> {
    let cleaned = text::clean(raw).ok_or_else(|| invalid_date(raw))?;
    parse_clean_date(raw, &cleaned)
}

/// [`parse_date`] of text already cleaned; `raw` is what the error messages quote.
fn parse_clean_date(raw: &str, value: &str) -> Result<Date, FieldError> {
    if value.len() == 10 {
        // The common spelling, without allocating: 1990-01-02.
        let bytes = value.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .try_fold(0_i16, |all, byte| byte.is_ascii_digit().then(|| all * 10 + i16::from(byte - b'0')))
        };
        if bytes[4] == b'-'
            && bytes[7] == b'-'
            && let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10))
        {
            return civil(raw, year, month, day);
        }
    }
    if value.len() == 8 && value.bytes().all(|byte| byte.is_ascii_digit()) {
        let year = number(&value[0..4]).ok_or_else(|| invalid_date(raw))?;
        let month = number(&value[4..6]).ok_or_else(|| invalid_date(raw))?;
        let day = number(&value[6..8]).ok_or_else(|| invalid_date(raw))?;
        return civil(raw, year, month, day);
    }
    let chinese = value
        .strip_suffix('日')
        .or_else(|| value.strip_suffix('号'))
        .map(|rest| rest.replacen('年', "-", 1).replacen('月', "-", 1));
    let value = chinese.as_deref().unwrap_or(value);
    let separator = value.chars().find(|character| matches!(character, '-' | '/' | '.'));
    let separator = separator.ok_or_else(|| invalid_date(raw))?;
    let parts: Vec<&str> = value.split(separator).map(str::trim).collect();
    if parts.len() != 3 || parts[0].len() != 4 {
        return Err(invalid_date(raw));
    }
    let year = number(parts[0]).ok_or_else(|| invalid_date(raw))?;
    let month = number(parts[1]).ok_or_else(|| invalid_date(raw))?;
    let day = number(parts[2]).ok_or_else(|| invalid_date(raw))?;
    civil(raw, year, month, day)
}

/// A birthday: a date between 1900-01-01 and `today` (the caller's today, in its zone).
pub fn parse_birthday(raw: &str, today: Date) -> Result<Date, FieldError> {
    let date = parse_date(raw)?;
    if date > today {
        return Err(FieldError::new("birthday", "birthday.future", format!("`{raw}` is in the future")));
    }
    if date.year() < 1900 {
        return Err(FieldError::new("birthday", "birthday.too_old", format!("`{raw}` is before 1900")));
    }
    Ok(date)
}

fn invalid_time(raw: &str) -> FieldError {
    FieldError::new(
        "timestamp",
        "timestamp.invalid",
        format!(
            "`{raw}` is not a date or date-time; write it as 2026-01-02, 2026-01-02 13:45:00 or 2026-01-02T13:45:00+08:00"
        ),
    )
}

/// Parses an RFC 3339 instant with its offset (`2026-11-22T08:00:00+08:00`).
pub fn parse_instant(raw: &str) -> Result<Timestamp, FieldError> {
    raw.trim().parse::<Timestamp>().map_err(|_| {
        FieldError::new(
            "timestamp",
            "timestamp.invalid",
            format!("`{raw}` is not an RFC 3339 time such as 2026-11-22T00:00:00Z"),
        )
    })
}

/// Parses a moment: an RFC 3339 timestamp with offset, or a date or date-time without one,
/// which is read in `zone` (the store's time zone). A bare date means its first moment.
pub fn parse_moment(raw: &str, zone: &TimeZone) -> Result<Timestamp, FieldError> {
    let cleaned = text::clean(raw).ok_or_else(|| invalid_time(raw))?;
    let value = cleaned.as_str();
    let (date_part, time_part) = match value.find(['T', ' ']) {
        Some(index) => (&value[..index], Some(value[index + 1..].trim())),
        None => (value, None),
    };
    // Only a time with a zone designator is an instant; anything else is local to `zone`.
    let has_offset = time_part.is_some_and(|time| time.ends_with(['Z', 'z']) || time.contains(['+', '-']));
    if has_offset {
        return value.parse::<Timestamp>().map_err(|_| invalid_time(raw));
    }
    let date = parse_clean_date(raw, date_part).map_err(|_| invalid_time(raw))?;
    let time = match time_part {
        None => Time::midnight(),
        Some(text) => parse_time(text).ok_or_else(|| invalid_time(raw))?,
    };
    DateTime::from_parts(date, time)
        .to_zoned(zone.clone())
        .map(|zoned| zoned.timestamp())
        .map_err(|_| invalid_time(raw))
}

fn parse_time(text: &str) -> Option<Time> {
    let mut parts = text.split(':');
    let hour: i8 = parts.next()?.parse().ok()?;
    let minute: i8 = parts.next()?.parse().ok()?;
    let (second, subsecond_nanos) = match parts.next() {
        None => (0, 0),
        Some(seconds) => {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            let second: i8 = whole.parse().ok()?;
            let nanos = if fraction.is_empty() {
                0
            } else {
                let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
                digits.parse::<i32>().ok()?
            };
            (second, nanos)
        }
    };
    if parts.next().is_some() {
        return None;
    }
    Time::new(hour, minute, second, subsecond_nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn every_accepted_date_spelling() {
        let expected = date(1990, 1, 2);
        for raw in [
            "1990-01-02",
            "1990-1-2",
            "1990/1/2",
            "1990/01/02",
            "19900102",
            "1990年1月2日",
            "1990年01月02日",
            "1990.1.2",
            "１９９０－０１－０２",
            " 1990-01-02 ",
        ] {
            assert_eq!(parse_date(raw).unwrap(), expected, "{raw}");
        }
    }

    #[test]
    fn rejects_impossible_and_malformed_dates() {
        for raw in [
            "1990-02-30",
            "1990-13-01",
            "19900230",
            "90-1-2",
            "1990-01",
            "abc",
            "",
            "1990年1月",
            "1990-01-02-03",
        ] {
            assert!(parse_date(raw).is_err(), "{raw}");
        }
        assert_eq!(
            parse_date("2023-02-29").unwrap_err().message,
            "`2023-02-29` names a day that does not exist"
        );
        assert_eq!(parse_date("2024-02-29").unwrap(), date(2024, 2, 29));
    }

    #[test]
    fn birthdays_are_bounded_by_today_and_1900() {
        let today = date(2026, 11, 22);
        assert!(parse_birthday("2026-11-22", today).is_ok());
        assert_eq!(parse_birthday("2026-11-23", today).unwrap_err().code, "birthday.future");
        assert_eq!(parse_birthday("1899-12-31", today).unwrap_err().code, "birthday.too_old");
    }

    #[test]
    fn moments_without_offset_are_read_in_the_store_zone() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        let at = parse_moment("2026-01-02 13:45:00", &shanghai).unwrap();
        assert_eq!(at.to_string(), "2026-01-02T05:45:00Z");
        assert_eq!(parse_moment("2026/1/2 13:45", &shanghai).unwrap(), at);
        assert_eq!(parse_moment("2026-01-02T05:45:00Z", &shanghai).unwrap(), at);
        assert_eq!(parse_moment("2026-01-02T13:45:00+08:00", &shanghai).unwrap(), at);
        assert_eq!(parse_moment("2026-01-02", &shanghai).unwrap().to_string(), "2026-01-01T16:00:00Z");
        assert_eq!(
            parse_moment("2026-01-02 13:45:00.5", &shanghai).unwrap().to_string(),
            "2026-01-02T05:45:00.5Z"
        );
        for raw in ["2026-01-02 25:00", "yesterday", "2026-01-02 13", ""] {
            assert_eq!(parse_moment(raw, &shanghai).unwrap_err().code, "timestamp.invalid", "{raw}");
        }
    }
}
