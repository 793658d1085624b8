//! Referrer sources and GA4's default channel group.
//!
//! **Source.** In order: the page URL's `utm_source`, `source` or `ref` parameter (the
//! parser keeps the first of these in `utm_source`), matched case-insensitively against the
//! names and aliases of [`KNOWN`] (`fb` → Facebook, `t.co` → Twitter) and otherwise shown as
//! sent; else the referrer's host, named through [`KNOWN`] when it is a well-known site
//! (`www.google.de` → Google), else the host without `www.`; a referrer from the site's own
//! domain or a subdomain of it is a self-referral, hence Direct; no referrer is Direct
//! ([`DIRECT`]).
//!
//! **Channel.** GA4's default channel group, as documented in Google Analytics Help
//! ("[GA4] Default channel group"), evaluated in GA4's order over (source, medium, campaign),
//! where traffic without UTM parameters has medium `organic` from a search engine, `referral`
//! from any other referrer, and `(none)` without a referrer.

/// The source of visits without a referrer or source parameter (Plausible's name).
pub const DIRECT: &str = "Direct / None";

/// What kind of site a known source is (GA4's source categories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Search engine.
    Search,
    /// Social network.
    Social,
    /// Video site.
    Video,
    /// Shopping site.
    Shopping,
    /// Email provider.
    Email,
    /// Anything else.
    Other,
}

/// A well-known source: canonical name, category, host suffixes, and lower-case aliases.
pub struct Known {
    /// Canonical name.
    pub name: &'static str,
    /// Category.
    pub category: Category,
    /// Host suffixes that identify it (`google.` matches any Google country domain).
    pub hosts: &'static [&'static str],
    /// Lower-case `utm_source` aliases, besides the lower-case name.
    pub aliases: &'static [&'static str],
}

/// Well-known sources.
pub const KNOWN: &[Known] = &[
    Known {
        name: "Google",
        category: Category::Search,
        hosts: &["google."],
        aliases: &["google.com"],
    },
    Known {
        name: "Bing",
        category: Category::Search,
        hosts: &["bing.com"],
        aliases: &[],
    },
    Known {
        name: "DuckDuckGo",
        category: Category::Search,
        hosts: &["duckduckgo.com"],
        aliases: &["ddg"],
    },
    Known {
        name: "Yahoo!",
        category: Category::Search,
        hosts: &["search.yahoo.", "yahoo."],
        aliases: &["yahoo"],
    },
    Known {
        name: "Yandex",
        category: Category::Search,
        hosts: &["yandex."],
        aliases: &[],
    },
    Known {
        name: "Baidu",
        category: Category::Search,
        hosts: &["baidu.com"],
        aliases: &[],
    },
    Known {
        name: "Ecosia",
        category: Category::Search,
        hosts: &["ecosia.org"],
        aliases: &[],
    },
    Known {
        name: "Brave Search",
        category: Category::Search,
        hosts: &["search.brave.com"],
        aliases: &["brave"],
    },
    Known {
        name: "Qwant",
        category: Category::Search,
        hosts: &["qwant.com"],
        aliases: &[],
    },
    Known {
        name: "Startpage",
        category: Category::Search,
        hosts: &["startpage.com"],
        aliases: &[],
    },
    Known {
        name: "Naver",
        category: Category::Search,
        hosts: &["naver.com"],
        aliases: &[],
    },
    Known {
        name: "Facebook",
        category: Category::Social,
        hosts: &[
            "facebook.com",
            "fb.com",
            "fb.me",
            "m.facebook.com",
            "l.facebook.com",
        ],
        aliases: &["fb", "facebook.com"],
    },
    Known {
        name: "Instagram",
        category: Category::Social,
        hosts: &["instagram.com"],
        aliases: &["ig"],
    },
    Known {
        name: "Twitter",
        category: Category::Social,
        hosts: &["twitter.com", "t.co", "x.com"],
        aliases: &["tw", "t.co", "x", "x.com"],
    },
    Known {
        name: "LinkedIn",
        category: Category::Social,
        hosts: &["linkedin.com", "lnkd.in"],
        aliases: &["li", "lnkd.in"],
    },
    Known {
        name: "Reddit",
        category: Category::Social,
        hosts: &["reddit.com", "redd.it"],
        aliases: &[],
    },
    Known {
        name: "Pinterest",
        category: Category::Social,
        hosts: &["pinterest."],
        aliases: &["pin"],
    },
    Known {
        name: "TikTok",
        category: Category::Social,
        hosts: &["tiktok.com"],
        aliases: &["tt"],
    },
    Known {
        name: "Mastodon",
        category: Category::Social,
        hosts: &["mastodon.social"],
        aliases: &[],
    },
    Known {
        name: "Bluesky",
        category: Category::Social,
        hosts: &["bsky.app"],
        aliases: &["bsky"],
    },
    Known {
        name: "Threads",
        category: Category::Social,
        hosts: &["threads.net"],
        aliases: &[],
    },
    Known {
        name: "Hacker News",
        category: Category::Social,
        hosts: &["news.ycombinator.com"],
        aliases: &["hn", "hackernews"],
    },
    Known {
        name: "WhatsApp",
        category: Category::Social,
        hosts: &["whatsapp.com", "wa.me"],
        aliases: &[],
    },
    Known {
        name: "Telegram",
        category: Category::Social,
        hosts: &["t.me", "telegram.org"],
        aliases: &[],
    },
    Known {
        name: "YouTube",
        category: Category::Video,
        hosts: &["youtube.com", "youtu.be"],
        aliases: &["yt"],
    },
    Known {
        name: "Vimeo",
        category: Category::Video,
        hosts: &["vimeo.com"],
        aliases: &[],
    },
    Known {
        name: "Twitch",
        category: Category::Video,
        hosts: &["twitch.tv"],
        aliases: &[],
    },
    Known {
        name: "Amazon",
        category: Category::Shopping,
        hosts: &["amazon."],
        aliases: &[],
    },
    Known {
        name: "eBay",
        category: Category::Shopping,
        hosts: &["ebay."],
        aliases: &[],
    },
    Known {
        name: "Etsy",
        category: Category::Shopping,
        hosts: &["etsy.com"],
        aliases: &[],
    },
    Known {
        name: "Gmail",
        category: Category::Email,
        hosts: &["mail.google.com"],
        aliases: &[],
    },
    Known {
        name: "Outlook",
        category: Category::Email,
        hosts: &[
            "outlook.live.com",
            "outlook.office.com",
            "outlook.office365.com",
        ],
        aliases: &[],
    },
    Known {
        name: "Yahoo! Mail",
        category: Category::Email,
        hosts: &["mail.yahoo.com"],
        aliases: &[],
    },
    Known {
        name: "GitHub",
        category: Category::Other,
        hosts: &["github.com"],
        aliases: &[],
    },
    Known {
        name: "Wikipedia",
        category: Category::Other,
        hosts: &["wikipedia.org"],
        aliases: &[],
    },
];

fn host_matches(host: &str, pattern: &str) -> bool {
    // Without building ".{pattern}" strings: this runs for every pattern of every referrer.
    let after_dot = |at: usize| at > 0 && host.as_bytes()[at - 1] == b'.';
    if pattern.ends_with('.') {
        // `google.` matches google.com, www.google.de, google.co.uk, not googleusercontent.com.
        let mut from = 0;
        while let Some(i) = host[from..].find(pattern) {
            let at = from + i;
            if at == 0 || after_dot(at) {
                return true;
            }
            // Overlapping occurrences count too: go on from the next character.
            from = at + host[at..].chars().next().map_or(1, char::len_utf8);
        }
        return false;
    }
    host == pattern
        || (host.len() > pattern.len()
            && host.ends_with(pattern)
            && after_dot(host.len() - pattern.len()))
}

/// The known source of a referrer host, most specific first (mail.google.com is Gmail).
pub fn known_by_host(host: &str) -> Option<&'static Known> {
    let host = host.to_ascii_lowercase();
    let mut best: Option<(&Known, usize)> = None;
    for k in KNOWN {
        for p in k.hosts {
            if host_matches(&host, p) && best.is_none_or(|(_, len)| p.len() > len) {
                best = Some((k, p.len()));
            }
        }
    }
    best.map(|(k, _)| k)
}

/// The known source a `utm_source` value names, case-insensitively, by name or alias.
pub fn known_by_name(source: &str) -> Option<&'static Known> {
    let s = source.trim().to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|k| k.name.to_ascii_lowercase() == s || k.aliases.contains(&s.as_str()))
}

/// A visit's source, category and medium as GA4 would see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// Source name for the `visit:source` dimension.
    pub source: String,
    /// Referrer for `visit:referrer`: host and path without the query, or [`DIRECT`].
    pub referrer: String,
    /// GA4 default channel group.
    pub channel: &'static str,
}

fn referrer_parts(referrer: &str) -> Option<(String, String)> {
    let rest = referrer
        .trim()
        .split_once("://")
        .filter(|(scheme, _)| matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https"))?
        .1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end]
        .rsplit_once('@')
        .map_or(&rest[..end], |(_, h)| h)
        .split(':')
        .next()?
        .to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let path = rest[end..].split(['?', '#']).next().unwrap_or("");
    Some((host, path.to_string()))
}

/// Attributes a visit from its first event: `utm` = (source, medium, campaign) as sent,
/// `referrer` as sent, `site_domain` for self-referrals.
pub fn attribute(
    utm_source: Option<&str>,
    utm_medium: Option<&str>,
    utm_campaign: Option<&str>,
    referrer: Option<&str>,
    site_domain: &str,
) -> Attribution {
    let own = site_domain.trim_start_matches("www.").to_ascii_lowercase();
    let parts = referrer.and_then(referrer_parts).filter(|(host, _)| {
        let h = host.trim_start_matches("www.");
        h != own && !h.ends_with(&format!(".{own}"))
    });
    let referrer_value = parts.as_ref().map_or(DIRECT.to_string(), |(h, p)| {
        format!(
            "{}{}",
            h.trim_start_matches("www."),
            if p == "/" { "" } else { p.as_str() }
        )
    });
    let by_host = parts.as_ref().and_then(|(h, _)| known_by_host(h));
    let utm_source = utm_source.map(str::trim).filter(|s| !s.is_empty());
    let (source, category) = match utm_source {
        Some(s) => match known_by_name(s).or_else(|| known_by_host(s)) {
            Some(k) => (k.name.to_string(), k.category),
            None => (s.to_string(), Category::Other),
        },
        None => match (&parts, by_host) {
            (_, Some(k)) => (k.name.to_string(), k.category),
            (Some((h, _)), None) => (h.trim_start_matches("www.").to_string(), Category::Other),
            (None, None) => (DIRECT.to_string(), Category::Other),
        },
    };
    let medium = match utm_medium.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.to_ascii_lowercase(),
        // A source parameter without a medium, on a visit that came with a referrer (a
        // `?ref=` link), is a referral; without a referrer GA4 sees "(not set)".
        None if utm_source.is_some() && parts.is_some() => "referral".to_string(),
        None if utm_source.is_some() => "(not set)".to_string(),
        None if by_host.is_some_and(|k| k.category == Category::Search) => "organic".to_string(),
        None if parts.is_some() => "referral".to_string(),
        None => "(none)".to_string(),
    };
    let campaign = utm_campaign.unwrap_or("").to_ascii_lowercase();
    let channel = channel(&source, category, &medium, &campaign);
    Attribution {
        source,
        referrer: referrer_value,
        channel,
    }
}

fn is_paid(medium: &str) -> bool {
    // GA4: medium matches ^(.*cp.*|ppc|retargeting|paid.*)$
    medium.contains("cp")
        || medium == "ppc"
        || medium == "retargeting"
        || medium.starts_with("paid")
}

fn is_shopping_campaign(campaign: &str) -> bool {
    // GA4: campaign matches ^(.*(([^a-df-z]|^)shop|shopping).*)$
    campaign.contains("shopping")
        || campaign.match_indices("shop").any(|(i, _)| {
            i == 0
                || !campaign.as_bytes()[i - 1].is_ascii_lowercase()
                || campaign.as_bytes()[i - 1] == b'e'
        })
}

/// GA4's default channel group for (source, source category, medium, campaign), all lower
/// case except the source, in GA4's documented order.
pub fn channel(source: &str, category: Category, medium: &str, campaign: &str) -> &'static str {
    let source_l = source.to_ascii_lowercase();
    if (source == DIRECT) && matches!(medium, "(none)" | "(not set)") {
        return "Direct";
    }
    if campaign.contains("cross-network") {
        return "Cross-network";
    }
    let paid = is_paid(medium);
    if (category == Category::Shopping || is_shopping_campaign(campaign)) && paid {
        return "Paid Shopping";
    }
    if category == Category::Search && paid {
        return "Paid Search";
    }
    if category == Category::Social && paid {
        return "Paid Social";
    }
    if category == Category::Video && paid {
        return "Paid Video";
    }
    if matches!(
        medium,
        "display" | "banner" | "expandable" | "interstitial" | "cpm"
    ) {
        return "Display";
    }
    if paid {
        return "Paid Other";
    }
    if category == Category::Shopping || is_shopping_campaign(campaign) {
        return "Organic Shopping";
    }
    if category == Category::Social
        || matches!(
            medium,
            "social" | "social-network" | "social-media" | "sm" | "social network" | "social media"
        )
    {
        return "Organic Social";
    }
    if category == Category::Video || medium.contains("video") {
        return "Organic Video";
    }
    if category == Category::Search || medium == "organic" {
        return "Organic Search";
    }
    // GA4 has no email source category: a webmail referral (mail.google.com) is Referral; only
    // "email" as source or medium makes the Email channel.
    if matches!(source_l.as_str(), "email" | "e-mail" | "e_mail" | "e mail")
        || matches!(medium, "email" | "e-mail" | "e_mail" | "e mail")
    {
        return "Email";
    }
    if medium == "affiliate" {
        return "Affiliates";
    }
    if matches!(medium, "referral" | "app" | "link") {
        return "Referral";
    }
    if medium == "audio" {
        return "Audio";
    }
    if source_l == "sms" || medium == "sms" {
        return "SMS";
    }
    if medium.ends_with("push")
        || medium.contains("mobile")
        || medium.contains("notification")
        || source_l == "firebase"
    {
        return "Mobile Push Notifications";
    }
    "Unassigned"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(
        src: Option<&str>,
        med: Option<&str>,
        camp: Option<&str>,
        referrer: Option<&str>,
    ) -> (String, String, &'static str) {
        let r = attribute(src, med, camp, referrer, "shop.example");
        (r.source, r.referrer, r.channel)
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn host_patterns_match_at_label_boundaries() {
        // A pattern ending in a dot names a registrable label under any suffix.
        assert!(host_matches("google.com", "google."));
        assert!(host_matches("www.google.de", "google."));
        assert!(host_matches("google.co.uk", "google."));
        assert!(!host_matches("googleusercontent.com", "google."));
        assert!(!host_matches("notgoogle.com", "google."));
        // The first occurrence is not at a boundary, an overlapping later one is.
        assert!(host_matches("xa.a.a.com", "a.a."));
        assert!(!host_matches("xa.a.com", "a.a."));
        // Other patterns are the host or a parent domain of it.
        assert!(host_matches("t.co", "t.co"));
        assert!(host_matches("mobile.t.co", "t.co"));
        assert!(!host_matches("at.co", "t.co"));
        assert!(!host_matches("t.co.uk", "t.co"));
        assert!(!host_matches("co", "t.co"));
    }

    #[test]
    fn direct_and_self_referrals() {
        assert_eq!(a(None, None, None, None), (s(DIRECT), s(DIRECT), "Direct"));
        assert_eq!(
            a(None, None, None, Some("https://www.shop.example/cart")),
            (s(DIRECT), s(DIRECT), "Direct")
        );
        assert_eq!(
            a(None, None, None, Some("https://blog.shop.example/post")),
            (s(DIRECT), s(DIRECT), "Direct")
        );
        assert_eq!(
            a(None, None, None, Some("android-app://com.example")),
            (s(DIRECT), s(DIRECT), "Direct")
        );
    }

    #[test]
    fn referrers_are_named() {
        assert_eq!(
            a(None, None, None, Some("https://www.google.de/search?q=x")),
            (s("Google"), s("google.de/search"), "Organic Search")
        );
        assert_eq!(
            a(None, None, None, Some("https://duckduckgo.com/")),
            (s("DuckDuckGo"), s("duckduckgo.com"), "Organic Search")
        );
        assert_eq!(
            a(None, None, None, Some("https://t.co/abc")),
            (s("Twitter"), s("t.co/abc"), "Organic Social")
        );
        assert_eq!(
            a(None, None, None, Some("https://l.facebook.com/l.php?u=x")),
            (s("Facebook"), s("l.facebook.com/l.php"), "Organic Social")
        );
        assert_eq!(
            a(None, None, None, Some("https://mail.google.com/mail/u/0/")),
            (s("Gmail"), s("mail.google.com/mail/u/0/"), "Referral")
        );
        assert_eq!(
            a(
                Some("producthunt"),
                None,
                None,
                Some("https://www.producthunt.com/posts/x")
            )
            .2,
            "Referral",
            "a ?ref= link with its referrer"
        );
        assert_eq!(
            a(None, None, None, Some("https://www.youtube.com/watch?v=1")),
            (s("YouTube"), s("youtube.com/watch"), "Organic Video")
        );
        assert_eq!(
            a(None, None, None, Some("https://news.example/story")),
            (s("news.example"), s("news.example/story"), "Referral")
        );
        assert_eq!(
            a(None, None, None, Some("https://www.amazon.co.uk/dp/1")),
            (s("Amazon"), s("amazon.co.uk/dp/1"), "Organic Shopping")
        );
        // googleusercontent.com is not Google search.
        assert_eq!(
            a(None, None, None, Some("https://googleusercontent.com/x")).2,
            "Referral"
        );
    }

    #[test]
    fn utm_source_wins_and_is_canonical_case_insensitively() {
        assert_eq!(
            a(Some("FB"), None, None, Some("https://www.google.com/")).0,
            "Facebook"
        );
        assert_eq!(
            a(Some("ig"), Some("social"), None, None),
            (s("Instagram"), s(DIRECT), "Organic Social")
        );
        assert_eq!(a(Some("t.co"), None, None, None).0, "Twitter");
        assert_eq!(
            a(Some("GOOGLE"), Some("cpc"), None, None),
            (s("Google"), s(DIRECT), "Paid Search")
        );
        assert_eq!(
            a(Some("newsletter"), Some("email"), None, None),
            (s("newsletter"), s(DIRECT), "Email")
        );
        assert_eq!(
            a(Some("Newsletter"), None, None, None).0,
            "Newsletter",
            "unknown sources are shown as sent"
        );
    }

    #[test]
    fn paid_versus_organic_and_the_other_channels() {
        assert_eq!(
            a(Some("facebook"), Some("paid_social"), None, None).2,
            "Paid Social"
        );
        assert_eq!(
            a(Some("facebook"), Some("social"), None, None).2,
            "Organic Social"
        );
        assert_eq!(a(Some("youtube"), Some("cpv"), None, None).2, "Paid Video");
        assert_eq!(
            a(Some("google"), Some("organic"), None, None).2,
            "Organic Search"
        );
        assert_eq!(a(Some("partner"), Some("ppc"), None, None).2, "Paid Other");
        assert_eq!(a(Some("partner"), Some("banner"), None, None).2, "Display");
        assert_eq!(
            a(Some("partner"), Some("cpm"), None, None).2,
            "Display",
            "cpm is Display before Paid Other"
        );
        assert_eq!(
            a(Some("partner"), Some("affiliate"), None, None).2,
            "Affiliates"
        );
        assert_eq!(
            a(Some("partner"), Some("cpc"), Some("summer-shopping"), None).2,
            "Paid Shopping"
        );
        assert_eq!(
            a(Some("partner"), Some("referral"), Some("spring_shop"), None).2,
            "Organic Shopping"
        );
        assert_eq!(
            a(Some("partner"), Some("video"), None, None).2,
            "Organic Video"
        );
        assert_eq!(a(Some("partner"), Some("audio"), None, None).2, "Audio");
        assert_eq!(a(Some("sms"), None, None, None).2, "SMS");
        assert_eq!(
            a(Some("firebase"), Some("notification"), None, None).2,
            "Mobile Push Notifications"
        );
        assert_eq!(a(Some("partner"), Some("app"), None, None).2, "Referral");
        assert_eq!(
            a(
                Some("partner"),
                Some("x-network"),
                Some("cross-network-q3"),
                None
            )
            .2,
            "Cross-network"
        );
        assert_eq!(a(Some("partner"), None, None, None).2, "Unassigned");
    }
}
