//! The collector (DESIGN §2): decodes hits from every protocol, enriches them and appends
//! them to the log, answering only after the log made them durable.
//!
//! - [`client_ip`]: the client address from the socket or trusted proxies' headers;
//! - [`visitor`]: keyed, non-reversible visitor hashes with daily salt rotation (§4.5);
//! - [`sites`]: a short-lived cache of site metadata;
//! - [`collector`]: the HTTP endpoints (`/api/event`, `/mp/collect`, `/debug/mp/collect`,
//!   `/g/collect`) and the import path used by `footfall import`;
//! - [`realtime`]: current visitors (last 5 minutes) per site.
//!
//! The client IP is used in memory for the visitor hash and then dropped: it is never part
//! of an [`Event`](footfall_model::Event), a log line or a file.

pub mod client_ip;
pub mod collector;
pub mod geo;
pub mod limits;
pub mod realtime;
pub mod sites;
pub mod visitor;

pub use collector::{Collector, CollectorConfig};
