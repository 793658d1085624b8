//! Bot classification. A bot's events are kept in the log and the archive, flagged with the
//! reason, excluded from rollups and counted (so that reprocessing with newer rules can
//! reclassify them).
//!
//! Rules, in order (the first that matches gives the reason):
//! 1. an empty User-Agent (`empty_user_agent`);
//! 2. headless and scripted browsers (`headless`): HeadlessChrome, PhantomJS, Puppeteer,
//!    Playwright, Selenium, Cypress, Electron-based scrapers and the like;
//! 3. uptime and synthetic monitoring (`monitoring`): UptimeRobot, Pingdom, StatusCake, …;
//! 4. HTTP libraries and command-line clients (`automation`): curl, Wget, python-requests, Go's
//!    net/http, okhttp, axios, …;
//! 5. known crawlers (`crawler`): the crowd-maintained pattern list of the `isbot` crate
//!    (a port of the isbot project's list: search engines, social previews, SEO tools, AI
//!    crawlers);
//! 6. referrer spam (`referrer_spam`): a referrer on [`SPAM_REFERRERS`] or a subdomain of one.

use std::sync::OnceLock;

/// Why an event is a bot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotReason {
    /// No User-Agent at all.
    EmptyUserAgent,
    /// A headless or scripted browser.
    Headless,
    /// Uptime or synthetic monitoring.
    Monitoring,
    /// An HTTP library or command-line client.
    Automation,
    /// A known crawler.
    Crawler,
    /// A referrer known for referrer spam.
    ReferrerSpam,
}

impl BotReason {
    /// Stable snake_case name (event flag, metric label, `ingest` dimension value).
    pub fn as_str(self) -> &'static str {
        match self {
            BotReason::EmptyUserAgent => "empty_user_agent",
            BotReason::Headless => "headless",
            BotReason::Monitoring => "monitoring",
            BotReason::Automation => "automation",
            BotReason::Crawler => "crawler",
            BotReason::ReferrerSpam => "referrer_spam",
        }
    }
}

/// Lower-case tokens of headless and scripted browsers.
const HEADLESS: &[&str] = &[
    "headlesschrome",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "cypress",
    "slimerjs",
    "splash",
    "htmlunit",
    "jsdom",
];
/// Lower-case tokens of uptime and synthetic-monitoring services.
const MONITORING: &[&str] = &[
    "uptimerobot",
    "pingdom",
    "statuscake",
    "site24x7",
    "datadog",
    "newrelicpinger",
    "new relic synthetics",
    "checkly",
    "freshping",
    "betteruptime",
    "better uptime",
    "uptime-kuma",
    "uptime kuma",
    "nagios",
    "zabbix",
    "prometheus",
    "blackbox exporter",
    "kube-probe",
    "elb-healthchecker",
    "googlehc",
    "amazon-route53-health-check",
    "pingbot",
    "hetrixtools",
    "updown.io",
    "monitis",
    "uptimia",
];
/// Lower-case prefixes or tokens of HTTP libraries and command-line clients.
const AUTOMATION: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests/",
    "python-urllib/",
    "python-httpx/",
    "aiohttp/",
    "go-http-client/",
    "okhttp/",
    "axios/",
    "node-fetch",
    "undici",
    "java/",
    "apache-httpclient/",
    "libwww-perl/",
    "httpie/",
    "scrapy/",
    "postmanruntime/",
    "insomnia/",
    "powershell/",
    "guzzlehttp/",
    "ruby",
    "restsharp/",
    "dart:io",
    "reqwest/",
    "http.rb/",
    "faraday",
];

/// Referrer domains known for referrer spam (a public, long-standing list of offenders).
pub const SPAM_REFERRERS: &[&str] = &[
    "semalt.com",
    "buttons-for-website.com",
    "buttons-for-your-website.com",
    "darodar.com",
    "best-seo-offer.com",
    "best-seo-solution.com",
    "blackhatworth.com",
    "hulfingtonpost.com",
    "priceg.com",
    "savetubevideo.com",
    "ilovevitaly.com",
    "econom.co",
    "cenoval.ru",
    "7makemoneyonline.com",
    "free-share-buttons.com",
    "social-buttons.com",
    "get-free-traffic-now.com",
    "trafficmonetize.org",
    "floating-share-buttons.com",
    "website-analyzer.info",
];

fn crawlers() -> &'static isbot::Bots {
    static BOTS: OnceLock<isbot::Bots> = OnceLock::new();
    BOTS.get_or_init(isbot::Bots::default)
}

fn referrer_host(referrer: &str) -> Option<&str> {
    let rest = referrer.split_once("://").map_or(referrer, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    Some(host.split(':').next().unwrap_or(host))
}

/// The reason an event is a bot's, or `None` for a person: rules 1–5 on the User-Agent
/// ([`classify_user_agent`]), then rule 6 on the referrer ([`classify_referrer`]).
pub fn classify(user_agent: &str, referrer: Option<&str>) -> Option<BotReason> {
    classify_user_agent(user_agent).or_else(|| classify_referrer(referrer))
}

/// Rules 1–5 of the module docs: the User-Agent alone. A pure function of its argument, so
/// callers may cache its verdict per User-Agent string.
pub fn classify_user_agent(user_agent: &str) -> Option<BotReason> {
    let ua = user_agent.trim();
    if ua.is_empty() {
        return Some(BotReason::EmptyUserAgent);
    }
    let lower = ua.to_ascii_lowercase();
    if HEADLESS.iter().any(|t| lower.contains(t)) {
        return Some(BotReason::Headless);
    }
    if MONITORING.iter().any(|t| lower.contains(t)) {
        return Some(BotReason::Monitoring);
    }
    if AUTOMATION
        .iter()
        .any(|t| lower.starts_with(t) || lower.contains(&format!(" {t}")))
    {
        return Some(BotReason::Automation);
    }
    if crawlers().is_bot(ua) {
        return Some(BotReason::Crawler);
    }
    None
}

/// Rule 6 of the module docs: referrer spam.
pub fn classify_referrer(referrer: Option<&str>) -> Option<BotReason> {
    let host = referrer.and_then(referrer_host)?.to_ascii_lowercase();
    SPAM_REFERRERS
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        .then_some(BotReason::ReferrerSpam)
}
