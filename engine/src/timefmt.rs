//! ISO-8601 timestamps for archive lines, without a calendar dependency.

use crate::error::{Error, Result};

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (UTC).
pub fn iso_utc(unix: f64) -> String {
    let micros = (unix * 1e6).round() as i64;
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}+00:00",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Years [`parse_time`] accepts: far beyond any archive, and small enough that the
/// day arithmetic cannot overflow and [`iso_utc`] can format the result.
const MAX_YEAR: i64 = 99_999;

/// Parses an ISO-8601 time (`YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH:MM]`, no zone = UTC,
/// years up to ±99,999) or plain unix seconds into unix seconds. The result is finite.
pub fn parse_time(s: &str) -> Result<f64> {
    let bad = || {
        Error::bad(format!(
            "cannot parse time {s:?}; use ISO-8601 or unix seconds"
        ))
    };
    if let Ok(f) = s.parse::<f64>() {
        return Some(f).filter(|f| f.is_finite()).ok_or_else(bad);
    }
    let (date, rest) = s.split_at(s.find(['T', ' ']).unwrap_or(s.len()));
    let mut dp = date.split('-');
    let y: i64 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let mo: u32 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let d: u32 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if dp.next().is_some()
        || !(-MAX_YEAR..=MAX_YEAR).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
    {
        return Err(bad());
    }
    let rest = rest.get(1..).unwrap_or("");
    let (clock, offset) = split_zone(rest).ok_or_else(bad)?;
    let mut cp = clock.split(':');
    let mut field = |max: f64| -> Result<f64> {
        match cp.next() {
            None | Some("") => Ok(0.0),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| (0.0..max).contains(x))
                .ok_or_else(bad),
        }
    };
    let (h, mi, sec) = (field(24.0)?, field(60.0)?, field(61.0)?);
    let days = days_from_civil(y, mo, d) as f64;
    Some(days * 86400.0 + h * 3600.0 + mi * 60.0 + sec - offset)
        .filter(|t| t.is_finite())
        .ok_or_else(bad)
}

/// Splits `HH:MM:SS.f±HH:MM` into the clock part and the zone offset in seconds.
fn split_zone(s: &str) -> Option<(&str, f64)> {
    if let Some(c) = s.strip_suffix('Z') {
        return Some((c, 0.0));
    }
    match s.rfind(['+', '-']) {
        Some(i) => {
            let (c, z) = s.split_at(i);
            let sign = if z.starts_with('-') { -1.0 } else { 1.0 };
            let z = &z[1..];
            let (zh, zm) = z
                .split_once(':')
                .unwrap_or((z.get(..2)?, z.get(2..).unwrap_or("0")));
            let zh: f64 = zh.parse().ok()?;
            let zm: f64 = if zm.is_empty() { 0.0 } else { zm.parse().ok()? };
            Some((c, sign * (zh * 3600.0 + zm * 60.0)))
        }
        None => Some((s, 0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_range_and_non_finite_times_are_errors() {
        // Found by fuzzing: the day arithmetic overflowed for this year.
        assert!(parse_time("2222222222222222222-1-2T0:0:0").is_err());
        assert!(parse_time("100000-01-01").is_err());
        assert!(parse_time("-100000-01-01").is_err());
        for s in ["inf", "-inf", "NaN", "1e400", "2020-01-01T00:00+inf"] {
            assert!(parse_time(s).is_err(), "{s}");
        }
        let far = parse_time("99999-12-31T23:59:59Z").unwrap();
        // (f64 seconds that far out are exact to about a millisecond.)
        assert!(
            iso_utc(far).starts_with("99999-12-31T23:59:59.00"),
            "{}",
            iso_utc(far)
        );
    }

    #[test]
    fn known_instants() {
        assert_eq!(iso_utc(0.0), "1970-01-01T00:00:00.000000+00:00");
        // cs.vt's archive example: 2018-12-16T16:18:04.820552+11:00 is 1544937484.820552.
        let t = parse_time("2018-12-16T16:18:04.820552+11:00").unwrap();
        assert!((t - 1544937484.820552).abs() < 1e-5, "{t}");
        assert_eq!(parse_time("2000-03-01").unwrap(), 951868800.0);
        assert!(parse_time("2000-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    proptest! {
        #[test]
        fn iso_roundtrip(micros in -2_000_000_000_000_000i64..8_000_000_000_000_000) {
            let t = micros as f64 / 1e6;
            let back = parse_time(&iso_utc(t)).unwrap();
            prop_assert!((back - t).abs() < 2e-6, "{} {}", t, back);
        }

        #[test]
        fn garbage_never_panics(s in ".{0,40}") {
            let _ = parse_time(&s);
        }
    }
}
