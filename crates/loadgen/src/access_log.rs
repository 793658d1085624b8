//! Access logs of a given size for the query benchmark: `events` pageviews of one site spread
//! evenly over the `days` days before `end` (exclusive), in nginx's combined format, oldest
//! first, for `footfall import`.

use std::io::Write;

use crate::model::Traffic;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days` algorithm,
/// <https://howardhinnant.github.io/date_algorithms.html>).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Writes the log to `out`. `end_unix_s` is the end of the period (Unix seconds, UTC).
///
/// # Errors
/// Write errors.
pub fn write(
    out: &mut impl Write,
    events: u64,
    days: u64,
    end_unix_s: i64,
    seed: u64,
) -> std::io::Result<()> {
    let mut traffic = Traffic::new(1, seed);
    let span = (days * 86_400) as f64;
    let start = end_unix_s - (days * 86_400) as i64;
    for i in 0..events {
        let hit = traffic.next_hit_on(0);
        let t = start + (i as f64 * span / events as f64) as i64;
        let (y, m, d) = civil(t.div_euclid(86_400));
        let s = t.rem_euclid(86_400);
        let path = if hit.name == "pageview" {
            hit.path.as_str()
        } else {
            "/signup"
        };
        writeln!(
            out,
            "{ip} - - [{d:02}/{mon}/{y}:{hh:02}:{mm:02}:{ss:02} +0000] \"GET {path} HTTP/1.1\" 200 5120 \"{referrer}\" \"{ua}\"",
            ip = hit.ip(),
            mon = MONTHS[(m - 1) as usize],
            hh = s / 3600,
            mm = s / 60 % 60,
            ss = s % 60,
            referrer = hit.referrer.unwrap_or("-"),
            ua = hit.user_agent(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_the_calendar() {
        assert_eq!(civil(0), (1970, 1, 1));
        // 2024-02-29 is day 19,782 (2024-01-01 is 19,723; plus 31 + 28).
        assert_eq!(civil(19_782), (2024, 2, 29));
        assert_eq!(civil(19_783), (2024, 3, 1));
    }

    #[test]
    fn lines_are_combined_format_spread_over_the_days() {
        let mut out = Vec::new();
        // 2024-03-03T00:00:00Z = 1,709,424,000: four events over two days.
        write(&mut out, 4, 2, 1_709_424_000, 1).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].contains("[01/Mar/2024:00:00:00 +0000] \"GET /"),
            "{}",
            lines[0]
        );
        assert!(
            lines[2].contains("[02/Mar/2024:00:00:00 +0000]"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("[02/Mar/2024:12:00:00 +0000]"),
            "{}",
            lines[3]
        );
        // Combined format: quoted request, status and size, quoted referrer and User-Agent.
        for l in &lines {
            assert_eq!(l.matches('"').count(), 6, "{l}");
            assert!(l.contains(" HTTP/1.1\" 200 5120 \""), "{l}");
        }
    }
}
