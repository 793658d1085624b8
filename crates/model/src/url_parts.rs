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
    /// The raw query string, without `?`, for a site's kept parameters ([`page_path`]).
    pub query: Option<String>,
    /// The raw fragment, without `#`, for hash routing ([`page_path`]).
    pub fragment: Option<String>,
    /// Whether the hit itself asks for hash routing (the Plausible hit's `h` flag), whatever
    /// the site's setting.
    pub hash_mode: bool,
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
    if utm.source.is_none() && utm.medium.is_none() {
        if let Some((source, medium)) = auto_tagged(&url) {
            utm.source = Some(source.to_string());
            utm.medium = Some(medium.to_string());
        }
    }
    Ok(PageUrl {
        hostname,
        path: normalize_path(url.path()),
        utm,
        query: url.query().filter(|q| !q.is_empty()).map(str::to_string),
        fragment: url.fragment().filter(|f| !f.is_empty()).map(str::to_string),
        hash_mode: false,
    })
}

/// The source and medium that an ad platform's auto-tagging click id stands for, as Google
/// Analytics reads them: `gclid`, `gbraid` and `wbraid` (Google Ads) are `google` / `cpc`;
/// `msclkid` (Microsoft Advertising) is `bing` / `cpc`. Explicit `utm_source`/`utm_medium`
/// parameters take precedence (the caller checks). `fbclid` is not here: Facebook adds it to
/// organic links too.
fn auto_tagged(url: &Url) -> Option<(&'static str, &'static str)> {
    url.query_pairs()
        .filter(|(_, v)| !v.trim().is_empty())
        .find_map(|(k, _)| match k.to_ascii_lowercase().as_str() {
            "gclid" | "gbraid" | "wbraid" => Some(("google", "cpc")),
            "msclkid" => Some(("bing", "cpc")),
            _ => None,
        })
}

/// A site's rules for turning a page URL into the page path its reports show.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathRules<'a> {
    /// Query parameters kept in the path, matched case-insensitively (`["q", "page"]`); every
    /// other parameter is dropped. Kept parameters appear in the order they were sent,
    /// form-encoded (`/search?q=red+shoes`).
    pub keep_query_params: &'a [String],
    /// Whether the fragment is part of the path (`/#/cart`), for single-page apps that route
    /// by hash.
    pub hash_routing: bool,
}

/// The page path of `page` under a site's [`PathRules`]: the normalised path, then the kept
/// query parameters, then the fragment's route when the site or the hit routes by hash (an
/// empty route adds nothing); cut to
/// [`MAX_PATH_BYTES`] with a visible `…`.
pub fn page_path(page: &PageUrl, rules: PathRules<'_>) -> String {
    let mut path = page.path.clone();
    if let (false, Some(query)) = (rules.keep_query_params.is_empty(), &page.query) {
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if rules
                .keep_query_params
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&k))
            {
                kept.append_pair(&k, &v);
                any = true;
            }
        }
        if any {
            path.push('?');
            path.push_str(&kept.finish());
        }
    }
    if let (true, Some(fragment)) = (rules.hash_routing || page.hash_mode, &page.fragment) {
        let route = normalize_fragment(fragment);
        if !route.is_empty() {
            path.push('#');
            path.push_str(&route);
        }
    }
    if path.len() > MAX_PATH_BYTES {
        truncate(&path, MAX_PATH_BYTES)
    } else {
        path
    }
}

/// A route fragment as pages are reported: its own query part (`#/cart?x=1`) dropped,
/// percent-decoded once like paths.
pub fn normalize_fragment(fragment: &str) -> String {
    let route = fragment.split('?').next().unwrap_or_default();
    percent_encoding::percent_decode_str(route)
        .decode_utf8()
        .map_or_else(|_| route.to_string(), |d| d.into_owned())
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
    fn ad_click_ids_stand_for_paid_source_and_medium_unless_utm_is_sent() {
        let utm = |u: &str| {
            let p = parse_page_url(u).unwrap();
            (p.utm.source, p.utm.medium)
        };
        let pair = |s: &str, m: &str| (Some(s.to_string()), Some(m.to_string()));
        assert_eq!(
            utm("https://x.example/?gclid=Cj0KCQ"),
            pair("google", "cpc")
        );
        assert_eq!(utm("https://x.example/?wbraid=abc"), pair("google", "cpc"));
        assert_eq!(utm("https://x.example/?MSCLKID=abc"), pair("bing", "cpc"));
        assert_eq!(
            utm("https://x.example/?gclid=abc&utm_source=news&utm_medium=email"),
            pair("news", "email"),
            "explicit UTM parameters win"
        );
        assert_eq!(utm("https://x.example/?gclid="), (None, None), "empty id");
        assert_eq!(utm("https://x.example/?fbclid=abc"), (None, None));
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
    fn site_path_rules_keep_listed_parameters_and_route_fragments() {
        let page =
            parse_page_url("https://x.example/search/?Q=red%20shoes&sid=9&page=2#/cart?step=1")
                .unwrap();
        let keep = ["q".to_string(), "page".to_string()];
        assert_eq!(page_path(&page, PathRules::default()), "/search");
        assert_eq!(
            page_path(
                &page,
                PathRules {
                    keep_query_params: &keep,
                    hash_routing: false
                }
            ),
            "/search?Q=red+shoes&page=2"
        );
        assert_eq!(
            page_path(
                &page,
                PathRules {
                    keep_query_params: &keep,
                    hash_routing: true
                }
            ),
            "/search?Q=red+shoes&page=2#/cart"
        );
        // The hit's own hash mode composes the same way; an empty route adds nothing.
        let mut hashed = parse_page_url("https://x.example/a?q=1#/r").unwrap();
        hashed.hash_mode = true;
        assert_eq!(
            page_path(
                &hashed,
                PathRules {
                    keep_query_params: &keep,
                    hash_routing: false
                }
            ),
            "/a?q=1#/r"
        );
        let mut empty = parse_page_url("https://x.example/a#?x=1").unwrap();
        empty.hash_mode = true;
        assert_eq!(page_path(&empty, PathRules::default()), "/a");
        let only_other = parse_page_url("https://x.example/a?sid=1").unwrap();
        assert_eq!(
            page_path(
                &only_other,
                PathRules {
                    keep_query_params: &keep,
                    hash_routing: true
                }
            ),
            "/a",
            "no kept parameter, no fragment: the bare path"
        );
        let long = parse_page_url(&format!("https://x.example/a?q={}", "z".repeat(3000))).unwrap();
        let cut = page_path(
            &long,
            PathRules {
                keep_query_params: &keep,
                hash_routing: false,
            },
        );
        assert!(cut.len() <= MAX_PATH_BYTES && cut.ends_with('…'));
    }

    #[test]
    fn truncate_marks_the_cut_on_a_char_boundary() {
        let s = "é".repeat(10);
        let t = truncate(&s, 8);
        assert!(t.len() <= 8 && t.ends_with('…'));
        assert_eq!(truncate("abc", 8), "abc");
    }
}
