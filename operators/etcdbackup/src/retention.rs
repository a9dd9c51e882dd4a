//! Which verified backups to keep: the newest N, plus the newest of each of the last
//! days and weeks that have backups (as restic and borg count them). The newest
//! verified backup is kept whatever the policy says, and nothing is pruned unless
//! the run that prunes has just verified a backup of its own (the caller's rule).

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The policy, from the EtcdBackup's `retention`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Newest backups to keep (at least 1 is always kept).
    pub keep_last: usize,
    /// Days (that have backups) whose newest backup is kept.
    pub keep_daily: usize,
    /// ISO weeks (that have backups) whose newest backup is kept.
    pub keep_weekly: usize,
}

/// The indexes of `times` to keep. `times` are the verified backups' times in any
/// order; days and weeks are counted in `tz`.
#[must_use]
pub fn keep(times: &[Timestamp], policy: Policy, tz: &TimeZone) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    // Newest first.
    order.sort_by(|a, b| times[*b].cmp(&times[*a]));
    let mut kept: BTreeSet<usize> = order
        .iter()
        .take(policy.keep_last.max(1))
        .copied()
        .collect();
    ladder(&order, times, tz, policy.keep_daily, &mut kept, |z| {
        (i32::from(z.year()), i32::from(z.day_of_year()))
    });
    ladder(&order, times, tz, policy.keep_weekly, &mut kept, |z| {
        let week = z.date().iso_week_date();
        (i32::from(week.year()), i32::from(week.week()))
    });
    kept
}

/// Keeps the newest backup of each of the first `count` distinct periods.
fn ladder(
    newest_first: &[usize],
    times: &[Timestamp],
    tz: &TimeZone,
    count: usize,
    kept: &mut BTreeSet<usize>,
    period: impl Fn(&jiff::Zoned) -> (i32, i32),
) {
    let mut seen = BTreeSet::new();
    for &i in newest_first {
        if seen.len() >= count {
            break;
        }
        if seen.insert(period(&times[i].to_zoned(tz.clone()))) {
            kept.insert(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(n: i64) -> Vec<Timestamp> {
        // One backup per 6 hours, oldest first, from 2026-01-01.
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        (0..n)
            .map(|i| {
                start
                    .checked_add(jiff::SignedDuration::from_hours(6 * i))
                    .unwrap()
            })
            .collect()
    }

    fn policy(last: usize, daily: usize, weekly: usize) -> Policy {
        Policy {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
        }
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let t = hours(10);
        let kept = keep(&t, policy(3, 0, 0), &TimeZone::UTC);
        assert_eq!(kept, BTreeSet::from([7, 8, 9]));
    }

    #[test]
    fn zero_still_keeps_the_newest() {
        let t = hours(4);
        assert_eq!(
            keep(&t, policy(0, 0, 0), &TimeZone::UTC),
            BTreeSet::from([3])
        );
        assert!(keep(&[], policy(0, 0, 0), &TimeZone::UTC).is_empty());
    }

    #[test]
    fn daily_and_weekly_ladders() {
        // 40 backups = 10 days, 4 a day; newest is 2026-01-10T18:00.
        let t = hours(40);
        let daily = keep(&t, policy(1, 3, 0), &TimeZone::UTC);
        // The newest of Jan 10, 9 and 8.
        assert_eq!(daily, BTreeSet::from([39, 35, 31]));
        // ISO weeks: Jan 5-11 (newest 39), Dec 29-Jan 4 (newest: Jan 4 18:00 = 15).
        let weekly = keep(&t, policy(1, 0, 5), &TimeZone::UTC);
        assert_eq!(weekly, BTreeSet::from([15, 39]));
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut t = hours(5);
        t.reverse();
        assert_eq!(
            keep(&t, policy(2, 0, 0), &TimeZone::UTC),
            BTreeSet::from([0, 1])
        );
    }
}
