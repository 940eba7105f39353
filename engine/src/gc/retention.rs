//! Retention: which revisions of an archive to keep (`vt forget`).
//!
//! Rules follow restic's: a revision is kept when any rule keeps it. `keep_last` keeps
//! the newest N; `keep_within` keeps those within a duration of the newest revision;
//! `keep_daily/weekly/monthly` keep the newest revision of each of the newest N days
//! (weeks, months) that have one. Calendar buckets are in UTC; weeks start on Monday.
//! `forget_revs` instead names revisions to drop (1 = the oldest line of the archive).

use crate::archive::{Archive, ArchiveEntry};
use crate::error::{Error, Result};

/// A retention policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Keep the newest N revisions.
    pub keep_last: Option<usize>,
    /// Keep revisions at most this many seconds older than the newest.
    pub keep_within: Option<f64>,
    /// Keep the newest revision of each of the newest N days.
    pub keep_daily: Option<usize>,
    /// Likewise per ISO week.
    pub keep_weekly: Option<usize>,
    /// Likewise per calendar month.
    pub keep_monthly: Option<usize>,
    /// Forget exactly these revisions (1-based line order); excludes the keep rules.
    pub forget_revs: Vec<usize>,
}

impl Policy {
    fn has_keep_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_within.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }
}

/// The verdict on one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// 1-based position in the archive.
    pub rev: usize,
    /// True when the revision stays.
    pub keep: bool,
    /// The rules that keep it (empty when forgotten).
    pub reasons: Vec<&'static str>,
}

/// A calendar rule: how many buckets to keep, the bucket of a time, the reason's name.
type BucketRule = (Option<usize>, fn(f64) -> i64, &'static str);

/// Days since 1970-01-01 (UTC) of unix time `t`.
fn day(t: f64) -> i64 {
    (t / 86400.0).floor() as i64
}

/// Monday-based week number: 1970-01-01 was a Thursday.
fn week(t: f64) -> i64 {
    (day(t) + 3).div_euclid(7)
}

/// Months since year 0 of unix time `t` (UTC).
fn month(t: f64) -> i64 {
    let z = day(t) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    y * 12 + m - 1
}

/// Decides for every entry (in archive order). Fails when the policy has no rule (which
/// would forget everything), mixes `forget_revs` with keep rules, or names a revision
/// that does not exist.
pub fn select(entries: &[ArchiveEntry], policy: &Policy) -> Result<Vec<Decision>> {
    if !policy.forget_revs.is_empty() {
        if policy.has_keep_rules() {
            return Err(Error::bad("--rev cannot be combined with --keep-* rules"));
        }
        return forget_listed(entries.len(), &policy.forget_revs);
    }
    if !policy.has_keep_rules() {
        return Err(Error::bad(
            "no retention rule given (use --keep-* or --rev); refusing to forget everything",
        ));
    }
    let mut out: Vec<Decision> = (1..=entries.len())
        .map(|rev| Decision {
            rev,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    // Newest first; on equal times the later line is newer.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[b].when.total_cmp(&entries[a].when).then(b.cmp(&a)));
    let newest = order.first().map_or(0.0, |&i| entries[i].when);
    if let Some(n) = policy.keep_last {
        for &i in order.iter().take(n) {
            out[i].reasons.push("last");
        }
    }
    if let Some(w) = policy.keep_within {
        for &i in &order {
            if entries[i].when >= newest - w {
                out[i].reasons.push("within");
            }
        }
    }
    let buckets: [BucketRule; 3] = [
        (policy.keep_daily, day, "daily"),
        (policy.keep_weekly, week, "weekly"),
        (policy.keep_monthly, month, "monthly"),
    ];
    for (n, bucket, why) in buckets {
        let Some(n) = n else { continue };
        let mut last = None;
        let mut kept = 0;
        for &i in &order {
            let b = bucket(entries[i].when);
            if kept < n && last != Some(b) {
                out[i].reasons.push(why);
                kept += 1;
                last = Some(b);
            }
        }
    }
    for d in &mut out {
        d.keep = !d.reasons.is_empty();
    }
    Ok(out)
}

fn forget_listed(len: usize, revs: &[usize]) -> Result<Vec<Decision>> {
    if let Some(bad) = revs.iter().find(|&&r| r == 0 || r > len) {
        return Err(Error::bad(format!(
            "no revision {bad} (the archive has {len}; 1 is the oldest)"
        )));
    }
    Ok((1..=len)
        .map(|rev| {
            let keep = !revs.contains(&rev);
            Decision {
                rev,
                keep,
                reasons: if keep { vec!["not listed"] } else { Vec::new() },
            }
        })
        .collect())
}

/// Applies `policy` to the archive at `archive`: decides under the archive's lock and,
/// unless `dry_run`, rewrites it atomically with the kept revisions (so a concurrent
/// append is never lost). Returns the decisions and the entries they refer to.
/// Fails as [`select`] does, and on I/O errors.
pub fn forget(
    archive: &Archive,
    policy: &Policy,
    dry_run: bool,
) -> Result<Vec<(Decision, ArchiveEntry)>> {
    let mut result = Vec::new();
    archive.update(|entries| {
        let decisions = select(&entries, policy)?;
        let kept: Vec<ArchiveEntry> = entries
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.keep)
            .map(|(e, _)| e.clone())
            .collect();
        result = decisions.into_iter().zip(entries).collect();
        Ok((!dry_run).then_some(kept))
    })?;
    Ok(result)
}

/// Parses a duration: `0`, or numbers with units `s`, `m`, `h`, `d`, `w`, `y` (365 days),
/// concatenated (`1d12h`). Fails on anything else.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let bad = || {
        Error::bad(format!(
            "bad duration {s:?} (use e.g. 90s, 30m, 1h, 7d, 2w, 1y)"
        ))
    };
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            'y' => 365 * 86400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(times: &[f64]) -> Vec<ArchiveEntry> {
        times
            .iter()
            .map(|&when| ArchiveEntry {
                when,
                transcription: "D{}".into(),
                name: None,
            })
            .collect()
    }

    fn kept(d: &[Decision]) -> Vec<usize> {
        d.iter().filter(|d| d.keep).map(|d| d.rev).collect()
    }

    const DAY: f64 = 86400.0;

    #[test]
    fn keep_last_and_within() {
        let e = at(&[0.0, DAY, 2.0 * DAY, 3.0 * DAY, 10.0 * DAY]);
        let p = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        assert_eq!(kept(&select(&e, &p).unwrap()), vec![4, 5]);
        let p = Policy {
            keep_within: Some(8.0 * DAY),
            ..Policy::default()
        };
        assert_eq!(kept(&select(&e, &p).unwrap()), vec![3, 4, 5]);
    }

    #[test]
    fn calendar_buckets_keep_the_newest_of_each() {
        // Two per day for three days; 1970-01-05 is a Monday.
        let e = at(&[
            4.0 * DAY + 10.0,
            4.0 * DAY + 20.0,
            5.0 * DAY + 10.0,
            5.0 * DAY + 20.0,
            11.0 * DAY + 1.0,
            40.0 * DAY,
        ]);
        let daily = Policy {
            keep_daily: Some(3),
            ..Policy::default()
        };
        assert_eq!(kept(&select(&e, &daily).unwrap()), vec![4, 5, 6]);
        let weekly = Policy {
            keep_weekly: Some(10),
            ..Policy::default()
        };
        assert_eq!(kept(&select(&e, &weekly).unwrap()), vec![4, 5, 6]);
        let monthly = Policy {
            keep_monthly: Some(5),
            ..Policy::default()
        };
        assert_eq!(kept(&select(&e, &monthly).unwrap()), vec![5, 6]);
    }

    #[test]
    fn rev_and_refusals() {
        let e = at(&[1.0, 2.0, 3.0]);
        let p = Policy {
            forget_revs: vec![2],
            ..Policy::default()
        };
        assert_eq!(kept(&select(&e, &p).unwrap()), vec![1, 3]);
        assert!(select(&e, &Policy::default()).is_err());
        let mixed = Policy {
            keep_last: Some(1),
            forget_revs: vec![1],
            ..Policy::default()
        };
        assert!(select(&e, &mixed).is_err());
        let out_of_range = Policy {
            forget_revs: vec![4],
            ..Policy::default()
        };
        assert!(select(&e, &out_of_range).is_err());
    }

    #[test]
    fn durations() {
        let secs = |s| parse_duration(s).unwrap().as_secs();
        assert_eq!(secs("0"), 0);
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("1d12h"), 86400 + 12 * 3600);
        assert_eq!(secs("2w"), 14 * 86400);
        for bad in ["", "h", "5", "1x", "-1h", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn month_numbers() {
        // 2024-02-29 and 2024-03-01.
        let feb29 = 19782.0 * DAY;
        assert_eq!(month(feb29) + 1, month(feb29 + DAY));
        assert_eq!(month(0.0), 1970 * 12);
    }

    proptest! {
        #[test]
        fn keep_last_keeps_the_newest(times in proptest::collection::vec(0.0f64..1e9, 0..40), n in 1usize..10) {
            let e = at(&times);
            let d = select(&e, &Policy { keep_last: Some(n), ..Policy::default() }).unwrap();
            prop_assert_eq!(kept(&d).len(), n.min(e.len()));
            let oldest_kept = d.iter().filter(|d| d.keep).map(|d| e[d.rev - 1].when).fold(f64::INFINITY, f64::min);
            for x in d.iter().filter(|d| !d.keep) {
                prop_assert!(e[x.rev - 1].when <= oldest_kept);
            }
        }
    }
}
