//! NCSA combined log format, the default access-log format of nginx (`combined`) and Apache
//! (`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`). Lines in the common log format
//! (without referrer and user agent) are accepted too.
//!
//! [`classify`] applies the import rule that decides which requests are pageviews:
//!
//! 1. the method is `GET` (HEAD, POST and the rest are not page views);
//! 2. the status is 2xx or 304 (a 304 is a page served from the browser's cache); 1xx, 3xx
//!    redirects, 4xx and 5xx are not page views;
//! 3. the path does not end in a static-asset extension ([`STATIC_EXTENSIONS`]): the files a
//!    browser fetches to render a page (styles, scripts, images, fonts, media, source maps),
//!    plus `/robots.txt`. Documents and data downloads (`.html`, `.pdf`, `.csv`, ...) count.
//!
//! This follows the common practice of log analyzers (AWStats' "not a page" list, GoAccess's
//! static-file list), narrowed to files that are never what a visitor asked for.

use chrono::DateTime;

/// Extensions (lower case, without the dot) of static assets that are not pageviews.
pub const STATIC_EXTENSIONS: &[&str] = &[
    "css",
    "js",
    "mjs",
    "map",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "ico",
    "webp",
    "avif",
    "bmp",
    "tif",
    "tiff",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "eot",
    "mp4",
    "webm",
    "mp3",
    "ogg",
    "wav",
    "flac",
    "m4a",
    "webmanifest",
];

/// One parsed access-log line. Borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine<'a> {
    /// Client address as logged (`%h`); used in memory only.
    pub remote_addr: &'a str,
    /// Request time, UTC µs.
    pub timestamp_us: i64,
    /// Request method (`GET`).
    pub method: &'a str,
    /// Request target (`/a?b=1`).
    pub target: &'a str,
    /// Response status.
    pub status: u16,
    /// Referrer, `None` for `-` or an empty field.
    pub referrer: Option<&'a str>,
    /// User agent, empty when not logged.
    pub user_agent: &'a str,
}

/// Why a line was not imported as a pageview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The method is not GET.
    Method,
    /// The status is not 2xx or 304.
    Status,
    /// The path is a static asset.
    StaticAsset,
}

impl SkipReason {
    /// Stable snake_case name used in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Method => "method_not_get",
            SkipReason::Status => "status_not_success",
            SkipReason::StaticAsset => "static_asset",
        }
    }
}

/// Why a line did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A required field is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field is present but malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// A double-quoted field with backslash escapes left as they are; returns (content, rest).
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ').strip_prefix('"')?;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Parses one line.
///
/// # Errors
/// [`LineError`] naming the first field that is missing or malformed.
pub fn parse_line(line: &str) -> Result<AccessLine<'_>, LineError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (remote_addr, rest) = token(line).ok_or(LineError::Missing("remote address"))?;
    if remote_addr.starts_with('"') {
        return Err(LineError::Malformed("remote address"));
    }
    let (_ident, rest) = token(rest).ok_or(LineError::Missing("ident"))?;
    let (_user, rest) = token(rest).ok_or(LineError::Missing("user"))?;
    let rest = rest
        .trim_start_matches(' ')
        .strip_prefix('[')
        .ok_or(LineError::Missing("time"))?;
    let (time, rest) = rest.split_once(']').ok_or(LineError::Malformed("time"))?;
    let timestamp_us = DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|_| LineError::Malformed("time"))?
        .timestamp_micros();
    let (request, rest) = quoted(rest).ok_or(LineError::Missing("request"))?;
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    let method = parts.next().ok_or(LineError::Malformed("request"))?;
    let target = parts.next().ok_or(LineError::Malformed("request"))?;
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(LineError::Malformed("request"));
    }
    let (status, rest) = token(rest).ok_or(LineError::Missing("status"))?;
    let status: u16 = status
        .parse()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or(LineError::Malformed("status"))?;
    let (_bytes, rest) = token(rest).ok_or(LineError::Missing("bytes"))?;
    let (referrer, user_agent) = match quoted(rest) {
        None if rest.trim().is_empty() => (None, ""),
        None => return Err(LineError::Malformed("referrer")),
        Some((r, rest)) => {
            let ua = match quoted(rest) {
                Some((ua, _)) => ua,
                None if rest.trim().is_empty() => "",
                None => return Err(LineError::Malformed("user agent")),
            };
            (
                Some(r).filter(|r| !r.is_empty() && *r != "-"),
                if ua == "-" { "" } else { ua },
            )
        }
    };
    Ok(AccessLine {
        remote_addr,
        timestamp_us,
        method,
        target,
        status,
        referrer,
        user_agent,
    })
}

/// Applies the import rule of the module docs: `Ok(())` for a pageview.
///
/// # Errors
/// The [`SkipReason`] of a request that is not a pageview.
pub fn classify(line: &AccessLine<'_>) -> Result<(), SkipReason> {
    if line.method != "GET" {
        return Err(SkipReason::Method);
    }
    if !((200..300).contains(&line.status) || line.status == 304) {
        return Err(SkipReason::Status);
    }
    let path = line.target.split(['?', '#']).next().unwrap_or_default();
    if path.eq_ignore_ascii_case("/robots.txt") {
        return Err(SkipReason::StaticAsset);
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if let Some((_, ext)) = last.rsplit_once('.') {
        if STATIC_EXTENSIONS
            .iter()
            .any(|e| ext.eq_ignore_ascii_case(e))
        {
            return Err(SkipReason::StaticAsset);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_and_common() {
        let l = parse_line(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /start.html?x=\"1\" HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#).unwrap();
        assert_eq!(l.remote_addr, "127.0.0.1");
        // 13:55:36 at -07:00 is 20:55:36 UTC.
        assert_eq!(l.timestamp_us, 971_211_336_000_000);
        assert_eq!(
            (l.method, l.target, l.status),
            ("GET", r#"/start.html?x=\"1\""#, 200)
        );
        assert_eq!(l.referrer, Some("http://www.example.com/start.html"));
        assert_eq!(l.user_agent, "Mozilla/4.08 [en] (Win98; I ;Nav)");
        let c =
            parse_line(r#"::1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 304 -"#).unwrap();
        assert_eq!((c.referrer, c.user_agent), (None, ""));
    }

    #[test]
    fn malformed_lines_name_the_field() {
        assert_eq!(
            parse_line(r#" "Python-urllib/2.7""#),
            Err(LineError::Malformed("remote address"))
        );
        assert_eq!(
            parse_line("1.2.3.4 - - [bad] \"GET / HTTP/1.1\" 200 1"),
            Err(LineError::Malformed("time"))
        );
        assert_eq!(
            parse_line("1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] \"GET / HTTP/1.1\" abc 1"),
            Err(LineError::Malformed("status"))
        );
        assert_eq!(parse_line(""), Err(LineError::Missing("remote address")));
    }

    #[test]
    fn import_rule() {
        let mk = |method, target, status| AccessLine {
            remote_addr: "x",
            timestamp_us: 0,
            method,
            target,
            status,
            referrer: None,
            user_agent: "",
        };
        assert_eq!(classify(&mk("GET", "/index.html", 200)), Ok(()));
        assert_eq!(classify(&mk("GET", "/data.csv?x=1", 304)), Ok(()));
        assert_eq!(classify(&mk("POST", "/form", 200)), Err(SkipReason::Method));
        assert_eq!(
            classify(&mk("GET", "/missing", 404)),
            Err(SkipReason::Status)
        );
        assert_eq!(classify(&mk("GET", "/old", 301)), Err(SkipReason::Status));
        assert_eq!(
            classify(&mk("GET", "/s/app.JS?v=3", 200)),
            Err(SkipReason::StaticAsset)
        );
        assert_eq!(
            classify(&mk("GET", "/robots.txt", 200)),
            Err(SkipReason::StaticAsset)
        );
    }
}
