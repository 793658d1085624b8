//! Enrichment rules applied by the processor to raw events (DESIGN §4.1: the raw User-Agent and
//! referrer are kept in every event, so reprocessing re-applies the current rules):
//!
//! - [`user_agent`]: browser, browser version, OS, OS version, device type;
//! - [`bots`]: crawlers, monitoring tools, headless browsers, automation clients, referrer spam;
//! - [`sources`]: referrer and UTM → source name and GA4 default channel group.

pub mod bots;
pub mod sources;
pub mod user_agent;

/// The value shown for an attribute that could not be determined.
pub const UNKNOWN: &str = "(unknown)";
