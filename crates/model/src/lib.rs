//! Footfall's data model, shared by every stage of the pipeline.
//!
//! - [`event`]: the [`Event`](event::Event) that the log carries and the archive keeps
//!   (DESIGN §4.1), with its versioned binary encoding;
//! - [`decode`]: decoders of untrusted wire formats (Plausible Events API, GA4 Measurement
//!   Protocol, NCSA combined access-log lines);
//! - [`rollup`]: rollup cell keys, dimensions, granularities and mergeable cell values;
//! - [`bucket`]: time buckets in a site's time zone (DST-aware, 30/45-minute offsets);
//! - [`sketch`]: the visitors sketch (exact below a threshold, HyperLogLog beyond);
//! - [`site`]: site metadata.
//!
//! This crate does no I/O and has no async code.

pub mod bucket;
pub mod clock;
pub mod decode;
pub mod event;
pub mod rollup;
pub mod site;
pub mod sketch;
pub mod url_parts;

pub use event::Event;
