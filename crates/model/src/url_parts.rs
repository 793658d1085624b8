//! Splitting page and referrer URLs into the parts rollups use.

use url::Url;

use crate::event::Utm;

/// The source name of a visit without a referrer or a source parameter (Plausible's name).
pub const DIRECT: &str = "Direct / None";

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
    for (k, v) in url.query_pairs() {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let slot = match k.to_ascii_lowercase().as_str() {
            "utm_source" => &mut utm.source,
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

/// `/` for an empty path; otherwise the path cut to [`MAX_PATH_BYTES`].
pub fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        truncate(path, MAX_PATH_BYTES)
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

/// Lower-case host of a referrer URL, without a leading `www.`; `None` when the referrer is
/// empty or not an http(s) URL.
pub fn referrer_host(referrer: &str) -> Option<String> {
    let url = Url::parse(referrer.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    Some(host.strip_prefix("www.").unwrap_or(&host).to_string())
}

/// The referrer source of a visit from its first event: `utm_source` when present, else the
/// referrer's host (without `www.`), else [`DIRECT`]. A referrer from one of the site's own
/// hostnames (`site_domain` or any subdomain of it) is a self-referral, hence Direct.
///
/// The enrichment stage refines this into named sources and channels.
pub fn source(utm_source: Option<&str>, referrer: Option<&str>, site_domain: &str) -> String {
    if let Some(s) = utm_source.map(str::trim).filter(|s| !s.is_empty()) {
        return s.to_string();
    }
    let Some(host) = referrer.and_then(referrer_host) else {
        return DIRECT.to_string();
    };
    let own = site_domain
        .strip_prefix("www.")
        .unwrap_or(site_domain)
        .to_ascii_lowercase();
    if host == own || host.ends_with(&format!(".{own}")) {
        return DIRECT.to_string();
    }
    host
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
    fn source_rules() {
        assert_eq!(source(None, None, "shop.example"), DIRECT);
        assert_eq!(
            source(
                None,
                Some("https://www.google.com/search?q=x"),
                "shop.example"
            ),
            "google.com"
        );
        assert_eq!(
            source(
                Some("newsletter"),
                Some("https://google.com/"),
                "shop.example"
            ),
            "newsletter"
        );
        assert_eq!(
            source(None, Some("https://www.shop.example/cart"), "shop.example"),
            DIRECT
        );
        assert_eq!(
            source(None, Some("https://blog.shop.example/"), "shop.example"),
            DIRECT
        );
        assert_eq!(
            source(None, Some("android-app://x"), "shop.example"),
            DIRECT
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
