//! Resolving `date_range` into inclusive local dates of the site's time zone.
//!
//! Named periods end today (local): `day` is today; `7d`, `28d`, `30d`, `91d` are that many
//! days ending today; `month` and `year` run from the first day of the current month or year;
//! `6mo` and `12mo` from the first day of the month 5 or 11 months back; `all` from the first
//! day with data (today when there is none).

use chrono::{Datelike, Months, NaiveDate};

use crate::request::DateRange;
use crate::QueryError;

/// Most days a query may span (10 years and a bit).
pub const MAX_DAYS: i64 = 3700;

/// Resolves a range; `first_day` is the site's first local date with data.
///
/// # Errors
/// [`QueryError`] on `date_range` when the range is longer than [`MAX_DAYS`].
pub fn resolve(
    range: &DateRange,
    today: NaiveDate,
    first_day: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), QueryError> {
    let days_back = |n: u64| {
        today
            .checked_sub_days(chrono::Days::new(n - 1))
            .unwrap_or(today)
    };
    let month_start = today.with_day(1).unwrap_or(today);
    let (from, to) = match range {
        DateRange::Custom(a, b) => (*a, *b),
        DateRange::Named(name) => match name.as_str() {
            "day" => (today, today),
            "7d" => (days_back(7), today),
            "28d" => (days_back(28), today),
            "30d" => (days_back(30), today),
            "91d" => (days_back(91), today),
            "month" => (month_start, today),
            "6mo" => (
                month_start
                    .checked_sub_months(Months::new(5))
                    .unwrap_or(month_start),
                today,
            ),
            "12mo" => (
                month_start
                    .checked_sub_months(Months::new(11))
                    .unwrap_or(month_start),
                today,
            ),
            "year" => (
                NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today),
                today,
            ),
            // "all" reaches back at most MAX_DAYS, however old the oldest imported data is.
            _ => {
                let floor = today
                    .checked_sub_days(chrono::Days::new((MAX_DAYS - 1) as u64))
                    .unwrap_or(today);
                (first_day.unwrap_or(today).clamp(floor, today), today)
            }
        },
    };
    if (to - from).num_days() + 1 > MAX_DAYS {
        return Err(QueryError::new(
            "date_range",
            format!("spans more than {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn named_periods() {
        let today = d("2024-03-15");
        let r =
            |n: &str| resolve(&DateRange::Named(n.into()), today, Some(d("2023-01-10"))).unwrap();
        assert_eq!(r("day"), (today, today));
        assert_eq!(r("7d"), (d("2024-03-09"), today));
        assert_eq!(r("30d"), (d("2024-02-15"), today));
        assert_eq!(r("month"), (d("2024-03-01"), today));
        assert_eq!(r("6mo"), (d("2023-10-01"), today));
        assert_eq!(r("year"), (d("2024-01-01"), today));
        assert_eq!(r("all"), (d("2023-01-10"), today));
        assert!(resolve(
            &DateRange::Custom(d("2000-01-01"), d("2024-01-01")),
            today,
            None
        )
        .is_err());
    }
}
