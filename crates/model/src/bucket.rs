//! Time buckets in a site's time zone (DESIGN §4.3).
//!
//! - An **hour** bucket is identified by the UTC instant (seconds since the Unix epoch) at
//!   which its local hour starts. Local hours start at local `:00`, so in Asia/Kolkata
//!   (UTC+05:30) they start at `:30` UTC and in Asia/Kathmandu (UTC+05:45) at `:15` UTC; the
//!   repeated local hour of a DST fall-back is two buckets with different ids.
//! - A **day** bucket is identified by the local calendar date, as days since 1970-01-01.
//!   A local day lasts 23, 24 or 25 hours.
//!
//! Zones whose offset changes by a fraction of an hour mid-hour (Australia/Lord_Howe's 30-min
//! DST) are bucketed by their local `:00`, which keeps hours aligned but gives a day with a
//! half-hour bucket boundary across the change.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

const US_PER_S: i64 = 1_000_000;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The hour bucket (UTC seconds of the local hour start) of an instant given in µs.
pub fn hour_bucket(tz: Tz, timestamp_us: i64) -> i64 {
    let secs = timestamp_us.div_euclid(US_PER_S);
    let Some(utc) = DateTime::<Utc>::from_timestamp(secs, 0) else {
        return secs - secs.rem_euclid(3600);
    };
    let local = utc.with_timezone(&tz);
    secs - i64::from(local.minute()) * 60 - i64::from(local.second())
}

/// The day bucket (local date as days since 1970-01-01) of an instant given in µs.
pub fn day_bucket(tz: Tz, timestamp_us: i64) -> i64 {
    let secs = timestamp_us.div_euclid(US_PER_S);
    match DateTime::<Utc>::from_timestamp(secs, 0) {
        Some(utc) => date_to_day(utc.with_timezone(&tz).date_naive()),
        None => secs.div_euclid(86_400),
    }
}

/// Days since 1970-01-01 of a date.
pub fn date_to_day(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

/// The date of a day bucket, or `None` outside chrono's range.
pub fn day_to_date(day: i64) -> Option<NaiveDate> {
    let d = i32::try_from(day)
        .ok()?
        .checked_add(UNIX_EPOCH_DAYS_FROM_CE)?;
    NaiveDate::from_num_days_from_ce_opt(d)
}

/// UTC seconds at which a local date begins: local midnight, or the first instant after a
/// gap when midnight does not exist (zones that switch DST at midnight).
pub fn day_start_utc(tz: Tz, date: NaiveDate) -> i64 {
    for hour in 0..24u32 {
        if let Some(t) = date.and_hms_opt(hour, 0, 0) {
            if let Some(dt) = tz.from_local_datetime(&t).earliest() {
                return dt.timestamp();
            }
        }
    }
    date_to_day(date) * 86_400
}

/// The hour buckets of a local date, in order: 24 on most days, 23 on a spring-forward day
/// and 25 on a fall-back day.
pub fn hours_of_day(tz: Tz, date: NaiveDate) -> Vec<i64> {
    let start = day_start_utc(tz, date);
    let end = date
        .succ_opt()
        .map_or(start + 86_400, |next| day_start_utc(tz, next));
    let mut out = Vec::with_capacity(25);
    let mut t = start;
    while t < end {
        out.push(hour_bucket(tz, t * US_PER_S));
        t += 3600;
    }
    out.dedup();
    out
}

/// The local date of an instant given in UTC seconds.
pub fn local_date(tz: Tz, secs: i64) -> Option<NaiveDate> {
    DateTime::<Utc>::from_timestamp(secs, 0).map(|u| u.with_timezone(&tz).date_naive())
}

/// RFC 3339 label of an hour bucket in local time with its offset
/// (`2024-10-27T02:00:00+02:00`), unambiguous across DST.
pub fn hour_label(tz: Tz, bucket: i64) -> String {
    match DateTime::<Utc>::from_timestamp(bucket, 0) {
        Some(u) => {
            let local = u.with_timezone(&tz);
            let off = local.offset().fix();
            local
                .with_timezone(&off)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        }
        None => bucket.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_us(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn berlin_fall_back_day_has_25_hours_and_spring_forward_23() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // EU DST ends on the last Sunday of October: 2024-10-27; begins 2024-03-31.
        assert_eq!(
            hours_of_day(tz, NaiveDate::from_ymd_opt(2024, 10, 27).unwrap()).len(),
            25
        );
        assert_eq!(
            hours_of_day(tz, NaiveDate::from_ymd_opt(2024, 3, 31).unwrap()).len(),
            23
        );
        assert_eq!(
            hours_of_day(tz, NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()).len(),
            24
        );
    }

    #[test]
    fn repeated_local_hour_is_two_buckets() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 00:30 UTC = 02:30 CEST, 01:30 UTC = 02:30 CET on 2024-10-27.
        let a = hour_bucket(tz, utc_us("2024-10-27T00:30:00Z"));
        let b = hour_bucket(tz, utc_us("2024-10-27T01:30:00Z"));
        assert_eq!(a, utc_us("2024-10-27T00:00:00Z") / 1_000_000);
        assert_eq!(b, utc_us("2024-10-27T01:00:00Z") / 1_000_000);
        assert_eq!(hour_label(tz, a), "2024-10-27T02:00:00+02:00");
        assert_eq!(hour_label(tz, b), "2024-10-27T02:00:00+01:00");
    }

    #[test]
    fn kolkata_hours_start_at_half_past_utc() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let b = hour_bucket(tz, utc_us("2024-01-15T10:10:00Z"));
        assert_eq!(b, utc_us("2024-01-15T09:30:00Z") / 1_000_000);
        let day = hours_of_day(tz, NaiveDate::from_ymd_opt(2024, 1, 15).unwrap());
        assert_eq!(day.len(), 24);
        assert_eq!(day[0], utc_us("2024-01-14T18:30:00Z") / 1_000_000);
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            hour_bucket(kathmandu, utc_us("2024-01-15T10:10:00Z")),
            utc_us("2024-01-15T09:15:00Z") / 1_000_000
        );
    }

    #[test]
    fn day_bucket_is_local_date() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 03:00 UTC on Jan 2 is 22:00 on Jan 1 in New York.
        let d = day_bucket(tz, utc_us("2024-01-02T03:00:00Z"));
        assert_eq!(
            day_to_date(d).unwrap(),
            NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
        );
        assert_eq!(date_to_day(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }
}
