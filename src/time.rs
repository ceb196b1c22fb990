//! ISO 8601 timestamps from `SystemTime`, the way JavaScript's
//! `new Date().toISOString()` prints them: `2026-11-24T09:30:05.123Z`.
//!
//! `std` gives seconds since the Unix epoch; turning those into a calendar
//! date is a small, well-known piece of arithmetic (days → civil date),
//! written out below instead of taking a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in UTC, to the millisecond.
pub fn now_iso8601() -> String {
    iso8601(SystemTime::now())
}

/// `time` in UTC, to the millisecond. Times before 1970 print as the epoch:
/// a server clock that far wrong has bigger problems than this string.
pub fn iso8601(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis = since_epoch.subsec_millis();
    let secs = since_epoch.as_secs();
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// Converts a count of days since 1970-01-01 into (year, month, day) in the
/// proleptic Gregorian calendar.
///
/// The trick is to start the year in March, so the awkward February sits at
/// the end of the year, and to count in 400-year "eras", which always have
/// exactly 146,097 days. Inside an era every step is plain integer division.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let shifted_month = (5 * day_of_year + 2) / 153; // [0, 11], March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1; // [1, 31]
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        iso8601(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z"); // leap day of a 400-year leap year
        assert_eq!(at(1_234_567_890, 5), "2009-02-13T23:31:30.005Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z"); // 2100 is not a leap year
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_795_478_400, 0), "2026-11-24T00:00:00.000Z");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 800 years day by day: the date must always advance by exactly
        // one day, months must have their right lengths, leap years included.
        let mut previous = civil_from_days(0);
        for days in 1..(800 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let leap = (py % 4 == 0 && py % 100 != 0) || py % 400 == 0;
            let month_len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if pd < month_len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            previous = (y, m, d);
        }
    }

    #[test]
    fn now_has_the_right_shape() {
        let s = now_iso8601();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
