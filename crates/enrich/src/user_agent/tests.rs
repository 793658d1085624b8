//! Real User-Agent strings (public strings of released browsers and crawlers) with the
//! classification worked out by hand from each string's tokens.

use super::*;
use crate::bots::{classify, BotReason};

/// (User-Agent, browser, major version, OS, OS version, device).
const BROWSERS: &[(&str, &str, &str, &str, &str, Device)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "120", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36", "Chrome", "119", "macOS", "10.15.7", Device::Desktop),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36", "Chrome", "118", "Linux", UNKNOWN, Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox", "121", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox", "120", "macOS", "10.15", Device::Desktop),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0", "Firefox", "115", "Linux", UNKNOWN, Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", "Safari", "17", "macOS", "10.15.7", Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Safari/605.1.15", "Safari", "16", "macOS", "10.15.7", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61", "Edge", "120", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.97", "Edge", "119", "macOS", "10.15.7", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582", "Edge", "18", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko", "Internet Explorer", "11", "Windows", "7", Device::Desktop),
    ("Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)", "Internet Explorer", "9", "Windows", "7", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 OPR/105.0.0.0", "Opera", "105", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 OPR/105.0.0.0", "Opera", "105", "macOS", "10.15.7", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36 Vivaldi/6.4.3160.47", "Vivaldi", "6", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 6.3; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36", "Chrome", "109", "Windows", "8.1", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36", "Chrome", "109", "Windows", "7", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/103.0.0.0 Safari/537.36", "Chrome", "103", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0", "Firefox", "115", "Windows", "7", Device::Desktop),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 YaBrowser/23.11.0.0 Safari/537.36", "Yandex Browser", "23", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "Safari", "17", "iOS", "17.1", Device::Mobile),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "Safari", "16", "iOS", "16.6", Device::Mobile),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1", "Chrome", "120", "iOS", "17.1", Device::Mobile),
    ("Mozilla/5.0 (iPod touch; CPU iPhone OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1", "Safari", "12", "iOS", "12.5.7", Device::Mobile),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "Safari", "16", "iOS", "16.6", Device::Tablet),
    ("Mozilla/5.0 (iPad; CPU OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1", "Safari", "12", "iOS", "12.4", Device::Tablet),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome", "120", "Android", "14", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome", "120", "Android", "10", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 9; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Mobile Safari/537.36", "Chrome", "114", "Android", "9", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 11; Redmi Note 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36", "Chrome", "119", "Android", "11", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", "Samsung Internet", "23", "Android", "13", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "120", "Android", "13", Device::Tablet),
    ("Mozilla/5.0 (Linux; Android 12; SM-T870) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/22.0 Chrome/111.0.5563.116 Safari/537.36", "Samsung Internet", "22", "Android", "12", Device::Tablet),
    ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", "Firefox", "121", "Android", "14", Device::Mobile),
    ("Mozilla/5.0 (Android 13; Tablet; rv:120.0) Gecko/120.0 Firefox/120.0", "Firefox", "120", "Android", "13", Device::Tablet),
    ("Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile Safari/537.36 OPR/79.0.4195.76888", "Opera", "79", "Android", "10", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 8.0.0; SM-G930F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0.4896.127 Mobile Safari/537.36", "Chrome", "100", "Android", "8.0.0", Device::Mobile),
    ("Mozilla/5.0 (Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile Safari/537.36", "Chrome", "116", "Android", "12", Device::Mobile),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/118.0", "Firefox", "118", "Windows", "10", Device::Desktop),
    ("Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox", "120", "Linux", UNKNOWN, Device::Desktop),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Safari/605.1.15", "Safari", "14", "macOS", "10.14.6", Device::Desktop),
];

#[test]
fn browsers_operating_systems_and_devices() {
    let mut wrong = Vec::new();
    for (ua, browser, version, os, os_version, device) in BROWSERS {
        let got = parse(ua);
        let want = UserAgent {
            browser: (*browser).into(),
            browser_version: (*version).into(),
            os: (*os).into(),
            os_version: (*os_version).into(),
            device: *device,
        };
        if got != want {
            wrong.push(format!("{ua}\n   got  {got:?}\n   want {want:?}"));
        }
    }
    assert!(BROWSERS.len() >= 40);
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        BROWSERS.len(),
        wrong.join("\n")
    );
}

/// (User-Agent, expected reason).
const BOTS: &[(&str, BotReason)] = &[
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotReason::Crawler),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.199 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", BotReason::Crawler),
    ("DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", BotReason::Crawler),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", BotReason::Crawler),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", BotReason::Crawler),
    ("Twitterbot/1.0", BotReason::Crawler),
    ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", BotReason::Crawler),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", BotReason::Crawler),
    ("TelegramBot (like TwitterBot)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)", BotReason::Crawler),
    ("Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)", BotReason::Crawler),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)", BotReason::Crawler),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", BotReason::Crawler),
    ("CCBot/2.0 (https://commoncrawl.org/faq/)", BotReason::Crawler),
    ("Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; SeznamBot/4.0; +https://o-seznam.cz/napoveda/vyhledavani/en/seznambot-crawler/)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; Exabot/3.0; +http://www.exabot.com/go/robot)", BotReason::Crawler),
    ("ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)", BotReason::Crawler),
    ("Mozilla/5.0 (compatible; archive.org_bot +http://archive.org/details/archive.org_bot)", BotReason::Crawler),
    ("AdsBot-Google (+http://www.google.com/adsbot.html)", BotReason::Crawler),
    ("Mediapartners-Google", BotReason::Crawler),
    ("Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)", BotReason::Crawler),
    ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", BotReason::Monitoring),
    ("Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", BotReason::Monitoring),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36 StatusCake", BotReason::Monitoring),
    ("Site24x7", BotReason::Monitoring),
    ("Datadog/Synthetics", BotReason::Monitoring),
    ("kube-probe/1.27", BotReason::Monitoring),
    ("ELB-HealthChecker/2.0", BotReason::Monitoring),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.28 Safari/537.36", BotReason::Headless),
    ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1", BotReason::Headless),
    ("curl/8.4.0", BotReason::Automation),
    ("Wget/1.21.4", BotReason::Automation),
    ("python-requests/2.31.0", BotReason::Automation),
    ("Python-urllib/3.11", BotReason::Automation),
    ("Go-http-client/1.1", BotReason::Automation),
    ("okhttp/4.12.0", BotReason::Automation),
    ("axios/1.6.2", BotReason::Automation),
    ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", BotReason::Automation),
    ("Java/17.0.9", BotReason::Automation),
    ("libwww-perl/6.72", BotReason::Automation),
    ("Scrapy/2.11.0 (+https://scrapy.org)", BotReason::Automation),
    ("", BotReason::EmptyUserAgent),
];

#[test]
fn crawlers_monitoring_headless_and_tools() {
    let mut wrong = Vec::new();
    for (ua, reason) in BOTS {
        let got = classify(ua, None);
        if got != Some(*reason) {
            wrong.push(format!("{ua:?}: got {got:?}, want {reason:?}"));
        }
    }
    assert!(BOTS.len() >= 40);
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        BOTS.len(),
        wrong.join("\n")
    );
}

#[test]
fn people_are_not_bots_and_referrer_spam_is() {
    for (ua, ..) in BROWSERS {
        assert_eq!(classify(ua, Some("https://www.google.com/")), None, "{ua}");
    }
    let chrome = BROWSERS[0].0;
    assert_eq!(
        classify(chrome, Some("http://semalt.com/crawler.php?u=x")),
        Some(BotReason::ReferrerSpam)
    );
    assert_eq!(
        classify(chrome, Some("https://www.buttons-for-website.com/")),
        Some(BotReason::ReferrerSpam)
    );
    assert_eq!(classify(chrome, Some("https://notsemalt.com/")), None);
}
