//! Cron schedules as the CronJob controller reads them (five fields, or a macro), so
//! the controller can say when the next backup runs and how old the newest one may
//! get before it is `Stale`. Day-of-month and day-of-week combine as in Vixie cron:
//! when both are restricted, a day matching either one fires.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    dom_restricted: bool,
    dow_restricted: bool,
}

/// Why a schedule could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("schedule {schedule:?}: {why}")]
pub struct ScheduleError {
    schedule: String,
    why: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Reads a five-field schedule or one of the macros `@yearly`, `@annually`,
    /// `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
    ///
    /// # Errors
    /// When a field is out of range or malformed.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let fail = |why: String| ScheduleError {
            schedule: text.to_owned(),
            why,
        };
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(fail(format!("unknown macro {other}"))),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(fail(format!(
                "expected five fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        };
        let field = |text: &str, name: &str, min: u32, max: u32, names: &[&str]| {
            parse_field(text, min, max, names).map_err(|why| fail(format!("{name}: {why}")))
        };
        let mut days_of_week = field(dow, "day-of-week", 0, 7, &DAYS)?;
        // 7 is Sunday too.
        if days_of_week & (1 << 7) != 0 {
            days_of_week |= 1;
        }
        Ok(Self {
            minutes: field(minute, "minute", 0, 59, &[])?,
            hours: field(hour, "hour", 0, 23, &[])?,
            days_of_month: field(dom, "day-of-month", 1, 31, &[])?,
            months: field(month, "month", 1, 12, &MONTHS)?,
            days_of_week,
            dom_restricted: !is_star(dom),
            dow_restricted: !is_star(dow),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first time strictly after `after` at which the schedule fires, in `tz`.
    /// None when it never fires within eight years (such as February 30th).
    #[must_use]
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone());
        let local = start.datetime();
        // The next whole minute.
        let mut minute = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = local.date().checked_add(8.years()).ok()?;
        while minute.date() <= limit {
            let date = minute.date();
            if self.months & (1 << date.month()) == 0 || !self.day_matches(date) {
                minute = next_day(date)?;
                continue;
            }
            if self.hours & (1 << minute.hour()) == 0 {
                minute = minute
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << minute.minute()) == 0 {
                minute = minute.checked_add(1.minute()).ok()?;
                continue;
            }
            // A local time skipped by a DST change resolves to the instant after the gap.
            let at = minute.to_zoned(tz.clone()).ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            minute = minute.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// The longest gap between consecutive runs over the next few runs after `after`:
    /// what "no backup for too long" is measured against.
    #[must_use]
    pub fn interval(&self, after: Timestamp, tz: &TimeZone) -> Option<Duration> {
        let mut longest = Duration::ZERO;
        let mut previous = self.next_after(after, tz)?;
        for _ in 0..8 {
            let next = self.next_after(previous, tz)?;
            let gap = next.duration_since(previous).unsigned_abs();
            longest = longest.max(gap);
            previous = next;
        }
        Some(longest)
    }
}

/// Resolves a schedule's time zone: the named IANA zone, or UTC when unset (what the
/// controller-manager uses in containers).
///
/// # Errors
/// When the zone is unknown.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}")),
    }
}

fn next_day(date: Date) -> Option<DateTime> {
    Some(
        date.tomorrow()
            .ok()?
            .to_datetime(jiff::civil::time(0, 0, 0, 0)),
    )
}

fn is_star(field: &str) -> bool {
    field == "*" || field == "?"
}

/// One field as a bit set: `*`, `?`, `N`, `N-M`, `*/S`, `N-M/S`, `N/S`, names (JAN,
/// MON), and comma-separated lists of those.
fn parse_field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |token: &str| -> Result<u32, String> {
        let upper = token.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            // Month names start at 1, day names at 0.
            return Ok(u32::try_from(i).unwrap_or(0) + min);
        }
        let n: u32 = token
            .parse()
            .map_err(|_| format!("{token:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0 never fires".to_owned());
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if is_star(range) {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low)?, value(high)?)
        } else {
            let start = value(range)?;
            // "N/S" means from N to the end in steps of S.
            (start, if part.contains('/') { max } else { start })
        };
        if low > high {
            return Err(format!("range {low}-{high} runs backwards"));
        }
        let mut n = low;
        while n <= high {
            bits |= 1 << n;
            n += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule)
            .unwrap()
            .next_after(at(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn macros_and_fields() {
        assert_eq!(
            next("@hourly", "2026-01-01T10:30:00Z"),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-01-01T10:30:00Z"),
            "2026-01-02T00:00:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:30:00Z"),
            "2026-01-01T10:45:00Z"
        );
        assert_eq!(
            next("0 3 * * MON", "2026-01-01T10:30:00Z"),
            "2026-01-05T03:00:00Z"
        );
        assert_eq!(
            next("0 0 1 JAN *", "2026-01-01T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("30 2 * * 7", "2026-01-01T00:00:00Z"),
            "2026-01-04T02:30:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-01-01T00:06:00Z"),
            "2026-01-01T00:25:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 13th or any Friday: Friday 2026-01-02 comes first.
        assert_eq!(
            next("0 0 13 * 5", "2026-01-01T00:00:00Z"),
            "2026-01-02T00:00:00Z"
        );
    }

    #[test]
    fn time_zones_shift_the_run() {
        let tz = time_zone(Some("Europe/Berlin")).unwrap();
        let next = Schedule::parse("0 2 * * *")
            .unwrap()
            .next_after(at("2026-01-01T00:00:00Z"), &tz)
            .unwrap();
        assert_eq!(next.to_string(), "2026-01-01T01:00:00Z");
    }

    #[test]
    fn interval_is_the_longest_gap() {
        let s = Schedule::parse("0 1,2 * * *").unwrap();
        let gap = s
            .interval(at("2026-01-01T00:00:00Z"), &TimeZone::UTC)
            .unwrap();
        assert_eq!(gap, Duration::from_secs(23 * 3600));
        let hourly = Schedule::parse("@hourly").unwrap();
        assert_eq!(
            hourly.interval(at("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "* * * *",
            "61 * * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@often",
            "x * * * *",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(at("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }
}
