//! User-Agent → browser, OS and device.
//!
//! Parsing uses the `woothee` crate (a Rust port of the Woothee project's shared rule set,
//! used by Fluentd and Norikra for access-log enrichment). It was chosen over a uap-core regex
//! parser because it carries its rules compiled in (no regexes.yaml to ship) and matches by
//! string tests rather than hundreds of regexes: its cost is a few µs per call (see the
//! `enrich` criterion benchmark). Names are mapped to the families merchants know (Windows,
//! macOS, iOS, Android; Chrome, Safari, Firefox, Edge, …) and the device type is derived from
//! Woothee's category, the OS, and Android's "Mobile" token (Android tablets omit it, per
//! Google's guidance for Android user agents).

use woothee::parser::Parser;

use crate::UNKNOWN;

/// Device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Desktop or laptop computer.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Game console, TV, other appliance.
    Other,
    /// Not determined.
    Unknown,
}

impl Device {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "Desktop",
            Device::Mobile => "Mobile",
            Device::Tablet => "Tablet",
            Device::Other => "Other",
            Device::Unknown => UNKNOWN,
        }
    }
}

/// What a User-Agent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// Browser family (`Chrome`).
    pub browser: String,
    /// Browser major version (`120`).
    pub browser_version: String,
    /// OS family (`Windows`, `macOS`, `iOS`, `Android`, `Linux`).
    pub os: String,
    /// OS version (`10`, `14`, `17.1`).
    pub os_version: String,
    /// Device type.
    pub device: Device,
}

fn known(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty() && s != "UNKNOWN").then_some(s)
}

/// Parses a User-Agent; unknown parts are [`UNKNOWN`].
pub fn parse(ua: &str) -> UserAgent {
    let Some(r) = Parser::new().parse(ua) else {
        return UserAgent {
            browser: UNKNOWN.into(),
            browser_version: UNKNOWN.into(),
            os: UNKNOWN.into(),
            os_version: UNKNOWN.into(),
            device: Device::Unknown,
        };
    };
    let (os, mut os_version) = os_family(r.os, &r.os_version);
    if os == "Windows" && os_version == UNKNOWN {
        os_version = r.os.strip_prefix("Windows ").unwrap_or(UNKNOWN).to_string();
    }
    // Woothee knows Chromium Edge and Samsung Internet by their tokens but names the latter
    // after its token; legacy Edge ("Edge/") it reports as Internet Explorer.
    let browser = match known(r.name) {
        Some("Internet Explorer") if ua.contains("Edge/") => "Edge",
        Some("SamsungBrowser") => "Samsung Internet",
        Some(name) => name,
        None => UNKNOWN,
    }
    .to_string();
    let browser_version = match browser.as_str() {
        "Edge" if ua.contains("Edge/") => version_after(ua, "Edge/"),
        _ => known(r.version).map(|v| v.split('.').next().unwrap_or(v).to_string()),
    }
    .unwrap_or_else(|| UNKNOWN.to_string());
    let device = match r.category {
        "pc" => Device::Desktop,
        "smartphone" if os_is_tablet(r.os, ua) => Device::Tablet,
        "smartphone" | "mobilephone" => Device::Mobile,
        "appliance" => Device::Other,
        _ => Device::Unknown,
    };
    UserAgent {
        browser,
        browser_version,
        os,
        os_version,
        device,
    }
}

fn version_after(ua: &str, token: &str) -> Option<String> {
    let rest = &ua[ua.find(token)? + token.len()..];
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!major.is_empty()).then_some(major)
}

fn os_is_tablet(os: &str, ua: &str) -> bool {
    os == "iPad" || (os == "Android" && !ua.contains("Mobile"))
}

fn os_family(os: &str, version: &str) -> (String, String) {
    let version = known(version).map_or(UNKNOWN.to_string(), str::to_string);
    match os {
        "iPhone" | "iPad" | "iPod" => ("iOS".into(), version),
        "Mac OSX" => ("macOS".into(), version),
        "ChromeOS" => ("Chrome OS".into(), version),
        w if w.starts_with("Windows Phone") => ("Windows Phone".into(), version),
        w if w.starts_with("Windows") => ("Windows".into(), windows_version(w, &version)),
        other => (known(other).unwrap_or(UNKNOWN).to_string(), version),
    }
}

fn windows_version(name: &str, nt: &str) -> String {
    match name.strip_prefix("Windows ") {
        Some(v) if !v.contains("UNKNOWN") && !v.starts_with("NT") => v.to_string(),
        _ => match nt.trim_start_matches("NT ") {
            "10.0" => "10".into(),
            "6.3" => "8.1".into(),
            "6.2" => "8".into(),
            "6.1" => "7".into(),
            _ => UNKNOWN.into(),
        },
    }
}

#[cfg(test)]
mod tests;
