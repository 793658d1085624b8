//! Splitting page and referrer URLs into the parts rollups use.

use url::Url;

use crate::event::Utm;

/// Maximum stored length of a path, in bytes; longer paths are cut at a char boundary and
/// end in `…`.
pub const MAX_PATH_BYTES: usize = 2048;

/// The parts of a page URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageUrl {
    /// Lower-case host without port.
    pub hostname: String,
    /// Path, without query or fragment; `/` when empty.
    pub path: String,
    /// UTM parameters from the query string.
    pub utm: Utm,
}

/// Errors of [`parse_page_url`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("is not a valid absolute URL")]
    Invalid,
    /// A scheme other than http(s) (`javascript:`, `data:`, `file:` ...).
    #[error("has scheme {0:?}; only http and https are accepted")]
    Scheme(String),
}

/// Parses an absolute `http(s)` page URL.
///
/// # Errors
/// [`UrlError`] for anything that is not an absolute http(s) URL.
pub fn parse_page_url(raw: &str) -> Result<PageUrl, UrlError> {
    let url = Url::parse(raw.trim()).map_err(|_| UrlError::Invalid)?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(UrlError::Scheme(other.to_string())),
    }
    let hostname = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let mut utm = Utm::default();
    let mut alt_source = None;
    for (k, v) in url.query_pairs() {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let slot = match k.to_ascii_lowercase().as_str() {
            "utm_source" => &mut utm.source,
            // Plausible's convention: `ref` and `source` stand for utm_source when it is absent.
            "ref" | "source" => &mut alt_source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(truncate(v, 256));
        }
    }
    if utm.source.is_none() {
        utm.source = alt_source;
    }
    Ok(PageUrl {
        hostname,
        path: normalize_path(url.path()),
        utm,
    })
}

/// Splits a request target (`/a/b?x=1`) as found in access logs into path and UTM
/// parameters, by resolving it against a placeholder base.
pub fn parse_request_target(target: &str, hostname: &str) -> Option<PageUrl> {
    let base = Url::parse("http://placeholder.invalid/").ok()?;
    let url = base.join(target).ok()?;
    let mut page = parse_page_url(url.as_str()).ok()?;
    page.hostname = hostname.to_ascii_lowercase();
    Some(page)
}

/// The path as pages are reported: percent-decoded once for display (when the decoded bytes
/// are not UTF-8 the path is kept as sent), without a trailing slash (`/blog/` and `/blog`
/// are one page; `/` stays `/`), cut to [`MAX_PATH_BYTES`] with a visible `…`.
pub fn normalize_path(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_or_else(|_| path.to_string(), |d| d.into_owned());
    let trimmed = decoded.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        truncate(trimmed, MAX_PATH_BYTES)
    }
}

/// Cuts `s` to at most `max` bytes at a char boundary, marking a cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_url_parts() {
        let p = parse_page_url(
            "https://Shop.Example:8443/a/b?utm_source=News&utm_medium=email&x=1#top",
        )
        .unwrap();
        assert_eq!(p.hostname, "shop.example");
        assert_eq!(p.path, "/a/b");
        assert_eq!(p.utm.source.as_deref(), Some("News"));
        assert_eq!(p.utm.medium.as_deref(), Some("email"));
        assert_eq!(parse_page_url("https://x.example").unwrap().path, "/");
        assert_eq!(
            parse_page_url("https://x.example/?ref=producthunt")
                .unwrap()
                .utm
                .source
                .as_deref(),
            Some("producthunt")
        );
        assert_eq!(
            parse_page_url("https://x.example/?source=a&utm_source=b")
                .unwrap()
                .utm
                .source
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn non_http_urls_are_rejected() {
        assert_eq!(
            parse_page_url("javascript:alert(1)"),
            Err(UrlError::Scheme("javascript".into()))
        );
        assert!(matches!(
            parse_page_url("data:text/html,hi"),
            Err(UrlError::Scheme(_))
        ));
        assert_eq!(parse_page_url("not a url"), Err(UrlError::Invalid));
    }

    #[test]
    fn paths_are_decoded_once_and_lose_their_trailing_slash() {
        assert_eq!(normalize_path("/caf%C3%A9/"), "/café");
        assert_eq!(
            normalize_path("/a%2520b"),
            "/a%20b",
            "decoded once, not twice"
        );
        assert_eq!(
            normalize_path("/bad%FF"),
            "/bad%FF",
            "invalid UTF-8 kept as sent"
        );
        assert_eq!(normalize_path("/a%ZZ"), "/a%ZZ");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("//"), "/");
        assert_eq!(
            parse_page_url("https://x.example/blog/").unwrap().path,
            "/blog"
        );
    }

    #[test]
    fn truncate_marks_the_cut_on_a_char_boundary() {
        let s = "é".repeat(10);
        let t = truncate(&s, 8);
        assert!(t.len() <= 8 && t.ends_with('…'));
        assert_eq!(truncate("abc", 8), "abc");
    }
}
